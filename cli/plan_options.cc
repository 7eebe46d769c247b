#include "cli/plan_options.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "core/json.h"
#include "costmodel/calibration_json.h"
#include "topology/presets.h"
#include "workload/galvatron_config.h"
#include "workload/hf_import.h"
#include "workload/plan_json.h"

namespace orrery::cli {

namespace po = boost::program_options;

namespace {

// A flag and its Megatron-LM spelling, which must agree when both are given.
struct IntFlag {
  const char* name;
  const char* alias;  // nullptr when there is none
};

constexpr IntFlag kTp = {"tp", "tensor-model-parallel-size"};
constexpr IntFlag kPp = {"pp", "pipeline-model-parallel-size"};
constexpr IntFlag kCp = {"cp", "context-parallel-size"};
constexpr IntFlag kEp = {"ep", "expert-model-parallel-size"};
constexpr IntFlag kDp = {"dp", nullptr};
constexpr IntFlag kMicro = {"micro-batch", "micro-batch-size"};
constexpr IntFlag kGlobal = {"global-batch", "global-batch-size"};
constexpr IntFlag kSeq = {"seq-len", "seq-length"};
constexpr IntFlag kZero = {"zero", nullptr};
constexpr IntFlag kVpp = {"vpp", "num-virtual-stages-per-pipeline-rank"};
constexpr IntFlag kLayersPerVirtualStage = {"num-layers-per-virtual-pipeline-stage", nullptr};

bool Given(const po::variables_map& vm, const char* name) {
  return vm.count(name) > 0 && !vm[name].defaulted();
}

Result<std::optional<int>> GetInt(const po::variables_map& vm, const IntFlag& flag) {
  std::optional<int> value;
  if (Given(vm, flag.name)) value = vm[flag.name].as<int>();
  if (flag.alias != nullptr && Given(vm, flag.alias)) {
    const int alias_value = vm[flag.alias].as<int>();
    if (value.has_value() && *value != alias_value) {
      return InvalidArgumentError("--" + std::string(flag.name) + " " + std::to_string(*value) +
                                  " and --" + flag.alias + " " + std::to_string(alias_value) +
                                  " disagree; give one of them");
    }
    value = alias_value;
  }
  return value;
}

Result<std::optional<std::string>> GetString(const po::variables_map& vm, const char* name,
                                             const char* alias) {
  std::optional<std::string> value;
  if (Given(vm, name)) value = vm[name].as<std::string>();
  if (alias != nullptr && Given(vm, alias)) {
    const std::string alias_value = vm[alias].as<std::string>();
    if (value.has_value() && *value != alias_value) {
      return InvalidArgumentError("--" + std::string(name) + " " + *value + " and --" + alias +
                                  " " + alias_value + " disagree; give one of them");
    }
    value = alias_value;
  }
  return value;
}

// Every flag that describes a plan, for the --plan conflict check.
const std::vector<const char*>& PlanFlagNames() {
  static const std::vector<const char*> kNames = {
      "tp", "tensor-model-parallel-size", "pp", "pipeline-model-parallel-size", "cp",
      "context-parallel-size", "ep", "expert-model-parallel-size", "dp", "micro-batch",
      "micro-batch-size", "global-batch", "global-batch-size", "seq-len", "seq-length", "zero",
      "use-distributed-optimizer", "recompute", "recompute-granularity", "sequence-parallel",
      "schedule", "vpp", "num-virtual-stages-per-pipeline-rank",
      "num-layers-per-virtual-pipeline-stage", "stage-layers", "order", "precision"};
  return kNames;
}

Result<std::vector<int>> ParseStageLayers(const std::string& text) {
  std::vector<int> stages;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    bool digits = !item.empty() && item.size() <= 9;
    for (char c : item) digits = digits && c >= '0' && c <= '9';
    if (!digits) {
      return InvalidArgumentError("--stage-layers: expected layer counts separated by commas "
                                  "(e.g. 18,20,20,22), got '" + text + "'");
    }
    stages.push_back(std::stoi(item));
    start = end + 1;
  }
  return stages;
}

}  // namespace

