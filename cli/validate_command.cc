// `orrery validate`: how far the simulator is from the machine. Runs a plan
// on the executor under mpirun (or srun), simulates the same plan with the
// cost model calibrated on separate profiler runs (never on the runs being
// predicted), and reports predicted against measured per iteration and per
// operator class. docs/validation.md has the details.
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cli/launcher.h"
#include "cli/plan_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/text.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "costmodel/calibration_json.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "exec/backend.h"
#include "exec/runtime.h"
#include "sim/iteration.h"
#include "topology/cluster_spec.h"
#include "topology/presets.h"
#include "traces/execution_trace.h"
#include "traces/measurements.h"
#include "workload/hf_import.h"
#include "workload/model_spec.h"
#include "workload/operators.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "validate";

constexpr std::string_view kUsage =
    "orrery validate --model M (--plan FILE | plan flags) --backend cpu|cuda --ranks N\n"
    "                   [--calibration FILE | --cluster C] [--iterations K] [--warmup W]\n"
    "                   [--profile-dir DIR] [--keep DIR] [--launcher auto|mpirun|srun]\n"
    "                   [--timeout S] [--format text|json]";

constexpr std::string_view kDescription =
    "Says how far the simulator's prediction of a plan is from the executor's\n"
    "measurement of it on this machine. Three steps, each a job of --ranks ranks\n"
    "started with mpirun (srun under Slurm):\n"
    "\n"
    "  1. calibrate (skipped with --calibration FILE): `orrery profile` measures\n"
    "     the model's operators at the plan's tp, micro-batch and sequence length\n"
    "     and the collectives up to the plan's largest gradient bucket; `orrery\n"
    "     calibrate`'s fit turns them into the cluster's calibration, written to\n"
    "     DIR/calibrated.json for reuse with --calibration. The runs being\n"
    "     predicted are never calibrated on.\n"
    "  2. measure: `orrery execute` runs --warmup then --iterations timed steps\n"
    "     (their median is the measured iteration time) and one traced step\n"
    "     (every operator timed, for the per-class table).\n"
    "  3. predict: `orrery simulate`'s event simulator replays one iteration of\n"
    "     the same plan with the calibrated cost model (fp32 gradients reduced,\n"
    "     as the executor does; the attention core unfused, as it runs).\n"
    "\n"
    "Reports the predicted and measured iteration time and the error\n"
    "(predicted - measured) / measured, and per operator class (gemm, attention,\n"
    "norm, elementwise, embedding, loss, optimizer, and the collectives by group:\n"
    "comm.tp, comm.dp, comm.pp, comm.embedding) rank 0's measured time in the\n"
    "traced step against the calibrated model's estimate of the very same\n"
    "operators (their shapes, and each collective's size and group).\n"
    "\n"
    "The cluster: the calibrated cluster of --calibration FILE, else --cluster,\n"
    "else (cpu) this machine's cores (cpu-local) as one node of --ranks devices.\n"
    "The cpu backend runs fp32: plan flags without --precision mean fp32 there,\n"
    "as for `orrery execute`. Work files (the plan, the execute report, the trace\n"
    "and, without --profile-dir, the profiles) go to a temporary directory that\n"
    "is removed at the end, or to --keep DIR, which is kept.\n"
    "\n"
    "Exit codes: 0 done; 1 a step failed (its command line and status are\n"
    "printed); 2 bad input.";

constexpr std::string_view kExamples =
    "  orrery validate --model gpt-tiny --backend cpu --ranks 2 --global-batch 8 \\\n"
    "      --seq-len 32 --profile-dir prof\n"
    "  orrery validate --model gpt-tiny --backend cpu --ranks 2 --tp 2 --global-batch 8 \\\n"
    "      --seq-len 32 --calibration prof/calibrated.json --format json\n"
    "  orrery validate --model gpt-tiny --backend cpu --ranks 2 --pp 2 --micro-batch 1 \\\n"
    "      --global-batch 8 --seq-len 32 --iterations 10 --keep work/\n"
    "  orrery validate --model gpt-1.7b --backend cuda --ranks 8 --cluster dgx-h100 \\\n"
    "      --tp 2 --pp 2 --micro-batch 2 --global-batch 64 --iterations 10\n";

// Largest collective the profiler sweeps to (the executor's buckets of a
// small model fit well below it; a cpu sweep past it takes minutes).
constexpr int64_t kMaxProfileBytes = int64_t{64} << 20;
constexpr int64_t kMinProfileBytes = int64_t{4} << 20;

std::string Percent(double error) {
  return std::string(error >= 0 ? "+" : "") + FixedText(100 * error, 1) + "%";
}


