#include "workload/plan.h"

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "core/check.h"

namespace orrery::workload {

namespace {

constexpr std::array<ParallelDim, 5> kAllDims = {ParallelDim::kTp, ParallelDim::kCp,
                                                 ParallelDim::kEp, ParallelDim::kDp,
                                                 ParallelDim::kPp};

std::string Str(int v) { return std::to_string(v); }

}  // namespace

std::string_view PipelineScheduleName(PipelineSchedule s) {
  switch (s) {
    case PipelineSchedule::kGpipe: return "gpipe";
    case PipelineSchedule::kOneFOneB: return "1f1b";
    case PipelineSchedule::kInterleaved: return "interleaved";
  }
  return "?";
}

Result<PipelineSchedule> ParsePipelineSchedule(std::string_view name) {
  for (PipelineSchedule s : {PipelineSchedule::kGpipe, PipelineSchedule::kOneFOneB,
                             PipelineSchedule::kInterleaved}) {
    if (name == PipelineScheduleName(s)) return s;
  }
  return InvalidArgumentError("expected 'gpipe', '1f1b' or 'interleaved', got '" +
                              std::string(name) + "'");
}

std::string_view RecomputeName(Recompute r) {
  switch (r) {
    case Recompute::kNone: return "none";
    case Recompute::kSelective: return "selective";
    case Recompute::kFull: return "full";
  }
  return "?";
}

Result<Recompute> ParseRecompute(std::string_view name) {
  for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    if (name == RecomputeName(r)) return r;
  }
  return InvalidArgumentError("expected 'none', 'selective' or 'full', got '" +
                              std::string(name) + "'");
}

std::string_view ParallelDimName(ParallelDim d) {
  switch (d) {
    case ParallelDim::kTp: return "tp";
    case ParallelDim::kCp: return "cp";
    case ParallelDim::kEp: return "ep";
    case ParallelDim::kDp: return "dp";
    case ParallelDim::kPp: return "pp";
  }
  return "?";
}

Result<ParallelDim> ParseParallelDim(std::string_view name) {
  for (ParallelDim d : kAllDims) {
    if (name == ParallelDimName(d)) return d;
  }
  return InvalidArgumentError("expected one of tp, cp, ep, dp, pp, got '" + std::string(name) +
                              "'");
}

RankOrder DefaultRankOrder() {
  return {ParallelDim::kTp, ParallelDim::kCp, ParallelDim::kEp, ParallelDim::kDp,
          ParallelDim::kPp};
}

std::string RankOrderName(const RankOrder& order) {
  std::string out;
  for (ParallelDim d : order) {
    if (!out.empty()) out += "-";
    out += ParallelDimName(d);
  }
  return out;
}

namespace {
bool IsPermutationOfAllDims(const RankOrder& order) {
  if (order.size() != kAllDims.size()) return false;
  std::set<ParallelDim> seen(order.begin(), order.end());
  return seen.size() == kAllDims.size();
}
}  // namespace

Result<RankOrder> ParseRankOrder(std::string_view text) {
  RankOrder order;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('-', start);
    if (end == std::string_view::npos) end = text.size();
    Result<ParallelDim> d = ParseParallelDim(text.substr(start, end - start));
    if (!d.ok()) {
      return InvalidArgumentError("expected each of tp, cp, ep, dp, pp once, joined by '-' "
                                  "(e.g. 'tp-cp-ep-dp-pp'), got '" + std::string(text) + "'");
    }
    order.push_back(*d);
    start = end + 1;
  }
  if (!IsPermutationOfAllDims(order)) {
    return InvalidArgumentError("expected each of tp, cp, ep, dp, pp once, joined by '-' "
                                "(e.g. 'tp-cp-ep-dp-pp'), got '" + std::string(text) + "'");
  }
  return order;
}

std::string LayerRangeName(int first, int last) {
  if (first == last) return Str(first);
  return Str(first) + "-" + Str(last);
}

Plan Plan::Uniform(const ModelSpec& model, int pp, const LayerStrategy& layer,
                   int global_batch_size, int micro_batch_size) {
  Plan plan;
  plan.global_batch_size = global_batch_size;
  plan.micro_batch_size = micro_batch_size;
  plan.sequence_length = model.default_sequence_length;
  plan.pp = pp;
  plan.layers.assign(static_cast<size_t>(std::max(0, model.total_layers())), layer);
  return plan;
}

