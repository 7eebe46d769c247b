// `orrery tune`: close the loop on the machine at hand. Profile the
// operators and collectives the search may use, calibrate, search, execute
// the best plan the executor can run, recalibrate with the execution's
// trace, and search again, until the chosen plan stops changing
// (docs/calibration.md). Every step is a command of its own — `profile` and
// `execute` are launched on the ranks (cli/launcher.h), `calibrate` runs in
// this process — and leaves its files under --out, so each round can be
// inspected and re-run by hand.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/command.h"
#include "cli/launcher.h"
#include "cli/plan_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/text.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "costmodel/calibration_json.h"
#include "exec/backend.h"
#include "exec/runtime.h"
#include "search/search.h"
#include "search/space.h"
#include "topology/cluster_spec.h"
#include "topology/cluster_spec_json.h"
#include "workload/hf_import.h"
#include "workload/model_spec.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;
namespace fs = std::filesystem;

constexpr std::string_view kCommand = "tune";

constexpr std::string_view kUsage =
    "orrery tune --model M --cluster C --global-batch B --backend cpu|cuda [--ranks N]\n"
    "               [--seq-len S] [--memory-budget GiB] [--max-rounds R] [--iterations K]\n"
    "               [--warmup W] [--launcher auto|mpirun|srun] [--out DIR]\n"
    "               [--format text|json]";

constexpr std::string_view kDescription =
    "Finds the plan that trains fastest on this machine by measuring it, in rounds:\n"
    "\n"
    "  round 0  profile: `orrery profile` on the N ranks: the collectives over all\n"
    "           of them, and the operators at every tensor-parallel degree the\n"
    "           search may use (powers of two up to min(N, heads) that divide the\n"
    "           heads), at every power-of-two micro-batch up to the largest of a\n"
    "           data-parallel plan;\n"
    "  each     calibrate (`orrery calibrate` on every profile and every\n"
    "  round    execution trace so far), search (the exhaustive search of\n"
    "           uniform plans, without context parallelism, at fp32, the\n"
    "           executor's precision, with the calibration and its overlap\n"
    "           slowdown; the best plan the executor can run is chosen), execute\n"
    "           it (`orrery execute --trace-out`, --warmup then --iterations timed\n"
    "           steps; the measurement is their median) and add its trace to the\n"
    "           measurements.\n"
    "\n"
    "It stops when a round's search chooses the plan the previous round executed\n"
    "(converged; that plan is not run again, its measurement is reused beside the\n"
    "recalibrated prediction) or after --max-rounds executions. The answer is the\n"
    "fastest plan measured (and the report says so when the calibrated simulator\n"
    "still prefers another). Each round prints\n"
    "the plan, the predicted iteration time, the measured median and the error\n"
    "(predicted - measured) / measured. Files: DIR/profile/ (the profiles),\n"
    "DIR/cluster.json (the cluster of N devices), and per round DIR/round<r>/:\n"
    "calibrated.json, plan.json, execute.json and trace/ (the execution trace).\n"
    "\n"
    "The cluster must hold N devices; a one-node cluster without NICs (cpu-local)\n"
    "with more is narrowed to N. Ranks are launched with mpirun (or srun under\n"
    "Slurm), one per device: on CPUs one per core.";

constexpr std::string_view kExamples =
    "  orrery tune --model gpt-tiny --cluster cpu-local --global-batch 8 --seq-len 32 \\\n"
    "      --backend cpu --ranks 2 --max-rounds 2 --iterations 3 --out tune\n"
    "  orrery tune --model llama-tiny --cluster cpu-local --global-batch 16 --backend cpu \\\n"
    "      --ranks 2 --format json\n"
    "  orrery tune --model gpt-1.7b --cluster dgx-a100-80gb --global-batch 64 --backend cuda \\\n"
    "      --ranks 8 --seq-len 2048 --out tune-a100\n";

std::string Ms(double seconds) { return FixedText(1e3 * seconds, 3) + " ms"; }

std::string SignedPercent(double fraction) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%+.1f%%", 100.0 * fraction);
  return buf;
}

