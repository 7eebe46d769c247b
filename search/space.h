// The plan space of the search: what a plan may be for one SearchRequest,
// enumerated with the divisibility and head constraints applied, so that
// every plan built from it passes workload::ValidatePlan.
//
// A plan splits into
//   * a pipeline shape (PipelineShape), global to the plan: the pipeline
//     degree pp, the stage partition (even, or uneven with a few layers moved
//     off the first and last stages, which also hold the embedding and the
//     LM head, as Megatron-LM's --decoder-first/last-pipeline-num-layers),
//     the schedule (GPipe, 1F1B, interleaved 1F1B with vpp chunks per
//     stage), the number of micro-batches m and the device order;
//   * one LayerStrategy per transformer layer: tp × cp × dp = devices / pp
//     (Galvatron's per-layer split of a stage's devices), ZeRO 0-3 (1-3 only
//     where dp × cp > 1), sequence parallelism (tp > 1), context parallelism
//     (2·cp dividing the sequence for causal models), expert parallelism on
//     MoE models only (ep dividing the experts and dp × cp, ep == cp or the
//     rank order ending with pp — both orders here end with pp), and
//     recomputation none / selective / full.
//
// The shape fixes the samples of one micro-batch across all replicas,
// S = global_batch / m; a layer with dp replicas takes S / dp samples, so a
// strategy is compatible with a shape when dp divides S. The plan's
// micro_batch_size is S / max_layer dp (workload/plan.h's convention).
//
// Within a pipeline stage the event simulator and the analytical model
// model one tp layout (sim/training_graph.h): every layer of a stage has
// the same tp, and, when tp is not the innermost dimension of the device
// order, the same (tp, cp, dp). SameStageCompatible says whether two
// strategies may share a stage; BuildPlan checks it.
//
// Device orders (workload::RankOrder, innermost first): "tp-cp-ep-dp-pp"
// (Megatron-Core's default: tensor-parallel groups on consecutive ranks,
// inside a node when tp <= devices per node) and "cp-dp-tp-ep-pp"
// (tensor-parallel groups strided across the data-parallel ranks, so dp
// and cp groups stay inside a node). Both end with pp.
//
// Thread-safety: a Space is immutable after Create; its const methods may
// be called from many threads at once.
#ifndef ORRERY_SEARCH_SPACE_H_
#define ORRERY_SEARCH_SPACE_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/status.h"
#include "search/search.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::search {

struct PipelineShape {
  int pp = 1;
  std::vector<int> stage_layers;  // layers per stage; empty: even (Plan::StageLayerCounts)
  workload::PipelineSchedule schedule = workload::PipelineSchedule::kOneFOneB;
  int vpp = 1;            // chunks per stage; > 1 only with kInterleaved
  int micro_batches = 1;  // m: micro-batches per iteration
  workload::RankOrder rank_order = workload::DefaultRankOrder();

  bool operator==(const PipelineShape&) const = default;
};

// The shape of `plan`: its pp, stage_layers, schedule, vpp, rank order and
// NumMicroBatches().
PipelineShape ShapeOfPlan(const workload::Plan& plan);

// "pp4[8,8,8,6] 1f1b m32" / "pp8(v2) interleaved m64 order=cp-dp-tp-ep-pp"
// (the order only when it is not the default).
std::string ShapeName(const PipelineShape& shape);
// "tp8 cp2 dp4 ep2 z1 sp sel" (only what is not the default besides tp and dp).
std::string StrategyName(const workload::LayerStrategy& s);

class Space {
 public:
  // The space of `request`: InvalidArgument when the request is empty (no
  // layers, a batch < 1) or its sequence length is not positive.
  static Result<Space> Create(const SearchRequest& request);

  const workload::ModelSpec& model() const { return model_; }
  int devices() const { return devices_; }
  int devices_per_node() const { return devices_per_node_; }
  int num_layers() const { return num_layers_; }
  int global_batch_size() const { return global_batch_size_; }
  int sequence_length() const { return sequence_length_; }
  bool is_moe() const { return model_.is_moe(); }

  // Pipeline degrees: the divisors of devices() that are <= num_layers()
  // (model.total_layers(): encoder-decoder models split all their layers),
  // ascending.
  std::vector<int> PipelineDegrees() const;

  // Stage partitions for `pp`: the even split first (an empty vector), then,
  // when the request allows uneven stages and pp >= 2, the partitions with
  // k = 1 or 2 layers fewer on the first stage, on the last stage, and on
  // both, the rest spread evenly (first stages one more), each with at
  // least one layer per stage; no duplicates, in that order.
  std::vector<std::vector<int>> StagePartitions(int pp) const;

  // Micro-batch sizes per replica: the request's, or the powers of two that
  // divide the global batch, ascending.
  const std::vector<int>& MicroBatchSizes() const { return micro_batch_sizes_; }

  // Micro-batch counts for `pp`: { global / (mbs · dp) } over mbs in
  // MicroBatchSizes() and dp a divisor of devices() / pp with mbs · dp
  // dividing the global batch, ascending, unique.
  std::vector<int> MicroBatchCounts(int pp) const;

  // (schedule, vpp) pairs for `pp` and an even/uneven `stage_layers`:
  // (1f1b, 1); for pp >= 2 also (gpipe, 1) (one stage runs both alike)
  // and, when allowed, (interleaved, v) for v >= 2 dividing every stage's
  // layer count (v <= 8), not for encoder-decoder models. The interleaved
  // schedule also needs m % pp == 0: Shapes() applies that.
  std::vector<std::pair<workload::PipelineSchedule, int>> Schedules(
      int pp, const std::vector<int>& stage_layers) const;

