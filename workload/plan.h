// Plan: a hybrid-parallel training strategy for one model on one cluster.
//
// A plan fixes the batch (global batch, micro-batch, sequence length), the
// numeric precision, the pipeline (degree pp, the partition of transformer
// layers over stages, the schedule and its virtual stages), the order in
// which the parallel dimensions are laid over ranks, and, per transformer
// layer, a LayerStrategy: tensor (tp), context (cp), data (dp) and expert
// (ep) degrees, the ZeRO stage, sequence parallelism and recomputation.
//
// As in Galvatron (Miao et al., VLDB 2023), pp is global and every stage
// has devices / pp devices; each layer splits its stage's devices as
// tp × cp × dp, so layers may differ in their tp/dp split. Expert
// parallelism does not multiply the device count: as in Megatron-Core, the
// ep ranks of an MoE layer are carved out of its dp × cp ranks.
//
// A plan is a value; whether it fits a model and a cluster is answered by
// CheckPlan / ValidatePlan, which list every broken rule (docs/plan.md
// lists the rules and where each comes from). JSON in and out:
// workload/plan_json.h.
//
//   Plan plan = Plan::Uniform(model, /*pp=*/4, LayerStrategy{.tp = 8, .dp = 2},
//                             /*global_batch_size=*/512, /*micro_batch_size=*/1);
//   plan.schedule = PipelineSchedule::kInterleaved;
//   plan.vpp = 2;
//   ORRERY_RETURN_IF_ERROR(ValidatePlan(plan, model, cluster));
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_WORKLOAD_PLAN_H_
#define ORRERY_WORKLOAD_PLAN_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"

namespace orrery::workload {

// How micro-batches flow through the pipeline stages (Narayanan et al.,
// SC21, §2.2): GPipe runs all forwards then all backwards; 1F1B alternates
// after a warm-up; interleaved 1F1B gives each rank vpp model chunks.
enum class PipelineSchedule { kGpipe, kOneFOneB, kInterleaved };
// "gpipe", "1f1b", "interleaved".
std::string_view PipelineScheduleName(PipelineSchedule s);
Result<PipelineSchedule> ParsePipelineSchedule(std::string_view name);

// Activation recomputation (Korthikanti et al., arXiv 2205.05198): none
// keeps all activations, selective recomputes the attention core, full
// keeps only each layer's input and recomputes the layer.
enum class Recompute { kNone, kSelective, kFull };
// "none", "selective", "full".
std::string_view RecomputeName(Recompute r);
Result<Recompute> ParseRecompute(std::string_view name);

// A dimension of the rank grid.
enum class ParallelDim { kTp, kCp, kEp, kDp, kPp };
// "tp", "cp", "ep", "dp", "pp".
std::string_view ParallelDimName(ParallelDim d);
Result<ParallelDim> ParseParallelDim(std::string_view name);

// The order of the dimensions over ranks, innermost (consecutive ranks)
// first, as Megatron-Core's initialize_model_parallel(order=...).
using RankOrder = std::vector<ParallelDim>;
// Megatron-Core's default, "tp-cp-ep-dp-pp".
RankOrder DefaultRankOrder();
// "tp-cp-ep-dp-pp".
std::string RankOrderName(const RankOrder& order);
// Parses "tp-cp-ep-dp-pp": each of the five dimensions exactly once.
Result<RankOrder> ParseRankOrder(std::string_view text);

// The strategy of one transformer layer.
struct LayerStrategy {
  int tp = 1;  // tensor parallel degree (Megatron column/row split)
  int cp = 1;  // context parallel degree (sequence split across attention)
  int dp = 1;  // data parallel degree (replicas; excludes cp, as Megatron)
  int ep = 1;  // expert parallel degree (MoE layers only); ranks out of dp × cp
  // ZeRO stage (Rajbhandari et al., arXiv 1910.02054): 0 none, 1 optimizer
  // states, 2 + gradients, 3 + parameters sharded over the dp × cp ranks.
  int zero_stage = 0;
  bool sequence_parallel = false;  // Megatron-SP over the tp group
  Recompute recompute = Recompute::kNone;

