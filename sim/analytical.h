// AnalyticalModel: the time of one training iteration of a model under a
// plan, computed from the same costs the event simulation uses
// (sim/stage_costs.h) without an event queue or a flow model — fast enough
// for the search to score thousands of plans per second. Where no traffic
// contends (every collective and transfer alone on its links) it follows
// the event simulation's semantics (sim/training_graph.h, sim/replay.h)
// step for step; where traffic contends it is optimistic.
//
// What it computes, for the lane of each pipeline stage of data-parallel
// replica 0 (the replicas are identical when every layer shares one
// strategy per stage):
//
//   1. Costs. BuildStageCosts with the path collectives timed by the
//      collective model on the group the simulator's coflow would use:
//      workload::RankGroups(plan, layer, dim), the group holding the
//      stage's first rank, through ShapeOfGroup (sim/collective_flows.h).
//
//   2. The pipeline schedule, as a max-plus recurrence over each stage's
//      compute stream in the order of its schedule (workload/pipeline_schedule.h,
//      the simulator's own StageSchedule): a pass starts at
//          max(end of the stage's previous pass, arrival of its input)
//      and lasts the chunk's Forward() or Backward() (compute, recompute
//      and the collectives in its path; with tp_comm_overlap each layer
//      takes max(compute + its CP/EP collectives, its TP collectives), the
//      TP ones on the training graph's tensor-parallel stream). The forward of virtual stage
//      v > 0 waits for the activations of v − 1, the backward of
//      v < p·vpp − 1 for the gradient of v + 1; a transfer leaves when the
//      sender's pass ends and its pipeline-send stream is free (sends of one
//      stage run one at a time, in program order) and takes
//          t = latency + p2p_bytes / r,
//          r = min over the links of the pairs' routes of ⌊C_l / w_l⌋,
//      w_l the number of the lane's tp pairs crossing link l — what
//      CollectiveFlows::Transfer takes alone. This is the event simulation
//      of the compute and pipeline streams, exact when nothing contends,
//      at O(p·m·vpp) cost: cheaper than the closed forms need to be right.
//
//      Closed forms it reduces to (tests/sim/analytical_test.cc): p stages
//      of equal per-micro-batch costs F and B (all chunks of a stage), m
//      micro-batches, free transfers —
//        GPipe, 1F1B:     T = (m + p − 1)·(F + B)
//                         (Narayanan et al., SC21, Eq. 1: bubble fraction
//                         (p − 1)/m);
//        interleaved:     T = (m + (p − 1)/v)·(F + B)
//                         (SC21 Eq. 2: bubble (p − 1)/(v·m)).
//      Unequal stages, non-interleaved: T ≥ Σ_s (F_s + B_s) +
//      (m − 1)·max_s (F_s + B_s). With transfers of time t each way
//      (t <= F, B), 1F1B's steady state exposes them: stage s keeps
//      w = p − s − 1 micro-batches in flight, which covers the compute of
//      the round trip through the later stages but not its 2w transfers;
//      the cycle F_s(j) → F_{s+1}(j) → … → B_{s+1}(j) → B_s(j) spans w + 1
//      micro-batches of s, so s's period is F + B + 2w·t/(w + 1), the
//      longest at stage 0. For equal stages and m a multiple of p:
//        1F1B:   T = (m + p − 1)·(F + B) + 2((p − 1)·m/p + p − 2)·t,
//        GPipe:  T = (m + p − 1)·(F + B) + 2(p − 1)·t,
//      both checked against the recurrence in the tests.
//
//   3. Data-parallel gradient reduction (layers without ZeRO-3): each
//      chunk's parameters cut, in backward order, into buckets of at least
//      bucket_parameters (0: max(40·10⁶, 10⁶·dp·cp), Megatron-LM's DDP
//      default with the context-parallel ranks counted in its data-parallel
//      world), a bucket also closing before a layer that reduces with
//      another collective (ZeRO 0 vs 1/2) — sim/training_graph.h's buckets.
//      In the last backward of each chunk the recurrence walks the pass
//      layer by layer: bucket k is ready when the backward compute of its
//      last layer ends, and reductions run one at a time on the dp stream
//      in that order:
//          start_k = max(ready_k, end_{k−1}),  end_k = start_k + T_k,
//      T_k the all-reduce (reduce-scatter with ZeRO-1/2) of the bucket's
//      parameters × gradient_bytes_per_parameter on the stage's dp × cp
//      group. exposed_dp = max(0, last end − the stage's last backward end).
//      Overlap slowdown σ (AnalyticalOptions::overlap_slowdown, as
//      sim/replay.h): a compute task (recompute, forward, backward) that
//      starts while a reduction runs, start_k <= t < end_k, lasts (1 + σ)
//      times its cost; the recurrence walks layer by layer every pass that
//      starts before the stage's dp stream is idle (the last backward of a
//      chunk and, interleaved, the passes after it), so this is the replay's
//      rule, exact where nothing contends.
//
//   4. Optimizer step: parameters held (÷ dp·cp with ZeRO ≥ 1) ×
//      optimizer_bytes_per_parameter at memory bandwidth × the compute
//      model's bandwidth efficiency — or, calibrated, parameters held ×
//      the measured time per parameter (TrainingGraphOptions::
//      optimizer_time_per_parameter, else the calibration's the model was
//      created with, as the training graph); it starts at max(last backward end,
//      last reduction end). ZeRO-1/2 then all-gather the updated parameters
//      bucket by bucket (parameter bytes each: MemoryOptions::parameter_bytes,
//      else 4 for fp32/tf32 plans and 2 otherwise): param_gather = Σ T_k.
//
//   5. ZeRO-3, on the same dp stream and in the training graph's order:
//      the gather of ZeRO-3 layer pass k + 1 (in program order, across
//      passes) is issued when the lane's task before layer pass k ends
//      (the first two at once); layer pass k's first compute task waits
//      for gather k; after each backward compute the layer's gradients are
//      reduce-scattered. Every pass of such a stage is walked layer by
//      layer, so the waits, the slowdown and the last reduce-scatter after
//      the last backward are the replay's where nothing contends.
//
//   6. iteration_time = max over stages of the stage's end (its last
//      parameter gather, or its optimizer step); the stage that ends last
//      is the bottleneck and the top-level breakdown is its own:
//          iteration_time = pipeline + exposed_dp + optimizer + param_gather,
//          pipeline = m·(F + B) + p2p_exposed + bubble.
//      Per stage, the simulator's accounting (sim/replay.h LaneTimes):
//          compute + recompute + exposed_comm + bubble == iteration_time.
//
//   7. Memory: costmodel::EstimateMemory (peak over stages, fits), its
//      flash_attention taken from options.graph.stage as the training
//      graph does.
//
// With free communication (AnalyticalOptions::free_communication, as
// IterationOptions::free_communication) every collective and transfer
// takes zero time; the estimate is then the recurrence of the compute
// alone and agrees with the simulation exactly (tests).
//
// Not modelled: contention between concurrent traffic (pipeline transfers
// of other replicas, DP reductions with transfers, a lane's several rings
// in one coflow sharing a link), layers of differing tp within a stage
// beyond their own costs. experiments/analytical-gap/ measures the gap
// where traffic contends.
//
// Thread-safety: an AnalyticalModel is immutable after Create; Estimate is
// const and may be called from many threads at once.
#ifndef ORRERY_SIM_ANALYTICAL_H_
#define ORRERY_SIM_ANALYTICAL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "sim/faults.h"
#include "sim/iteration.h"
#include "sim/stage_costs.h"
#include "sim/training_graph.h"
#include "topology/cluster_spec.h"
#include "topology/topology_graph.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::sim {

