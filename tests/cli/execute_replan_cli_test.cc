// Re-planning at run time through the real binary (cli/replan.h,
// docs/replanning.md): `orrery tune --replan --slow-rank 1:3` on 2 ranks of
// gpt-tiny finds the straggler during round 0's run, switches to a
// pipeline that gives rank 1 the smaller stage, and searches round 1 with
// the slow device it measured; `orrery execute --replan` on the tune's
// calibrated cluster does the same from dp 2 and trains exactly as dp 2
// alone (the losses of every step, to the executor's 1e-5 relative);
// without a straggler nothing is switched; bad flags are refused before
// anything runs. The runs are timed, so the binary runs alone (SERIAL).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kMpirun[] = "timeout 300 mpirun --oversubscribe --allow-run-as-root -np 2 ";

bool HaveMpirun() { return RunShell("command -v mpirun >/dev/null 2>&1").exit_code == 0; }

int Cores() {
  CliRun run = RunShell("nproc");
  return run.exit_code == 0 ? std::atoi(run.out.c_str()) : 0;
}

std::string Orrery() { return OrreryBinary(); }

// The tune of the first test, shared: its round 0 calibration is what the
// execute tests predict with.
class ReplanCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("replan_cli"));
    tune_ = new CliRun(RunOrrery(
        "tune --model gpt-tiny --cluster cpu-local --ranks 2 --global-batch 8 --seq-len 32 "
        "--backend cpu --max-rounds 2 --iterations 16 --replan 0.2 --replan-window 4 "
        "--slow-rank 1:3 --format json --out " + *dir_));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete tune_;
  }
  void SetUp() override {
    if (!HaveMpirun()) GTEST_SKIP() << "mpirun not found";
    if (Cores() < 2) GTEST_SKIP() << "cpu-local needs 2 cores for 2 ranks";
    ASSERT_EQ(tune_->exit_code, 0) << tune_->err << tune_->out;
  }
  static std::string Calibrated() { return *dir_ + "/round0/calibrated.json"; }

  static std::string* dir_;
  static CliRun* tune_;
};

std::string* ReplanCli::dir_ = nullptr;
CliRun* ReplanCli::tune_ = nullptr;

// Layers of the stage of `rank` in `plan` (JSON), 2 stages of one rank.
int StageLayersOfRank(const Json& plan, int rank) {
  const Json& pipeline = plan["pipeline"];
  if (pipeline["pp"].get<int>() != 2) return -1;
  if (!pipeline.contains("stage_layers")) return 2;
  return pipeline["stage_layers"][static_cast<size_t>(rank)].get<int>();
}

TEST_F(ReplanCli, TuneFindsTheStragglerAtRunTimeAndSearchesWithIt) {
  Result<Json> report = ParseJson(tune_->out, "tune's report");
  ASSERT_TRUE(report.ok()) << tune_->out;
  const Json& rounds = (*report)["rounds"];
  ASSERT_GE(rounds.size(), 2u);
  // Round 0's search knew nothing; its run measured rank 1 slow.
  EXPECT_TRUE(rounds[0]["faults_searched"].empty());
  ASSERT_EQ(rounds[0]["faults_measured"].size(), 1u) << DumpJson(rounds[0]);
  const std::string fault = rounds[0]["faults_measured"][0].get<std::string>();
  EXPECT_EQ(fault.substr(0, 2), "1:") << fault;
  EXPECT_GT(std::stod(fault.substr(2)), 1.5) << fault;
  // A switch at run time goes to a pipeline giving rank 1 fewer layers
  // (whether the run switches depends on the predicted gain: min_gain).
  if (rounds[0].contains("replanned")) {
    EXPECT_LT(StageLayersOfRank(rounds[0]["replanned"]["plan"], 1), 2)
        << DumpJson(rounds[0]["replanned"]);
    EXPECT_TRUE(std::filesystem::exists(*dir_ + "/round0/final_plan.json"));
  }
  // Round 1 searched with what round 0 measured.
  EXPECT_EQ(rounds[1]["faults_searched"][0], fault);
  // Re-planned runs are not traced (a straggler would mis-teach calibrate).
  EXPECT_FALSE(std::filesystem::exists(*dir_ + "/round0/trace/execution_trace.json"));
  EXPECT_THAT(tune_->err, HasSubstr("replan: window 1: measured"));
  EXPECT_THAT(tune_->err, HasSubstr("probe: rank 1 "));
}

