// Running a phases file (exec/phase_runner.h): the checks made before
// anything runs, in process, and the phase runs over MPI through
// exec_phase_runner_checks under `mpirun --oversubscribe -np 2`
// (tests/exec/phase_runner_checks_main.cc says what each check requires).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/status.h"
#include "exec/phase_runner.h"
#include "tests/cli/cli_runner.h"
#include "workload/model_presets.h"
#include "workload/phases.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using ::orrery::testing::CliRun;
using ::orrery::testing::RunShell;
using ::testing::HasSubstr;
using ::testing::Not;
using workload::LayerStrategy;
using workload::ModelSpec;
using workload::PhaseSchedule;
using workload::Plan;
using workload::TrainingPhase;

ModelSpec GptTiny() { return *workload::ModelPreset("gpt-tiny"); }

Plan TinyPlan(const ModelSpec& model, int pp, LayerStrategy layer) {
  Plan plan = Plan::Uniform(model, pp, layer, /*global_batch_size=*/8, /*micro_batch_size=*/1);
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

PhaseSchedule Schedule(std::vector<TrainingPhase> phases) {
  PhaseSchedule schedule;
  schedule.source = "phases.json";
  schedule.phases = std::move(phases);
  return schedule;
}

TEST(CheckPhases, AcceptsPlansThatAllRunOnTheJobsRanks) {
  const ModelSpec model = GptTiny();
  const PhaseSchedule schedule =
      Schedule({Phase("a", TinyPlan(model, 1, LayerStrategy{.dp = 2}), 3),
                Phase("b", TinyPlan(model, 2, LayerStrategy{}), 3)});
  EXPECT_TRUE(CheckPhases(model, schedule, 2).ok());
}

TEST(CheckPhases, APhaseWithoutAPlanNamesTheFileThePhaseAndTheField) {
  const ModelSpec model = GptTiny();
  PhaseSchedule schedule = Schedule({Phase("a", TinyPlan(model, 1, LayerStrategy{.dp = 2}), 3),
                                     Phase("long", TinyPlan(model, 1, LayerStrategy{.dp = 2}), 3)});
  schedule.phases[1].plan.reset();
  const Status status = CheckPhases(model, schedule, 2);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("phases.json: field 'phases[1].plan' (phase 'long'): missing"));
  EXPECT_THAT(status.message(), Not(HasSubstr("phases[0]")));
}

TEST(CheckPhases, APlanForAnotherNumberOfRanksIsRefused) {
  const ModelSpec model = GptTiny();
  const PhaseSchedule schedule =
      Schedule({Phase("a", TinyPlan(model, 1, LayerStrategy{.dp = 2}), 3),
                Phase("b", TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 2}), 3)});
  const Status status = CheckPhases(model, schedule, 2);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("phases.json: field 'phases[1].plan' (phase 'b')"));
  EXPECT_THAT(status.message(), HasSubstr("needs 4 ranks"));
  EXPECT_THAT(status.message(), HasSubstr("the job has 2"));
}

TEST(CheckPhases, EveryReasonIsListedIncludingAPhaseOfNoSteps) {
  const ModelSpec model = GptTiny();
  PhaseSchedule schedule = Schedule({Phase("a", TinyPlan(model, 1, LayerStrategy{.dp = 2}), 0),
                                     Phase("b", TinyPlan(model, 1, LayerStrategy{.dp = 2}), 3)});
  schedule.phases[1].global_batch_size = 16;  // the plan's is 8
  const Status status = CheckPhases(model, schedule, 2);
  EXPECT_THAT(status.message(), HasSubstr("field 'phases[0].steps' (phase 'a'): the phase must "
                                          "last at least one step"));
  EXPECT_THAT(status.message(),
              HasSubstr("field 'phases[1].plan' (phase 'b'): its global batch 8 differs from "
                        "the phase's 16"));
}

bool MpirunOnPath() { return RunShell("command -v mpirun").exit_code == 0; }

CliRun RunChecks(const std::string& check) {
  return RunShell(std::string("timeout 180 mpirun --oversubscribe --allow-run-as-root -np 2 ") +
                  ORRERY_EXEC_PHASE_RUNNER_CHECKS + " " + check);
}

#define SKIP_WITHOUT_MPIRUN()                                                      \
  do {                                                                             \
    if (!MpirunOnPath()) GTEST_SKIP() << "mpirun is not on PATH: no MPI launcher"; \
  } while (false)

TEST(RunPhasesOverMpi, DataThenTensorParallelTrainsAsEitherPlanAloneAndCountsTheModelsBytes) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("dp2-tp2");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(RunPhasesOverMpi, PipelineThenDataParallelTrainsAsEitherPlanAloneAndCountsTheModelsBytes) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("pp2-dp2");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(RunPhasesOverMpi, ABatchRampUpWithAPlanChangeTrainsAsTheSameRampUpWithout) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("rampup");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

}  // namespace
}  // namespace orrery::exec
