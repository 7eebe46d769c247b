// Capacity planning of a training in phases (search/capacity_phases.h,
// docs/capacity.md "Phases").
#include "search/capacity_phases.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/text.h"
#include "search/capacity.h"
#include "search/phases.h"
#include "search/search.h"
#include "search/space.h"
#include "topology/cluster_spec.h"
#include "workload/phases.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::search {
namespace {

constexpr double kSecondsPerDay = 86400.0;
constexpr double kSecondsPerHour = 3600.0;




std::string CsvOptional(const std::optional<double>& v) {
  return v.has_value() ? ShortNumberText(*v) : "";
}

// "ramp: tp1 pp1 dp8 mb2; main: ...": the chosen plan of every phase.
std::string PlansLine(const PhasedCapacityRow& r) {
  std::string out;
  for (const PhasedCapacityRow::Phase& p : r.phases) {
    if (!out.empty()) out += "; ";
    out += p.name + ": " + p.plan;
  }
  return out;
}

}  // namespace

Status CheckPhasesForCapacity(const workload::PhaseSchedule& schedule) {
  for (size_t p = 0; p < schedule.phases.size(); ++p) {
    const workload::TrainingPhase& phase = schedule.phases[p];
    if (phase.cluster.empty()) continue;
    return InvalidArgumentError(
        (schedule.source.empty() ? std::string("phases") : schedule.source) + ": phases[" +
        std::to_string(p) + "] (" + phase.name + "): field 'cluster': with `orrery capacity` "
        "every phase runs on the sweep point's cluster; a phase may set 'nodes' (that many "
        "nodes of the point's cluster) but not its own cluster ('" + phase.cluster + "')");
  }
  return Status::Ok();
}

std::optional<double> PhasedCapacityRow::saving_percent() const {
  if (!found || !best_single_seconds.has_value() || !(*best_single_seconds > 0)) {
    return std::nullopt;
  }
  return 100.0 * (*best_single_seconds - total_seconds) / *best_single_seconds;
}

Result<PhasedCapacityRow> RunPhasedCapacityPoint(const PhasedCapacitySettings& settings,
                                                 const Sweep& sweep, const CapacityPoint& point,
                                                 const topology::ClusterSpec& cluster,
                                                 const std::string& label,
                                                 const ProgressFn& progress) {
  ORRERY_RETURN_IF_ERROR(CheckPhasesForCapacity(settings.schedule));
  const auto start = std::chrono::steady_clock::now();
  const SweepEntry& entry = sweep.entries[static_cast<size_t>(point.entry)];
  PhasedCapacityRow row;
  row.name = entry.name;
  row.label = label;
  row.device = cluster.PrimaryNodeType().device.name;
  row.devices = cluster.TotalDevices();
  row.nodes = cluster.TotalNodes();
  row.knobs = point.knobs;
  row.price_per_device_hour = entry.price_per_device_hour;
  row.simulated = settings.simulate;

  PhasePlanningRequest request;
  request.model = settings.model;
  // Phases without "nodes" run on it, with "nodes" on it WithNodes (the
  // default resolution of search/phases.h).
  request.cluster = cluster;
  request.schedule = settings.schedule;
  request.algorithm = settings.algorithm;
  request.base.model = settings.model;
  request.base.cluster = cluster;
  request.base.precision = topology::Precision::kBf16;
  request.base.top_k = settings.top_k;
  request.base.time_limit_s = settings.time_limit_s;
  request.base.rescore_with_simulator = settings.simulate;
  Result<PhasePlan> planned = PlanPhases(request, progress);
  row.search_time_s = SecondsSince(start);
  if (!planned.ok()) {
    if (planned.status().code() == StatusCode::kFailedPrecondition) {
      row.why_not = std::string(planned.status().message());
      return row;
    }
    return planned.status();
  }
  const PhasePlan& plan = *planned;
  row.found = true;
  row.total_seconds = plan.total_seconds;
  row.switch_seconds = plan.switch_seconds;
  row.switches = plan.switches;
  row.best_single_seconds = plan.best_single_seconds;
  if (plan.best_single.has_value()) {
    row.best_single_plan = PlanSummary(plan.candidates[static_cast<size_t>(*plan.best_single)]);
  }
  double device_seconds = 0;
  for (size_t p = 0; p < plan.phases.size(); ++p) {
    const PlannedPhase& pp = plan.phases[p];
    const workload::TrainingPhase& phase = settings.schedule.phases[p];
    const workload::Plan& chosen = plan.candidates[static_cast<size_t>(pp.chosen)];
    PhasedCapacityRow::Phase out;
    out.name = pp.name;
    out.devices = pp.devices;
    out.steps = pp.steps;
    out.plan = PlanSummary(chosen);
    out.plan_json = workload::PlanToJson(
        workload::RetargetPlan(chosen, phase.global_batch_size, phase.sequence_length));
    out.iteration_s = pp.iteration_time.ToSeconds();
    out.seconds = pp.seconds;
    out.note = pp.note;
    row.phase_seconds += pp.seconds;
    device_seconds += pp.seconds * static_cast<double>(pp.devices);
    if (pp.switch_in.has_value()) {
      const double s = pp.switch_in->time().ToSeconds();
      out.switch_in_seconds = s;
      out.switch_via = pp.switch_in->via_checkpoint ? "checkpoint" : "memory";
      const int wider = p > 0 ? std::max(pp.devices, plan.phases[p - 1].devices) : pp.devices;
      device_seconds += s * static_cast<double>(wider);
    }
    row.phases.push_back(std::move(out));
  }
  row.device_hours = device_seconds / kSecondsPerHour;
  row.cost = row.device_hours * row.price_per_device_hour;
  return row;
}

