// Re-planning from measurements: the decisions of `orrery execute
// --replan MARGIN` and `orrery tune --replan MARGIN` (issue #10,
// deliverable 3, docs/replanning.md). The executor measures
// (exec/replan_runner.h); this module predicts, recalibrates, searches and
// decides, and says why with its numbers.
//
// Per window of steps, with measured = the window's median step time:
//
//   predicted = Predict(running plan)   the event simulation of the plan
//               on the (calibrated) cluster under the faults known so far,
//               times `scale` (1 until the first recalibration)
//   over      = measured > predicted × (1 + margin)
//
// When over, the executor probes every rank's compute speed (the same
// GEMMs on every rank) and Decide recalibrates and decides:
//
//   factor(r)  = probe(r) / min over ranks of probe; a factor below
//                slow_threshold is noise (1)
//   faults     = the slow devices {r: factor(r)} (replacing those known)
//   scale      = measured / simulate(running plan under the new faults):
//                what the probe does not explain (a degraded link, the
//                model's own error) scales every prediction from now on
//   changed    = the slow ranks differ from those known, or a factor
//                differs from the known one by more than slow_threshold×
//   best       = when changed, the search (algorithm, request with the new
//                faults) — its best plan that `executable` accepts;
//                otherwise the running plan: it was chosen (or kept) for
//                these devices, and a difference the probe does not
//                explain moves every plan's prediction alike, so the
//                search would only repeat the model's ranking that the
//                measurement just showed to be off
//   gain       = (measured − scale × simulate(best)) × steps_left
//   cost       = the switch's time in memory, costmodel::EstimateSwitchCost
//                of ComputeReshardTraffic(running → best) on the cluster
//   switch     = best ≠ running, gain > cost, and the best plan's step is
//                predicted at least min_gain (a fraction) below the
//                measured one: a smaller gain is within the model's error,
//                and chasing it makes a run flip between plans on the
//                probe's noise
//
// Every check and every decision is kept in log() with these numbers, in
// the order they were made.
//
// Thread-safety: not thread-safe; one Replanning per run (the search uses
// every core through OpenMP).
#ifndef ORRERY_SEARCH_REPLAN_H_
#define ORRERY_SEARCH_REPLAN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "search/search.h"
#include "sim/faults.h"
#include "workload/plan.h"

namespace orrery::search {

struct ReplanSettings {
  // What the search is asked: the model, the (calibrated) cluster of the
  // job's ranks, the global batch, sequence length, precision, calibration
  // and the search's other knobs. request.faults are the faults known at
  // the start (usually none).
  SearchRequest request;
  std::string algorithm = "exhaustive";  // a registered search algorithm
  double margin = 0.2;           // > 0: measured over predicted × (1 + margin) triggers
  double slow_threshold = 1.15;  // >= 1: probe factors below it are noise
  double min_gain = 0.1;  // in [0, 1): the least predicted gain per step, a fraction
  // The plans the executor can run on the job's ranks (exec::
  // CheckExecutable for the CLI); empty accepts every plan.
  std::function<Status(const workload::Plan&)> executable;
};

// One margin check, after a window.
struct MarginCheck {
  int window = 0;
  double measured_s = 0;   // the window's median step
  double predicted_s = 0;  // scale × the simulation under the known faults
  bool over = false;       // measured_s > predicted_s × (1 + margin)
};

// One decision, after a probe.
struct ReplanDecision {
  int window = 0;
  double measured_s = 0;
  std::vector<double> probe_seconds;  // per rank, as measured
  std::vector<double> factors;        // per rank, 1 = healthy
  sim::Faults faults;                 // what every later prediction sees
  double scale = 1;                   // the recalibrated scale
  workload::Plan running;
  double running_predicted_s = 0;     // scale × simulation under `faults`
  std::optional<workload::Plan> best; // nullopt: the search found no executable plan
  double best_predicted_s = 0;        // scale × simulation under `faults`
  int64_t steps_left = 0;
  double gain_s = 0;          // (measured − best_predicted) × steps_left; may be < 0
  double switch_cost_s = 0;   // in memory; 0 when best == running
  bool switch_plan = false;
  std::string reason;         // one sentence: why it switches or keeps
};

class Replanning {
 public:
  // Checks the settings (margin > 0, slow_threshold >= 1, the algorithm
  // registered; InvalidArgument naming the field) and builds the
  // evaluator.
  static Result<Replanning> Create(ReplanSettings settings);

  // scale × the event simulation of `plan` under the known faults.
  Result<double> Predict(const workload::Plan& plan) const;

  // The margin check of one window; appended to log().
  Result<MarginCheck> Check(int window, const workload::Plan& running, double measured_s);

  // Recalibrates from the probe and decides; appended to log(). REQUIRES:
  // probe_seconds has one positive entry per device of the cluster.
  Result<ReplanDecision> Decide(int window, const workload::Plan& running, double measured_s,
                                const std::vector<double>& probe_seconds, int64_t steps_left);

  const sim::Faults& faults() const;
  double scale() const;

  // Everything in order: checks and decisions.
  struct LogEntry {
    std::optional<MarginCheck> check;
    std::optional<ReplanDecision> decision;
  };
  const std::vector<LogEntry>& log() const;

 private:
  Replanning() = default;
  // Records `d` and makes its faults, scale and evaluator the current ones.
  void Commit(const ReplanDecision& d, std::shared_ptr<const Evaluator> evaluator);
  struct State;
  std::shared_ptr<State> state_;
};

// "window 3: measured 41.2 ms, predicted 20.1 ms (+105%, margin 20%): over"
std::string MarginCheckText(const MarginCheck& check, double margin);
// Several lines: the probe's factors, the recalibrated scale, the running
// and the best plan with their predictions, gain, switch cost, decision.
std::string ReplanDecisionText(const ReplanDecision& decision);
Json MarginCheckToJson(const MarginCheck& check);
Json ReplanDecisionToJson(const ReplanDecision& decision);

}  // namespace orrery::search

#endif  // ORRERY_SEARCH_REPLAN_H_
