// `orrery tune`: close the loop on the machine at hand. Profile the
// operators and collectives the search may use, calibrate, search, execute
// the best plan the executor can run, recalibrate with the execution's
// trace, and search again, until the chosen plan stops changing
// (docs/calibration.md). Every step is a command of its own — `profile` and
// `execute` are launched on the ranks (cli/launcher.h), `calibrate` runs in
// this process — and leaves its files under --out, so each round can be
// inspected and re-run by hand.
#include <algorithm>
#include <cmath>
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
#include "cli/replan.h"
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
#include "sim/faults.h"
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
    "               [--replan MARGIN [--replan-window K]] [--slow-rank RANK:FACTOR]\n"
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
    "Slurm), one per device: on CPUs one per core.\n"
    "\n"
    "With --replan MARGIN every execution re-plans at run time (`orrery execute\n"
    "--replan`, docs/replanning.md) against the round's calibrated cluster: when a\n"
    "window of --replan-window steps is more than MARGIN slower than predicted,\n"
    "it probes the ranks, takes a rank slower than the rest as a slow device,\n"
    "searches again and switches plan in memory when the gain over the steps\n"
    "left beats the switch. The round's measurement is then of the plan the run\n"
    "ended with (DIR/round<r>/final_plan.json), and later rounds search with the\n"
    "slow devices measured. Re-planned runs are not traced (a straggler's trace\n"
    "would teach calibrate a slow device as the device's speed): the calibration\n"
    "is the profile's and the traces of runs before. --slow-rank injects a\n"
    "straggler into every execution, to see it happen.";

constexpr std::string_view kExamples =
    "  orrery tune --model gpt-tiny --cluster cpu-local --global-batch 8 --seq-len 32 \\\n"
    "      --backend cpu --ranks 2 --max-rounds 2 --iterations 3 --out tune\n"
    "  orrery tune --model llama-tiny --cluster cpu-local --global-batch 16 --backend cpu \\\n"
    "      --ranks 2 --format json\n"
    "  orrery tune --model gpt-tiny --cluster cpu-local --global-batch 8 --seq-len 32 \\\n"
    "      --backend cpu --ranks 2 --iterations 16 --replan 0.2 --replan-window 4 \\\n"
    "      --slow-rank 1:3 --out tune-straggler\n"
    "  orrery tune --model gpt-1.7b --cluster dgx-a100-80gb --global-batch 64 --backend cuda \\\n"
    "      --ranks 8 --seq-len 2048 --out tune-a100\n";


std::string SignedPercent(double fraction) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%+.1f%%", 100.0 * fraction);
  return buf;
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
  // --replan: the executions re-plan at run time (cli/replan.h), untraced.
  std::optional<double> replan;
  int replan_window = 5;
  std::vector<std::string> slow_ranks;  // --slow-rank, passed to every execution
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

// The search with `calibration` and the faults known so far, and its best
// plan the executor can run.
Result<Choice> Search(const Settings& s, const topology::ClusterSpec& cluster,
                      std::shared_ptr<const costmodel::Calibration> calibration,
                      const sim::Faults& faults) {
  search::SearchRequest request =
      ExecutorSearchRequest(s.model, cluster, std::move(calibration), s.global_batch,
                            s.sequence_length, s.memory_budget);
  request.faults = faults;
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
  double median_s = 0;  // of the plan the execution ended with
  std::string trace;    // the execution trace file ("" under --replan)
  // Under --replan: the plan the run switched to (nullopt: none) and the
  // faults it measured, "RANK:FACTOR".
  std::optional<workload::Plan> final_plan;
  std::vector<std::string> faults;
};

