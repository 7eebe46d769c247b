// The `orrery` program as a whole: help, unknown commands, subcommands not
// built yet, the quickstart and its timeline.
#include <gtest/gtest.h>

#include <string>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

TEST(Cli, HelpListsEverySubcommand) {
  CliRun run = RunOrrery("--help");
  EXPECT_EQ(run.exit_code, 0);
  for (const char* name : {"quickstart", "models", "clusters", "plan", "discover", "simulate",
                           "search", "profile", "calibrate", "execute", "validate", "capacity",
                           "export"}) {
    EXPECT_NE(run.out.find(std::string("  ") + name), std::string::npos) << name;
  }
}

TEST(Cli, NoArgumentsPrintsHelpAndFails) {
  CliRun run = RunOrrery("");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("Usage: orrery <command>"), std::string::npos);
}

TEST(Cli, UnknownCommandExitsTwoWithOneMessage) {
  CliRun run = RunOrrery("simulte");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery: unknown command 'simulte'. 'orrery --help' lists the commands.\n");
  EXPECT_TRUE(run.out.empty());
}

// The Chrome trace at `path`: a JSON document whose traceEvents hold at least
// one complete event of each compute kind.
void ExpectChromeTrace(const std::string& path) {
  Result<Json> trace = ReadJsonFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  ASSERT_TRUE(trace->contains("traceEvents"));
  ASSERT_TRUE((*trace)["traceEvents"].is_array());
  int forwards = 0;
  int backwards = 0;
  for (const Json& e : (*trace)["traceEvents"]) {
    if (e.value("ph", "") != "X") continue;
    forwards += e.value("cat", "") == "forward";
    backwards += e.value("cat", "") == "backward";
  }
  EXPECT_GT(forwards, 0);
  EXPECT_EQ(forwards, backwards);
}

TEST(Quickstart, RunsTheDefaultJobAndSaysWhatIsNotBuilt) {
  const std::string timeline = MakeTempDir("quickstart_text") + "/timeline.json";
  CliRun run = RunOrrery("quickstart --timeline " + timeline);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("llama3-70b: 70.55B parameters (70553706496)"), std::string::npos);
  EXPECT_NE(run.out.find("dgx-h100: 8 nodes x 8 = 64"), std::string::npos);
  EXPECT_NE(run.out.find("Fastest of the 57 simulated"), std::string::npos);
  EXPECT_NE(run.out.find("  iteration   "), std::string::npos);
  EXPECT_NE(run.out.find("Not here:"), std::string::npos);
  EXPECT_NE(run.out.find("Timeline: written to " + timeline +
                         " (open in https://ui.perfetto.dev)"),
            std::string::npos);
  EXPECT_EQ(run.out.find("the timeline file"), std::string::npos);
  ExpectChromeTrace(timeline);
}

TEST(Quickstart, AnEmptyTimelineWritesNone) {
  CliRun run = RunOrrery("quickstart --model gpt-1.7b --nodes 1 --global-batch 16 --timeline ''");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("Timeline: none written"), std::string::npos);
}

TEST(Simulate, WritesTheTimelineAsAChromeTrace) {
  const std::string timeline = MakeTempDir("simulate_timeline") + "/t.json";
  CliRun run = RunOrrery(
      "simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 --micro-batch 2 "
      "--global-batch 64 --timeline " + timeline);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("timeline written to " + timeline +
                         " (open in https://ui.perfetto.dev)"),
            std::string::npos);
  ExpectChromeTrace(timeline);
}

TEST(Simulate, AnUnwritableTimelineFailsAndWritesNothing) {
  const std::string dir = MakeTempDir("simulate_timeline_bad");
  CliRun run = RunOrrery(
      "simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 --micro-batch 2 "
      "--global-batch 64 --timeline " + dir + "/missing/t.json");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_FALSE(ReadJsonFile(dir + "/missing/t.json").ok());
}

TEST(Quickstart, JsonGivesThePlanItsPredictionAndTheComputeBound) {
  const std::string timeline = MakeTempDir("quickstart_json") + "/timeline.json";
  CliRun run = RunOrrery("quickstart --model gpt3-175b --cluster dgx-a100-80gb --nodes 16 "
                         "--format json --timeline " + timeline);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("\"devices\": 128"), std::string::npos);
  EXPECT_NE(run.out.find("\"compute_bound_tokens_per_s\""), std::string::npos);
  EXPECT_NE(run.out.find("\"plan_summary\""), std::string::npos);
  EXPECT_NE(run.out.find("\"tokens_per_s\""), std::string::npos);
  EXPECT_NE(run.out.find("\"timeline\": \"" + timeline + "\""), std::string::npos);
  ExpectChromeTrace(timeline);
}

TEST(Quickstart, UnknownModelExitsTwo) {
  CliRun run = RunOrrery("quickstart --model llama9-1t");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.out.empty());
  EXPECT_NE(run.err.find("llama9-1t"), std::string::npos);
}

}  // namespace
}  // namespace orrery::testing
