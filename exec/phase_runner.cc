#include "exec/phase_runner.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "core/statistics.h"
#include "exec/backend.h"
#include "exec/communicator.h"
#include "exec/reshard.h"

namespace orrery::exec {

int64_t SwitchRecord::total_bytes() const {
  int64_t n = 0;
  for (const int64_t b : bytes_sent) n += b;
  return n;
}

bool SwitchRecord::PredictionAgrees() const {
  return predicted.has_value() && predicted->bytes_sent == bytes_sent &&
         predicted->bytes_received == bytes_received;
}

namespace {

// "phases.json: field 'phases[1].plan' (phase '128k'): <what>".
std::string FieldMessage(const workload::PhaseSchedule& schedule, size_t index,
                         const std::string& field, const std::string& what) {
  const std::string source = schedule.source.empty() ? "phases" : schedule.source;
  std::string s = source + ": field 'phases[" + std::to_string(index) + "]." + field + "'";
  const std::string& name = schedule.phases[index].name;
  if (!name.empty()) s += " (phase '" + name + "')";
  return s + ": " + what;
}

bool SameRuns(const StateMap& a, const StateMap& b) {
  if (a.parameter_elements != b.parameter_elements || a.moment_elements != b.moment_elements ||
      a.runs.size() != b.runs.size()) {
    return false;
  }
  for (size_t i = 0; i < a.runs.size(); ++i) {
    const StateRun& x = a.runs[i];
    const StateRun& y = b.runs[i];
    if (x.kind != y.kind || x.tensor != y.tensor || x.begin != y.begin || x.length != y.length ||
        x.space != y.space || x.offset != y.offset) {
      return false;
    }
  }
  return true;
}

// Every rank's `mine`, in rank order, on every rank.
std::vector<int64_t> AllRanks(const MpiWorld& world, int64_t mine) {
  // Exact: every value here is a byte or message count far below 2^53.
  std::vector<double> values(static_cast<size_t>(world.size()), 0.0);
  values[static_cast<size_t>(world.rank())] = static_cast<double>(mine);
  world.AllReduceMax(values);
  std::vector<int64_t> out;
  out.reserve(values.size());
  for (const double v : values) out.push_back(static_cast<int64_t>(v));
  return out;
}

std::unique_ptr<TrainingSession> StartOrFail(MpiWorld& world, const workload::ModelSpec& model,
                                             const workload::Plan& plan,
                                             const ExecuteOptions& options) {
  Result<std::unique_ptr<TrainingSession>> started =
      TrainingSession::Start(world, model, plan, options);
  if (!started.ok()) world.Fail(started.status());
  return std::move(*started);
}

}  // namespace

std::unique_ptr<TrainingSession> SwitchSession(MpiWorld& world,
                                               const workload::ModelSpec& model,
                                               const workload::Plan& current,
                                               const workload::Plan& next,
                                               const ExecuteOptions& options,
                                               std::unique_ptr<TrainingSession> session,
                                               SwitchRecord& record) {
  world.Barrier();
  const double start = MpiWorld::Now();
  record.after_step = session->steps_done();
  const TrainerState exported = session->ExportState();

  Result<std::vector<StateMap>> from = DescribeStates(model, current, options, world.size());
  if (!from.ok()) world.Fail(from.status());
  Result<std::vector<StateMap>> to = DescribeStates(model, next, options, world.size());
  if (!to.ok()) world.Fail(to.status());
  Result<ReshardPlan> plan = PlanReshard(*from, *to);
  if (!plan.ok()) world.Fail(plan.status());
  const double planning = MpiWorld::Now() - start;
  record.same_layout = from->size() == to->size();
  for (size_t r = 0; record.same_layout && r < from->size(); ++r) {
    record.same_layout = SameRuns((*from)[r], (*to)[r]);
  }
  record.planned_sent = plan->bytes_sent;
  record.planned_received = plan->bytes_received;
  record.planned_kept = plan->bytes_kept;
  record.transfers = static_cast<int>(plan->transfers.size());
  record.messages = plan->messages();

  ReshardResult moved;
  {
    std::vector<int> everyone(static_cast<size_t>(world.size()));
    for (int r = 0; r < world.size(); ++r) everyone[static_cast<size_t>(r)] = r;
    Result<std::unique_ptr<Communicator>> comm =
        MakeCommunicator(world, session->backend(), everyone);
    if (!comm.ok()) world.Fail(comm.status());
    Result<ReshardResult> result =
        ExecuteReshard(*plan, *from, *to, exported, **comm, session->backend());
    if (!result.ok()) world.Fail(result.status());
    moved = std::move(*result);
  }  // the communicator goes before the backend it was made on
  session.reset();  // the old plan's memory is released before the new plan's is taken

  std::unique_ptr<TrainingSession> started = StartOrFail(world, model, next, options);
  const Status imported = started->ImportState(moved.state);
  if (!imported.ok()) world.Fail(imported.WithContext("importing the re-sharded state"));
  world.Barrier();
  const double total = MpiWorld::Now() - start;

  record.bytes_sent = AllRanks(world, moved.bytes_sent);
  record.bytes_received = AllRanks(world, moved.bytes_received);
  const std::vector<int64_t> messages = AllRanks(world, moved.messages_sent);
  record.messages_sent.assign(messages.begin(), messages.end());
  record.planning_seconds = world.AllReduceMax(planning);
  record.exchange_seconds = world.AllReduceMax(moved.seconds);
  record.total_seconds = world.AllReduceMax(total);
  return started;
}

Status CheckPhases(const workload::ModelSpec& model, const workload::PhaseSchedule& schedule,
                   int world_size) {
  std::vector<std::string> reasons;
  if (schedule.phases.empty()) {
    const std::string source = schedule.source.empty() ? "phases" : schedule.source;
    return InvalidArgumentError(source + ": field 'phases': must list at least one phase");
  }
  for (size_t i = 0; i < schedule.phases.size(); ++i) {
    const workload::TrainingPhase& phase = schedule.phases[i];
    const std::string length_field = phase.steps.has_value() ? "steps" : "tokens";
    if (phase.Steps() < 1) {
      reasons.push_back(FieldMessage(schedule, i, length_field,
                                     "the phase must last at least one step, it lasts " +
                                         std::to_string(phase.Steps())));
    }
    if (!phase.plan.has_value()) {
      reasons.push_back(FieldMessage(
          schedule, i, "plan",
          "missing: orrery execute --phases runs every phase under its own plan (a plan "
          "file or an inline plan; `orrery search --phases --out F` fills them in)"));
      continue;
    }
    const workload::Plan& plan = *phase.plan;
    if (plan.global_batch_size != phase.global_batch_size) {
      reasons.push_back(FieldMessage(schedule, i, "plan",
                                     "its global batch " + std::to_string(plan.global_batch_size) +
                                         " differs from the phase's " +
                                         std::to_string(phase.global_batch_size)));
    }
    if (plan.sequence_length != phase.sequence_length) {
      reasons.push_back(FieldMessage(schedule, i, "plan",
                                     "its sequence length " +
                                         std::to_string(plan.sequence_length) +
                                         " differs from the phase's " +
                                         std::to_string(phase.sequence_length)));
    }
    const Status executable = CheckExecutable(model, plan, world_size);
    if (!executable.ok()) {
      reasons.push_back(FieldMessage(
          schedule, i, "plan",
          executable.message() + "\n  (every phase runs on the job's " +
              std::to_string(world_size) + " rank" + (world_size == 1 ? "" : "s") +
              ": re-sharding moves the state between plans over the same ranks)"));
    }
  }
  if (reasons.empty()) return Status::Ok();
  std::string message = reasons.front();
  for (size_t i = 1; i < reasons.size(); ++i) message += "\n" + reasons[i];
  return InvalidArgumentError(message);
}

Result<PhasesResult> RunPhases(MpiWorld& world, const workload::ModelSpec& model,
                               const workload::PhaseSchedule& schedule,
                               const ExecuteOptions& options,
                               const SwitchTrafficModel& traffic_model) {
  ORRERY_RETURN_IF_ERROR(CheckPhases(model, schedule, world.size()));
  const bool root = world.rank() == 0;

  // The first session's errors (the backend) come back on every rank.
  Result<std::unique_ptr<TrainingSession>> first =
      TrainingSession::Start(world, model, *schedule.phases.front().plan, options);
  ORRERY_RETURN_IF_ERROR(first.status());
  std::unique_ptr<TrainingSession> session = std::move(*first);

  PhasesResult result;
  for (size_t i = 0; i < schedule.phases.size(); ++i) {
    const workload::TrainingPhase& phase = schedule.phases[i];
    const workload::Plan& plan = *phase.plan;
    PhaseRecord record;
    record.name = phase.name;
    record.plan = plan;
    record.steps = phase.Steps();
    if (i > 0) {
      const workload::Plan& previous = *schedule.phases[i - 1].plan;
      if (!(previous == plan)) {
        SwitchRecord moved;
        moved.from_phase = static_cast<int>(i) - 1;
        session = SwitchSession(world, model, previous, plan, options, std::move(session), moved);
        if (root && traffic_model) {
          Result<PredictedTraffic> predicted = traffic_model(previous, plan, world.size());
          if (predicted.ok()) {
            moved.predicted = std::move(*predicted);
          } else {
            moved.prediction_error = predicted.status().ToString();
          }
        }
        record.switched = true;
        result.switches.push_back(std::move(moved));
      }
    }
    record.first_step = session->steps_done();
    for (int64_t k = 0; k < record.steps; ++k) {
      world.Barrier();
      const double start = MpiWorld::Now();
      const TrainingSession::StepResult step = session->Step();
      const double seconds = MpiWorld::Now() - start;
      record.step_seconds.push_back(world.AllReduceMax(seconds));
      record.losses.push_back(step.loss);
      record.grad_norms.push_back(step.grad_norm);
    }
    record.median_step_seconds = Median(record.step_seconds);
    result.phases.push_back(std::move(record));
  }
  result.device = session->backend().device_name();
  if (!root) return PhasesResult{};
  return result;
}

}  // namespace orrery::exec