TEST_F(ReplanCli, ExecuteSwitchesAwayFromAStragglerAndTrainsAsOnePlan) {
  const std::string out = *dir_ + "/execute-replan.json";
  const std::string flags =
      " execute --model gpt-tiny --dp 2 --global-batch 8 --seq-len 32 --backend cpu ";
  CliRun run = RunShell(kMpirun + Orrery() + flags +
                        "--iterations 16 --replan 0.2 --replan-window 4 --cluster " +
                        Calibrated() + " --slow-rank 1:3 --out " + out);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_THAT(run.out, HasSubstr("re-planning: margin 20%, windows of 4 steps"));
  EXPECT_THAT(run.out, HasSubstr("warm-up (not judged)"));
  EXPECT_THAT(run.out, HasSubstr("decision: switch: the gain over the 8 steps left"));
  EXPECT_THAT(run.out, HasSubstr("switch after step 8:"));
  EXPECT_THAT(run.err, HasSubstr("replan: window 1: replanning at a measured"));

  Result<Json> j = ReadJsonFile(out);
  ASSERT_TRUE(j.ok()) << j.status().message();
  ASSERT_EQ((*j)["windows"].size(), 4u);
  EXPECT_FALSE((*j)["windows"][0]["judged"].get<bool>());
  EXPECT_TRUE((*j)["windows"][1]["over_margin"].get<bool>());
  ASSERT_GE((*j)["decisions"].size(), 1u);
  const Json& decision = (*j)["decisions"][0];
  EXPECT_TRUE(decision["switch_plan"].get<bool>()) << DumpJson(decision);
  EXPECT_GT(decision["factors"][1].get<double>(), 1.5);
  EXPECT_EQ(decision["factors"][0].get<double>(), 1.0);
  EXPECT_LT(StageLayersOfRank((*j)["final_plan"], 1), 2) << DumpJson((*j)["final_plan"]);
  ASSERT_EQ((*j)["switches"].size(), 1u);
  EXPECT_EQ((*j)["switches"][0]["after_step"], 8);
  EXPECT_TRUE((*j)["switches"][0]["cost_model_bytes_agree"].get<bool>());

  // dp 2 alone, 16 steps: the same losses.
  CliRun alone = RunShell(kMpirun + Orrery() + flags + "--iterations 16 --warmup 0 --format json");
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  Result<Json> a = ParseJson(alone.out, "execute's report");
  ASSERT_TRUE(a.ok()) << alone.out;
  const std::vector<double> expected = (*a)["losses"].get<std::vector<double>>();
  const std::vector<double> losses = (*j)["losses"].get<std::vector<double>>();
  ASSERT_EQ(losses.size(), 16u);
  ASSERT_EQ(expected.size(), 16u);
  for (size_t k = 0; k < losses.size(); ++k) {
    EXPECT_NEAR(losses[k], expected[k], 1e-5 * std::abs(expected[k])) << "step " << k;
  }
}

TEST_F(ReplanCli, WithoutAStragglerNothingIsSwitched) {
  CliRun run = RunShell(kMpirun + Orrery() +
                        " execute --model gpt-tiny --dp 2 --global-batch 8 --seq-len 32 "
                        "--backend cpu --iterations 12 --replan 0.5 --replan-window 4 "
                        "--cluster " + Calibrated() + " --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  Result<Json> j = ParseJson(run.out, "execute's report");
  ASSERT_TRUE(j.ok()) << run.out;
  EXPECT_TRUE((*j)["switches"].empty()) << run.err;
  EXPECT_EQ((*j)["final_plan"], (*j)["plan"]);
}

TEST(ReplanCliErrors, BadFlagsAreRefusedBeforeAnythingRuns) {
  const std::string base =
      "execute --model gpt-tiny --dp 1 --global-batch 8 --seq-len 32 --backend cpu ";
  struct Case {
    std::string flags;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"--iterations 10 --replan 0.2", "--replan needs --cluster"},
           {"--iterations 10 --replan 0 --cluster cpu-local", "--replan: expected a margin > 0"},
           {"--iterations 7 --replan 0.2 --replan-window 4 --cluster cpu-local",
            "less than two windows of 4 steps"},
           {"--iterations 10 --replan 0.2 --replan-window 0 --cluster cpu-local",
            "--replan-window: expected an integer >= 1"},
           {"--iterations 10 --replan 0.2 --cluster cpu-local --trace-out /tmp/x",
            "--trace-out does not apply"},
       }) {
    CliRun run = RunOrrery(base + c.flags);
    EXPECT_EQ(run.exit_code, 2) << c.flags;
    EXPECT_THAT(run.err, HasSubstr(c.message)) << c.flags;
    EXPECT_TRUE(run.out.empty()) << c.flags;
  }
  CliRun tune = RunOrrery(
      "tune --model gpt-tiny --cluster cpu-local --ranks 2 --global-batch 8 --backend cpu "
      "--iterations 6 --replan 0.2 --replan-window 4");
  EXPECT_EQ(tune.exit_code, 2);
  EXPECT_THAT(tune.err, HasSubstr("at most half of --iterations"));
}

}  // namespace
}  // namespace orrery::testing
