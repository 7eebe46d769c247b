#include "costmodel/memory.h"

#include <algorithm>
#include <iomanip>
#include <map>
#include <sstream>
#include <string_view>
#include <utility>

#include "core/check.h"
#include "workload/operators.h"

namespace orrery::costmodel {
namespace {

using workload::LayerKind;
using workload::LayerLayout;
using workload::LayerOperators;
using workload::LayerStrategy;
using workload::ModelSpec;
using workload::Plan;
using workload::PipelineSchedule;
using workload::Recompute;

std::string Str(int64_t v) { return std::to_string(v); }

// One layer's share of a stage's memory, per micro-batch for activations.
struct LayerMemory {
  int64_t dense_parameters = 0;   // sharded by ZeRO over dp·cp
  int64_t expert_parameters = 0;  // sharded by ZeRO over dp·cp/ep
  Bytes kept;                     // saved for backward under the layer's recomputation
  Bytes recomputed;               // held again while the layer's backward recomputes it
};

bool IsExpertOperator(std::string_view name) { return name.starts_with("moe.experts."); }

LayerLayout LayoutOf(const LayerStrategy& l) {
  return LayerLayout{.tp = l.tp, .sequence_parallel = l.sequence_parallel, .cp = l.cp, .ep = l.ep};
}

// Expands `kind` under strategy `l` and applies its recomputation.
// Embedding and head layers are never recomputed (Megatron-LM checkpoints
// the transformer blocks only).
Result<LayerMemory> ExpandForMemory(const ModelSpec& model, const Plan& plan, LayerKind kind,
                                    int strategy_index, bool recomputable,
                                    const MemoryOptions& options) {
  const LayerStrategy& l = plan.layers[static_cast<size_t>(strategy_index)];
  const int64_t b = plan.MicroBatchSizeOfLayer(strategy_index);
  workload::ExpansionOptions expansion;
  expansion.activation_bytes = options.activation_bytes;
  expansion.flash_attention = options.flash_attention;
  Result<LayerOperators> ops =
      workload::ExpandLayer(model, kind, b, plan.sequence_length, LayoutOf(l), expansion);
  if (!ops.ok()) {
    return InvalidArgumentError("plan.layers[" + Str(strategy_index) + "]: " +
                                ops.status().message());
  }
  LayerMemory mem;
  for (const workload::Operator& op : ops->ops) {
    (IsExpertOperator(op.name) ? mem.expert_parameters : mem.dense_parameters) += op.parameters;
  }
  const Bytes full = ops->SavedActivations(false);
  const Recompute recompute = recomputable ? l.recompute : Recompute::kNone;
  switch (recompute) {
    case Recompute::kNone:
      mem.kept = full;
      break;
    case Recompute::kSelective:
      // Korthikanti §5: the attention core's activations are dropped and
      // recomputed in backward.
      mem.kept = ops->SavedActivations(true);
      mem.recomputed = full - mem.kept;
      break;
    case Recompute::kFull: {
      // Korthikanti Table 2, "Full recompute": only the layer's input,
      // 2sbh, is kept; it is split over tp with SP and over cp with CP.
      const int64_t tokens = b * (plan.sequence_length / l.cp);
      const int64_t split = l.sequence_parallel ? l.tp : 1;
      mem.kept = Bytes(int64_t{options.activation_bytes} * tokens * model.hidden_size / split);
      mem.recomputed = full;
      break;
    }
  }
  return mem;
}

// Parameters of one stage, grouped by how ZeRO treats them.
struct ShardKey {
  int zero_stage;
  int shards;  // N_d
  auto operator<=>(const ShardKey&) const = default;
};

Bytes CeilDiv(int64_t numerator, int64_t denominator) {
  return Bytes((numerator + denominator - 1) / denominator);
}

void AddParameters(const LayerStrategy& l, const LayerMemory& mem,
                   std::map<ShardKey, int64_t>& groups) {
  if (mem.dense_parameters > 0) groups[{l.zero_stage, l.dp * l.cp}] += mem.dense_parameters;
  if (mem.expert_parameters > 0) {
    // Expert weights replicate over the expert data-parallel group, dp·cp/ep
    // (Megatron-Core's expert grid; workload/plan.h).
    groups[{l.zero_stage, std::max(1, l.dp * l.cp / l.ep)}] += mem.expert_parameters;
  }
}

struct StateBytes {
  int weights;
  int gradients;
  int optimizer;
};

StateBytes ResolveStateBytes(const Plan& plan, const MemoryOptions& options) {
  const bool fp32 = plan.precision == topology::Precision::kFp32 ||
                    plan.precision == topology::Precision::kTf32;
  StateBytes s;
  s.weights = options.parameter_bytes.value_or(fp32 ? 4 : 2);
  s.gradients = options.gradient_bytes;
  s.optimizer = options.optimizer_bytes.value_or(s.weights >= 4 ? 8 : 12);
  return s;
}

Status CheckInputs(const ModelSpec& model, const Plan& plan,
                   const topology::ClusterSpec& cluster, const MemoryOptions& options) {
  if (cluster.node_types.empty()) {
    return InvalidArgumentError("cluster '" + cluster.name + "': no node types");
  }
  if (plan.num_layers() == 0 || plan.num_layers() != model.total_layers()) {
    return InvalidArgumentError("plan.layers: expected " + Str(model.total_layers()) +
                                " strategies, one per transformer layer of " + model.name +
                                ", got " + Str(plan.num_layers()));
  }
  if (plan.pp < 1) {
    return InvalidArgumentError("plan.pipeline.pp: expected a positive integer, got " +
                                Str(plan.pp));
  }
  const std::vector<int> counts = plan.StageLayerCounts();
  int sum = 0;
  for (int c : counts) sum += c;
  if (static_cast<int>(counts.size()) != plan.pp || sum != plan.num_layers()) {
    return InvalidArgumentError("plan.pipeline.stage_layers: expected " + Str(plan.pp) +
                                " stages summing to " + Str(plan.num_layers()) + " layers");
  }
  const int vpp = plan.schedule == PipelineSchedule::kInterleaved ? plan.vpp : 1;
  if (vpp < 1) {
    return InvalidArgumentError("plan.pipeline.vpp: expected a positive integer, got " +
                                Str(plan.vpp));
  }
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] % vpp != 0) {
      return InvalidArgumentError("plan.pipeline.stage_layers[" + Str(static_cast<int64_t>(s)) +
                                  "]: " + Str(counts[s]) + " layers do not divide into vpp = " +
                                  Str(vpp) + " model chunks");
    }
  }
  if (plan.NumMicroBatches() < 1 || plan.sequence_length < 1) {
    return InvalidArgumentError("plan: expected at least one micro-batch and a positive "
                                "sequence length (global_batch_size " +
                                Str(plan.global_batch_size) + ", micro_batch_size " +
                                Str(plan.micro_batch_size) + ", sequence_length " +
                                Str(plan.sequence_length) + ")");
  }
  for (int i = 0; i < plan.num_layers(); ++i) {
    const LayerStrategy& l = plan.layers[static_cast<size_t>(i)];
    if (l.tp < 1 || l.cp < 1 || l.dp < 1 || l.ep < 1 || l.zero_stage < 0 || l.zero_stage > 3) {
      return InvalidArgumentError("plan.layers[" + Str(i) + "]: expected degrees >= 1 and a "
                                  "ZeRO stage in 0..3");
    }
  }
  if (options.gradient_bytes < 1 || options.activation_bytes < 1 ||
      options.parameter_bytes.value_or(1) < 1 || options.optimizer_bytes.value_or(0) < 0 ||
      options.zero2_bucket_elements < 0 || options.fragmentation < 0.0) {
    return InvalidArgumentError("memory options: expected positive byte widths and "
                                "non-negative bucket size and fragmentation");
  }
  return Status::Ok();
}

}  // namespace