  bool operator==(const LayerStrategy&) const = default;
};

struct Plan {
  int global_batch_size = 1;  // samples per iteration
  // Samples per micro-batch per data-parallel replica, for the layers with
  // the plan's largest dp (MaxDataParallel()); a layer with a smaller dp
  // processes proportionally more (see MicroBatchSizeOfLayer).
  int micro_batch_size = 1;
  int sequence_length = 1;  // tokens per sample
  topology::Precision precision = topology::Precision::kBf16;

  int pp = 1;  // pipeline stages; every stage has devices / pp devices
  // Transformer layers per stage, in order; empty for an even split.
  std::vector<int> stage_layers;
  PipelineSchedule schedule = PipelineSchedule::kOneFOneB;
  // Model chunks per pipeline rank (interleaved schedule only; 1 otherwise).
  int vpp = 1;
  RankOrder rank_order = DefaultRankOrder();

  // One strategy per transformer layer, in model order (encoder layers
  // first for encoder-decoder models).
  std::vector<LayerStrategy> layers;

  // A plan whose `model.total_layers()` layers all use `layer`, with an
  // even pipeline partition, 1F1B, bf16 and the model's default sequence
  // length.
  static Plan Uniform(const ModelSpec& model, int pp, const LayerStrategy& layer,
                      int global_batch_size, int micro_batch_size);

  int num_layers() const { return static_cast<int>(layers.size()); }
  // True when every layer has the same strategy.
  bool is_uniform() const;

  // The largest dp over the layers (1 for a plan without layers).
  int MaxDataParallel() const;
  // Samples in one micro-batch across all replicas: micro × MaxDataParallel().
  int SamplesPerMicroBatch() const;
  // global / (micro × dp): the micro-batches of one iteration (rounded down
  // when the division is not exact, which validation reports).
  int NumMicroBatches() const;
  // Samples per micro-batch per replica of layer `i`:
  // SamplesPerMicroBatch() / layers[i].dp. REQUIRES: 0 <= i < num_layers().
  int MicroBatchSizeOfLayer(int i) const;

  // Layers per stage: stage_layers when given, otherwise num_layers() split
  // as evenly as possible (the first num_layers() % pp stages get one more).
  // REQUIRES: pp >= 1.
  std::vector<int> StageLayerCounts() const;
  // The first layer of each stage, and num_layers() at the end (pp + 1
  // entries). REQUIRES: pp >= 1.
  std::vector<int> StageBoundaries() const;

  bool operator==(const Plan&) const = default;
};

// The rank groups of `dim` for layer `layer`: every group of ranks that
// differ only in their `dim` coordinate, each listed in coordinate order,
// as Megatron-Core's RankGenerator.get_ranks(dim). Dense dimensions use the
// grid tp, cp, dp, pp (ep = 1); kEp uses the expert grid tp, ep,
// dp·cp/ep, pp (cp = 1), as Megatron-Core builds its expert groups.
// REQUIRES: layer in range; rank_order a permutation of the five
// dimensions; degrees >= 1; for kEp, ep divides dp·cp.
std::vector<std::vector<int>> RankGroups(const Plan& plan, int layer, ParallelDim dim);

// The outcome of checking a plan: every broken rule (errors) and remarks
// that do not prevent running it (notes). Each line names the plan field.
struct PlanCheck {
  std::vector<std::string> errors;
  std::vector<std::string> notes;
  bool ok() const { return errors.empty(); }
};

// Checks `plan` against `model` and `cluster` and reports every broken rule
// at once (docs/plan.md lists them with their sources). Per-layer messages
// are folded over runs of layers that break a rule the same way, e.g.
// "layers[0-79].tp: ...".
PlanCheck CheckPlan(const Plan& plan, const ModelSpec& model, const topology::ClusterSpec& cluster);

// CheckPlan's errors as one FailedPrecondition status: a first line saying
// how many rules are broken, then one line per broken rule. OK when none.
Status ValidatePlan(const Plan& plan, const ModelSpec& model, const topology::ClusterSpec& cluster);

// "0-15", or "7" for a single layer.
std::string LayerRangeName(int first, int last);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_PLAN_H_
