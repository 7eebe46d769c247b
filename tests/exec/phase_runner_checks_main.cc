// exec_phase_runner_checks: the multi-rank checks of running a phases file
// (exec/phase_runner.h), run under mpirun by tests/exec/phase_runner_test.cc:
//
//   mpirun -np 2 exec_phase_runner_checks <check> [cpu|cuda]
//
// Every check runs gpt-tiny (sequences of 32 tokens, micro-batches of 1)
// through RunPhases and compares it with a reference run of the same
// steps, step by step: the loss to 1e-5 relative and the gradient norm to
// 1e-4 relative (the executor's tolerances against the single-rank run,
// docs/executor.md "Correctness"). At every switch it also requires the
// bytes each rank sent and received, counted at the communicator, to equal
// the re-shard plan's and the cost model's
// (costmodel::ComputeReshardTraffic with StateBytes::Fp32Adam()).
//
//   dp2-tp2  dp 2 for 3 steps, then tp 2 for 3 steps (8 samples a step),
//            against 6 steps of dp 2 alone and of tp 2 alone; and dp 2 as
//            two phases of 3 steps (equal plans: one session, no switch)
//            against the same 6 steps.
//   pp2-dp2  pp 2 (1F1B) for 3 steps, then dp 2 for 3 steps, against 6
//            steps of pp 2 alone and of dp 2 alone.
//   rampup   a batch ramp-up: 4 samples a step for 3 steps under pp 2,
//            then 8 samples for 3 steps under dp 2, against the same
//            ramp-up run under pp 2 throughout (a new session at the
//            boundary, whose layout equals the old one: 0 bytes move).
// Rank 0 prints one line per switch.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "costmodel/reshard_cost.h"
#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "exec/phase_runner.h"
#include "exec/runtime.h"
#include "tests/exec/mpi_checks.h"
#include "workload/model_presets.h"
#include "workload/phases.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using workload::LayerStrategy;
using workload::ModelSpec;
using workload::PhaseSchedule;
using workload::Plan;
using workload::TrainingPhase;

Plan TinyPlan(const ModelSpec& model, int pp, LayerStrategy layer, int global_batch) {
  Plan plan = Plan::Uniform(model, pp, layer, global_batch, /*micro_batch_size=*/1);
  plan.sequence_length = 32;
  return plan;
}

TrainingPhase Phase(const std::string& name, const Plan& plan, int64_t steps) {
  TrainingPhase phase;
  phase.name = name;
  phase.steps = steps;
  phase.sequence_length = plan.sequence_length;
  phase.global_batch_size = plan.global_batch_size;
  phase.plan = plan;
  return phase;
}

PhaseSchedule Schedule(const std::string& source, std::vector<TrainingPhase> phases) {
  PhaseSchedule schedule;
  schedule.source = source;
  schedule.phases = std::move(phases);
  return schedule;
}

struct Run {
  PhasesResult result;
  std::vector<double> losses;  // every step, phases back to back
  std::vector<double> grad_norms;
};

Run RunOrFail(MpiWorld& world, const ModelSpec& model, const PhaseSchedule& schedule,
              const ExecuteOptions& options) {
  Result<PhasesResult> result = RunPhases(world, model, schedule, options, CostModel(model, options));
  if (!result.ok()) world.Fail(result.status());
  Run run;
  run.result = std::move(*result);
  for (const PhaseRecord& phase : run.result.phases) {
    run.losses.insert(run.losses.end(), phase.losses.begin(), phase.losses.end());
    run.grad_norms.insert(run.grad_norms.end(), phase.grad_norms.begin(), phase.grad_norms.end());
  }
  return run;
}

// Rank 0 only (the results live there).
void ExpectSameTraining(const Run& run, const Run& reference, const std::string& what,
                        Findings& findings) {
  findings.Expect(run.losses.size() == reference.losses.size(),
                  what + ": " + std::to_string(run.losses.size()) + " steps, the reference " +
                      std::to_string(reference.losses.size()));
  ExpectSameSteps(run.losses, run.grad_norms, reference.losses, reference.grad_norms, what,
                  findings);
}

// Rank 0 only: every switch's counted bytes equal its plan's and the cost
// model's; `switches` of them happened, each after `after_step` steps.
void ExpectSwitches(const Run& run, size_t switches, int64_t after_step, const std::string& what,
                    Findings& findings) {
  findings.Expect(run.result.switches.size() == switches,
                  what + ": " + std::to_string(run.result.switches.size()) +
                      " switches, expected " + std::to_string(switches));
  for (const SwitchRecord& s : run.result.switches) {
    findings.Expect(s.after_step == after_step, what + ": switched after step " +
                                                    std::to_string(s.after_step));
    findings.Expect(s.bytes_sent == s.planned_sent,
                    what + ": sent " + Bracketed(s.bytes_sent) + ", the plan says " +
                        Bracketed(s.planned_sent));
    findings.Expect(s.bytes_received == s.planned_received,
                    what + ": received " + Bracketed(s.bytes_received) + ", the plan says " +
                        Bracketed(s.planned_received));
    findings.Expect(s.prediction_error.empty(), what + ": cost model: " + s.prediction_error);
    findings.Expect(s.PredictionAgrees(),
                    what + ": counted sent " + Bracketed(s.bytes_sent) + " received " +
                        Bracketed(s.bytes_received) + ", the cost model: sent " +
                        (s.predicted ? Bracketed(s.predicted->bytes_sent) : "none") + " received " +
                        (s.predicted ? Bracketed(s.predicted->bytes_received) : "none"));
    std::printf("%s: switch after step %lld: %d transfers in %d messages, sent %s B, received "
                "%s B (cost model %s), exchange %.3f ms, switch %.3f ms\n",
                what.c_str(), static_cast<long long>(s.after_step), s.transfers, s.messages,
                Bracketed(s.bytes_sent).c_str(), Bracketed(s.bytes_received).c_str(),
                s.PredictionAgrees() ? "the same" : "differs", s.exchange_seconds * 1e3,
                s.total_seconds * 1e3);
  }
}