void AddPlanOptions(po::options_description& options) {
  po::options_description plan(
      "Plan (a JSON file, or Megatron-style flags for a uniform plan)");
  plan.add_options()
      ("plan", po::value<std::string>()->value_name("FILE"),
       "read the whole plan from a JSON file (docs/plan.md); excludes the flags below")
      ("tp", po::value<int>()->value_name("N"), "tensor parallel degree (default 1)")
      ("pp", po::value<int>()->value_name("N"), "pipeline parallel degree (default 1)")
      ("cp", po::value<int>()->value_name("N"), "context parallel degree (default 1)")
      ("ep", po::value<int>()->value_name("N"),
       "expert parallel degree, MoE models only; ranks out of dp × cp (default 1)")
      ("dp", po::value<int>()->value_name("N"),
       "data parallel degree (default: devices / (tp × cp × pp))")
      ("micro-batch", po::value<int>()->value_name("N"),
       "samples per micro-batch per data-parallel replica (default 1)")
      ("global-batch", po::value<int>()->value_name("N"),
       "samples per iteration (default micro-batch × dp)")
      ("seq-len", po::value<int>()->value_name("N"),
       "tokens per sample (default: the model's training sequence length)")
      ("zero", po::value<int>()->value_name("0|1|2|3"),
       "ZeRO stage: 1 optimizer states, 2 + gradients, 3 + parameters (default 0)")
      ("recompute", po::value<std::string>()->value_name("MODE"),
       "activation recomputation: none | selective | full (default none)")
      ("sequence-parallel", po::bool_switch(), "Megatron sequence parallelism (needs tp > 1)")
      ("schedule", po::value<std::string>()->value_name("NAME"),
       "pipeline schedule: gpipe | 1f1b | interleaved (default 1f1b; interleaved when vpp > 1)")
      ("vpp", po::value<int>()->value_name("N"),
       "model chunks per pipeline rank for the interleaved schedule")
      ("stage-layers", po::value<std::string>()->value_name("LIST"),
       "layers per pipeline stage, e.g. 18,20,20,22 (default: an even split)")
      ("order", po::value<std::string>()->value_name("ORDER"),
       "rank order, innermost first (default tp-cp-ep-dp-pp)")
      ("precision", po::value<std::string>()->value_name("P"),
       "fp32 | tf32 | bf16 | fp16 | fp8 (default bf16)");
  po::options_description megatron("Megatron-LM spellings of the same flags");
  megatron.add_options()
      ("tensor-model-parallel-size", po::value<int>()->value_name("N"), "= --tp")
      ("pipeline-model-parallel-size", po::value<int>()->value_name("N"), "= --pp")
      ("context-parallel-size", po::value<int>()->value_name("N"), "= --cp")
      ("expert-model-parallel-size", po::value<int>()->value_name("N"), "= --ep")
      ("micro-batch-size", po::value<int>()->value_name("N"), "= --micro-batch")
      ("global-batch-size", po::value<int>()->value_name("N"), "= --global-batch")
      ("seq-length", po::value<int>()->value_name("N"), "= --seq-len")
      ("num-virtual-stages-per-pipeline-rank", po::value<int>()->value_name("N"), "= --vpp")
      ("num-layers-per-virtual-pipeline-stage", po::value<int>()->value_name("N"),
       "layers per model chunk: sets vpp = layers / pp / N")
      ("recompute-granularity", po::value<std::string>()->value_name("MODE"),
       "= --recompute (selective | full)")
      ("use-distributed-optimizer", po::bool_switch(), "= --zero 1");
  options.add(plan).add(megatron);
}