bool Plan::is_uniform() const {
  return std::all_of(layers.begin(), layers.end(),
                     [&](const LayerStrategy& l) { return l == layers.front(); });
}

int Plan::MaxDataParallel() const {
  int dp = 1;
  for (const LayerStrategy& l : layers) dp = std::max(dp, l.dp);
  return dp;
}

int Plan::SamplesPerMicroBatch() const { return micro_batch_size * MaxDataParallel(); }

int Plan::NumMicroBatches() const {
  const int samples = SamplesPerMicroBatch();
  if (samples <= 0) return 0;
  return global_batch_size / samples;
}

int Plan::MicroBatchSizeOfLayer(int i) const {
  ORRERY_CHECK(i >= 0 && i < num_layers()) << "layer " << i << " of " << num_layers();
  const int dp = layers[static_cast<size_t>(i)].dp;
  return dp > 0 ? SamplesPerMicroBatch() / dp : 0;
}

std::vector<int> Plan::StageLayerCounts() const {
  ORRERY_CHECK(pp >= 1) << "pp = " << pp;
  if (!stage_layers.empty()) return stage_layers;
  std::vector<int> counts(static_cast<size_t>(pp), num_layers() / pp);
  for (int s = 0; s < num_layers() % pp; ++s) ++counts[static_cast<size_t>(s)];
  return counts;
}

std::vector<int> Plan::StageBoundaries() const {
  std::vector<int> bounds = {0};
  for (int n : StageLayerCounts()) bounds.push_back(bounds.back() + n);
  return bounds;
}

std::vector<std::vector<int>> RankGroups(const Plan& plan, int layer, ParallelDim dim) {
  ORRERY_CHECK(layer >= 0 && layer < plan.num_layers()) << "layer " << layer;
  ORRERY_CHECK(IsPermutationOfAllDims(plan.rank_order)) << RankOrderName(plan.rank_order);
  const LayerStrategy& l = plan.layers[static_cast<size_t>(layer)];
  ORRERY_CHECK(l.tp >= 1 && l.cp >= 1 && l.dp >= 1 && l.ep >= 1 && plan.pp >= 1);
  std::map<ParallelDim, int> size;
  if (dim == ParallelDim::kEp) {
    ORRERY_CHECK((l.dp * l.cp) % l.ep == 0) << "ep " << l.ep << " vs dp·cp " << l.dp * l.cp;
    size = {{ParallelDim::kTp, l.tp}, {ParallelDim::kCp, 1}, {ParallelDim::kEp, l.ep},
            {ParallelDim::kDp, l.dp * l.cp / l.ep}, {ParallelDim::kPp, plan.pp}};
  } else {
    size = {{ParallelDim::kTp, l.tp}, {ParallelDim::kCp, l.cp}, {ParallelDim::kEp, 1},
            {ParallelDim::kDp, l.dp}, {ParallelDim::kPp, plan.pp}};
  }
  // Strides of the grid, innermost dimension first.
  std::map<ParallelDim, int> stride;
  int world = 1;
  for (ParallelDim d : plan.rank_order) {
    stride[d] = world;
    world *= size[d];
  }
  const int group_size = size[dim];
  std::vector<std::vector<int>> groups;
  for (int g = 0; g < world / group_size; ++g) {
    // Decompose the group index over the other dimensions, innermost first.
    int rest = g;
    int base = 0;
    for (ParallelDim d : plan.rank_order) {
      if (d == dim) continue;
      base += (rest % size[d]) * stride[d];
      rest /= size[d];
    }
    std::vector<int> ranks;
    for (int k = 0; k < group_size; ++k) ranks.push_back(base + k * stride[dim]);
    groups.push_back(std::move(ranks));
  }
  return groups;
}

