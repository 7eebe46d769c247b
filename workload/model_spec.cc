#include "workload/model_spec.h"

#include <array>
#include <string>
#include <utility>

namespace orrery::workload {
namespace {

constexpr std::array<std::pair<ModelFamily, std::string_view>, 6> kFamilyNames = {{
    {ModelFamily::kGpt, "gpt"},
    {ModelFamily::kLlama, "llama"},
    {ModelFamily::kMixtral, "mixtral"},
    {ModelFamily::kBert, "bert"},
    {ModelFamily::kT5, "t5"},
    {ModelFamily::kVit, "vit"},
}};
constexpr std::array<std::pair<Architecture, std::string_view>, 3> kArchitectureNames = {{
    {Architecture::kDecoderOnly, "decoder-only"},
    {Architecture::kEncoderOnly, "encoder-only"},
    {Architecture::kEncoderDecoder, "encoder-decoder"},
}};
constexpr std::array<std::pair<Activation, std::string_view>, 4> kActivationNames = {{
    {Activation::kGelu, "gelu"},
    {Activation::kRelu, "relu"},
    {Activation::kSwiGlu, "swiglu"},
    {Activation::kGatedGelu, "gated-gelu"},
}};
constexpr std::array<std::pair<NormKind, std::string_view>, 2> kNormNames = {{
    {NormKind::kLayerNorm, "layernorm"},
    {NormKind::kRmsNorm, "rmsnorm"},
}};
constexpr std::array<std::pair<PositionEmbedding, std::string_view>, 3> kPositionNames = {{
    {PositionEmbedding::kLearned, "learned"},
    {PositionEmbedding::kRotary, "rotary"},
    {PositionEmbedding::kRelativeBias, "relative-bias"},
}};

template <typename E, size_t N>
std::string_view NameOf(const std::array<std::pair<E, std::string_view>, N>& table, E e) {
  for (const auto& [value, name] : table) {
    if (value == e) return name;
  }
  ORRERY_CHECK(false) << "enum value without a name: " << static_cast<int>(e);
  return "";
}

template <typename E, size_t N>
std::optional<E> ValueOf(const std::array<std::pair<E, std::string_view>, N>& table,
                         std::string_view name) {
  for (const auto& [value, n] : table) {
    if (n == name) return value;
  }
  return std::nullopt;
}

// Parameters of one norm over `h` features: LayerNorm has a weight and a
// bias, RMSNorm (and T5's LayerNorm, which is an RMSNorm) a weight only.
int64_t NormParameters(NormKind norm, int64_t h) {
  return norm == NormKind::kLayerNorm ? 2 * h : h;
}

// Self- or cross-attention: Q and O are h × a·d, K and V are h × kv·d;
// with biases, one per output feature of each.
int64_t AttentionParameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t q = static_cast<int64_t>(m.num_attention_heads) * m.head_dim;
  const int64_t kv = static_cast<int64_t>(m.num_kv_heads) * m.head_dim;
  int64_t p = h * q + 2 * h * kv + q * h;
  if (m.linear_bias) p += q + 2 * kv + h;
  return p;
}

// One MLP (one expert): two matrices h×f and f×h, or three with a gate.
int64_t MlpParameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t f = m.ffn_hidden_size;
  const int64_t in_matrices = IsGated(m.activation) ? 2 : 1;
  int64_t p = in_matrices * h * f + f * h;
  if (m.linear_bias) p += in_matrices * f + h;
  return p;
}

// The MLP block of a layer: one MLP, or num_experts of them and the router
// (h × E, no bias, as Mixtral's `gate` and Megatron's router).
int64_t MlpBlockParameters(const ModelSpec& m) {
  if (!m.is_moe()) return MlpParameters(m);
  return m.num_experts * MlpParameters(m) + static_cast<int64_t>(m.hidden_size) * m.num_experts;
}

int64_t DecoderOnlyParameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t v = m.vocab_size;
  const int64_t norm = NormParameters(m.norm, h);
  int64_t p = v * h;  // token embedding
  if (m.position_embedding == PositionEmbedding::kLearned) p += int64_t{m.max_sequence_length} * h;
  const int64_t layer = AttentionParameters(m) + MlpBlockParameters(m) + 2 * norm;
  p += m.num_layers * layer;
  p += norm;                           // final norm
  if (!m.tied_embeddings) p += v * h;  // LM head, no bias
  return p;
}

