#include "sim/stage_costs.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"

namespace orrery::sim {
namespace {

using costmodel::CollectiveOp;
using workload::LayerKind;
using workload::LayerStrategy;
using workload::ParallelDim;

std::string Str(int64_t v) { return std::to_string(v); }

bool IsBlock(LayerKind kind) {
  return kind != LayerKind::kEmbedding && kind != LayerKind::kPatchEmbedding &&
         kind != LayerKind::kLmHead;
}

Duration Sum(const std::vector<PathCollective>& comm) {
  Duration total;
  for (const PathCollective& c : comm) total += c.uncontended;
  return total;
}

// Appends `count` calls of `op` of `size` bytes over `dim`, timed by `timer`
// one call at a time (the timer sees the call's real size).
Status AddCollective(PathCollectiveTimer* timer, int plan_layer, ParallelDim dim, CollectiveOp op,
                     Bytes size, int count, std::vector<PathCollective>* out) {
  if (count <= 0 || size <= Bytes::Zero()) return Status::Ok();
  ORRERY_ASSIGN_OR_RETURN(Duration one, timer->Time(plan_layer, dim, op, size));
  out->push_back({.dim = dim, .op = op, .size = size, .count = count, .uncontended = one * count});
  return Status::Ok();
}

// The collectives in the compute path of one layer under strategy `st`
// (see the header for the sources of each).
Status AddPathCollectives(const workload::ModelSpec& model, LayerKind kind, const LayerStrategy& st,
                          int64_t b, int64_t seq, int plan_layer, PathCollectiveTimer* timer,
                          LayerCost* cost) {
  const int64_t tokens = b * (seq / st.cp);
  const Bytes hidden(tokens * model.hidden_size * 2);
  std::vector<PathCollective>& fwd = cost->forward_comm;
  std::vector<PathCollective>& bwd = cost->backward_comm;
  if (st.tp > 1) {
    const bool sp = st.sequence_parallel;
    switch (kind) {
      case LayerKind::kEmbedding:
      case LayerKind::kPatchEmbedding:
        // Vocabulary-parallel embedding: its partial outputs are summed
        // (reduce-scattered into the sequence-parallel region with SP);
        // the backward needs no collective.
        ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kTp,
                                             sp ? CollectiveOp::kReduceScatter
                                                : CollectiveOp::kAllReduce,
                                             hidden, 1, &fwd));
        break;
      case LayerKind::kLmHead:
        // Column-parallel output layer: identity forward (all-gather of the
        // sequence with SP), all-reduce of the input gradient backward
        // (reduce-scatter with SP). The vocabulary-parallel cross-entropy's
        // all-reduces of b·s floats are negligible and left out.
        if (sp) {
          ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kTp,
                                               CollectiveOp::kAllGather, hidden, 1, &fwd));
        }
        ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kTp,
                                             sp ? CollectiveOp::kReduceScatter
                                                : CollectiveOp::kAllReduce,
                                             hidden, 1, &bwd));
        break;
      default: {
        // Megatron's f and g around attention and MLP (cross-attention
        // blocks have a third pair).
        const int pairs = kind == LayerKind::kCrossAttentionBlock ? 3 : 2;
        for (std::vector<PathCollective>* pass : {&fwd, &bwd}) {
          if (sp) {
            ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kTp,
                                                 CollectiveOp::kAllGather, hidden, pairs, pass));
            ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kTp,
                                                 CollectiveOp::kReduceScatter, hidden, pairs,
                                                 pass));
          } else {
            ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kTp,
                                                 CollectiveOp::kAllReduce, hidden, pairs, pass));
          }
        }
        break;
      }
    }
  }
  if (st.cp > 1 && IsBlock(kind)) {
    // Keys and values of the whole sequence gathered over the cp ranks
    // (the buffer nccl-tests would call the size), and in the backward
    // gathered again and their gradients reduce-scattered.
    const int64_t kv_hidden = int64_t{model.num_kv_heads} * model.head_dim / st.tp;
    const Bytes kv(2 * b * seq * kv_hidden * 2);
    ORRERY_RETURN_IF_ERROR(
        AddCollective(timer, plan_layer, ParallelDim::kCp, CollectiveOp::kAllGather, kv, 1, &fwd));
    ORRERY_RETURN_IF_ERROR(
        AddCollective(timer, plan_layer, ParallelDim::kCp, CollectiveOp::kAllGather, kv, 1, &bwd));
    ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kCp,
                                         CollectiveOp::kReduceScatter, kv, 1, &bwd));
  }
  if (st.ep > 1 && kind == LayerKind::kMoeDecoderBlock) {
    // Token dispatch and combine, forward and (their gradients) backward:
    // each rank sends its routed tokens, top_k copies of b·(s/cp) tokens.
    const Bytes routed(tokens * model.experts_per_token * model.hidden_size * 2);
    ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kEp,
                                         CollectiveOp::kAllToAll, routed, 2, &fwd));
    ORRERY_RETURN_IF_ERROR(AddCollective(timer, plan_layer, ParallelDim::kEp,
                                         CollectiveOp::kAllToAll, routed, 2, &bwd));
  }
  return Status::Ok();
}

}  // namespace

Duration LayerCost::ForwardComm() const { return Sum(forward_comm); }
Duration LayerCost::BackwardComm() const { return Sum(backward_comm); }

Duration ChunkCost::Forward() const {
  Duration total;
  for (const LayerCost& l : layers) total += l.forward + l.ForwardComm();
  return total;
}

Duration ChunkCost::Backward() const {
  Duration total;
  for (const LayerCost& l : layers) total += l.recompute + l.backward + l.BackwardComm();
  return total;
}

