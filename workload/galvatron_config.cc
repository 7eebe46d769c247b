#include "workload/galvatron_config.h"

#include <algorithm>
#include <climits>
#include <optional>
#include <utility>

namespace orrery::workload {

namespace {

std::string Str(int v) { return std::to_string(v); }

// Galvatron writes per-layer lists as "1,1,2" (config_utils.py array2str).
Result<std::vector<int>> ReadList(const JsonReader& r, std::string_view key, int num_layers) {
  ORRERY_ASSIGN_OR_RETURN(std::string text, r.String(key));
  std::vector<int> values;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    bool digits = !item.empty() && item.size() <= 9;
    for (char c : item) digits = digits && c >= '0' && c <= '9';
    if (!digits) {
      return r.FieldError(key, "entry " + Str(static_cast<int>(values.size())) +
                                   ": expected a non-negative integer, got '" + item + "'");
    }
    values.push_back(std::stoi(item));
    start = end + 1;
  }
  if (num_layers > 0 && static_cast<int>(values.size()) != num_layers) {
    return r.FieldError(key, "expected one entry per layer (" + Str(num_layers) + "), got " +
                                 Str(static_cast<int>(values.size())));
  }
  return values;
}

// An optional per-layer list; `fallback` for every layer when absent.
Result<std::vector<int>> ReadListOr(const JsonReader& r, std::string_view key, int num_layers,
                                    int fallback) {
  if (!r.Has(key)) return std::vector<int>(static_cast<size_t>(num_layers), fallback);
  return ReadList(r, key, num_layers);
}

Status CheckFlags(const JsonReader& r, std::string_view key, const std::vector<int>& values,
                  int max_value) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] < 0 || values[i] > max_value) {
      std::string allowed = "0";
      for (int v = 1; v <= max_value; ++v) allowed += (v == max_value ? " or " : ", ") + Str(v);
      return r.FieldError(key, "layer " + Str(static_cast<int>(i)) + ": expected " + allowed +
                                   ", got " + Str(values[i]));
    }
  }
  return Status::Ok();
}

// Galvatron's stage split when pp_division is absent
// (get_hybrid_parallel_configs_api): layers / pp per stage, the remainder
// on the last.
std::vector<int> GalvatronDefaultDivision(int layers, int pp) {
  std::vector<int> division(static_cast<size_t>(pp), layers / pp);
  division.back() = layers - (layers / pp) * (pp - 1);
  return division;
}

RankOrder ConsecutiveOrder() { return DefaultRankOrder(); }  // tp-cp-ep-dp-pp
RankOrder StridedOrder() {
  return {ParallelDim::kDp, ParallelDim::kTp, ParallelDim::kCp, ParallelDim::kEp,
          ParallelDim::kPp};
}

// Position of `d` in `order`, innermost 0.
int PositionOf(const RankOrder& order, ParallelDim d) {
  return static_cast<int>(std::find(order.begin(), order.end(), d) - order.begin());
}

std::string JoinInts(const std::vector<int>& values) {
  std::string s;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) s += ",";
    s += Str(values[i]);
  }
  return s;
}

}  // namespace

bool IsGalvatronConfig(const Json& json) {
  return json.is_object() && json.contains("pp_deg") && json.contains("tp_sizes_enc");
}