// BertModel (embeddings with their LayerNorm, post-norm blocks, optional
// pooler) and the optional MLM / classification heads.
int64_t BertParameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t v = m.vocab_size;
  const int64_t norm = NormParameters(m.norm, h);
  int64_t p = (v + m.max_sequence_length + m.type_vocab_size) * h + norm;
  p += m.num_layers * (AttentionParameters(m) + MlpBlockParameters(m) + 2 * norm);
  if (m.pooler) p += h * h + h;
  if (m.mlm_head) {
    p += h * h + h + norm + v;  // transform dense, its LayerNorm, decoder bias
    if (!m.tied_embeddings) p += v * h;
  }
  if (m.num_classes > 0) p += h * m.num_classes + m.num_classes;
  return p;
}

// ViTModel: a patch-embedding convolution (C·p²·h + h), the [CLS] token,
// (N + 1) position embeddings, pre-norm blocks, the final LayerNorm; then
// the optional pooler and classifier.
int64_t VitParameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t norm = NormParameters(m.norm, h);
  const int64_t patches_per_side = m.image_size / m.patch_size;
  int64_t p = int64_t{m.num_channels} * m.patch_size * m.patch_size * h + h;  // patch conv
  p += h;                                                                     // [CLS]
  p += (patches_per_side * patches_per_side + 1) * h;                         // positions
  p += m.num_layers * (AttentionParameters(m) + MlpBlockParameters(m) + 2 * norm);
  p += norm;  // final LayerNorm
  if (m.pooler) p += h * h + h;
  if (m.num_classes > 0) p += h * m.num_classes + m.num_classes;
  return p;
}

// T5ForConditionalGeneration: the shared embedding; an encoder block is
// self-attention + MLP with a norm before each; a decoder block adds
// cross-attention and its norm; the first block of each stack holds the
// relative attention bias (buckets × heads); each stack ends with a norm;
// the LM head (no bias) is tied to the embedding when tied_embeddings.
int64_t T5Parameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t v = m.vocab_size;
  const int64_t norm = NormParameters(m.norm, h);
  const int64_t attention = AttentionParameters(m);
  const int64_t mlp = MlpBlockParameters(m);
  const int64_t relative_bias =
      static_cast<int64_t>(m.relative_attention_buckets) * m.num_attention_heads;
  int64_t p = v * h;
  p += m.num_encoder_layers * (attention + mlp + 2 * norm) + relative_bias + norm;
  p += m.num_layers * (2 * attention + mlp + 3 * norm) + relative_bias + norm;
  if (!m.tied_embeddings) p += v * h;
  return p;
}

Status FieldError(const ModelSpec& m, std::string_view field, const std::string& what) {
  return InvalidArgumentError("model '" + m.name + "': field '" + std::string(field) +
                              "': " + what);
}

Status RequirePositive(const ModelSpec& m, std::string_view field, int64_t value) {
  if (value > 0) return Status::Ok();
  return FieldError(m, field, "expected a positive integer, got " + std::to_string(value));
}

Status RequireZero(const ModelSpec& m, std::string_view field, int64_t value,
                   std::string_view why) {
  if (value == 0) return Status::Ok();
  return FieldError(m, field, "expected 0 " + std::string(why) + ", got " + std::to_string(value));
}

}  // namespace