// The pipeline part of an estimate, on per-chunk pass costs.
struct PipelineInputs {
  workload::PipelineSchedule schedule = workload::PipelineSchedule::kOneFOneB;
  int pp = 1;
  int vpp = 1;  // chunks per stage (1 unless interleaved)
  int micro_batches = 1;
  // One micro-batch's pass of each (stage, chunk), indexed stage·vpp + chunk.
  std::vector<Duration> forward;
  std::vector<Duration> backward;
  // Transfer times between virtual stages v and v + 1 (p·vpp − 1 entries
  // each; empty: free): activations v → v + 1, gradients v + 1 → v.
  std::vector<Duration> activation_transfer;
  std::vector<Duration> gradient_transfer;

  // Forward() and Backward() of every chunk of `costs`, free transfers.
  static PipelineInputs FromCosts(const StageCostTable& costs,
                                  workload::PipelineSchedule schedule, int micro_batches);
};

struct PipelineStageTimes {
  Duration busy;         // m·Σ_chunks (forward + backward)
  Duration p2p_exposed;  // idle while a transfer it waits on is in flight
  Duration bubble;       // other idle time before its last pass ends
  Duration end;          // end of its last pass: busy + p2p_exposed + bubble
  // Per chunk: start of the backward of the last micro-batch.
  std::vector<Duration> last_backward_start;
};