// The directory validate works in: --keep DIR (kept), else a fresh temporary
// one removed when this goes out of scope.
class WorkDir {
 public:
  static Result<WorkDir> Make(const std::string& keep) {
    WorkDir dir;
    std::error_code error;
    if (!keep.empty()) {
      std::filesystem::create_directories(keep, error);
      if (error) return IoError("--keep: cannot create directory '" + keep + "': " + error.message());
      dir.path_ = keep;
      return dir;
    }
    std::string pattern =
        (std::filesystem::temp_directory_path(error) / "orrery-validate.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      return IoError("cannot create a temporary directory " + pattern);
    }
    dir.path_ = pattern;
    dir.remove_ = true;
    return dir;
  }
  WorkDir(WorkDir&& other) noexcept : path_(std::move(other.path_)), remove_(other.remove_) {
    other.remove_ = false;
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  WorkDir& operator=(WorkDir&&) = delete;
  ~WorkDir() {
    if (remove_) {
      std::error_code ignored;
      std::filesystem::remove_all(path_, ignored);
    }
  }
  const std::string& path() const { return path_; }
  bool kept() const { return !remove_; }

 private:
  WorkDir() = default;
  std::string path_;
  bool remove_ = false;
};

struct Settings {
  workload::ModelSpec model;
  workload::Plan plan;
  topology::ClusterSpec cluster;
  std::shared_ptr<const costmodel::Calibration> calibration;  // from --calibration
  std::string calibration_path;                               // --calibration FILE
  exec::BackendKind backend = exec::BackendKind::kCpu;
  int ranks = 1;
  int iterations = 5;
  int warmup = 1;
  std::string profile_dir;  // "" : under the work directory
  std::string keep;
  LaunchOptions launch;
};

// The cluster the plan is simulated on when neither --calibration nor
// --cluster names one: on cpu, this machine's cores as one node of `ranks`
// devices (cpu-local's device, as many as the job's ranks, oversubscribed
// or not, as `orrery execute` lays its ranks on one node).
Result<topology::ClusterSpec> DefaultCluster(exec::BackendKind backend, int ranks) {
  if (backend != exec::BackendKind::kCpu) {
    return InvalidArgumentError(
        "--cluster or --calibration is required with --backend cuda (a preset such as "
        "dgx-h100, or the file `orrery discover` writes)");
  }
  ORRERY_ASSIGN_OR_RETURN(topology::ClusterSpec cluster, topology::ClusterPreset("cpu-local"));
  cluster.node_types.front().count = 1;
  cluster.node_types.front().devices_per_node = ranks;
  cluster.description += "; as one node of " + std::to_string(ranks) + " ranks";
  return cluster;
}

Result<Settings> ReadSettings(const po::variables_map& vm) {
  Settings s;
  for (const char* required : {"model", "backend", "ranks"}) {
    if (vm.count(required) == 0) {
      return InvalidArgumentError(std::string("--") + required + " is required");
    }
  }
  ORRERY_ASSIGN_OR_RETURN(s.backend, exec::ParseBackendKind(vm["backend"].as<std::string>()));
  s.ranks = vm["ranks"].as<int>();
  s.iterations = vm["iterations"].as<int>();
  s.warmup = vm["warmup"].as<int>();
  if (s.ranks < 1) return InvalidArgumentError("--ranks: expected an integer >= 1");
  if (s.iterations < 1 || s.warmup < 0) {
    return InvalidArgumentError("--iterations must be >= 1 and --warmup >= 0");
  }
  if (vm.count("profile-dir") > 0) s.profile_dir = vm["profile-dir"].as<std::string>();
  if (vm.count("keep") > 0) s.keep = vm["keep"].as<std::string>();
  s.launch.ranks = s.ranks;
  s.launch.launcher = vm["launcher"].as<std::string>();
  const double timeout = vm["timeout"].as<double>();
  if (!(timeout > 0)) return InvalidArgumentError("--timeout: expected a positive number of seconds");
  s.launch.timeout_s = timeout;

  Result<workload::ModelSpec> model = workload::LoadModel(vm["model"].as<std::string>());
  if (!model.ok()) return model.status().WithContext("--model");
  s.model = *std::move(model);

  if (vm.count("calibration") > 0) {
    if (vm.count("cluster") > 0) {
      return InvalidArgumentError(
          "--calibration and --cluster: give one (a calibrated cluster file is the cluster)");
    }
    s.calibration_path = vm["calibration"].as<std::string>();
    Result<costmodel::CalibratedCluster> loaded =
        costmodel::LoadCalibratedCluster(s.calibration_path);
    if (!loaded.ok()) return loaded.status().WithContext("--calibration");
    if (!loaded->calibration.has_value()) {
      return InvalidArgumentError("--calibration " + s.calibration_path +
                                  ": the cluster file has no \"calibration\" member (write "
                                  "one with `orrery calibrate` or `orrery validate`)");
    }
    s.cluster = loaded->cluster;
    s.calibration =
        std::make_shared<const costmodel::Calibration>(*std::move(loaded->calibration));
  } else if (vm.count("cluster") > 0) {
    Result<topology::ClusterSpec> cluster =
        topology::ResolveCluster(vm["cluster"].as<std::string>());
    if (!cluster.ok()) return cluster.status().WithContext("--cluster");
    s.cluster = *std::move(cluster);
  } else {
    ORRERY_ASSIGN_OR_RETURN(s.cluster, DefaultCluster(s.backend, s.ranks));
  }

  // The plan flags read against the launched ranks (dp = ranks / (tp·pp·cp)),
  // as `orrery execute` reads them.
  topology::ClusterSpec launched = s.cluster;
  if (launched.node_types.size() == 1 && launched.node_types.front().count == 1) {
    launched.node_types.front().devices_per_node = s.ranks;
  }
  ORRERY_ASSIGN_OR_RETURN(s.plan, PlanFromOptions(vm, s.model, launched));
  if (s.backend == exec::BackendKind::kCpu &&
      s.plan.precision != topology::Precision::kFp32) {
    if (vm.count("plan") > 0 || vm.count("precision") > 0) {
      return InvalidArgumentError(
          "the plan's precision is " + std::string(topology::PrecisionName(s.plan.precision)) +
          ", but the cpu backend runs fp32: the prediction would be of another run "
          "(set \"precision\": \"fp32\")");
    }
    s.plan.precision = topology::Precision::kFp32;  // what the executor runs
  }
  ORRERY_RETURN_IF_ERROR(exec::CheckExecutable(s.model, s.plan, s.ranks));
  return s;
}

// The distinct tp degrees of the plan's layers, "1,2".
std::string TpList(const workload::Plan& plan) {
  std::set<int> tps;
  for (const workload::LayerStrategy& l : plan.layers) tps.insert(l.tp);
  std::string list;
  for (int tp : tps) list += (list.empty() ? "" : ",") + std::to_string(tp);
  return list;
}

// The largest collective the plan makes, rounded up to a power of two in
// [4 MiB, 64 MiB]: a gradient bucket (every parameter of the largest stage
// on one rank, fp32, the executor's single bucket for models below 4e7
// parameters per rank) or a tensor-parallel activation all-reduce.
Result<int64_t> ProfileMaxBytes(const Settings& s) {
  sim::IterationOptions nominal;
  ORRERY_ASSIGN_OR_RETURN(sim::IterationReport report,
                          sim::SimulateIteration(s.model, s.plan, s.cluster, nominal));
  int64_t largest = 0;
  for (const sim::StageReport& stage : report.stages) {
    largest = std::max(largest, stage.parameters * 4);
  }
  largest = std::max(largest, int64_t{4} * s.plan.micro_batch_size * s.plan.sequence_length *
                                  s.model.hidden_size);
  int64_t bytes = kMinProfileBytes;
  while (bytes < largest && bytes < kMaxProfileBytes) bytes *= 2;
  return bytes;
}

// Step 1: profile on the job's ranks, calibrate the cluster on it, write
// DIR/calibrated.json.
Result<std::string> ProfileAndCalibrate(Settings& s, const std::string& profile_dir,
                                        CommandIo& io) {
  ORRERY_ASSIGN_OR_RETURN(int64_t max_bytes, ProfileMaxBytes(s));
  const std::vector<std::string> args = {
      "profile", "--backend", std::string(exec::BackendKindName(s.backend)), "--out",
      profile_dir, "--model", s.model.name, "--tp", TpList(s.plan), "--micro-batch",
      std::to_string(s.plan.micro_batch_size), "--seq-len",
      std::to_string(s.plan.sequence_length), "--what", "all", "--ops",
      "allreduce,allgather,reducescatter,sendrecv", "--max-bytes", std::to_string(max_bytes)};
  io.err << "orrery validate: profiling on " << s.ranks << " rank" << (s.ranks == 1 ? "" : "s")
         << " into " << profile_dir << "\n";
  Result<LaunchResult> profiled = LaunchOrrery(s.launch, args);
  if (!profiled.ok()) return profiled.status().WithContext("profile");
  Result<traces::Measurements> measurements = traces::LoadMeasurements({profile_dir});
  if (!measurements.ok()) return measurements.status().WithContext("reading the profiles");
  costmodel::CalibrationRequest request;
  request.cluster = s.cluster;
  request.measurements = *std::move(measurements);
  request.model = &s.model;
  request.layer_precision = s.plan.precision;
  Result<costmodel::Calibration> calibration = costmodel::Calibrate(request);
  if (!calibration.ok()) return calibration.status().WithContext("calibrating");
  const std::string path = (std::filesystem::path(profile_dir) / "calibrated.json").string();
  ORRERY_RETURN_IF_ERROR(WriteFileAtomically(
      path, DumpJson(costmodel::CalibratedClusterToJson(s.cluster, *calibration))));
  s.calibration = std::make_shared<const costmodel::Calibration>(*std::move(calibration));
  return path;
}

struct Measured {
  double median_s = 0;
  double min_s = 0;
  double max_s = 0;
  std::vector<double> samples;
  double tokens_per_s = 0;
  std::vector<int64_t> peak_memory_bytes;
  traces::ExecutionTrace trace;
  std::string trace_path;
};

// Step 2: the executor on the job's ranks.
Result<Measured> Measure(const Settings& s, const std::string& work, CommandIo& io) {
  const std::string plan_path = (std::filesystem::path(work) / "plan.json").string();
  ORRERY_RETURN_IF_ERROR(WriteFileAtomically(plan_path, DumpJson(workload::PlanToJson(s.plan))));
  const std::string trace_dir = (std::filesystem::path(work) / "trace").string();
  const std::vector<std::string> args = {
      "execute", "--model", s.model.name, "--plan", plan_path, "--backend",
      std::string(exec::BackendKindName(s.backend)), "--iterations",
      std::to_string(s.iterations), "--warmup", std::to_string(s.warmup), "--format", "json",
      "--trace-out", trace_dir, "--trace-iterations", "1"};
  io.err << "orrery validate: executing " << s.warmup << " + " << s.iterations
         << " steps and 1 traced step on " << s.ranks << " rank" << (s.ranks == 1 ? "" : "s")
         << "\n";
  Result<LaunchResult> executed = LaunchOrrery(s.launch, args);
  if (!executed.ok()) return executed.status().WithContext("execute");
  const std::string report_path = (std::filesystem::path(work) / "execute.json").string();
  ORRERY_RETURN_IF_ERROR(WriteFileAtomically(report_path, executed->stdout_text));
  ORRERY_ASSIGN_OR_RETURN(Json doc, ParseJson(executed->stdout_text, report_path));
  JsonReader root(doc, report_path);
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  Measured m;
  ORRERY_ASSIGN_OR_RETURN(JsonReader times, root.Object("iteration_time_s"));
  ORRERY_ASSIGN_OR_RETURN(m.median_s, times.PositiveNumber("median"));
  ORRERY_ASSIGN_OR_RETURN(m.min_s, times.PositiveNumber("min"));
  ORRERY_ASSIGN_OR_RETURN(m.max_s, times.PositiveNumber("max"));
  if (const Json* samples = &doc["iteration_time_s"]["samples"]; samples->is_array()) {
    for (const Json& v : *samples) {
      if (v.is_number()) m.samples.push_back(v.get<double>());
    }
  }
  ORRERY_ASSIGN_OR_RETURN(m.tokens_per_s, root.PositiveNumber("tokens_per_s"));
  ORRERY_ASSIGN_OR_RETURN(m.peak_memory_bytes, root.IntArray("peak_memory_bytes"));
  m.trace_path = (std::filesystem::path(trace_dir) / "execution_trace.json").string();
  ORRERY_ASSIGN_OR_RETURN(m.trace, traces::LoadExecutionTrace(m.trace_path));
  return m;
}

// Step 3's per-class part: rank 0's ops of the traced step, each against
// the calibrated model's estimate of the same operator.
struct OpClassRow {
  std::string name;
  int occurrences = 0;
  int predicted_occurrences = 0;  // those the model could time
  Duration measured;
  Duration predicted;
};

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The attention core's operators as workload/ expands them (unfused: qk,
// softmax, av; fused: flash), which the executor's "attn.core" covers.
bool IsAttentionCore(std::string_view name) {
  return name == "attn.qk" || name == "attn.softmax" || name == "attn.av" ||
         name == "attn.flash";
}

class OpEstimator {
 public:
  OpEstimator(const Settings& s, const costmodel::ComputeModel& compute,
              const costmodel::CollectiveModel& collectives, const sim::IterationOptions& options)
      : s_(s),
        compute_(compute),
        collectives_(collectives),
        kinds_(workload::ModelLayers(s.model)) {
    expansion_.flash_attention = options.graph.stage.flash_attention;
  }