std::string_view ModelFamilyName(ModelFamily f) { return NameOf(kFamilyNames, f); }
std::optional<ModelFamily> ParseModelFamily(std::string_view name) {
  return ValueOf(kFamilyNames, name);
}
std::string_view ArchitectureName(Architecture a) { return NameOf(kArchitectureNames, a); }
std::optional<Architecture> ParseArchitecture(std::string_view name) {
  return ValueOf(kArchitectureNames, name);
}
Architecture ArchitectureOf(ModelFamily f) {
  switch (f) {
    case ModelFamily::kGpt:
    case ModelFamily::kLlama:
    case ModelFamily::kMixtral:
      return Architecture::kDecoderOnly;
    case ModelFamily::kBert:
    case ModelFamily::kVit:
      return Architecture::kEncoderOnly;
    case ModelFamily::kT5:
      return Architecture::kEncoderDecoder;
  }
  ORRERY_CHECK(false) << "unknown family " << static_cast<int>(f);
  return Architecture::kDecoderOnly;
}
std::string_view ActivationName(Activation a) { return NameOf(kActivationNames, a); }
std::optional<Activation> ParseActivation(std::string_view name) {
  return ValueOf(kActivationNames, name);
}
bool IsGated(Activation a) { return a == Activation::kSwiGlu || a == Activation::kGatedGelu; }
std::string_view NormKindName(NormKind n) { return NameOf(kNormNames, n); }
std::optional<NormKind> ParseNormKind(std::string_view name) { return ValueOf(kNormNames, name); }
std::string_view PositionEmbeddingName(PositionEmbedding p) { return NameOf(kPositionNames, p); }
std::optional<PositionEmbedding> ParsePositionEmbedding(std::string_view name) {
  return ValueOf(kPositionNames, name);
}

int64_t ModelSpec::ParameterCount() const {
  switch (family) {
    case ModelFamily::kGpt:
    case ModelFamily::kLlama:
    case ModelFamily::kMixtral:
      return DecoderOnlyParameters(*this);
    case ModelFamily::kBert:
      return BertParameters(*this);
    case ModelFamily::kVit:
      return VitParameters(*this);
    case ModelFamily::kT5:
      return T5Parameters(*this);
  }
  ORRERY_CHECK(false) << "unknown family " << static_cast<int>(family);
  return 0;
}

int64_t MegatronEq2ParameterCount(const ModelSpec& spec) {
  ORRERY_CHECK(spec.family == ModelFamily::kGpt)
      << "Eq. 2 of Narayanan et al. is for GPT models, not " << ModelFamilyName(spec.family);
  const int64_t l = spec.num_layers;
  const int64_t h = spec.hidden_size;
  const int64_t v = spec.vocab_size;
  const int64_t s = spec.max_sequence_length;
  return 12 * l * h * h + 13 * l * h + (v + s) * h;
}

