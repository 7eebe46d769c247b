// exec_replan_runner_checks: the multi-rank checks of training that
// re-plans itself (exec/replan_runner.h), run under mpirun by
// tests/exec/replan_runner_test.cc:
//
//   mpirun -np 2 exec_replan_runner_checks <check> [cpu|cuda]
//
// Every check trains gpt-tiny (sequences of 32 tokens, micro-batches of 1,
// 8 samples a step) under dp 2 with a scripted Replanner on rank 0, and
// compares the training with a reference run step by step: the loss to
// 1e-5 relative and the gradient norm to 1e-4 relative (the executor's
// tolerances against the single-rank run, docs/executor.md
// "Correctness").
//
//   switch     dp 2 with ZeRO-1 (each rank holds half of Adam's moments,
//              so the switch moves state; under ZeRO-0 it would move
//              nothing), 8 steps in windows of 2; the Replanner finds
//              window 1 over its margin and chooses pp 2 with stages of 3
//              and 1 layers: the training equals 8 steps of that dp 2
//              alone (RunTraining) and of that pp 2 alone; window 0
//              (warm-up) and window 2 (the first after the switch) are not
//              judged; one probe, one switch after step 4 whose counted
//              bytes are non-zero and equal the re-shard plan's and the
//              cost model's.
//   keep       5 steps in windows of 2, every window judged; the Replanner
//              finds window 1 over its margin and keeps the plan: one
//              probe, no switch, the losses bit-identical to RunTraining's;
//              the last window has the 1 step left.
//   straggler  the probe of every rank, with rank 1 slowed 3× (--slow-rank
//              1:3) and without: probe[1] / probe[0] in [2.0, 4.5] slowed,
//              in [0.5, 2.0] not (loose: the two ranks share the machine's
//              cores with whatever else runs). Rank 0 prints both ratios.
//   errors     a window of 0 steps, 0 steps, 0 probe repeats, a plan for 4
//              ranks, a slow rank outside the job and no Replanner on rank
//              0 are refused before anything runs, on every rank, with the
//              field named.
//   bad-plan   the Replanner chooses a plan of another global batch: the
//              job aborts naming it (the test expects the failure).
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "costmodel/reshard_cost.h"
#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "exec/phase_runner.h"
#include "exec/replan_runner.h"
#include "exec/runtime.h"
#include "tests/exec/mpi_checks.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using workload::LayerStrategy;
using workload::ModelSpec;
using workload::Plan;

Plan TinyPlan(const ModelSpec& model, int pp, LayerStrategy layer) {
  Plan plan = Plan::Uniform(model, pp, layer, /*global_batch_size=*/8, /*micro_batch_size=*/1);
  plan.sequence_length = 32;
  return plan;
}

Plan Dp2(const ModelSpec& model) { return TinyPlan(model, 1, LayerStrategy{.dp = 2}); }

Plan Pp2Uneven(const ModelSpec& model) {
  Plan plan = TinyPlan(model, 2, LayerStrategy{});
  plan.stage_layers = {3, 1};
  return plan;
}

// Says "over the margin" after the windows in `over`, and answers every
// probe with `choice` (the window's own plan when empty). Keeps what it
// was given.
class ScriptedReplanner : public Replanner {
 public:
  ScriptedReplanner(std::vector<int> over, std::optional<Plan> choice)
      : over_(std::move(over)), choice_(std::move(choice)) {}

  Result<bool> OverMargin(const ReplanWindow& window) override {
    judged.push_back(window);
    for (const int i : over_) {
      if (i == window.index) return true;
    }
    return false;
  }
  Result<Plan> Decide(const ReplanWindow& window,
                      const std::vector<double>& probe_seconds) override {
    decided.push_back(window.index);
    probes.push_back(probe_seconds);
    return choice_.has_value() ? *choice_ : window.plan;
  }

  std::vector<ReplanWindow> judged;
  std::vector<int> decided;
  std::vector<std::vector<double>> probes;

 private:
  std::vector<int> over_;
  std::optional<Plan> choice_;
};

ExecutionResult TrainOrFail(MpiWorld& world, const ModelSpec& model, const Plan& plan,
                            ExecuteOptions options, int steps) {
  options.warmup = 0;
  options.iterations = steps;
  Result<ExecutionResult> result = RunTraining(world, model, plan, options);
  if (!result.ok()) world.Fail(result.status());
  return std::move(*result);
}