Bytes StageMemory::Total() const {
  return ModelStates() + activations + recompute_activations + communication_buffers +
         fragmentation + framework_context;
}

bool MemoryEstimate::Fits() const {
  for (const StageMemory& s : stages) {
    if (s.Total() > Usable()) return false;
  }
  return true;
}

int InFlightMicroBatches(PipelineSchedule schedule, int p, int s, int m, int vpp) {
  ORRERY_CHECK(p >= 1 && s >= 0 && s < p && m >= 1 && vpp >= 1)
      << "p " << p << " s " << s << " m " << m << " vpp " << vpp;
  switch (schedule) {
    case PipelineSchedule::kGpipe:
      return m;
    case PipelineSchedule::kOneFOneB:
      return std::min(p - s, m);
    case PipelineSchedule::kInterleaved:
      return std::min((vpp - 1) * p + 2 * (p - s - 1) + 1, m * vpp);
  }
  return m;
}

std::vector<int> InFlightPerChunk(int p, int s, int m, int vpp) {
  const int total = InFlightMicroBatches(PipelineSchedule::kInterleaved, p, s, m, vpp);
  std::vector<int> per_chunk(static_cast<size_t>(vpp), 0);
  for (int k = 0; k < total; ++k) ++per_chunk[static_cast<size_t>((k % (p * vpp)) / p)];
  return per_chunk;
}