int64_t ChunkCost::Parameters() const {
  int64_t total = 0;
  for (const LayerCost& l : layers) total += l.parameters;
  return total;
}

Result<StageCostTable> BuildStageCosts(const workload::ModelSpec& model,
                                       const workload::Plan& plan,
                                       const costmodel::ComputeModel& compute,
                                       PathCollectiveTimer* collectives,
                                       const StageCostOptions& options) {
  ORRERY_CHECK(collectives != nullptr);
  if (plan.layers.empty()) return InvalidArgumentError("plan: no layers");
  const std::vector<LayerKind> kinds = workload::ModelLayers(model);
  if (static_cast<int>(kinds.size()) != plan.num_layers() + 2) {
    return InvalidArgumentError("plan: " + Str(plan.num_layers()) + " layer strategies for a model of " +
                                Str(static_cast<int64_t>(kinds.size()) - 2) + " layers");
  }
  StageCostTable table;
  table.pp = plan.pp;
  table.vpp = plan.schedule == workload::PipelineSchedule::kInterleaved ? plan.vpp : 1;
  const int64_t seq = plan.sequence_length;
  const std::vector<std::pair<int, int>> ranges = ChunkLayerRanges(plan);
  workload::ExpansionOptions expansion;
  expansion.flash_attention = options.flash_attention;
  // Layers of one kind under one strategy and micro-batch cost the same (a
  // uniform plan repeats one layer L times): expand and time each once.
  using Key = std::tuple<int, int, int, int, int, int, bool, int, int64_t>;
  std::map<Key, LayerCost> seen;

  for (int s = 0; s < table.pp; ++s) {
    for (int c = 0; c < table.vpp; ++c) {
      ChunkCost chunk;
      chunk.stage = s;
      chunk.chunk = c;
      const auto [first, count] = ranges[static_cast<size_t>(s * table.vpp + c)];
      // Model layers: block i is kinds[i + 1]; the embedding runs on
      // virtual stage 0, the head on the last.
      int from = first + 1;
      int to = first + count + 1;
      if (s == 0 && c == 0) from = 0;
      if (s == table.pp - 1 && c == table.vpp - 1) to = static_cast<int>(kinds.size());
      for (int k = from; k < to; ++k) {
        const int plan_layer = std::clamp(k - 1, 0, plan.num_layers() - 1);
        const LayerKind kind = kinds[static_cast<size_t>(k)];
        const LayerStrategy& st = plan.layers[static_cast<size_t>(plan_layer)];
        const int64_t b = plan.MicroBatchSizeOfLayer(plan_layer);
        const Key key{static_cast<int>(kind), st.tp, st.cp, st.dp, st.ep, st.zero_stage,
                      st.sequence_parallel, static_cast<int>(st.recompute), b};
        if (const auto it = seen.find(key); it != seen.end()) {
          LayerCost cost = it->second;
          cost.model_layer = k;
          cost.plan_layer = plan_layer;
          chunk.layers.push_back(std::move(cost));
          continue;
        }
        LayerCost cost;
        cost.model_layer = k;
        cost.plan_layer = plan_layer;
        cost.kind = kind;
        Result<workload::LayerOperators> expanded = workload::ExpandLayer(
            model, cost.kind, b, seq,
            {.tp = st.tp, .sequence_parallel = st.sequence_parallel, .cp = st.cp, .ep = st.ep},
            expansion);
        if (!expanded.ok()) {
          return InvalidArgumentError("plan.layers[" + Str(cost.plan_layer) +
                                      "]: " + expanded.status().message());
        }
        const workload::LayerOperators& ops = *expanded;
        const costmodel::ComputeEstimate e = compute.EstimateLayer(ops);
        cost.forward = e.forward;
        cost.backward = e.backward;
        cost.parameters = ops.Parameters();
        const Bytes full = ops.SavedActivations(false);
        const workload::Recompute recompute =
            IsBlock(cost.kind) ? st.recompute : workload::Recompute::kNone;
        switch (recompute) {
          case workload::Recompute::kNone:
            cost.saved_activations = full;
            break;
          case workload::Recompute::kSelective:
            // Korthikanti §5: the attention core is dropped and recomputed.
            cost.saved_activations = ops.SavedActivations(true);
            cost.recompute_activations = full - cost.saved_activations;
            for (const workload::Operator& op : ops.ops) {
              if (op.recomputed_selectively) cost.recompute += compute.Estimate(op).forward;
            }
            break;
          case workload::Recompute::kFull: {
            // Korthikanti Table 2: only the layer input, 2sbh (/t with SP,
            // /cp with CP), is kept; the whole forward runs again.
            const int64_t split = st.sequence_parallel ? st.tp : 1;
            cost.saved_activations =
                Bytes(2 * b * (seq / st.cp) * model.hidden_size / split);
            cost.recompute_activations = full;
            cost.recompute = e.forward;
            break;
          }
        }
        ORRERY_RETURN_IF_ERROR(
            AddPathCollectives(model, cost.kind, st, b, seq, cost.plan_layer, collectives, &cost));
        seen.emplace(key, cost);
        chunk.layers.push_back(std::move(cost));
      }
      table.chunks.push_back(std::move(chunk));
    }
  }
  const LayerStrategy& first = plan.layers.front();
  const int64_t b = plan.MicroBatchSizeOfLayer(0);
  const int64_t split = options.scatter_gather_p2p ? first.tp : 1;
  table.p2p_bytes = Bytes(b * (seq / first.cp) * model.hidden_size * 2 / split);
  return table;
}

}  // namespace orrery::sim