Result<workload::Plan> PlanFromOptions(const po::variables_map& vm,
                                       const workload::ModelSpec& model,
                                       const topology::ClusterSpec& cluster) {
  if (Given(vm, "plan")) {
    for (const char* name : PlanFlagNames()) {
      if (Given(vm, name)) {
        return InvalidArgumentError("--plan FILE holds the whole plan; it cannot be combined "
                                    "with --" + std::string(name));
      }
    }
    // A plan file, or a Galvatron strategy config (told apart by its keys).
    const std::string path = vm["plan"].as<std::string>();
    ORRERY_ASSIGN_OR_RETURN(Json json, ReadJsonFile(path));
    if (workload::IsGalvatronConfig(json)) {
      return workload::PlanFromGalvatronConfig(json, path, model, cluster);
    }
    return workload::ParsePlanJson(json, path);
  }

  ORRERY_ASSIGN_OR_RETURN(std::optional<int> tp, GetInt(vm, kTp));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> pp, GetInt(vm, kPp));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> cp, GetInt(vm, kCp));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> ep, GetInt(vm, kEp));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> dp, GetInt(vm, kDp));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> micro, GetInt(vm, kMicro));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> global, GetInt(vm, kGlobal));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> seq, GetInt(vm, kSeq));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> zero, GetInt(vm, kZero));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> vpp, GetInt(vm, kVpp));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> layers_per_chunk, GetInt(vm, kLayersPerVirtualStage));
  ORRERY_ASSIGN_OR_RETURN(std::optional<std::string> recompute,
                          GetString(vm, "recompute", "recompute-granularity"));
  ORRERY_ASSIGN_OR_RETURN(std::optional<std::string> schedule,
                          GetString(vm, "schedule", nullptr));
  ORRERY_ASSIGN_OR_RETURN(std::optional<std::string> order, GetString(vm, "order", nullptr));
  ORRERY_ASSIGN_OR_RETURN(std::optional<std::string> precision,
                          GetString(vm, "precision", nullptr));

  workload::LayerStrategy layer;
  layer.tp = tp.value_or(1);
  layer.cp = cp.value_or(1);
  layer.ep = ep.value_or(1);
  const int pp_degree = pp.value_or(1);
  if (dp.has_value()) {
    layer.dp = *dp;
  } else {
    // Megatron-LM: dp = world / (tp·pp·cp). When that does not divide,
    // the rounded value lets validation report the device-count rule.
    const int model_size = layer.tp * layer.cp * pp_degree;
    layer.dp = model_size >= 1 ? std::max(1, cluster.TotalDevices() / model_size) : 1;
  }
  if (zero.has_value()) {
    if (*zero < 0 || *zero > 3) {
      return InvalidArgumentError("--zero: expected 0, 1, 2 or 3, got " + std::to_string(*zero));
    }
    layer.zero_stage = *zero;
  }
  if (Given(vm, "use-distributed-optimizer")) {
    if (zero.has_value() && *zero != 1) {
      return InvalidArgumentError("--use-distributed-optimizer (ZeRO 1) and --zero " +
                                  std::to_string(*zero) + " disagree; give one of them");
    }
    layer.zero_stage = 1;
  }
  layer.sequence_parallel = vm.count("sequence-parallel") > 0 && vm["sequence-parallel"].as<bool>();
  if (recompute.has_value()) {
    Result<workload::Recompute> r = workload::ParseRecompute(*recompute);
    if (!r.ok()) return InvalidArgumentError("--recompute: " + r.status().message());
    layer.recompute = *r;
  }

  const int micro_batch = micro.value_or(1);
  workload::Plan plan = workload::Plan::Uniform(model, pp_degree, layer,
                                                global.value_or(micro_batch * layer.dp),
                                                micro_batch);
  if (seq.has_value()) plan.sequence_length = *seq;
  if (precision.has_value()) {
    Result<topology::Precision> p = topology::ParsePrecision(*precision);
    if (!p.ok()) return InvalidArgumentError("--precision: " + p.status().message());
    plan.precision = *p;
  }
  if (order.has_value()) {
    Result<workload::RankOrder> o = workload::ParseRankOrder(*order);
    if (!o.ok()) return InvalidArgumentError("--order: " + o.status().message());
    plan.rank_order = *o;
  }
  if (Given(vm, "stage-layers")) {
    ORRERY_ASSIGN_OR_RETURN(plan.stage_layers,
                            ParseStageLayers(vm["stage-layers"].as<std::string>()));
  }

  // Virtual stages: --vpp directly, or Megatron-LM's layers per chunk,
  // which needs layers % pp == 0 and (layers / pp) % chunk == 0.
  if (layers_per_chunk.has_value()) {
    if (vpp.has_value()) {
      return InvalidArgumentError("--vpp and --num-layers-per-virtual-pipeline-stage both set "
                                  "the virtual stages; give one of them");
    }
    const int layers = plan.num_layers();
    if (*layers_per_chunk < 1 || pp_degree < 1 || layers % pp_degree != 0 ||
        (layers / pp_degree) % *layers_per_chunk != 0) {
      return InvalidArgumentError(
          "--num-layers-per-virtual-pipeline-stage: " + std::to_string(*layers_per_chunk) +
          " does not divide the " + std::to_string(layers) + " layers over pp = " +
          std::to_string(pp_degree) + " stages into whole model chunks");
    }
    vpp = layers / pp_degree / *layers_per_chunk;
  }
  if (vpp.has_value()) plan.vpp = *vpp;
  if (schedule.has_value()) {
    Result<workload::PipelineSchedule> s = workload::ParsePipelineSchedule(*schedule);
    if (!s.ok()) return InvalidArgumentError("--schedule: " + s.status().message());
    plan.schedule = *s;
  } else if (plan.vpp > 1) {
    plan.schedule = workload::PipelineSchedule::kInterleaved;
  }
  return plan;
}