  // The model layer (index into ModelLayers) an op of the trace belongs to.
  int ModelLayerOf(const traces::ExecutionOp& op) const {
    if (op.layer.has_value()) return *op.layer + 1;
    if (StartsWith(op.name, "embed.")) return 0;
    return static_cast<int>(kinds_.size()) - 1;  // head.*
  }

  Result<const workload::LayerOperators*> Layer(int model_layer) {
    if (auto it = layers_.find(model_layer); it != layers_.end()) return &it->second;
    if (model_layer < 0 || model_layer >= static_cast<int>(kinds_.size())) {
      return InvalidArgumentError("trace: layer " + std::to_string(model_layer - 1) +
                                  " is not a layer of " + s_.model.name);
    }
    const int plan_layer = std::clamp(model_layer - 1, 0, s_.plan.num_layers() - 1);
    const workload::LayerStrategy& st = s_.plan.layers[static_cast<size_t>(plan_layer)];
    ORRERY_ASSIGN_OR_RETURN(
        workload::LayerOperators ops,
        workload::ExpandLayer(s_.model, kinds_[static_cast<size_t>(model_layer)],
                              s_.plan.MicroBatchSizeOfLayer(plan_layer), s_.plan.sequence_length,
                              {.tp = st.tp,
                               .sequence_parallel = st.sequence_parallel,
                               .cp = st.cp,
                               .ep = st.ep},
                              expansion_));
    return &layers_.emplace(model_layer, std::move(ops)).first->second;
  }