// The cluster of --cluster with exactly `ranks` devices.
Result<topology::ClusterSpec> TuneCluster(const std::string& name, int ranks) {
  ORRERY_ASSIGN_OR_RETURN(ClusterInput input, LoadClusterInput(name));
  topology::ClusterSpec cluster = std::move(input.cluster);
  if (cluster.TotalDevices() == ranks) return cluster;
  if (cluster.node_types.size() == 1 && cluster.node_types[0].count == 1 &&
      cluster.node_types[0].nics.empty() && ranks < cluster.node_types[0].devices_per_node) {
    cluster.node_types[0].devices_per_node = ranks;
    cluster.description += (cluster.description.empty() ? "" : "; ") +
                           std::string("narrowed to ") + std::to_string(ranks) +
                           " devices by orrery tune";
    return cluster;
  }
  return InvalidArgumentError("--ranks " + std::to_string(ranks) + ": cluster " + cluster.name +
                              " has " + std::to_string(cluster.TotalDevices()) +
                              " devices; give a cluster of " + std::to_string(ranks) +
                              " devices (one rank per device)");
}

Status MakeDirectory(const std::string& path) {
  std::error_code error;
  fs::create_directories(path, error);
  if (error) return IoError("cannot create directory '" + path + "': " + error.message());
  return Status::Ok();
}

struct Settings {
  std::string model_arg;
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
  exec::BackendKind backend = exec::BackendKind::kCpu;
  int ranks = 1;
  int global_batch = 0;
  int sequence_length = 0;
  std::optional<Bytes> memory_budget;
  int max_rounds = 3;
  int iterations = 5;
  int warmup = 1;
  std::string out;
  LaunchOptions launch;
};

// The tensor-parallel degrees the search may use (powers of two up to
// min(ranks, heads) that divide the heads and the ranks) and the
// micro-batch sizes to profile them at: every power of two up to the largest
// micro-batch of a data-parallel plan at the largest degree (dp = ranks / tp
// replicas share the global batch).
struct ProfilePoints {
  std::vector<int> tps;
  std::vector<int> micro_batches;
};

ProfilePoints PointsToProfile(const Settings& s) {
  ProfilePoints points;
  const int heads = s.model.num_attention_heads;
  for (int tp = 1; tp <= std::min(s.ranks, heads); tp *= 2) {
    if (heads % tp == 0 && s.ranks % tp == 0) points.tps.push_back(tp);
  }
  const int per_replica = std::max(1, s.global_batch / std::max(1, s.ranks / points.tps.back()));
  int largest = 1;
  while (largest * 2 <= per_replica && s.global_batch % (largest * 2) == 0) largest *= 2;
  // Every power of two up to it: the search picks any of them, and an
  // operator measured at its own shape is timed as measured, where one
  // interpolated between micro-batch 1 and the largest is not (the cpu
  // backend's GEMM rate is far from linear in its size).
  for (int mb = 1; mb <= largest; mb *= 2) points.micro_batches.push_back(mb);
  return points;
}

std::string JoinList(const std::vector<int>& values) {
  std::string out;
  for (const int v : values) out += (out.empty() ? "" : ",") + std::to_string(v);
  return out;
}

// Round 0: `orrery profile` on the ranks (the collectives over all of them,
// the operators on rank 0) into DIR/profile. Returns the directory.
Result<std::string> Profile(const Settings& s) {
  const std::string dir = s.out + "/profile";
  const ProfilePoints points = PointsToProfile(s);
  LaunchOptions launch = s.launch;
  launch.ranks = s.ranks;
  std::vector<std::string> args = {"profile",
                                   "--backend",
                                   std::string(exec::BackendKindName(s.backend)),
                                   "--out",
                                   dir,
                                   "--model",
                                   s.model_arg,
                                   "--tp",
                                   JoinList(points.tps),
                                   "--micro-batch",
                                   JoinList(points.micro_batches)};
  if (s.sequence_length > 0) {
    args.insert(args.end(), {"--seq-len", std::to_string(s.sequence_length)});
  }
  // One rank has no collective to measure.
  if (s.ranks == 1) args.insert(args.end(), {"--what", "compute"});
  LogInfo("tune: round 0: profiling tp " + JoinList(points.tps) + " at micro-batch " +
          JoinList(points.micro_batches) + " on " + std::to_string(s.ranks) + " rank" +
          (s.ranks == 1 ? "" : "s") + " into " + dir);
  Result<LaunchResult> run = LaunchOrrery(launch, args);
  if (!run.ok()) return run.status().WithContext("profile");
  return dir;
}

