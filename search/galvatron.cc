// `galvatron`: decision-tree pruning of per-layer strategies and a dynamic
// program over layers under the memory budget (Miao et al., "Galvatron:
// Efficient Transformer Training over Multiple GPUs Using Automatic
// Parallelism", VLDB 2023, §4; Wang et al., "Improving Automatic
// Parallel Training via Balanced Memory Workload Optimization"
// (Galvatron-BMW), TKDE 2024), extended to optimise the pipeline's real
// objective jointly with the stage partition.
//
// Galvatron fixes the pipeline degree and an even stage partition, prunes
// the per-layer strategies with a decision tree, and for each stage runs a
// knapsack-like DP  C(l, E) = min_s C(l − 1, E − e_s) + t_s  (layers l,
// memory E) that minimises the stage's summed layer time; the pipeline
// formula is applied only afterwards. Here, for each pipeline class
// (pp, micro-batch count m, schedule and vpp, device order — the stage
// partition is left free):
//
//   1. Per-layer costs. For every strategy the class admits
//      (Space::LayerCandidates, filtered by Space::Compatible), the layer's
//      forward, backward, recomputation and path collectives come from
//      sim::BuildStageCosts on a probe plan of one block of each kind on
//      one stage's devices (pp = 1, the same local micro-batch and device
//      order, so the same groups as stage 0 of the real plan), with the
//      path collectives timed by the evaluator's collective model on the
//      group's shape, as the analytical model times them. A layer's cost
//      per micro-batch is
//          u = F + B + R (+ ZeRO-3's waits: max(F, gather) + max(B, gather
//              + reduce-scatter) in place of F + B)
//              + (optimizer step + ZeRO-1/2 parameter gather
//                 + max(0, gradient reduction − B)) / m,
//      the last term the once-per-iteration work spread over the
//      micro-batches. The optimizer step is the parameters held × the
//      calibrated time per parameter when the request has one
//      (TrainingGraphOptions::optimizer_time_per_parameter, filled from the
//      calibration by the evaluator), else their bytes at the streaming
//      bandwidth. With an overlap slowdown σ (SearchRequest::
//      overlap_slowdown) the compute that overlaps data-parallel
//      communication is charged σ more: σ·min(B, reduction) once, ZeRO-3
//      σ·(min(F, gather) + min(B, gather + reduce-scatter)) per micro-batch.
//      Its memory at stage s is
//          states (the ZeRO paper's (2 + 2 + K)Ψ split as its stage says)
//          + saved activations × in-flight micro-batches of s
//            (costmodel::InFlightMicroBatches, per chunk when interleaved),
//      and what the memory model counts once per stage (the recomputed
//      layer's activations, ZeRO-3's gathered weights, ZeRO-2's bucket, the
//      pipeline buffers, the embedding and head) is carried by the stage's
//      first layer; the whole times the fragmentation allowance, plus the
//      framework's context (costmodel/memory.h term by term).
//   2. Decision-tree pruning (Galvatron §4.2): tensor-parallel groups stay
//      inside a node (tp <= devices per node); a strategy is dropped when
//      another of the same stage layout (same tp; same cp and dp when tp is
//      not innermost) is no slower and no larger on every term of step 1
//      (dominated). A class whose lower bound (every layer at its fastest,
//      stages balanced) is above the objective of the last solution that
//      step 5 would score is not solved (dominated).
//   3. Per stage s and stage layout g, the Galvatron knapsack over layers
//      with the memory discretised into 512 buckets of the usable budget:
//          F_s,g(k, c) = min over strategies j of F_s,g(k − 1, c − w_j,s) + u_j,
//      over multisets of strategies, the one with the largest once-per-stage
//      term placed first (it carries that term); f_s,g(k) = min_{c <= cap} F
//      is the stage of k layers (per start layer for encoder-decoder
//      models, whose blocks differ).
//   4. The partition: stage times c_s = f_s,g(k_s) over contiguous ranges
//      (each k_s a multiple of vpp), minimising the pipeline's time, not
//      the per-stage sum:
//          T = (m − 1/v)·max_s c_s + Σ_s c_s / v
//      (1F1B: (m − 1)·max + Σ, which is (m + p − 1)·c for equal stages,
//      Narayanan et al. SC21 Eq. 1; interleaved: (m + (p − 1)/v)·c, Eq. 2).
//      With slow devices (SearchRequest::faults) c_s is multiplied by the
//      largest factor among stage s's ranks, the analytical model's rule,
//      so a slow stage gets fewer layers.
//      For a bottleneck bound τ a DP over (stage, first layer) gives the
//      least Σ c_s with every c_s <= τ; a binary search over the candidate
//      stage times finds the least feasible τ*, then τ is raised through
//      the candidates while (m − 1/v)·τ + Σ_min/v can still beat the best.
//   5. Every class's best few solutions become plans (Space::BuildPlan);
//      the best max(64, 16·top_k) by the DP's objective are validated and
//      scored by the evaluator (Evaluator::Evaluate: ValidatePlan, the
//      memory model, the analytical model). The classes of the best 32 are
//      re-solved (up to 3 rounds) with each stage's budget corrected by the
//      memory model's verdict on their last plan, and those plans scored.
//      The best request.top_k × 4 plans by that score are returned.
//
// Classes, probes and the scoring run in parallel (OpenMP); every result
// lands in its own slot and is reduced in index order, so the answer does
// not depend on the thread count (unless the time limit stops the search).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <omp.h>

#include "core/check.h"
#include "core/status.h"
#include "core/units.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "costmodel/memory.h"
#include "search/search.h"
#include "search/space.h"
#include "sim/collective_flows.h"
#include "sim/stage_costs.h"
#include "workload/model_spec.h"
#include "workload/operators.h"
#include "workload/plan.h"

namespace orrery::search {
namespace {

using costmodel::CollectiveOp;
using workload::LayerKind;
using workload::LayerStrategy;
using workload::ParallelDim;
using workload::PipelineSchedule;
using workload::Recompute;

constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
// Memory buckets of the usable budget in the stage knapsack.
constexpr int kBuckets = 512;
// Solutions kept per class, plans scored in the first round, classes
// re-solved with corrected budgets.
constexpr int kSolutionsPerClass = 3;
constexpr int kMinScored = 64;
constexpr int kRepaired = 32;
constexpr int kRepairRounds = 3;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

bool IsBlock(LayerKind k) {
  return k == LayerKind::kEncoderBlock || k == LayerKind::kDecoderBlock ||
         k == LayerKind::kMoeDecoderBlock || k == LayerKind::kCrossAttentionBlock;
}

// ---------------------------------------------------------------------------
// Probes: the costs of one block of each kind, and of the embedding and the
// head, under one strategy on one stage's devices.

struct ProbeKey {
  int tp, cp, dp, ep, sp, recompute, local_batch, order;
  auto Tie() const { return std::tie(tp, cp, dp, ep, sp, recompute, local_batch, order); }
  bool operator<(const ProbeKey& o) const { return Tie() < o.Tie(); }
};

struct BlockCost {
  int64_t forward = 0;   // picos: compute + path collectives
  int64_t backward = 0;  // picos: recompute + compute + path collectives
  int64_t parameters = 0;
  int64_t activations = 0;  // saved per micro-batch, bytes
  int64_t recomputed = 0;    // rebuilt during the backward (recomputation), bytes
  // On the stage's dp × cp group: gradient all-reduce and reduce-scatter,
  // parameter all-gather of this block (picos).
  int64_t all_reduce = 0;
  int64_t reduce_scatter = 0;
  int64_t all_gather = 0;
};

struct Probe {
  bool ok = false;
  std::string error;
  std::vector<BlockCost> blocks;  // per block kind of the model (1 or 2)
  BlockCost first;                // the layers before the first block (embedding)
  BlockCost last;                 // after the last block (head)
};

// The uncontended time of one call on `ranks`, as the analytical model
// times a group (zero for one rank or nothing to move).
Result<int64_t> GroupTime(const costmodel::CollectiveModel& model, CollectiveOp op, Bytes size,
                          const std::optional<costmodel::RankGroup>& shape) {
  if (!shape.has_value() || size <= Bytes::Zero()) return int64_t{0};
  ORRERY_ASSIGN_OR_RETURN(const costmodel::CollectiveEstimate e,
                          model.Estimate(op, size, *shape));
  return e.time.picos();
}

// The shapes (sim::ShapeOfGroup) of the groups holding rank 0 of one
// stage layout on one stage's devices; nullopt for a group of one rank.
struct LayoutKey {
  int tp, cp, dp, ep, order;
  auto Tie() const { return std::tie(tp, cp, dp, ep, order); }
  bool operator<(const LayoutKey& o) const { return Tie() < o.Tie(); }
};
struct LayoutGroups {
  std::optional<costmodel::RankGroup> tp, cp, ep, dp_cp;
};

std::vector<int> GroupHolding(const std::vector<std::vector<int>>& groups, int rank) {
  for (const std::vector<int>& g : groups) {
    if (std::find(g.begin(), g.end(), rank) != g.end()) return g;
  }
  return {};
}

// Path collectives on the probe plan's groups holding rank 0 (stage 0's
// first rank in the real plan: pp is the outermost dimension of every
// order the space uses).
class ProbeTimer final : public sim::PathCollectiveTimer {
 public:
  ProbeTimer(const LayoutGroups* groups, const costmodel::CollectiveModel* model)
      : groups_(groups), model_(model) {}

