// `orrery simulate`: one iteration of a plan reported as text and JSON, the
// analytic collectives said so, and bad plans rejected with exit code 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kGpt1p7bOn16[] =
    "simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 --micro-batch 2 "
    "--global-batch 64 --seq-length 2048";

TEST(SimulateCli, PrintsTheIterationAndEveryStageAsText) {
  CliRun run = RunOrrery(kGpt1p7bOn16);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Simulated iteration of gpt-1.7b on dgx-h100 (16 devices), "
                                 "1f1b, pp 4, 16 micro-batches"));
  EXPECT_THAT(run.out, HasSubstr("iteration time"));
  EXPECT_THAT(run.out, HasSubstr("tokens/s"));
  EXPECT_THAT(run.out, HasSubstr("MFU"));
  // b·s·h·2 = 2 · 2048 · 2304 · 2 bytes per transfer.
  EXPECT_THAT(run.out, HasSubstr("18874368 bytes per micro-batch each way"));
  EXPECT_THAT(run.out, HasSubstr("analytic"));
  for (const char* row : {"\n  0      0     ", "\n  1      4     ", "\n  2      8     ",
                          "\n  3      12    "}) {
    EXPECT_THAT(run.out, HasSubstr(row));
  }
  EXPECT_EQ(run.err, "");
}

TEST(SimulateCli, JsonHasTheIssueKeysAndOneEntryPerStage) {
  CliRun run = RunOrrery(std::string(kGpt1p7bOn16) + " --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* key : {"\"iteration_time_s\"", "\"tokens_per_s\"", "\"samples_per_s\"",
                          "\"model_tflops_per_gpu\"", "\"mfu\"", "\"breakdown\"",
                          "\"bubble_s\"", "\"exposed_comm_s\"", "\"per_stage\""}) {
    EXPECT_THAT(run.out, HasSubstr(key));
  }
  EXPECT_THAT(run.out, HasSubstr("\"micro_batches\": 16"));
  EXPECT_THAT(run.out, HasSubstr("\"rank\": 12"));
}

TEST(SimulateCli, TwoRunsPrintTheSameReport) {
  CliRun a = RunOrrery(std::string(kGpt1p7bOn16) + " --format json");
  CliRun b = RunOrrery(std::string(kGpt1p7bOn16) + " --format json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
}

TEST(SimulateCli, TheInterleavedScheduleIsRejectedAsNotSimulatedYet) {
  CliRun run = RunOrrery(std::string(kGpt1p7bOn16) + " --vpp 2");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("interleaved"));
  EXPECT_EQ(run.out, "");
}

TEST(SimulateCli, APlanThatDoesNotFitTheClusterExitsTwo) {
  CliRun run = RunOrrery(
      "simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 --dp 8 "
      "--global-batch 64");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("orrery simulate: error"));
}

TEST(SimulateCli, MissingModelExitsTwo) {
  CliRun run = RunOrrery("simulate --cluster dgx-h100");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--model is required"));
}

}  // namespace
}  // namespace orrery::testing