// `orrery calibrate`, run in this process, writing `out`.
Status CalibrateInto(const std::string& cluster, const std::vector<std::string>& from,
                     const std::string& model, const std::string& out) {
  std::vector<std::string> args = {"--cluster", cluster, "--model", model, "--out", out,
                                   "--format", "json", "--from"};
  args.insert(args.end(), from.begin(), from.end());
  std::ostringstream report;
  std::ostringstream errors;
  CommandIo io{report, errors};
  if (RunCalibrate(args, io) != kExitOk) {
    std::string message = errors.str();
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return InvalidArgumentError("calibrate: " + message);
  }
  return Status::Ok();
}

struct Choice {
  workload::Plan plan;
  double predicted_s = 0;
  int rank_in_search = 0;  // 1-based place among the search's plans
};

// The search with `calibration`, and its best plan the executor can run.
Result<Choice> Search(const Settings& s, const topology::ClusterSpec& cluster,
                      std::shared_ptr<const costmodel::Calibration> calibration) {
  search::SearchRequest request;
  request.model = s.model;
  request.cluster = cluster;
  request.global_batch_size = s.global_batch;
  request.sequence_length =
      s.sequence_length > 0 ? s.sequence_length : s.model.default_sequence_length;
  request.memory_budget = s.memory_budget;
  // The executor runs fp32 on either backend (`orrery execute --help`).
  request.precision = topology::Precision::kFp32;
  // What the executor runs: uniform layers (the exhaustive search's plans),
  // no context parallelism (CheckExecutable filters the rest).
  request.allow_context_parallel = false;
  // The executor reduces fp32 gradients.
  request.graph.gradient_bytes_per_parameter = 4;
  request.top_k = 10;
  request.overlap_slowdown = calibration ? calibration->overlap_slowdown.value_or(0.0) : 0.0;
  request.calibration = std::move(calibration);
  ORRERY_ASSIGN_OR_RETURN(search::SearchResult result, search::RunSearch(request, "exhaustive"));
  std::string first_reason;
  for (size_t k = 0; k < result.plans.size(); ++k) {
    const search::Candidate& c = result.plans[k];
    Status executable = exec::CheckExecutable(s.model, c.plan, s.ranks);
    if (!executable.ok()) {
      if (first_reason.empty()) first_reason = executable.message();
      continue;
    }
    const search::Evaluation& e = c.simulated.has_value() ? *c.simulated : c.analytical;
    return Choice{c.plan, e.iteration_time.ToSeconds(), static_cast<int>(k) + 1};
  }
  if (result.plans.empty()) {
    return FailedPreconditionError("search: no plan of " + s.model.name + " fits " +
                                   std::to_string(s.ranks) + " devices in memory");
  }
  return FailedPreconditionError("search: none of the " + std::to_string(result.plans.size()) +
                                 " best plans can be executed; the first: " + first_reason);
}

struct Measured {
  double median_s = 0;
  std::string trace;  // the execution trace file
};

