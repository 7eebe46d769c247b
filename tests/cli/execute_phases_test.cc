// `orrery execute --phases FILE` through the real binary under
// `mpirun -np 2`: a phases file with two plans trains as one plan would
// (the losses of 6 steps of dp 2 alone, to the executor's 1e-5 relative,
// docs/executor.md "Correctness"), and the report names the switch, its
// bytes and the cost model's verdict; the checks made before anything runs
// name the file, the phase and the field, and leave no output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kMpirun[] = "timeout 300 mpirun --oversubscribe --allow-run-as-root -np 2 ";

// gpt-tiny (4 layers), 8 samples of 32 tokens, fp32 as the executor runs.
std::string TinyPlanJson(const std::string& layers, int pp = 1) {
  return R"({"num_layers": 4, "global_batch_size": 8, "sequence_length": 32, )"
         R"("precision": "fp32", "pipeline": {"pp": )" +
         std::to_string(pp) + R"(}, "layers": )" + layers + "}";
}

std::string Phase(const std::string& name, int steps, const std::string& plan) {
  return R"({"name": ")" + name + R"(", "steps": )" + std::to_string(steps) +
         R"(, "seq_len": 32, "global_batch": 8)" + (plan.empty() ? "" : ", \"plan\": " + plan) +
         "}";
}

// Writes `phases` (JSON objects) as DIR/phases.json with DIR/pp2.json
// beside it, and returns the file's path.
std::string WritePhases(const std::string& dir, const std::vector<std::string>& phases) {
  EXPECT_TRUE(WriteFileAtomically(dir + "/pp2.json", TinyPlanJson("{}", 2)).ok());
  std::string text = "{\"phases\": [";
  for (size_t i = 0; i < phases.size(); ++i) text += (i == 0 ? "" : ", ") + phases[i];
  text += "]}";
  const std::string path = dir + "/phases.json";
  EXPECT_TRUE(WriteFileAtomically(path, text).ok());
  return path;
}

CliRun Execute(const std::string& args) {
  return RunShell(kMpirun + OrreryBinary() + " execute --model gpt-tiny --backend cpu " + args);
}

std::vector<double> Doubles(const Json& j) { return j.get<std::vector<double>>(); }

TEST(ExecutePhasesCli, APipelineThenDataParallelRunNamesTheSwitchAndTrainsAsOnePlan) {
  const std::string dir = MakeTempDir("execute-phases");
  const std::string phases = WritePhases(
      dir, {Phase("short", 3, "\"pp2.json\""), Phase("long", 3, TinyPlanJson(R"({"dp": 2})"))});
  const std::string report = dir + "/report.json";

  const CliRun text = Execute("--phases " + phases + " --out " + report);
  ASSERT_EQ(text.exit_code, 0) << text.err << text.out;
  EXPECT_THAT(text.out, HasSubstr("Executed 2 phases (6 steps) of " + phases));
  EXPECT_THAT(text.out, HasSubstr("first loss"));
  EXPECT_THAT(text.out, HasSubstr("tp 1, pp 2 1f1b, dp 1"));
  EXPECT_THAT(text.out, HasSubstr("tp 1, pp 1, dp 2"));
  EXPECT_THAT(text.out, HasSubstr("switch short → long after step 3: "));
  EXPECT_THAT(text.out, HasSubstr("sent by rank 0"));
  EXPECT_THAT(text.out, HasSubstr("2 messages"));
  EXPECT_THAT(text.out, HasSubstr("cost model: the same bytes"));

  Result<Json> j = ReadJsonFile(report);
  ASSERT_TRUE(j.ok()) << j.status().message();
  ASSERT_EQ((*j)["phases"].size(), 2u);
  EXPECT_EQ((*j)["phases"][1]["first_step"], 3);
  EXPECT_EQ((*j)["phases"][1]["plan"]["layers"]["dp"], 2);
  ASSERT_EQ((*j)["switches"].size(), 1u);
  const Json& s = (*j)["switches"][0];
  EXPECT_EQ(s["from"], "short");
  EXPECT_EQ(s["to"], "long");
  EXPECT_EQ(s["after_step"], 3);
  EXPECT_EQ(s["messages"], 2);
  EXPECT_EQ(s["cost_model"]["agrees"], true);
  EXPECT_EQ(s["cost_model"]["bytes_sent"], s["bytes_sent"]);
  EXPECT_EQ(s["cost_model"]["bytes_received"], s["bytes_received"]);
  EXPECT_GT(s["bytes_sent"][0].get<int64_t>(), 0);

  // The same 6 steps under dp 2 alone.
  const CliRun alone = Execute(
      "--dp 2 --global-batch 8 --seq-len 32 --iterations 6 --warmup 0 --format json");
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  Result<Json> reference = ParseJson(alone.out, "stdout");
  ASSERT_TRUE(reference.ok()) << reference.status().message();
  std::vector<double> losses = Doubles((*j)["phases"][0]["losses"]);
  const std::vector<double> after = Doubles((*j)["phases"][1]["losses"]);
  losses.insert(losses.end(), after.begin(), after.end());
  const std::vector<double> expected = Doubles((*reference)["losses"]);
  ASSERT_EQ(losses.size(), expected.size());
  for (size_t k = 0; k < losses.size(); ++k) {
    EXPECT_NEAR(losses[k], expected[k], 1e-5 * std::fabs(expected[k])) << "step " << k;
  }
}

TEST(ExecutePhasesCli, APhaseWithoutAPlanIsRefusedNamingTheFileAndFieldWithNoOutput) {
  const std::string dir = MakeTempDir("execute-phases-no-plan");
  const std::string phases =
      WritePhases(dir, {Phase("short", 3, "\"pp2.json\""), Phase("long", 3, "")});
  const std::string report = dir + "/report.json";
  const CliRun run = Execute("--phases " + phases + " --out " + report);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("orrery execute: error: " + phases +
                                 ": field 'phases[1].plan' (phase 'long'): missing"));
  EXPECT_EQ(run.out, "");
  EXPECT_FALSE(std::filesystem::exists(report));
}

TEST(ExecutePhasesCli, APlanNeedingFourRanksOnTwoIsRefusedNamingTheFileAndField) {
  const std::string dir = MakeTempDir("execute-phases-four");
  const std::string phases = WritePhases(
      dir, {Phase("short", 3, "\"pp2.json\""),
            Phase("long", 3, TinyPlanJson(R"({"tp": 2, "dp": 2})"))});
  const CliRun run = Execute("--phases " + phases);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr(phases + ": field 'phases[1].plan' (phase 'long')"));
  EXPECT_THAT(run.err, HasSubstr("plan needs 4 ranks (tp 2 × pp 1 × dp 2), the job has 2"));
  EXPECT_THAT(run.err, Not(HasSubstr("phases[0]")));
  EXPECT_EQ(run.out, "");
}

TEST(ExecutePhasesCli, PlanFlagsAndIterationsDoNotApplyToPhases) {
  const std::string dir = MakeTempDir("execute-phases-flags");
  const std::string phases = WritePhases(dir, {Phase("short", 3, "\"pp2.json\"")});
  const CliRun run = RunOrrery("execute --model gpt-tiny --phases " + phases +
                               " --tp 2 --iterations 4");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--tp, --iterations do not apply"));
  EXPECT_EQ(run.out, "");
}

}  // namespace
}  // namespace orrery::testing
