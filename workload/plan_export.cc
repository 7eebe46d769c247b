#include "workload/plan_export.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "core/json.h"
#include "workload/galvatron_config.h"

namespace orrery::workload {

namespace {

std::string Str(int v) { return std::to_string(v); }

std::string Flag(std::string_view name, int value) {
  return std::string(name) + " " + Str(value);
}

// The first layer whose strategy differs from layer 0's, ignoring the
// recomputation when `ignore_recompute`; the message names the field.
std::optional<std::string> FirstDifference(const Plan& plan, bool ignore_recompute) {
  const LayerStrategy& a = plan.layers.front();
  for (int i = 1; i < plan.num_layers(); ++i) {
    const LayerStrategy& b = plan.layers[static_cast<size_t>(i)];
    const std::string at = "layers[" + Str(i) + "].";
    auto differs = [&](const char* field, const std::string& x, const std::string& y) {
      return at + field + ": " + y + ", but layers[0] has " + x;
    };
    if (a.tp != b.tp) return differs("tp", Str(a.tp), Str(b.tp));
    if (a.cp != b.cp) return differs("cp", Str(a.cp), Str(b.cp));
    if (a.dp != b.dp) return differs("dp", Str(a.dp), Str(b.dp));
    if (a.ep != b.ep) return differs("ep", Str(a.ep), Str(b.ep));
    if (a.zero_stage != b.zero_stage) {
      return differs("zero_stage", Str(a.zero_stage), Str(b.zero_stage));
    }
    if (a.sequence_parallel != b.sequence_parallel) {
      return differs("sequence_parallel", a.sequence_parallel ? "true" : "false",
                     b.sequence_parallel ? "true" : "false");
    }
    if (!ignore_recompute && a.recompute != b.recompute) {
      return differs("recompute", std::string(RecomputeName(a.recompute)),
                     std::string(RecomputeName(b.recompute)));
    }
  }
  return std::nullopt;
}

// The rank order without the dimensions of degree 1, which place no ranks.
RankOrder EffectiveOrder(const Plan& plan) {
  const LayerStrategy& l = plan.layers.front();
  RankOrder order;
  for (ParallelDim d : plan.rank_order) {
    const int degree = d == ParallelDim::kTp   ? l.tp
                       : d == ParallelDim::kCp ? l.cp
                       : d == ParallelDim::kEp ? l.ep
                       : d == ParallelDim::kDp ? l.dp
                                               : plan.pp;
    if (degree > 1) order.push_back(d);
  }
  return order;
}

bool SameEffectiveOrder(const Plan& plan, const RankOrder& order) {
  Plan other = plan;
  other.rank_order = order;
  return EffectiveOrder(plan) == EffectiveOrder(other);
}

// Megatron-Core's order with --use-tp-pp-dp-mapping (arguments.py:
// "from tp-cp-ep-dp-pp to tp-cp-ep-pp-dp").
RankOrder TpPpDpOrder() {
  return {ParallelDim::kTp, ParallelDim::kCp, ParallelDim::kEp, ParallelDim::kPp,
          ParallelDim::kDp};
}

Status MegatronRefusal(const std::string& what) {
  return InvalidArgumentError("cannot export to Megatron-LM: " + what);
}

// Megatron-LM's --recompute-method block: "the number of individual
// Transformer layers to recompute within each pipeline stage"
// (arguments.py --recompute-num-layers), the first N layers of each stage,
// all of a stage's layers when it has fewer than N. The N of a plan whose
// layers are full or none in that pattern, or nullopt.
std::optional<int> BlockRecomputeLayers(const Plan& plan) {
  const std::vector<int> bounds = plan.StageBoundaries();
  std::vector<int> leading;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    int n = 0;
    bool in_prefix = true;
    for (int i = bounds[s]; i < bounds[s + 1]; ++i) {
      const Recompute r = plan.layers[static_cast<size_t>(i)].recompute;
      if (r == Recompute::kSelective) return std::nullopt;
      if (r == Recompute::kFull) {
        if (!in_prefix) return std::nullopt;
        ++n;
      } else {
        in_prefix = false;
      }
    }
    leading.push_back(n);
  }
  const int n = *std::max_element(leading.begin(), leading.end());
  for (size_t s = 0; s < leading.size(); ++s) {
    if (leading[s] != std::min(n, bounds[s + 1] - bounds[s])) return std::nullopt;
  }
  return n;
}

// The uneven-pipeline arguments (Megatron-Core get_num_layers_to_build:
// the first and last stages take the given counts, the stages between
// share the rest evenly).
Result<std::vector<std::string>> MegatronStageArguments(const Plan& plan) {
  const std::vector<int> c = plan.StageLayerCounts();
  if (plan.pp == 1 || std::all_of(c.begin(), c.end(), [&](int n) { return n == c[0]; })) {
    return std::vector<std::string>();
  }
  std::vector<std::string> args;
  const int pp = plan.pp;
  if (pp == 2) {
    args.push_back(Flag("--decoder-first-pipeline-num-layers", c[0]));
    return args;
  }
  const int middle = c[1];
  for (int s = 2; s < pp - 1; ++s) {
    if (c[static_cast<size_t>(s)] != middle) {
      return MegatronRefusal(
          "pipeline.stage_layers[" + Str(s) + "]: " + Str(c[static_cast<size_t>(s)]) +
          " layers, but stage 1 has " + Str(middle) +
          "; Megatron-LM sets only the first and last stages "
          "(--decoder-first/last-pipeline-num-layers) and splits the rest evenly");
    }
  }
  if (c.front() != middle) args.push_back(Flag("--decoder-first-pipeline-num-layers", c.front()));
  if (c.back() != middle) args.push_back(Flag("--decoder-last-pipeline-num-layers", c.back()));
  return args;
}

Result<PlanExport> ExportMegatron(const Plan& plan, const ModelSpec& model) {
  ORRERY_ASSIGN_OR_RETURN(std::vector<std::string> args, MegatronArguments(plan, model));
  PlanExport out;
  for (size_t i = 0; i < args.size(); ++i) {
    out.text += args[i] + (i + 1 < args.size() ? " \\\n" : "\n");
  }
  const LayerStrategy& l = plan.layers.front();
  out.notes.push_back("launch on tp × cp × dp × pp = " + Str(l.tp) + " × " + Str(l.cp) + " × " +
                      Str(l.dp) + " × " + Str(plan.pp) + " = " +
                      Str(l.tp * l.cp * l.dp * plan.pp) +
                      " GPUs; Megatron-LM infers dp = " + Str(l.dp) + " from the world size");
  if (l.zero_stage >= 2) {
    out.notes.push_back("ZeRO-" + Str(l.zero_stage) +
                        " is Megatron-FSDP (--use-megatron-fsdp, Megatron-Core's fully sharded "
                        "data parallel; older releases name it --use-custom-fsdp)");
  }
  return out;
}

Result<PlanExport> ExportDeepSpeed(const Plan& plan) {
  auto refuse = [](const std::string& what) {
    return InvalidArgumentError("cannot export to DeepSpeed: " + what);
  };
  if (plan.layers.empty()) return refuse("the plan has no layers");
  if (std::optional<std::string> d = FirstDifference(plan, /*ignore_recompute=*/false)) {
    return refuse(*d + "; Megatron-DeepSpeed applies one strategy to every layer");
  }
  const LayerStrategy& l = plan.layers.front();
  const std::string all = "layers[" + LayerRangeName(0, plan.num_layers() - 1) + "]";
  // deepspeed/runtime/pipe/engine.py PipelineEngine.__init__:
  //   assert self.zero_optimization_stage() < 2, "ZeRO-2 and ZeRO-3 are incompatible with
  //   pipeline parallelism"
  if (plan.pp > 1 && l.zero_stage >= 2) {
    return refuse(all + ".zero_stage: " + Str(l.zero_stage) + " with pp = " + Str(plan.pp) +
                  "; DeepSpeed's pipeline engine accepts only ZeRO-0 and ZeRO-1");
  }
  if (plan.pp > 1 && plan.schedule != PipelineSchedule::kOneFOneB) {
    return refuse("pipeline.schedule: " + std::string(PipelineScheduleName(plan.schedule)) +
                  "; DeepSpeed's pipeline engine runs its own 1F1B TrainSchedule");
  }
  const std::vector<int> counts = plan.StageLayerCounts();
  if (!std::all_of(counts.begin(), counts.end(), [&](int n) { return n == counts[0]; })) {
    return refuse("pipeline.stage_layers: stages of different sizes; Megatron-DeepSpeed's "
                  "PipelineModule splits transformer layers evenly (partition_method "
                  "type:transformer)");
  }
  if (l.ep > 1) {
    return refuse(all + ".ep: " + Str(l.ep) + "; DeepSpeed-MoE's expert arguments are not "
                  "exported (export to megatron)");
  }
  if (l.cp > 1 && l.sequence_parallel) {
    return refuse(all + ".cp: " + Str(l.cp) + " with sequence_parallel; Megatron-DeepSpeed's "
                  "--ds-sequence-parallel-size (Ulysses) cannot be combined with "
                  "--sequence-parallel");
  }
  if (!SameEffectiveOrder(plan, DefaultRankOrder())) {
    return refuse("rank_order: '" + RankOrderName(plan.rank_order) +
                  "'; Megatron-DeepSpeed lays out ranks tp, dp, pp (innermost first)");
  }
  if (plan.precision == topology::Precision::kFp8) {
    return refuse("precision: fp8; a DeepSpeed config has no FP8 training switch");
  }

  Json c = Json::object();
  // DeepSpeed: train_batch_size = train_micro_batch_size_per_gpu ×
  // gradient_accumulation_steps × data-parallel size (DeepSpeed config docs).
  c["train_batch_size"] = plan.global_batch_size;
  c["train_micro_batch_size_per_gpu"] = plan.micro_batch_size;
  c["gradient_accumulation_steps"] = plan.NumMicroBatches();
  c["zero_optimization"] = Json{{"stage", l.zero_stage}};
  if (plan.precision == topology::Precision::kBf16) c["bf16"] = Json{{"enabled", true}};
  if (plan.precision == topology::Precision::kFp16) c["fp16"] = Json{{"enabled", true}};
  if (l.recompute != Recompute::kNone) {
    // Which layers are recomputed is the model code's choice (the
    // Megatron-DeepSpeed arguments below); this section configures
    // DeepSpeed's checkpointing engine, with nothing partitioned or
    // offloaded, as Orrery models it.
    c["activation_checkpointing"] = Json{{"partition_activations", false},
                                         {"cpu_checkpointing", false},
                                         {"contiguous_memory_optimization", false}};
  }
  PlanExport out;
  out.text = DumpJson(c);

  // Megatron-DeepSpeed (microsoft/Megatron-DeepSpeed megatron/arguments.py).
  std::string args = "--tensor-model-parallel-size " + Str(l.tp) +
                     " --pipeline-model-parallel-size " + Str(plan.pp);
  if (plan.pp == 1) args += " --no-pipeline-parallel";
  if (l.cp > 1) args += " --ds-sequence-parallel-size " + Str(l.cp);
  if (l.sequence_parallel) args += " --sequence-parallel";
  args += " --micro-batch-size " + Str(plan.micro_batch_size) + " --global-batch-size " +
          Str(plan.global_batch_size) + " --seq-length " + Str(plan.sequence_length);
  if (l.recompute == Recompute::kFull) {
    args += " --checkpoint-activations --checkpoint-num-layers 1 "
            "--deepspeed-activation-checkpointing";
  } else if (l.recompute == Recompute::kSelective) {
    args += " --recompute-granularity selective";
  }
  if (plan.precision == topology::Precision::kBf16) args += " --bf16";
  if (plan.precision == topology::Precision::kFp16) args += " --fp16";
  args += " --zero-stage " + Str(l.zero_stage) + " --deepspeed --deepspeed_config ds_config.json";
  out.notes.push_back("Megatron-DeepSpeed arguments: " + args);
  out.notes.push_back("launch on " + Str(l.tp * l.cp * l.dp * plan.pp) + " GPUs (dp = " +
                      Str(l.dp) + ")");
  if (l.cp > 1) {
    out.notes.push_back("cp = " + Str(l.cp) + " is written as DeepSpeed-Ulysses sequence "
                        "parallelism: the same split of the sequence, all-to-all collectives "
                        "instead of context parallelism's ring");
  }
  return out;
}

}  // namespace