Result<Measured> Execute(const Settings& s, const std::string& plan_file,
                         const std::string& round_dir) {
  LaunchOptions launch = s.launch;
  launch.ranks = s.ranks;
  const std::string trace_dir = round_dir + "/trace";
  Result<LaunchResult> run = LaunchOrrery(
      launch, {"execute", "--model", s.model_arg, "--plan", plan_file, "--backend",
               std::string(exec::BackendKindName(s.backend)), "--iterations",
               std::to_string(s.iterations), "--warmup", std::to_string(s.warmup), "--format",
               "json", "--trace-out", trace_dir});
  if (!run.ok()) return run.status().WithContext("execute");
  ORRERY_ASSIGN_OR_RETURN(Json report, ParseJson(run->stdout_text, "orrery execute's report"));
  ORRERY_RETURN_IF_ERROR(WriteFileAtomically(round_dir + "/execute.json", DumpJson(report)));
  if (!report.contains("iteration_time_s") || !report["iteration_time_s"].is_object() ||
      !report["iteration_time_s"].contains("median") ||
      !report["iteration_time_s"]["median"].is_number()) {
    return InternalError("orrery execute's report: iteration_time_s.median missing");
  }
  return Measured{report["iteration_time_s"]["median"].get<double>(),
                  trace_dir + "/execution_trace.json"};
}

struct Round {
  int round = 0;
  workload::Plan plan;
  double predicted_s = 0;
  double measured_s = 0;
  bool executed = true;  // false: the previous round's measurement of the same plan
  std::string calibrated;
};

double RelativeError(const Round& r) { return (r.predicted_s - r.measured_s) / r.measured_s; }

std::string RoundLine(const Round& r) {
  std::ostringstream out;
  out << "round " << r.round << ": " << search::PlanSummary(r.plan) << "\n"
      << "    predicted " << Ms(r.predicted_s) << ", measured " << Ms(r.measured_s)
      << (r.executed ? "" : " (round " + std::to_string(r.round - 1) + "'s run)")
      << ", error " << SignedPercent(RelativeError(r)) << "\n";
  return out.str();
}

Result<std::vector<Round>> Tune(const Settings& s, bool* converged) {
  *converged = false;
  ORRERY_RETURN_IF_ERROR(MakeDirectory(s.out));
  const std::string cluster_file = s.out + "/cluster.json";
  ORRERY_RETURN_IF_ERROR(
      WriteFileAtomically(cluster_file, DumpJson(topology::ClusterSpecToJson(s.cluster))));
  ORRERY_ASSIGN_OR_RETURN(std::string profile, Profile(s));
  std::vector<std::string> measurements = {profile};

  std::vector<Round> rounds;
  std::string previous_plan_json;
  std::string before = cluster_file;
  for (int r = 0; r < s.max_rounds; ++r) {
    const std::string round_dir = s.out + "/round" + std::to_string(r);
    ORRERY_RETURN_IF_ERROR(MakeDirectory(round_dir));
    Round round;
    round.round = r;
    round.calibrated = round_dir + "/calibrated.json";
    LogInfo("tune: round " + std::to_string(r) + ": calibrating from " +
            std::to_string(measurements.size()) + " measurements");
    ORRERY_RETURN_IF_ERROR(CalibrateInto(before, measurements, s.model_arg, round.calibrated));
    before = round.calibrated;
    ORRERY_ASSIGN_OR_RETURN(ClusterInput calibrated, LoadClusterInput(round.calibrated));
    LogInfo("tune: round " + std::to_string(r) + ": searching");
    ORRERY_ASSIGN_OR_RETURN(Choice choice, Search(s, calibrated.cluster, calibrated.calibration));
    round.plan = choice.plan;
    round.predicted_s = choice.predicted_s;
    const std::string plan_json = DumpJson(workload::PlanToJson(choice.plan));
    const std::string plan_file = round_dir + "/plan.json";
    ORRERY_RETURN_IF_ERROR(WriteFileAtomically(plan_file, plan_json));
    if (plan_json == previous_plan_json) {
      round.measured_s = rounds.back().measured_s;
      round.executed = false;
      rounds.push_back(round);
      *converged = true;
      break;
    }
    LogInfo("tune: round " + std::to_string(r) + ": executing " +
            search::PlanSummary(choice.plan) + " on " + std::to_string(s.ranks) + " ranks");
    ORRERY_ASSIGN_OR_RETURN(Measured measured, Execute(s, plan_file, round_dir));
    round.measured_s = measured.median_s;
    measurements.push_back(measured.trace);
    previous_plan_json = plan_json;
    rounds.push_back(round);
    LogInfo("tune: " + RoundLine(round).substr(0, RoundLine(round).size() - 1));
  }
  return rounds;
}

