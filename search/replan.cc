// Re-planning from measurements (search/replan.h, docs/replanning.md).
#include "search/replan.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/text.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "costmodel/collective.h"
#include "costmodel/reshard_cost.h"
#include "search/search.h"
#include "search/space.h"
#include "sim/faults.h"
#include "topology/topology_graph.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::search {
namespace {

// A time for people: "12.3 us", "41.20 ms", "1.23 s", "12.5 min", "3.4 h".
std::string Time(double seconds) {
  const double a = std::fabs(seconds);
  if (a == 0) return "0 s";
  if (a < 1e-3) return FixedText(seconds * 1e6, 1) + " us";
  if (a < 1) return FixedText(seconds * 1e3, 2) + " ms";
  if (a < 120) return FixedText(seconds, 2) + " s";
  if (a < 2 * 3600) return FixedText(seconds / 60, 1) + " min";
  return FixedText(seconds / 3600, 1) + " h";
}

// A percentage without a needless decimal: "20", "12.5".
std::string Percent(double fraction) {
  const double p = fraction * 100;
  if (std::fabs(p - std::round(p)) < 1e-9) return FixedText(p, 0);
  return FixedText(p, 1);
}

// "0, 2-4, 7".
std::string RankList(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(ranks[i]);
    if (j > i) out += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return out;
}

std::string FaultsText(const sim::Faults& faults) {
  if (faults.empty()) return "none";
  std::string out;
  if (!faults.slow_devices.empty()) {
    out += "slow devices";
    for (const sim::SlowDevice& s : faults.slow_devices) out += " " + sim::SlowDeviceText(s);
  }
  if (!faults.degraded_links.empty()) {
    if (!out.empty()) out += "; ";
    out += "degraded links";
    for (const sim::DegradedLink& d : faults.degraded_links) {
      out += " " + sim::DegradedLinkText(d);
    }
  }
  return out;
}

// The plan with its stage partition written out, so that an even split
// given explicitly and one left implicit compare equal.
workload::Plan Canonical(const workload::Plan& plan) {
  workload::Plan p = plan;
  if (p.pp >= 1) p.stage_layers = p.StageLayerCounts();
  return p;
}

bool SamePlan(const workload::Plan& a, const workload::Plan& b) {
  return Canonical(a) == Canonical(b);
}

costmodel::StateBytes StateBytesOf(const workload::Plan& plan) {
  return plan.precision == topology::Precision::kFp32 ? costmodel::StateBytes::Fp32Adam()
                                                      : costmodel::StateBytes::MixedPrecisionAdam();
}

Status CheckMeasured(double measured_s) {
  if (!(measured_s > 0) || !std::isfinite(measured_s)) {
    return InvalidArgumentError("replan: measured step time: expected a finite number of seconds "
                                "> 0, got " + FixedText(measured_s, 6));
  }
  return Status::Ok();
}

// Whether the slow devices `now` differ from those `before`: another set
// of ranks, or a factor more than `threshold` times larger or smaller.
bool SlowDevicesChanged(const std::vector<sim::SlowDevice>& before,
                        const std::vector<sim::SlowDevice>& now, double threshold) {
  if (before.size() != now.size()) return true;
  for (const sim::SlowDevice& n : now) {
    const auto known = std::find_if(before.begin(), before.end(),
                                    [&](const sim::SlowDevice& b) { return b.rank == n.rank; });
    if (known == before.end()) return true;
    const double ratio = n.factor / known->factor;
    if (ratio > threshold || ratio < 1 / threshold) return true;
  }
  return false;
}

}  // namespace

struct Replanning::State {
  ReplanSettings settings;
  sim::Faults faults;  // the known faults: what `evaluator` simulates
  double scale = 1;
  std::shared_ptr<const Evaluator> evaluator;
  std::vector<LogEntry> log;
};

Result<Replanning> Replanning::Create(ReplanSettings settings) {
  if (!(settings.margin > 0) || !std::isfinite(settings.margin)) {
    return InvalidArgumentError("replan: margin: expected a finite number > 0 (0.2 = 20%), got " +
                                FixedText(settings.margin, 6));
  }
  if (!(settings.slow_threshold >= 1) || !std::isfinite(settings.slow_threshold)) {
    return InvalidArgumentError(
        "replan: slow_threshold: expected a finite number >= 1 (a probe factor below it is "
        "noise), got " + FixedText(settings.slow_threshold, 6));
  }
  if (!(settings.min_gain >= 0 && settings.min_gain < 1)) {
    return InvalidArgumentError(
        "replan: min_gain: expected a fraction in [0, 1) of the measured step, got " +
        FixedText(settings.min_gain, 6));
  }
  if (Result<std::unique_ptr<SearchAlgorithm>> algorithm =
          MakeSearchAlgorithm(settings.algorithm);
      !algorithm.ok()) {
    return InvalidArgumentError("replan: algorithm: " + std::string(algorithm.status().message()));
  }
  Result<topology::Topology> topology = topology::Topology::Build(settings.request.cluster);
  if (!topology.ok()) return topology.status().WithContext("replan: cluster");
  if (const Status s = sim::CheckFaults(settings.request.faults, *topology); !s.ok()) {
    return InvalidArgumentError("replan: faults: " + std::string(s.message()));
  }
  ORRERY_ASSIGN_OR_RETURN(Evaluator evaluator, Evaluator::Create(settings.request));
  Replanning out;
  out.state_ = std::make_shared<State>();
  out.state_->faults = settings.request.faults;
  out.state_->evaluator = std::make_shared<const Evaluator>(std::move(evaluator));
  out.state_->settings = std::move(settings);
  return out;
}

