// StageCosts: what one micro-batch costs on one lane of each pipeline stage
// (each model chunk of it), layer by layer — the numbers both the event
// simulation (sim/training_graph.h) and the analytical fast path
// (sim/analytical.h) are built from, so that where no traffic contends the
// two can only differ by how they combine them.
//
// Per model layer of a chunk (embedding on the first virtual stage, the
// transformer blocks, the LM head on the last):
//   * compute: costmodel::ComputeModel::EstimateLayer of
//     workload::ExpandLayer(model, kind, b, s, {tp, sp, cp, ep}) with b the
//     layer's micro-batch size: forward and backward time; recompute: the
//     forward again before the backward (full recomputation of a block), or
//     the forward of the operators marked recomputed_selectively
//     (selective);
//   * the collectives in the compute path, per pass (forward; backward):
//       TP: two all-reduces of b·(s/cp)·h·2 bytes per block (Megatron's f
//           and g operators, Shoeybi et al. 2019 §3), or with sequence
//           parallelism an all-gather and a reduce-scatter in their place
//           (Korthikanti et al. 2022 §4.2.2); the embedding and head have
//           one all-reduce forward (vocabulary-parallel);
//       CP: the ring exchange of keys and values, cp − 1 steps each moving
//           2·b·(s/cp)·(h_kv/tp)·2 bytes, forward; twice that backward
//           (keys, values and their gradients) — as one all-gather of the
//           keys and values over the cp group (Megatron-Core's
//           all-gather-based CP moves the same bytes), not overlapped with
//           attention in this model;
//       EP: per MoE block two all-to-alls (dispatch, combine) forward and
//           two backward over the ep group, of b·s/cp·top_k·h·2 bytes each
//           (the routed tokens, bf16);
//     each as (op, group, bytes, count) with its uncontended time from the
//     collective model (CollectiveFlows);
//   * parameters held by one rank (after tp and ep), for the gradient
//     reduction, ZeRO and the optimizer step;
//   * activations saved by the forward for the backward (what remains
//     after recomputation drops its part), for the memory tracking.
//
// Per stage: the p2p bytes of one activation (or gradient) send to the
// next stage: b·(s/cp)·h·2 bytes, from each tp rank (Megatron-LM without
// the scatter-gather optimisation), or /tp with it.
//
// Thread-safety: pure functions of their arguments.
#ifndef ORRERY_SIM_STAGE_COSTS_H_
#define ORRERY_SIM_STAGE_COSTS_H_

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/operators.h"
#include "workload/pipeline_schedule.h"
#include "workload/plan.h"

namespace orrery::sim {

// One kind of collective a layer pass runs in its compute path.
struct PathCollective {
  workload::ParallelDim dim = workload::ParallelDim::kTp;  // kTp, kCp or kEp
  costmodel::CollectiveOp op = costmodel::CollectiveOp::kAllReduce;
  Bytes size;                  // one call's buffer (nccl-tests' size)
  int count = 1;               // calls per pass
  Duration uncontended;        // count calls, from the collective model
};

struct LayerCost {
  int model_layer = 0;   // index into workload::ModelLayers(model)
  int plan_layer = 0;    // index of its strategy in plan.layers (clamped for embedding/head)
  workload::LayerKind kind = workload::LayerKind::kDecoderBlock;
  Duration forward;      // compute only
  Duration backward;     // compute only, without recomputation
  Duration recompute;    // before the backward (zero without recomputation)
  std::vector<PathCollective> forward_comm;
  std::vector<PathCollective> backward_comm;
  int64_t parameters = 0;    // held by one rank before ZeRO (after tp, ep)
  Bytes saved_activations;   // kept from forward to backward, one micro-batch
  Bytes recompute_activations;  // rebuilt during the backward (recomputation)

  Duration ForwardComm() const;   // Σ forward_comm uncontended
  Duration BackwardComm() const;
};

// The layers of one model chunk of one stage (virtual stage chunk·p + stage).
struct ChunkCost {
  int stage = 0;
  int chunk = 0;
  std::vector<LayerCost> layers;  // in execution order

  Duration Forward() const;   // Σ layers' forward + forward comm
  Duration Backward() const;  // Σ layers' recompute + backward + backward comm
  int64_t Parameters() const;
};

struct StageCostOptions {
  bool flash_attention = true;
  // Megatron-LM's scatter-gather of pipeline sends over the tp ranks
  // (SC21 §4.1): each tp rank sends 1/tp of the activations.
  bool scatter_gather_p2p = true;
};

struct StageCostTable {
  int pp = 1;
  int vpp = 1;  // chunks per stage (1 unless interleaved)
  // chunks[stage * vpp + chunk]
  std::vector<ChunkCost> chunks;
  Bytes p2p_bytes;  // one activation send from one tp rank
  const ChunkCost& chunk(int stage, int c) const {
    return chunks[static_cast<size_t>(stage * vpp + c)];
  }
};

// The layers of each (stage, chunk): workload::ChunkLayerRanges.
using workload::ChunkLayerRanges;

// Builds the table. `collective_time` gives the uncontended time of `count`
// calls of a path collective for layer `plan_layer` (the caller knows the
// groups: CollectiveFlows for the simulator, the collective model on
// PackRanks-style groups for the analytical path).
class PathCollectiveTimer {
 public:
  virtual ~PathCollectiveTimer() = default;
  virtual Result<Duration> Time(int plan_layer, workload::ParallelDim dim,
                                costmodel::CollectiveOp op, Bytes size) = 0;
};

Result<StageCostTable> BuildStageCosts(const workload::ModelSpec& model,
                                       const workload::Plan& plan,
                                       const costmodel::ComputeModel& compute,
                                       PathCollectiveTimer* collectives,
                                       const StageCostOptions& options = {});

}  // namespace orrery::sim

#endif  // ORRERY_SIM_STAGE_COSTS_H_
