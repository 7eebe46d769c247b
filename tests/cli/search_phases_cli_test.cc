// `orrery search --phases`: the per-phase report, --out writing a phases
// file with every phase's plan that the phases reader takes back, the JSON
// form, the single-plan search's width (--single-plan-candidates), and bad
// input (a phase's field, --global-batch beside --phases, a negative width
// or one without --phases) rejected with exit code 2 and a message naming
// the file and the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/file.h"
#include "core/json.h"
#include "workload/phases.h"

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// GPT 1.7B on one DGX A100, a batch ramp-up in three phases: exhaustive
// search of uniform plans, a second or two per phase.
constexpr char kRamp[] = R"({
  "phases": [
    {"name": "b8",   "tokens": "1B",  "seq_len": 2048, "global_batch": 8},
    {"name": "b64",  "tokens": "5B",  "seq_len": 2048, "global_batch": 64},
    {"name": "b256", "steps": 40000,  "seq_len": 2048, "global_batch": 256}
  ],
  "checkpoint": {"write_gb_per_s": 20, "read_gb_per_s": 40}
})";

constexpr char kCommand[] =
    "search --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1 --algorithm exhaustive "
    "--top 2 --analytical --phases ";

std::string WritePhases(const std::string& dir, const std::string& text) {
  const std::string path = dir + "/phases.json";
  EXPECT_TRUE(WriteFileAtomically(path, text).ok());
  return path;
}

TEST(SearchPhasesCli, PrintsEveryPhaseTheSwitchesAndTheTotals) {
  const std::string dir = MakeTempDir("search_phases_text");
  CliRun run = RunOrrery(kCommand + WritePhases(dir, kRamp));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Phase-wise plan [exhaustive] for gpt-1.7b on dgx-a100-80gb"));
  EXPECT_THAT(run.out, HasSubstr("checkpoint storage: write 20 GB/s, read 40 GB/s"));
  for (const char* s : {"phase", "iteration", "phase time", "switch in", "\n  b8 ",
                        "\n  b64 ", "\n  b256 ", "40,000", "total", "one plan"}) {
    EXPECT_THAT(run.out, HasSubstr(s)) << s;
  }
  // Progress on stderr, one line per phase searched.
  EXPECT_THAT(run.err, HasSubstr("phase 1/3 (b8): searching 8 devices"));
  EXPECT_THAT(run.err, HasSubstr("phase 3/3 (b256)"));
  // The single-plan search ran (default width 50) and says what it did.
  EXPECT_THAT(run.out, HasSubstr("  single     3 shapes searched for 50 plans each"));
  EXPECT_THAT(run.err, HasSubstr("single plan: searching b8's shape for 50 plans"));
}

TEST(SearchPhasesCli, SinglePlanCandidatesSetsTheSearchWidthOrTurnsItOff) {
  const std::string dir = MakeTempDir("search_phases_single");
  const std::string path = WritePhases(dir, kRamp);
  CliRun off = RunOrrery(kCommand + path + " --single-plan-candidates 0 --format json");
  ASSERT_EQ(off.exit_code, 0) << off.err;
  Result<Json> j = ParseJson(off.out, "stdout");
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_TRUE((*j)["single_plan_search"].is_null());
  CliRun narrow = RunOrrery(kCommand + path + " --single-plan-candidates 4 --format json");
  ASSERT_EQ(narrow.exit_code, 0) << narrow.err;
  j = ParseJson(narrow.out, "stdout");
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_EQ((*j)["single_plan_search"]["plans_per_search"].get<int>(), 4);
  EXPECT_EQ((*j)["single_plan_search"]["searches"].get<int>(), 3);

  CliRun negative = RunOrrery(kCommand + path + " --single-plan-candidates -1");
  EXPECT_EQ(negative.exit_code, 2);
  EXPECT_THAT(negative.err, HasSubstr("--single-plan-candidates: expected 0 or a positive"));
  CliRun alone = RunOrrery(
      "search --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1 --global-batch 8 "
      "--single-plan-candidates 10");
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_THAT(alone.err, HasSubstr("--single-plan-candidates: only with --phases"));
}