Result<double> Replanning::Predict(const workload::Plan& plan) const {
  ORRERY_ASSIGN_OR_RETURN(const Evaluation e, state_->evaluator->Simulate(plan));
  return state_->scale * e.iteration_time.ToSeconds();
}

Result<MarginCheck> Replanning::Check(int window, const workload::Plan& running,
                                      double measured_s) {
  ORRERY_RETURN_IF_ERROR(CheckMeasured(measured_s));
  MarginCheck check;
  check.window = window;
  check.measured_s = measured_s;
  ORRERY_ASSIGN_OR_RETURN(check.predicted_s, Predict(running));
  check.over = measured_s > check.predicted_s * (1 + state_->settings.margin);
  state_->log.push_back({check, std::nullopt});
  return check;
}

Result<ReplanDecision> Replanning::Decide(int window, const workload::Plan& running,
                                          double measured_s,
                                          const std::vector<double>& probe_seconds,
                                          int64_t steps_left) {
  const ReplanSettings& settings = state_->settings;
  const SearchRequest& base = settings.request;
  const int devices = base.cluster.TotalDevices();
  ORRERY_RETURN_IF_ERROR(CheckMeasured(measured_s));
  if (static_cast<int>(probe_seconds.size()) != devices) {
    return InvalidArgumentError("replan: probe: expected one time per device (" +
                                std::to_string(devices) + "), got " +
                                std::to_string(probe_seconds.size()));
  }
  for (size_t r = 0; r < probe_seconds.size(); ++r) {
    if (!(probe_seconds[r] > 0) || !std::isfinite(probe_seconds[r])) {
      return InvalidArgumentError("replan: probe: rank " + std::to_string(r) +
                                  ": expected a finite time > 0, got " +
                                  FixedText(probe_seconds[r], 6));
    }
  }
  if (steps_left < 0) {
    return InvalidArgumentError("replan: steps left: expected >= 0, got " +
                                std::to_string(steps_left));
  }

  ReplanDecision d;
  d.window = window;
  d.measured_s = measured_s;
  d.probe_seconds = probe_seconds;
  d.running = running;
  d.steps_left = steps_left;

  // The probe's factors; the slow devices replace those known, the
  // degraded links stay.
  const double fastest = *std::min_element(probe_seconds.begin(), probe_seconds.end());
  d.factors.resize(probe_seconds.size(), 1.0);
  d.faults.degraded_links = state_->faults.degraded_links;
  for (size_t r = 0; r < probe_seconds.size(); ++r) {
    // To 0.01: the probe is not more precise than that (ranks of one CPU
    // machine time the same GEMMs a few percent apart), and the fault
    // reads back as written ("1:2.67").
    const double factor = std::min(std::round(100 * probe_seconds[r] / fastest) / 100,
                                   sim::kMaxFaultFactor);
    if (factor < settings.slow_threshold || !(factor > 1)) continue;
    d.factors[r] = factor;
    d.faults.slow_devices.push_back({static_cast<int>(r), factor});
  }

  // Recalibration: the simulation under the new faults, scale 1.
  SearchRequest request = base;
  request.faults = d.faults;
  ORRERY_ASSIGN_OR_RETURN(Evaluator created, Evaluator::Create(request));
  auto evaluator = std::make_shared<const Evaluator>(std::move(created));
  Result<Evaluation> simulated_running = evaluator->Simulate(running);
  if (!simulated_running.ok()) {
    return simulated_running.status().WithContext("replan: the running plan " +
                                                  PlanSummary(running));
  }
  const double running_s = simulated_running->iteration_time.ToSeconds();
  if (!(running_s > 0)) {
    return FailedPreconditionError("replan: the running plan " + PlanSummary(running) +
                                   " simulates to no time: nothing to scale");
  }
  d.scale = measured_s / running_s;
  d.running_predicted_s = d.scale * running_s;

  const bool any_slow = !d.faults.slow_devices.empty();
  if (!SlowDevicesChanged(state_->faults.slow_devices, d.faults.slow_devices,
                          settings.slow_threshold)) {
    // The running plan was chosen, or kept, for these devices; what the
    // probe does not explain is in the scale, which moves every plan alike.
    d.best = running;
    d.best_predicted_s = d.running_predicted_s;
    d.reason = any_slow ? "keep: the slow devices are those known (" +
                              FaultsText(state_->faults) + " before, " + FaultsText(d.faults) +
                              " now, within " + FixedText(settings.slow_threshold, 2) +
                              "×); the scale absorbs the difference"
                        : "keep: no slow device found; the scale absorbs the difference";
    Commit(d, std::move(evaluator));
    return d;
  }

  // The search under the new faults; its best plan the executor runs.
  ORRERY_ASSIGN_OR_RETURN(SearchResult found, RunSearch(request, settings.algorithm));
  std::string first_rejection;
  for (const Candidate& c : found.plans) {
    if (settings.executable) {
      const Status runs = settings.executable(c.plan);
      if (!runs.ok()) {
        if (first_rejection.empty()) {
          first_rejection = PlanSummary(c.plan) + ": " + std::string(runs.message());
          if (const size_t nl = first_rejection.find('\n'); nl != std::string::npos) {
            first_rejection.resize(nl);
          }
        }
        continue;
      }
    }
    d.best = c.plan;
    double best_s = 0;
    if (c.simulated.has_value()) {
      best_s = c.simulated->iteration_time.ToSeconds();
    } else {
      ORRERY_ASSIGN_OR_RETURN(const Evaluation e, evaluator->Simulate(c.plan));
      best_s = e.iteration_time.ToSeconds();
    }
    d.best_predicted_s = d.scale * best_s;
    break;
  }

  if (!d.best.has_value()) {
    d.reason = found.plans.empty()
                   ? "keep: the search found no plan that fits the budget"
                   : "keep: none of the search's " + std::to_string(found.plans.size()) +
                         " best plans can be run (" + first_rejection + ")";
  } else if (SamePlan(*d.best, running)) {
    d.best = running;
    d.best_predicted_s = d.running_predicted_s;
    d.reason = any_slow ? "keep: the search's best is the running plan"
                        : "keep: no slow device found; the scale absorbs the difference";
  } else {
    d.gain_s = (measured_s - d.best_predicted_s) * static_cast<double>(steps_left);
    costmodel::StateLayoutOptions options;
    options.bytes = StateBytesOf(*d.best);
    const int per_node = base.cluster.PrimaryNodeType().devices_per_node;
    const std::string what =
        "replan: the switch from " + PlanSummary(running) + " to " + PlanSummary(*d.best);
    Result<costmodel::ReshardTraffic> traffic = costmodel::ComputeReshardTraffic(
        base.model, running, devices, *d.best, devices, per_node, options);
    if (!traffic.ok()) return traffic.status().WithContext(what);
    // The calibration's fitted send/recv latency where it has one.
    Result<costmodel::CollectiveModel> collectives =
        costmodel::CalibratedCollectiveModel(base.cluster, base.calibration.get());
    if (!collectives.ok()) return collectives.status().WithContext(what);
    Result<costmodel::SwitchCost> cost =
        costmodel::EstimateSwitchCost(*traffic, *collectives, std::nullopt);
    if (!cost.ok()) return cost.status().WithContext(what);
    d.switch_cost_s = cost->in_memory.ToSeconds();
    const std::string numbers = "the gain over the " + std::to_string(steps_left) +
                                (steps_left == 1 ? " step" : " steps") + " left, " +
                                Time(d.gain_s);
    const double step_gain = 1 - d.best_predicted_s / measured_s;
    if (!(d.gain_s > d.switch_cost_s)) {
      d.reason = "keep: " + numbers + ", does not exceed the switch's " + Time(d.switch_cost_s);
    } else if (step_gain < settings.min_gain) {
      d.reason = "keep: the best plan's step, " + Time(d.best_predicted_s) + ", is " +
                 Percent(step_gain) + "% below the measured " + Time(measured_s) +
                 ", less than min_gain " + Percent(settings.min_gain) +
                 "%: within the model's error";
    } else {
      d.switch_plan = true;
      d.reason = "switch: " + numbers + ", exceeds the switch's " + Time(d.switch_cost_s);
    }
  }
  Commit(d, std::move(evaluator));
  return d;
}