  // The two device orders of the header, default first.
  std::vector<workload::RankOrder> RankOrders() const;

  // Every shape for `pp`: partitions × schedules × micro-batch counts ×
  // rank orders, in that nesting (rank order innermost), deterministic.
  std::vector<PipelineShape> Shapes(int pp) const;
  // Shapes(pp) over every pp in PipelineDegrees().
  std::vector<PipelineShape> AllShapes() const;

  // The strategies of one layer for `pp` (devices() / pp devices per stage):
  // tp dividing the heads (kv heads dividing tp or tp dividing them) and
  // <= devices per stage, cp when allowed (cp >= 2 dividing the sequence as
  // ValidatePlan's rule), dp the rest, ep (MoE models only) dividing the
  // experts and dp × cp, ZeRO 0..3 (1..3 only when allowed and dp × cp > 1),
  // sp (tp > 1; both without and with), recompute none, selective, full.
  // Ordered by tp, cp, ep, zero, sp, recompute ascending.
  std::vector<workload::LayerStrategy> LayerCandidates(int pp) const;
  // LayerCandidates(shape.pp) filtered by Compatible(shape, ·).
  std::vector<workload::LayerStrategy> LayerCandidates(const PipelineShape& shape) const;

  // True when `s` fits `shape`: tp·cp·dp == devices / pp and dp divides the
  // samples of one micro-batch (global / m).
  bool Compatible(const PipelineShape& shape, const workload::LayerStrategy& s) const;
  // True when `a` and `b` may be layers of one stage under `order`: same tp;
  // and the same cp and dp when tp is not first in the order.
  static bool SameStageCompatible(const workload::RankOrder& order,
                                  const workload::LayerStrategy& a,
                                  const workload::LayerStrategy& b);

  // The plan of `shape` with `layers` (one per transformer layer):
  // micro_batch_size = (global / m) / max dp, the request's sequence length
  // and precision. InvalidArgument when the layer count is wrong, a strategy
  // is not Compatible, two layers of a stage are not SameStageCompatible or
  // global is not divisible by m.
  Result<workload::Plan> BuildPlan(const PipelineShape& shape,
                                   std::vector<workload::LayerStrategy> layers) const;
  // BuildPlan with every layer `layer`.
  Result<workload::Plan> UniformPlan(const PipelineShape& shape,
                                     const workload::LayerStrategy& layer) const;

  // Random layer-wise strategies for `shape` (random and anneal): per
  // stage, the first layer's strategy drawn uniformly from `candidates`
  // (LayerCandidates(shape)), each other layer's from the candidates
  // SameStageCompatible with it. Empty when `candidates` is empty.
  // Deterministic for the state of `rng`.
  std::vector<workload::LayerStrategy> RandomLayers(
      const PipelineShape& shape, const std::vector<workload::LayerStrategy>& candidates,
      std::mt19937_64* rng) const;

  // Layers per stage of `shape` (the even split when stage_layers is empty).
  std::vector<int> StageLayerCounts(const PipelineShape& shape) const;

 private:
  Space() = default;

  workload::ModelSpec model_;
  topology::Precision precision_ = topology::Precision::kBf16;
  int devices_ = 0;
  int devices_per_node_ = 1;
  int num_layers_ = 0;
  int global_batch_size_ = 0;
  int sequence_length_ = 0;
  bool allow_interleaved_ = true;
  bool allow_uneven_stages_ = true;
  bool allow_zero_ = true;
  bool allow_context_parallel_ = true;
  std::vector<int> micro_batch_sizes_;
};

// The sweep over uniform plans behind the "exhaustive" algorithm
// (exhaustive.cc), reusable by other algorithms (anneal starts from it).
struct UniformSweepOptions {
  bool uneven_stages = true;   // also Space::StagePartitions' uneven ones
  bool all_rank_orders = true;  // also the tp-outer order (where it differs)
  bool gpipe = true;            // also GPipe (1F1B and interleaved always)
  std::optional<double> time_limit_s;
};
// Scores every uniform plan of `space` that the options admit, in parallel
// (OpenMP), and adds to `result`: the evaluated count, the prune counts by
// reason and the best CandidateLimit() plans (SortAndTruncate, merged with
// what `result->plans` holds). A heavier recomputation of a layout whose
// lighter one fits is pruned as kDominated without scoring: recomputation
// only adds time. Sets stopped_by_time_limit when the limit cut it short.
Status SweepUniformPlans(const Evaluator& evaluator, const Space& space,
                         const UniformSweepOptions& options, const ProgressFn& progress,
                         SearchResult* result);

// A short summary of a plan for tables: "tp8 pp8(v2) dp16 mb1 sp sel", with
// "cp2", "ep4", "z1", "full", "gpipe", "[7,8,...]" for an uneven partition,
// "tp-outer" for the non-default order; a layer-wise plan lists its runs of
// equal layers, "pp2 mb2 {0-19: tp4 dp2 sel, 20-31: tp8 dp1}", or with more
// than four runs its three most common strategies,
// "pp2 mb2 {tp4 dp2 sel ×20, tp8 dp1 ×9, tp8 dp1 sp ×2, +1 more}".
std::string PlanSummary(const workload::Plan& plan);

}  // namespace orrery::search

#endif  // ORRERY_SEARCH_SPACE_H_
