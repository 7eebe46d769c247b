#include "exec/replan_runner.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "core/json.h"
#include "core/statistics.h"
#include "exec/backend.h"
#include "workload/plan_json.h"

namespace orrery::exec {
namespace {

Status CheckRunOptions(const ReplanRunOptions& run_options) {
  std::vector<std::string> reasons;
  if (run_options.steps < 1) {
    reasons.push_back("field 'steps': expected >= 1, got " + std::to_string(run_options.steps));
  }
  if (run_options.window < 1) {
    reasons.push_back("field 'window': expected >= 1 steps, got " +
                      std::to_string(run_options.window));
  }
  if (run_options.probe_repeats < 1) {
    reasons.push_back("field 'probe_repeats': expected >= 1, got " +
                      std::to_string(run_options.probe_repeats));
  }
  if (reasons.empty()) return Status::Ok();
  std::string message = "re-planning options:";
  for (const std::string& r : reasons) message += "\n  " + r;
  return InvalidArgumentError(message);
}

// The plan the Replanner chose after window `index` must run where the
// running plan runs, on the same data.
Status CheckNextPlan(const workload::ModelSpec& model, const workload::Plan& current,
                     const workload::Plan& next, int world_size, int index) {
  const std::string what = "the plan the re-planner chose after window " + std::to_string(index);
  std::vector<std::string> reasons;
  const Status executable = CheckExecutable(model, next, world_size);
  if (!executable.ok()) reasons.push_back(executable.message());
  if (next.global_batch_size != current.global_batch_size) {
    reasons.push_back("field 'global_batch_size': " + std::to_string(next.global_batch_size) +
                      ", the running plan's is " + std::to_string(current.global_batch_size));
  }
  if (next.sequence_length != current.sequence_length) {
    reasons.push_back("field 'sequence_length': " + std::to_string(next.sequence_length) +
                      ", the running plan's is " + std::to_string(current.sequence_length));
  }
  if (reasons.empty()) return Status::Ok();
  std::string message = what + " cannot replace the running plan:";
  for (const std::string& r : reasons) message += "\n  " + r;
  return FailedPreconditionError(message);
}

}  // namespace

Result<ReplanRunResult> RunWithReplanning(MpiWorld& world, const workload::ModelSpec& model,
                                          const workload::Plan& plan,
                                          const ExecuteOptions& options,
                                          const ReplanRunOptions& run_options,
                                          Replanner* replanner,
                                          const SwitchTrafficModel& traffic_model) {
  // Every rank finds the same answer to these: no agreement needed.
  ORRERY_RETURN_IF_ERROR(CheckRunOptions(run_options));
  ORRERY_RETURN_IF_ERROR(CheckExecutable(model, plan, world.size()));
  ORRERY_RETURN_IF_ERROR(CheckSlowRanks(options, world.size()));
  const bool root = world.rank() == 0;
  ORRERY_RETURN_IF_ERROR(world.AgreeOnStatus(
      root && replanner == nullptr
          ? InvalidArgumentError("RunWithReplanning: rank 0 needs a Replanner, got none")
          : Status::Ok()));

  // The first session's errors (the backend) come back on every rank.
  Result<std::unique_ptr<TrainingSession>> first =
      TrainingSession::Start(world, model, plan, options);
  ORRERY_RETURN_IF_ERROR(first.status());
  std::unique_ptr<TrainingSession> session = std::move(*first);

  ReplanRunResult result;
  workload::Plan current = plan;
  bool skip_next = run_options.skip_first_window;
  for (int index = 0; session->steps_done() < run_options.steps; ++index) {
    ReplanWindow window;
    window.index = index;
    window.plan = current;
    window.first_step = session->steps_done();
    const int64_t length =
        std::min<int64_t>(run_options.window, run_options.steps - window.first_step);
    for (int64_t k = 0; k < length; ++k) {
      world.Barrier();
      const double start = MpiWorld::Now();
      const TrainingSession::StepResult step = session->Step();
      const double seconds = MpiWorld::Now() - start;
      window.step_seconds.push_back(world.AllReduceMax(seconds));
      result.losses.push_back(step.loss);
      result.grad_norms.push_back(step.grad_norm);
    }
    window.median_step_seconds = Median(window.step_seconds);
    window.steps_left = run_options.steps - session->steps_done();

    const bool judged = !skip_next;
    skip_next = false;
    bool over = false;
    if (judged) {
      std::string answer;
      if (root) {
        Result<bool> verdict = replanner->OverMargin(window);
        if (!verdict.ok()) {
          world.Fail(verdict.status().WithContext("re-planner, after window " +
                                                  std::to_string(index)));
        }
        answer = *verdict ? "1" : "0";
      }
      over = world.BroadcastFromRoot(answer) == "1";
    }
    result.windows.push_back(window);
    result.over_margin.push_back(over);
    result.judged.push_back(judged);
    // After the last window no step is left to run under another plan.
    if (!over || window.steps_left == 0) continue;

    ProbeRecord probe;
    probe.after_window = index;
    world.Barrier();
    probe.probe_seconds.assign(static_cast<size_t>(world.size()), 0.0);
    probe.probe_seconds[static_cast<size_t>(world.rank())] =
        session->ProbeComputeSeconds(run_options.probe_repeats);
    world.AllReduceMax(probe.probe_seconds);  // every other rank's entry is 0

    std::string chosen;
    if (root) {
      Result<workload::Plan> decided = replanner->Decide(window, probe.probe_seconds);
      if (!decided.ok()) {
        world.Fail(decided.status().WithContext("re-planner, after window " +
                                                std::to_string(index)));
      }
      chosen = workload::PlanToJson(*decided).dump();
    }
    chosen = world.BroadcastFromRoot(chosen);
    // Compared in the form every rank received, so that all take the same
    // branch.
    probe.switched = chosen != workload::PlanToJson(current).dump();
    if (probe.switched) {
      Result<workload::Plan> next = workload::ParsePlanJsonText(
          chosen, "the plan the re-planner chose after window " + std::to_string(index));
      if (!next.ok()) world.Fail(next.status());
      const Status usable = CheckNextPlan(model, current, *next, world.size(), index);
      if (!usable.ok()) world.Fail(usable);

      SwitchRecord moved;
      moved.from_phase = index;
      session = SwitchSession(world, model, current, *next, options, std::move(session), moved);
      if (root && traffic_model) {
        Result<PredictedTraffic> predicted = traffic_model(current, *next, world.size());
        if (predicted.ok()) {
          moved.predicted = std::move(*predicted);
        } else {
          moved.prediction_error = predicted.status().ToString();
        }
      }
      result.switches.push_back(std::move(moved));
      current = std::move(*next);
      skip_next = run_options.skip_first_window;
    }
    result.probes.push_back(std::move(probe));
  }
  result.device = session->backend().device_name();
  if (!root) return ReplanRunResult{};
  return result;
}

}  // namespace orrery::exec