std::string_view ExportFormatName(ExportFormat f) {
  switch (f) {
    case ExportFormat::kMegatron: return "megatron";
    case ExportFormat::kDeepSpeed: return "deepspeed";
    case ExportFormat::kGalvatron: return "galvatron";
  }
  return "megatron";
}

Result<ExportFormat> ParseExportFormat(std::string_view name) {
  for (ExportFormat f : {ExportFormat::kMegatron, ExportFormat::kDeepSpeed,
                         ExportFormat::kGalvatron}) {
    if (name == ExportFormatName(f)) return f;
  }
  return InvalidArgumentError("expected 'megatron', 'deepspeed' or 'galvatron', got '" +
                              std::string(name) + "'");
}

Result<std::vector<std::string>> MegatronArguments(const Plan& plan, const ModelSpec& model) {
  if (plan.layers.empty()) return MegatronRefusal("the plan has no layers");
  std::optional<int> block_layers;
  if (std::optional<std::string> d = FirstDifference(plan, /*ignore_recompute=*/false)) {
    // Only the recomputation may differ, in the --recompute-method block
    // pattern; anything else needs a per-layer strategy Megatron lacks.
    if (std::optional<std::string> other = FirstDifference(plan, /*ignore_recompute=*/true)) {
      return MegatronRefusal(*other + "; Megatron-LM applies one strategy to every layer");
    }
    if (plan.schedule != PipelineSchedule::kInterleaved) block_layers = BlockRecomputeLayers(plan);
    if (!block_layers.has_value()) {
      return MegatronRefusal(*d + "; Megatron-LM recomputes every layer alike, or the first N "
                             "layers of each pipeline stage (--recompute-method block)");
    }
  }
  const LayerStrategy& l = plan.layers.front();
  if (plan.pp > 1 && plan.schedule == PipelineSchedule::kGpipe) {
    return MegatronRefusal("pipeline.schedule: gpipe; Megatron-LM's pipeline schedules are "
                           "1F1B and interleaved 1F1B");
  }
  if (model.architecture == Architecture::kEncoderDecoder && plan.pp > 1) {
    return MegatronRefusal("pipeline.pp: " + Str(plan.pp) + " for encoder-decoder " + model.name +
                           "; this export writes encoder-decoder models without pipelining");
  }

  std::vector<std::string> args;
  // The model (arguments.py _add_network_size_args).
  if (model.architecture == Architecture::kEncoderDecoder) {
    args.push_back(Flag("--encoder-num-layers", model.num_encoder_layers));
    args.push_back(Flag("--decoder-num-layers", model.num_layers));
  } else {
    args.push_back(Flag("--num-layers", model.num_layers));
  }
  args.push_back(Flag("--hidden-size", model.hidden_size));
  args.push_back(Flag("--ffn-hidden-size", model.ffn_hidden_size));
  args.push_back(Flag("--num-attention-heads", model.num_attention_heads));
  if (model.head_dim > 0 && model.head_dim * model.num_attention_heads != model.hidden_size) {
    args.push_back(Flag("--kv-channels", model.head_dim));
  }
  if (model.num_kv_heads > 0 && model.num_kv_heads != model.num_attention_heads) {
    args.push_back("--group-query-attention");
    args.push_back(Flag("--num-query-groups", model.num_kv_heads));
  }
  args.push_back(Flag("--seq-length", plan.sequence_length));
  args.push_back(Flag("--max-position-embeddings",
                      std::max(model.max_sequence_length, plan.sequence_length)));
  if (model.activation == Activation::kSwiGlu) args.push_back("--swiglu");
  if (model.norm == NormKind::kRmsNorm) args.push_back("--normalization RMSNorm");
  if (model.position_embedding == PositionEmbedding::kRotary) {
    args.push_back("--position-embedding-type rope");
  }
  if (!model.linear_bias) args.push_back("--disable-bias-linear");
  if (model.architecture == Architecture::kDecoderOnly && !model.tied_embeddings) {
    args.push_back("--untie-embeddings-and-output-weights");
  }
  if (model.is_moe()) {
    args.push_back(Flag("--num-experts", model.num_experts));
    args.push_back(Flag("--moe-router-topk", model.experts_per_token));
  }

  // The parallel layout (_add_distributed_args).
  args.push_back(Flag("--tensor-model-parallel-size", l.tp));
  args.push_back(Flag("--pipeline-model-parallel-size", plan.pp));
  if (l.cp > 1) args.push_back(Flag("--context-parallel-size", l.cp));
  if (l.ep > 1) args.push_back(Flag("--expert-model-parallel-size", l.ep));
  if (l.sequence_parallel) args.push_back("--sequence-parallel");
  ORRERY_ASSIGN_OR_RETURN(std::vector<std::string> stage_args, MegatronStageArguments(plan));
  if (plan.schedule == PipelineSchedule::kInterleaved) {
    if (stage_args.empty()) {
      args.push_back(Flag("--num-layers-per-virtual-pipeline-stage",
                          plan.num_layers() / (plan.pp * plan.vpp)));
    } else {
      args.push_back(Flag("--num-virtual-stages-per-pipeline-rank", plan.vpp));
    }
  }
  args.insert(args.end(), stage_args.begin(), stage_args.end());
  if (SameEffectiveOrder(plan, DefaultRankOrder())) {
    // Megatron-Core's default order.
  } else if (SameEffectiveOrder(plan, TpPpDpOrder())) {
    args.push_back("--use-tp-pp-dp-mapping");
  } else {
    return MegatronRefusal("rank_order: '" + RankOrderName(plan.rank_order) +
                           "'; Megatron-LM lays out ranks tp-cp-ep-dp-pp, or tp-cp-ep-pp-dp "
                           "with --use-tp-pp-dp-mapping");
  }

  // The batch (_add_training_args).
  args.push_back(Flag("--micro-batch-size", plan.micro_batch_size));
  args.push_back(Flag("--global-batch-size", plan.global_batch_size));

  // Recomputation: granularity full or selective; full with method uniform
  // and 1 layer per unit recomputes each layer from its input.
  if (block_layers.has_value()) {
    args.push_back("--recompute-granularity full");
    args.push_back("--recompute-method block");
    args.push_back(Flag("--recompute-num-layers", *block_layers));
  } else if (l.recompute == Recompute::kFull) {
    args.push_back("--recompute-granularity full");
    args.push_back("--recompute-method uniform");
    args.push_back("--recompute-num-layers 1");
  } else if (l.recompute == Recompute::kSelective) {
    args.push_back("--recompute-granularity selective");
  }

  // Optimizer sharding: the distributed optimizer is ZeRO-1 (optimizer
  // states sharded over dp); Megatron-FSDP's --data-parallel-sharding-strategy
  // optim_grads / optim_grads_params is ZeRO-2 / ZeRO-3 (Megatron-Core
  // custom FSDP docs).
  if (l.zero_stage == 1) {
    args.push_back("--use-distributed-optimizer");
  } else if (l.zero_stage >= 2) {
    args.push_back("--use-megatron-fsdp");
    args.push_back(std::string("--data-parallel-sharding-strategy ") +
                   (l.zero_stage == 2 ? "optim_grads" : "optim_grads_params"));
    args.push_back("--no-gradient-accumulation-fusion");
    args.push_back("--use-distributed-optimizer");
  }

  switch (plan.precision) {
    case topology::Precision::kBf16: args.push_back("--bf16"); break;
    case topology::Precision::kFp16: args.push_back("--fp16"); break;
    case topology::Precision::kFp8:
      // FP8 GEMMs through Transformer Engine, E4M3 forward and E5M2
      // backward ("hybrid"), on bf16 weights.
      args.push_back("--bf16");
      args.push_back("--fp8-format hybrid");
      break;
    case topology::Precision::kFp32:
    case topology::Precision::kTf32:
      break;  // Megatron-LM's default is fp32 (TF32 matmuls are PyTorch's setting)
  }
  return args;
}

Result<PlanExport> ExportPlan(const Plan& plan, const ModelSpec& model, ExportFormat format) {
  switch (format) {
    case ExportFormat::kMegatron: return ExportMegatron(plan, model);
    case ExportFormat::kDeepSpeed: return ExportDeepSpeed(plan);
    case ExportFormat::kGalvatron: {
      ORRERY_ASSIGN_OR_RETURN(GalvatronExport g, GalvatronConfigFromPlan(plan));
      if (plan.num_layers() != model.total_layers()) {
        return InvalidArgumentError("cannot export to Galvatron: the plan has " +
                                    Str(plan.num_layers()) + " layers, " + model.name + " " +
                                    Str(model.total_layers()));
      }
      return PlanExport{DumpJson(g.config), std::move(g.notes)};
    }
  }
  return InvalidArgumentError("unknown export format");
}

}  // namespace orrery::workload
