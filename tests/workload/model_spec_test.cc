// ModelSpec: exact parameter counts against published figures, the presets,
// validation, and the JSON form.
#include "workload/model_spec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "core/json.h"
#include "workload/model_json.h"
#include "workload/model_presets.h"

namespace orrery::workload {
namespace {

ModelSpec Preset(const std::string& name) {
  Result<ModelSpec> m = ModelPreset(name);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.value();
}

// Published exact counts (transformers' model.num_parameters(), or the
// reference codebase's own count), with where each comes from:
//  - Llama 2 / 3.1: HF API safetensors.total of meta-llama/Llama-3.1-{8B,
//    70B,405B}; for Llama-2-{7b,13b,70b}-hf the hub totals are larger by
//    layers × 64 (rotary inv_freq buffers stored in those checkpoints) and
//    num_parameters() gives these figures (e.g. keras-hub llama_7b_en
//    "params": 6738415616).
//  - Llama-3-8B/70B have the Llama-3.1 shapes (only RoPE scaling differs).
//  - Mixtral-8x7B: keras-hub mixtral_8_7b_en "params": 46702792704; HF API
//    safetensors.total of mistralai/Mixtral-8x7B-Instruct-v0.1.
//  - BERT-Large: BertModel with pooler, keras-hub bert_large_en_uncased
//    "params": 335141888.
//  - T5-Large: the T5 codebase's "Trainable Variables ... Total size:
//    737668096" (google-research/text-to-text-transfer-transformer#326).
//  - ViT-Large/16 at 224 with a 1000-class head and no pooler:
//    torchvision vit_l_16 "num_params": 304326632 (same layout as HF
//    ViTForImageClassification google/vit-large-patch16-224).
TEST(ModelPresets, ParameterCountsEqualThePublishedExactCounts) {
  const std::map<std::string, int64_t> published = {
      {"llama2-7b", 6'738'415'616},     {"llama2-13b", 13'015'864'320},
      {"llama2-70b", 68'976'648'192},   {"llama3-8b", 8'030'261'248},
      {"llama3-70b", 70'553'706'496},   {"llama3-405b", 405'853'388'800},
      {"mixtral-8x7b", 46'702'792'704}, {"bert-large", 335'141'888},
      {"t5-large", 737'668'096},        {"vit-large", 304'326'632},
  };
  for (const auto& [name, count] : published) {
    EXPECT_EQ(Preset(name).ParameterCount(), count) << name;
  }
}

TEST(ModelPresets, EveryPresetValidatesAndCitesASource) {
  ASSERT_EQ(ModelPresets().size(), 23u);
  for (const ModelSpec& m : ModelPresets()) {
    EXPECT_TRUE(ValidateModelSpec(m).ok()) << m.name << ": " << ValidateModelSpec(m).message();
    EXPECT_FALSE(m.source.empty()) << m.name;
    EXPECT_GT(m.ParameterCount(), 0) << m.name;
    EXPECT_LE(m.default_sequence_length, m.max_sequence_length) << m.name;
  }
}

TEST(ModelPresets, DefaultSequenceLengthIsTheTrainingSequenceLength) {
  const std::map<std::string, int> expected = {
      {"gpt-1.7b", 2048},   {"gpt-1t", 2048},    {"gpt3-175b", 2048},   {"llama2-7b", 4096},
      {"llama2-70b", 4096}, {"llama3-8b", 8192}, {"llama3-405b", 8192}, {"mixtral-8x7b", 32768},
      {"bert-large", 512},  {"t5-large", 512},   {"vit-large", 197},
  };
  for (const auto& [name, seq] : expected) {
    EXPECT_EQ(Preset(name).default_sequence_length, seq) << name;
  }
  EXPECT_EQ(Preset("llama3-405b").max_sequence_length, 131072);
}

TEST(ModelPresets, UnknownNameIsNotFoundAndListsThePresets) {
  Result<ModelSpec> m = ModelPreset("llama4-8b");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("unknown model preset 'llama4-8b' (presets: gpt-1.7b, "),
            std::string::npos)
      << m.status().message();
  EXPECT_NE(m.status().message().find("vit-large, gpt-tiny, llama-tiny)"), std::string::npos);
}

// Narayanan et al. SC21 Table 1: the published sizes are Eq. 2 rounded to
// 0.1 B; the fixture holds the table's rows.
TEST(ModelPresets, MegatronGptSeriesMatchesSc21TableOne) {
  Result<Json> rows =
      ReadJsonFile(std::string(ORRERY_FIXTURES_DIR) + "/published/megatron_measured.json");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  const std::map<std::string, std::string> preset_of_row = {
      {"sc21_t1_1.7B", "gpt-1.7b"},   {"sc21_t1_3.6B", "gpt-3.6b"},
      {"sc21_t1_7.5B", "gpt-7.5b"},   {"sc21_t1_18.4B", "gpt-18b"},
      {"sc21_t1_39.1B", "gpt-39b"},   {"sc21_t1_76.1B", "gpt-76b"},
      {"sc21_t1_145.6B", "gpt-145b"}, {"sc21_t1_310.1B", "gpt-310b"},
      {"sc21_t1_529.6B", "gpt-530b"}, {"sc21_t1_1008.0B", "gpt-1t"},
  };
  int matched = 0;
  for (const Json& row : *rows) {
    auto it = preset_of_row.find(row.at("id").get<std::string>());
    if (it == preset_of_row.end()) continue;
    ++matched;
    const ModelSpec m = Preset(it->second);
    EXPECT_EQ(m.num_layers, row.at("layers").get<int>()) << m.name;
    EXPECT_EQ(m.hidden_size, row.at("hidden").get<int>()) << m.name;
    EXPECT_EQ(m.num_attention_heads, row.at("heads").get<int>()) << m.name;
    EXPECT_EQ(m.ffn_hidden_size, row.at("ffn_hidden").get<int>()) << m.name;
    EXPECT_EQ(m.vocab_size, row.at("vocab").get<int>()) << m.name;
    EXPECT_EQ(m.default_sequence_length, row.at("seq_len").get<int>()) << m.name;
    const double published_b = row.at("params_b").get<double>();
    const double eq2_b = static_cast<double>(MegatronEq2ParameterCount(m)) / 1e9;
    EXPECT_LT(std::abs(eq2_b - published_b), 0.05) << m.name << ": Eq. 2 gives " << eq2_b;
    // The model itself also has the final LayerNorm, which Eq. 2 leaves out.
    EXPECT_EQ(m.ParameterCount(), MegatronEq2ParameterCount(m) + 2 * m.hidden_size) << m.name;
  }
  EXPECT_EQ(matched, 10);
}

TEST(ModelPresets, Gpt3Is175BillionParameters) {
  const ModelSpec m = Preset("gpt3-175b");
  EXPECT_EQ(m.num_layers, 96);
  EXPECT_EQ(m.hidden_size, 12288);
  EXPECT_EQ(m.num_attention_heads, 96);
  EXPECT_EQ(m.head_dim, 128);
  // 12·96·12288² + 13·96·12288 + (51200 + 2048)·12288 + 2·12288.
  EXPECT_EQ(m.ParameterCount(), 174'615'846'912);
}

TEST(ModelSpec, OneLayerGptCountsByHand) {
  ModelSpec m = Preset("gpt-1.7b");
  m.name = "tiny";
  m.num_layers = 1;
  m.hidden_size = 8;
  m.num_attention_heads = 2;
  m.num_kv_heads = 2;
  m.head_dim = 4;
  m.ffn_hidden_size = 32;
  m.vocab_size = 10;
  m.max_sequence_length = 4;
  m.default_sequence_length = 4;
  ASSERT_TRUE(ValidateModelSpec(m).ok());
  // Block 12h² + 13h = 872, embeddings (V + s)h = 112, final LayerNorm 2h = 16.
  EXPECT_EQ(m.ParameterCount(), 1000);
  m.tied_embeddings = false;
  EXPECT_EQ(m.ParameterCount(), 1000 + 10 * 8);
}

TEST(ModelSpec, MixtureOfExpertsAddsExpertsAndARouterPerLayer) {
  ModelSpec dense = Preset("mixtral-8x7b");
  dense.family = ModelFamily::kLlama;
  dense.num_experts = 0;
  dense.experts_per_token = 0;
  const int64_t expert = 3LL * 4096 * 14336;
  EXPECT_EQ(Preset("mixtral-8x7b").ParameterCount() - dense.ParameterCount(),
            32 * (7 * expert + 4096 * 8));
  // The dense twin is Mistral-7B: 7,241,732,096 parameters.
  EXPECT_EQ(dense.ParameterCount(), 7'241'732'096);
}

// The head variants of BERT-Large and ViT-Large, as transformers builds them.
TEST(ModelSpec, BertAndVitHeadsChangeTheCountAsTransformersDoes) {
  ModelSpec bert = Preset("bert-large");
  bert.pooler = false;
  EXPECT_EQ(bert.ParameterCount(), 335'141'888 - (1024 * 1024 + 1024));
  bert.mlm_head = true;  // BertForMaskedLM
  EXPECT_EQ(bert.ParameterCount(), 335'174'458);
  bert.pooler = true;
  bert.num_classes = 2;  // BertForPreTraining
  EXPECT_EQ(bert.ParameterCount(), 336'226'108);

  ModelSpec vit = Preset("vit-large");
  vit.num_classes = 0;
  vit.pooler = true;  // ViTModel
  EXPECT_EQ(vit.ParameterCount(), 304'326'632 - (1024 * 1000 + 1000) + (1024 * 1024 + 1024));
}

TEST(ModelSpec, ValidationNamesTheModelAndTheField) {
  ModelSpec m = Preset("llama3-8b");
  m.num_kv_heads = 5;
  EXPECT_EQ(ValidateModelSpec(m).message(),
            "model 'llama3-8b': field 'num_kv_heads': expected a divisor of num_attention_heads "
            "(32), got 5");

  m = Preset("mixtral-8x7b");
  m.experts_per_token = 9;
  EXPECT_EQ(ValidateModelSpec(m).message(),
            "model 'mixtral-8x7b': field 'experts_per_token': expected at most num_experts (8), "
            "got 9");

  m = Preset("vit-large");
  m.max_sequence_length = 196;
  m.default_sequence_length = 196;
  EXPECT_EQ(ValidateModelSpec(m).message(),
            "model 'vit-large': field 'max_sequence_length': expected (image_size / "
            "patch_size)^2 + 1 = 197 tokens (patches and [CLS]), got 196");

  m = Preset("t5-large");
  m.num_encoder_layers = 0;
  EXPECT_EQ(ValidateModelSpec(m).message(),
            "model 't5-large': field 'num_encoder_layers': expected a positive integer, got 0");

  m = Preset("gpt-1.7b");
  m.architecture = Architecture::kEncoderOnly;
  EXPECT_EQ(ValidateModelSpec(m).message(),
            "model 'gpt-1.7b': field 'architecture': the gpt family is decoder-only, got "
            "encoder-only");

  m = Preset("bert-large");
  m.head_dim = 128;
  EXPECT_EQ(ValidateModelSpec(m).message(),
            "model 'bert-large': field 'head_dim': expected hidden_size / num_attention_heads = "
            "64, got 128");
}

TEST(ModelJson, EveryPresetRoundTripsThroughJson) {
  for (const ModelSpec& m : ModelPresets()) {
    const Json j = ModelSpecToJson(m);
    EXPECT_EQ(j.at("parameters").get<int64_t>(), m.ParameterCount()) << m.name;
    Result<ModelSpec> back = ParseModelSpecJson(j, m.name + ".json");
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(DumpJson(ModelSpecToJson(*back)), DumpJson(j)) << m.name;
  }
}

TEST(ModelJson, TopLevelFieldsAreThoseTheCliPrints) {
  const Json j = ModelSpecToJson(Preset("llama3-70b"));
  EXPECT_EQ(j.at("name"), "llama3-70b");
  EXPECT_EQ(j.at("family"), "llama");
  EXPECT_EQ(j.at("architecture"), "decoder-only");
  EXPECT_EQ(j.at("parameters").get<int64_t>(), 70'553'706'496);
  EXPECT_EQ(j.at("layers"), 80);
  EXPECT_EQ(j.at("hidden_size"), 8192);
  EXPECT_EQ(j.at("heads"), 64);
  EXPECT_EQ(j.at("kv_heads"), 8);
  EXPECT_EQ(j.at("head_dim"), 128);
  EXPECT_EQ(j.at("activation"), "swiglu");
  EXPECT_EQ(j.at("norm"), "rmsnorm");
  EXPECT_EQ(j.at("position_embedding"), "rotary");
}

TEST(ModelJson, AParameterCountThatDisagreesWithTheArchitectureIsAnError) {
  Json j = ModelSpecToJson(Preset("llama2-7b"));
  j["parameters"] = 7'000'000'000;
  Result<ModelSpec> m = ParseModelSpecJson(j, "model.json");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "model.json: field 'parameters': the architecture above has 6738415616 parameters, "
            "but the file says 7000000000");
}

TEST(ModelJson, RejectsUnknownFieldsBadEnumsAndMissingFields) {
  Json j = ModelSpecToJson(Preset("llama2-7b"));
  j["hiden_size"] = 4096;
  EXPECT_NE(ParseModelSpecJson(j, "m.json")
                .status()
                .message()
                .find("m.json: field 'hiden_size': unknown field"),
            std::string::npos);

  j = ModelSpecToJson(Preset("llama2-7b"));
  j["norm"] = "batchnorm";
  EXPECT_EQ(ParseModelSpecJson(j, "m.json").status().message(),
            "m.json: field 'norm': expected one of 'layernorm', 'rmsnorm', got 'batchnorm'");

  j = ModelSpecToJson(Preset("llama2-7b"));
  j.erase("layers");
  EXPECT_EQ(ParseModelSpecJson(j, "m.json").status().message(),
            "m.json: field 'layers': missing (expected an integer)");

  j = ModelSpecToJson(Preset("llama2-7b"));
  j["kv_heads"] = 3;
  EXPECT_EQ(ParseModelSpecJson(j, "m.json").status().message(),
            "m.json: model 'llama2-7b': field 'num_kv_heads': expected a divisor of "
            "num_attention_heads (32), got 3");
}

TEST(ModelJson, ParametersAndSourceMayBeLeftOut) {
  Json j = ModelSpecToJson(Preset("t5-large"));
  j.erase("parameters");
  j.erase("source");
  Result<ModelSpec> m = ParseModelSpecJson(j, "my-t5.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->ParameterCount(), 737'668'096);
  EXPECT_EQ(m->source, "my-t5.json");
}

}  // namespace
}  // namespace orrery::workload