ReplanRunResult ReplanOrFail(MpiWorld& world, const ModelSpec& model, const Plan& plan,
                             const ExecuteOptions& options, const ReplanRunOptions& run_options,
                             Replanner* replanner) {
  Result<ReplanRunResult> result = RunWithReplanning(world, model, plan, options, run_options,
                                                     replanner, CostModel(model, options));
  if (!result.ok()) world.Fail(result.status());
  return std::move(*result);
}

std::string Bools(const std::vector<bool>& v) {
  std::string s;
  for (const bool b : v) s += b ? '1' : '0';
  return s;
}

// Rank 0 only (the results live there).
void ExpectSameTraining(const ReplanRunResult& run, const ExecutionResult& reference,
                        const std::string& what, Findings& findings) {
  findings.Expect(run.losses.size() == reference.losses.size() &&
                      run.grad_norms.size() == reference.grad_norms.size(),
                  what + ": " + std::to_string(run.losses.size()) + " steps, the reference " +
                      std::to_string(reference.losses.size()));
  ExpectSameSteps(run.losses, run.grad_norms, reference.losses, reference.grad_norms, what,
                  findings);
}

void CheckSwitch(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                 Findings& findings) {
  // ZeRO-1, so that the switch moves something: under ZeRO-0 each rank of
  // dp 2 holds the whole state, and any pp 2 layout keeps a part of it.
  const Plan dp2 = TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 1});
  const Plan pp2 = Pp2Uneven(model);
  ReplanRunOptions run_options;
  run_options.steps = 8;
  run_options.window = 2;
  run_options.probe_repeats = 1;
  ScriptedReplanner replanner({1}, pp2);
  const ReplanRunResult run = ReplanOrFail(world, model, dp2, options, run_options, &replanner);
  const ExecutionResult dp2_only = TrainOrFail(world, model, dp2, options, 8);
  const ExecutionResult pp2_only = TrainOrFail(world, model, pp2, options, 8);
  if (world.rank() != 0) return;
  ExpectSameTraining(run, dp2_only, "dp2 → pp2 [3, 1] against dp2 alone", findings);
  ExpectSameTraining(run, pp2_only, "dp2 → pp2 [3, 1] against pp2 [3, 1] alone", findings);

  findings.Expect(run.windows.size() == 4, "windows: " + std::to_string(run.windows.size()));
  findings.Expect(Bools(run.judged) == "0101", "judged: " + Bools(run.judged) + ", expected 0101");
  findings.Expect(Bools(run.over_margin) == "0100",
                  "over margin: " + Bools(run.over_margin) + ", expected 0100");
  for (size_t i = 0; i < run.windows.size(); ++i) {
    const ReplanWindow& w = run.windows[i];
    const std::string name = "window " + std::to_string(i);
    findings.Expect(w.index == static_cast<int>(i), name + ": index " + std::to_string(w.index));
    findings.Expect(w.first_step == static_cast<int64_t>(2 * i),
                    name + ": first step " + std::to_string(w.first_step));
    findings.Expect(w.steps_left == static_cast<int64_t>(6 - 2 * i),
                    name + ": steps left " + std::to_string(w.steps_left));
    findings.Expect(w.step_seconds.size() == 2 && w.median_step_seconds > 0,
                    name + ": " + std::to_string(w.step_seconds.size()) + " step times, median " +
                        std::to_string(w.median_step_seconds));
    findings.Expect(w.plan == (i < 2 ? dp2 : pp2), name + ": not run under the expected plan");
  }
  // The Replanner saw the judged windows only, and decided once.
  findings.Expect(replanner.judged.size() == 2 && replanner.judged[0].index == 1 &&
                      replanner.judged[1].index == 3,
                  "OverMargin called " + std::to_string(replanner.judged.size()) + " times");
  findings.Expect(replanner.decided == std::vector<int>{1},
                  "Decide called " + std::to_string(replanner.decided.size()) + " times");
  findings.Expect(run.probes.size() == 1, "probes: " + std::to_string(run.probes.size()));
  if (run.probes.size() == 1) {
    const ProbeRecord& p = run.probes.front();
    findings.Expect(p.after_window == 1 && p.switched, "the probe: after window " +
                                                           std::to_string(p.after_window) +
                                                           (p.switched ? ", switched" : ", kept"));
    findings.Expect(p.probe_seconds.size() == 2 && p.probe_seconds[0] > 0 &&
                        p.probe_seconds[1] > 0,
                    "the probe has no time for some rank");
    findings.Expect(!replanner.probes.empty() && replanner.probes.front() == p.probe_seconds,
                    "Decide saw other probe times than the record's");
  }
  findings.Expect(run.switches.size() == 1, "switches: " + std::to_string(run.switches.size()));
  if (run.switches.size() == 1) {
    const SwitchRecord& s = run.switches.front();
    findings.Expect(s.from_phase == 1, "switch from window " + std::to_string(s.from_phase));
    findings.Expect(s.after_step == 4, "switch after step " + std::to_string(s.after_step));
    findings.Expect(!s.same_layout && s.total_bytes() > 0,
                    "the switch moved " + std::to_string(s.total_bytes()) + " bytes");
    findings.Expect(s.bytes_sent == s.planned_sent && s.bytes_received == s.planned_received,
                    "sent " + Bracketed(s.bytes_sent) + ", the plan says " +
                        Bracketed(s.planned_sent));
    findings.Expect(s.prediction_error.empty() && s.PredictionAgrees(),
                    "counted sent " + Bracketed(s.bytes_sent) + ", the cost model: " +
                        (s.predicted ? Bracketed(s.predicted->bytes_sent) : s.prediction_error));
    std::printf("switch after step %lld: sent %s B in %d messages, switch %.3f ms\n",
                static_cast<long long>(s.after_step), Bracketed(s.bytes_sent).c_str(), s.messages,
                s.total_seconds * 1e3);
  }
  findings.Expect(!run.device.empty(), "no device name");
}

