#include "cli/replan.h"

#include <algorithm>
#include <sstream>
#include <utility>
#include <vector>

#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/statistics.h"
#include "core/text.h"
#include "costmodel/reshard_cost.h"
#include "exec/replan_runner.h"
#include "search/replan.h"
#include "search/space.h"
#include "sim/faults.h"
#include "workload/plan_json.h"

namespace orrery::cli {

namespace {

constexpr std::string_view kCommand = "execute";


// The Replanner the executor calls on rank 0: search::Replanning's
// answers, each logged on stderr as it is made.
class LoggingReplanner : public exec::Replanner {
 public:
  LoggingReplanner(search::Replanning* replanning, double margin)
      : replanning_(replanning), margin_(margin) {}

  Result<bool> OverMargin(const exec::ReplanWindow& window) override {
    ORRERY_ASSIGN_OR_RETURN(
        search::MarginCheck check,
        replanning_->Check(window.index, window.plan, window.median_step_seconds));
    LogInfo("replan: " + search::MarginCheckText(check, margin_));
    return check.over;
  }

  Result<workload::Plan> Decide(const exec::ReplanWindow& window,
                                const std::vector<double>& probe_seconds) override {
    LogInfo("replan: window " + std::to_string(window.index) +
            ": probed every rank; recalibrating and searching");
    ORRERY_ASSIGN_OR_RETURN(
        search::ReplanDecision decision,
        replanning_->Decide(window.index, window.plan, window.median_step_seconds,
                            probe_seconds, window.steps_left));
    LogInfo("replan: " + search::ReplanDecisionText(decision));
    return decision.switch_plan ? *decision.best : window.plan;
  }