Result<Measured> Execute(const Settings& s, const std::string& plan_file,
                         const std::string& round_dir, const std::string& calibrated) {
  LaunchOptions launch = s.launch;
  launch.ranks = s.ranks;
  const std::string trace_dir = round_dir + "/trace";
  std::vector<std::string> args = {"execute",  "--model",      s.model_arg,
                                   "--plan",   plan_file,      "--backend",
                                   std::string(exec::BackendKindName(s.backend)),
                                   "--iterations", std::to_string(s.iterations),
                                   "--format", "json"};
  if (s.replan.has_value()) {
    // A straggler's trace would teach calibrate a slow device as the
    // device's speed: re-planned runs are measured, not traced.
    args.insert(args.end(), {"--replan", FixedText(*s.replan, 6), "--replan-window",
                             std::to_string(s.replan_window), "--cluster", calibrated});
  } else {
    args.insert(args.end(),
                {"--warmup", std::to_string(s.warmup), "--trace-out", trace_dir});
  }
  for (const std::string& slow : s.slow_ranks) args.insert(args.end(), {"--slow-rank", slow});
  Result<LaunchResult> run = LaunchOrrery(launch, args);
  if (!run.ok()) return run.status().WithContext("execute");
  ORRERY_ASSIGN_OR_RETURN(Json report, ParseJson(run->stdout_text, "orrery execute's report"));
  ORRERY_RETURN_IF_ERROR(WriteFileAtomically(round_dir + "/execute.json", DumpJson(report)));
  if (!report.contains("iteration_time_s") || !report["iteration_time_s"].is_object() ||
      !report["iteration_time_s"].contains("median") ||
      !report["iteration_time_s"]["median"].is_number()) {
    return InternalError("orrery execute's report: iteration_time_s.median missing");
  }
  Measured measured;
  measured.median_s = report["iteration_time_s"]["median"].get<double>();
  if (!s.replan.has_value()) {
    measured.trace = trace_dir + "/execution_trace.json";
    return measured;
  }
  if (!report.contains("final_plan") || !report.contains("faults") ||
      !report["faults"].is_array()) {
    return InternalError("orrery execute --replan's report: final_plan or faults missing");
  }
  ORRERY_ASSIGN_OR_RETURN(
      workload::Plan final_plan,
      workload::ParsePlanJson(report["final_plan"], "orrery execute's final_plan"));
  if (!report["switches"].empty()) measured.final_plan = std::move(final_plan);
  for (const Json& f : report["faults"]) measured.faults.push_back(f.get<std::string>());
  return measured;
}

struct Round {
  int round = 0;
  workload::Plan plan;
  double predicted_s = 0;
  double measured_s = 0;
  bool executed = true;  // false: the previous round's measurement of the same plan
  std::string calibrated;
  // Under --replan: the plan the execution switched to and the faults the
  // search knew (before) and the run measured (after).
  std::optional<workload::Plan> final_plan;
  std::vector<std::string> faults_searched;
  std::vector<std::string> faults_measured;
  std::string round_dir;
  // The plan the round's measurement is of.
  const workload::Plan& measured_plan() const { return final_plan ? *final_plan : plan; }
};

double RelativeError(const Round& r) { return (r.predicted_s - r.measured_s) / r.measured_s; }