struct PipelineTimes {
  Duration makespan;  // max over stages of end
  std::vector<PipelineStageTimes> stages;
};

// The recurrence of step 2 of the header. InvalidArgument on inconsistent
// inputs (sizes, a negative cost, m < 1, interleaved m not a multiple of p).
Result<PipelineTimes> EstimatePipeline(const PipelineInputs& inputs);

struct AnalyticalStage {
  int stage = 0;
  int first_rank = 0;      // the stage's first rank in replica 0
  int64_t parameters = 0;  // held by one rank before ZeRO, all chunks
  // Per micro-batch, Σ chunks, path collectives included (not ZeRO-3's
  // waits or the overlap slowdown, which depend on when a pass runs).
  Duration forward;
  Duration backward;       // recompute included
  // As the simulator accounts a lane (sim/replay.h LaneTimes), over
  // [0, iteration_time]: compute + recompute + exposed_comm + bubble ==
  // iteration_time.
  Duration compute;        // m·(layer forward + backward compute) + optimizer
  Duration recompute;      // m·Σ recompute
  Duration comm_in_path;   // path collectives (TP/SP, CP, EP) the compute does not hide
  Duration exposed_comm;   // comm_in_path + p2p_exposed + dp waits (ZeRO-3 gathers included)
  Duration bubble;         // every other idle time, up to iteration_time
  Duration busy;           // m·(forward + backward)
  Duration p2p_exposed;
  Duration pipeline_end;   // end of its last backward
  Duration gradient_reduction;  // Σ bucket reductions (ZeRO-3: Σ reduce-scatters)
  Duration exposed_dp;     // optimizer start − pipeline_end
  Duration optimizer;
  Duration param_gather;   // ZeRO-1/2 all-gathers after the optimizer
  Duration end;            // its last task, any stream
  int buckets = 0;         // gradient buckets per iteration
};

struct AnalyticalEstimate {
  Duration iteration_time;
  // The bottleneck stage's breakdown (see the header):
  // iteration_time = pipeline + exposed_dp + optimizer + param_gather.
  Duration pipeline;      // its forward/backward schedule, bubble included
  Duration bubble;        // pipeline − m·(F + B) − p2p_exposed
  Duration p2p_exposed;
  Duration exposed_dp;
  Duration optimizer;
  Duration param_gather;
  int bottleneck_stage = 0;  // the stage that ends last (the first of equals)
  int micro_batches = 0;
  Duration p2p_transfer;  // one transfer stage 0 → 1 alone (zero when pp == 1)
  Bytes p2p_bytes;
  std::vector<AnalyticalStage> stages;
  double samples_per_s = 0;
  double tokens_per_s = 0;
  Bytes peak_memory;  // worst stage, costmodel::EstimateMemory
  bool fits = false;
};

struct AnalyticalOptions {
  TrainingGraphOptions graph;
  // As IterationOptions::free_communication: every collective and transfer
  // costs nothing.
  bool free_communication = false;
  // As IterationOptions::overlap_slowdown (and its default): compute that
  // starts while the data-parallel stream communicates lasts (1 + σ) times
  // longer (step 3 of the header).
  double overlap_slowdown = IterationOptions{}.overlap_slowdown;
  // Slow devices (sim/faults.h). A rank's factor is the product of its
  // faults; every compute task (forward, backward, recompute, optimizer
  // step) of pipeline stage s takes φ_s times as long, φ_s the largest
  // factor among the ranks of stage s over all replicas: the replica
  // holding the slow rank runs that stage at its pace (its tensor-parallel
  // group waits for it every layer), and the other replicas wait for it at
  // the gradient reduction — the event simulation's lane rule (IterationOptions::
  // faults) seen from replica 0: equal to it when the slow ranks share a
  // replica, an upper bound when they sit in different replicas and
  // stages (both stages are slowed in one). Degraded links are not modelled here;
  // the event simulation has them. InvalidArgument for a rank outside the
  // plan's devices or a factor outside [1, kMaxFaultFactor].
  std::vector<SlowDevice> slow_devices;
};