  Result<Duration> Time(int, ParallelDim dim, CollectiveOp op, Bytes size) override {
    const std::optional<costmodel::RankGroup>& shape =
        dim == ParallelDim::kTp ? groups_->tp
                                : (dim == ParallelDim::kCp ? groups_->cp : groups_->ep);
    ORRERY_ASSIGN_OR_RETURN(const int64_t t, GroupTime(*model_, op, size, shape));
    return Duration::FromPicos(t);
  }

 private:
  const LayoutGroups* groups_;
  const costmodel::CollectiveModel* model_;
};

BlockCost CostOf(const sim::LayerCost& c) {
  BlockCost b;
  b.forward = (c.forward + c.ForwardComm()).picos();
  b.backward = (c.recompute + c.backward + c.BackwardComm()).picos();
  b.parameters = c.parameters;
  b.activations = c.saved_activations.count();
  b.recomputed = c.recompute_activations.count();
  return b;
}

void Accumulate(const BlockCost& c, BlockCost* into) {
  into->forward += c.forward;
  into->backward += c.backward;
  into->parameters += c.parameters;
  into->activations += c.activations;
}

// Everything the probes need that does not change between them.
struct ProbeContext {
  const SearchRequest* request = nullptr;
  const Space* space = nullptr;
  const costmodel::ComputeModel* compute = nullptr;
  const costmodel::CollectiveModel* collectives = nullptr;
  std::vector<workload::RankOrder> orders;
  workload::ModelSpec probe_model;  // one block of each kind
  int parameter_bytes = 2;
};

// A plan of one stage (pp = 1) of the probe model with every layer `st`.
workload::Plan ProbePlan(const ProbeContext& ctx, const LayerStrategy& st, int local_batch,
                         int order) {
  workload::Plan plan;
  plan.global_batch_size = local_batch * st.dp;
  plan.micro_batch_size = local_batch;
  plan.sequence_length = ctx.space->sequence_length();
  plan.precision = ctx.request->precision;
  plan.pp = 1;
  plan.rank_order = ctx.orders[static_cast<size_t>(order)];
  plan.layers.assign(static_cast<size_t>(ctx.probe_model.total_layers()), st);
  return plan;
}

LayoutGroups GroupsOf(const ProbeContext& ctx, const LayoutKey& key) {
  LayerStrategy st;
  st.tp = key.tp;
  st.cp = key.cp;
  st.dp = key.dp;
  st.ep = key.ep;
  const workload::Plan plan = ProbePlan(ctx, st, 1, key.order);
  const int dpn = ctx.space->devices_per_node();
  const auto shape = [&](const std::vector<int>& ranks) -> std::optional<costmodel::RankGroup> {
    if (ranks.size() <= 1) return std::nullopt;
    return sim::ShapeOfGroup(ranks, dpn);
  };
  LayoutGroups g;
  g.tp = shape(GroupHolding(workload::RankGroups(plan, 0, ParallelDim::kTp), 0));
  g.cp = shape(GroupHolding(workload::RankGroups(plan, 0, ParallelDim::kCp), 0));
  if (key.ep > 1) g.ep = shape(GroupHolding(workload::RankGroups(plan, 0, ParallelDim::kEp), 0));
  // The stage's gradient-reduction group: the ranks that differ from rank 0
  // only in dp and cp (the analytical model's GroupCache::DataParallel).
  std::set<int> members;
  const std::vector<std::vector<int>> dp_groups = workload::RankGroups(plan, 0, ParallelDim::kDp);
  for (int r : GroupHolding(workload::RankGroups(plan, 0, ParallelDim::kCp), 0)) {
    const std::vector<int> d = GroupHolding(dp_groups, r);
    members.insert(d.begin(), d.end());
  }
  g.dp_cp = shape(std::vector<int>(members.begin(), members.end()));
  return g;
}

Probe RunProbe(const ProbeContext& ctx, const ProbeKey& key, const LayoutGroups& groups) {
  Probe probe;
  const int blocks = ctx.probe_model.total_layers();
  LayerStrategy st;
  st.tp = key.tp;
  st.cp = key.cp;
  st.dp = key.dp;
  st.ep = key.ep;
  st.sequence_parallel = key.sp == 1;
  st.recompute = static_cast<Recompute>(key.recompute);
  const workload::Plan plan = ProbePlan(ctx, st, key.local_batch, key.order);
  ProbeTimer timer(&groups, ctx.collectives);
  Result<sim::StageCostTable> table =
      sim::BuildStageCosts(ctx.probe_model, plan, *ctx.compute, &timer, ctx.request->graph.stage);
  if (!table.ok()) {
    probe.error = table.status().ToString();
    return probe;
  }
  probe.blocks.resize(static_cast<size_t>(blocks));
  bool seen_block = false;
  for (const sim::LayerCost& c : table->chunk(0, 0).layers) {
    if (IsBlock(c.kind)) {
      probe.blocks[static_cast<size_t>(c.plan_layer)] = CostOf(c);
      seen_block = true;
    } else {
      Accumulate(CostOf(c), seen_block ? &probe.last : &probe.first);
    }
  }
  const int grad_bytes = ctx.request->graph.gradient_bytes_per_parameter;
  std::vector<BlockCost*> all;
  for (BlockCost& b : probe.blocks) all.push_back(&b);
  all.push_back(&probe.first);
  all.push_back(&probe.last);
  for (BlockCost* b : all) {
    Result<int64_t> ar = GroupTime(*ctx.collectives, CollectiveOp::kAllReduce,
                                   Bytes(b->parameters * grad_bytes), groups.dp_cp);
    Result<int64_t> rs = GroupTime(*ctx.collectives, CollectiveOp::kReduceScatter,
                                   Bytes(b->parameters * grad_bytes), groups.dp_cp);
    Result<int64_t> ag = GroupTime(*ctx.collectives, CollectiveOp::kAllGather,
                                   Bytes(b->parameters * ctx.parameter_bytes), groups.dp_cp);
    if (!ar.ok() || !rs.ok() || !ag.ok()) {
      probe.error = !ar.ok() ? ar.status().ToString()
                             : (!rs.ok() ? rs.status().ToString() : ag.status().ToString());
      return probe;
    }
    b->all_reduce = *ar;
    b->reduce_scatter = *rs;
    b->all_gather = *ag;
  }
  probe.ok = true;
  return probe;
}

// ---------------------------------------------------------------------------
// Classes: a pipeline shape with its partition left to the DP.

struct Item {
  LayerStrategy strategy;
  int group = 0;
  // Per block kind.
  std::vector<int64_t> time;         // u: picos per micro-batch, once-costs spread
  std::vector<int64_t> states;       // bytes
  std::vector<int64_t> activations;  // bytes per micro-batch
  // What the memory model counts once per stage rather than per layer, as
  // if this were the stage's largest such layer: the recomputed layer's
  // activations, ZeRO-3's gathered weights and unsharded gradient, ZeRO-2's
  // bucket, the pipeline send/receive buffers (pp > 1).
  int64_t peak_extra = 0;
  // The embedding (first stage) and head (last stage) under this strategy.
  int64_t first_time = 0, last_time = 0;
  int64_t first_states = 0, last_states = 0;
  int64_t first_activations = 0, last_activations = 0;
};

struct ClassInput {
  PipelineShape shape;  // even partition; the DP sets stage_layers
  std::vector<Item> items;
  int groups = 0;
  bool feasible = true;
  std::map<PruneReason, int64_t> pruned;
};

struct Solution {
  std::vector<int> stage_layers;
  std::vector<LayerStrategy> layers;
  double objective = 0;                 // picos, the DP's pipeline objective
  std::vector<int64_t> predicted;       // bytes per stage, step 1's memory
};

// Model states of `parameters` under `st`'s ZeRO stage (the ZeRO paper's
// partitioning, costmodel/memory.h).
int64_t States(int64_t parameters, const LayerStrategy& st, int pb, int gb, int ob) {
  const int64_t n = static_cast<int64_t>(st.dp) * st.cp;
  switch (n > 1 ? st.zero_stage : 0) {
    case 1: return parameters * (pb + gb) + parameters * ob / n;
    case 2: return parameters * pb + parameters * (gb + ob) / n;
    case 3: return parameters * (pb + gb + ob) / n;
    default: return parameters * (pb + gb + ob);
  }
}

// Shared by every class.
struct Common {
  const SearchRequest* request = nullptr;
  const Space* space = nullptr;
  Bytes budget;
  int parameter_bytes = 2;
  int gradient_bytes = 4;   // the memory model's, not the reduction's
  int optimizer_bytes = 12;
  double fragmentation = 0.10;
  int64_t context_bytes = 0;
  Bandwidth optimizer_bandwidth;
  int optimizer_bytes_per_parameter = 12;
  std::optional<Duration> optimizer_time_per_parameter;  // calibrated
  double overlap_slowdown = 0.0;
  std::vector<int> kind_of_layer;  // block kind of each transformer layer
  int kinds = 1;
  bool homogeneous = true;
};

// Strategy cost of one block (kind) within a class with m micro-batches.
int64_t ItemTime(const Common& common, const BlockCost& b, const LayerStrategy& st, int m) {
  const int64_t n = static_cast<int64_t>(st.dp) * st.cp;
  int64_t per_micro = b.forward + b.backward;
  int64_t once = 0;
  const int64_t held = st.zero_stage >= 1 && n > 1 ? b.parameters / n : b.parameters;
  once += common.optimizer_time_per_parameter.has_value()
              ? (*common.optimizer_time_per_parameter * held).picos()
              : (Bytes(held * common.optimizer_bytes_per_parameter) / common.optimizer_bandwidth)
                    .picos();
  const double sigma = common.overlap_slowdown;
  const auto slowed = [sigma](int64_t overlapped) {
    return static_cast<int64_t>(sigma * static_cast<double>(overlapped));
  };
  if (n > 1) {
    switch (st.zero_stage) {
      case 0:
        once += std::max<int64_t>(0, b.all_reduce - b.backward) +
                slowed(std::min(b.all_reduce, b.backward));
        break;
      case 1:
      case 2:
        once += std::max<int64_t>(0, b.reduce_scatter - b.backward) + b.all_gather +
                slowed(std::min(b.reduce_scatter, b.backward));
        break;
      default:
        per_micro = std::max(b.forward, b.all_gather) +
                    std::max(b.backward, b.all_gather + b.reduce_scatter) +
                    slowed(std::min(b.forward, b.all_gather) +
                           std::min(b.backward, b.all_gather + b.reduce_scatter));
        break;
    }
  }
  return per_micro + once / m;
}

// The in-flight micro-batches of stage s as (numerator, denominator) per
// layer: count / vpp chunks.
std::pair<int64_t, int64_t> InFlight(const PipelineShape& shape, int s) {
  const int v = shape.schedule == PipelineSchedule::kInterleaved ? shape.vpp : 1;
  return {costmodel::InFlightMicroBatches(shape.schedule, shape.pp, s, shape.micro_batches, v), v};
}

// The most layers the DP gives one stage: room for one chunk on every
// other stage, and at most twice the even share plus a chunk (a bound of
// this implementation: such a stage would hold the pipeline's bottleneck).
int MaxStageLayers(int layers, const PipelineShape& shape) {
  const int v = shape.schedule == PipelineSchedule::kInterleaved ? shape.vpp : 1;
  const int even = (layers + shape.pp - 1) / shape.pp;
  return std::min(layers - (shape.pp - 1) * v, 2 * even + v);
}

// The class's items: probes looked up, pruning applied.
ClassInput BuildClass(const Common& common, const PipelineShape& shape, int order_index,
                      const std::vector<LayerStrategy>& candidates,
                      const std::map<ProbeKey, int>& probe_index,
                      const std::vector<Probe>& probes) {
  ClassInput in;
  in.shape = shape;
  const Space& space = *common.space;
  const int m = shape.micro_batches;
  const int samples = space.global_batch_size() / m;
  const bool tp_first = shape.rank_order.front() == ParallelDim::kTp;
  std::map<std::pair<int, int>, int> group_index;
  struct Raw {
    Item item;
    const Probe* probe;
  };
  std::vector<Raw> raw;
  for (const LayerStrategy& st : candidates) {
    if (!space.Compatible(shape, st)) {
      ++in.pruned[PruneReason::kDivisibility];
      continue;
    }
    // Galvatron's decision tree: tensor parallelism inside a node.
    if (st.tp > space.devices_per_node()) {
      ++in.pruned[PruneReason::kDominated];
      continue;
    }
    const ProbeKey key{st.tp, st.cp, st.dp, st.ep, st.sequence_parallel ? 1 : 0,
                       static_cast<int>(st.recompute), samples / st.dp, order_index};
    const auto it = probe_index.find(key);
    ORRERY_CHECK(it != probe_index.end());
    const Probe& probe = probes[static_cast<size_t>(it->second)];
    if (!probe.ok) {
      ++in.pruned[PruneReason::kUnsupported];
      continue;
    }
    Item item;
    item.strategy = st;
    const std::pair<int, int> gkey = {st.tp, tp_first || st.tp == 1 ? 0 : st.cp};
    item.group = group_index.emplace(gkey, static_cast<int>(group_index.size())).first->second;
    int64_t largest = 0, recomputed = 0;
    for (int k = 0; k < common.kinds; ++k) {
      const BlockCost& b = probe.blocks[static_cast<size_t>(k)];
      item.time.push_back(ItemTime(common, b, st, m));
      item.states.push_back(States(b.parameters, st, common.parameter_bytes,
                                   common.gradient_bytes, common.optimizer_bytes));
      item.activations.push_back(b.activations);
      largest = std::max(largest, b.parameters);
      recomputed = std::max(recomputed, b.recomputed);
    }
    const bool sharded = st.dp * st.cp > 1;
    item.peak_extra = recomputed;
    if (sharded && st.zero_stage == 3) {
      item.peak_extra += largest * (2 * common.parameter_bytes + common.gradient_bytes);
    }
    // ZeRO-2's bucket: min(Σ ZeRO-2 parameters of the stage, bucket)·G.
    // Additive per layer while a full stage of such layers stays under the
    // bucket; otherwise the bucket, once.
    const int64_t bucket = common.request->graph.memory.zero2_bucket_elements;
    const int max_stage_layers = MaxStageLayers(space.num_layers(), shape);
    const bool zero2 = sharded && st.zero_stage == 2;
    const bool additive_bucket = largest * max_stage_layers <= bucket;
    if (zero2 && additive_bucket) {
      for (int k = 0; k < common.kinds; ++k) {
        item.states[static_cast<size_t>(k)] +=
            probe.blocks[static_cast<size_t>(k)].parameters * common.gradient_bytes;
      }
    } else if (zero2) {
      item.peak_extra += bucket * common.gradient_bytes;
    }
    if (shape.pp > 1) {
      const int64_t tokens = static_cast<int64_t>(samples / st.dp) *
                             (space.sequence_length() / st.cp);
      item.peak_extra += 2 * int64_t{common.request->graph.memory.activation_bytes} * tokens *
                         space.model().hidden_size / (st.sequence_parallel ? st.tp : 1);
    }
    item.first_time = ItemTime(common, probe.first, st, m);
    item.last_time = ItemTime(common, probe.last, st, m);
    item.first_states = States(probe.first.parameters, st, common.parameter_bytes,
                               common.gradient_bytes, common.optimizer_bytes);
    int64_t last_parameters = probe.last.parameters;
    const workload::ModelSpec& model = space.model();
    if (shape.pp > 1 && model.tied_embeddings && model.vocab_size > 0) {
      // Megatron-LM's copy of a tied embedding on the last stage (memory.h).
      last_parameters += int64_t{model.vocab_size} * model.hidden_size / st.tp;
    }
    item.last_states = States(last_parameters, st, common.parameter_bytes,
                              common.gradient_bytes, common.optimizer_bytes);
    item.first_activations = probe.first.activations;
    item.last_activations = probe.last.activations;
    if (zero2 && additive_bucket) {
      item.first_states += probe.first.parameters * common.gradient_bytes;
      item.last_states += last_parameters * common.gradient_bytes;
    }
    raw.push_back({std::move(item), &probe});
  }
  // Dominance within a stage layout: no slower and no larger on every
  // block kind, on what it adds once per stage, and as the embedding's and
  // head's strategy.
  const auto criteria = [&](const Item& it) {
    std::vector<int64_t> v = {it.peak_extra,   it.first_time,        it.last_time,
                              it.first_states, it.last_states,       it.first_activations,
                              it.last_activations};
    for (int k = 0; k < common.kinds; ++k) {
      const auto kk = static_cast<size_t>(k);
      v.insert(v.end(), {it.time[kk], it.states[kk], it.activations[kk]});
    }
    return v;
  };
  std::vector<std::vector<int64_t>> crit;
  for (const Raw& r : raw) crit.push_back(criteria(r.item));
  std::vector<bool> dominated(raw.size(), false);
  for (size_t j = 0; j < raw.size(); ++j) {
    for (size_t i = 0; i < raw.size() && !dominated[j]; ++i) {
      if (i == j || dominated[i] || raw[i].item.group != raw[j].item.group) continue;
      bool no_worse = true, better = false;
      for (size_t c = 0; c < crit[i].size() && no_worse; ++c) {
        no_worse = crit[i][c] <= crit[j][c];
        better = better || crit[i][c] < crit[j][c];
      }
      // Equal on everything: the earlier one stays.
      if (no_worse && (better || i < j)) dominated[j] = true;
    }
  }
  in.groups = static_cast<int>(group_index.size());
  for (size_t j = 0; j < raw.size(); ++j) {
    if (dominated[j]) {
      ++in.pruned[PruneReason::kDominated];
      continue;
    }
    in.items.push_back(raw[j].item);
  }
  in.feasible = !in.items.empty();
  return in;
}

// One stage's knapsack table for layout g from first layer a.
//
// Homogeneous models (one block kind): the multiset knapsack with the
// strategies as the outer loop, in order of peak_extra descending, so that
// the first layer placed (k: 0 → 1) is the stage's largest peak_extra; it
// carries that term, and the embedding and head (the stage's layers are
// ordered with it at the ends). took[(i·(K + 1) + k)·(cap + 1) + c] marks
// where strategy i (in that order) improved F(k, c).
// Several block kinds: the layers in position order, the first layer
// carrying its peak_extra and the ends; choice[k·(cap + 1) + c] is the
// strategy of layer k − 1.
struct StageTable {
  int kmax = 0;
  int cap = -1;                   // buckets; < 0: the stage cannot hold the layout
  std::vector<int64_t> best;      // [k]: least time of k layers within cap (kInf: none)
  std::vector<int> best_c;        // [k]: the buckets of that solution
  std::vector<uint8_t> took;      // homogeneous
  std::vector<int16_t> choice;    // several kinds
};

class ClassSolver {
 public:
  ClassSolver(const Common& common, const ClassInput& in, std::vector<int64_t> correction)
      : c_(common), in_(in), correction_(std::move(correction)) {
    const PipelineShape& sh = in.shape;
    p_ = sh.pp;
    v_ = sh.schedule == PipelineSchedule::kInterleaved ? sh.vpp : 1;
    L_ = common.space->num_layers();
    G_ = in.groups;
    kmax_ = MaxStageLayers(L_, sh);
    usable_ = static_cast<int64_t>(
        static_cast<double>(common.budget.count() - common.context_bytes) /
        (1.0 + common.fragmentation));
    quantum_ = std::max<int64_t>(1, usable_ / kBuckets);
    for (int g = 0; g < G_; ++g) {
      std::vector<int> items;
      for (size_t j = 0; j < in.items.size(); ++j) {
        if (in.items[j].group == g) items.push_back(static_cast<int>(j));
      }
      std::stable_sort(items.begin(), items.end(), [&](int a, int b) {
        return in.items[static_cast<size_t>(a)].peak_extra >
               in.items[static_cast<size_t>(b)].peak_extra;
      });
      items_of_group_.push_back(std::move(items));
    }
    SlowStageFactors();
  }

