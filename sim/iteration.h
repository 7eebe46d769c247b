// SimulateIteration: one training iteration of a model under a plan on a
// cluster, every rank and every link: the task graph of the whole iteration
// (sim/training_graph.h: every lane of every stage of every data-parallel
// replica, the schedule's passes, TP/SP, CP and EP collectives in the
// compute path, pipeline transfers, bucketed data-parallel gradient
// reduction overlapped with backward, ZeRO's gathers and reductions, the
// optimizer step, allocations and frees) replayed on the event engine
// (sim/replay.h) with every collective and transfer a coflow on the
// cluster's topology (sim/collective_flows.h), sharing links max-min.
//
// Where each cost comes from: compute from the compute model
// (costmodel/compute.h) per layer pass, collectives from the collective
// model (NCCL's tuning model, costmodel/collective.h) as each coflow's
// uncontended time, slowed by whatever else crosses its links; memory from
// the memory model's static part plus the activations the replay allocates
// and frees (sim/training_graph.h "Memory").
//
// Results: iteration time (when the last lane ends), tokens/s, samples/s,
// model FLOP/s per device (workload::TrainingFlopsPerToken, model FLOPs:
// no recomputation, PaLM App. B) and hardware FLOP/s (recomputation
// counted) over every device the plan uses, MFU against the device's dense
// peak at the plan's precision, the breakdown of the lane that ends last
// (compute, recompute, exposed communication, bubble: they sum to the
// iteration time), per stage the costs of one micro-batch, the slowest
// lane's times and the peak memory of its lanes.
//
// Thread-safety: a pure function of its arguments.
#ifndef ORRERY_SIM_ITERATION_H_
#define ORRERY_SIM_ITERATION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "costmodel/compute.h"
#include "sim/faults.h"
#include "sim/replay.h"
#include "sim/training_graph.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::sim {

struct IterationOptions {
  // Communication costs nothing: no flows, no collective time. Compute and
  // the optimizer step are unchanged.
  bool free_communication = false;
  // Slowdown of compute overlapped with data-parallel communication
  // (ReplayOptions::overlap_slowdown); 0 until calibrated.
  double overlap_slowdown = 0.0;
  // The compute model's options (nullopt: the calibration's figures, else
  // the device's defaults, costmodel::DefaultComputeOptions).
  std::optional<costmodel::ComputeOptions> compute;
  // The cluster's calibration (costmodel/calibration.h): measured compute
  // tables, refitted roofline figures, fitted collectives and the optimizer
  // step's time per parameter. nullptr: the nominal models. It must be the
  // calibration of this cluster's primary device. Its overlap slowdown is
  // not applied here: overlap_slowdown above is (the command line fills it
  // from the calibration, cli/sim_options.h).
  std::shared_ptr<const costmodel::Calibration> calibration;
  TrainingGraphOptions graph;
  // Slow devices and degraded links (sim/faults.h); empty: none. A slow
  // rank multiplies the compute task durations of its lane (its whole
  // tensor-parallel group, which waits for it every layer); a degraded
  // link divides its sim link's capacity. Checked against the cluster
  // (CheckFaults): InvalidArgument / NotFound, with the cluster's name.
  Faults faults;
};

struct StageReport {
  int stage = 0;
  int rank = 0;            // the first rank of the stage's first lane
  int layers = 0;          // transformer layers, all chunks
  int first_layer = 0;     // of chunk 0
  int64_t parameters = 0;  // held by one rank (before ZeRO), all chunks
  // One micro-batch through all the stage's chunks, uncontended
  // (StageCostTable): compute, recompute, collectives in the compute path.
  Duration forward;
  Duration backward;        // recompute included
  Duration recompute;
  Duration path_comm;       // TP/SP, CP, EP collectives, forward + backward
  LaneTimes times;          // of the stage's lane that ends last
  Bytes peak_memory;        // the largest of its lanes' peaks (replay)
  Bytes estimated_memory;   // the memory model's closed form (costmodel/memory.h)
};

struct IterationReport {
  Duration iteration_time;
  double tokens_per_s = 0;
  double samples_per_s = 0;
  FlopRate model_flops_per_device;     // model FLOPs (no recomputation) / time / devices
  FlopRate hardware_flops_per_device;  // recomputation counted
  double mfu = 0;                      // model_flops_per_device / dense peak
  FlopRate peak_per_device;
  int devices = 0;                     // pp × tp × cp × dp of the plan
  int micro_batches = 0;
  workload::PipelineSchedule schedule = workload::PipelineSchedule::kOneFOneB;
  int vpp = 1;
  Bytes p2p_bytes;                     // one pipeline send from one rank
  std::vector<StageReport> stages;
  int bound_stage = 0;                 // the stage of the lane that ends last
  int bound_replica = 0;               // that lane's index among its stage's lanes
  std::vector<int> bound_ranks{};      // that lane's ranks (its tp group)
  LaneTimes breakdown;                 // that lane's accounting
  Bytes peak_memory;                   // worst lane
  Bytes memory_capacity;               // of one device
  Bytes usable_memory;                 // capacity less the memory model's reserve
  bool fits_memory = false;            // peak_memory <= usable_memory
  int64_t lanes = 0;
  int64_t tasks = 0;
  int64_t events = 0;
  int64_t flows = 0;
};

// The graph and replay behind a report, for timelines and tests.
struct IterationTrace {
  TrainingGraph graph;
  ReplayResult replay;
  int devices_per_node = 1;
};

// Simulates one iteration. FailedPrecondition when the plan does not fit
// the model and cluster (ValidatePlan); InvalidArgument or Unimplemented
// when the graph cannot be built (sim/training_graph.h). With `trace`
// non-null, the graph and every task's span are kept in it.
Result<IterationReport> SimulateIteration(const workload::ModelSpec& model,
                                          const workload::Plan& plan,
                                          const topology::ClusterSpec& cluster,
                                          const IterationOptions& options = {},
                                          IterationTrace* trace = nullptr);

}  // namespace orrery::sim

#endif  // ORRERY_SIM_ITERATION_H_