Result<MemoryEstimate> EstimateMemory(const ModelSpec& model, const Plan& plan,
                                      const topology::ClusterSpec& cluster,
                                      const MemoryOptions& options) {
  ORRERY_RETURN_IF_ERROR(CheckInputs(model, plan, cluster, options));
  const StateBytes bytes = ResolveStateBytes(plan, options);
  const std::vector<LayerKind> kinds = workload::ModelLayers(model);
  ORRERY_CHECK(static_cast<int>(kinds.size()) == model.total_layers() + 2)
      << "ModelLayers of " << model.name;
  const std::vector<int> bounds = plan.StageBoundaries();
  const int p = plan.pp;
  const int m = plan.NumMicroBatches();
  const bool interleaved = plan.schedule == PipelineSchedule::kInterleaved;
  const int vpp = interleaved ? plan.vpp : 1;

  MemoryEstimate estimate;
  estimate.capacity = cluster.node_types.front().device.memory;
  for (const topology::NodeType& node : cluster.node_types) {
    estimate.capacity = std::min(estimate.capacity, node.device.memory);
  }
  estimate.reserve = options.reserve;

  for (int s = 0; s < p; ++s) {
    StageMemory stage;
    stage.stage = s;
    stage.first_layer = bounds[static_cast<size_t>(s)];
    stage.num_layers = bounds[static_cast<size_t>(s) + 1] - stage.first_layer;
    // An empty stage still runs the embedding or head of its neighbours'
    // strategy; take the nearest layer's.
    const int first_strategy = std::min(stage.first_layer, plan.num_layers() - 1);
    const int last_strategy = std::max(0, stage.first_layer + stage.num_layers - 1);

    std::map<ShardKey, int64_t> groups;
    std::vector<Bytes> chunk_activations(static_cast<size_t>(vpp));
    int64_t zero2_parameters = 0;
    int64_t zero3_largest_layer = 0;
    const int layers_per_chunk = stage.num_layers / vpp;
    for (int i = 0; i < stage.num_layers; ++i) {
      const int layer = stage.first_layer + i;
      const LayerStrategy& l = plan.layers[static_cast<size_t>(layer)];
      ORRERY_ASSIGN_OR_RETURN(
          LayerMemory mem,
          ExpandForMemory(model, plan, kinds[static_cast<size_t>(layer) + 1], layer,
                          /*recomputable=*/true, options));
      AddParameters(l, mem, groups);
      const int64_t layer_parameters = mem.dense_parameters + mem.expert_parameters;
      stage.parameters += layer_parameters;
      if (l.zero_stage == 2) zero2_parameters += layer_parameters;
      if (l.zero_stage == 3) zero3_largest_layer = std::max(zero3_largest_layer, layer_parameters);
      chunk_activations[static_cast<size_t>(i / layers_per_chunk)] += mem.kept;
      stage.recompute_activations = std::max(stage.recompute_activations, mem.recomputed);
    }

    // The embedding runs in the first model chunk of the first stage, the
    // head in the last chunk of the last stage (Megatron-LM's virtual
    // pipeline puts virtual stage 0 on rank 0 and the last on rank p − 1).
    auto add_edge_layer = [&](LayerKind kind, int strategy, size_t chunk) -> Status {
      ORRERY_ASSIGN_OR_RETURN(LayerMemory mem, ExpandForMemory(model, plan, kind, strategy,
                                                               /*recomputable=*/false, options));
      const LayerStrategy& l = plan.layers[static_cast<size_t>(strategy)];
      AddParameters(l, mem, groups);
      stage.parameters += mem.dense_parameters;
      if (l.zero_stage == 2) zero2_parameters += mem.dense_parameters;
      chunk_activations[chunk] += mem.kept;
      return Status::Ok();
    };
    if (s == 0) {
      ORRERY_RETURN_IF_ERROR(add_edge_layer(kinds.front(), first_strategy, 0));
    }
    if (s == p - 1) {
      ORRERY_RETURN_IF_ERROR(
          add_edge_layer(kinds.back(), last_strategy, static_cast<size_t>(vpp) - 1));
      if (p > 1 && model.tied_embeddings && model.vocab_size > 0) {
        // Megatron-LM keeps a copy of a tied word embedding on the last
        // stage (vocabulary-parallel, V·h/t) and all-reduces its gradient
        // with the first stage's; it has its own gradient and optimizer
        // states.
        const LayerStrategy& l = plan.layers[static_cast<size_t>(last_strategy)];
        const int64_t copy = int64_t{model.vocab_size} * model.hidden_size / l.tp;
        groups[{l.zero_stage, l.dp * l.cp}] += copy;
        stage.parameters += copy;
        if (l.zero_stage == 2) zero2_parameters += copy;
      }
    }

    // Model states, ZeRO paper §5 with W, G, K bytes per parameter.
    for (const auto& [key, psi] : groups) {
      const int64_t n = key.shards;
      const int64_t w = bytes.weights * psi, g = bytes.gradients * psi, k = bytes.optimizer * psi;
      stage.parameter_bytes += key.zero_stage >= 3 ? CeilDiv(w, n) : Bytes(w);
      stage.gradient_bytes += key.zero_stage >= 2 ? CeilDiv(g, n) : Bytes(g);
      stage.optimizer_bytes += key.zero_stage >= 1 ? CeilDiv(k, n) : Bytes(k);
    }

    // Activations in flight.
    if (interleaved) {
      const std::vector<int> per_chunk = InFlightPerChunk(p, s, m, vpp);
      for (int c = 0; c < vpp; ++c) {
        stage.activations +=
            chunk_activations[static_cast<size_t>(c)] * per_chunk[static_cast<size_t>(c)];
        stage.in_flight += per_chunk[static_cast<size_t>(c)];
      }
    } else {
      stage.in_flight = InFlightMicroBatches(plan.schedule, p, s, m, 1);
      stage.activations = chunk_activations[0] * stage.in_flight;
    }

    // Communication buffers.
    if (p > 1) {
      // One receive and one send buffer of the boundary activation (its
      // gradient reuses them in backward): b·s·h elements, /cp, /t with SP.
      const LayerStrategy& l = plan.layers[static_cast<size_t>(first_strategy)];
      const int64_t tokens = int64_t{plan.MicroBatchSizeOfLayer(first_strategy)} *
                             (plan.sequence_length / l.cp);
      const int64_t split = l.sequence_parallel ? l.tp : 1;
      stage.communication_buffers +=
          Bytes(2 * int64_t{options.activation_bytes} * tokens * model.hidden_size / split);
    }
    if (zero2_parameters > 0) {
      // ZeRO-2: one bucket of unsharded gradients awaiting reduce-scatter.
      stage.communication_buffers +=
          Bytes(std::min(zero2_parameters, options.zero2_bucket_elements) * bytes.gradients);
    }
    if (zero3_largest_layer > 0) {
      // ZeRO-3: the gathered weights of the layer in use and of the one
      // prefetched, and the layer's unsharded gradient before its
      // reduce-scatter.
      stage.communication_buffers +=
          Bytes(zero3_largest_layer * (2 * bytes.weights + bytes.gradients));
    }

    const Bytes allocated = stage.ModelStates() + stage.activations +
                            stage.recompute_activations + stage.communication_buffers;
    stage.fragmentation = allocated * options.fragmentation;
    stage.framework_context = options.framework_context;
    estimate.stages.push_back(stage);
  }

  for (size_t s = 1; s < estimate.stages.size(); ++s) {
    if (estimate.stages[s].Total() > estimate.Peak().Total()) {
      estimate.peak_stage = static_cast<int>(s);
    }
  }
  return estimate;
}

