// SimulateIteration: one training iteration of a model under a plan on a
// cluster, replayed on the event engine (sim/task_graph.h) with compute
// timed by the compute model and pipeline traffic as flows on the cluster's
// topology. The first working slice of issue #5's task graph.
//
// What it simulates. One pipeline: the pp ranks of data-parallel replica 0
// (the ranks of RankGroups(plan, 0, kPp) that hold rank 0). In a plan whose
// layers share one strategy every replica does the same work at the same
// time, so one pipeline gives the iteration time; the pipelines' traffic
// does not contend in this slice.
//
// Where each cost comes from:
//   * Stage compute (per micro-batch): Σ over the stage's layers of
//     ComputeModel::EstimateLayer of workload::ExpandLayer(model, kind,
//     plan.MicroBatchSizeOfLayer(i), sequence_length, {tp, sp, cp, ep}).
//     Stage 0 also runs the embedding, the last stage the LM head (the
//     layout of the first / last transformer layer). Recomputation: full
//     adds the layer's forward to its backward; selective adds the forward
//     of the operators marked recomputed_selectively.
//   * Tensor/sequence-parallel collectives, in the compute path: per
//     transformer layer with tp > 1, two all-reduces forward and two
//     backward of b·(s/cp)·h·2 bytes (Megatron's f/g operators; Shoeybi et
//     al. 2019 §3), or with sequence parallelism an all-gather plus a
//     reduce-scatter in their place (Korthikanti et al. 2022 §4.2.2), each
//     timed by costmodel::CollectiveModel (NCCL's tuning model) on the tp
//     group (PackRanks). Analytic, not flows, in this slice.
//   * Pipeline traffic: after each forward, b·(s/cp)·h·2 bytes (bf16
//     activations of the boundary layer) from stage s to s+1, and the same
//     back as the gradient after each backward; flows on the TopologyNetwork
//     between the two stages' ranks, sharing links max-min. Sent whole
//     (Megatron's scatter-gather over the tp ranks is not modelled).
//   * Data-parallel gradient reduction after each stage's last backward:
//     an all-reduce of `gradient_bytes_per_parameter` bytes per parameter of
//     the stage (per rank) over the dp × cp ranks of the stage's first rank,
//     timed by CollectiveModel (analytic, not flows, and not overlapped with
//     backward, in this slice). With ZeRO ≥ 1 the reduce-scatter + all-gather
//     that replace it move the same bytes per rank (a ring all-reduce is a
//     reduce-scatter then an all-gather), so the same time is charged.
//   * Optimizer step: memory-bound, `optimizer_bytes_per_parameter` bytes
//     read plus written per parameter held by the rank (after ZeRO's
//     division by dp × cp) at the device's memory bandwidth times the
//     compute model's bandwidth efficiency. The default 12 is the fp32
//     master weight, momentum and variance of mixed-precision Adam, each
//     read or written once as the brief of issue #5 states it; a stated
//     approximation, not a measured figure.
//
// Results: iteration time (max over stages), tokens/s, samples/s, model
// FLOP/s per device with workload::TrainingFlopsPerToken (model FLOPs: no
// recomputation, PaLM App. B) over every device the plan uses, MFU against
// the device's dense peak at the plan's precision, and each stage's busy,
// bubble and exposed-communication times (sim/task_graph.h).
//
// Thread-safety: a pure function of its arguments.
#ifndef ORRERY_SIM_ITERATION_H_
#define ORRERY_SIM_ITERATION_H_

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "sim/task_graph.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::sim {

struct IterationOptions {
  // Communication costs nothing: no pipeline flows, no TP or DP collective
  // time. Compute and the optimizer step are unchanged.
  bool free_communication = false;
  // Bytes per parameter of the gradients the data-parallel group reduces
  // (2: bf16 gradients; 4 for Megatron's --accumulate-allreduce-grads-in-fp32).
  int gradient_bytes_per_parameter = 2;
  // Bytes read plus written per parameter by the optimizer step.
  int optimizer_bytes_per_parameter = 12;
  // Fused attention that never stores the s×s scores (workload/operators.h).
  bool flash_attention = true;
};

struct StageReport {
  int rank = 0;         // the stage's device in replica 0
  int first_layer = 0;  // transformer layers [first_layer, first_layer + layers)
  int layers = 0;
  int64_t parameters = 0;  // held by one rank of the stage (before ZeRO)
  Duration forward;        // per micro-batch, TP collectives included
  Duration backward;       // per micro-batch, TP collectives and recompute included
  Duration tp_comm;        // the TP/SP collective part of forward + backward
  Duration gradient_sync;  // the DP all-reduce after the last backward
  Duration optimizer;
  StageTimes times;        // busy, bubble, exposed communication, end
};

struct IterationReport {
  Duration iteration_time;
  double tokens_per_s = 0;
  double samples_per_s = 0;
  FlopRate model_flops_per_device;  // model FLOPs (no recomputation) / time / devices
  double mfu = 0;                   // model_flops_per_device / dense peak
  FlopRate peak_per_device;
  int devices = 0;                  // pp × tp × cp × dp of the plan
  int micro_batches = 0;
  workload::PipelineSchedule schedule = workload::PipelineSchedule::kOneFOneB;
  Bytes p2p_bytes;                  // one activation (or gradient) transfer
  std::vector<StageReport> stages;
  int64_t events = 0;
  int64_t flows = 0;
};

// Simulates one iteration. FailedPrecondition when the plan does not fit
// the model and cluster (ValidatePlan); InvalidArgument when the plan uses
// the interleaved schedule (not simulated yet) or a cost model cannot be
// built for the device. Layers of differing strategies are costed each with
// its own; the gradient group of a stage is that of its first layer and the
// pipeline transfers are sized by layer 0's micro-batch and cp. With
// `timeline` non-null, the replay of the pipeline is recorded into it
// (sim/task_graph.h; sim/chrome_timeline.h writes it as a Chrome trace).
Result<IterationReport> SimulateIteration(const workload::ModelSpec& model,
                                          const workload::Plan& plan,
                                          const topology::ClusterSpec& cluster,
                                          const IterationOptions& options = {},
                                          Timeline* timeline = nullptr);

}  // namespace orrery::sim

#endif  // ORRERY_SIM_ITERATION_H_
