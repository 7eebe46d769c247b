// `orrery search`: the best plans as text and JSON with the issue's keys,
// the same answer twice, --out a plan file `orrery simulate --plan` runs,
// and bad input rejected with exit code 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/file.h"
#include "core/json.h"

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;

// 24 layers of GPT 1.7B on 8 A100s: a few thousand uniform plans, under a
// second.
constexpr char kSmall[] =
    "search --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1 --global-batch 8 "
    "--seq-len 1024 --algorithm exhaustive --top 3";

TEST(SearchCli, PrintsTheBestPlansAndThePruneCounts) {
  CliRun run = RunOrrery(kSmall);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Search [exhaustive] for gpt-1.7b on dgx-a100-80gb (8 devices)"));
  EXPECT_THAT(run.out, HasSubstr("rank  plan"));
  EXPECT_THAT(run.out, HasSubstr("\n  1     tp"));
  EXPECT_THAT(run.out, HasSubstr("\n  3     "));
  EXPECT_THAT(run.out, HasSubstr("evaluated"));
  EXPECT_THAT(run.out, HasSubstr("pruned"));
  EXPECT_THAT(run.out, HasSubstr("dominated"));
  EXPECT_THAT(run.out, HasSubstr("s search +"));
}

TEST(SearchCli, JsonHasTheIssueKeysAndTheSameAnswerTwice) {
  CliRun a = RunOrrery(std::string(kSmall) + " --format json");
  CliRun b = RunOrrery(std::string(kSmall) + " --format json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  Result<Json> j = ParseJson(a.out, "stdout");
  ASSERT_TRUE(j.ok()) << j.status().message();
  for (const char* key : {"plans", "search_time_s", "evaluated", "pruned"}) {
    EXPECT_TRUE(j->contains(key)) << key;
  }
  const Json& plans = (*j)["plans"];
  ASSERT_EQ(plans.size(), 3u);
  double previous = 0;
  for (const Json& p : plans) {
    for (const char* key : {"plan", "iteration_time_s", "analytical_iteration_time_s",
                            "tokens_per_s", "peak_memory_gib"}) {
      EXPECT_TRUE(p.contains(key)) << key;
    }
    EXPECT_GE(p["iteration_time_s"].get<double>(), previous);
    previous = p["iteration_time_s"].get<double>();
    EXPECT_LE(p["peak_memory_gib"].get<double>(), 79.0);
    EXPECT_EQ(p["plan"]["num_layers"].get<int>(), 24);
  }
  EXPECT_GT((*j)["evaluated"].get<int64_t>(), 0);
  // The plans are the same on a second run (the times differ).
  Result<Json> k = ParseJson(b.out, "stdout");
  ASSERT_TRUE(k.ok());
  for (size_t i = 0; i < plans.size(); ++i) {
    EXPECT_EQ(plans[i]["plan"], (*k)["plans"][i]["plan"]);
  }
  EXPECT_EQ((*j)["pruned"], (*k)["pruned"]);
}

TEST(SearchCli, OutWritesAPlanThatSimulateRuns) {
  const std::string dir = MakeTempDir("search_cli_out");
  const std::string path = dir + "/best.json";
  CliRun run = RunOrrery(std::string(kSmall) + " --out " + path + " --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Result<std::string> text = ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status().message();
  Result<Json> best = ParseJson(run.out, "stdout");
  ASSERT_TRUE(best.ok());
  Result<Json> file = ParseJson(*text, path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(*file, (*best)["plans"][0]["plan"]);
  CliRun sim = RunOrrery("simulate --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1 --plan " +
                         path + " --format json");
  ASSERT_EQ(sim.exit_code, 0) << sim.err;
  Result<Json> report = ParseJson(sim.out, "stdout");
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE((*report)["fits_memory"].get<bool>());
  EXPECT_DOUBLE_EQ((*report)["iteration_time_s"].get<double>(),
                   (*best)["plans"][0]["iteration_time_s"].get<double>());
}

TEST(SearchCli, RandomAndAnnealRunWithASeed) {
  for (const char* algo : {"random", "anneal"}) {
    CliRun run = RunOrrery(
        "search --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1 --global-batch 8 "
        "--seq-len 1024 --top 2 --samples 200 --seed 3 --format json --algorithm " +
        std::string(algo));
    ASSERT_EQ(run.exit_code, 0) << algo << ": " << run.err;
    Result<Json> j = ParseJson(run.out, "stdout");
    ASSERT_TRUE(j.ok());
    EXPECT_EQ((*j)["algorithm"].get<std::string>(), algo);
    EXPECT_FALSE((*j)["plans"].empty());
  }
}

TEST(SearchCli, RejectsBadInput) {
  CliRun unknown = RunOrrery(
      "search --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1 --global-batch 8 "
      "--algorithm genetic");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("'genetic'"));
  EXPECT_THAT(unknown.err, HasSubstr("exhaustive"));
  CliRun no_batch = RunOrrery("search --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1");
  EXPECT_EQ(no_batch.exit_code, 2);
  EXPECT_THAT(no_batch.err, HasSubstr("--global-batch"));
  CliRun budget = RunOrrery(std::string(kSmall) + " --memory-budget -1");
  EXPECT_EQ(budget.exit_code, 2);
  EXPECT_THAT(budget.err, HasSubstr("--memory-budget"));
}

TEST(SearchCli, HelpTeachesWithExamples) {
  CliRun run = RunOrrery("search --help");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("orrery search --model M --cluster C"));
  EXPECT_THAT(run.out, HasSubstr("--algorithm"));
  EXPECT_THAT(run.out, HasSubstr("--memory-budget"));
  EXPECT_THAT(run.out, HasSubstr("event simulator"));
}

TEST(SearchCli, NoPlanFitsIsExitCodeOne) {
  CliRun run = RunOrrery(std::string(kSmall) + " --memory-budget 0.5");
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_THAT(run.out, HasSubstr("no plan fits"));
}

}  // namespace
}  // namespace orrery::testing