  // Up to kSolutionsPerClass solutions, best objective first.
  std::vector<Solution> Solve() {
    std::vector<Solution> out;
    if (!in_.feasible || G_ == 0 || kmax_ < v_) return out;
    BuildTables();
    // Stage costs: cost_[((s·L + a)·(K + 1) + k)·G + g].
    cost_.assign(static_cast<size_t>(p_) * L_ * (kmax_ + 1) * G_, kInf);
    std::vector<int64_t> values;
    for (int s = 0; s < p_; ++s) {
      for (int a = s * v_; a <= L_ - (p_ - s) * v_; ++a) {
        for (int k = v_; k <= kmax_ && a + k <= L_ - (p_ - s - 1) * v_; k += v_) {
          for (int g = 0; g < G_; ++g) {
            const StageTable& t = Table(s, g, a);
            if (t.cap < 0 || t.best[static_cast<size_t>(k)] >= kInf) continue;
            const double f = slow_[static_cast<size_t>(s) * G_ + g];
            const int64_t c = f == 1.0 ? t.best[static_cast<size_t>(k)]
                                       : static_cast<int64_t>(std::llround(
                                             static_cast<double>(t.best[static_cast<size_t>(k)]) * f));
            Cost(s, a, k, g) = c;
            values.push_back(c);
          }
        }
      }
    }
    if (values.empty()) return out;
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    const int64_t min_sum = MinSum(kInf, nullptr);
    if (min_sum >= kInf) return out;
    // The least feasible bottleneck.
    size_t lo = 0, hi = values.size() - 1;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (MinSum(values[mid], nullptr) < kInf) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    const double weight = in_.shape.micro_batches - 1.0 / v_;
    std::vector<std::pair<double, std::vector<Choice>>> found;
    const auto evaluate = [&](int64_t tau) {
      std::vector<Choice> choices;
      if (MinSum(tau, &choices) >= kInf) return;
      int64_t mx = 0, sum = 0;
      for (const Choice& ch : choices) {
        mx = std::max(mx, ch.cost);
        sum += ch.cost;
      }
      const double objective = weight * static_cast<double>(mx) + static_cast<double>(sum) / v_;
      for (const auto& f : found) {
        if (SameChoices(f.second, choices)) return;
      }
      found.emplace_back(objective, std::move(choices));
    };
    evaluate(values[lo]);
    if (found.empty()) return out;
    // Raise τ while a larger bottleneck can still win: T >= weight·τ + Σ_min / v.
    const double best0 = found.front().first;
    size_t end = lo + 1;
    while (end < values.size() &&
           weight * static_cast<double>(values[end]) + static_cast<double>(min_sum) / v_ < best0) {
      ++end;
    }
    const size_t span = end - (lo + 1);
    const size_t steps = std::min<size_t>(span, 24);
    for (size_t i = 0; i < steps; ++i) evaluate(values[lo + 1 + span * i / steps]);
    std::stable_sort(found.begin(), found.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < found.size() && static_cast<int>(i) < kSolutionsPerClass; ++i) {
      out.push_back(Build(found[i].second, found[i].first));
    }
    return out;
  }

