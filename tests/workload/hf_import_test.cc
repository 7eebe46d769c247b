// HuggingFace config.json import and LoadModel, on the real configs in
// ../shared/fixtures/hf_configs and on synthetic BERT and ViT configs.
#include "workload/hf_import.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/file.h"
#include "core/json.h"
#include "workload/model_json.h"
#include "workload/model_presets.h"

namespace orrery::workload {
namespace {

std::string HfConfig(const std::string& file) {
  return std::string(ORRERY_FIXTURES_DIR) + "/hf_configs/" + file;
}

ModelSpec Import(const std::string& file) {
  Result<ModelSpec> m = ImportHuggingFaceConfigFile(HfConfig(file));
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.ok() ? m.value() : ModelSpec();
}

Json Parse(const char* text) { return ParseJson(text, "config.json").value(); }

TEST(HfImport, Llama31EightBMatchesThePublishedCount) {
  const ModelSpec m = Import("meta-llama--Meta-Llama-3.1-8B_config.json");
  EXPECT_EQ(m.name, "meta-llama--Meta-Llama-3.1-8B");
  EXPECT_EQ(m.family, ModelFamily::kLlama);
  EXPECT_EQ(m.num_layers, 32);
  EXPECT_EQ(m.num_kv_heads, 8);
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.activation, Activation::kSwiGlu);
  EXPECT_EQ(m.max_sequence_length, 131072);
  // rope_scaling.original_max_position_embeddings: the pre-training length.
  EXPECT_EQ(m.default_sequence_length, 8192);
  EXPECT_FALSE(m.tied_embeddings);
  // HF API safetensors.total of meta-llama/Llama-3.1-8B.
  EXPECT_EQ(m.ParameterCount(), 8'030'261'248);
}

TEST(HfImport, Llama31SeventyBMatchesThePublishedCount) {
  const ModelSpec m = Import("meta-llama--Meta-Llama-3.1-70B_config.json");
  EXPECT_EQ(m.num_layers, 80);
  EXPECT_EQ(m.num_attention_heads, 64);
  EXPECT_EQ(m.ParameterCount(), 70'553'706'496);
  EXPECT_EQ(m.ParameterCount(), ModelPreset("llama3-70b")->ParameterCount());
}

TEST(HfImport, MixtralMatchesThePublishedCount) {
  const ModelSpec m = Import("mistralai--Mixtral-8x7B-v0.1_config.json");
  EXPECT_EQ(m.family, ModelFamily::kMixtral);
  EXPECT_EQ(m.num_experts, 8);
  EXPECT_EQ(m.experts_per_token, 2);
  EXPECT_EQ(m.default_sequence_length, 32768);
  EXPECT_EQ(m.ParameterCount(), 46'702'792'704);
}

TEST(HfImport, Gpt2MatchesThePublishedCount) {
  const ModelSpec m = Import("gpt2_config.json");
  EXPECT_EQ(m.name, "gpt2");  // "_name_or_path"
  EXPECT_EQ(m.family, ModelFamily::kGpt);
  EXPECT_EQ(m.ffn_hidden_size, 4 * 768);  // "n_inner": null
  EXPECT_TRUE(m.tied_embeddings);         // PretrainedConfig's default
  EXPECT_EQ(m.max_sequence_length, 1024);
  // GPT2LMHeadModel.from_pretrained("gpt2").num_parameters().
  EXPECT_EQ(m.ParameterCount(), 124'439'808);
}

TEST(HfImport, T5LargeMatchesThePublishedCount) {
  const ModelSpec m = Import("t5-large_config.json");
  EXPECT_EQ(m.name, "t5-large");
  EXPECT_EQ(m.architecture, Architecture::kEncoderDecoder);
  EXPECT_EQ(m.num_layers, 24);
  EXPECT_EQ(m.num_encoder_layers, 24);
  EXPECT_EQ(m.activation, Activation::kRelu);
  EXPECT_TRUE(m.tied_embeddings);
  EXPECT_EQ(m.ParameterCount(), 737'668'096);
}

// google/t5-v1_1-large: gated-GELU MLP, untied LM head; 783,150,080 as
// T5ForConditionalGeneration reports it.
TEST(HfImport, T5v11HasAGatedMlpAndASeparateLmHead) {
  Json c = ReadJsonFile(HfConfig("t5-large_config.json")).value();
  c["d_ff"] = 2816;
  c["feed_forward_proj"] = "gated-gelu";
  c["tie_word_embeddings"] = false;
  Result<ModelSpec> m = ImportHuggingFaceConfig(c, "t5-v1_1-large/config.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->name, "t5-v1_1-large");
  EXPECT_EQ(m->activation, Activation::kGatedGelu);
  EXPECT_EQ(m->ParameterCount(), 783'150'080);
}

// bert-large-uncased's config.json, as on the hub.
constexpr const char* kBertLarge = R"({
  "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1,
  "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 1024,
  "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 16,
  "num_hidden_layers": 24, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30522
})";

TEST(HfImport, BertCountsTheClassItsArchitecturesName) {
  Json c = Parse(kBertLarge);
  Result<ModelSpec> mlm = ImportHuggingFaceConfig(c, "bert-large-uncased/config.json");
  ASSERT_TRUE(mlm.ok()) << mlm.status().message();
  EXPECT_EQ(mlm->name, "bert-large-uncased");
  EXPECT_TRUE(mlm->mlm_head);
  EXPECT_FALSE(mlm->pooler);
  EXPECT_EQ(mlm->ParameterCount(), 335'174'458);  // BertForMaskedLM

  c.erase("architectures");
  Result<ModelSpec> base = ImportHuggingFaceConfig(c, "bert-large-uncased/config.json");
  ASSERT_TRUE(base.ok()) << base.status().message();
  EXPECT_EQ(base->ParameterCount(), 335'141'888);  // BertModel with pooler
  EXPECT_EQ(base->ParameterCount(), ModelPreset("bert-large")->ParameterCount());
  EXPECT_EQ(base->default_sequence_length, 512);

  c["architectures"] = Json::array({"BertForPreTraining"});
  EXPECT_EQ(ImportHuggingFaceConfig(c, "x.json")->ParameterCount(), 336'226'108);
}

// google/vit-large-patch16-224's config.json, with its 1000 ImageNet labels.
Json VitLargeConfig() {
  Json c = Parse(R"({
    "architectures": ["ViTForImageClassification"], "attention_probs_dropout_prob": 0.0,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 1024, "image_size": 224,
    "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-12,
    "model_type": "vit", "num_attention_heads": 16, "num_channels": 3,
    "num_hidden_layers": 24, "patch_size": 16, "qkv_bias": true
  })");
  Json labels = Json::object();
  for (int i = 0; i < 1000; ++i) labels[std::to_string(i)] = "class " + std::to_string(i);
  c["id2label"] = labels;
  return c;
}

TEST(HfImport, VitLargeIsTheImageNetClassifier) {
  Result<ModelSpec> m = ImportHuggingFaceConfig(VitLargeConfig(), "vit-large-patch16-224.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->name, "vit-large-patch16-224");
  EXPECT_EQ(m->num_classes, 1000);
  EXPECT_EQ(m->max_sequence_length, 197);
  EXPECT_EQ(m->vocab_size, 0);
  EXPECT_EQ(m->ParameterCount(), 304'326'632);
  EXPECT_EQ(m->ParameterCount(), ModelPreset("vit-large")->ParameterCount());
}

TEST(HfImport, VitWithoutAHeadIsViTModelWithItsPooler) {
  Json c = VitLargeConfig();
  c.erase("architectures");
  Result<ModelSpec> m = ImportHuggingFaceConfig(c, "vit.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_TRUE(m->pooler);
  EXPECT_EQ(m->num_classes, 0);
  EXPECT_EQ(m->ParameterCount(), 304'326'632 - (1024 * 1000 + 1000) + (1024 * 1024 + 1024));
}

TEST(HfImport, OmittedKeysTakeTransformersDefaults) {
  Json c = ReadJsonFile(HfConfig("meta-llama--Meta-Llama-3.1-8B_config.json")).value();
  c.erase("num_key_value_heads");
  c.erase("tie_word_embeddings");
  c.erase("rope_scaling");
  c.erase("max_position_embeddings");
  Result<ModelSpec> m = ImportHuggingFaceConfig(c, "config.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->num_kv_heads, 32);           // = num_attention_heads
  EXPECT_FALSE(m->tied_embeddings);         // LlamaConfig default
  EXPECT_EQ(m->max_sequence_length, 2048);  // LlamaConfig default
  EXPECT_EQ(m->default_sequence_length, 2048);

  Json g = ReadJsonFile(HfConfig("gpt2_config.json")).value();
  g["tie_word_embeddings"] = false;
  EXPECT_EQ(ImportHuggingFaceConfig(g, "gpt2.json")->ParameterCount(), 124'439'808 + 50257LL * 768);
}

TEST(HfImport, MissingKeyNamesTheFileAndTheKey) {
  Json c = ReadJsonFile(HfConfig("meta-llama--Meta-Llama-3.1-8B_config.json")).value();
  c.erase("num_hidden_layers");
  Result<ModelSpec> m = ImportHuggingFaceConfig(c, "config.json");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "config.json: field 'num_hidden_layers': missing (expected an integer)");

  Json t = ReadJsonFile(HfConfig("t5-large_config.json")).value();
  t["d_model"] = "1024";
  EXPECT_EQ(ImportHuggingFaceConfig(t, "t5/config.json").status().message(),
            "t5/config.json: field 'd_model': expected an integer, got \"1024\"");
}

TEST(HfImport, UnknownModelTypeNamesItAndTheSupportedOnes) {
  Result<ModelSpec> m =
      ImportHuggingFaceConfig(Parse(R"({"model_type": "falcon"})"), "config.json");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "config.json: field 'model_type': unsupported model type 'falcon' (supported: bert, "
            "gpt2, llama, mistral, mixtral, t5, vit)");
}

TEST(HfImport, MistralIsTheLlamaFamily) {
  Json c = ReadJsonFile(HfConfig("mistralai--Mixtral-8x7B-v0.1_config.json")).value();
  c["model_type"] = "mistral";
  c.erase("num_local_experts");
  c.erase("num_experts_per_tok");
  Result<ModelSpec> m = ImportHuggingFaceConfig(c, "Mistral-7B-v0.1/config.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->family, ModelFamily::kLlama);
  EXPECT_EQ(m->ParameterCount(), 7'241'732'096);  // mistralai/Mistral-7B-v0.1
}

TEST(LoadModel, ReadsPresetsConfigsDirectoriesAndOrreryJson) {
  EXPECT_EQ(LoadModel("llama3-8b")->name, "llama3-8b");
  EXPECT_EQ(LoadModel(HfConfig("gpt2_config.json"))->ParameterCount(), 124'439'808);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / "orrery_hf_import_test" / "Some-Model";
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(
      WriteFileAtomically((dir / "config.json").string(), DumpJson(Parse(kBertLarge))).ok());
  Result<ModelSpec> from_dir = LoadModel(dir.string());
  ASSERT_TRUE(from_dir.ok()) << from_dir.status().message();
  EXPECT_EQ(from_dir->name, "Some-Model");

  const std::string orrery_json = (dir / "model.json").string();
  ASSERT_TRUE(
      WriteFileAtomically(orrery_json, DumpJson(ModelSpecToJson(*ModelPreset("t5-large")))).ok());
  Result<ModelSpec> from_json = LoadModel(orrery_json);
  ASSERT_TRUE(from_json.ok()) << from_json.status().message();
  EXPECT_EQ(from_json->ParameterCount(), 737'668'096);
  std::filesystem::remove_all(dir.parent_path());
}

TEST(LoadModel, NeitherAPresetNorAFileIsNotFound) {
  Result<ModelSpec> m = LoadModel("lama3-8b");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("unknown model 'lama3-8b': not a preset and not a file "
                                      "(presets: gpt-1.7b,"),
            std::string::npos)
      << m.status().message();
}

}  // namespace
}  // namespace orrery::workload