  // The class of a compute op of the trace ("" when the model has no such
  // operator) and the estimate of one occurrence.
  Result<std::optional<std::pair<std::string, Duration>>> Compute(const traces::ExecutionOp& op) {
    ORRERY_ASSIGN_OR_RETURN(const workload::LayerOperators* layer, Layer(ModelLayerOf(op)));
    costmodel::ComputeEstimate estimate;
    std::string op_class;
    if (op.name == "attn.core") {
      workload::LayerOperators core;
      core.kind = layer->kind;
      for (const workload::Operator& o : layer->ops) {
        if (IsAttentionCore(o.name)) core.ops.push_back(o);
      }
      if (core.ops.empty()) return std::optional<std::pair<std::string, Duration>>();
      estimate = compute_.EstimateLayer(core);
      op_class = std::string(workload::OperatorClassName(workload::OperatorClass::kAttention));
    } else {
      const auto it = std::find_if(layer->ops.begin(), layer->ops.end(),
                                   [&](const workload::Operator& o) { return o.name == op.name; });
      if (it == layer->ops.end()) return std::optional<std::pair<std::string, Duration>>();
      estimate = compute_.Estimate(*it);
      op_class = std::string(workload::OperatorClassName(it->op_class));
    }
    const Duration t = op.phase == traces::ExecutionPhase::kBackward ? estimate.backward
                                                                      : estimate.forward;
    return std::optional<std::pair<std::string, Duration>>(std::make_pair(op_class, t));
  }