 private:
  search::Replanning* replanning_;
  double margin_;
};

// The decision that led to switch `s` (made after the same window).
const search::ReplanDecision* DecisionOfWindow(const search::Replanning& replanning,
                                               int window) {
  for (const search::Replanning::LogEntry& e : replanning.log()) {
    if (e.decision.has_value() && e.decision->window == window) return &*e.decision;
  }
  return nullptr;
}

const search::MarginCheck* CheckOfWindow(const search::Replanning& replanning, int window) {
  for (const search::Replanning::LogEntry& e : replanning.log()) {
    if (e.check.has_value() && e.check->window == window) return &*e.check;
  }
  return nullptr;
}

std::string SignedPercent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%+.1f%%", 100.0 * fraction);
  return buf;
}

std::vector<std::string> FaultTexts(const sim::Faults& faults) {
  std::vector<std::string> out;
  for (const sim::SlowDevice& s : faults.slow_devices) out.push_back(sim::SlowDeviceText(s));
  for (const sim::DegradedLink& d : faults.degraded_links) {
    out.push_back(sim::DegradedLinkText(d));
  }
  return out;
}

// The steps run under the last plan, after its first (warm-up) window when
// it had more than one: the run's measurement of the plan it ends with.
std::vector<double> FinalPlanSteps(const exec::ReplanRunResult& r) {
  std::vector<double> all;
  std::vector<double> judged;
  const workload::Plan& last = r.windows.back().plan;
  for (size_t i = r.windows.size(); i-- > 0;) {
    if (!(r.windows[i].plan == last)) break;
    const std::vector<double>& s = r.windows[i].step_seconds;
    all.insert(all.end(), s.begin(), s.end());
    if (r.judged[i]) judged.insert(judged.end(), s.begin(), s.end());
  }
  return judged.empty() ? all : judged;
}

Json ReportJson(const ReplanCommand& c, const exec::ReplanRunResult& r,
                const search::Replanning& replanning, int world_size) {
  Json j = Json::object();
  j["model"] = c.model.name;
  j["backend"] = std::string(exec::BackendKindName(c.options.backend));
  j["device"] = r.device;
  j["world_size"] = world_size;
  j["cluster"] = c.cluster.source;
  j["calibrated"] = c.cluster.calibration != nullptr;
  j["margin"] = c.margin;
  j["window"] = c.window;
  j["steps"] = c.steps;
  j["plan"] = workload::PlanToJson(c.plan);
  j["final_plan"] = workload::PlanToJson(r.windows.back().plan);
  Json windows = Json::array();
  for (size_t i = 0; i < r.windows.size(); ++i) {
    const exec::ReplanWindow& w = r.windows[i];
    Json e = Json::object();
    e["index"] = w.index;
    e["first_step"] = w.first_step;
    e["steps"] = static_cast<int64_t>(w.step_seconds.size());
    e["plan"] = search::PlanSummary(w.plan);
    e["median_step_s"] = w.median_step_seconds;
    e["step_s"] = w.step_seconds;
    e["judged"] = static_cast<bool>(r.judged[i]);
    e["over_margin"] = static_cast<bool>(r.over_margin[i]);
    if (const search::MarginCheck* check = CheckOfWindow(replanning, w.index)) {
      e["check"] = search::MarginCheckToJson(*check);
    }
    windows.push_back(e);
  }
  j["windows"] = windows;
  Json decisions = Json::array();
  for (const search::Replanning::LogEntry& e : replanning.log()) {
    if (e.decision.has_value()) decisions.push_back(search::ReplanDecisionToJson(*e.decision));
  }
  j["decisions"] = decisions;
  Json switches = Json::array();
  for (const exec::SwitchRecord& s : r.switches) {
    Json e = Json::object();
    e["after_window"] = s.from_phase;
    e["after_step"] = s.after_step;
    e["bytes_sent"] = s.bytes_sent;
    e["bytes_received"] = s.bytes_received;
    e["messages"] = s.messages;
    e["exchange_s"] = s.exchange_seconds;
    e["total_s"] = s.total_seconds;
    if (const search::ReplanDecision* d = DecisionOfWindow(replanning, s.from_phase)) {
      e["predicted_s"] = d->switch_cost_s;
    }
    e["cost_model_bytes_agree"] = s.PredictionAgrees();
    switches.push_back(e);
  }
  j["switches"] = switches;
  j["faults"] = FaultTexts(replanning.faults());
  j["scale"] = replanning.scale();
  // What `orrery tune` reads: the plan the run ends with, measured.
  const std::vector<double> final_steps = FinalPlanSteps(r);
  Json times = Json::object();
  times["median"] = Median(final_steps);
  times["samples"] = final_steps;
  j["iteration_time_s"] = times;
  j["losses"] = r.losses;
  j["grad_norms"] = r.grad_norms;
  Json slow = Json::array();
  for (const auto& [rank, factor] : c.options.slow_ranks) {
    slow.push_back({{"rank", rank}, {"factor", factor}});
  }
  j["slow_ranks"] = slow;
  return j;
}

std::string ReportText(const ReplanCommand& c, const exec::ReplanRunResult& r,
                       const search::Replanning& replanning, int world_size) {
  std::ostringstream out;
  out << "Executed " << c.model.name << " on " << world_size << " rank"
      << (world_size == 1 ? "" : "s") << " for " << c.steps << " steps, re-planning: margin "
      << FixedText(100 * c.margin, 0) << "%, windows of " << c.window << " steps\n";
  out << "  backend " << exec::BackendKindName(c.options.backend) << " (" << r.device
      << "), fp32, AdamW lr " << c.options.adam.learning_rate << "\n";
  out << "  predictions: " << c.cluster.cluster.name << " ("
      << (c.cluster.calibration ? "calibrated, " : "not calibrated, ") << c.cluster.source
      << "), event-simulated\n";
  if (!c.options.slow_ranks.empty()) {
    out << "  injected (--slow-rank):";
    bool first = true;
    for (const auto& [rank, factor] : c.options.slow_ranks) {
      out << (first ? " " : ", ") << "rank " << rank << " computes "
          << sim::FaultFactorText(factor) << "× slower";
      first = false;
    }
    out << "\n";
  }
  out << "\n";

  std::vector<std::vector<std::string>> rows = {
      {"window", "steps", "plan", "median step", "predicted", "check"}};
  for (size_t i = 0; i < r.windows.size(); ++i) {
    const exec::ReplanWindow& w = r.windows[i];
    const int64_t last = w.first_step + static_cast<int64_t>(w.step_seconds.size()) - 1;
    std::string predicted = "-";
    std::string verdict = "warm-up (not judged)";
    if (const search::MarginCheck* check = CheckOfWindow(replanning, w.index)) {
      predicted = MillisecondsText(check->predicted_s);
      verdict = std::string(check->over ? "over" : "within") + " (" +
                SignedPercent(check->measured_s / check->predicted_s - 1) + ")";
      if (check->over && w.steps_left == 0) verdict += ", no step left to re-plan";
    }
    rows.push_back({std::to_string(w.index),
                    std::to_string(w.first_step) + "-" + std::to_string(last),
                    search::PlanSummary(w.plan), MillisecondsText(w.median_step_seconds), predicted, verdict});
  }
  out << FormatColumns(rows, 2);

  bool any_decision = false;
  for (const search::Replanning::LogEntry& e : replanning.log()) {
    if (!e.decision.has_value()) continue;
    any_decision = true;
    // ReplanDecisionText's lines, under the table's indent.
    std::istringstream lines(search::ReplanDecisionText(*e.decision));
    out << "\n";
    for (std::string line; std::getline(lines, line);) out << "  " << line << "\n";
  }
  if (!any_decision) {
    out << "\n  no window was over the margin: the plan was kept throughout\n";
  }
  for (const exec::SwitchRecord& s : r.switches) {
    int64_t sent = 0;
    for (const int64_t b : s.bytes_sent) sent += b;
    out << "\n  switch after step " << s.after_step << ": " << FormatBytes(Bytes(sent))
        << " sent in " << s.messages << " message" << (s.messages == 1 ? "" : "s") << ", "
        << MillisecondsText(s.exchange_seconds) << " exchange, " << MillisecondsText(s.total_seconds)
        << " with the new plan's start";
    if (const search::ReplanDecision* d = DecisionOfWindow(replanning, s.from_phase)) {
      out << " (the cost model's exchange: " << MillisecondsText(d->switch_cost_s) << ")";
    }
    out << "; cost model bytes: " << (s.PredictionAgrees() ? "the same" : "differ") << "\n";
  }
  const std::vector<double> final_steps = FinalPlanSteps(r);
  out << "\n  final plan " << search::PlanSummary(r.windows.back().plan) << ": median step "
      << MillisecondsText(Median(final_steps)) << " over its last " << final_steps.size() << " steps\n";
  out << "  loss " << FixedText(r.losses.front(), 6) << " at step 0, "
      << FixedText(r.losses.back(), 6) << " at step " << r.losses.size() - 1
      << " (every step's in the JSON report)\n";
  return out.str();
}

}  // namespace