namespace {

// Evaluates a per-layer rule and appends its messages, folding runs of
// consecutive layers with the same message: "layers[0-79].tp: <message>".
// `rule` returns nullopt where the layer satisfies the rule.
using LayerRule = std::function<std::optional<std::string>(const LayerStrategy&, int)>;

void FoldLayerRule(const Plan& plan, const std::vector<bool>& sane, std::string_view field,
                   const LayerRule& rule, std::vector<std::string>* out) {
  int run_start = -1;
  std::string run_message;
  auto flush = [&](int last) {
    if (run_start < 0) return;
    std::string prefix = "layers[" + LayerRangeName(run_start, last) + "]";
    if (!field.empty()) prefix += "." + std::string(field);
    out->push_back(prefix + ": " + run_message);
    run_start = -1;
  };
  for (int i = 0; i < plan.num_layers(); ++i) {
    std::optional<std::string> m;
    if (sane[static_cast<size_t>(i)]) m = rule(plan.layers[static_cast<size_t>(i)], i);
    if (run_start >= 0 && (!m.has_value() || *m != run_message)) flush(i - 1);
    if (m.has_value() && run_start < 0) {
      run_start = i;
      run_message = *m;
    }
  }
  flush(plan.num_layers() - 1);
}

std::optional<std::string> PositiveRule(int value) {
  if (value >= 1) return std::nullopt;
  return "expected a positive integer, got " + Str(value);
}

bool IsCausal(const ModelSpec& model) {
  return model.architecture != Architecture::kEncoderOnly;
}

// The node of each rank, ranks numbered over the node types in order.
std::vector<int> NodeOfRank(const topology::ClusterSpec& cluster) {
  std::vector<int> node_of;
  int node = 0;
  for (const topology::NodeType& t : cluster.node_types) {
    for (int n = 0; n < t.count; ++n, ++node) {
      for (int d = 0; d < t.devices_per_node; ++d) node_of.push_back(node);
    }
  }
  return node_of;
}

}  // namespace

