// The `orrery` program as a whole: help, unknown commands, subcommands not
// built yet.
#include <gtest/gtest.h>

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

TEST(Cli, CommandNotBuiltYetSaysSoAndExitsTwo) {
  CliRun run = RunOrrery("capacity --model llama3-70b");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("orrery capacity: not built yet"), std::string::npos);
}

TEST(Quickstart, RunsTheDefaultJobAndSaysWhatIsNotBuilt) {
  CliRun run = RunOrrery("quickstart");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("llama3-70b: 70.55B parameters (70553706496)"), std::string::npos);
  EXPECT_NE(run.out.find("dgx-h100: 8 nodes x 8 = 64"), std::string::npos);
  EXPECT_NE(run.out.find("Fastest of the 57 simulated"), std::string::npos);
  EXPECT_NE(run.out.find("  iteration   "), std::string::npos);
  EXPECT_NE(run.out.find("Not built yet:"), std::string::npos);
}

TEST(Quickstart, JsonGivesThePlanItsPredictionAndTheComputeBound) {
  CliRun run = RunOrrery("quickstart --model gpt3-175b --cluster dgx-a100-80gb --nodes 16 --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("\"devices\": 128"), std::string::npos);
  EXPECT_NE(run.out.find("\"compute_bound_tokens_per_s\""), std::string::npos);
  EXPECT_NE(run.out.find("\"plan_summary\""), std::string::npos);
  EXPECT_NE(run.out.find("\"tokens_per_s\""), std::string::npos);
  EXPECT_NE(run.out.find("\"timeline\": null"), std::string::npos);
}

TEST(Quickstart, UnknownModelExitsTwo) {
  CliRun run = RunOrrery("quickstart --model llama9-1t");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.out.empty());
  EXPECT_NE(run.err.find("llama9-1t"), std::string::npos);
}

}  // namespace
}  // namespace orrery::testing