Status ValidateModelSpec(const ModelSpec& m) {
  if (m.name.empty()) return InvalidArgumentError("model: field 'name': expected a non-empty name");
  const Architecture expected_architecture = ArchitectureOf(m.family);
  if (m.architecture != expected_architecture) {
    return FieldError(m, "architecture",
                      "the " + std::string(ModelFamilyName(m.family)) + " family is " +
                          std::string(ArchitectureName(expected_architecture)) + ", got " +
                          std::string(ArchitectureName(m.architecture)));
  }
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "num_layers", m.num_layers));
  if (m.architecture == Architecture::kEncoderDecoder) {
    ORRERY_RETURN_IF_ERROR(RequirePositive(m, "num_encoder_layers", m.num_encoder_layers));
  } else {
    ORRERY_RETURN_IF_ERROR(RequireZero(m, "num_encoder_layers", m.num_encoder_layers,
                                       "(only encoder-decoder models have a separate encoder)"));
  }
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "hidden_size", m.hidden_size));
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "num_attention_heads", m.num_attention_heads));
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "num_kv_heads", m.num_kv_heads));
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "head_dim", m.head_dim));
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "ffn_hidden_size", m.ffn_hidden_size));
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "max_sequence_length", m.max_sequence_length));
  ORRERY_RETURN_IF_ERROR(RequirePositive(m, "default_sequence_length", m.default_sequence_length));
  if (m.num_attention_heads % m.num_kv_heads != 0) {
    return FieldError(m, "num_kv_heads",
                      "expected a divisor of num_attention_heads (" +
                          std::to_string(m.num_attention_heads) + "), got " +
                          std::to_string(m.num_kv_heads));
  }
  // Families whose attention width is the hidden size (head_dim is derived).
  const bool head_dim_is_derived = m.family == ModelFamily::kGpt ||
                                   m.family == ModelFamily::kBert || m.family == ModelFamily::kVit;
  if (head_dim_is_derived) {
    if (m.hidden_size % m.num_attention_heads != 0) {
      return FieldError(m, "num_attention_heads",
                        "expected a divisor of hidden_size (" + std::to_string(m.hidden_size) +
                            "), got " + std::to_string(m.num_attention_heads));
    }
    if (m.head_dim != m.hidden_size / m.num_attention_heads) {
      return FieldError(m, "head_dim",
                        "expected hidden_size / num_attention_heads = " +
                            std::to_string(m.hidden_size / m.num_attention_heads) + ", got " +
                            std::to_string(m.head_dim));
    }
  }
  if (m.default_sequence_length > m.max_sequence_length) {
    return FieldError(m, "default_sequence_length",
                      "expected at most max_sequence_length (" +
                          std::to_string(m.max_sequence_length) + "), got " +
                          std::to_string(m.default_sequence_length));
  }
  if (m.family == ModelFamily::kVit) {
    ORRERY_RETURN_IF_ERROR(RequireZero(m, "vocab_size", m.vocab_size, "(ViT reads patches)"));
  } else {
    ORRERY_RETURN_IF_ERROR(RequirePositive(m, "vocab_size", m.vocab_size));
  }
  if (m.num_experts < 0 || m.experts_per_token < 0) {
    return FieldError(m, m.num_experts < 0 ? "num_experts" : "experts_per_token",
                      "expected an integer >= 0");
  }
  if (m.num_experts > 0) {
    ORRERY_RETURN_IF_ERROR(RequirePositive(m, "experts_per_token", m.experts_per_token));
    if (m.experts_per_token > m.num_experts) {
      return FieldError(m, "experts_per_token",
                        "expected at most num_experts (" + std::to_string(m.num_experts) +
                            "), got " + std::to_string(m.experts_per_token));
    }
  } else {
    ORRERY_RETURN_IF_ERROR(
        RequireZero(m, "experts_per_token", m.experts_per_token, "for a dense model"));
  }
  if (m.family == ModelFamily::kMixtral && m.num_experts == 0) {
    return FieldError(m, "num_experts", "expected a positive integer for a mixtral model, got 0");
  }
  if (m.num_classes < 0) return FieldError(m, "num_classes", "expected an integer >= 0");
  if (m.family == ModelFamily::kBert) {
    if (m.type_vocab_size < 0) return FieldError(m, "type_vocab_size", "expected an integer >= 0");
    if (m.position_embedding != PositionEmbedding::kLearned) {
      return FieldError(m, "position_embedding", "BERT learns its positions: expected 'learned'");
    }
  }
  if (m.family == ModelFamily::kT5) {
    ORRERY_RETURN_IF_ERROR(
        RequirePositive(m, "relative_attention_buckets", m.relative_attention_buckets));
  }
  if (m.family == ModelFamily::kVit) {
    ORRERY_RETURN_IF_ERROR(RequirePositive(m, "image_size", m.image_size));
    ORRERY_RETURN_IF_ERROR(RequirePositive(m, "patch_size", m.patch_size));
    ORRERY_RETURN_IF_ERROR(RequirePositive(m, "num_channels", m.num_channels));
    if (m.image_size % m.patch_size != 0) {
      return FieldError(m, "patch_size",
                        "expected a divisor of image_size (" + std::to_string(m.image_size) +
                            "), got " + std::to_string(m.patch_size));
    }
    const int side = m.image_size / m.patch_size;
    const int tokens = side * side + 1;
    if (m.max_sequence_length != tokens) {
      return FieldError(m, "max_sequence_length",
                        "expected (image_size / patch_size)^2 + 1 = " + std::to_string(tokens) +
                            " tokens (patches and [CLS]), got " +
                            std::to_string(m.max_sequence_length));
    }
  } else if (m.image_size != 0 || m.patch_size != 0 || m.num_channels != 0) {
    return FieldError(m,
                      m.image_size != 0   ? "image_size"
                      : m.patch_size != 0 ? "patch_size"
                                          : "num_channels",
                      "only ViT models have images: expected 0");
  }
  if (m.mlm_head && m.family != ModelFamily::kBert) {
    return FieldError(m, "mlm_head", "only BERT models have a masked-LM head");
  }
  if (m.pooler && m.family != ModelFamily::kBert && m.family != ModelFamily::kVit) {
    return FieldError(m, "pooler", "only BERT and ViT models have a pooler");
  }
  return Status::Ok();
}

}  // namespace orrery::workload
