// ModelSpec: the architecture of a transformer model, enough to count its
// parameters exactly and to expand each layer into operators.
//
// Families: decoder-only (GPT, Llama with grouped-query attention and
// SwiGLU, Mixtral mixture-of-experts), encoder-only (BERT, ViT) and
// encoder-decoder (T5). A spec comes from a preset (workload/model_presets.h)
// or a HuggingFace config.json (workload/hf_import.h); its JSON form is in
// workload/model_json.h and docs/models.md.
//
// ParameterCount() is exact: it equals what the reference implementation
// reports for the model the spec describes — transformers'
// model.num_parameters() for the HuggingFace families (LlamaForCausalLM,
// MistralForCausalLM, MixtralForCausalLM, GPT2LMHeadModel,
// T5ForConditionalGeneration, BertModel / BertForMaskedLM /
// BertForPreTraining, ViTModel / ViTForImageClassification, as the head
// fields below say) and the sum of the weights of Megatron-LM's GPTModel for
// the Megatron GPT presets.
//
// Thread-safety: plain values.
#ifndef ORRERY_WORKLOAD_MODEL_SPEC_H_
#define ORRERY_WORKLOAD_MODEL_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace orrery::workload {

enum class ModelFamily { kGpt, kLlama, kMixtral, kBert, kT5, kVit };
std::string_view ModelFamilyName(ModelFamily f);  // "gpt", "llama", "mixtral", "bert", "t5", "vit"
std::optional<ModelFamily> ParseModelFamily(std::string_view name);

enum class Architecture { kDecoderOnly, kEncoderOnly, kEncoderDecoder };
std::string_view ArchitectureName(Architecture a);  // "decoder-only", ...
std::optional<Architecture> ParseArchitecture(std::string_view name);
// The architecture every model of `f` has.
Architecture ArchitectureOf(ModelFamily f);

enum class Activation {
  kGelu,       // two-matrix MLP with GELU (GPT, BERT, ViT)
  kRelu,       // two-matrix MLP with ReLU (T5 v1.0)
  kSwiGlu,     // three-matrix gated MLP with SiLU (Llama, Mixtral)
  kGatedGelu,  // three-matrix gated MLP with GELU (T5 v1.1)
};
std::string_view ActivationName(Activation a);  // "gelu", "relu", "swiglu", "gated-gelu"
std::optional<Activation> ParseActivation(std::string_view name);
// True for the three-matrix (gated) MLPs.
bool IsGated(Activation a);

enum class NormKind { kLayerNorm, kRmsNorm };
std::string_view NormKindName(NormKind n);  // "layernorm" (weight + bias), "rmsnorm" (weight)
std::optional<NormKind> ParseNormKind(std::string_view name);

enum class PositionEmbedding {
  kLearned,       // a learned table of max_sequence_length × hidden (GPT, BERT, ViT)
  kRotary,        // RoPE, no parameters (Llama, Mixtral)
  kRelativeBias,  // T5's bucketed relative attention bias
};
// "learned", "rotary", "relative-bias".
std::string_view PositionEmbeddingName(PositionEmbedding p);
std::optional<PositionEmbedding> ParsePositionEmbedding(std::string_view name);

struct ModelSpec {
  std::string name;  // preset key or the config's name, e.g. "llama3-70b"
  ModelFamily family = ModelFamily::kGpt;
  Architecture architecture = Architecture::kDecoderOnly;

  // Transformer blocks. For encoder-decoder models, num_layers is the
  // decoder stack and num_encoder_layers the encoder stack; for the others
  // num_encoder_layers is 0.
  int num_layers = 0;
  int num_encoder_layers = 0;
  int hidden_size = 0;
  int num_attention_heads = 0;
  int num_kv_heads = 0;  // == num_attention_heads without grouped-query attention
  int head_dim = 0;      // usually hidden_size / num_attention_heads (T5: d_kv)
  int ffn_hidden_size = 0;
  int vocab_size = 0;               // 0 for ViT
  int max_sequence_length = 0;      // positions the model supports
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
  bool pooler = false;                 // BERT/ViT pooler dense layer (h×h + bias)
  int relative_attention_buckets = 0;  // T5
  int image_size = 0;                  // ViT
  int patch_size = 0;                  // ViT
  int num_channels = 0;                // ViT
  // BERT's masked-LM head (BertForMaskedLM / BertForPreTraining): a dense
  // h×h + bias, a LayerNorm, and the decoder (tied to the word embeddings
  // when tied_embeddings, as transformers' default) with its own bias of V.
  bool mlm_head = false;
  // A classification head h×C + bias on the pooled output: ViT's ImageNet
  // classifier (C = 1000 for google/vit-large-patch16-224), BERT's
  // next-sentence head (C = 2, BertForPreTraining). 0: none.
  int num_classes = 0;

  std::string source;  // where the figures come from

  bool is_moe() const { return num_experts > 0; }
  // All transformer blocks, encoder and decoder.
  int total_layers() const { return num_layers + num_encoder_layers; }

  // Exact parameter count, as the reference implementation's
  // model.num_parameters() reports it (embeddings, biases and norms
  // included; a tied LM head counted once; buffers such as RoPE's inv_freq
  // excluded). The formulas, family by family, are in docs/models.md.
  // REQUIRES: ValidateModelSpec(*this).ok().
  int64_t ParameterCount() const;
};

// Narayanan et al., SC21 (arXiv 2104.04473), Eq. 2 for a GPT model:
//   P = 12·l·h²·(1 + 13/(12h) + (V + s)/(12·l·h)) = 12lh² + 13lh + (V + s)h
// with s = max_sequence_length. It omits the final LayerNorm (2h), so for
// a Megatron GPT spec ParameterCount() == MegatronEq2ParameterCount() + 2h.
// REQUIRES: spec.family == ModelFamily::kGpt.
int64_t MegatronEq2ParameterCount(const ModelSpec& spec);

// Structural checks: positive sizes, heads dividing hidden size where the
// family requires it, kv heads dividing heads, experts_per_token <=
// num_experts, the architecture matching the family, the family-specific
// fields set where the family needs them. Messages name the model and the
// field: "model 'x': field 'num_kv_heads': expected a divisor of
// num_attention_heads (32), got 5".
Status ValidateModelSpec(const ModelSpec& spec);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_MODEL_SPEC_H_
