// `orrery tune`: the whole loop on 2 ranks of gpt-tiny (profile, calibrate,
// search, execute, recalibrate, search again), its files, and bad flags.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

bool HaveMpirun() { return RunShell("command -v mpirun >/dev/null 2>&1").exit_code == 0; }

int Cores() {
  CliRun run = RunShell("nproc");
  return run.exit_code == 0 ? std::atoi(run.out.c_str()) : 0;
}

TEST(TuneCli, TwoRanksOfGptTinyRunRoundsUntilThePlanIsStable) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not found";
  if (Cores() < 2) GTEST_SKIP() << "cpu-local needs 2 cores for 2 ranks";
  const std::string dir = MakeTempDir("tune_gpt_tiny");
  CliRun run = RunOrrery(
      "tune --model gpt-tiny --cluster cpu-local --ranks 2 --global-batch 8 --seq-len 32 "
      "--backend cpu --max-rounds 2 --iterations 2 --format json --out " + dir);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  Result<Json> report = ParseJson(run.out, "tune's report");
  ASSERT_TRUE(report.ok()) << run.out;
  const Json& rounds = (*report)["rounds"];
  ASSERT_GE(rounds.size(), 1u);
  ASSERT_LE(rounds.size(), 2u);
  for (size_t r = 0; r < rounds.size(); ++r) {
    const Json& round = rounds[r];
    EXPECT_EQ(round["round"], static_cast<int>(r));
    const double predicted = round["predicted_iteration_time_s"].get<double>();
    const double measured = round["measured_iteration_time_s"].get<double>();
    EXPECT_GT(predicted, 0);
    EXPECT_GT(measured, 0);
    EXPECT_NEAR(round["error"].get<double>(), (predicted - measured) / measured, 1e-9);
    // A plan the 2 ranks ran: its devices are the ranks, at fp32.
    EXPECT_EQ(round["plan"]["precision"], "fp32") << DumpJson(round["plan"]);
    EXPECT_TRUE(std::filesystem::exists(dir + "/round" + std::to_string(r) + "/calibrated.json"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/round" + std::to_string(r) + "/plan.json"));
  }
  EXPECT_TRUE(rounds[0]["executed"].get<bool>());
  EXPECT_TRUE(std::filesystem::exists(dir + "/profile/compute_profile.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/profile/all_reduce.log"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/round0/trace/execution_trace.json"));
  const bool converged = (*report)["converged"].get<bool>();
  if (converged) {
    // Round 1 chose round 0's plan, which is not run again.
    ASSERT_EQ(rounds.size(), 2u);
    EXPECT_EQ(rounds[1]["plan"], rounds[0]["plan"]);
    EXPECT_FALSE(rounds[1]["executed"].get<bool>());
    EXPECT_EQ(rounds[1]["measured_iteration_time_s"], rounds[0]["measured_iteration_time_s"]);
  } else {
    // Two executions of two different plans.
    ASSERT_EQ(rounds.size(), 2u);
    EXPECT_NE(rounds[1]["plan"], rounds[0]["plan"]);
    EXPECT_TRUE(rounds[1]["executed"].get<bool>());
  }
  // The answer: the fastest plan measured.
  size_t answer = 0;
  for (size_t r = 1; r < rounds.size(); ++r) {
    if (rounds[r]["executed"].get<bool>() &&
        rounds[r]["measured_iteration_time_s"].get<double>() <
            rounds[answer]["measured_iteration_time_s"].get<double>()) {
      answer = r;
    }
  }
  EXPECT_EQ((*report)["plan"], rounds[answer]["plan"]);
  EXPECT_EQ((*report)["plan_round"], static_cast<int>(answer));
}

TEST(TuneCli, BadFlagsExitTwoNamingTheFlag) {
  struct Case {
    std::string args;
    std::string flag;
  };
  const std::string common = " --model gpt-tiny --cluster cpu-local --global-batch 8";
  for (const Case& c : {Case{"--backend cpu --ranks 4096" + common, "--ranks"},
                        Case{"--backend tpu" + common, "--backend"},
                        Case{"--backend cpu --model gpt-tiny --cluster cpu-local",
                             "--global-batch"},
                        Case{"--backend cpu --max-rounds 0" + common, "--max-rounds"},
                        Case{"--backend cpu --iterations 0" + common, "--iterations"},
                        Case{"--backend cpu --launcher ssh" + common, "--launcher"},
                        Case{"--backend cpu --cluster no-such-cluster --model gpt-tiny "
                             "--global-batch 8",
                             "--cluster"}}) {
    CliRun run = RunOrrery("tune " + c.args + " --out " + MakeTempDir("tune_bad"));
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.out;
    EXPECT_NE(run.err.find(c.flag), std::string::npos) << c.args << "\n" << run.err;
  }
}

TEST(TuneCli, HelpTeachesWithExamples) {
  CliRun run = RunOrrery("tune --help");
  ASSERT_EQ(run.exit_code, 0);
  for (const char* expected : {"Usage: orrery tune --model M --cluster C --global-batch B",
                               "--max-rounds", "--iterations", "--ranks", "converged",
                               "Examples:"}) {
    EXPECT_NE(run.out.find(expected), std::string::npos) << expected;
  }
}

}  // namespace
}  // namespace orrery::testing
