// Capacity planning of a training in phases (issues #9 and #10, `orrery
// capacity --phases`, docs/capacity.md "Phases"): every point of a sweep
// (search/capacity.h) is planned phase by phase (search/phases.h), so the
// answer is what the whole schedule — batch ramp, long-context phase,
// switches between plans included — takes on each hypothetical cluster,
// against the best single plan for every phase.
//
// The phases' clusters: a phase with neither "cluster" nor "nodes" runs on
// the point's cluster; one with "nodes" on the point's cluster with that
// many nodes (the point's NIC, oversubscription and memory kept:
// MaterializeCluster commutes with ClusterSpec::WithNodes). A phase naming
// its own "cluster" is refused (CheckPhasesForCapacity): the sweep is what
// says which machines the training runs on.
//
// Per point, with total = Σ phase seconds + Σ switch seconds (PlanPhases):
//
//   days          = total / 86,400
//   device_hours  = (Σ_phases seconds_p × devices_p
//                    + Σ_switches seconds_s × max(devices before, after)) / 3,600
//                 = total × devices / 3,600 when no phase sets "nodes"
//   cost          = device_hours × price_per_device_hour
//   saving        = (one plan − total) / one plan, when one candidate runs
//                   in every phase (else none)
//
// The ranking scale is the analytical model unless `simulate` asks for the
// event simulator (every candidate on every phase: slow at thousands of
// devices). Neither the sensitivity searches nor the sweep's fault
// scenarios apply here; the command refuses them. The monotonicity rule of
// AssembleRows (a larger point may run a smaller one's plan) is not
// applied: each point reports its own phase-wise plans.
//
// Thread-safety: functions of their arguments; the searches use every
// core through OpenMP.
#ifndef ORRERY_SEARCH_CAPACITY_PHASES_H_
#define ORRERY_SEARCH_CAPACITY_PHASES_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "search/capacity.h"
#include "search/search.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/phases.h"

namespace orrery::search {

// What the command asks of every point.
struct PhasedCapacitySettings {
  workload::ModelSpec model;
  workload::PhaseSchedule schedule;
  std::string algorithm;               // a registered search algorithm
  std::optional<double> time_limit_s;  // per phase search
  bool simulate = false;               // the event simulator's scale
  int top_k = 5;                       // candidates per phase (search --phases's default)
};

// OK unless a phase names its own "cluster": InvalidArgument naming the
// schedule's file, the phase (index and name) and the field.
Status CheckPhasesForCapacity(const workload::PhaseSchedule& schedule);

// One point's answer.
struct PhasedCapacityRow {
  std::string name;    // the sweep entry's
  std::string label;   // "h100 16 devices 400 Gb/s", as the progress lines
  std::string device;  // device type name
  int devices = 0;     // the point's
  int nodes = 0;
  ClusterKnobs knobs;
  double price_per_device_hour = 0;
  bool found = false;   // false: some phase has no plan, or no switch path
  std::string why_not;  // when !found: PlanPhases's message
  double total_seconds = 0;   // phases + switches
  double phase_seconds = 0;   // Σ phases
  double switch_seconds = 0;  // Σ switches
  int switches = 0;
  std::optional<double> best_single_seconds;
  std::string best_single_plan;  // its summary; "" without one
  double device_hours = 0;
  double cost = 0;
  bool simulated = false;
  double search_time_s = 0;  // wall time of this point (informational)

  struct Phase {
    std::string name;
    int devices = 0;
    int64_t steps = 0;
    std::string plan;   // PlanSummary of the chosen plan
    Json plan_json = nullptr;  // the plan re-targeted to the phase (a plan file)
    double iteration_s = 0;
    double seconds = 0;
    std::optional<double> switch_in_seconds;  // nullopt: first phase or kept
    std::string switch_via;                   // "memory" | "checkpoint" | ""
    std::string note;                         // PlannedPhase::note
  };
  std::vector<Phase> phases;

  double days() const { return total_seconds / 86400.0; }
  // (one plan − total) / one plan × 100; nullopt without a single plan.
  std::optional<double> saving_percent() const;
};

// Plans `settings.schedule` on `cluster` (the point's materialized
// cluster, entry `point.entry` of `sweep`, called `label` in messages: the
// CapacityJob's) and fills the row. A schedule
// that cannot be planned there (no plan fits a phase, no switch can be
// made: FailedPrecondition) is a row with found false; other errors
// (a search's, a phase's node count that does not apply) are returned.
// `progress` receives PlanPhases's notes.
Result<PhasedCapacityRow> RunPhasedCapacityPoint(const PhasedCapacitySettings& settings,
                                                 const Sweep& sweep, const CapacityPoint& point,
                                                 const topology::ClusterSpec& cluster,
                                                 const std::string& label,
                                                 const ProgressFn& progress = {});

// The report: CSV (header below, one row per point), JSON and text.
std::string_view PhasedCapacityCsvHeader();
std::string PhasedRowsToCsv(const std::vector<PhasedCapacityRow>& rows);
Json PhasedRowsToJson(const PhasedCapacitySettings& settings,
                      const std::vector<PhasedCapacityRow>& rows);
std::string PhasedRowsToText(const PhasedCapacitySettings& settings,
                             const std::vector<PhasedCapacityRow>& rows);

}  // namespace orrery::search

#endif  // ORRERY_SEARCH_CAPACITY_PHASES_H_