void Replanning::Commit(const ReplanDecision& d, std::shared_ptr<const Evaluator> evaluator) {
  // Every later prediction sees the new faults and scale.
  state_->faults = d.faults;
  state_->scale = d.scale;
  state_->evaluator = std::move(evaluator);
  state_->log.push_back({std::nullopt, d});
}

const sim::Faults& Replanning::faults() const { return state_->faults; }
double Replanning::scale() const { return state_->scale; }
const std::vector<Replanning::LogEntry>& Replanning::log() const { return state_->log; }

std::string MarginCheckText(const MarginCheck& check, double margin) {
  std::string out = "window " + std::to_string(check.window) + ": measured " +
                    Time(check.measured_s) + ", predicted " + Time(check.predicted_s);
  if (check.predicted_s > 0) {
    const double excess = check.measured_s / check.predicted_s - 1;
    out += " (" + std::string(excess >= 0 ? "+" : "") + FixedText(100 * excess, 1) + "%, margin " +
           Percent(margin) + "%)";
  } else {
    out += " (margin " + Percent(margin) + "%)";
  }
  out += check.over ? ": over" : ": within";
  return out;
}

std::string ReplanDecisionText(const ReplanDecision& d) {
  std::ostringstream out;
  out << "window " << d.window << ": replanning at a measured " << Time(d.measured_s)
      << " per step\n";
  // The probe: the slow ranks with their factors, the others at 1.
  std::vector<int> healthy;
  std::string slow;
  int slow_count = 0;
  for (size_t r = 0; r < d.factors.size(); ++r) {
    if (d.factors[r] > 1) {
      slow += (slow.empty() ? "" : ", ") + std::to_string(r) + " " + FixedText(d.factors[r], 2) +
              "×";
      ++slow_count;
    } else {
      healthy.push_back(static_cast<int>(r));
    }
  }
  if (!d.probe_seconds.empty()) {
    const auto [lo, hi] = std::minmax_element(d.probe_seconds.begin(), d.probe_seconds.end());
    const std::string range = "probes " + Time(*lo) + " to " + Time(*hi);
    if (slow_count > 0) {
      out << "  probe: " << (slow_count == 1 ? "rank " : "ranks ") << slow
          << " slower than the fastest";
      if (!healthy.empty()) {
        out << " (" << (healthy.size() == 1 ? "rank " : "ranks ") << RankList(healthy)
            << " 1.00)";
      }
      out << "; " << range << "\n";
    } else {
      out << "  probe: no slow rank, every factor 1.00 within the threshold; " << range << "\n";
    }
  }
  out << "  faults: " << FaultsText(d.faults) << "\n";
  out << "  scale: " << FixedText(d.scale, 3)
      << " (measured / simulated running plan under these faults)\n";
  out << "  running: " << PlanSummary(d.running) << ", predicted " << Time(d.running_predicted_s)
      << "\n";
  if (d.best.has_value()) {
    out << "  best: " << PlanSummary(*d.best) << ", predicted " << Time(d.best_predicted_s)
        << "\n";
  } else {
    out << "  best: none the executor can run\n";
  }
  out << "  steps left: " << d.steps_left << "\n";
  out << "  gain: " << Time(d.gain_s) << "\n";
  out << "  switch cost: " << Time(d.switch_cost_s) << " (in memory)\n";
  out << "  decision: " << d.reason << "\n";
  return out.str();
}

