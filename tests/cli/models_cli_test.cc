// `orrery models`: the preset table, one model described as text or JSON,
// HuggingFace configs, and bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

Json ParseOut(const CliRun& run) {
  Result<Json> j = ParseJson(run.out, "stdout");
  EXPECT_TRUE(j.ok()) << j.status().message() << "\n" << run.out;
  return j.ok() ? j.value() : Json();
}

TEST(ModelsCli, WithoutArgumentsListsEveryPresetWithItsSize) {
  CliRun run = RunOrrery("models");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.err.empty()) << run.err;
  EXPECT_NE(run.out.find("name          family   parameters  layers  hidden  heads/kv    seq"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("llama3-70b    llama        70.55B      80    8192      64/8   8192"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("t5-large      t5            0.74B   24+24    1024     16/16    512"),
            std::string::npos)
      << run.out;
  for (const char* name : {"gpt-1.7b", "gpt-1t", "gpt3-175b", "llama2-7b", "llama3-405b",
                           "mixtral-8x7b", "bert-large", "vit-large"}) {
    EXPECT_NE(run.out.find(std::string("\n") + name + " "), std::string::npos) << name;
  }
}

TEST(ModelsCli, JsonListHasExactCounts) {
  CliRun run = RunOrrery("models --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Json doc = ParseOut(run);
  ASSERT_TRUE(doc.contains("models"));
  EXPECT_EQ(doc["models"].size(), 23u);
  bool found = false;
  for (const Json& m : doc["models"]) {
    if (m["name"] == "mixtral-8x7b") {
      found = true;
      EXPECT_EQ(m["parameters"].get<int64_t>(), 46'702'792'704);
    }
  }
  EXPECT_TRUE(found);
}

TEST(ModelsCli, DescribesOnePresetAsText) {
  CliRun run = RunOrrery("models --model llama3-8b");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("llama3-8b (llama, decoder-only)"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("parameters          8,030,261,248 (8.03B)"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("attention heads     32 (8 key/value, head dim 128)"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("source              Llama Team (arXiv 2407.21783)"), std::string::npos)
      << run.out;
}

TEST(ModelsCli, DescribesOneModelAsJsonWithTheTopLevelFields) {
  CliRun run = RunOrrery("models --model llama3-70b --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Json j = ParseOut(run);
  EXPECT_EQ(j["parameters"].get<int64_t>(), 70'553'706'496);
  EXPECT_EQ(j["layers"], 80);
  EXPECT_EQ(j["hidden_size"], 8192);
  EXPECT_EQ(j["heads"], 64);
  EXPECT_EQ(j["family"], "llama");
}

TEST(ModelsCli, ReadsAHuggingFaceConfig) {
  CliRun run =
      RunOrrery("models --model " + Fixture("hf_configs/t5-large_config.json") + " --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Json j = ParseOut(run);
  EXPECT_EQ(j["name"], "t5-large");
  EXPECT_EQ(j["family"], "t5");
  EXPECT_EQ(j["parameters"].get<int64_t>(), 737'668'096);
  EXPECT_EQ(j["layers"], 24);
  EXPECT_EQ(j["encoder_layers"], 24);
}

TEST(ModelsCli, ItsJsonOutputIsAModelItCanReadBack) {
  const std::string dir = MakeTempDir("orrery_models_cli");
  CliRun first = RunOrrery("models --model gpt-530b --format json");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  std::ofstream(dir + "/m.json") << first.out;
  CliRun again = RunOrrery("models --model " + dir + "/m.json");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("parameters          529,600,819,200 (529.60B)"), std::string::npos)
      << again.out;
}

TEST(ModelsCli, UnknownModelExitsTwoWithOneMessage) {
  CliRun run = RunOrrery("models --model llama5-1t");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.out.empty());
  EXPECT_EQ(run.err.rfind("orrery models: error: unknown model 'llama5-1t': not a preset and "
                          "not a file (presets: gpt-1.7b, ",
                          0),
            0u)
      << run.err;
  EXPECT_EQ(run.err.find('\n'), run.err.size() - 1) << run.err;
}

TEST(ModelsCli, ABrokenConfigNamesTheFileAndTheField) {
  const std::string dir = MakeTempDir("orrery_models_cli");
  std::ofstream(dir + "/config.json") << R"({"model_type": "llama", "hidden_size": 4096})";
  CliRun run = RunOrrery("models --model " + dir + "/config.json");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery models: error: " + dir +
                         "/config.json: field 'num_hidden_layers': missing (expected an "
                         "integer)\n");
}

TEST(ModelsCli, BadFormatExitsTwo) {
  CliRun run = RunOrrery("models --format yaml");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery models: error: --format: expected 'text' or 'json', got 'yaml'\n");
}

TEST(ModelsCli, HelpTeachesWithExamples) {
  CliRun run = RunOrrery("models --help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("Usage: orrery models"), std::string::npos);
  EXPECT_NE(run.out.find("orrery models --model llama3-70b"), std::string::npos);
  EXPECT_NE(run.out.find("config.json"), std::string::npos);
}

}  // namespace
}  // namespace orrery::testing
