// MpiWorld and the MPI communicator across ranks: each case launches
// exec_comm_checks (tests/exec/comm_checks_main.cc) under mpirun, which runs
// one check on every rank against closed forms and exits non-zero when any
// rank found a difference. MPI can be initialized once per process, so no
// MPI runs in this test process itself.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/cli/cli_runner.h"

namespace orrery::exec {
namespace {

using ::orrery::testing::CliRun;
using ::orrery::testing::RunShell;

bool MpirunOnPath() { return RunShell("command -v mpirun").exit_code == 0; }

// `timeout` keeps a hang from stalling the suite: it turns one into a
// failure (exit 124).
CliRun RunChecks(int ranks, const std::string& check) {
  return RunShell("timeout 60 mpirun --oversubscribe --allow-run-as-root -np " +
                  std::to_string(ranks) + " " + ORRERY_EXEC_COMM_CHECKS + " " + check);
}

#define SKIP_WITHOUT_MPIRUN()                                              \
  do {                                                                     \
    if (!MpirunOnPath()) GTEST_SKIP() << "mpirun is not on PATH: no MPI launcher"; \
  } while (false)

TEST(Communicator, BlockingCollectivesOverTheWorldAndItsSubgroupsMatchTheirClosedForms) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(4, "collectives");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(Communicator, BlockingCollectivesWorkOnAnOddWorldWithGroupsOfOne) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(3, "collectives");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(Communicator, AsyncCollectivesOverlapOtherWorkAndMayBeWaitedOutOfOrder) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(4, "async");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(Communicator, ABatchedRingExchangeInBothDirectionsDoesNotDeadlock) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(4, "ring");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(Communicator, MessagesBetweenTwoPeersArriveInTheOrderTheyWereSent) {
  SKIP_WITHOUT_MPIRUN();
  // With two ranks the next and the previous rank are the same peer.
  CliRun run = RunChecks(2, "ring");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(Communicator, CountsAboveTheLimitOfOneMpiCallAreSplitIntoChunks) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(3, "chunked");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(Communicator, GroupsThatDoNotPartitionTheWorldAreInvalidArgumentsWithoutAHang) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(3, "bad-group");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(MpiWorld, AgreeOnStatusGivesEveryRankTheLowestFailingRanksError) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(3, "agree");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(MpiWorld, GatherToRootCollectsMessagesOfDifferentLengthsInRankOrder) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks(3, "gather");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(MpiWorld, FailTakesTheWholeJobDownWithTheFailingRanksMessage) {
  SKIP_WITHOUT_MPIRUN();
  const auto start = std::chrono::steady_clock::now();
  CliRun run = RunChecks(3, "fail");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.exit_code, 124) << "the job hung instead of aborting";
  EXPECT_NE(run.err.find("orrery: rank 1 ("), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("boom"), std::string::npos) << run.err;
  EXPECT_LT(seconds, 10.0);
}

TEST(MpiWorld, JoinOutsideALauncherIsAWorldOfOne) {
  SKIP_WITHOUT_MPIRUN();  // the singleton still needs Open MPI's runtime
  CliRun run = RunShell(std::string("timeout 60 ") + ORRERY_EXEC_COMM_CHECKS + " world-of-one");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

}  // namespace
}  // namespace orrery::exec
