// Phase-wise planning (issue #10, `orrery search --phases`, docs/phases.md):
// the best plan of every training phase (workload/phases.h), what each
// switch between plans costs (costmodel/reshard_cost.h), and when keeping
// the old plan is cheaper than switching.
//
// Steps:
//   1. Every phase is searched (RunSearch on the phase's cluster, global
//      batch and sequence length): its top plans are the candidates.
//   2. Every candidate is scored on every phase it can run in (same device
//      count, RetargetPlan to the phase's batch and sequence, valid, within
//      memory) with the same evaluator the search ranks by, so plans are
//      compared on one scale. A phase's time = steps × iteration time.
//   3. Switch costs between consecutive phases' candidates:
//      EstimateSwitchCost of ComputeReshardTraffic, in memory or through
//      the schedule's checkpoint storage, whichever is cheaper. A phase
//      whose cluster differs from the previous one's must move its state
//      (its candidates all differ from the previous ones' devices); the
//      same plan on the same cluster costs nothing.
//   4. A shortest path over (phase, candidate): the schedule of plans with
//      the least total time (phases + switches). Where it keeps a plan
//      over a phase boundary, the report says why: switching would cost
//      more than it gains, with both numbers.
//   5. The best single plan, for comparison: a plan searched for the whole
//      schedule, the least total time over every phase with no switch
//      (nullopt when none runs in every phase, e.g. the cluster changes).
//      When every phase runs on the same cluster, each phase's shape is
//      searched again, analytically, for `single_plan_candidates` plans
//      (a wider net than the phase's own top K: the best plan for a whole
//      schedule is rarely among one phase's very best, e.g. a long-context
//      phase's plans are slow at 8K and a short phase's do not fit at
//      128K); every plan found is scored on every phase (step 2's
//      evaluators), and the one with the least total that runs in all of
//      them joins the candidates (the best `base.top_k` of them when the
//      scale is the event simulator, which re-scores them in step 2), so
//      the schedule may use it too and is never slower than it. The best
//      single plan is then the least total over all candidates.
//
// The scale: the analytical estimate (sim/analytical.h) when
// base.rescore_with_simulator is false, the event simulation otherwise
// (every candidate simulated on every phase it runs in: slow at thousands
// of devices). Rank r is device r in every phase: a phase with fewer nodes
// keeps the first nodes of the previous one. Two phases run on the same
// machines when one's cluster is the other's with another node count
// (ClusterSpec::WithNodes); when the machines change (another "cluster"),
// the state moves through the checkpoint storage only, so the schedule
// must give its bandwidth, and even keeping a plan pays for it.
//
// Thread-safety: functions of their arguments; the searches use every core
// through OpenMP.
#ifndef ORRERY_SEARCH_PHASES_H_
#define ORRERY_SEARCH_PHASES_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/units.h"
#include "costmodel/reshard_cost.h"
#include "search/search.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/phases.h"
#include "workload/plan.h"