Json MarginCheckToJson(const MarginCheck& check) {
  Json j = Json::object();
  j["window"] = check.window;
  j["measured_s"] = check.measured_s;
  j["predicted_s"] = check.predicted_s;
  j["over"] = check.over;
  return j;
}

Json ReplanDecisionToJson(const ReplanDecision& d) {
  Json j = Json::object();
  j["window"] = d.window;
  j["measured_s"] = d.measured_s;
  j["probe_seconds"] = d.probe_seconds;
  j["factors"] = d.factors;
  Json slow = Json::array();
  for (const sim::SlowDevice& s : d.faults.slow_devices) slow.push_back(sim::SlowDeviceText(s));
  Json links = Json::array();
  for (const sim::DegradedLink& l : d.faults.degraded_links) {
    links.push_back(sim::DegradedLinkText(l));
  }
  j["faults"] = {{"slow_devices", std::move(slow)}, {"degraded_links", std::move(links)}};
  j["scale"] = d.scale;
  j["running_summary"] = PlanSummary(d.running);
  j["running"] = workload::PlanToJson(d.running);
  j["running_predicted_s"] = d.running_predicted_s;
  j["best_summary"] = d.best.has_value() ? Json(PlanSummary(*d.best)) : Json(nullptr);
  j["best"] = d.best.has_value() ? workload::PlanToJson(*d.best) : Json(nullptr);
  j["best_predicted_s"] = d.best.has_value() ? Json(d.best_predicted_s) : Json(nullptr);
  j["steps_left"] = d.steps_left;
  j["gain_s"] = d.gain_s;
  j["switch_cost_s"] = d.switch_cost_s;
  j["switch_plan"] = d.switch_plan;
  j["reason"] = d.reason;
  return j;
}

}  // namespace orrery::search