  // One collective of the trace by its size and group.
  Result<Duration> Collective(const traces::ExecutionOp& op) const {
    if (!op.collective.has_value() || op.group.empty()) {
      return InvalidArgumentError("trace: communication op '" + op.name +
                                  "' has no collective or group");
    }
    ORRERY_ASSIGN_OR_RETURN(costmodel::RankGroup group,
                            costmodel::PackRanks(s_.cluster, static_cast<int>(op.group.size())));
    ORRERY_ASSIGN_OR_RETURN(costmodel::CollectiveEstimate e,
                            collectives_.Estimate(*op.collective, Bytes(op.bytes), group));
    return e.time;
  }

  // The optimizer step of the parameters rank 0 holds in the layers it ran.
  Result<Duration> Optimizer(const std::set<int>& model_layers) {
    int64_t parameters = 0;
    for (int k : model_layers) {
      ORRERY_ASSIGN_OR_RETURN(const workload::LayerOperators* layer, Layer(k));
      parameters += layer->Parameters();
    }
    const workload::LayerStrategy& st = s_.plan.layers.front();
    if (st.zero_stage >= 1) parameters /= st.dp;
    if (s_.calibration && s_.calibration->optimizer_time_per_parameter) {
      return *s_.calibration->optimizer_time_per_parameter * parameters;
    }
    // The simulator's default: 12 bytes per parameter at the streaming rate.
    const topology::DeviceType& device = s_.cluster.PrimaryNodeType().device;
    return Bytes(12 * parameters) /
           (device.memory_bandwidth * compute_.options().bandwidth_efficiency);
  }

