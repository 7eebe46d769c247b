// `orrery plan`: a valid plan printed as text and JSON, an invalid plan
// listing every broken rule with exit code 2, and --out written only for a
// valid plan.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kLlama70bOn64[] =
    "plan --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 8 --pp 4 --micro-batch 1 "
    "--global-batch 512";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(PlanCli, PrintsAValidPlanAsText) {
  CliRun run = RunOrrery(kLlama70bOn64);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("tp 8 × cp 1 × dp 2 × pp 4 = 64 devices"));
  // 512 / (1 × 2) micro-batches.
  EXPECT_THAT(run.out, HasSubstr("global 512 = 256 micro-batches × micro 1 × dp 2"));
  EXPECT_THAT(run.out, HasSubstr("1f1b, 4 stages: 0-19 | 20-39 | 40-59 | 60-79"));
  EXPECT_THAT(run.out, HasSubstr("tp: 8 groups of 8, first [0 1 2 3 4 5 6 7]"));
  EXPECT_THAT(run.out, HasSubstr("pp: 16 groups of 4, first [0 16 32 48]"));
  EXPECT_THAT(run.out, HasSubstr("  0-79      8   1   2   1   0     no   none       1\n"));
  EXPECT_EQ(run.err, "");
}

TEST(PlanCli, PrintsAValidPlanAsJson) {
  CliRun run = RunOrrery(std::string(kLlama70bOn64) + " --format json");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("\"valid\": true"));
  EXPECT_THAT(run.out, HasSubstr("\"num_layers\": 80"));
  EXPECT_THAT(run.out, HasSubstr("\"num_micro_batches\": 256"));
  EXPECT_THAT(run.out, HasSubstr("\"rank_order\": \"tp-cp-ep-dp-pp\""));
}

TEST(PlanCli, MegatronSpellingsBuildTheSamePlan) {
  const std::string dir = MakeTempDir("plan_cli_megatron");
  CliRun a = RunOrrery(std::string(kLlama70bOn64) + " --vpp 4 --out " + dir + "/a.json");
  CliRun b = RunOrrery(
      "plan --model llama3-70b --cluster dgx-h100 --nodes 8 --tensor-model-parallel-size 8 "
      "--pipeline-model-parallel-size 4 --micro-batch-size 1 --global-batch-size 512 "
      "--num-layers-per-virtual-pipeline-stage 5 --out " + dir + "/b.json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(ReadAll(dir + "/a.json"), ReadAll(dir + "/b.json"));
  EXPECT_THAT(ReadAll(dir + "/a.json"), HasSubstr("\"schedule\": \"interleaved\""));
}

TEST(PlanCli, OutFileReadsBackWithPlan) {
  const std::string dir = MakeTempDir("plan_cli_roundtrip");
  CliRun write = RunOrrery(std::string(kLlama70bOn64) +
                           " --sequence-parallel --recompute selective --out " + dir + "/p.json");
  ASSERT_EQ(write.exit_code, 0) << write.err;
  CliRun read = RunOrrery("plan --model llama3-70b --cluster dgx-h100 --nodes 8 --plan " + dir +
                          "/p.json");
  EXPECT_EQ(read.exit_code, 0) << read.err;
  EXPECT_EQ(read.out, write.out);
}

TEST(PlanCli, InvalidPlanExitsTwoListingEveryBrokenRule) {
  CliRun run = RunOrrery(
      "plan --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 3 --pp 5 --global-batch 511 "
      "--schedule interleaved");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err,
            "orrery plan: error: the plan breaks 6 rules:\n"
            "  layers[0-79]: tp × cp × dp × pp = 3 × 1 × 4 × 5 = 60, but the cluster has 64 "
            "devices\n"
            "  layers[0-79].tp: num_attention_heads = 64 is not divisible by tp = 3\n"
            "  layers[0-79].tp: num_kv_heads = 8 and tp = 3: one must divide the other\n"
            "  global_batch_size: 511 is not divisible by micro_batch_size × dp = 1 × 4 = 4\n"
            "  pipeline.vpp: the interleaved schedule needs vpp >= 2, got 1\n"
            "  pipeline.schedule: interleaved needs the number of micro-batches (127 = "
            "global_batch_size / (micro_batch_size × dp)) to be a multiple of pp = 5\n");
}

TEST(PlanCli, InvalidPlanAsJsonListsTheErrors) {
  CliRun run = RunOrrery(
      "plan --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 8 --sequence-parallel "
      "--pp 8 --dp 1 --cp 3 --format json");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.out, HasSubstr("\"valid\": false"));
  EXPECT_THAT(run.out, HasSubstr("layers[0-79]: tp × cp × dp × pp = 8 × 3 × 1 × 8 = 192"));
}

TEST(PlanCli, OutIsNotWrittenForAnInvalidPlan) {
  const std::string dir = MakeTempDir("plan_cli_invalid_out");
  CliRun run = RunOrrery("plan --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 16 --pp 3 "
                         "--out " + dir + "/p.json");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("pipeline.stage_layers: 80 layers do not split evenly over pp = "
                                 "3 stages"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/p.json"));
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(PlanCli, PlanFileCannotBeCombinedWithFlags) {
  const std::string dir = MakeTempDir("plan_cli_conflict");
  std::ofstream(dir + "/p.json") << "{}";
  CliRun run = RunOrrery("plan --model llama3-70b --cluster dgx-h100 --plan " + dir +
                         "/p.json --tp 4");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery plan: error: --plan FILE holds the whole plan; it cannot be "
                     "combined with --tp\n");
}

TEST(PlanCli, BadPlanFileNamesTheFileAndTheField) {
  const std::string dir = MakeTempDir("plan_cli_bad_file");
  std::ofstream(dir + "/p.json")
      << R"({"num_layers": 80, "global_batch_size": 512, "sequence_length": 8192,
             "layers": {"tp": 8, "dp": 2, "recompute": "some"}})";
  CliRun run = RunOrrery("plan --model llama3-70b --cluster dgx-h100 --nodes 8 --plan " + dir +
                         "/p.json");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery plan: error: " + dir + "/p.json: field 'layers.recompute': expected "
                     "'none', 'selective' or 'full', got 'some'\n");
}

TEST(PlanCli, FlagAndItsMegatronAliasMustAgree) {
  CliRun run = RunOrrery("plan --model llama3-70b --cluster dgx-h100 --tp 8 "
                         "--tensor-model-parallel-size 4");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery plan: error: --tp 8 and --tensor-model-parallel-size 4 disagree; "
                     "give one of them\n");
}

TEST(PlanCli, HelpTeachesWithARealExample) {
  CliRun run = RunOrrery("plan --help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("orrery plan --model llama3-70b --cluster dgx-h100 --nodes 8 "
                                 "--tp 8 --pp 4"));
  EXPECT_THAT(run.out, HasSubstr("--tensor-model-parallel-size"));
}

}  // namespace
}  // namespace orrery::testing