Result<Plan> PlanFromGalvatronConfig(const Json& config, std::string_view source,
                                     const ModelSpec& model, const topology::ClusterSpec& cluster,
                                     const GalvatronImportOptions& options) {
  JsonReader r(config, std::string(source));
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  const int layers = model.total_layers();
  const int devices = cluster.TotalDevices();

  ORRERY_ASSIGN_OR_RETURN(int64_t pp64, r.PositiveInt("pp_deg"));
  if (pp64 > layers) {
    return r.FieldError("pp_deg", Str(static_cast<int>(std::min<int64_t>(pp64, INT_MAX))) +
                                      " stages for " + Str(layers) + " layers");
  }
  const int pp = static_cast<int>(pp64);
  if (devices % pp != 0) {
    return r.FieldError("pp_deg", Str(pp) + " does not divide the " + Str(devices) +
                                      " devices of " + cluster.name);
  }
  const int stage_devices = devices / pp;

  ORRERY_ASSIGN_OR_RETURN(std::vector<int> sizes, ReadList(r, "tp_sizes_enc", layers));
  ORRERY_ASSIGN_OR_RETURN(std::vector<int> consecutive,
                          ReadList(r, "tp_consecutive_flags", layers));
  ORRERY_ASSIGN_OR_RETURN(std::vector<int> dp_types, ReadList(r, "dp_types_enc", layers));
  ORRERY_ASSIGN_OR_RETURN(std::vector<int> use_sp, ReadListOr(r, "use_sp", layers, 0));
  ORRERY_ASSIGN_OR_RETURN(std::vector<int> checkpoint, ReadListOr(r, "checkpoint", layers, 0));
  ORRERY_RETURN_IF_ERROR(CheckFlags(r, "tp_consecutive_flags", consecutive, 1));
  ORRERY_RETURN_IF_ERROR(CheckFlags(r, "dp_types_enc", dp_types, 1));
  ORRERY_RETURN_IF_ERROR(CheckFlags(r, "use_sp", use_sp, 1));
  ORRERY_RETURN_IF_ERROR(CheckFlags(r, "checkpoint", checkpoint, 1));
  // Newer Galvatron writes context- and expert-parallel lists; this import
  // takes them only at their dense default of 1.
  for (const char* key : {"cp_sizes_enc", "ep_sizes_enc", "tp_of_ep_sizes_enc"}) {
    ORRERY_ASSIGN_OR_RETURN(std::vector<int> ones, ReadListOr(r, key, layers, 1));
    for (size_t i = 0; i < ones.size(); ++i) {
      if (ones[i] != 1) {
        return r.FieldError(key, "layer " + Str(static_cast<int>(i)) + ": " + Str(ones[i]) +
                                     " is not supported by this import (only 1)");
      }
    }
  }

  ORRERY_ASSIGN_OR_RETURN(std::string default_dp_type, r.String("default_dp_type", "ddp"));
  int default_zero = 0;
  if (default_dp_type == "ddp") {
    default_zero = 0;
  } else if (default_dp_type == "zero2") {
    default_zero = 2;
  } else if (default_dp_type == "zero3") {
    default_zero = 3;
  } else {
    return r.FieldError("default_dp_type",
                        "expected 'ddp', 'zero2' or 'zero3', got '" + default_dp_type + "'");
  }

  Plan plan;
  plan.pp = pp;
  plan.sequence_length =
      options.sequence_length > 0 ? options.sequence_length : model.default_sequence_length;
  plan.precision = options.precision;

  std::optional<int> order_flag;
  int order_layer = 0;
  plan.layers.resize(static_cast<size_t>(layers));
  for (int i = 0; i < layers; ++i) {
    const size_t k = static_cast<size_t>(i);
    const int size = sizes[k];
    if (size < 1 || stage_devices % size != 0) {
      return r.FieldError("tp_sizes_enc", "layer " + Str(i) + ": " + Str(size) +
                                              " does not divide the " + Str(stage_devices) +
                                              " devices of a stage (devices / pp_deg)");
    }
    LayerStrategy& l = plan.layers[k];
    if (use_sp[k] == 1) {
      l.cp = size;
    } else {
      l.tp = size;
    }
    l.dp = stage_devices / size;
    l.zero_stage = dp_types[k] == 1 ? 3 : default_zero;
    l.recompute = checkpoint[k] == 1 ? Recompute::kFull : Recompute::kNone;
    l.sequence_parallel = options.megatron_sequence_parallel && l.tp > 1;
    // Galvatron forces the flag to 1 where the degree is 1 or the whole
    // stage (comm_groups.py gen_comm_groups): only the others order ranks.
    if (size > 1 && size < stage_devices) {
      if (order_flag.has_value() && *order_flag != consecutive[k]) {
        return r.FieldError(
            "tp_consecutive_flags",
            "layer " + Str(i) + " has " + Str(consecutive[k]) + " but layer " + Str(order_layer) +
                " has " + Str(*order_flag) +
                "; an Orrery plan has one rank order for every layer");
      }
      order_flag = consecutive[k];
      order_layer = i;
    }
  }
  plan.rank_order = order_flag.value_or(1) == 1 ? ConsecutiveOrder() : StridedOrder();

  std::vector<int> division = GalvatronDefaultDivision(layers, pp);
  if (r.Has("pp_division")) {
    ORRERY_ASSIGN_OR_RETURN(division, ReadList(r, "pp_division", 0));
    int sum = 0;
    for (int c : division) sum += c;
    if (static_cast<int>(division.size()) != pp || sum != layers) {
      return r.FieldError("pp_division", "expected " + Str(pp) + " stage sizes summing to " +
                                             Str(layers) + " layers, got '" + JoinInts(division) +
                                             "'");
    }
  }
  // An even split stays implicit, as Orrery writes it.
  plan.stage_layers = division;
  {
    Plan even = plan;
    even.stage_layers.clear();
    if (even.StageLayerCounts() == division) plan.stage_layers.clear();
  }

  ORRERY_ASSIGN_OR_RETURN(std::string pipeline_type, r.String("pipeline_type", "gpipe"));
  if (pipeline_type == "gpipe") {
    plan.schedule = PipelineSchedule::kGpipe;
  } else if (pipeline_type == "pipedream_flush") {
    plan.schedule = PipelineSchedule::kOneFOneB;
  } else {
    return r.FieldError("pipeline_type",
                        "expected 'gpipe' or 'pipedream_flush', got '" + pipeline_type + "'");
  }

  ORRERY_ASSIGN_OR_RETURN(int64_t global, r.PositiveInt("global_bsz"));
  ORRERY_ASSIGN_OR_RETURN(int64_t chunks, r.PositiveInt("chunks"));
  const int max_dp = plan.MaxDataParallel();
  if (global > INT_MAX || global % (chunks * max_dp) != 0) {
    return r.FieldError("global_bsz", Str(static_cast<int>(std::min<int64_t>(global, INT_MAX))) +
                                          " is not divisible by chunks × dp = " +
                                          Str(static_cast<int>(chunks)) + " × " + Str(max_dp));
  }
  plan.global_batch_size = static_cast<int>(global);
  plan.micro_batch_size = static_cast<int>(global / (chunks * max_dp));

  // The embedding and LM head's strategy: read so a typo is still caught.
  ORRERY_RETURN_IF_ERROR(r.Int("vtp", 1).status());
  ORRERY_RETURN_IF_ERROR(r.Int("vsp", 0).status());
  ORRERY_RETURN_IF_ERROR(r.Int("embed_sdp", 0).status());
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return plan;
}