 private:
  const Settings& s_;
  const costmodel::ComputeModel& compute_;
  const costmodel::CollectiveModel& collectives_;
  std::vector<workload::LayerKind> kinds_;
  workload::ExpansionOptions expansion_;
  std::map<int, workload::LayerOperators> layers_;
};

Result<std::vector<OpClassRow>> CompareOpClasses(const Settings& s, const Measured& m,
                                                 const sim::IterationOptions& options) {
  const topology::DeviceType& device = s.cluster.PrimaryNodeType().device;
  ORRERY_ASSIGN_OR_RETURN(
      costmodel::ComputeModel compute,
      costmodel::CalibratedComputeModel(device, s.plan.precision, s.calibration.get(),
                                        options.compute));
  ORRERY_ASSIGN_OR_RETURN(costmodel::CollectiveModel collectives,
                          costmodel::CalibratedCollectiveModel(s.cluster, s.calibration.get()));
  OpEstimator estimator(s, compute, collectives, options);
  // The classes in a fixed order; communication by group.
  std::vector<OpClassRow> rows;
  for (const char* name : {"gemm", "attention", "norm", "elementwise", "embedding", "loss",
                           "optimizer", "comm.tp", "comm.dp", "comm.pp", "comm.embedding"}) {
    OpClassRow row;
    row.name = name;
    rows.push_back(row);
  }
  auto row_of = [&](const std::string& name) -> OpClassRow& {
    for (OpClassRow& r : rows) {
      if (r.name == name) return r;
    }
    OpClassRow row;
    row.name = name;
    rows.push_back(row);
    return rows.back();
  };
  std::set<int> rank0_layers;
  // (name, phase, layer, micro-batch, chunk) of each operator pass seen → its row.
  std::map<std::tuple<std::string, int, int, int, int>, std::string> pass_rows;
  for (const traces::ExecutionOp& op : m.trace.ops) {
    if (op.rank != 0) continue;
    if (op.kind == traces::ExecutionOpKind::kCommunication) {
      const std::string group = op.name.substr(0, op.name.find('.'));
      OpClassRow& row = row_of("comm." + group);
      ++row.occurrences;
      row.measured += op.duration();
      ORRERY_ASSIGN_OR_RETURN(Duration t, estimator.Collective(op));
      row.predicted += t;
      ++row.predicted_occurrences;
      continue;
    }
    if (StartsWith(op.name, "optimizer.")) {
      OpClassRow& row = row_of("optimizer");
      ++row.occurrences;
      row.measured += op.duration();
      continue;
    }
    rank0_layers.insert(estimator.ModelLayerOf(op));
    // One operator may run as several kernels of one pass (head.loss: the
    // row maximum, the partial sums, the loss): their times add up to one
    // occurrence of the operator, predicted once.
    const auto key = std::make_tuple(op.name, static_cast<int>(op.phase), op.layer.value_or(-1),
                                     op.micro_batch.value_or(-1), op.chunk);
    if (const auto it = pass_rows.find(key); it != pass_rows.end()) {
      row_of(it->second).measured += op.duration();
      continue;
    }
    ORRERY_ASSIGN_OR_RETURN(auto estimate, estimator.Compute(op));
    if (!estimate.has_value()) {
      OpClassRow& row = row_of("other");
      ++row.occurrences;
      row.measured += op.duration();
      pass_rows[key] = row.name;
      continue;
    }
    OpClassRow& row = row_of(estimate->first);
    pass_rows[key] = row.name;
    ++row.occurrences;
    ++row.predicted_occurrences;
    row.measured += op.duration();
    row.predicted += estimate->second;
  }
  OpClassRow& optimizer = row_of("optimizer");
  if (optimizer.occurrences > 0) {
    ORRERY_ASSIGN_OR_RETURN(optimizer.predicted, estimator.Optimizer(rank0_layers));
    optimizer.predicted_occurrences = optimizer.occurrences;
  }
  std::erase_if(rows, [](const OpClassRow& r) { return r.occurrences == 0; });
  return rows;
}

std::optional<double> ErrorOf(Duration predicted, Duration measured) {
  if (measured <= Duration()) return std::nullopt;
  return (predicted.ToSeconds() - measured.ToSeconds()) / measured.ToSeconds();
}

std::string PlanLine(const Settings& s) {
  const workload::LayerStrategy& l = s.plan.layers.front();
  std::ostringstream out;
  out << s.model.name << " on " << s.ranks << " rank" << (s.ranks == 1 ? "" : "s") << " ("
      << exec::BackendKindName(s.backend) << "): tp " << l.tp;
  if (l.sequence_parallel) out << " (sp)";
  out << ", pp " << s.plan.pp << ", dp " << l.dp << ", "
      << workload::PipelineScheduleName(s.plan.schedule) << ", " << s.plan.NumMicroBatches()
      << " micro-batches of " << s.plan.micro_batch_size << " x " << s.plan.sequence_length
      << " tokens, ZeRO " << l.zero_stage << ", recompute " << workload::RecomputeName(l.recompute)
      << ", " << topology::PrecisionName(s.plan.precision);
  return out.str();
}

struct Report {
  double predicted_s = 0;
  double predicted_tokens_per_s = 0;
  std::vector<OpClassRow> rows;
  std::string calibration_path;
  bool calibration_written = false;
  bool calibration_kept = true;
};

Json ReportJson(const Settings& s, const Measured& m, const Report& r) {
  Json j = Json::object();
  j["model"] = s.model.name;
  j["backend"] = std::string(exec::BackendKindName(s.backend));
  j["ranks"] = s.ranks;
  j["cluster"] = s.cluster.name;
  j["plan"] = workload::PlanToJson(s.plan);
  j["calibration"] = r.calibration_path;
  j["calibration_written"] = r.calibration_written;
  j["calibration_kept"] = r.calibration_kept;
  j["predicted_iteration_time_s"] = r.predicted_s;
  j["measured_iteration_time_s"] = m.median_s;
  j["error"] = (r.predicted_s - m.median_s) / m.median_s;
  Json measured = Json::object();
  measured["median"] = m.median_s;
  measured["min"] = m.min_s;
  measured["max"] = m.max_s;
  measured["samples"] = m.samples;
  j["measured_iteration_time_samples_s"] = measured;
  j["predicted_tokens_per_s"] = r.predicted_tokens_per_s;
  j["measured_tokens_per_s"] = m.tokens_per_s;
  j["op_classes_scope"] = "rank 0, the traced step: every occurrence";
  Json classes = Json::array();
  for (const OpClassRow& row : r.rows) {
    Json c = Json::object();
    c["class"] = row.name;
    c["occurrences"] = row.occurrences;
    c["predicted_occurrences"] = row.predicted_occurrences;
    c["predicted_s"] = row.predicted.ToSeconds();
    c["measured_s"] = row.measured.ToSeconds();
    c["predicted_mean_s"] =
        row.predicted_occurrences > 0 ? row.predicted.ToSeconds() / row.predicted_occurrences : 0.0;
    c["measured_mean_s"] = row.measured.ToSeconds() / row.occurrences;
    const std::optional<double> error =
        row.predicted_occurrences == row.occurrences ? ErrorOf(row.predicted, row.measured)
                                                     : std::nullopt;
    c["error"] = error ? Json(*error) : Json(nullptr);
    classes.push_back(c);
  }
  j["op_classes"] = classes;
  return j;
}

std::string ReportText(const Settings& s, const Measured& m, const Report& r) {
  std::ostringstream out;
  out << "Validated " << PlanLine(s) << "\n";
  out << "  calibration  " << r.calibration_path
      << (r.calibration_written ? " (fitted to profiler runs now" : " (given")
      << (r.calibration_kept ? ")" : "; removed with the work directory: pass --profile-dir)")
      << "\n\n";
  const double error = (r.predicted_s - m.median_s) / m.median_s;
  out << "  iteration time  predicted " << MillisecondsText(r.predicted_s) << ", measured " << MillisecondsText(m.median_s)
      << " (median of " << m.samples.size() << "; min " << MillisecondsText(m.min_s) << ", max "
      << MillisecondsText(m.max_s) << "), error " << Percent(error) << "\n";
  out << "  throughput      predicted " << FixedText(r.predicted_tokens_per_s, 0)
      << " tokens/s, measured " << FixedText(m.tokens_per_s, 0) << " tokens/s\n\n";
  out << "  per operator class: rank 0, the traced step (every operator synchronized)\n";
  out << "  " << PadText("class", 16) << PadText("ops", 6) << PadText("predicted", 13) << PadText("measured", 13)
      << PadText("per op pred.", 14) << PadText("per op meas.", 14) << "error\n";
  for (const OpClassRow& row : r.rows) {
    const double per_pred = row.predicted_occurrences > 0
                                ? row.predicted.ToSeconds() / row.predicted_occurrences
                                : 0.0;
    const std::optional<double> e = row.predicted_occurrences == row.occurrences
                                        ? ErrorOf(row.predicted, row.measured)
                                        : std::nullopt;
    out << "  " << PadText(row.name, 16) << PadText(std::to_string(row.occurrences), 6)
        << PadText(row.predicted_occurrences > 0 ? MillisecondsText(row.predicted.ToSeconds()) : "-", 13)
        << PadText(MillisecondsText(row.measured.ToSeconds()), 13)
        << PadText(row.predicted_occurrences > 0 ? FixedText(1e6 * per_pred, 1) + " us" : "-", 14)
        << PadText(FixedText(1e6 * row.measured.ToSeconds() / row.occurrences, 1) + " us", 14)
        << (e ? Percent(*e) : "-") << "\n";
  }
  out << "\n  trace: " << m.trace_path << "\n";
  return out.str();
}

}  // namespace