void CheckPlanChange(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                     const Plan& old_plan, const Plan& new_plan, const std::string& name,
                     Findings& findings) {
  const Run switched = RunOrFail(
      world, model,
      Schedule(name, {Phase("old", old_plan, 3), Phase("new", new_plan, 3)}), options);
  const Run old_only = RunOrFail(world, model, Schedule("old", {Phase("old", old_plan, 6)}),
                                 options);
  const Run new_only = RunOrFail(world, model, Schedule("new", {Phase("new", new_plan, 6)}),
                                 options);
  if (world.rank() != 0) return;
  ExpectSameTraining(switched, old_only, name + " against the old plan alone", findings);
  ExpectSameTraining(switched, new_only, name + " against the new plan alone", findings);
  ExpectSwitches(switched, 1, 3, name, findings);
  findings.Expect(old_only.result.switches.empty() && new_only.result.switches.empty(),
                  name + ": a one-phase run switched");
}

void CheckDp2Tp2(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                 Findings& findings) {
  const Plan dp2 = TinyPlan(model, 1, LayerStrategy{.dp = 2}, 8);
  const Plan tp2 = TinyPlan(model, 1, LayerStrategy{.tp = 2}, 8);
  CheckPlanChange(world, model, options, dp2, tp2, "dp2-tp2", findings);
  // Equal plans keep the session: no switch, the same run.
  const Run kept = RunOrFail(world, model,
                             Schedule("kept", {Phase("a", dp2, 3), Phase("b", dp2, 3)}), options);
  const Run whole = RunOrFail(world, model, Schedule("whole", {Phase("a", dp2, 6)}), options);
  if (world.rank() != 0) return;
  findings.Expect(kept.result.switches.empty(), "dp2 then dp2: switched");
  findings.Expect(kept.losses == whole.losses,
                  "dp2 then dp2 (one session) differs from 6 steps of dp2");
}

void CheckPp2Dp2(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                 Findings& findings) {
  const Plan pp2 = TinyPlan(model, 2, LayerStrategy{}, 8);
  const Plan dp2 = TinyPlan(model, 1, LayerStrategy{.dp = 2}, 8);
  CheckPlanChange(world, model, options, pp2, dp2, "pp2-dp2", findings);
}

void CheckRampUp(MpiWorld& world, const ModelSpec& model, const ExecuteOptions& options,
                 Findings& findings) {
  const Plan pp2_small = TinyPlan(model, 2, LayerStrategy{}, 4);
  const Plan pp2_large = TinyPlan(model, 2, LayerStrategy{}, 8);
  const Plan dp2_large = TinyPlan(model, 1, LayerStrategy{.dp = 2}, 8);
  const Run changed = RunOrFail(
      world, model, Schedule("ramp-up", {Phase("b4", pp2_small, 3), Phase("b8", dp2_large, 3)}),
      options);
  const Run kept = RunOrFail(
      world, model, Schedule("ramp-up", {Phase("b4", pp2_small, 3), Phase("b8", pp2_large, 3)}),
      options);
  if (world.rank() != 0) return;
  ExpectSameTraining(changed, kept, "ramp-up pp2 → dp2 against pp2 → pp2", findings);
  ExpectSwitches(changed, 1, 3, "ramp-up pp2 → dp2", findings);
  ExpectSwitches(kept, 1, 3, "ramp-up pp2 → pp2", findings);
  if (changed.result.switches.size() == 1) {
    findings.Expect(changed.result.switches.front().total_bytes() > 0,
                    "ramp-up pp2 → dp2: nothing moved");
  }
  if (kept.result.switches.size() == 1) {
    const SwitchRecord& s = kept.result.switches.front();
    findings.Expect(s.same_layout, "ramp-up pp2 → pp2: the layouts differ");
    findings.Expect(s.total_bytes() == 0 && s.messages == 0,
                    "ramp-up pp2 → pp2: moved " + std::to_string(s.total_bytes()) + " bytes");
  }
  // The phases' records carry their own plans and step ranges.
  if (changed.result.phases.size() == 2) {
    findings.Expect(changed.result.phases[0].plan.global_batch_size == 4 &&
                        changed.result.phases[1].plan.global_batch_size == 8,
                    "ramp-up: the phases' plans are not the ramp-up's");
    findings.Expect(changed.result.phases[1].first_step == 3,
                    "ramp-up: the second phase starts at step " +
                        std::to_string(changed.result.phases[1].first_step));
  }
}

int Main(int argc, char** argv) {
  const ModelSpec model = *workload::ModelPreset("gpt-tiny");
  return RunMpiChecks(
      argc, argv, "exec_phase_runner_checks",
      BindModel(model,
                {{"dp2-tp2", &CheckDp2Tp2}, {"pp2-dp2", &CheckPp2Dp2}, {"rampup", &CheckRampUp}}));
}

}  // namespace
}  // namespace orrery::exec

int main(int argc, char** argv) { return orrery::exec::Main(argc, argv); }