void CheckKeep(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
               Findings& findings) {
  const Plan dp2 = Dp2(model);
  ReplanRunOptions run_options;
  run_options.steps = 5;
  run_options.window = 2;
  run_options.probe_repeats = 1;
  run_options.skip_first_window = false;
  ScriptedReplanner replanner({1}, std::nullopt);
  const ReplanRunResult run = ReplanOrFail(world, model, dp2, options, run_options, &replanner);
  const ExecutionResult reference = TrainOrFail(world, model, dp2, options, 5);
  if (world.rank() != 0) return;
  findings.Expect(run.losses == reference.losses && run.grad_norms == reference.grad_norms,
                  "kept: the losses or gradient norms differ from RunTraining's");
  findings.Expect(Bools(run.judged) == "111", "judged: " + Bools(run.judged) + ", expected 111");
  findings.Expect(Bools(run.over_margin) == "010",
                  "over margin: " + Bools(run.over_margin) + ", expected 010");
  findings.Expect(run.windows.size() == 3 && run.windows.back().step_seconds.size() == 1 &&
                      run.windows.back().steps_left == 0,
                  "the last window is not the 1 step left");
  findings.Expect(run.probes.size() == 1 && !run.probes.front().switched,
                  "kept: " + std::to_string(run.probes.size()) + " probes");
  findings.Expect(run.switches.empty(), "kept: switched");
}

// Rank 0's probe ratio rank 1 / rank 0: each rank's fastest probe of
// three, run after three windows (spread over time, against bursts of
// load from other processes on the machine).
double ProbeRatio(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                  const std::string& what, Findings& findings) {
  ReplanRunOptions run_options;
  run_options.steps = 4;
  run_options.window = 1;
  run_options.probe_repeats = 4;
  run_options.skip_first_window = false;
  ScriptedReplanner replanner({0, 1, 2}, std::nullopt);
  const ReplanRunResult run =
      ReplanOrFail(world, model, Dp2(model), options, run_options, &replanner);
  if (world.rank() != 0) return 0;
  std::vector<double> fastest(2, 0.0);
  for (const ProbeRecord& probe : run.probes) {
    if (probe.probe_seconds.size() != 2) break;
    for (size_t r = 0; r < 2; ++r) {
      const double s = probe.probe_seconds[r];
      if (fastest[r] == 0 || s < fastest[r]) fastest[r] = s;
    }
  }
  if (run.probes.size() != 3 || fastest[0] <= 0 || fastest[1] <= 0) {
    findings.Expect(false, what + ": " + std::to_string(run.probes.size()) +
                               " probes, expected 3 with a time for each rank");
    return 0;
  }
  std::printf("%s: probe %.3f us (rank 0), %.3f us (rank 1), ratio %.2f\n", what.c_str(),
              fastest[0] * 1e6, fastest[1] * 1e6, fastest[1] / fastest[0]);
  return fastest[1] / fastest[0];
}

