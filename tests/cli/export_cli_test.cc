// `orrery export`: a plan from flags, a plan file or a Galvatron config,
// written for Megatron-LM, DeepSpeed or Galvatron to stdout or --out; what a
// framework cannot express refused with the file and the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kGalvatronFixture[] =
    "galvatron/main_gpt_llama2-7b/galvatron_config_llama2-7b_1nodes_8gpus_per_node_36GB_bf16.json";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteAll(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

TEST(ExportCli, MegatronArgumentsFromFlags) {
  CliRun run = RunOrrery(
      "export --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 8 --pp 4 --vpp 4 "
      "--micro-batch 1 --global-batch 512 --sequence-parallel --recompute selective --zero 1 "
      "--to megatron");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, StartsWith("--num-layers 80 \\\n--hidden-size 8192 \\\n"));
  EXPECT_THAT(run.out, HasSubstr("--tensor-model-parallel-size 8 \\\n"
                                 "--pipeline-model-parallel-size 4 \\\n"
                                 "--sequence-parallel \\\n"
                                 "--num-layers-per-virtual-pipeline-stage 5 \\\n"));
  EXPECT_THAT(run.out, HasSubstr("--use-distributed-optimizer \\\n--bf16\n"));
  EXPECT_THAT(run.err, HasSubstr("note: launch on tp × cp × dp × pp = 8 × 1 × 2 × 4 = 64 GPUs"));
}

TEST(ExportCli, GalvatronConfigAsPlanExportsToMegatron) {
  CliRun run = RunOrrery("export --model llama2-7b --cluster dgx-a100-80gb --plan " +
                         Fixture(kGalvatronFixture) + " --to megatron");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // 8 GPUs of pure data parallelism in ZeRO-3; layers 0-19 of the one
  // stage recomputed: Megatron's block method with 20 layers.
  EXPECT_THAT(run.out, HasSubstr("--tensor-model-parallel-size 1 \\\n"
                                 "--pipeline-model-parallel-size 1 \\\n"
                                 "--micro-batch-size 2 \\\n"
                                 "--global-batch-size 16 \\\n"
                                 "--recompute-granularity full \\\n"
                                 "--recompute-method block \\\n"
                                 "--recompute-num-layers 20 \\\n"
                                 "--use-megatron-fsdp \\\n"
                                 "--data-parallel-sharding-strategy optim_grads_params \\\n"));
}

TEST(ExportCli, GalvatronExportReadsBackAsTheSamePlan) {
  const std::string dir = MakeTempDir("export_cli_galvatron");
  const std::string flags =
      "--model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 --global-batch 64 "
      "--recompute full";
  CliRun write = RunOrrery("export " + flags + " --to galvatron --out " + dir + "/g.json");
  ASSERT_EQ(write.exit_code, 0) << write.err;
  EXPECT_EQ(write.out, "");
  const std::string config = ReadAll(dir + "/g.json");
  EXPECT_THAT(config, HasSubstr("\"pp_deg\": 4"));
  EXPECT_THAT(config, HasSubstr("\"pp_division\": \"6,6,6,6\""));
  EXPECT_THAT(config, HasSubstr("\"pipeline_type\": \"pipedream_flush\""));
  EXPECT_THAT(write.err, HasSubstr("note: run Galvatron with --mixed_precision bf16"));

  CliRun direct = RunOrrery("plan " + flags);
  CliRun imported = RunOrrery("plan --model gpt-1.7b --cluster dgx-h100 --nodes 2 --plan " + dir +
                              "/g.json");
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(imported.out, direct.out);
}

TEST(ExportCli, DeepSpeedConfigOnStdoutAndLauncherArgumentsOnStderr) {
  CliRun run = RunOrrery(
      "export --model llama2-7b --cluster dgx-a100-80gb --tp 2 --micro-batch 4 "
      "--global-batch 64 --zero 1 --to deepspeed");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("\"train_batch_size\": 64"));
  EXPECT_THAT(run.out, HasSubstr("\"gradient_accumulation_steps\": 4"));
  EXPECT_THAT(run.err, HasSubstr("note: Megatron-DeepSpeed arguments: "
                                 "--tensor-model-parallel-size 2"));
  CliRun quiet = RunOrrery(
      "export --quiet --model llama2-7b --cluster dgx-a100-80gb --tp 2 --micro-batch 4 "
      "--global-batch 64 --zero 1 --to deepspeed");
  EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "");
}

TEST(ExportCli, RefusalNamesThePlanFileAndField) {
  const std::string dir = MakeTempDir("export_cli_refusal");
  CliRun plan = RunOrrery(
      "plan --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 --vpp 2 "
      "--global-batch 64 --out " + dir + "/p.json");
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  CliRun run = RunOrrery("export --model gpt-1.7b --cluster dgx-h100 --nodes 2 --plan " + dir +
                         "/p.json --to galvatron --out " + dir + "/g.json");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr(dir + "/p.json: cannot export to Galvatron: pipeline.schedule: "
                                 "Galvatron has no interleaved schedule"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/g.json"));
}

TEST(ExportCli, BrokenGalvatronConfigNamesTheFileAndField) {
  const std::string dir = MakeTempDir("export_cli_broken");
  std::string config = ReadAll(Fixture(kGalvatronFixture));
  const std::string flags = "\"tp_sizes_enc\": \"1,";
  config.replace(config.find(flags), flags.size(), "\"tp_sizes_enc\": \"");
  WriteAll(dir + "/bad.json", config);
  CliRun run = RunOrrery("export --model llama2-7b --cluster dgx-a100-80gb --plan " + dir +
                         "/bad.json --to megatron");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr(dir + "/bad.json: field 'tp_sizes_enc': expected one entry per "
                                 "layer (32), got 31"));
  EXPECT_EQ(run.out, "");
}

TEST(ExportCli, UnknownFormatAndMissingToAreUsageErrors) {
  CliRun bad = RunOrrery("export --model llama2-7b --cluster dgx-a100-80gb --to nemo");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--to: expected 'megatron', 'deepspeed' or 'galvatron', got "
                                 "'nemo'"));
  CliRun missing = RunOrrery("export --model llama2-7b --cluster dgx-a100-80gb");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("--to is required"));
}

TEST(ExportCli, InvalidPlanIsNotExported) {
  CliRun run = RunOrrery(
      "export --model llama2-7b --cluster dgx-a100-80gb --tp 3 --to megatron");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("layers[0-31].tp"));
  EXPECT_EQ(run.out, "");
}

TEST(ExportCli, HelpTeachesWithExamples) {
  CliRun run = RunOrrery("export --help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("--to megatron|deepspeed|galvatron"));
  EXPECT_THAT(run.out, HasSubstr("orrery export --model llama2-7b --cluster dgx-a100-80gb"));
  EXPECT_THAT(run.out, Not(HasSubstr("not built")));
}

}  // namespace
}  // namespace orrery::testing
