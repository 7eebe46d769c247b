// `orrery validate` through the real binary: bad input refused before any
// job starts (exit 2), and a whole run — profile, calibrate, execute,
// simulate — of a DP2 gpt-tiny plan on 2 MPI ranks, whose JSON report
// carries positive predicted and measured times, and whose calibration is
// reused by a second run with --calibration.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kPlan[] =
    " --model gpt-tiny --backend cpu --ranks 2 --global-batch 8 --micro-batch 2 --seq-len 32";

Json ParseOut(const CliRun& run) {
  Result<Json> j = ParseJson(run.out, "stdout");
  EXPECT_TRUE(j.ok()) << j.status().message() << "\n" << run.out << "\n" << run.err;
  return j.ok() ? j.value() : Json();
}

TEST(ValidateCli, RequiresTheRanks) {
  CliRun run = RunOrrery("validate --model gpt-tiny --backend cpu");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery validate: error: --ranks is required\n");
}

TEST(ValidateCli, RefusesACalibrationWithAnotherCluster) {
  CliRun run = RunOrrery(std::string("validate") + kPlan +
                         " --cluster cpu-local --calibration c.json");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--calibration and --cluster: give one"));
}

TEST(ValidateCli, RefusesABf16PlanOnTheCpuBackend) {
  CliRun run = RunOrrery(std::string("validate") + kPlan + " --precision bf16");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("the cpu backend runs fp32"));
}

TEST(ValidateCli, RefusesAPlanThatDoesNotFitTheRanks) {
  CliRun run = RunOrrery(std::string("validate") + kPlan + " --tp 2 --dp 2");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("orrery validate: error: "));
  EXPECT_THAT(run.err, HasSubstr("4 ranks"));
}

TEST(ValidateCli, CudaNeedsACluster) {
  CliRun run = RunOrrery(
      "validate --model gpt-tiny --backend cuda --ranks 2 --global-batch 8 --seq-len 32");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--cluster or --calibration is required with --backend cuda"));
}

// The whole loop: about 7 s on 2 cores (profile, execute, then execute again).
TEST(ValidateCli, Dp2GptTinyReportsPositivePredictedAndMeasuredTimes) {
  const std::string dir = MakeTempDir("validate_cli");
  const std::string profile = dir + "/profile";
  CliRun run = RunOrrery(std::string("validate") + kPlan +
                         " --iterations 3 --warmup 1 --format json --profile-dir " + profile +
                         " --keep " + dir + "/work");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Json j = ParseOut(run);
  for (const char* key : {"predicted_iteration_time_s", "measured_iteration_time_s", "error",
                          "op_classes", "plan", "model", "ranks", "calibration"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_GT(j["predicted_iteration_time_s"].get<double>(), 0);
  EXPECT_GT(j["measured_iteration_time_s"].get<double>(), 0);
  EXPECT_EQ(j["model"], "gpt-tiny");
  EXPECT_EQ(j["ranks"], 2);
  EXPECT_EQ(j["plan"]["layers"]["dp"], 2);  // a uniform plan: one strategy
  EXPECT_EQ(j["plan"]["precision"], "fp32");
  EXPECT_EQ(j["calibration"], profile + "/calibrated.json");
  EXPECT_TRUE(std::filesystem::exists(profile + "/calibrated.json"));
  const double error = (j["predicted_iteration_time_s"].get<double>() -
                        j["measured_iteration_time_s"].get<double>()) /
                       j["measured_iteration_time_s"].get<double>();
  EXPECT_NEAR(j["error"].get<double>(), error, 1e-12);
  ASSERT_TRUE(j["op_classes"].is_array());
  bool gemm = false, dp = false;
  for (const Json& c : j["op_classes"]) {
    for (const char* key : {"class", "predicted_s", "measured_s", "error"}) {
      EXPECT_TRUE(c.contains(key)) << key << " in " << c.dump();
    }
    EXPECT_GT(c["measured_s"].get<double>(), 0) << c.dump();
    gemm = gemm || c["class"] == "gemm";
    dp = dp || c["class"] == "comm.dp";
    if (c["class"] == "gemm" || c["class"] == "comm.dp") {
      EXPECT_GT(c["predicted_s"].get<double>(), 0) << c.dump();
    }
  }
  EXPECT_TRUE(gemm) << run.out;
  EXPECT_TRUE(dp) << run.out;  // DP2 reduces its gradients
  EXPECT_TRUE(std::filesystem::exists(dir + "/work/trace/execution_trace.json"));

  // The calibration written is reused as is: no profiling.
  CliRun again = RunOrrery(std::string("validate") + kPlan +
                           " --iterations 2 --warmup 0 --format json --calibration " + profile +
                           "/calibrated.json");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, ::testing::Not(HasSubstr("profiling")));
  Json k = ParseOut(again);
  EXPECT_EQ(k["calibration"], profile + "/calibrated.json");
  EXPECT_GT(k["predicted_iteration_time_s"].get<double>(), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace orrery::testing