class AnalyticalModel {
 public:
  // A model of `cluster` with nominal compute models for every precision
  // its primary device has a peak for, and the nominal collective model.
  // InvalidArgument when the cluster is invalid or no cost model can be
  // built for it.
  static Result<AnalyticalModel> Create(const topology::ClusterSpec& cluster);
  // The same with the cluster's calibration (costmodel/calibration.h;
  // nullptr: as above): compute models for every precision built by
  // costmodel::CalibratedComputeModel, the collective model by
  // CalibratedCollectiveModel, and the calibration's optimizer time per
  // parameter used wherever the options do not set one. Its overlap
  // slowdown is not applied: AnalyticalOptions::overlap_slowdown is.
  // InvalidArgument when the calibration was made for another device.
  static Result<AnalyticalModel> Create(const topology::ClusterSpec& cluster,
                                        const costmodel::Calibration* calibration);
  // The same with given cost models (profiled compute, calibrated
  // collectives); `compute` holds at most one model per precision, all of
  // the cluster's primary device.
  static Result<AnalyticalModel> Create(const topology::ClusterSpec& cluster,
                                        std::vector<costmodel::ComputeModel> compute,
                                        costmodel::CollectiveModel collectives);

  AnalyticalModel(AnalyticalModel&&) noexcept;
  AnalyticalModel& operator=(AnalyticalModel&&) noexcept;
  ~AnalyticalModel();

  // The estimate of one iteration. FailedPrecondition when the plan does
  // not fit the model and cluster (ValidatePlan); InvalidArgument when no
  // compute model is held for the plan's precision or a cost model rejects
  // a group or the options are out of range (a negative size, σ < 0);
  // Unimplemented for layouts the simulator does not model either (tp
  // differing within a stage).
  Result<AnalyticalEstimate> Estimate(const workload::ModelSpec& model,
                                      const workload::Plan& plan,
                                      const AnalyticalOptions& options) const;
  // The same with AnalyticalOptions{.graph = graph}: the simulation's
  // default overlap slowdown, communication timed.
  Result<AnalyticalEstimate> Estimate(const workload::ModelSpec& model,
                                      const workload::Plan& plan,
                                      const TrainingGraphOptions& graph = {}) const;
  // The same without ValidatePlan, which costs more than the estimate on
  // large clusters (milliseconds at 1,024 ranks): for callers that have
  // checked the plan once (the search). REQUIRES: ValidatePlan(plan, model,
  // cluster()) is OK.
  Result<AnalyticalEstimate> EstimateValidated(const workload::ModelSpec& model,
                                               const workload::Plan& plan,
                                               const AnalyticalOptions& options) const;
  Result<AnalyticalEstimate> EstimateValidated(const workload::ModelSpec& model,
                                               const workload::Plan& plan,
                                               const TrainingGraphOptions& graph = {}) const;

  const topology::ClusterSpec& cluster() const { return cluster_; }
  const costmodel::CollectiveModel& collectives() const { return collectives_; }
  // The compute model of `precision`, if held.
  const costmodel::ComputeModel* compute(topology::Precision precision) const;
  // The calibration's optimizer step per parameter held, if the model was
  // created with one that measured it.
  const std::optional<Duration>& optimizer_time_per_parameter() const {
    return optimizer_time_per_parameter_;
  }

 private:
  AnalyticalModel(topology::ClusterSpec cluster, std::vector<costmodel::ComputeModel> compute,
                  costmodel::CollectiveModel collectives, topology::Topology topology);

  topology::ClusterSpec cluster_;
  std::vector<costmodel::ComputeModel> compute_;
  costmodel::CollectiveModel collectives_;
  std::unique_ptr<topology::Topology> topology_;
  std::optional<Duration> optimizer_time_per_parameter_;
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_ANALYTICAL_H_