void AddModelClusterOptions(po::options_description& options) {
  options.add_options()
      ("model", po::value<std::string>()->value_name("NAME|FILE"),
       "model preset or HuggingFace config.json (required)")
      ("cluster", po::value<std::string>()->value_name("NAME|FILE"),
       "cluster preset or cluster JSON file (required)")
      ("nodes", po::value<int>()->value_name("N"), "scale the cluster to N nodes");
}

Result<ClusterInput> LoadClusterInput(const std::string& name_or_path,
                                      std::optional<int> nodes) {
  ClusterInput input;
  input.source = name_or_path;
  bool is_preset = false;
  for (const std::string& n : topology::ClusterPresetNames()) {
    is_preset = is_preset || n == name_or_path;
  }
  std::error_code ec;
  const bool is_file = !is_preset && (name_or_path.find('/') != std::string::npos ||
                                      name_or_path.ends_with(".json") ||
                                      std::filesystem::exists(name_or_path, ec));
  if (!is_file) {
    // A preset, or an unknown name: ResolveCluster's error names the presets.
    ORRERY_ASSIGN_OR_RETURN(input.cluster, topology::ResolveCluster(name_or_path, nodes));
    return input;
  }
  ORRERY_ASSIGN_OR_RETURN(costmodel::CalibratedCluster loaded,
                          costmodel::LoadCalibratedCluster(name_or_path));
  input.cluster = std::move(loaded.cluster);
  if (loaded.calibration.has_value()) {
    input.calibration =
        std::make_shared<const costmodel::Calibration>(std::move(*loaded.calibration));
  }
  if (nodes.has_value()) {
    ORRERY_ASSIGN_OR_RETURN(input.cluster, input.cluster.WithNodes(*nodes));
    Status valid = topology::ValidateClusterSpec(input.cluster);
    if (!valid.ok()) {
      return valid.WithContext(name_or_path + " scaled to " + std::to_string(*nodes) + " nodes");
    }
  }
  return input;
}

Result<ClusterInput> ClusterFromOptions(const po::variables_map& vm) {
  if (vm.count("cluster") == 0) {
    return InvalidArgumentError("--cluster is required (a preset such as dgx-h100, or a "
                                "cluster JSON file)");
  }
  std::optional<int> nodes;
  if (vm.count("nodes") > 0) nodes = vm["nodes"].as<int>();
  return LoadClusterInput(vm["cluster"].as<std::string>(), nodes);
}

std::string CalibrationLine(const costmodel::Calibration& calibration,
                            const std::string& source) {
  return "calibrated: " + std::to_string(calibration.sources.size()) + " measurements (" +
         source + ")";
}

Result<PlanInputs> LoadPlanInputs(const po::variables_map& vm) {
  if (vm.count("model") == 0) {
    return InvalidArgumentError("--model is required (a preset such as llama3-70b, or a "
                                "config.json)");
  }
  if (vm.count("cluster") == 0) {
    return InvalidArgumentError("--cluster is required (a preset such as dgx-h100, or a "
                                "cluster JSON file)");
  }
  ORRERY_ASSIGN_OR_RETURN(workload::ModelSpec model,
                          workload::LoadModel(vm["model"].as<std::string>()));
  ORRERY_ASSIGN_OR_RETURN(ClusterInput cluster, ClusterFromOptions(vm));
  ORRERY_ASSIGN_OR_RETURN(workload::Plan plan, PlanFromOptions(vm, model, cluster.cluster));
  PlanInputs inputs;
  inputs.model = std::move(model);
  inputs.cluster = std::move(cluster.cluster);
  inputs.plan = std::move(plan);
  inputs.calibration = std::move(cluster.calibration);
  inputs.cluster_source = std::move(cluster.source);
  return inputs;
}

}  // namespace orrery::cli
