#include "workload/model_json.h"

#include <optional>
#include <string_view>
#include <vector>

namespace orrery::workload {
namespace {

// Reads `key` as one of `names` (in order), naming them when it is not.
template <typename E>
Result<E> ReadEnum(const JsonReader& r, std::string_view key,
                   std::optional<E> (*parse)(std::string_view),
                   const std::vector<std::string_view>& names) {
  ORRERY_ASSIGN_OR_RETURN(std::string value, r.String(key));
  std::optional<E> e = parse(value);
  if (!e.has_value()) {
    std::string known;
    for (std::string_view n : names) known += (known.empty() ? "'" : ", '") + std::string(n) + "'";
    return r.FieldError(key, "expected one of " + known + ", got '" + value + "'");
  }
  return *e;
}

Result<int> ReadInt(const JsonReader& r, std::string_view key, bool positive) {
  ORRERY_ASSIGN_OR_RETURN(int64_t v, r.Int(key));
  if (positive ? v <= 0 : v < 0) {
    return r.FieldError(
        key, std::string(positive ? "expected a positive integer" : "expected an integer >= 0") +
                 ", got " + std::to_string(v));
  }
  if (v > 2'000'000'000) return r.FieldError(key, "expected at most 2e9, got " + std::to_string(v));
  return static_cast<int>(v);
}

}  // namespace

Json ModelSpecToJson(const ModelSpec& m) {
  Json j = Json::object();
  j["name"] = m.name;
  j["family"] = std::string(ModelFamilyName(m.family));
  j["architecture"] = std::string(ArchitectureName(m.architecture));
  j["parameters"] = m.ParameterCount();
  j["layers"] = m.num_layers;
  j["encoder_layers"] = m.num_encoder_layers;
  j["hidden_size"] = m.hidden_size;
  j["heads"] = m.num_attention_heads;
  j["kv_heads"] = m.num_kv_heads;
  j["head_dim"] = m.head_dim;
  j["ffn_hidden_size"] = m.ffn_hidden_size;
  j["vocab_size"] = m.vocab_size;
  j["max_sequence_length"] = m.max_sequence_length;
  j["default_sequence_length"] = m.default_sequence_length;
  j["activation"] = std::string(ActivationName(m.activation));
  j["norm"] = std::string(NormKindName(m.norm));
  j["position_embedding"] = std::string(PositionEmbeddingName(m.position_embedding));
  j["linear_bias"] = m.linear_bias;
  j["tied_embeddings"] = m.tied_embeddings;
  j["num_experts"] = m.num_experts;
  j["experts_per_token"] = m.experts_per_token;
  switch (m.family) {
    case ModelFamily::kBert:
      j["type_vocab_size"] = m.type_vocab_size;
      j["pooler"] = m.pooler;
      j["mlm_head"] = m.mlm_head;
      j["num_classes"] = m.num_classes;
      break;
    case ModelFamily::kVit:
      j["image_size"] = m.image_size;
      j["patch_size"] = m.patch_size;
      j["num_channels"] = m.num_channels;
      j["pooler"] = m.pooler;
      j["num_classes"] = m.num_classes;
      break;
    case ModelFamily::kT5:
      j["relative_attention_buckets"] = m.relative_attention_buckets;
      break;
    case ModelFamily::kGpt:
    case ModelFamily::kLlama:
    case ModelFamily::kMixtral:
      break;
  }
  j["source"] = m.source;
  return j;
}

Result<ModelSpec> ParseModelSpecJson(const Json& json, const std::string& source) {
  JsonReader r(json, source);
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  ModelSpec m;
  ORRERY_ASSIGN_OR_RETURN(m.name, r.String("name"));
  if (m.name.empty()) return r.FieldError("name", "expected a non-empty name");
  ORRERY_ASSIGN_OR_RETURN(m.family,
                          ReadEnum<ModelFamily>(r, "family", ParseModelFamily,
                                                {"gpt", "llama", "mixtral", "bert", "t5", "vit"}));
  ORRERY_ASSIGN_OR_RETURN(
      m.architecture, ReadEnum<Architecture>(r, "architecture", ParseArchitecture,
                                             {"decoder-only", "encoder-only", "encoder-decoder"}));
  ORRERY_ASSIGN_OR_RETURN(m.num_layers, ReadInt(r, "layers", true));
  ORRERY_ASSIGN_OR_RETURN(m.num_encoder_layers, ReadInt(r, "encoder_layers", false));
  ORRERY_ASSIGN_OR_RETURN(m.hidden_size, ReadInt(r, "hidden_size", true));
  ORRERY_ASSIGN_OR_RETURN(m.num_attention_heads, ReadInt(r, "heads", true));
  ORRERY_ASSIGN_OR_RETURN(m.num_kv_heads, ReadInt(r, "kv_heads", true));
  ORRERY_ASSIGN_OR_RETURN(m.head_dim, ReadInt(r, "head_dim", true));
  ORRERY_ASSIGN_OR_RETURN(m.ffn_hidden_size, ReadInt(r, "ffn_hidden_size", true));
  ORRERY_ASSIGN_OR_RETURN(m.vocab_size, ReadInt(r, "vocab_size", false));
  ORRERY_ASSIGN_OR_RETURN(m.max_sequence_length, ReadInt(r, "max_sequence_length", true));
  ORRERY_ASSIGN_OR_RETURN(m.default_sequence_length, ReadInt(r, "default_sequence_length", true));
  ORRERY_ASSIGN_OR_RETURN(m.activation,
                          ReadEnum<Activation>(r, "activation", ParseActivation,
                                               {"gelu", "relu", "swiglu", "gated-gelu"}));
  ORRERY_ASSIGN_OR_RETURN(m.norm,
                          ReadEnum<NormKind>(r, "norm", ParseNormKind, {"layernorm", "rmsnorm"}));
  ORRERY_ASSIGN_OR_RETURN(m.position_embedding, ReadEnum<PositionEmbedding>(
                                                    r, "position_embedding", ParsePositionEmbedding,
                                                    {"learned", "rotary", "relative-bias"}));
  ORRERY_ASSIGN_OR_RETURN(m.linear_bias, r.Bool("linear_bias"));
  ORRERY_ASSIGN_OR_RETURN(m.tied_embeddings, r.Bool("tied_embeddings"));
  ORRERY_ASSIGN_OR_RETURN(m.num_experts, ReadInt(r, "num_experts", false));
  ORRERY_ASSIGN_OR_RETURN(m.experts_per_token, ReadInt(r, "experts_per_token", false));
  if (m.family == ModelFamily::kBert) {
    ORRERY_ASSIGN_OR_RETURN(m.type_vocab_size, ReadInt(r, "type_vocab_size", false));
  }
  if (m.family == ModelFamily::kVit) {
    ORRERY_ASSIGN_OR_RETURN(m.image_size, ReadInt(r, "image_size", true));
    ORRERY_ASSIGN_OR_RETURN(m.patch_size, ReadInt(r, "patch_size", true));
    ORRERY_ASSIGN_OR_RETURN(m.num_channels, ReadInt(r, "num_channels", true));
  }
  if (m.family == ModelFamily::kBert || m.family == ModelFamily::kVit) {
    ORRERY_ASSIGN_OR_RETURN(m.pooler, r.Bool("pooler", false));
    ORRERY_ASSIGN_OR_RETURN(int64_t classes, r.Int("num_classes", 0));
    if (classes < 0 || classes > 2'000'000'000) {
      return r.FieldError("num_classes",
                          "expected an integer >= 0, got " + std::to_string(classes));
    }
    m.num_classes = static_cast<int>(classes);
  }
  if (m.family == ModelFamily::kBert) {
    ORRERY_ASSIGN_OR_RETURN(m.mlm_head, r.Bool("mlm_head", false));
  }
  if (m.family == ModelFamily::kT5) {
    ORRERY_ASSIGN_OR_RETURN(m.relative_attention_buckets,
                            ReadInt(r, "relative_attention_buckets", true));
  }
  ORRERY_ASSIGN_OR_RETURN(m.source, r.String("source", source));
  const bool has_parameters = r.Has("parameters");
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  ORRERY_RETURN_IF_ERROR(ValidateModelSpec(m).WithContext(source));
  if (has_parameters) {
    ORRERY_ASSIGN_OR_RETURN(int64_t stated, r.Int("parameters"));
    const int64_t counted = m.ParameterCount();
    if (stated != counted) {
      return r.FieldError("parameters", "the architecture above has " + std::to_string(counted) +
                                            " parameters, but the file says " +
                                            std::to_string(stated));
    }
  }
  return m;
}

}  // namespace orrery::workload