std::string RoundLine(const Round& r) {
  std::ostringstream out;
  out << "round " << r.round << ": " << search::PlanSummary(r.plan) << "\n"
      << "    predicted " << MillisecondsText(r.predicted_s) << ", measured " << MillisecondsText(r.measured_s)
      << (r.executed ? "" : " (round " + std::to_string(r.round - 1) + "'s run)")
      << ", error " << SignedPercent(RelativeError(r)) << "\n";
  if (!r.faults_searched.empty()) {
    out << "    searched with the slow devices measured before:";
    for (const std::string& f : r.faults_searched) out << " " << f;
    out << "\n";
  }
  if (!r.final_plan.has_value() && !r.faults_measured.empty()) {
    out << "    its run measured slow devices";
    for (const std::string& f : r.faults_measured) out << " " << f;
    out << " and kept its plan (" << r.round_dir << "/execute.json: the decisions)\n";
  }
  if (r.final_plan.has_value()) {
    out << "    re-planned at run time (slow devices";
    for (const std::string& f : r.faults_measured) out << " " << f;
    out << ") to " << search::PlanSummary(*r.final_plan) << ", measured "
        << MillisecondsText(r.measured_s) << "\n";
  }
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
  // What the executions measured under --replan, for the next searches.
  sim::Faults known;
  for (int r = 0; r < s.max_rounds; ++r) {
    const std::string round_dir = s.out + "/round" + std::to_string(r);
    ORRERY_RETURN_IF_ERROR(MakeDirectory(round_dir));
    Round round;
    round.round = r;
    round.calibrated = round_dir + "/calibrated.json";
    round.round_dir = round_dir;
    LogInfo("tune: round " + std::to_string(r) + ": calibrating from " +
            std::to_string(measurements.size()) + " measurements");
    ORRERY_RETURN_IF_ERROR(CalibrateInto(before, measurements, s.model_arg, round.calibrated));
    before = round.calibrated;
    ORRERY_ASSIGN_OR_RETURN(ClusterInput calibrated, LoadClusterInput(round.calibrated));
    LogInfo("tune: round " + std::to_string(r) + ": searching");
    for (const sim::SlowDevice& d : known.slow_devices) {
      round.faults_searched.push_back(sim::SlowDeviceText(d));
    }
    ORRERY_ASSIGN_OR_RETURN(Choice choice,
                            Search(s, calibrated.cluster, calibrated.calibration, known));
    round.plan = choice.plan;
    round.predicted_s = choice.predicted_s;
    const std::string plan_json = DumpJson(workload::PlanToJson(choice.plan));
    const std::string plan_file = round_dir + "/plan.json";
    ORRERY_RETURN_IF_ERROR(WriteFileAtomically(plan_file, plan_json));
    if (plan_json == previous_plan_json) {
      round.measured_s = rounds.back().measured_s;
      round.executed = false;
      round.final_plan = std::nullopt;
      rounds.push_back(round);
      *converged = true;
      break;
    }
    LogInfo("tune: round " + std::to_string(r) + ": executing " +
            search::PlanSummary(choice.plan) + " on " + std::to_string(s.ranks) + " ranks");
    ORRERY_ASSIGN_OR_RETURN(Measured measured,
                            Execute(s, plan_file, round_dir, round.calibrated));
    round.measured_s = measured.median_s;
    if (!measured.trace.empty()) measurements.push_back(measured.trace);
    previous_plan_json = plan_json;
    if (s.replan.has_value()) {
      round.faults_measured = measured.faults;
      known = sim::Faults{};
      for (const std::string& text : measured.faults) {
        ORRERY_ASSIGN_OR_RETURN(sim::SlowDevice slow, sim::ParseSlowDevice(text));
        known.slow_devices.push_back(slow);
      }
      if (measured.final_plan.has_value()) {
        // Converged when the next search chooses what this run ended with.
        previous_plan_json = DumpJson(workload::PlanToJson(*measured.final_plan));
        ORRERY_RETURN_IF_ERROR(
            WriteFileAtomically(round_dir + "/final_plan.json", previous_plan_json));
        round.final_plan = std::move(measured.final_plan);
      }
    }
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
  Result<ClusterInput> input = LoadClusterInput(cluster_name);
  if (!input.ok()) return input.status().WithContext("--cluster");
  Result<topology::ClusterSpec> cluster = ClusterForRanks(*input, s.ranks, "--cluster");
  if (!cluster.ok()) return cluster.status().WithContext("--ranks " + std::to_string(s.ranks));
  s.cluster = std::move(*cluster);
  if (vm.count("replan") > 0) {
    s.replan = vm["replan"].as<double>();
    if (!(*s.replan > 0) || !std::isfinite(*s.replan)) {
      return InvalidArgumentError("--replan: expected a margin > 0 (0.2 = 20%), got " +
                                  FixedText(*s.replan, 3));
    }
    s.replan_window = vm["replan-window"].as<int>();
    if (s.replan_window < 1 || s.iterations < 2 * s.replan_window) {
      return InvalidArgumentError(
          "--replan-window " + std::to_string(s.replan_window) +
          ": expected >= 1 and at most half of --iterations (" + std::to_string(s.iterations) +
          "): the first window of a run is its warm-up");
    }
  }
  if (vm.count("slow-rank") > 0) {
    for (const std::string& text : vm["slow-rank"].as<std::vector<std::string>>()) {
      Result<sim::SlowDevice> slow = sim::ParseSlowDevice(text);
      if (!slow.ok()) return slow.status().WithContext("--slow-rank");
      if (slow->rank >= s.ranks) {
        return InvalidArgumentError("--slow-rank " + text + ": rank " +
                                    std::to_string(slow->rank) + " is not one of the " +
                                    std::to_string(s.ranks) + " ranks");
      }
      s.slow_ranks.push_back(text);
    }
  }
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
  j["faults_searched"] = r.faults_searched;
  j["faults_measured"] = r.faults_measured;
  if (r.final_plan.has_value()) {
    Json replanned = Json::object();
    replanned["plan"] = workload::PlanToJson(*r.final_plan);
    replanned["summary"] = search::PlanSummary(*r.final_plan);
    replanned["faults_measured"] = r.faults_measured;
    j["replanned"] = replanned;
  }
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
       "directory for the profiles, calibrations, plans and traces (created)")
      ("replan", po::value<double>()->value_name("MARGIN"),
       "executions re-plan at run time (`orrery execute --replan`) when a window is more "
       "than MARGIN (0.2 = 20%) slower than predicted; they are not traced")
      ("replan-window", po::value<int>()->default_value(5)->value_name("K"),
       "steps per window of --replan")
      ("slow-rank", po::value<std::vector<std::string>>()->composing()->value_name("RANK:FACTOR"),
       "fault injection in every execution (`orrery execute --slow-rank`); repeatable");
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
    j["plan"] = workload::PlanToJson(answer->measured_plan());
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
        << MillisecondsText(answer->measured_s) << ")";
    if (converged && answer->round != last.round - 1) {
      out << "; the calibrated simulator still prefers round " << last.round - 1
          << "'s, measured slower";
    }
    out << "\n";
    out << "plan: " << answer_dir << (answer->final_plan ? "/final_plan.json (" : "/plan.json (")
        << search::PlanSummary(answer->measured_plan())
        << "), calibrated cluster: " << rounds->back().calibrated << "\n";
    io.out << out.str();
  }
  return kExitOk;
}

}  // namespace orrery::cli