std::string FormatMemoryTable(const MemoryEstimate& estimate) {
  std::ostringstream out;
  auto row = [&out](const std::vector<std::string>& cells) {
    static constexpr int kWidths[] = {6, 8, 10, 10, 10, 10, 6, 11, 10, 10, 12, 11, 5};
    for (size_t i = 0; i < cells.size(); ++i) {
      out << std::setw(kWidths[i]) << cells[i] << (i + 1 < cells.size() ? " " : "\n");
    }
  };
  row({"stage", "layers", "params", "weights", "grads", "optimizer", "mb", "activations",
       "recompute", "buffers", "frag+context", "total", "fits"});
  for (const StageMemory& s : estimate.stages) {
    std::ostringstream params;
    params << std::fixed << std::setprecision(1) << static_cast<double>(s.parameters) / 1e6
           << " M";
    const std::string layers =
        s.num_layers == 0 ? "-"
                          : workload::LayerRangeName(s.first_layer,
                                                     s.first_layer + s.num_layers - 1);
    row({Str(s.stage) + (s.stage == estimate.peak_stage ? "*" : ""), layers, params.str(),
         FormatBytes(s.parameter_bytes), FormatBytes(s.gradient_bytes),
         FormatBytes(s.optimizer_bytes), Str(s.in_flight), FormatBytes(s.activations),
         FormatBytes(s.recompute_activations), FormatBytes(s.communication_buffers),
         FormatBytes(s.fragmentation + s.framework_context), FormatBytes(s.Total()),
         s.Total() <= estimate.Usable() ? "yes" : "no"});
  }
  out << "* peak stage; usable " << FormatBytes(estimate.Usable()) << " = capacity "
      << FormatBytes(estimate.capacity) << " - reserve " << FormatBytes(estimate.reserve)
      << "; mb = micro-batches (per model chunk) in flight\n";
  return out.str();
}

}  // namespace orrery::costmodel