std::string_view PhasedCapacityCsvHeader() {
  return "name,device,devices,nodes,nic_gbps,oversubscription,memory_gib,"
         "price_per_device_hour,days,phase_days,switches,switch_s,one_plan_days,saving_pct,"
         "device_hours,cost,plans,one_plan";
}

std::string PhasedRowsToCsv(const std::vector<PhasedCapacityRow>& rows) {
  std::ostringstream out;
  out << PhasedCapacityCsvHeader() << "\n";
  for (const PhasedCapacityRow& r : rows) {
    auto num = [&](double v) { return r.found ? ShortNumberText(v) : std::string(); };
    out << CsvField(r.name, false) << "," << CsvField(r.device, false) << "," << r.devices << ","
        << r.nodes << "," << ShortNumberText(r.knobs.nic_gbps) << "," << ShortNumberText(r.knobs.oversubscription)
        << "," << ShortNumberText(r.knobs.memory_gib) << "," << ShortNumberText(r.price_per_device_hour) << ","
        << num(r.days()) << "," << num(r.phase_seconds / kSecondsPerDay) << ","
        << (r.found ? std::to_string(r.switches) : "") << "," << num(r.switch_seconds) << ","
        << CsvOptional(r.found && r.best_single_seconds.has_value()
                           ? std::optional<double>(*r.best_single_seconds / kSecondsPerDay)
                           : std::nullopt)
        << "," << CsvOptional(r.saving_percent()) << "," << num(r.device_hours) << ","
        << num(r.cost) << "," << CsvField(PlansLine(r), true) << ","
        << CsvField(r.best_single_plan, true) << "\n";
  }
  return out.str();
}

Json PhasedRowsToJson(const PhasedCapacitySettings& settings,
                      const std::vector<PhasedCapacityRow>& rows) {
  auto opt = [](const std::optional<double>& v) { return v.has_value() ? Json(*v) : Json(nullptr); };
  Json j = Json::object();
  j["model"] = settings.model.name;
  j["phases_file"] = settings.schedule.source;
  j["algorithm"] = settings.algorithm;
  j["scale"] = settings.simulate ? "simulated" : "analytical";
  j["candidates_per_phase"] = settings.top_k;
  Json schedule = Json::array();
  double tokens = 0;
  for (const workload::TrainingPhase& p : settings.schedule.phases) {
    Json e = Json::object();
    e["name"] = p.name;
    e["tokens"] = p.Tokens();
    e["steps"] = p.Steps();
    e["global_batch"] = p.global_batch_size;
    e["seq_len"] = p.sequence_length;
    e["nodes"] = p.nodes.has_value() ? Json(*p.nodes) : Json(nullptr);
    tokens += p.Tokens();
    schedule.push_back(std::move(e));
  }
  j["tokens"] = tokens;
  j["phases"] = std::move(schedule);
  if (settings.schedule.checkpoint.has_value()) {
    j["checkpoint"] = {{"write_gb_per_s", settings.schedule.checkpoint->write_gb_per_s},
                       {"read_gb_per_s", settings.schedule.checkpoint->read_gb_per_s}};
  } else {
    j["checkpoint"] = nullptr;
  }
  Json points = Json::array();
  for (const PhasedCapacityRow& r : rows) {
    auto num = [&](double v) { return r.found ? Json(v) : Json(nullptr); };
    Json p = Json::object();
    p["name"] = r.name;
    p["label"] = r.label;
    p["device"] = r.device;
    p["devices"] = r.devices;
    p["nodes"] = r.nodes;
    p["nic_gbps"] = r.knobs.nic_gbps;
    p["oversubscription"] = r.knobs.oversubscription;
    p["memory_gib"] = r.knobs.memory_gib;
    p["price_per_device_hour"] = r.price_per_device_hour;
    p["found"] = r.found;
    p["why_not"] = r.found ? Json(nullptr) : Json(r.why_not);
    p["simulated"] = r.simulated;
    p["total_seconds"] = num(r.total_seconds);
    p["days"] = num(r.days());
    p["phase_seconds"] = num(r.phase_seconds);
    p["switches"] = r.found ? Json(r.switches) : Json(nullptr);
    p["switch_seconds"] = num(r.switch_seconds);
    p["one_plan_seconds"] = r.found ? opt(r.best_single_seconds) : Json(nullptr);
    p["one_plan_days"] = r.found && r.best_single_seconds.has_value()
                             ? Json(*r.best_single_seconds / kSecondsPerDay)
                             : Json(nullptr);
    p["one_plan"] = r.best_single_plan.empty() ? Json(nullptr) : Json(r.best_single_plan);
    p["saving_percent"] = opt(r.saving_percent());
    p["device_hours"] = num(r.device_hours);
    p["cost"] = num(r.cost);
    p["search_time_s"] = r.search_time_s;
    Json phases = Json::array();
    for (const PhasedCapacityRow::Phase& ph : r.phases) {
      Json e = Json::object();
      e["name"] = ph.name;
      e["devices"] = ph.devices;
      e["steps"] = ph.steps;
      e["summary"] = ph.plan;
      e["iteration_time_s"] = ph.iteration_s;
      e["seconds"] = ph.seconds;
      e["days"] = ph.seconds / kSecondsPerDay;
      e["switch_in_seconds"] = opt(ph.switch_in_seconds);
      e["switch_via"] = ph.switch_via.empty() ? Json(nullptr) : Json(ph.switch_via);
      e["note"] = ph.note.empty() ? Json(nullptr) : Json(ph.note);
      e["plan"] = ph.plan_json;
      phases.push_back(std::move(e));
    }
    p["phases"] = std::move(phases);
    points.push_back(std::move(p));
  }
  j["points"] = std::move(points);
  return j;
}