 private:
  struct Choice {
    int stage, first, count, group;
    int64_t cost;
  };

  static bool SameChoices(const std::vector<Choice>& a, const std::vector<Choice>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].first != b[i].first || a[i].count != b[i].count || a[i].group != b[i].group) {
        return false;
      }
    }
    return true;
  }

  // The request's slow devices (SearchRequest::faults): slow_[s·G + g],
  // the largest factor among the ranks of stage s under layout g (the
  // first strategy of the group, and the class's rank order), by which
  // that stage's cost is multiplied — the analytical model's rule
  // (sim/analytical.h AnalyticalOptions::slow_devices), so that the
  // partition gives a slow stage fewer layers.
  void SlowStageFactors() {
    slow_.assign(static_cast<size_t>(p_) * G_, 1.0);
    const std::vector<sim::SlowDevice>& slow = c_.request->faults.slow_devices;
    if (slow.empty()) return;
    std::map<int, double> rank_factor;
    for (const sim::SlowDevice& d : slow) {
      auto [it, inserted] = rank_factor.emplace(d.rank, d.factor);
      if (!inserted) it->second *= d.factor;
    }
    for (int g = 0; g < G_; ++g) {
      if (items_of_group_[static_cast<size_t>(g)].empty()) continue;
      const LayerStrategy& st =
          in_.items[static_cast<size_t>(items_of_group_[static_cast<size_t>(g)].front())].strategy;
      int64_t stride = 1;
      for (const ParallelDim d : in_.shape.rank_order) {
        if (d == ParallelDim::kPp) break;
        stride *= d == ParallelDim::kTp ? st.tp
                  : d == ParallelDim::kCp ? st.cp
                  : d == ParallelDim::kDp ? st.dp
                                          : 1;
      }
      for (const auto& [rank, factor] : rank_factor) {
        const int stage = static_cast<int>((rank / stride) % p_);
        double& f = slow_[static_cast<size_t>(stage) * G_ + g];
        f = std::max(f, factor);
      }
    }
  }

  int64_t& Cost(int s, int a, int k, int g) {
    return cost_[((static_cast<size_t>(s) * L_ + a) * (kmax_ + 1) + k) * G_ + g];
  }

  int Count(int s, bool first_chunk) const {
    const int m = in_.shape.micro_batches;
    if (v_ == 1) return costmodel::InFlightMicroBatches(in_.shape.schedule, p_, s, m, 1);
    const std::vector<int> per_chunk = costmodel::InFlightPerChunk(p_, s, m, v_);
    return first_chunk ? per_chunk.front() : per_chunk.back();
  }

  // Bytes of item j's layer at stage s for block kind `kind`, before the
  // fragmentation allowance; with `first`, what the stage's first layer
  // adds besides (peak_extra, the embedding on stage 0, the head on the
  // last).
  int64_t LayerBytes(const Item& it, int s, int kind, bool first) const {
    const auto [num, den] = InFlight(in_.shape, s);
    const auto k = static_cast<size_t>(kind);
    int64_t bytes = it.states[k] + it.activations[k] * num / den;
    if (first) {
      bytes += it.peak_extra;
      if (s == 0) bytes += it.first_states + it.first_activations * Count(0, true);
      if (s == p_ - 1) bytes += it.last_states + it.last_activations * Count(p_ - 1, false);
    }
    return bytes;
  }
  int64_t LayerTime(const Item& it, int s, int kind, bool first) const {
    int64_t t = it.time[static_cast<size_t>(kind)];
    if (first && s == 0) t += it.first_time;
    if (first && s == p_ - 1) t += it.last_time;
    return t;
  }
  int Weight(const Item& it, int s, int kind, bool first) const {
    const int64_t b = LayerBytes(it, s, kind, first);
    return static_cast<int>(std::min<int64_t>((b + quantum_ / 2) / quantum_, kBuckets * 4));
  }

  const StageTable& Table(int s, int g, int a) const {
    const int starts = c_.homogeneous ? 1 : L_;
    return tables_[(static_cast<size_t>(s) * G_ + g) * starts + (c_.homogeneous ? 0 : a)];
  }

  void BuildTables() {
    const int starts = c_.homogeneous ? 1 : L_;
    tables_.assign(static_cast<size_t>(p_) * G_ * starts, StageTable{});
    for (int s = 0; s < p_; ++s) {
      const int64_t corr = correction_.empty() ? 0 : correction_[static_cast<size_t>(s)];
      const int64_t room =
          usable_ - static_cast<int64_t>(static_cast<double>(corr) / (1.0 + c_.fragmentation));
      for (int g = 0; g < G_; ++g) {
        for (int a = 0; a < starts; ++a) {
          StageTable& t = tables_[(static_cast<size_t>(s) * G_ + g) * starts + a];
          if (room < 0) continue;
          t.cap = static_cast<int>(std::min<int64_t>(room / quantum_, kBuckets));
          t.kmax = std::min(kmax_, L_ - a);
          if (c_.homogeneous) {
            FillMultiset(s, g, &t);
          } else {
            FillPositional(s, g, a, &t);
          }
        }
      }
    }
  }

  void Finish(const std::vector<int64_t>& row, int k, StageTable* t) const {
    for (int c = 0; c <= t->cap; ++c) {
      if (row[static_cast<size_t>(c)] < t->best[static_cast<size_t>(k)]) {
        t->best[static_cast<size_t>(k)] = row[static_cast<size_t>(c)];
        t->best_c[static_cast<size_t>(k)] = c;
      }
    }
  }

  void FillMultiset(int s, int g, StageTable* t) const {
    const size_t width = static_cast<size_t>(t->cap) + 1;
    const size_t rows = static_cast<size_t>(t->kmax) + 1;
    std::vector<int64_t> f(rows * width, kInf);
    f[0] = 0;
    const std::vector<int>& items = items_of_group_[static_cast<size_t>(g)];
    t->took.assign(items.size() * rows * width, 0);
    for (size_t i = 0; i < items.size(); ++i) {
      const Item& it = in_.items[static_cast<size_t>(items[i])];
      for (int k = 1; k <= t->kmax; ++k) {
        const int w = Weight(it, s, 0, k == 1);
        if (w > t->cap) continue;
        const int64_t u = LayerTime(it, s, 0, k == 1);
        const int64_t* from = &f[static_cast<size_t>(k - 1) * width];
        int64_t* to = &f[static_cast<size_t>(k) * width];
        uint8_t* mark = &t->took[(i * rows + static_cast<size_t>(k)) * width];
        for (size_t c = static_cast<size_t>(w); c < width; ++c) {
          const int64_t base = from[c - static_cast<size_t>(w)];
          if (base < kInf && base + u < to[c]) {
            to[c] = base + u;
            mark[c] = 1;
          }
        }
      }
    }
    t->best.assign(rows, kInf);
    t->best_c.assign(rows, 0);
    for (int k = 0; k <= t->kmax; ++k) {
      const std::vector<int64_t> row(f.begin() + static_cast<int64_t>(k * width),
                                     f.begin() + static_cast<int64_t>((k + 1) * width));
      Finish(row, k, t);
    }
  }

  void FillPositional(int s, int g, int a, StageTable* t) const {
    const int width = t->cap + 1;
    std::vector<int64_t> prev(static_cast<size_t>(width), kInf), next;
    prev[0] = 0;
    t->best.assign(static_cast<size_t>(t->kmax) + 1, kInf);
    t->best_c.assign(static_cast<size_t>(t->kmax) + 1, 0);
    t->best[0] = 0;
    t->choice.assign(static_cast<size_t>(t->kmax + 1) * width, -1);
    const std::vector<int>& items = items_of_group_[static_cast<size_t>(g)];
    for (int k = 1; k <= t->kmax; ++k) {
      const int kind = c_.kind_of_layer[static_cast<size_t>(a + k - 1)];
      next.assign(static_cast<size_t>(width), kInf);
      for (int j : items) {
        const Item& it = in_.items[static_cast<size_t>(j)];
        const int w = Weight(it, s, kind, k == 1);
        if (w > t->cap) continue;
        const int64_t u = LayerTime(it, s, kind, k == 1);
        for (int c = 0; c + w < width; ++c) {
          const int64_t base = prev[static_cast<size_t>(c)];
          if (base >= kInf) continue;
          int64_t& dst = next[static_cast<size_t>(c + w)];
          if (base + u < dst) {
            dst = base + u;
            t->choice[static_cast<size_t>(k) * width + c + w] = static_cast<int16_t>(j);
          }
        }
      }
      Finish(next, k, t);
      prev.swap(next);
    }
  }

  // The strategies of a stage of `count` layers from `first` under layout
  // g, in stage order, and their bytes (before fragmentation).
  std::vector<int> Reconstruct(int s, int g, int first, int count, int64_t* bytes) const {
    const StageTable& t = Table(s, g, first);
    const size_t width = static_cast<size_t>(t.cap) + 1;
    const size_t rows = static_cast<size_t>(t.kmax) + 1;
    int c = t.best_c[static_cast<size_t>(count)];
    std::vector<int> out;
    *bytes = 0;
    if (c_.homogeneous) {
      const std::vector<int>& items = items_of_group_[static_cast<size_t>(g)];
      int i = static_cast<int>(items.size()) - 1;
      for (int k = count; k >= 1;) {
        ORRERY_CHECK(i >= 0) << "galvatron: broken knapsack table";
        const size_t at = (static_cast<size_t>(i) * rows + static_cast<size_t>(k)) * width +
                          static_cast<size_t>(c);
        if (t.took[at] == 0) {
          --i;
          continue;
        }
        const Item& it = in_.items[static_cast<size_t>(items[static_cast<size_t>(i)])];
        out.push_back(items[static_cast<size_t>(i)]);
        *bytes += LayerBytes(it, s, 0, k == 1);
        c -= Weight(it, s, 0, k == 1);
        --k;
      }
      // out[last] is the first placed (largest peak_extra): it goes first
      // in the stage, and last as well on the last stage, where the head
      // takes the last layer's strategy.
      std::reverse(out.begin(), out.end());
      if (s == p_ - 1 && p_ > 1) {
        std::reverse(out.begin(), out.end());
      } else if (s == p_ - 1 && out.size() >= 2) {
        const auto same = std::find(out.begin() + 1, out.end(), out.front());
        if (same != out.end()) std::iter_swap(same, out.end() - 1);
      }
      return out;
    }
    out.assign(static_cast<size_t>(count), -1);
    for (int k = count; k >= 1; --k) {
      const int j = t.choice[static_cast<size_t>(k) * width + static_cast<size_t>(c)];
      ORRERY_CHECK(j >= 0) << "galvatron: broken knapsack table";
      const Item& it = in_.items[static_cast<size_t>(j)];
      const int kind = c_.kind_of_layer[static_cast<size_t>(first + k - 1)];
      out[static_cast<size_t>(k - 1)] = j;
      *bytes += LayerBytes(it, s, kind, k == 1);
      c -= Weight(it, s, kind, k == 1);
    }
    return out;
  }

  // The least Σ of stage costs with every stage cost <= tau; kInf when
  // none. Fills `choices` (stage order) when given.
  int64_t MinSum(int64_t tau, std::vector<Choice>* choices) {
    const size_t width = static_cast<size_t>(L_) + 1;
    std::vector<int64_t> dp(static_cast<size_t>(p_ + 1) * width, kInf);
    std::vector<std::pair<int, int>> arg(dp.size(), {-1, -1});
    dp[0] = 0;
    for (int s = 0; s < p_; ++s) {
      for (int a = s * v_; a <= L_ - (p_ - s) * v_; ++a) {
        const int64_t base = dp[static_cast<size_t>(s) * width + a];
        if (base >= kInf) continue;
        for (int k = v_; k <= kmax_ && a + k <= L_ - (p_ - s - 1) * v_; k += v_) {
          if (s == p_ - 1 && a + k != L_) continue;
          for (int g = 0; g < G_; ++g) {
            const int64_t c = Cost(s, a, k, g);
            if (c > tau) continue;
            const size_t to = static_cast<size_t>(s + 1) * width + a + k;
            if (base + c < dp[to]) {
              dp[to] = base + c;
              arg[to] = {k, g};
            }
          }
        }
      }
    }
    const int64_t total = dp[static_cast<size_t>(p_) * width + L_];
    if (total >= kInf || choices == nullptr) return total;
    choices->assign(static_cast<size_t>(p_), Choice{});
    int at = L_;
    for (int s = p_; s >= 1; --s) {
      const auto [k, g] = arg[static_cast<size_t>(s) * width + at];
      at -= k;
      (*choices)[static_cast<size_t>(s - 1)] = {s - 1, at, k, g, Cost(s - 1, at, k, g)};
    }
    return total;
  }

  Solution Build(const std::vector<Choice>& choices, double objective) const {
    Solution sol;
    sol.objective = objective;
    sol.layers.resize(static_cast<size_t>(L_));
    for (const Choice& ch : choices) {
      sol.stage_layers.push_back(ch.count);
      int64_t bytes = 0;
      const std::vector<int> items = Reconstruct(ch.stage, ch.group, ch.first, ch.count, &bytes);
      for (int k = 0; k < ch.count; ++k) {
        sol.layers[static_cast<size_t>(ch.first + k)] =
            in_.items[static_cast<size_t>(items[static_cast<size_t>(k)])].strategy;
      }
      sol.predicted.push_back(
          c_.context_bytes +
          static_cast<int64_t>(static_cast<double>(bytes) * (1.0 + c_.fragmentation)));
    }
    return sol;
  }

  const Common& c_;
  const ClassInput& in_;
  std::vector<int64_t> correction_;
  int p_ = 1, v_ = 1, L_ = 0, G_ = 0, kmax_ = 0;
  int64_t quantum_ = 1, usable_ = 0;
  std::vector<std::vector<int>> items_of_group_;
  std::vector<StageTable> tables_;
  std::vector<int64_t> cost_;
  std::vector<double> slow_;  // SlowStageFactors
};