search::SearchRequest ExecutorSearchRequest(
    const workload::ModelSpec& model, const topology::ClusterSpec& cluster,
    std::shared_ptr<const costmodel::Calibration> calibration, int global_batch,
    int sequence_length, std::optional<Bytes> memory_budget) {
  search::SearchRequest request;
  request.model = model;
  request.cluster = cluster;
  request.global_batch_size = global_batch;
  request.sequence_length = sequence_length > 0 ? sequence_length : model.default_sequence_length;
  request.memory_budget = memory_budget;
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
  return request;
}

exec::SwitchTrafficModel ExecutorSwitchTraffic(const workload::ModelSpec& model,
                                               const exec::ExecuteOptions& options,
                                               int devices_per_node) {
  return [model, bucket_parameters = options.bucket_parameters, devices_per_node](
             const workload::Plan& from, const workload::Plan& to,
             int ranks) -> Result<exec::PredictedTraffic> {
    costmodel::StateLayoutOptions layout;
    layout.bucket_parameters = bucket_parameters;
    layout.bytes = costmodel::StateBytes::Fp32Adam();
    ORRERY_ASSIGN_OR_RETURN(costmodel::ReshardTraffic traffic,
                            costmodel::ComputeReshardTraffic(model, from, ranks, to, ranks,
                                                             devices_per_node, layout));
    return exec::PredictedTraffic{traffic.bytes_sent, traffic.bytes_received};
  };
}

