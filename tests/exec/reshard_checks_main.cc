// exec_reshard_checks: the multi-rank checks of re-sharding (exec/reshard.h),
// run under mpirun by tests/exec/reshard_test.cc:
//
//   mpirun -np 2 exec_reshard_checks <check> [cpu|cuda]
//
// A check trains gpt-tiny (8 samples of 32 tokens, micro-batches of 1) for
// 6 steps three ways — under the old plan, under the new plan, and under
// the old plan for 3 steps, then re-sharded in memory to the new plan and
// trained 3 more — and requires:
//   * every step's loss of the switched run to agree with both unswitched
//     runs to 1e-5 relative, and its gradient norm to 1e-4 relative (the
//     executor's tolerances against the single-rank run, docs/executor.md
//     "Correctness"); the first 3 steps equal the old plan's exactly;
//   * the bytes this rank sent and received, counted at the communicator,
//     to equal the plan's per-rank totals exactly, and the switch cost
//     model's (costmodel/reshard_cost.h, fp32 Adam state), as its
//     messages do;
//   * each session's layout to equal TrainerStateLayout's for its rank.
// Rank 0 prints one line: the plan's bytes per rank and the exchange time.
//
// Checks: dp2-tp2, pp2-dp2, zero3-tpsp (dp 2 with ZeRO 3 to tp 2 with
// sequence parallelism), tp2-zero1 (tp 2 to dp 2 with ZeRO 1).
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "costmodel/reshard_cost.h"
#include "exec/backend.h"
#include "exec/communicator.h"
#include "exec/mpi_world.h"
#include "exec/reshard.h"
#include "exec/runtime.h"
#include "tests/exec/mpi_checks.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using workload::LayerStrategy;
using workload::ModelSpec;
using workload::Plan;

constexpr int kSteps = 6;
constexpr int kSwitchAfter = 3;

Plan TinyPlan(const ModelSpec& model, int pp, LayerStrategy layer) {
  Plan plan = Plan::Uniform(model, pp, layer, /*global_batch_size=*/8, /*micro_batch_size=*/1);
  plan.sequence_length = 32;
  return plan;
}