Result<Settings> ReadSettings(const po::variables_map& vm) {
  Settings s;
  for (const char* required : {"model", "cluster", "global-batch", "backend"}) {
    if (vm.count(required) == 0) {
      return InvalidArgumentError(std::string("--") + required + " is required");
    }
  }
  s.model_arg = vm["model"].as<std::string>();
  Result<workload::ModelSpec> model = workload::LoadModel(s.model_arg);
  if (!model.ok()) return model.status().WithContext("--model");
  s.model = std::move(*model);
  Result<exec::BackendKind> backend = exec::ParseBackendKind(vm["backend"].as<std::string>());
  if (!backend.ok()) return backend.status().WithContext("--backend");
  s.backend = *backend;
  s.global_batch = vm["global-batch"].as<int>();
  if (s.global_batch < 1) {
    return InvalidArgumentError("--global-batch: expected a positive integer, got " +
                                std::to_string(s.global_batch));
  }
  if (vm.count("seq-len") > 0) {
    s.sequence_length = vm["seq-len"].as<int>();
    if (s.sequence_length < 1) {
      return InvalidArgumentError("--seq-len: expected a positive integer, got " +
                                  std::to_string(s.sequence_length));
    }
  }
  if (vm.count("memory-budget") > 0) {
    const double gib = vm["memory-budget"].as<double>();
    if (!(gib > 0)) {
      return InvalidArgumentError("--memory-budget: expected a positive number of GiB, got " +
                                  FixedText(gib, 2));
    }
    s.memory_budget = Bytes(static_cast<int64_t>(gib * static_cast<double>(1 << 30)));
  }
  struct Bound {
    const char* flag;
    int* value;
    int minimum;
  };
  for (const Bound& b : {Bound{"max-rounds", &s.max_rounds, 1},
                         Bound{"iterations", &s.iterations, 1}, Bound{"warmup", &s.warmup, 0}}) {
    *b.value = vm[b.flag].as<int>();
    if (*b.value < b.minimum) {
      return InvalidArgumentError(std::string("--") + b.flag + ": expected an integer >= " +
                                  std::to_string(b.minimum) + ", got " +
                                  std::to_string(*b.value));
    }
  }
  const std::string cluster_name = vm["cluster"].as<std::string>();
  if (vm.count("ranks") > 0) {
    s.ranks = vm["ranks"].as<int>();
    if (s.ranks < 1) {
      return InvalidArgumentError("--ranks: expected a positive integer, got " +
                                  std::to_string(s.ranks));
    }
  } else {
    Result<ClusterInput> whole = LoadClusterInput(cluster_name);
    if (!whole.ok()) return whole.status().WithContext("--cluster");
    s.ranks = whole->cluster.TotalDevices();
  }
  Result<topology::ClusterSpec> cluster = TuneCluster(cluster_name, s.ranks);
  if (!cluster.ok()) return cluster.status().WithContext("--cluster");
  s.cluster = std::move(*cluster);
  s.out = vm["out"].as<std::string>();
  s.launch.launcher = vm["launcher"].as<std::string>();
  if (s.launch.launcher != "auto" && s.launch.launcher != "mpirun" &&
      s.launch.launcher != "srun") {
    return InvalidArgumentError("--launcher: expected auto, mpirun or srun, got '" +
                                s.launch.launcher + "'");
  }
  return s;
}

Json RoundJson(const Round& r) {
  Json j = Json::object();
  j["round"] = r.round;
  j["summary"] = search::PlanSummary(r.plan);
  j["plan"] = workload::PlanToJson(r.plan);
  j["predicted_iteration_time_s"] = r.predicted_s;
  j["measured_iteration_time_s"] = r.measured_s;
  j["error"] = RelativeError(r);
  j["executed"] = r.executed;
  j["calibrated_cluster"] = r.calibrated;
  return j;
}

}  // namespace