Result<GalvatronExport> GalvatronConfigFromPlan(const Plan& plan) {
  auto refuse = [](const std::string& what) {
    return InvalidArgumentError("cannot export to Galvatron: " + what);
  };
  if (plan.layers.empty()) return refuse("the plan has no layers");
  if (plan.schedule == PipelineSchedule::kInterleaved) {
    return refuse("pipeline.schedule: Galvatron has no interleaved schedule (its pipeline_type "
                  "is gpipe or pipedream_flush); use 1f1b");
  }
  if (plan.pp > 1 && plan.rank_order.back() != ParallelDim::kPp) {
    return refuse("rank_order: Galvatron puts pp outermost (gen_pp_group_dist); '" +
                  RankOrderName(plan.rank_order) + "' does not");
  }

  // The non-ZeRO-3 layers share Galvatron's one default_dp_type.
  std::optional<int> default_zero;
  int default_layer = 0;
  bool any_megatron_sp = false;
  for (int i = 0; i < plan.num_layers(); ++i) {
    const LayerStrategy& l = plan.layers[static_cast<size_t>(i)];
    const std::string layer = "layers[" + Str(i) + "]";
    if (l.tp > 1 && l.cp > 1) {
      return refuse(layer + ": tp = " + Str(l.tp) + " and cp = " + Str(l.cp) +
                    "; a Galvatron layer uses Megatron tensor parallelism or Ulysses sequence "
                    "parallelism, not both (gen_comm_groups)");
    }
    if (l.ep > 1) {
      return refuse(layer + ".ep: " + Str(l.ep) + "; expert parallelism is not exported");
    }
    if (l.recompute == Recompute::kSelective) {
      return refuse(layer + ".recompute: selective; Galvatron checkpoints whole layers "
                    "(use full or none)");
    }
    if (l.zero_stage == 1) {
      return refuse(layer + ".zero_stage: 1; Galvatron's data-parallel types are ddp, zero2 and "
                    "zero3 (FSDP NO_SHARD, SHARD_GRAD_OP, FULL_SHARD)");
    }
    if (l.zero_stage != 3) {
      if (default_zero.has_value() && *default_zero != l.zero_stage) {
        return refuse(layer + ".zero_stage: " + Str(l.zero_stage) + " but layers[" +
                      Str(default_layer) + "] has " + Str(*default_zero) +
                      "; Galvatron has one default_dp_type for the layers not in ZeRO-3");
      }
      default_zero = l.zero_stage;
      default_layer = i;
    }
    any_megatron_sp = any_megatron_sp || l.sequence_parallel;
  }
  if (any_megatron_sp) {
    for (int i = 0; i < plan.num_layers(); ++i) {
      const LayerStrategy& l = plan.layers[static_cast<size_t>(i)];
      if (l.tp > 1 && !l.sequence_parallel) {
        return refuse("layers[" + Str(i) + "].sequence_parallel: false, but other layers use "
                      "it; Galvatron's --sequence_parallel applies to every tp > 1 layer");
      }
    }
  }

  const bool tp_inside_dp = PositionOf(plan.rank_order, ParallelDim::kTp) <
                            PositionOf(plan.rank_order, ParallelDim::kDp);
  const bool cp_inside_dp = PositionOf(plan.rank_order, ParallelDim::kCp) <
                            PositionOf(plan.rank_order, ParallelDim::kDp);
  std::vector<int> sizes, consecutive, dp_types, use_sp, checkpoint;
  for (const LayerStrategy& l : plan.layers) {
    const bool sp = l.cp > 1;
    sizes.push_back(sp ? l.cp : l.tp);
    use_sp.push_back(sp ? 1 : 0);
    consecutive.push_back((sp ? cp_inside_dp : tp_inside_dp) ? 1 : 0);
    dp_types.push_back(l.zero_stage == 3 ? 1 : 0);
    checkpoint.push_back(l.recompute == Recompute::kFull ? 1 : 0);
  }

  const LayerStrategy& first = plan.layers.front();
  GalvatronExport out;
  Json& c = out.config;
  c["pp_deg"] = plan.pp;
  c["tp_sizes_enc"] = JoinInts(sizes);
  c["tp_consecutive_flags"] = JoinInts(consecutive);
  c["dp_types_enc"] = JoinInts(dp_types);
  c["use_sp"] = JoinInts(use_sp);
  c["checkpoint"] = JoinInts(checkpoint);
  c["global_bsz"] = plan.global_batch_size;
  c["chunks"] = plan.NumMicroBatches();
  c["pp_division"] = JoinInts(plan.StageLayerCounts());
  c["pipeline_type"] = plan.schedule == PipelineSchedule::kGpipe ? "gpipe" : "pipedream_flush";
  const int zero = default_zero.value_or(0);
  c["default_dp_type"] = zero == 2 ? "zero2" : zero == 3 ? "zero3" : "ddp";
  // The embedding and LM head follow the first layer, as Galvatron's
  // global mode does (vocab_tp = global tp, vocab_sp with Ulysses).
  c["vtp"] = first.cp > 1 ? first.cp : first.tp;
  c["vsp"] = first.cp > 1 ? 1 : 0;
  c["embed_sdp"] = first.zero_stage == 3 ? 1 : 0;

  const topology::Precision p = plan.precision;
  if (p == topology::Precision::kBf16 || p == topology::Precision::kFp16 ||
      p == topology::Precision::kFp32) {
    out.notes.push_back("run Galvatron with --mixed_precision " +
                        std::string(topology::PrecisionName(p)) + " --seq_length " +
                        Str(plan.sequence_length) +
                        " (neither is in the config)");
  } else {
    out.notes.push_back("precision " + std::string(topology::PrecisionName(p)) +
                        ": Galvatron's --mixed_precision is fp32, fp16 or bf16; run with "
                        "--seq_length " + Str(plan.sequence_length));
  }
  if (any_megatron_sp) {
    out.notes.push_back("run Galvatron with --sequence_parallel (Megatron-SP on the tp > 1 "
                        "layers; not in the config)");
  }
  for (const LayerStrategy& l : plan.layers) {
    if (l.cp > 1) {
      out.notes.push_back("cp > 1 is written as Galvatron's Ulysses sequence parallelism "
                          "(use_sp = 1): same split of the sequence, all-to-all collectives "
                          "instead of context parallelism's ring");
      break;
    }
  }
  return out;
}

}  // namespace orrery::workload
