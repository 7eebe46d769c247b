// Training that re-plans itself (exec/replan_runner.h), over MPI through
// exec_replan_runner_checks under `mpirun --oversubscribe -np 2`
// (tests/exec/replan_runner_checks_main.cc says what each check requires).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/cli/cli_runner.h"

namespace orrery::exec {
namespace {

using ::orrery::testing::CliRun;
using ::orrery::testing::RunShell;
using ::testing::HasSubstr;

bool MpirunOnPath() { return RunShell("command -v mpirun").exit_code == 0; }

CliRun RunChecks(const std::string& check) {
  return RunShell(std::string("timeout 180 mpirun --oversubscribe --allow-run-as-root -np 2 ") +
                  ORRERY_EXEC_REPLAN_RUNNER_CHECKS + " " + check);
}

#define SKIP_WITHOUT_MPIRUN()                                                      \
  do {                                                                             \
    if (!MpirunOnPath()) GTEST_SKIP() << "mpirun is not on PATH: no MPI launcher"; \
  } while (false)

TEST(RunWithReplanningOverMpi, ASwitchAfterAWindowOverTheMarginTrainsAsEitherPlanAlone) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("switch");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(RunWithReplanningOverMpi, KeepingThePlanProbesButTrainsExactlyAsTheUnswitchedRun) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("keep");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(RunWithReplanningOverMpi, TheProbeFindsARankSlowedThreeTimes) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("straggler");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(RunWithReplanningOverMpi, BadOptionsAPlanForOtherRanksOrNoReplannerAreRefusedOnEveryRank) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("errors");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(RunWithReplanningOverMpi, APlanOfAnotherGlobalBatchFromTheReplannerAbortsTheJobNamingIt) {
  SKIP_WITHOUT_MPIRUN();
  const CliRun run = RunChecks("bad-plan");
  EXPECT_NE(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(run.err, HasSubstr("the plan the re-planner chose after window 0 cannot replace "
                                 "the running plan"));
  EXPECT_THAT(run.err, HasSubstr("field 'global_batch_size': 16, the running plan's is 8"));
  EXPECT_THAT(run.err, ::testing::Not(HasSubstr("a plan of another global batch was accepted")));
}

}  // namespace
}  // namespace orrery::exec