namespace orrery::search {

struct PhasePlanningRequest {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;  // phases without "cluster"/"nodes" use it
  workload::PhaseSchedule schedule;
  std::string algorithm = "galvatron";
  // Per phase search: top_k candidates kept; the rest of SearchRequest's
  // fields (budget, precision, calibration, …) come from `base`, whose
  // model, cluster, batch and sequence are overwritten per phase.
  SearchRequest base;
  // Step 5's search for the best single plan: plans per phase shape, by
  // the analytical score (the algorithm run with top_k = ⌈N / 4⌉, as it
  // returns top_k × 4: search.h CandidateLimit). 0: the best single plan is
  // only the best of the phases' own candidates that runs in every phase.
  int single_plan_candidates = 50;
  // Resolves a phase's "cluster"/"nodes" (default: topology::ResolveCluster
  // of the name, then WithNodes). Tests inject their own.
  std::function<Result<topology::ClusterSpec>(const workload::TrainingPhase&)> resolve_cluster;
};

// One candidate's score in one phase.
struct PhaseScore {
  bool runs = false;          // valid and within memory in this phase
  std::string why_not;        // when !runs
  Duration iteration_time;
  double phase_seconds = 0;   // steps × iteration_time
  Bytes peak_memory;          // when runs
  bool simulated = false;     // iteration_time from the event simulator
};

struct PlannedPhase {
  std::string name;
  int64_t steps = 0;
  double tokens = 0;
  int global_batch_size = 0;
  int sequence_length = 0;
  std::string cluster;        // the phase's cluster's name
  int devices = 0;
  // The machines differ from the previous phase's (another cluster, not
  // only another node count): the state moves through the checkpoint.
  bool machines_change = false;
  int chosen = 0;             // index into PhasePlan::candidates
  int best = 0;               // the phase's own best candidate
  Duration iteration_time;    // of the chosen candidate
  double seconds = 0;
  // The switch into this phase (nullopt for the first phase, or when the
  // chosen plan is the previous one's: no switch).
  std::optional<costmodel::SwitchCost> switch_in;
  std::optional<costmodel::ReshardTraffic> traffic_in;  // summarized: see PhasePlanToJson
  // When chosen != best: why (e.g. "keeping costs 12.3 s over the phase,
  // switching 40.1 s").
  std::string note;
  // When chosen != best, the numbers of the note: what the phase's own best
  // would save over the phase, and what switching into it from the
  // previous phase's plan would cost (nullopt for the first phase).
  double best_saving_seconds = 0;
  std::optional<double> best_switch_seconds;
  double search_time_s = 0;
};

// Step 5's search for a plan for the whole schedule (PhasePlan::single_search).
struct SinglePlanSearch {
  int plans_per_search = 0;  // PhasePlanningRequest::single_plan_candidates
  int searches = 0;          // phase shapes searched (phases of one shape share one)
  int searches_reused = 0;   // of those, the phase's own search was already as wide
  int plans_scored = 0;      // plans found that were not already candidates
  int run_everywhere = 0;    // of those, how many run in every phase
  int added = 0;             // joined the candidates
  // The best of those by total (analytical), its total, and the phase
  // whose search found it; nullopt/empty when none runs everywhere.
  std::optional<double> best_seconds;
  std::string best_found_in;
  double seconds = 0;        // wall time of the searches and the scoring
};

struct PhasePlan {
  std::vector<workload::Plan> candidates;   // deduplicated, in order of first finding
  // The phase that found each; for a candidate of the single-plan search,
  // "single-plan search of <phase>".
  std::vector<std::string> candidate_found_in;
  std::vector<bool> candidate_from_single_search;  // added by step 5's search
  std::vector<std::vector<PhaseScore>> scores;  // [candidate][phase]
  std::vector<PlannedPhase> phases;
  double total_seconds = 0;                 // phases + switches
  double switch_seconds = 0;
  int switches = 0;                         // phases entered with a switch
  int switch_costs_computed = 0;            // pairs the schedule priced
  bool simulated = false;                   // the scale (header)
  std::optional<int> best_single;           // candidate index
  std::optional<double> best_single_seconds;
  // Step 5's search; nullopt when it did not run (phases on different
  // clusters or device counts, or single_plan_candidates 0).
  std::optional<SinglePlanSearch> single_search;
};

// Steps 1–5. Errors: a phase's cluster that does not resolve or a search
// error, prefixed with the phase's name; FailedPrecondition naming the
// phase when no plan fits it.
Result<PhasePlan> PlanPhases(const PhasePlanningRequest& request,
                             const ProgressFn& progress = {});

// Step 4 alone, for tests and other callers: the least-total path through
// `phase_seconds[p][c]` (infinity: c cannot run in p) with
// `switch_seconds(p, a, b)` the cost of entering phase p with candidate b
// after a (called only for p >= 1, a != b, both finite, and only where it
// can change the answer: a predecessor already as costly as the best found
// is not priced, since a switch costs >= 0; a negative, infinite or NaN
// cost means the switch cannot be made). With `keeping_moves_state[p]`
// true, staying on the same candidate into phase p is priced too
// (switch_seconds(p, a, a)): the machines change there. Ties go to
// keeping the previous candidate, then to the lower index, so the answer
// is deterministic. Returns the candidate per phase. FailedPrecondition
// naming the phase (by index) when it has no finite candidate or none can
// be reached.
Result<std::vector<int>> ChooseSchedule(
    const std::vector<std::vector<double>>& phase_seconds,
    const std::function<double(int phase, int from, int to)>& switch_seconds,
    const std::vector<bool>& keeping_moves_state = {});

// The report: text table (phase, steps, plan, iteration, phase time,
// switch in and how, note; then total vs best single plan) and JSON.
std::string PhasePlanToText(const PhasePlanningRequest& request, const PhasePlan& plan);
Json PhasePlanToJson(const PhasePlanningRequest& request, const PhasePlan& plan);
// The schedule with each phase's chosen plan filled in, for `orrery
// execute --phases`.
workload::PhaseSchedule ScheduleWithPlans(const PhasePlanningRequest& request,
                                          const PhasePlan& plan);

}  // namespace orrery::search

#endif  // ORRERY_SEARCH_PHASES_H_