int RunTune(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("model", po::value<std::string>()->value_name("NAME|FILE"),
       "model preset or HuggingFace config.json the executor can build (required)")
      ("cluster", po::value<std::string>()->value_name("NAME|FILE"),
       "the cluster the ranks run on: a preset (cpu-local) or cluster JSON file (required)")
      ("global-batch", po::value<int>()->value_name("B"), "samples per iteration (required)")
      ("backend", po::value<std::string>()->value_name("cpu|cuda"),
       "executor backend: cpu (Eigen + MPI) or cuda (cuBLAS + NCCL) (required)")
      ("ranks", po::value<int>()->value_name("N"),
       "ranks to launch, one per device (default: the cluster's devices)")
      ("seq-len", po::value<int>()->value_name("S"),
       "tokens per sample (default: the model's training sequence length)")
      ("memory-budget", po::value<double>()->value_name("GiB"),
       "usable memory per device (default: capacity less the 1 GiB reserve)")
      ("max-rounds", po::value<int>()->default_value(3)->value_name("R"),
       "executions at most")
      ("iterations", po::value<int>()->default_value(5)->value_name("K"),
       "timed steps per execution (the median is the measurement)")
      ("warmup", po::value<int>()->default_value(1)->value_name("W"),
       "untimed steps before them")
      ("launcher", po::value<std::string>()->default_value("auto")->value_name("NAME"),
       "auto (srun under Slurm, else mpirun), mpirun or srun")
      ("out", po::value<std::string>()->default_value("orrery-tune")->value_name("DIR"),
       "directory for the profiles, calibrations, plans and traces (created)");
  AddFormatOption(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  Result<Settings> settings = ReadSettings(vm);
  if (!settings.ok()) return ReportError(kCommand, settings.status(), io);

  bool converged = false;
  Result<std::vector<Round>> rounds = Tune(*settings, &converged);
  if (!rounds.ok()) return ReportError(kCommand, rounds.status(), io);
  // The answer: the fastest plan measured (the first of equals). When the
  // loop converged on another, the simulator still orders them wrongly.
  const Round* answer = &rounds->front();
  for (const Round& r : *rounds) {
    if (r.executed && r.measured_s < answer->measured_s) answer = &r;
  }
  const std::string answer_dir = answer->calibrated.substr(0, answer->calibrated.rfind('/'));

  if (*format == OutputFormat::kJson) {
    Json j = Json::object();
    j["model"] = settings->model.name;
    j["cluster"] = settings->cluster.name;
    j["ranks"] = settings->ranks;
    j["backend"] = std::string(exec::BackendKindName(settings->backend));
    Json list = Json::array();
    for (const Round& r : *rounds) list.push_back(RoundJson(r));
    j["rounds"] = list;
    j["converged"] = converged;
    j["plan"] = workload::PlanToJson(answer->plan);
    j["plan_round"] = answer->round;
    j["out"] = settings->out;
    io.out << DumpJson(j);
  } else {
    std::ostringstream out;
    out << "Tuned " << settings->model.name << " on " << settings->ranks << " "
        << exec::BackendKindName(settings->backend) << " rank"
        << (settings->ranks == 1 ? "" : "s") << " (" << settings->cluster.name
        << "), global batch " << settings->global_batch << "\n\n";
    for (const Round& r : *rounds) out << "  " << RoundLine(r);
    out << "\n";
    const Round& last = rounds->back();
    if (converged) {
      out << "converged: round " << last.round << " chose the plan round " << last.round - 1
          << " ran\n";
    } else {
      out << "not converged after " << settings->max_rounds << " round"
          << (settings->max_rounds == 1 ? "" : "s") << " (--max-rounds)\n";
    }
    out << "answer: the fastest plan measured, round " << answer->round << "'s ("
        << Ms(answer->measured_s) << ")";
    if (converged && answer->round != last.round - 1) {
      out << "; the calibrated simulator still prefers round " << last.round - 1
          << "'s, measured slower";
    }
    out << "\n";
    out << "plan: " << answer_dir << "/plan.json (" << search::PlanSummary(answer->plan)
        << "), calibrated cluster: " << rounds->back().calibrated << "\n";
    io.out << out.str();
  }
  return kExitOk;
}

}  // namespace orrery::cli