std::string PhasedRowsToText(const PhasedCapacitySettings& settings,
                             const std::vector<PhasedCapacityRow>& rows) {
  std::ostringstream out;
  double tokens = 0;
  std::string shape;
  for (const workload::TrainingPhase& p : settings.schedule.phases) {
    tokens += p.Tokens();
    shape += (shape.empty() ? "" : ", ") + p.name + " " + std::to_string(p.global_batch_size) +
             " × " + std::to_string(p.sequence_length);
    if (p.nodes.has_value()) shape += " on " + std::to_string(*p.nodes) + " nodes";
  }
  const size_t n = settings.schedule.phases.size();
  out << "Capacity of " << settings.model.name << " for " << ShortNumberText(tokens) << " tokens in " << n
      << (n == 1 ? " phase" : " phases") << " (" << shape << "), bf16, " << settings.algorithm
      << " search, " << (settings.simulate ? "event simulator" : "analytical model") << "\n";
  if (settings.schedule.checkpoint.has_value()) {
    out << "checkpoint storage: write " << ShortNumberText(settings.schedule.checkpoint->write_gb_per_s)
        << " GB/s, read " << ShortNumberText(settings.schedule.checkpoint->read_gb_per_s) << " GB/s\n";
  } else {
    out << "no checkpoint storage given: switches priced in memory only\n";
  }
  out << "\n";
  std::vector<std::vector<std::string>> cells = {{"name", "devices", "NIC Gb/s", "days",
                                                  "switches", "switch time", "one plan d",
                                                  "saving", "cost $", "plans"}};
  for (const PhasedCapacityRow& r : rows) {
    if (!r.found) {
      cells.push_back({r.name, std::to_string(r.devices), ShortNumberText(r.knobs.nic_gbps), "-", "-", "-",
                       "-", "-", "-", "no schedule fits"});
      continue;
    }
    const std::optional<double> saving = r.saving_percent();
    cells.push_back(
        {r.name, std::to_string(r.devices), ShortNumberText(r.knobs.nic_gbps), FixedText(r.days(), 2),
         std::to_string(r.switches), r.switches > 0 ? SpanText(r.switch_seconds) : "-",
         r.best_single_seconds.has_value() ? FixedText(*r.best_single_seconds / kSecondsPerDay, 2)
                                           : "none",
         saving.has_value() ? FixedText(*saving, 2) + "%" : "-", MoneyText(r.cost), PlansLine(r)});
  }
  out << FormatColumns(cells, 2);
  out << "\n  days: every phase plus every switch; one plan d: the best single plan run in\n"
         "  every phase with no switch (none: no candidate runs in every phase); saving: of\n"
         "  the phase-wise plans over it; cost: device-hours of every phase and switch\n"
         "  × price\n";
  bool any = false;
  for (const PhasedCapacityRow& r : rows) {
    if (r.found) continue;
    if (!any) out << "\n  no schedule:\n";
    any = true;
    out << "    " << r.label << ": " << r.why_not << "\n";
  }
  return out.str();
}

}  // namespace orrery::search
