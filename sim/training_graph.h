// BuildTrainingGraph: the task graph (sim/task_graph.h) of one training
// iteration of a model under a plan on a cluster — every lane of every
// pipeline stage of every data-parallel replica, every layer pass of every
// micro-batch in the order of the schedule, every collective and transfer.
//
// Lanes. One per (stage, tensor-parallel group): the ranks of the tp group
// of layer first_layer(stage) (workload::RankGroups(plan, layer, kTp)),
// with `replica` its index among the stage's lanes in rank order. A plan
// whose layers differ in tp uses the stage's first layer's tp groups for
// the whole stage (the others are rejected: Unimplemented).
//
// Compute stream of a lane, per operation of its stage's schedule
// (workload/pipeline_schedule.h: StageSchedule gives (forward|backward,
// micro-batch, chunk) in order):
//   forward of chunk c, micro-batch i: for each layer of the chunk in order
//     [ZeRO-3: wait for the layer's parameter all-gather]
//     compute task kForward (allocates the layer's saved activations)
//     then one communication task per parallel dimension with collectives
//     in the pass (kTensorParallel / kContextParallel / kExpertParallel),
//     on the lanes of that dimension's group (tp: the lane itself; cp, ep:
//     the lanes holding the group's ranks), its coflow the sum of the
//     pass's calls (StageCosts' PathCollective × count);
//   backward of chunk c, micro-batch i: for each layer in reverse order
//     [ZeRO-3: wait for the layer's parameter all-gather]
//     kRecompute compute task (if the layer recomputes; allocates the
//     recomputed activations), kBackward compute task (frees the layer's
//     saved and recomputed activations when it ends), then the pass's
//     communication tasks as in the forward.
// The first forward layer task of virtual stage v > 0 depends on the
// activation transfer of micro-batch i from virtual stage v − 1; the first
// backward task of v < p·vpp − 1 on the gradient transfer from v + 1.
// Transfers are communication tasks on the sender's pipeline-send stream,
// depending on the sender's last task of the pass, with a coflow of
// StageCostTable::p2p_bytes from each rank of the sending lane to the rank
// of the same tp index in the receiving lane.
//
// Data-parallel gradient reduction (Megatron-LM's DDP with
// overlap_grad_reduce, and ZeRO): the parameters of each chunk are cut, in
// backward order, into buckets of at least `bucket_parameters`; in the
// last micro-batch's backward of the chunk, when the backward of the layer
// that completes a bucket ends, a kGradientReduce task of the bucket's
// gradients (gradient_bytes_per_parameter bytes each) starts on the
// data-parallel stream, over the lanes of the stage's dp × cp group (all
// replicas whose ranks differ only in dp and cp coordinates; the tp ranks
// of a lane reduce in lock-step: one coflow): an all-reduce without ZeRO,
// a reduce-scatter with ZeRO-1/2. ZeRO-3 reduce-scatters each layer's
// gradients after its backward in every micro-batch. The optimizer step
// (kOptimizer, compute stream) depends on every reduction of the lane and
// takes optimizer_bytes_per_parameter bytes per parameter held (after
// ZeRO's division) at the device's memory bandwidth × the compute model's
// bandwidth efficiency. ZeRO-1/2 then all-gather the updated parameters in
// the same buckets (kParameterGather on the dp stream; Megatron-LM's
// distributed optimizer without --overlap-param-gather). ZeRO-3 gathers
// each layer's parameters before each of its forward and backward passes
// (prefetched: the gather of the next layer is issued when the current
// layer's pass starts; the gathered parameters are allocated at the
// gather's start and freed at the end of the pass that used them).
//
// Memory. Lane::static_memory is everything the memory model
// (costmodel::EstimateMemory) counts that the tasks do not allocate:
//   StageMemory::Total() − activations − recompute_activations
//   − (ZeRO-3 over dp·cp > 1) the gathered weights of two of the stage's
//     largest blocks (the layer in use and the one prefetched),
// i.e. model states, communication buffers, framework context and the
// fragmentation allowance (of everything, activations included), so that a
// lane's peak = static + the largest sum of activations (and ZeRO-3
// gathered parameters) in flight. The memory model is run with
// options.memory, its flash_attention taken from options.stage so that
// both count the same saved activations. Where the two differ (tests/sim/
// training_graph_test.cc): with recomputation the last stage frees the
// head's activations before its first block recomputes (replay lower by
// min(head's saved, largest recomputed)); with ZeRO-3 the last stage peaks
// at the head's backward, holding the head's weights and one block
// (replay lower by the difference); interleaved, a stage whose chunks save
// unequal activations (the embedding's) may peak after the first backward
// (replay higher by a fraction of a percent).
//
// The path collectives' times in `costs` (BuildStageCosts' timer) come from
// `flows` on the footprint of the layer's group of the first lane of the
// layer's stage, so that a communication task alone on the network takes
// what StageCosts says. Not modelled: the all-reduce of a tied embedding's
// gradient between the first and last stages; expert parameters reduce
// over the dp × cp group like the others (Megatron-Core reduces them over
// the expert data-parallel group). Buckets also close where the next layer
// (in backward order) reduces with another collective (ZeRO 0 vs 1/2); a
// chunk without layers runs one zero-time pass per micro-batch.
//
// The graph is returned finalized (TaskGraph::Finalize).
//
// Thread-safety: pure function of its arguments; `flows` is written (its
// caches).
#ifndef ORRERY_SIM_TRAINING_GRAPH_H_
#define ORRERY_SIM_TRAINING_GRAPH_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/compute.h"
#include "costmodel/memory.h"
#include "sim/collective_flows.h"
#include "sim/stage_costs.h"
#include "sim/task_graph.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::sim {