Result<topology::ClusterSpec> ClusterForRanks(const ClusterInput& input, int ranks,
                                              const std::string& flag) {
  topology::ClusterSpec cluster = input.cluster;
  if (cluster.TotalDevices() == ranks) return cluster;
  if (cluster.node_types.size() == 1 && cluster.node_types[0].count == 1 &&
      cluster.node_types[0].nics.empty() && ranks < cluster.node_types[0].devices_per_node) {
    cluster.node_types[0].devices_per_node = ranks;
    cluster.description += (cluster.description.empty() ? "" : "; ") + std::string("narrowed to ") +
                           std::to_string(ranks) + " devices";
    return cluster;
  }
  return InvalidArgumentError(flag + " " + input.source + ": the cluster " + cluster.name +
                              " has " + std::to_string(cluster.TotalDevices()) +
                              " devices; give a cluster of " + std::to_string(ranks) +
                              " devices (one rank per device)");
}

int RunExecuteReplan(exec::MpiWorld& world, const ReplanCommand& c, CommandIo& io) {
  const bool root = world.rank() == 0;
  // The decisions are rank 0's: it alone builds the evaluator and searches.
  std::optional<search::Replanning> replanning;
  Status ready = Status::Ok();
  if (root) {
    search::ReplanSettings settings;
    settings.request = ExecutorSearchRequest(c.model, c.cluster.cluster, c.cluster.calibration,
                                             c.plan.global_batch_size, c.plan.sequence_length,
                                             std::nullopt);
    settings.algorithm = c.algorithm;
    settings.margin = c.margin;
    const workload::ModelSpec& model = c.model;
    const int ranks = world.size();
    settings.executable = [&model, ranks](const workload::Plan& plan) {
      return exec::CheckExecutable(model, plan, ranks);
    };
    Result<search::Replanning> created = search::Replanning::Create(std::move(settings));
    if (created.ok()) {
      replanning = std::move(*created);
    } else {
      ready = created.status().WithContext("--replan");
    }
  }
  ready = world.AgreeOnStatus(ready);
  if (!ready.ok()) return root ? ReportError(kCommand, ready, io) : kExitBadInput;

  exec::ReplanRunOptions run;
  run.steps = c.steps;
  run.window = c.window;
  std::optional<LoggingReplanner> replanner;
  if (root) replanner.emplace(&*replanning, c.margin);

  const exec::SwitchTrafficModel traffic_model =
      ExecutorSwitchTraffic(c.model, c.options, world.local_size());
  if (root) {
    LogInfo("replan: " + std::to_string(c.steps) + " steps of " + search::PlanSummary(c.plan) +
            " in windows of " + std::to_string(c.window) + ", margin " +
            FixedText(100 * c.margin, 0) + "%");
  }
  Result<exec::ReplanRunResult> result =
      exec::RunWithReplanning(world, c.model, c.plan, c.options, run,
                              root ? &*replanner : nullptr, traffic_model);
  if (!result.ok()) return root ? ReportError(kCommand, result.status(), io) : kExitBadInput;
  if (!root) return kExitOk;

  Json j = ReportJson(c, *result, *replanning, world.size());
  if (!c.out_path.empty()) {
    Status written = WriteFileAtomically(c.out_path, DumpJson(j));
    if (!written.ok()) return ReportError(kCommand, written.WithContext("--out"), io);
  }
  if (c.format == OutputFormat::kJson) {
    io.out << DumpJson(j);
  } else {
    io.out << ReportText(c, *result, *replanning, world.size());
  }
  return kExitOk;
}

}  // namespace orrery::cli