int RunValidate(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("model", po::value<std::string>()->value_name("NAME|FILE"),
       "model preset or HuggingFace config.json (required), e.g. gpt-tiny")
      ("backend", po::value<std::string>()->value_name("cpu|cuda"),
       "the executor's backend (required)")
      ("ranks", po::value<int>()->value_name("N"), "ranks of the jobs launched (required)")
      ("calibration", po::value<std::string>()->value_name("FILE"),
       "a calibrated cluster file (`orrery calibrate`, or DIR/calibrated.json of an "
       "earlier validate): no profiling")
      ("cluster", po::value<std::string>()->value_name("NAME|FILE"),
       "the cluster to calibrate and simulate (default on cpu: this machine's cores as "
       "one node of --ranks devices)")
      ("iterations", po::value<int>()->default_value(5)->value_name("K"),
       "timed steps of the executor (the median is the measurement)")
      ("warmup", po::value<int>()->default_value(1)->value_name("W"), "untimed steps first")
      ("profile-dir", po::value<std::string>()->value_name("DIR"),
       "write the profiles and calibrated.json here (kept; default: the work directory)")
      ("keep", po::value<std::string>()->value_name("DIR"),
       "work in DIR and keep it: plan.json, execute.json, trace/ (default: a temporary "
       "directory, removed)")
      ("launcher", po::value<std::string>()->default_value("auto")->value_name("L"),
       "auto (srun under Slurm, else mpirun), mpirun or srun")
      ("timeout", po::value<double>()->default_value(1800)->value_name("S"),
       "kill a launched job after S seconds");
  AddFormatOption(options);
  AddPlanOptions(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  Result<Settings> settings = ReadSettings(vm);
  if (!settings.ok()) return ReportError(kCommand, settings.status(), io);
  Settings& s = *settings;

  // From here on a failure is a step that failed: exit 1.
  auto failed = [&](const Status& status) {
    io.err << "orrery validate: error: " << status.message() << "\n";
    return kExitNo;
  };
  Result<WorkDir> work = WorkDir::Make(s.keep);
  if (!work.ok()) return ReportError(kCommand, work.status(), io);

  Report report;
  if (s.calibration) {
    report.calibration_path = s.calibration_path;
  } else {
    const std::string profile_dir = s.profile_dir.empty()
                                        ? (std::filesystem::path(work->path()) / "profile").string()
                                        : s.profile_dir;
    std::error_code error;
    std::filesystem::create_directories(profile_dir, error);
    if (error) {
      return ReportError(kCommand,
                         IoError("--profile-dir: cannot create directory '" + profile_dir +
                                 "': " + error.message()),
                         io);
    }
    Result<std::string> written = ProfileAndCalibrate(s, profile_dir, io);
    if (!written.ok()) return failed(written.status());
    report.calibration_path = *written;
    report.calibration_written = true;
    report.calibration_kept = !s.profile_dir.empty() || work->kept();
  }

  Result<Measured> measured = Measure(s, work->path(), io);
  if (!measured.ok()) return failed(measured.status());

  sim::IterationOptions sim_options;
  sim_options.calibration = s.calibration;
  sim_options.overlap_slowdown = s.calibration->overlap_slowdown.value_or(0.0);
  sim_options.graph.gradient_bytes_per_parameter =
      s.plan.precision == topology::Precision::kFp32 ? 4 : 2;
  // The executor's attention core materializes the scores (attn.core).
  sim_options.graph.stage.flash_attention = false;
  Result<sim::IterationReport> predicted =
      sim::SimulateIteration(s.model, s.plan, s.cluster, sim_options);
  if (!predicted.ok()) return failed(predicted.status().WithContext("simulating"));
  report.predicted_s = predicted->iteration_time.ToSeconds();
  report.predicted_tokens_per_s = predicted->tokens_per_s;
  Result<std::vector<OpClassRow>> rows = CompareOpClasses(s, *measured, sim_options);
  if (!rows.ok()) return failed(rows.status().WithContext("per-class comparison"));
  report.rows = *std::move(rows);
  if (!work->kept()) measured->trace_path += " (removed: pass --keep DIR to keep it)";

  if (*format == OutputFormat::kJson) {
    io.out << DumpJson(ReportJson(s, *measured, report));
  } else {
    io.out << ReportText(s, *measured, report);
  }
  return kExitOk;
}

}  // namespace orrery::cli
