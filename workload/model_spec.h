// ModelSpec: the architecture of a transformer model, enough to count its
// parameters exactly and to expand each layer into operators.
//
// Families: decoder-only (GPT, Llama with grouped-query attention and
// SwiGLU, Mixtral mixture-of-experts), encoder-only (BERT, ViT) and
// encoder-decoder (T5). A spec comes from a preset (workload/model_presets.h)
// or a HuggingFace config.json (workload/hf_import.h).
//
// Thread-safety: plain values.
#ifndef ORRERY_WORKLOAD_MODEL_SPEC_H_
#define ORRERY_WORKLOAD_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace orrery::workload {

enum class ModelFamily { kGpt, kLlama, kMixtral, kBert, kT5, kVit };
std::string_view ModelFamilyName(ModelFamily f);  // "gpt", "llama", "mixtral", "bert", "t5", "vit"

enum class Architecture { kDecoderOnly, kEncoderOnly, kEncoderDecoder };
std::string_view ArchitectureName(Architecture a);  // "decoder-only", ...

enum class Activation {
  kGelu,       // two-matrix MLP with GELU (GPT, BERT, ViT)
  kRelu,       // two-matrix MLP with ReLU (T5 v1.0)
  kSwiGlu,     // three-matrix gated MLP with SiLU (Llama, Mixtral)
  kGatedGelu,  // three-matrix gated MLP with GELU (T5 v1.1)
};
std::string_view ActivationName(Activation a);

enum class NormKind { kLayerNorm, kRmsNorm };
std::string_view NormKindName(NormKind n);

enum class PositionEmbedding {
  kLearned,       // a learned table of max_sequence_length × hidden (GPT, BERT, ViT)
  kRotary,        // RoPE, no parameters (Llama, Mixtral)
  kRelativeBias,  // T5's bucketed relative attention bias
};
std::string_view PositionEmbeddingName(PositionEmbedding p);

struct ModelSpec {
  std::string name;    // preset key or the config's name, e.g. "llama3-70b"
  ModelFamily family = ModelFamily::kGpt;
  Architecture architecture = Architecture::kDecoderOnly;

  // Transformer blocks. For encoder-decoder models, num_layers is the
  // decoder stack and num_encoder_layers the encoder stack; for the others
  // num_encoder_layers is 0.
  int num_layers = 0;
  int num_encoder_layers = 0;
  int hidden_size = 0;
  int num_attention_heads = 0;
  int num_kv_heads = 0;   // == num_attention_heads without grouped-query attention
  int head_dim = 0;       // usually hidden_size / num_attention_heads (T5: d_kv)
  int ffn_hidden_size = 0;
  int vocab_size = 0;     // 0 for ViT
  int max_sequence_length = 0;   // positions the model supports
  int default_sequence_length = 0;  // the training sequence length presets plan with

  Activation activation = Activation::kGelu;
  NormKind norm = NormKind::kLayerNorm;
  PositionEmbedding position_embedding = PositionEmbedding::kLearned;
  bool linear_bias = false;      // biases on attention and MLP linears
  bool tied_embeddings = false;  // LM head shares the input embedding

  // Mixture of experts (0 for dense models).
  int num_experts = 0;
  int experts_per_token = 0;

  // Family-specific structure that changes the parameter count.
  int type_vocab_size = 0;             // BERT token-type embeddings
  bool pooler = false;                 // BERT/ViT pooler dense layer
  int relative_attention_buckets = 0;  // T5
  int image_size = 0;                  // ViT
  int patch_size = 0;                  // ViT
  int num_channels = 0;                // ViT

  std::string source;  // where the figures come from

  bool is_moe() const { return num_experts > 0; }
  // All transformer blocks, encoder and decoder.
  int total_layers() const { return num_layers + num_encoder_layers; }

  // Exact parameter count, as the reference implementation's
  // model.num_parameters() reports it (embeddings, biases and norms
  // included; a tied LM head counted once).
  int64_t ParameterCount() const;
};

// Structural checks: positive sizes, heads dividing hidden size where the
// family requires it, kv heads dividing heads, experts_per_token <=
// num_experts. Messages name the field.
Status ValidateModelSpec(const ModelSpec& spec);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_MODEL_SPEC_H_