bool SameMaps(const StateMap& a, const StateMap& b) {
  if (a.rank != b.rank || a.parameter_elements != b.parameter_elements ||
      a.moment_elements != b.moment_elements || a.runs.size() != b.runs.size()) {
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

std::unique_ptr<TrainingSession> StartOrFail(MpiWorld& world, const ModelSpec& model,
                                             const Plan& plan, const ExecuteOptions& options) {
  Result<std::unique_ptr<TrainingSession>> s = TrainingSession::Start(world, model, plan, options);
  if (!s.ok()) world.Fail(s.status());
  return std::move(*s);
}

// Losses and gradient norms of `steps` steps of `plan` from the start.
std::vector<TrainingSession::StepResult> Train(MpiWorld& world, const ModelSpec& model,
                                               const Plan& plan, const ExecuteOptions& options,
                                               Findings& findings, const char* what) {
  std::unique_ptr<TrainingSession> session = StartOrFail(world, model, plan, options);
  Result<TrainerLayout> expected =
      TrainerStateLayout(model, plan, options, world.size(), world.rank());
  findings.Expect(expected.ok() && SameMaps(DescribeState(*expected),
                                            DescribeState(session->layout())),
                  std::string(what) + ": the session's layout differs from TrainerStateLayout's");
  std::vector<TrainingSession::StepResult> out;
  for (int i = 0; i < kSteps; ++i) out.push_back(session->Step());
  return out;
}

void CheckSwitch(MpiWorld& world, BackendKind backend_kind, const Plan& old_plan,
                 const Plan& new_plan, const ModelSpec& model, const std::string& name,
                 Findings& findings) {
  ExecuteOptions options;
  options.backend = backend_kind;
  const std::vector<TrainingSession::StepResult> old_only =
      Train(world, model, old_plan, options, findings, "old plan");
  const std::vector<TrainingSession::StepResult> new_only =
      Train(world, model, new_plan, options, findings, "new plan");

  std::vector<TrainingSession::StepResult> switched;
  ReshardResult moved;
  ReshardPlan plan;
  double plan_seconds = 0;
  {
    std::unique_ptr<TrainingSession> before = StartOrFail(world, model, old_plan, options);
    for (int i = 0; i < kSwitchAfter; ++i) switched.push_back(before->Step());
    const TrainerState exported = before->ExportState();
    const double plan_start = MpiWorld::Now();
    Result<std::vector<StateMap>> from = DescribeStates(model, old_plan, options, world.size());
    Result<std::vector<StateMap>> to = DescribeStates(model, new_plan, options, world.size());
    if (!from.ok()) world.Fail(from.status());
    if (!to.ok()) world.Fail(to.status());
    Result<ReshardPlan> planned = PlanReshard(*from, *to);
    if (!planned.ok()) world.Fail(planned.status());
    plan = std::move(*planned);
    plan_seconds = MpiWorld::Now() - plan_start;
    std::vector<int> everyone(static_cast<size_t>(world.size()));
    for (int r = 0; r < world.size(); ++r) everyone[static_cast<size_t>(r)] = r;
    Result<std::unique_ptr<Communicator>> comm =
        MakeCommunicator(world, before->backend(), everyone);
    if (!comm.ok()) world.Fail(comm.status());
    world.Barrier();
    Result<ReshardResult> result =
        ExecuteReshard(plan, *from, *to, exported, **comm, before->backend());
    if (!result.ok()) world.Fail(result.status());
    moved = std::move(*result);
  }
  std::unique_ptr<TrainingSession> after = StartOrFail(world, model, new_plan, options);
  const Status imported = after->ImportState(moved.state);
  findings.Expect(imported.ok(), "ImportState: " + imported.ToString());
  findings.Expect(after->steps_done() == kSwitchAfter,
                  "the step count after the switch is " + std::to_string(after->steps_done()));
  for (int i = kSwitchAfter; i < kSteps; ++i) switched.push_back(after->Step());

  const size_t me = static_cast<size_t>(world.rank());
  findings.Expect(moved.bytes_sent == plan.bytes_sent[me],
                  "sent " + std::to_string(moved.bytes_sent) + " bytes, the plan says " +
                      std::to_string(plan.bytes_sent[me]));
  findings.Expect(moved.bytes_received == plan.bytes_received[me],
                  "received " + std::to_string(moved.bytes_received) + " bytes, the plan says " +
                      std::to_string(plan.bytes_received[me]));
  // The switch cost model counts the same bytes and messages, from the
  // plans alone.
  costmodel::StateLayoutOptions layout;
  layout.bucket_parameters = options.bucket_parameters;
  layout.bytes = costmodel::StateBytes::Fp32Adam();
  Result<costmodel::ReshardTraffic> predicted = costmodel::ComputeReshardTraffic(
      model, old_plan, world.size(), new_plan, world.size(), world.local_size(), layout);
  findings.Expect(predicted.ok(), "ComputeReshardTraffic: " + predicted.status().ToString());
  if (predicted.ok()) {
    findings.Expect(moved.bytes_sent == predicted->bytes_sent[me],
                    "sent " + std::to_string(moved.bytes_sent) +
                        " bytes, the switch cost model says " +
                        std::to_string(predicted->bytes_sent[me]));
    findings.Expect(moved.bytes_received == predicted->bytes_received[me],
                    "received " + std::to_string(moved.bytes_received) +
                        " bytes, the switch cost model says " +
                        std::to_string(predicted->bytes_received[me]));
    findings.Expect(moved.messages_sent == predicted->messages_sent[me] &&
                        moved.messages_received == predicted->messages_received[me],
                    "messages sent/received " + std::to_string(moved.messages_sent) + "/" +
                        std::to_string(moved.messages_received) +
                        ", the switch cost model says " +
                        std::to_string(predicted->messages_sent[me]) + "/" +
                        std::to_string(predicted->messages_received[me]));
  }
  for (int i = 0; i < kSteps; ++i) {
    const size_t k = static_cast<size_t>(i);
    for (const auto* reference : {&old_only, &new_only}) {
      const char* which = reference == &old_only ? "old-plan" : "new-plan";
      const double loss = (*reference)[k].loss;
      const double norm = (*reference)[k].grad_norm;
      findings.Expect(std::fabs(switched[k].loss - loss) <= 1e-5 * std::fabs(loss),
                      "step " + std::to_string(i) + ": loss " +
                          std::to_string(switched[k].loss) + ", the " + which + " run's " +
                          std::to_string(loss));
      findings.Expect(std::fabs(switched[k].grad_norm - norm) <= 1e-4 * norm,
                      "step " + std::to_string(i) + ": gradient norm " +
                          std::to_string(switched[k].grad_norm) + ", the " + which +
                          " run's " + std::to_string(norm));
    }
    if (i < kSwitchAfter) {
      findings.Expect(switched[k].loss == old_only[k].loss,
                      "step " + std::to_string(i) + " before the switch differs from the old "
                      "plan's run");
    }
  }
  const double slowest = world.AllReduceMax(moved.seconds);
  const double slowest_plan = world.AllReduceMax(plan_seconds);
  if (world.rank() == 0) {
    std::string line = name + ": " + std::to_string(plan.transfers.size()) + " transfers in " +
                       std::to_string(plan.messages()) + " messages;";
    for (int r = 0; r < world.size(); ++r) {
      line += " rank " + std::to_string(r) + " sends " +
              std::to_string(plan.bytes_sent[static_cast<size_t>(r)]) + " B, receives " +
              std::to_string(plan.bytes_received[static_cast<size_t>(r)]) + " B, keeps " +
              std::to_string(plan.bytes_kept[static_cast<size_t>(r)]) + " B;";
    }
    char timing[128];
    std::snprintf(timing, sizeof(timing),
                  " planning %.3f ms, exchange %.3f ms (slowest rank of each)",
                  slowest_plan * 1e3, slowest * 1e3);
    std::printf("%s%s\n", line.c_str(), timing);
    for (int i = 0; i < kSteps; ++i) {
      const size_t k = static_cast<size_t>(i);
      std::printf("  step %d loss %.8f (old %.8f, new %.8f)\n", i, switched[k].loss,
                  old_only[k].loss, new_only[k].loss);
    }
  }
}

int Main(int argc, char** argv) {
  const ModelSpec model = *workload::ModelPreset("gpt-tiny");
  const Plan dp2 = TinyPlan(model, 1, LayerStrategy{.dp = 2});
  const Plan tp2 = TinyPlan(model, 1, LayerStrategy{.tp = 2});
  const Plan pp2 = TinyPlan(model, 2, LayerStrategy{});
  const Plan dp2_zero3 = TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 3});
  const Plan dp2_zero1 = TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 1});
  const Plan tp2_sp = TinyPlan(model, 1, LayerStrategy{.tp = 2, .sequence_parallel = true});
  const std::map<std::string, std::pair<const Plan*, const Plan*>> switches = {
      {"dp2-tp2", {&dp2, &tp2}},
      {"pp2-dp2", {&pp2, &dp2}},
      {"zero3-tpsp", {&dp2_zero3, &tp2_sp}},
      {"tp2-zero1", {&tp2, &dp2_zero1}}};
  std::map<std::string, MpiCheck> checks;
  for (const auto& [name, plans] : switches) {
    checks.emplace(name, [&model, name = name, plans = plans](MpiWorld& world, BackendKind kind,
                                                              Findings& findings) {
      CheckSwitch(world, kind, *plans.first, *plans.second, model, name, findings);
      return Status();
    });
  }
  return RunMpiChecks(argc, argv, "exec_reshard_checks", checks);
}

}  // namespace
}  // namespace orrery::exec

int main(int argc, char** argv) { return orrery::exec::Main(argc, argv); }