void CheckStraggler(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                    Findings& findings) {
  ExecuteOptions slowed = options;
  slowed.slow_ranks = {{1, 3.0}};
  const double slow = ProbeRatio(world, model, slowed, "rank 1 slowed 3x", findings);
  const double even = ProbeRatio(world, model, options, "no slow rank", findings);
  if (world.rank() != 0) return;
  findings.Expect(slow >= 2.0 && slow <= 4.5,
                  "rank 1 slowed 3x: probe ratio " + std::to_string(slow) +
                      ", expected [2.0, 4.5]");
  findings.Expect(even >= 0.5 && even <= 2.0,
                  "no slow rank: probe ratio " + std::to_string(even) + ", expected [0.5, 2.0]");
}

void ExpectRefused(MpiWorld& world, const ModelSpec& model, const Plan& plan,
                   const ExecuteOptions& options, const ReplanRunOptions& run_options,
                   Replanner* replanner, StatusCode code, const std::string& needle,
                   const std::string& what, Findings& findings) {
  const Result<ReplanRunResult> result =
      RunWithReplanning(world, model, plan, options, run_options, replanner);
  if (result.ok()) {
    findings.Expect(false, what + ": accepted");
    return;
  }
  findings.Expect(result.status().code() == code,
                  what + ": " + result.status().ToString() + ", another code expected");
  findings.Expect(result.status().message().find(needle) != std::string::npos,
                  what + ": \"" + result.status().message() + "\" does not say \"" + needle +
                      "\"");
}

void CheckErrors(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                 Findings& findings) {
  const Plan dp2 = Dp2(model);
  ScriptedReplanner replanner({}, std::nullopt);
  ReplanRunOptions good;
  good.steps = 4;
  good.window = 2;

  ReplanRunOptions no_window = good;
  no_window.window = 0;
  ExpectRefused(world, model, dp2, options, no_window, &replanner, StatusCode::kInvalidArgument,
                "field 'window'", "window 0", findings);
  ReplanRunOptions no_steps = good;
  no_steps.steps = 0;
  ExpectRefused(world, model, dp2, options, no_steps, &replanner, StatusCode::kInvalidArgument,
                "field 'steps'", "steps 0", findings);
  ReplanRunOptions no_repeats = good;
  no_repeats.probe_repeats = 0;
  ExpectRefused(world, model, dp2, options, no_repeats, &replanner,
                StatusCode::kInvalidArgument, "field 'probe_repeats'", "probe repeats 0",
                findings);
  ExpectRefused(world, model, TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 2}), options,
                good, &replanner, StatusCode::kFailedPrecondition, "needs 4 ranks",
                "a plan for 4 ranks", findings);
  ExecuteOptions outside = options;
  outside.slow_ranks = {{5, 2.0}};
  ExpectRefused(world, model, dp2, outside, good, &replanner, StatusCode::kInvalidArgument,
                "slow rank 5", "slow rank 5", findings);
  // Rank 1 has one, rank 0 not: both ranks return the error.
  ExpectRefused(world, model, dp2, options, good, world.rank() == 0 ? nullptr : &replanner,
                StatusCode::kInvalidArgument, "Replanner", "no Replanner on rank 0", findings);
  findings.Expect(replanner.judged.empty(), "a refused run called the Replanner");
}

void CheckBadPlan(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                  Findings& findings) {
  Plan larger = Dp2(model);
  larger.global_batch_size = 16;
  ReplanRunOptions run_options;
  run_options.steps = 4;
  run_options.window = 1;
  run_options.skip_first_window = false;
  ScriptedReplanner replanner({0}, larger);
  ReplanOrFail(world, model, Dp2(model), options, run_options, &replanner);
  findings.Expect(false, "a plan of another global batch was accepted");
}

int Main(int argc, char** argv) {
  const ModelSpec model = *workload::ModelPreset("gpt-tiny");
  return RunMpiChecks(argc, argv, "exec_replan_runner_checks",
                      BindModel(model, {{"switch", &CheckSwitch},
                                        {"keep", &CheckKeep},
                                        {"straggler", &CheckStraggler},
                                        {"errors", &CheckErrors},
                                        {"bad-plan", &CheckBadPlan}}));
}

}  // namespace
}  // namespace orrery::exec

int main(int argc, char** argv) { return orrery::exec::Main(argc, argv); }
