// `orrery simulate`: one iteration of a plan reported as text and JSON, the
// interleaved schedule simulated, timelines written, the analytical
// estimate beside the simulation, and bad plans rejected with exit code 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/file.h"
#include "core/json.h"

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
  EXPECT_THAT(run.out, HasSubstr("Simulated iteration of gpt-1.7b on dgx-h100 (16 devices): "
                                 "tp 2, pp 4, dp 2, 1f1b, 16 micro-batches"));
  EXPECT_THAT(run.out, HasSubstr("iteration time"));
  EXPECT_THAT(run.out, HasSubstr("tokens/s"));
  EXPECT_THAT(run.out, HasSubstr("MFU"));
  EXPECT_THAT(run.out, HasSubstr("peak memory"));
  EXPECT_THAT(run.out, HasSubstr(": fits"));
  // Stages, their first rank and 6 layers each (24 / 4).
  for (const char* row : {"\n  0      0     6 ", "\n  1      4     6 ", "\n  2      8     6 ",
                          "\n  3      12    6 "}) {
    EXPECT_THAT(run.out, HasSubstr(row));
  }
  EXPECT_EQ(run.err, "");
}

TEST(SimulateCli, JsonHasTheIssueKeysAndOneEntryPerStage) {
  CliRun run = RunOrrery(std::string(kGpt1p7bOn16) + " --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* key : {"\"iteration_time_s\"", "\"tokens_per_s\"", "\"samples_per_s\"",
                          "\"model_tflops_per_gpu\"", "\"mfu\"", "\"breakdown\"",
                          "\"bubble_s\"", "\"exposed_comm_s\"", "\"per_stage\"",
                          "\"hardware_tflops_per_gpu\"", "\"peak_memory_gib\"",
                          "\"memory_capacity_gib\"", "\"fits_memory\"", "\"compute_s\"",
                          "\"recompute_s\""}) {
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

TEST(SimulateCli, TheInterleavedScheduleShrinksTheBubble) {
  CliRun plain = RunOrrery(std::string(kGpt1p7bOn16) + " --format json");
  CliRun interleaved = RunOrrery(std::string(kGpt1p7bOn16) + " --vpp 3 --format json");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(interleaved.exit_code, 0) << interleaved.err;
  EXPECT_THAT(interleaved.out, HasSubstr("\"schedule\": \"interleaved\""));
  EXPECT_THAT(interleaved.out, HasSubstr("\"vpp\": 3"));
  const Json a = Json::parse(plain.out);
  const Json b = Json::parse(interleaved.out);
  EXPECT_LT(b["breakdown"]["bubble_s"].get<double>(), a["breakdown"]["bubble_s"].get<double>());
}

TEST(SimulateCli, WritesATimelineWithOneProcessPerNode) {
  const std::string dir = MakeTempDir("simulate-timeline");
  const std::string path = dir + "/timeline.json";
  CliRun run = RunOrrery(std::string(kGpt1p7bOn16) + " --timeline " + path);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Result<std::string> text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  const Json trace = Json::parse(*text);
  std::set<std::string> processes;
  std::set<std::string> categories;
  for (const Json& e : trace["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "process_name") {
      processes.insert(e["args"]["name"].get<std::string>());
    }
    if (e["ph"] == "X") categories.insert(e["cat"].get<std::string>());
  }
  EXPECT_EQ(processes, (std::set<std::string>{"node 0", "node 1"}));
  for (const char* c : {"forward", "backward", "optimizer", "tp-comm", "pp-activation",
                        "pp-gradient", "dp-grad-reduce"}) {
    EXPECT_TRUE(categories.count(c)) << c;
  }
}

// PP2 × TP8 over two DGX A100 nodes, dp 1: no traffic contends, so the
// analytical estimate equals the simulation.
constexpr char kUncontended[] =
    "simulate --model gpt-1.7b --cluster dgx-a100-80gb --nodes 2 --tp 8 --pp 2 "
    "--micro-batch 1 --global-batch 16";

TEST(SimulateCli, AnalyticalPrintsTheEstimateAndItsGapToTheSimulation) {
  CliRun run = RunOrrery(std::string(kUncontended) + " --analytical");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("  analytical estimate  "));
  EXPECT_THAT(run.out, HasSubstr(" s (gap +0.00% vs simulated)\n"));
  CliRun plain = RunOrrery(kUncontended);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_THAT(plain.out, ::testing::Not(HasSubstr("analytical")));
}

TEST(SimulateCli, AnalyticalJsonHasTheEstimateAndTheGap) {
  CliRun run = RunOrrery(std::string(kUncontended) + " --analytical --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const Json j = Json::parse(run.out);
  ASSERT_TRUE(j.contains("analytical"));
  const double simulated = j["iteration_time_s"].get<double>();
  const double estimate = j["analytical"]["iteration_time_s"].get<double>();
  EXPECT_GT(estimate, 0);
  EXPECT_NEAR(estimate, simulated, 0.02 * simulated);
  EXPECT_NEAR(j["analytical"]["gap"].get<double>(), (estimate - simulated) / simulated, 1e-12);
  // The same options reach both: free communication and an overlap slowdown.
  CliRun free = RunOrrery(std::string(kUncontended) +
                          " --analytical --free-communication --overlap-slowdown 0.1 --format json");
  ASSERT_EQ(free.exit_code, 0) << free.err;
  const Json f = Json::parse(free.out);
  EXPECT_EQ(f["analytical"]["gap"].get<double>(), 0.0);
  EXPECT_LT(f["iteration_time_s"].get<double>(), simulated);
  CliRun plain = RunOrrery(std::string(kUncontended) + " --format json");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_FALSE(Json::parse(plain.out).contains("analytical"));
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
