#include "workload/hf_import.h"

#include <filesystem>
#include <functional>
#include <map>
#include <string_view>
#include <system_error>

#include "workload/model_json.h"
#include "workload/model_presets.h"

namespace orrery::workload {
namespace {

constexpr int64_t kMaxInt = 2'000'000'000;

// A key that is present and not null; transformers treats null as "use the
// default" (GPT-2's "n_inner": null, Llama's "head_dim": null).
bool Present(const JsonReader& r, std::string_view key) {
  return r.Has(key) && !r.json().at(std::string(key)).is_null();
}

Result<int> RequiredPositive(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(int64_t v, r.PositiveInt(key));
  if (v > kMaxInt) return r.FieldError(key, "expected at most 2e9, got " + std::to_string(v));
  return static_cast<int>(v);
}

Result<int> OptionalPositive(const JsonReader& r, std::string_view key, int fallback) {
  if (!Present(r, key)) return fallback;
  return RequiredPositive(r, key);
}

Result<bool> OptionalBool(const JsonReader& r, std::string_view key, bool fallback) {
  if (!Present(r, key)) return fallback;
  return r.Bool(key);
}

Result<std::string> OptionalString(const JsonReader& r, std::string_view key,
                                   std::string fallback) {
  if (!Present(r, key)) return fallback;
  return r.String(key);
}

// The first entry of "architectures", or "" when absent.
Result<std::string> FirstArchitecture(const JsonReader& r) {
  if (!Present(r, "architectures")) return std::string();
  const Json& a = r.json().at("architectures");
  if (!a.is_array()) return r.FieldError("architectures", "expected an array of class names");
  if (a.empty()) return std::string();
  if (!a[0].is_string()) {
    return r.FieldError("architectures[0]", "expected a class name, got " + JsonSnippet(a[0]));
  }
  return a[0].get<std::string>();
}

// rope_scaling.original_max_position_embeddings, when the config has it.
Result<std::optional<int>> OriginalMaxPositions(const JsonReader& r) {
  if (!Present(r, "rope_scaling")) return std::optional<int>();
  ORRERY_ASSIGN_OR_RETURN(JsonReader scaling, r.Object("rope_scaling"));
  if (!Present(scaling, "original_max_position_embeddings")) return std::optional<int>();
  ORRERY_ASSIGN_OR_RETURN(int v, RequiredPositive(scaling, "original_max_position_embeddings"));
  return std::optional<int>(v);
}

// Activations of the gated MLP of Llama-style models (hidden_act).
Result<Activation> GatedActivation(const JsonReader& r, const std::string& act) {
  if (act == "silu" || act == "swish") return Activation::kSwiGlu;
  if (act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh") {
    return Activation::kGatedGelu;
  }
  return r.FieldError("hidden_act", "expected 'silu' (or 'gelu'), got '" + act + "'");
}

// Activations of a two-matrix MLP (GPT-2, BERT, ViT).
Result<Activation> PlainActivation(const JsonReader& r, std::string_view key,
                                   const std::string& act) {
  if (act.rfind("gelu", 0) == 0 || act == "quick_gelu") return Activation::kGelu;
  if (act == "relu") return Activation::kRelu;
  return r.FieldError(key, "expected a GELU variant or 'relu', got '" + act + "'");
}

// llama, mistral, mixtral: LlamaForCausalLM / MistralForCausalLM /
// MixtralForCausalLM.
Result<ModelSpec> ImportLlamaLike(const JsonReader& r, const std::string& model_type) {
  ModelSpec m;
  m.family = model_type == "mixtral" ? ModelFamily::kMixtral : ModelFamily::kLlama;
  m.architecture = Architecture::kDecoderOnly;
  ORRERY_ASSIGN_OR_RETURN(m.num_layers, RequiredPositive(r, "num_hidden_layers"));
  ORRERY_ASSIGN_OR_RETURN(m.hidden_size, RequiredPositive(r, "hidden_size"));
  ORRERY_ASSIGN_OR_RETURN(m.num_attention_heads, RequiredPositive(r, "num_attention_heads"));
  ORRERY_ASSIGN_OR_RETURN(m.ffn_hidden_size, RequiredPositive(r, "intermediate_size"));
  ORRERY_ASSIGN_OR_RETURN(m.vocab_size, RequiredPositive(r, "vocab_size"));
  ORRERY_ASSIGN_OR_RETURN(m.num_kv_heads,
                          OptionalPositive(r, "num_key_value_heads", m.num_attention_heads));
  if (m.hidden_size % m.num_attention_heads != 0 && !Present(r, "head_dim")) {
    return r.FieldError("num_attention_heads", "expected a divisor of hidden_size (" +
                                                   std::to_string(m.hidden_size) +
                                                   ") when head_dim is not given, got " +
                                                   std::to_string(m.num_attention_heads));
  }
  ORRERY_ASSIGN_OR_RETURN(m.head_dim,
                          OptionalPositive(r, "head_dim", m.hidden_size / m.num_attention_heads));
  // LlamaConfig: max_position_embeddings=2048; MistralConfig and
  // MixtralConfig: 4096 * 32.
  ORRERY_ASSIGN_OR_RETURN(
      m.max_sequence_length,
      OptionalPositive(r, "max_position_embeddings", model_type == "llama" ? 2048 : 131072));
  ORRERY_ASSIGN_OR_RETURN(std::optional<int> original, OriginalMaxPositions(r));
  m.default_sequence_length = original.value_or(m.max_sequence_length);
  if (m.default_sequence_length > m.max_sequence_length) {
    m.default_sequence_length = m.max_sequence_length;
  }
  ORRERY_ASSIGN_OR_RETURN(std::string act, OptionalString(r, "hidden_act", "silu"));
  ORRERY_ASSIGN_OR_RETURN(m.activation, GatedActivation(r, act));
  m.norm = NormKind::kRmsNorm;
  m.position_embedding = PositionEmbedding::kRotary;
  ORRERY_ASSIGN_OR_RETURN(m.tied_embeddings, OptionalBool(r, "tie_word_embeddings", false));
  if (model_type == "llama") {
    ORRERY_ASSIGN_OR_RETURN(bool attention_bias, OptionalBool(r, "attention_bias", false));
    ORRERY_ASSIGN_OR_RETURN(bool mlp_bias, OptionalBool(r, "mlp_bias", false));
    if (attention_bias != mlp_bias) {
      return r.FieldError("mlp_bias",
                          "attention_bias and mlp_bias must agree (orrery models biases on all "
                          "linears or on none), got attention_bias " +
                              std::string(attention_bias ? "true" : "false"));
    }
    m.linear_bias = attention_bias;
  }
  if (m.family == ModelFamily::kMixtral) {
    ORRERY_ASSIGN_OR_RETURN(m.num_experts, RequiredPositive(r, "num_local_experts"));
    ORRERY_ASSIGN_OR_RETURN(m.experts_per_token, RequiredPositive(r, "num_experts_per_tok"));
  }
  return m;
}

// gpt2: GPT2LMHeadModel.
Result<ModelSpec> ImportGpt2(const JsonReader& r) {
  ModelSpec m;
  m.family = ModelFamily::kGpt;
  m.architecture = Architecture::kDecoderOnly;
  ORRERY_ASSIGN_OR_RETURN(m.num_layers, RequiredPositive(r, "n_layer"));
  ORRERY_ASSIGN_OR_RETURN(m.hidden_size, RequiredPositive(r, "n_embd"));
  ORRERY_ASSIGN_OR_RETURN(m.num_attention_heads, RequiredPositive(r, "n_head"));
  ORRERY_ASSIGN_OR_RETURN(m.vocab_size, RequiredPositive(r, "vocab_size"));
  ORRERY_ASSIGN_OR_RETURN(m.max_sequence_length, RequiredPositive(r, "n_positions"));
  ORRERY_ASSIGN_OR_RETURN(m.ffn_hidden_size, OptionalPositive(r, "n_inner", 4 * m.hidden_size));
  m.num_kv_heads = m.num_attention_heads;
  m.head_dim = m.hidden_size / m.num_attention_heads;
  m.default_sequence_length = m.max_sequence_length;
  ORRERY_ASSIGN_OR_RETURN(std::string act, OptionalString(r, "activation_function", "gelu_new"));
  ORRERY_ASSIGN_OR_RETURN(m.activation, PlainActivation(r, "activation_function", act));
  m.norm = NormKind::kLayerNorm;
  m.position_embedding = PositionEmbedding::kLearned;
  m.linear_bias = true;
  ORRERY_ASSIGN_OR_RETURN(m.tied_embeddings, OptionalBool(r, "tie_word_embeddings", true));
  return m;
}

// bert: BertModel, BertForMaskedLM or BertForPreTraining.
Result<ModelSpec> ImportBert(const JsonReader& r) {
  ModelSpec m;
  m.family = ModelFamily::kBert;
  m.architecture = Architecture::kEncoderOnly;
  ORRERY_ASSIGN_OR_RETURN(m.num_layers, RequiredPositive(r, "num_hidden_layers"));
  ORRERY_ASSIGN_OR_RETURN(m.hidden_size, RequiredPositive(r, "hidden_size"));
  ORRERY_ASSIGN_OR_RETURN(m.num_attention_heads, RequiredPositive(r, "num_attention_heads"));
  ORRERY_ASSIGN_OR_RETURN(m.ffn_hidden_size, RequiredPositive(r, "intermediate_size"));
  ORRERY_ASSIGN_OR_RETURN(m.vocab_size, RequiredPositive(r, "vocab_size"));
  ORRERY_ASSIGN_OR_RETURN(m.max_sequence_length, RequiredPositive(r, "max_position_embeddings"));
  ORRERY_ASSIGN_OR_RETURN(m.type_vocab_size, OptionalPositive(r, "type_vocab_size", 2));
  m.num_kv_heads = m.num_attention_heads;
  m.head_dim = m.hidden_size / m.num_attention_heads;
  m.default_sequence_length = m.max_sequence_length;
  ORRERY_ASSIGN_OR_RETURN(std::string act, OptionalString(r, "hidden_act", "gelu"));
  ORRERY_ASSIGN_OR_RETURN(m.activation, PlainActivation(r, "hidden_act", act));
  m.norm = NormKind::kLayerNorm;
  m.position_embedding = PositionEmbedding::kLearned;
  m.linear_bias = true;
  ORRERY_ASSIGN_OR_RETURN(m.tied_embeddings, OptionalBool(r, "tie_word_embeddings", true));
  ORRERY_ASSIGN_OR_RETURN(std::string head, FirstArchitecture(r));
  if (head == "BertForMaskedLM") {
    m.mlm_head = true;
  } else if (head == "BertForPreTraining") {
    m.pooler = true;
    m.mlm_head = true;
    m.num_classes = 2;  // the next-sentence head
  } else {
    m.pooler = true;  // BertModel(add_pooling_layer=True)
  }
  return m;
}

// The classifier width of ViTForImageClassification: len(id2label), else
// num_labels, else PretrainedConfig's default of 2.
Result<int> VitClasses(const JsonReader& r) {
  if (Present(r, "id2label")) {
    const Json& labels = r.json().at("id2label");
    if (!labels.is_object()) return r.FieldError("id2label", "expected an object");
    return static_cast<int>(labels.size());
  }
  return OptionalPositive(r, "num_labels", 2);
}

// vit: ViTModel or ViTForImageClassification.
Result<ModelSpec> ImportVit(const JsonReader& r) {
  ModelSpec m;
  m.family = ModelFamily::kVit;
  m.architecture = Architecture::kEncoderOnly;
  ORRERY_ASSIGN_OR_RETURN(m.num_layers, RequiredPositive(r, "num_hidden_layers"));
  ORRERY_ASSIGN_OR_RETURN(m.hidden_size, RequiredPositive(r, "hidden_size"));
  ORRERY_ASSIGN_OR_RETURN(m.num_attention_heads, RequiredPositive(r, "num_attention_heads"));
  ORRERY_ASSIGN_OR_RETURN(m.ffn_hidden_size, RequiredPositive(r, "intermediate_size"));
  ORRERY_ASSIGN_OR_RETURN(m.image_size, RequiredPositive(r, "image_size"));
  ORRERY_ASSIGN_OR_RETURN(m.patch_size, RequiredPositive(r, "patch_size"));
  ORRERY_ASSIGN_OR_RETURN(m.num_channels, OptionalPositive(r, "num_channels", 3));
  if (m.image_size % m.patch_size != 0) {
    return r.FieldError("patch_size", "expected a divisor of image_size (" +
                                          std::to_string(m.image_size) + "), got " +
                                          std::to_string(m.patch_size));
  }
  ORRERY_ASSIGN_OR_RETURN(bool qkv_bias, OptionalBool(r, "qkv_bias", true));
  if (!qkv_bias) {
    return r.FieldError("qkv_bias", "expected true (ViT without Q/K/V biases is not modelled)");
  }
  const int side = m.image_size / m.patch_size;
  m.max_sequence_length = side * side + 1;
  m.default_sequence_length = m.max_sequence_length;
  m.num_kv_heads = m.num_attention_heads;
  m.head_dim = m.hidden_size / m.num_attention_heads;
  m.vocab_size = 0;
  ORRERY_ASSIGN_OR_RETURN(std::string act, OptionalString(r, "hidden_act", "gelu"));
  ORRERY_ASSIGN_OR_RETURN(m.activation, PlainActivation(r, "hidden_act", act));
  m.norm = NormKind::kLayerNorm;
  m.position_embedding = PositionEmbedding::kLearned;
  m.linear_bias = true;
  m.tied_embeddings = false;
  ORRERY_ASSIGN_OR_RETURN(std::string head, FirstArchitecture(r));
  if (head == "ViTForImageClassification") {
    ORRERY_ASSIGN_OR_RETURN(m.num_classes, VitClasses(r));
  } else {
    m.pooler = true;  // ViTModel(add_pooling_layer=True)
  }
  return m;
}

// t5: T5ForConditionalGeneration.
Result<ModelSpec> ImportT5(const JsonReader& r) {
  ModelSpec m;
  m.family = ModelFamily::kT5;
  m.architecture = Architecture::kEncoderDecoder;
  ORRERY_ASSIGN_OR_RETURN(m.num_encoder_layers, RequiredPositive(r, "num_layers"));
  ORRERY_ASSIGN_OR_RETURN(m.num_layers,
                          OptionalPositive(r, "num_decoder_layers", m.num_encoder_layers));
  ORRERY_ASSIGN_OR_RETURN(m.hidden_size, RequiredPositive(r, "d_model"));
  ORRERY_ASSIGN_OR_RETURN(m.num_attention_heads, RequiredPositive(r, "num_heads"));
  ORRERY_ASSIGN_OR_RETURN(m.head_dim, RequiredPositive(r, "d_kv"));
  ORRERY_ASSIGN_OR_RETURN(m.ffn_hidden_size, RequiredPositive(r, "d_ff"));
  ORRERY_ASSIGN_OR_RETURN(m.vocab_size, RequiredPositive(r, "vocab_size"));
  m.num_kv_heads = m.num_attention_heads;
  ORRERY_ASSIGN_OR_RETURN(m.relative_attention_buckets,
                          OptionalPositive(r, "relative_attention_num_buckets", 32));
  ORRERY_ASSIGN_OR_RETURN(m.max_sequence_length, OptionalPositive(r, "n_positions", 512));
  m.default_sequence_length = m.max_sequence_length;
  // T5Config: "gated-" prefix selects the three-matrix MLP; the rest names
  // the activation.
  ORRERY_ASSIGN_OR_RETURN(std::string proj, OptionalString(r, "feed_forward_proj", "relu"));
  if (proj == "relu") {
    m.activation = Activation::kRelu;
  } else if (proj == "gelu") {
    m.activation = Activation::kGelu;
  } else if (proj == "gated-gelu") {
    m.activation = Activation::kGatedGelu;
  } else if (proj == "gated-silu") {
    m.activation = Activation::kSwiGlu;
  } else {
    return r.FieldError(
        "feed_forward_proj",
        "expected 'relu', 'gelu', 'gated-gelu' or 'gated-silu', got '" + proj + "'");
  }
  m.norm = NormKind::kRmsNorm;  // T5LayerNorm: a weight, no bias, no mean
  m.position_embedding = PositionEmbedding::kRelativeBias;
  m.linear_bias = false;
  ORRERY_ASSIGN_OR_RETURN(m.tied_embeddings, OptionalBool(r, "tie_word_embeddings", true));
  return m;
}

// "…/Meta-Llama-3.1-8B/config.json" → "Meta-Llama-3.1-8B";
// "…/t5-large_config.json" → "t5-large".
std::string NameFromSource(const std::string& source) {
  const std::filesystem::path path(source);
  if (path.filename() == "config.json" && path.has_parent_path() &&
      !path.parent_path().filename().empty()) {
    return path.parent_path().filename().string();
  }
  std::string stem = path.stem().string();
  for (std::string_view suffix : {"_config", "-config", ".config"}) {
    if (stem.size() > suffix.size() && stem.ends_with(suffix)) {
      stem.resize(stem.size() - suffix.size());
      break;
    }
  }
  return stem.empty() ? source : stem;
}

using Importer = std::function<Result<ModelSpec>(const JsonReader&, const std::string&)>;

const std::map<std::string, Importer>& Importers() {
  static const std::map<std::string, Importer> kImporters = {
      {"bert", [](const JsonReader& r, const std::string&) { return ImportBert(r); }},
      {"gpt2", [](const JsonReader& r, const std::string&) { return ImportGpt2(r); }},
      {"llama", ImportLlamaLike},
      {"mistral", ImportLlamaLike},
      {"mixtral", ImportLlamaLike},
      {"t5", [](const JsonReader& r, const std::string&) { return ImportT5(r); }},
      {"vit", [](const JsonReader& r, const std::string&) { return ImportVit(r); }},
  };
  return kImporters;
}

}  // namespace

std::vector<std::string> SupportedHuggingFaceModelTypes() {
  std::vector<std::string> types;
  for (const auto& [type, importer] : Importers()) types.push_back(type);
  return types;
}

Result<ModelSpec> ImportHuggingFaceConfig(const Json& config, const std::string& source) {
  JsonReader r(config, source);
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  ORRERY_ASSIGN_OR_RETURN(std::string model_type, r.String("model_type"));
  auto it = Importers().find(model_type);
  if (it == Importers().end()) {
    std::string supported;
    for (const std::string& t : SupportedHuggingFaceModelTypes()) {
      supported += (supported.empty() ? "" : ", ") + t;
    }
    return r.FieldError(
        "model_type", "unsupported model type '" + model_type + "' (supported: " + supported + ")");
  }
  ORRERY_ASSIGN_OR_RETURN(ModelSpec m, it->second(r, model_type));
  ORRERY_ASSIGN_OR_RETURN(std::string name, OptionalString(r, "_name_or_path", ""));
  m.name = name.empty() ? NameFromSource(source) : name;
  m.source = "HuggingFace config.json " + source + " (model_type " + model_type + ")";
  ORRERY_RETURN_IF_ERROR(ValidateModelSpec(m).WithContext(source));
  return m;
}

Result<ModelSpec> ImportHuggingFaceConfigFile(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(Json config, ReadJsonFile(path));
  return ImportHuggingFaceConfig(config, path);
}

Result<ModelSpec> LoadModel(const std::string& name_or_path) {
  Result<ModelSpec> preset = ModelPreset(name_or_path);
  if (preset.ok()) return preset;
  std::error_code ec;
  std::string path = name_or_path;
  if (std::filesystem::is_directory(path, ec))
    path = (std::filesystem::path(path) / "config.json").string();
  if (!std::filesystem::exists(path, ec)) {
    std::string known;
    for (const std::string& n : ModelPresetNames()) known += (known.empty() ? "" : ", ") + n;
    return NotFoundError("unknown model '" + name_or_path +
                         "': not a preset and not a file (presets: " + known +
                         "; or give a HuggingFace config.json or an Orrery model JSON)");
  }
  ORRERY_ASSIGN_OR_RETURN(Json json, ReadJsonFile(path));
  if (json.is_object() && json.contains("model_type")) return ImportHuggingFaceConfig(json, path);
  return ParseModelSpecJson(json, path);
}

}  // namespace orrery::workload