// A solution turned into a scored candidate.
struct Scored {
  int cls = 0;
  int index = 0;  // order of creation within the class (repairs come later)
  Solution solution;
  std::optional<workload::Plan> plan;
  std::optional<Evaluation> eval;
  std::optional<PruneReason> rejected;
};

class GalvatronSearch final : public SearchAlgorithm {
 public:
  std::string_view name() const override { return "galvatron"; }
  Status Run(const Evaluator& evaluator, const ProgressFn& progress,
             SearchResult* result) override;
};

Status GalvatronSearch::Run(const Evaluator& evaluator, const ProgressFn& progress,
                            SearchResult* result) {
  const auto started = std::chrono::steady_clock::now();
  const SearchRequest& request = evaluator.request();
  const auto report = [&](double fraction, const std::string& note) {
    if (!progress) return;
    char elapsed[32];
    std::snprintf(elapsed, sizeof(elapsed), " (%.1f s)", Seconds(started));
    progress(fraction, note + elapsed);
  };
  std::atomic<bool> stop{false};
  const auto out_of_time = [&] {
    if (!request.time_limit_s.has_value()) return false;
    if (Seconds(started) > *request.time_limit_s) stop.store(true);
    return stop.load();
  };
  ORRERY_ASSIGN_OR_RETURN(const Space space, Space::Create(request));
  result->algorithm = "galvatron";
  const workload::ModelSpec& model = space.model();

  const costmodel::ComputeModel* compute = evaluator.model().compute(request.precision);
  if (compute == nullptr) {
    return InvalidArgumentError("galvatron: no compute model for precision " +
                                std::string(topology::PrecisionName(request.precision)));
  }
  Common common;
  common.request = &request;
  common.space = &space;
  common.budget = evaluator.memory_budget();
  const costmodel::MemoryOptions& mo = request.graph.memory;
  common.parameter_bytes = mo.parameter_bytes.value_or(
      request.precision == topology::Precision::kFp32 ||
              request.precision == topology::Precision::kTf32
          ? 4
          : 2);
  common.gradient_bytes = mo.gradient_bytes;
  common.optimizer_bytes = mo.optimizer_bytes.value_or(common.parameter_bytes == 2 ? 12 : 8);
  common.fragmentation = mo.fragmentation;
  common.context_bytes = mo.framework_context.count();
  common.optimizer_bandwidth = request.cluster.PrimaryNodeType().device.memory_bandwidth *
                               compute->options().bandwidth_efficiency;
  common.optimizer_bytes_per_parameter = request.graph.optimizer_bytes_per_parameter;
  common.optimizer_time_per_parameter = request.graph.optimizer_time_per_parameter;
  common.overlap_slowdown = request.overlap_slowdown;
  const int encoders = model.num_encoder_layers;
  common.kinds = encoders > 0 && model.num_layers > 0 ? 2 : 1;
  common.homogeneous = common.kinds == 1;
  for (int i = 0; i < space.num_layers(); ++i) {
    common.kind_of_layer.push_back(common.kinds == 2 && i >= encoders ? 1 : 0);
  }

  // Classes: pp × device order × schedule (1F1B, GPipe, interleaved v with
  // v dividing the layers) × micro-batch count; the partition is the DP's.
  const std::vector<workload::RankOrder> orders = space.RankOrders();
  struct ClassSpec {
    PipelineShape shape;
    int order = 0;
  };
  std::vector<ClassSpec> specs;
  const int L = space.num_layers();
  for (int pp : space.PipelineDegrees()) {
    std::vector<std::pair<PipelineSchedule, int>> schedules = {{PipelineSchedule::kOneFOneB, 1},
                                                              {PipelineSchedule::kGpipe, 1}};
    if (request.allow_interleaved && pp >= 2 &&
        model.architecture != workload::Architecture::kEncoderDecoder) {
      for (int v = 2; v <= 8; ++v) {
        if (L % v == 0 && pp * v <= L) schedules.emplace_back(PipelineSchedule::kInterleaved, v);
      }
    }
    const std::vector<int> counts = space.MicroBatchCounts(pp);
    for (size_t o = 0; o < orders.size(); ++o) {
      for (const auto& [schedule, vpp] : schedules) {
        for (int m : counts) {
          if (schedule == PipelineSchedule::kInterleaved && m % pp != 0) {
            ++result->pruned[PruneReason::kDivisibility];
            continue;
          }
          ClassSpec spec;
          spec.shape.pp = pp;
          spec.shape.schedule = schedule;
          spec.shape.vpp = vpp;
          spec.shape.micro_batches = m;
          spec.shape.rank_order = orders[o];
          spec.order = static_cast<int>(o);
          specs.push_back(std::move(spec));
        }
      }
    }
  }

  // Probes, deduplicated.
  std::map<int, std::vector<LayerStrategy>> candidates_of_pp;
  std::map<ProbeKey, int> probe_index;
  std::vector<ProbeKey> probe_keys;
  for (const ClassSpec& spec : specs) {
    auto it = candidates_of_pp.find(spec.shape.pp);
    if (it == candidates_of_pp.end()) {
      it = candidates_of_pp.emplace(spec.shape.pp, space.LayerCandidates(spec.shape.pp)).first;
    }
    const int samples = space.global_batch_size() / spec.shape.micro_batches;
    for (const LayerStrategy& st : it->second) {
      if (!space.Compatible(spec.shape, st) || st.tp > space.devices_per_node()) continue;
      const ProbeKey key{st.tp, st.cp, st.dp, st.ep, st.sequence_parallel ? 1 : 0,
                         static_cast<int>(st.recompute), samples / st.dp, spec.order};
      if (probe_index.emplace(key, static_cast<int>(probe_keys.size())).second) {
        probe_keys.push_back(key);
      }
    }
  }
  ProbeContext pctx;
  pctx.request = &request;
  pctx.space = &space;
  pctx.compute = compute;
  pctx.collectives = &evaluator.model().collectives();
  pctx.orders = orders;
  pctx.probe_model = model;
  pctx.probe_model.num_layers = std::min(model.num_layers, 1);
  pctx.probe_model.num_encoder_layers = std::min(model.num_encoder_layers, 1);
  pctx.parameter_bytes = common.parameter_bytes;
  report(0.0, "galvatron: " + std::to_string(specs.size()) + " pipeline classes, " +
                  std::to_string(probe_keys.size()) + " layer probes");
  std::map<LayoutKey, int> layout_index;
  std::vector<LayoutKey> layout_keys;
  std::vector<int> layout_of_probe;
  for (const ProbeKey& k : probe_keys) {
    const LayoutKey lk{k.tp, k.cp, k.dp, k.ep, k.order};
    const auto [it, added] = layout_index.emplace(lk, static_cast<int>(layout_keys.size()));
    if (added) layout_keys.push_back(lk);
    layout_of_probe.push_back(it->second);
  }
  std::vector<LayoutGroups> layouts(layout_keys.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < static_cast<int64_t>(layout_keys.size()); ++i) {
    layouts[static_cast<size_t>(i)] = GroupsOf(pctx, layout_keys[static_cast<size_t>(i)]);
  }
  std::vector<Probe> probes(probe_keys.size());
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < static_cast<int64_t>(probe_keys.size()); ++i) {
    if (stop.load()) continue;
    probes[static_cast<size_t>(i)] =
        RunProbe(pctx, probe_keys[static_cast<size_t>(i)],
                 layouts[static_cast<size_t>(layout_of_probe[static_cast<size_t>(i)])]);
    if (omp_get_thread_num() == 0) out_of_time();
  }
  if (stop.load()) {
    result->stopped_by_time_limit = true;
    result->search_time_s = Seconds(started);
    return Status::Ok();
  }

  // Classes: items and pruning, then a lower bound on the DP's objective
  // without memory, T >= (Σ_l min_j u_lj)·((m − 1/v)/p + 1/v) (the
  // bottleneck is at least the mean stage).
  std::vector<ClassInput> inputs(specs.size());
  std::vector<double> bound(specs.size(), 0);
  report(0.1, "galvatron: layer strategies of each class");
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < static_cast<int64_t>(specs.size()); ++i) {
    const ClassSpec& spec = specs[static_cast<size_t>(i)];
    ClassInput& in = inputs[static_cast<size_t>(i)];
    in = BuildClass(common, spec.shape, spec.order, candidates_of_pp.at(spec.shape.pp),
                    probe_index, probes);
    double sum = 0;
    for (int l = 0; l < space.num_layers(); ++l) {
      const auto kind = static_cast<size_t>(common.kind_of_layer[static_cast<size_t>(l)]);
      int64_t least = kInf;
      for (const Item& it : in.items) least = std::min(least, it.time[kind]);
      sum += static_cast<double>(least);
    }
    const double v = spec.shape.schedule == PipelineSchedule::kInterleaved ? spec.shape.vpp : 1;
    bound[static_cast<size_t>(i)] =
        in.feasible ? sum * ((spec.shape.micro_batches - 1.0 / v) / spec.shape.pp + 1.0 / v)
                    : std::numeric_limits<double>::infinity();
  }
  // The DPs, classes in order of their bound, in fixed batches: a class
  // whose bound is above the objective of the last solution that would be
  // scored (the first_round-th best so far, from earlier batches only) can
  // place none among them — pruned as dominated, the same whatever the
  // thread count.
  const size_t first_round = static_cast<size_t>(std::max(kMinScored, 16 * request.top_k));
  std::vector<size_t> by_bound(specs.size());
  for (size_t i = 0; i < by_bound.size(); ++i) by_bound[i] = i;
  std::stable_sort(by_bound.begin(), by_bound.end(),
                   [&](size_t a, size_t b) { return bound[a] < bound[b]; });
  std::vector<std::vector<Solution>> solutions(specs.size());
  std::vector<double> objectives;  // of every solution so far
  double threshold = std::numeric_limits<double>::infinity();
  int64_t skipped = 0;
  report(0.2, "galvatron: dynamic programs");
  constexpr size_t kBatch = 16;
  for (size_t start = 0; start < by_bound.size() && !stop.load(); start += kBatch) {
    const size_t stop_at = std::min(by_bound.size(), start + kBatch);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = static_cast<int64_t>(start); b < static_cast<int64_t>(stop_at); ++b) {
      if (stop.load()) continue;
      const size_t i = by_bound[static_cast<size_t>(b)];
      if (!inputs[i].feasible || bound[i] > threshold) continue;
      ClassSolver solver(common, inputs[i], {});
      solutions[i] = solver.Solve();
      if (omp_get_thread_num() == 0) out_of_time();
    }
    for (size_t b = start; b < stop_at; ++b) {
      const size_t i = by_bound[b];
      if (inputs[i].feasible && bound[i] > threshold) ++skipped;
      for (const Solution& sol : solutions[i]) objectives.push_back(sol.objective);
    }
    if (objectives.size() >= first_round) {
      std::nth_element(objectives.begin(),
                       objectives.begin() + static_cast<int64_t>(first_round) - 1,
                       objectives.end());
      threshold = objectives[first_round - 1];
    }
  }
  result->pruned[PruneReason::kDominated] += skipped;
  for (size_t i = 0; i < specs.size(); ++i) {
    for (const auto& [reason, n] : inputs[i].pruned) result->pruned[reason] += n;
    if (inputs[i].feasible && solutions[i].empty() && bound[i] <= threshold) {
      ++result->pruned[PruneReason::kMemory];
    }
  }

  // Score the best solutions by the DP's objective.
  std::vector<Scored> pool;
  for (size_t i = 0; i < specs.size(); ++i) {
    for (size_t k = 0; k < solutions[i].size(); ++k) {
      pool.push_back({static_cast<int>(i), static_cast<int>(k), std::move(solutions[i][k]),
                      std::nullopt, std::nullopt, std::nullopt});
    }
  }
  std::stable_sort(pool.begin(), pool.end(), [](const Scored& a, const Scored& b) {
    return a.solution.objective < b.solution.objective;
  });
  // Solutions below the first_round best by the DP's objective are not
  // scored: counted as dominated.
  const size_t scored = std::min(pool.size(), first_round);
  result->pruned[PruneReason::kDominated] += static_cast<int64_t>(pool.size() - scored);
  pool.resize(scored);

  const auto score = [&](Scored* s) {
    const ClassSpec& spec = specs[static_cast<size_t>(s->cls)];
    PipelineShape shape = spec.shape;
    const std::vector<int> even = space.StageLayerCounts(spec.shape);
    if (s->solution.stage_layers != even) shape.stage_layers = s->solution.stage_layers;
    Result<workload::Plan> plan = space.BuildPlan(shape, s->solution.layers);
    if (!plan.ok()) {
      s->rejected = PruneReason::kInvalid;
      return;
    }
    s->plan = std::move(plan).value();
    // ValidatePlan, the memory model, then the analytical score.
    const Evaluator::Outcome outcome = evaluator.Evaluate(*s->plan, /*validate=*/true);
    if (outcome.scored()) {
      s->eval = outcome.evaluation;
    } else {
      s->rejected = outcome.pruned;
    }
  };
  report(0.5, "galvatron: scoring " + std::to_string(pool.size()) + " plans");
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < static_cast<int64_t>(pool.size()); ++i) {
    if (stop.load()) continue;
    score(&pool[static_cast<size_t>(i)]);
    if (omp_get_thread_num() == 0) out_of_time();
  }
  int64_t evaluated = 0;
  for (const Scored& s : pool) evaluated += s.eval.has_value() ? 1 : 0;

  // Re-solve the leading classes with each stage's budget corrected by the
  // memory model's verdict on their plan.
  std::vector<size_t> order(pool.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto time_of = [&](const Scored& s) {
    return s.eval.has_value() ? s.eval->iteration_time.picos() : kInf;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return time_of(pool[a]) < time_of(pool[b]); });
  std::vector<size_t> to_repair;
  std::set<int> repaired_classes;
  for (size_t idx : order) {
    if (static_cast<int>(to_repair.size()) >= kRepaired) break;
    const Scored& s = pool[idx];
    if (!s.plan.has_value() || !repaired_classes.insert(s.cls).second) continue;
    to_repair.push_back(idx);
  }
  std::vector<std::vector<Scored>> repairs(to_repair.size());
  if (!stop.load()) {
    report(0.8, "galvatron: re-solving " + std::to_string(to_repair.size()) + " classes");
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t r = 0; r < static_cast<int64_t>(to_repair.size()); ++r) {
      if (stop.load()) continue;
      const Scored& origin = pool[to_repair[static_cast<size_t>(r)]];
      costmodel::MemoryOptions options = request.graph.memory;
      options.flash_attention = request.graph.stage.flash_attention;
      std::vector<int64_t> correction(static_cast<size_t>(origin.plan->pp), 0);
      workload::Plan plan = *origin.plan;
      Solution solution = origin.solution;
      std::vector<Solution> seen = {origin.solution};
      int k = 100;
      for (int round = 0; round < kRepairRounds; ++round) {
        Result<costmodel::MemoryEstimate> mem =
            costmodel::EstimateMemory(model, plan, request.cluster, options);
        if (!mem.ok()) break;
        for (size_t st = 0; st < mem->stages.size(); ++st) {
          correction[st] += mem->stages[st].Total().count() - solution.predicted[st];
        }
        ClassSolver solver(common, inputs[static_cast<size_t>(origin.cls)], correction);
        std::vector<Solution> again = solver.Solve();
        bool next_round = false;
        for (Solution& sol : again) {
          const bool old = std::any_of(seen.begin(), seen.end(), [&](const Solution& x) {
            return x.layers == sol.layers && x.stage_layers == sol.stage_layers;
          });
          if (old) continue;
          seen.push_back(sol);
          Scored next{origin.cls, k++, sol, std::nullopt, std::nullopt, std::nullopt};
          score(&next);
          if (!next_round && next.plan.has_value()) {
            // The re-solved best leads the next round.
            plan = *next.plan;
            solution = sol;
            next_round = true;
          }
          repairs[static_cast<size_t>(r)].push_back(std::move(next));
        }
        if (!next_round) break;
      }
      if (omp_get_thread_num() == 0) out_of_time();
    }
  }
  for (std::vector<Scored>& rs : repairs) {
    for (Scored& s : rs) {
      evaluated += s.eval.has_value() ? 1 : 0;
      pool.push_back(std::move(s));
    }
  }

  // Keep the scored plans (each fits), equal plans once, best first by the
  // evaluator's order (search.h: SortAndTruncate).
  std::vector<Candidate> plans;
  for (const Scored& s : pool) {
    if (s.rejected.has_value()) {
      ++result->pruned[*s.rejected];
      continue;
    }
    if (!s.eval.has_value()) continue;
    const bool seen = std::any_of(plans.begin(), plans.end(),
                                  [&](const Candidate& c) { return c.plan == *s.plan; });
    if (!seen) plans.push_back(Candidate{*s.plan, *s.eval, std::nullopt});
  }
  SortAndTruncate(&plans, static_cast<size_t>(CandidateLimit(request)));
  result->plans = std::move(plans);
  result->evaluated = evaluated;
  result->stopped_by_time_limit = stop.load();
  result->search_time_s = Seconds(started);
  report(1.0, "galvatron: done");
  return Status::Ok();
}

}  // namespace

ORRERY_REGISTER_SEARCH_ALGORITHM(GalvatronSearch, "galvatron");

}  // namespace orrery::search