TEST(SearchPhasesCli, OutWritesThePhasesWithTheirPlansAndJsonAgrees) {
  const std::string dir = MakeTempDir("search_phases_out");
  const std::string out = dir + "/planned.json";
  CliRun run = RunOrrery(kCommand + WritePhases(dir, kRamp) + " --out " + out + " --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Result<Json> report = ParseJson(run.out, "stdout");
  ASSERT_TRUE(report.ok()) << report.status().message();
  for (const char* key : {"phases", "candidates", "total_seconds", "total_days", "switches",
                          "switch_seconds", "best_single", "out"}) {
    EXPECT_TRUE(report->contains(key)) << key;
  }
  EXPECT_EQ((*report)["out"].get<std::string>(), out);
  EXPECT_EQ((*report)["scale"].get<std::string>(), "analytical");

  Result<workload::PhaseSchedule> planned = workload::LoadPhasesFile(out);
  ASSERT_TRUE(planned.ok()) << planned.status().message();
  ASSERT_EQ(planned->phases.size(), 3u);
  ASSERT_TRUE(planned->checkpoint.has_value());
  EXPECT_EQ(planned->checkpoint->read_gb_per_s, 40);
  for (size_t p = 0; p < 3; ++p) {
    ASSERT_TRUE(planned->phases[p].plan.has_value()) << p;
    EXPECT_EQ(planned->phases[p].plan->global_batch_size, planned->phases[p].global_batch_size);
  }
  EXPECT_EQ(planned->phases[2].steps, 40000);
  Result<std::string> text = ReadFile(out);
  ASSERT_TRUE(text.ok());
  Result<Json> file = ParseJson(*text, out);
  ASSERT_TRUE(file.ok());
  // The file's plan of each phase is the report's.
  for (size_t p = 0; p < 3; ++p) {
    EXPECT_EQ((*file)["phases"][p]["plan"], (*report)["phases"][p]["plan"]) << p;
  }
}

TEST(SearchPhasesCli, ABadPhaseFieldIsNamedAndNothingIsWritten) {
  const std::string dir = MakeTempDir("search_phases_bad");
  const std::string out = dir + "/planned.json";
  const std::string path = WritePhases(dir, R"({"phases": [
      {"name": "a", "tokens": "1B", "seq_len": 2048, "global_batch": 8},
      {"name": "b", "tokens": "1B", "seq_len": 2048, "global_batch": 0}]})");
  CliRun run = RunOrrery(kCommand + path + " --out " + out);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr(path));
  EXPECT_THAT(run.err, HasSubstr("global_batch"));
  EXPECT_FALSE(ReadFile(out).ok()) << "a failed run wrote " << out;

  const std::string cluster = WritePhases(dir, R"({"phases": [
      {"name": "a", "tokens": "1B", "seq_len": 2048, "global_batch": 8, "cluster": "nope"}]})");
  CliRun unknown = RunOrrery(kCommand + cluster);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("phases[0] (a): field 'cluster'"));
}

TEST(SearchPhasesCli, GlobalBatchBesideThePhasesIsRefused) {
  const std::string dir = MakeTempDir("search_phases_batch");
  CliRun run = RunOrrery(kCommand + WritePhases(dir, kRamp) + " --global-batch 64");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--global-batch: with --phases every phase sets its own"));
  EXPECT_THAT(run.out, Not(HasSubstr("Phase-wise")));
}

TEST(SearchPhasesCli, HelpShowsAPhasesExample) {
  CliRun run = RunOrrery("search --help");
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("--phases"));
  EXPECT_THAT(run.out, HasSubstr("orrery execute --phases"));
}

}  // namespace
}  // namespace orrery::testing