struct TrainingGraphOptions {
  StageCostOptions stage;
  // Bytes per parameter of the gradients the data-parallel group reduces
  // (2: bf16; 4: Megatron-LM's --accumulate-allreduce-grads-in-fp32).
  int gradient_bytes_per_parameter = 2;
  // Tensor-parallel collectives overlap the GEMMs of their layer pass
  // (Transformer Engine's userbuffers; Megatron-LM's --tp-comm-overlap):
  // each pass's TP communication task runs on the lane's tensor-parallel
  // stream beside its compute task, both starting when the previous pass's
  // two end, so a pass takes the longer of the two — perfect overlap, the
  // optimistic bound. Off: the collectives run between the GEMMs on the
  // compute stream.
  bool tp_comm_overlap = false;
  // Bytes read plus written per parameter by the optimizer step.
  int optimizer_bytes_per_parameter = 12;
  // The optimizer step's measured time per parameter held (a calibration's,
  // costmodel/calibration.h); when set it replaces
  // optimizer_bytes_per_parameter / streaming bandwidth.
  std::optional<Duration> optimizer_time_per_parameter;
  // Parameters per gradient bucket: Megatron-LM's DDP default
  // max(40,000,000, 1,000,000 × dp) (distributed_data_parallel.py).
  // 0: that default.
  int64_t bucket_parameters = 0;
  // The memory model's options (flash_attention is taken from `stage`).
  costmodel::MemoryOptions memory;
};

struct TrainingGraph {
  TaskGraph graph;
  StageCostTable costs;
  costmodel::MemoryEstimate memory;  // the closed-form estimate, per stage
  // lanes_of_stage[s]: the lanes of stage s in replica order.
  std::vector<std::vector<LaneId>> lanes_of_stage;
  Duration optimizer;  // one optimizer step of the stage that holds the most
};

// Builds the graph; its coflows' footprints are registered in `flows`.
// FailedPrecondition when the plan does not fit the model and cluster
// (ValidatePlan); Unimplemented for layouts this builder does not model
// (tp differing within a stage; a rank order under which a layer's cp, ep
// or dp × cp groups cut across a stage's tp groups, or layers put ranks in
// different stages).
// InvalidArgument for negative options or a schedule StageSchedule cannot
// order (workload/pipeline_schedule.h: CheckStageSchedule; ValidatePlan already
// reports interleaving with micro-batches not a multiple of pp).
Result<TrainingGraph> BuildTrainingGraph(const workload::ModelSpec& model,
                                         const workload::Plan& plan,
                                         const topology::ClusterSpec& cluster,
                                         const costmodel::ComputeModel& compute,
                                         CollectiveFlows* flows,
                                         const TrainingGraphOptions& options = {});

}  // namespace orrery::sim

#endif  // ORRERY_SIM_TRAINING_GRAPH_H_