PlanCheck CheckPlan(const Plan& plan, const ModelSpec& model,
                    const topology::ClusterSpec& cluster) {
  PlanCheck check;
  std::vector<std::string>& errors = check.errors;
  std::vector<std::string>& notes = check.notes;
  const int devices = cluster.TotalDevices();
  const int num_layers = plan.num_layers();

  // Batch and sequence.
  if (plan.global_batch_size < 1) {
    errors.push_back("global_batch_size: expected a positive integer, got " +
                     Str(plan.global_batch_size));
  }
  if (plan.micro_batch_size < 1) {
    errors.push_back("micro_batch_size: expected a positive integer, got " +
                     Str(plan.micro_batch_size));
  }
  if (plan.sequence_length < 1) {
    errors.push_back("sequence_length: expected a positive integer, got " +
                     Str(plan.sequence_length));
  } else if (model.max_sequence_length > 0 && plan.sequence_length > model.max_sequence_length) {
    notes.push_back("sequence_length: " + Str(plan.sequence_length) + " exceeds " + model.name +
                    "'s max_sequence_length " + Str(model.max_sequence_length));
  }

  // Precision: every device of the cluster must support it.
  for (const topology::NodeType& t : cluster.node_types) {
    if (!t.device.Peak(plan.precision).has_value()) {
      errors.push_back("precision: " + std::string(topology::PrecisionName(plan.precision)) +
                       " is not supported by " + t.device.name);
    }
  }

  // Layers.
  if (num_layers != model.total_layers()) {
    errors.push_back("layers: the plan has " + Str(num_layers) + " layer strategies, but " +
                     model.name + " has " + Str(model.total_layers()) + " transformer layers");
  }
  const bool order_ok = IsPermutationOfAllDims(plan.rank_order);
  if (!order_ok) {
    errors.push_back("rank_order: expected each of tp, cp, ep, dp, pp once, got '" +
                     RankOrderName(plan.rank_order) + "'");
  }

  // Pipeline.
  const bool pp_ok = plan.pp >= 1;
  if (!pp_ok) errors.push_back("pipeline.pp: expected a positive integer, got " + Str(plan.pp));
  if (plan.vpp < 1) {
    errors.push_back("pipeline.vpp: expected a positive integer, got " + Str(plan.vpp));
  }
  // Even split: Megatron-LM validate_args ("Number of layers should be
  // divisible by the pipeline-model-parallel size").
  bool partition_ok = pp_ok;
  if (pp_ok && plan.stage_layers.empty()) {
    if (num_layers % plan.pp != 0) {
      partition_ok = false;
      errors.push_back("pipeline.stage_layers: " + Str(num_layers) +
                       " layers do not split evenly over pp = " + Str(plan.pp) +
                       " stages; list the layers per stage in stage_layers");
    }
  } else if (pp_ok) {
    if (static_cast<int>(plan.stage_layers.size()) != plan.pp) {
      partition_ok = false;
      errors.push_back("pipeline.stage_layers: " + Str(static_cast<int>(plan.stage_layers.size())) +
                       " stages listed, expected pp = " + Str(plan.pp));
    }
    int sum = 0;
    for (size_t s = 0; s < plan.stage_layers.size(); ++s) {
      sum += plan.stage_layers[s];
      if (plan.stage_layers[s] < 1) {
        partition_ok = false;
        errors.push_back("pipeline.stage_layers[" + Str(static_cast<int>(s)) +
                         "]: expected at least 1 layer, got " + Str(plan.stage_layers[s]));
      }
    }
    if (sum != num_layers) {
      partition_ok = false;
      errors.push_back("pipeline.stage_layers: the stages hold " + Str(sum) +
                       " layers, expected " + Str(num_layers));
    }
  }

  // Per-layer degrees must be positive before any rule divides by them.
  std::vector<bool> sane(static_cast<size_t>(num_layers), true);
  for (int i = 0; i < num_layers; ++i) {
    const LayerStrategy& l = plan.layers[static_cast<size_t>(i)];
    sane[static_cast<size_t>(i)] = l.tp >= 1 && l.cp >= 1 && l.dp >= 1 && l.ep >= 1;
  }
  const std::vector<bool> all(static_cast<size_t>(num_layers), true);
  FoldLayerRule(
      plan, all, "tp", [](const LayerStrategy& l, int) { return PositiveRule(l.tp); }, &errors);
  FoldLayerRule(
      plan, all, "cp", [](const LayerStrategy& l, int) { return PositiveRule(l.cp); }, &errors);
  FoldLayerRule(
      plan, all, "dp", [](const LayerStrategy& l, int) { return PositiveRule(l.dp); }, &errors);
  FoldLayerRule(
      plan, all, "ep", [](const LayerStrategy& l, int) { return PositiveRule(l.ep); }, &errors);
  FoldLayerRule(plan, all, "zero_stage",
                [](const LayerStrategy& l, int) -> std::optional<std::string> {
                  if (l.zero_stage >= 0 && l.zero_stage <= 3) return std::nullopt;
                  return "expected 0, 1, 2 or 3, got " + Str(l.zero_stage);
                },
                &errors);

  // Degrees multiply to the device count: Megatron-LM validate_args
  // (world = tp·pp·cp·dp); Galvatron (per-layer tp·dp = devices per stage).
  if (pp_ok) {
    FoldLayerRule(plan, sane, "", [&](const LayerStrategy& l, int) -> std::optional<std::string> {
      const int product = l.tp * l.cp * l.dp * plan.pp;
      if (product == devices) return std::nullopt;
      return "tp × cp × dp × pp = " + Str(l.tp) + " × " + Str(l.cp) + " × " + Str(l.dp) + " × " +
             Str(plan.pp) + " = " + Str(product) + ", but the cluster has " + Str(devices) +
             " devices";
    }, &errors);
  }

  // Attention heads over tp (Megatron-Core TransformerConfig); kv heads a
  // multiple or a divisor of tp (Megatron-Core >= 0.16 replicates kv heads
  // when tp > num_query_groups).
  FoldLayerRule(plan, sane, "tp", [&](const LayerStrategy& l, int) -> std::optional<std::string> {
    if (model.num_attention_heads % l.tp == 0) return std::nullopt;
    return "num_attention_heads = " + Str(model.num_attention_heads) + " is not divisible by tp = " +
           Str(l.tp);
  }, &errors);
  if (model.num_kv_heads > 0 && model.num_kv_heads != model.num_attention_heads) {
    FoldLayerRule(plan, sane, "tp", [&](const LayerStrategy& l, int) -> std::optional<std::string> {
      if (model.num_kv_heads % l.tp == 0 || l.tp % model.num_kv_heads == 0) return std::nullopt;
      return "num_kv_heads = " + Str(model.num_kv_heads) + " and tp = " + Str(l.tp) +
             ": one must divide the other";
    }, &errors);
  }

  // Sequence parallelism splits the tp group's activations.
  FoldLayerRule(plan, sane, "sequence_parallel",
                [](const LayerStrategy& l, int) -> std::optional<std::string> {
                  if (!l.sequence_parallel || l.tp > 1) return std::nullopt;
                  return "needs tp > 1, got tp = 1";
                },
                &errors);

  // Context parallelism: 2·cp chunks for causal load balancing (Megatron
  // get_batch_on_this_cp_rank), cp chunks otherwise.
  if (plan.sequence_length >= 1) {
    FoldLayerRule(plan, sane, "cp", [&](const LayerStrategy& l, int) -> std::optional<std::string> {
      if (l.cp == 1) return std::nullopt;
      if (IsCausal(model)) {
        if (plan.sequence_length % (2 * l.cp) == 0) return std::nullopt;
        return "sequence_length " + Str(plan.sequence_length) + " is not divisible by 2 × cp = " +
               Str(2 * l.cp) + " (causal load balancing splits it into 2·cp chunks)";
      }
      if (plan.sequence_length % l.cp == 0) return std::nullopt;
      return "sequence_length " + Str(plan.sequence_length) + " is not divisible by cp = " +
             Str(l.cp);
    }, &errors);
  }

  // Expert parallelism (Megatron-Core initialize_model_parallel: world =
  // expert_tp·ep·expert_dp·pp with expert_tp = tp, so ep divides dp·cp; and
  // "When not using pp-last rank ordering, the data parallel size of the
  // attention and moe layers must be the same", i.e. ep == cp).
  FoldLayerRule(plan, sane, "ep", [&](const LayerStrategy& l, int) -> std::optional<std::string> {
    if (l.ep == 1) return std::nullopt;
    if (!model.is_moe()) {
      return model.name + " is not a mixture-of-experts model; expected ep = 1, got " + Str(l.ep);
    }
    std::string problems;
    if (model.num_experts % l.ep != 0) {
      problems = "num_experts = " + Str(model.num_experts) + " is not divisible by ep = " +
                 Str(l.ep);
    }
    if ((l.dp * l.cp) % l.ep != 0) {
      if (!problems.empty()) problems += "; ";
      problems += "ep = " + Str(l.ep) + " does not divide dp × cp = " + Str(l.dp) + " × " +
                  Str(l.cp) + " = " + Str(l.dp * l.cp) +
                  " (expert ranks are carved out of the dp × cp ranks)";
    }
    if (problems.empty()) return std::nullopt;
    return problems;
  }, &errors);
  if (order_ok && pp_ok && plan.pp > 1 && plan.rank_order.back() != ParallelDim::kPp) {
    for (int i = 0; i < num_layers; ++i) {
      const LayerStrategy& l = plan.layers[static_cast<size_t>(i)];
      if (sane[static_cast<size_t>(i)] && model.is_moe() && l.ep != l.cp) {
        errors.push_back("rank_order: '" + RankOrderName(plan.rank_order) +
                         "' must end with pp when pp > 1 and a layer has ep != cp (layer " +
                         Str(i) + ": ep = " + Str(l.ep) + ", cp = " + Str(l.cp) +
                         "): the dense and expert data-parallel sizes would differ");
        break;
      }
    }
  }

  // Batch: global = m × micro × dp (Megatron-Core num_microbatches_calculator).
  const int max_dp = plan.MaxDataParallel();
  const bool batch_ok = plan.global_batch_size >= 1 && plan.micro_batch_size >= 1;
  if (batch_ok && plan.global_batch_size % (plan.micro_batch_size * max_dp) != 0) {
    errors.push_back("global_batch_size: " + Str(plan.global_batch_size) +
                     " is not divisible by micro_batch_size × dp = " +
                     Str(plan.micro_batch_size) + " × " + Str(max_dp) + " = " +
                     Str(plan.micro_batch_size * max_dp));
  }
  if (batch_ok) {
    const int samples = plan.SamplesPerMicroBatch();
    FoldLayerRule(plan, sane, "dp", [&](const LayerStrategy& l, int) -> std::optional<std::string> {
      if (samples % l.dp == 0) return std::nullopt;
      return "a micro-batch of " + Str(samples) + " samples (micro_batch_size " +
             Str(plan.micro_batch_size) + " × the plan's largest dp " + Str(max_dp) +
             ") does not split over dp = " + Str(l.dp);
    }, &errors);
  }
  const int m = plan.NumMicroBatches();

  // Schedules. Interleaved: vpp >= 2 (one chunk is plain 1F1B); layers per
  // stage divisible by vpp (Megatron-LM validate_args); pp >= 2 (Megatron-Core
  // initialize_model_parallel); m a multiple of pp and no encoder-decoder
  // models (Megatron-Core schedules.py,
  // forward_backward_pipelining_with_interleaving).
  if (plan.schedule == PipelineSchedule::kInterleaved) {
    if (plan.vpp >= 1 && plan.vpp < 2) {
      errors.push_back("pipeline.vpp: the interleaved schedule needs vpp >= 2, got " +
                       Str(plan.vpp));
    }
    if (pp_ok && plan.pp < 2) {
      errors.push_back("pipeline.pp: the interleaved schedule needs pp >= 2, got " +
                       Str(plan.pp));
    }
    if (plan.vpp >= 2 && partition_ok) {
      const std::vector<int> counts = plan.StageLayerCounts();
      if (plan.stage_layers.empty()) {
        if (counts[0] % plan.vpp != 0) {
          errors.push_back("pipeline.vpp: " + Str(counts[0]) +
                           " layers per stage do not divide into vpp = " + Str(plan.vpp) +
                           " model chunks");
        }
      } else {
        for (size_t s = 0; s < counts.size(); ++s) {
          if (counts[s] % plan.vpp != 0) {
            errors.push_back("pipeline.stage_layers[" + Str(static_cast<int>(s)) + "]: " +
                             Str(counts[s]) + " layers do not divide into vpp = " +
                             Str(plan.vpp) + " model chunks");
          }
        }
      }
    }
    if (pp_ok && batch_ok && m >= 1 && m % plan.pp != 0) {
      errors.push_back("pipeline.schedule: interleaved needs the number of micro-batches (" +
                       Str(m) + " = global_batch_size / (micro_batch_size × dp)) to be a " +
                       "multiple of pp = " + Str(plan.pp));
    }
    if (model.architecture == Architecture::kEncoderDecoder) {
      errors.push_back("pipeline.schedule: interleaved is not supported for encoder-decoder "
                       "models");
    }
  } else if (plan.vpp > 1) {
    errors.push_back("pipeline.vpp: only the interleaved schedule has virtual stages; got vpp = " +
                     Str(plan.vpp) + " with schedule " +
                     std::string(PipelineScheduleName(plan.schedule)));
  }

  // Notes: runnable, but worth knowing.
  if (pp_ok && plan.pp > 1 && m >= 1 && m < plan.pp) {
    notes.push_back("pipeline: " + Str(m) + " micro-batches for pp = " + Str(plan.pp) +
                    " stages; the pipeline bubble (pp - 1) / m is " +
                    Str(100 * (plan.pp - 1) / m) + "% of the ideal time");
  }
  FoldLayerRule(plan, sane, "zero_stage",
                [](const LayerStrategy& l, int) -> std::optional<std::string> {
                  if (l.zero_stage < 1 || l.zero_stage > 3 || l.dp * l.cp > 1) return std::nullopt;
                  return "ZeRO stage " + Str(l.zero_stage) +
                         " with dp × cp = 1 shards over a single rank and saves no memory";
                },
                &notes);
  const std::vector<int> node_of = NodeOfRank(cluster);
  if (order_ok && pp_ok && !cluster.node_types.empty()) {
    const int per_node = cluster.PrimaryNodeType().devices_per_node;
    FoldLayerRule(plan, sane, "tp", [&](const LayerStrategy& l, int i) -> std::optional<std::string> {
      if (l.tp == 1 || l.tp * l.cp * l.dp * plan.pp != static_cast<int>(node_of.size())) {
        return std::nullopt;
      }
      int max_nodes = 1;
      for (const std::vector<int>& group : RankGroups(plan, i, ParallelDim::kTp)) {
        std::set<int> nodes;
        for (int r : group) nodes.insert(node_of[static_cast<size_t>(r)]);
        max_nodes = std::max(max_nodes, static_cast<int>(nodes.size()));
      }
      if (max_nodes == 1) return std::nullopt;
      return "tp groups of " + Str(l.tp) + " ranks span " + Str(max_nodes) + " nodes (" +
             Str(per_node) + " devices per node); their collectives cross the network";
    }, &notes);
  }
  return check;
}

Status ValidatePlan(const Plan& plan, const ModelSpec& model,
                    const topology::ClusterSpec& cluster) {
  const PlanCheck check = CheckPlan(plan, model, cluster);
  if (check.ok()) return Status::Ok();
  const size_t n = check.errors.size();
  std::string message = "the plan breaks " + std::to_string(n) + (n == 1 ? " rule:" : " rules:");
  for (const std::string& e : check.errors) message += "\n  " + e;
  return FailedPreconditionError(message);
}

}  // namespace orrery::workload
