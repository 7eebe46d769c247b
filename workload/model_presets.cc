#include "workload/model_presets.h"

#include <string>
#include <utility>

namespace orrery::workload {
namespace {

// A GPT model as Megatron-LM builds it (GPTModel with
// --position-embedding-type learned_absolute, --normalization LayerNorm,
// biases on, embeddings tied to the output layer): vocabulary 51,200 (the
// GPT-2 BPE's 50,257 padded by Megatron to a multiple of 1024), sequence
// 2048, ffn = 4h.
ModelSpec MegatronGpt(std::string name, int layers, int hidden, int heads, std::string source) {
  ModelSpec m;
  m.name = std::move(name);
  m.family = ModelFamily::kGpt;
  m.architecture = Architecture::kDecoderOnly;
  m.num_layers = layers;
  m.hidden_size = hidden;
  m.num_attention_heads = heads;
  m.num_kv_heads = heads;
  m.head_dim = hidden / heads;
  m.ffn_hidden_size = 4 * hidden;
  m.vocab_size = 51200;
  m.max_sequence_length = 2048;
  m.default_sequence_length = 2048;
  m.activation = Activation::kGelu;
  m.norm = NormKind::kLayerNorm;
  m.position_embedding = PositionEmbedding::kLearned;
  m.linear_bias = true;
  m.tied_embeddings = true;
  m.source = std::move(source);
  return m;
}

// The Narayanan et al. SC21 Table 1 rows (also
// ../shared/fixtures/published/megatron_measured.json); the published size
// is Eq. 2 rounded to 0.1 B.
ModelSpec Sc21Gpt(std::string name, std::string published_size, int layers, int hidden, int heads) {
  return MegatronGpt(std::move(name), layers, hidden, heads,
                     "Narayanan et al., SC21 (arXiv 2104.04473), Table 1: GPT " + published_size +
                         ", " + std::to_string(layers) + " layers, hidden " +
                         std::to_string(hidden) + ", " + std::to_string(heads) +
                         " heads; vocab 51200, seq 2048 (Section 5.1)");
}

// Llama-architecture decoder (LlamaForCausalLM): RMSNorm, SwiGLU, RoPE, no
// biases, untied LM head.
ModelSpec Llama(std::string name, int layers, int hidden, int heads, int kv_heads, int ffn,
                int vocab, int max_sequence, int train_sequence, std::string source) {
  ModelSpec m;
  m.name = std::move(name);
  m.family = ModelFamily::kLlama;
  m.architecture = Architecture::kDecoderOnly;
  m.num_layers = layers;
  m.hidden_size = hidden;
  m.num_attention_heads = heads;
  m.num_kv_heads = kv_heads;
  m.head_dim = hidden / heads;
  m.ffn_hidden_size = ffn;
  m.vocab_size = vocab;
  m.max_sequence_length = max_sequence;
  m.default_sequence_length = train_sequence;
  m.activation = Activation::kSwiGlu;
  m.norm = NormKind::kRmsNorm;
  m.position_embedding = PositionEmbedding::kRotary;
  m.linear_bias = false;
  m.tied_embeddings = false;
  m.source = std::move(source);
  return m;
}

// Test-scale GPT: the Megatron GPT structure (learned positions, LayerNorm,
// GELU, biases, tied embeddings) at 4 layers of hidden 64.
ModelSpec TinyGpt() {
  ModelSpec m = MegatronGpt("gpt-tiny", 4, 64, 4,
                            "Orrery test-scale model (not a published model): the Megatron GPT "
                            "structure, 4 layers, hidden 64, 4 heads, vocab 512, seq 64");
  m.vocab_size = 512;
  m.max_sequence_length = 64;
  m.default_sequence_length = 64;
  return m;
}

// "gpt-tiny"'s Llama counterpart: RMSNorm, SwiGLU, RoPE and grouped-query
// attention (4 heads sharing 2 kv heads).
ModelSpec TinyLlama() {
  return Llama("llama-tiny", 4, 64, 4, 2, 128, 512, 64, 64,
               "Orrery test-scale model (not a published model): the Llama structure, 4 layers, "
               "hidden 64, 4 heads / 2 kv heads, FFN 128, vocab 512, seq 64");
}

ModelSpec Mixtral8x7b() {
  // Jiang et al., "Mixtral of Experts" (arXiv 2401.04088), Table 1: dim
  // 4096, 32 layers, head_dim 128, hidden_dim 14336, 32 heads, 8 kv heads,
  // context 32768, vocab 32000, 8 experts, top-2; Section 2: "trained with
  // a context size of 32k tokens". HF mistralai/Mixtral-8x7B-v0.1 config.
  ModelSpec m = Llama("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 32768, 32768,
                      "Jiang et al., Mixtral of Experts (arXiv 2401.04088), Table 1 and "
                      "Section 2 (32k training context); HF mistralai/Mixtral-8x7B-v0.1 "
                      "config.json");
  m.family = ModelFamily::kMixtral;
  m.num_experts = 8;
  m.experts_per_token = 2;
  return m;
}

ModelSpec BertLarge() {
  // Devlin et al. (arXiv 1810.04805) Section 3: BERT-Large L=24, H=1024,
  // A=16; pre-trained on sequences of up to 512 tokens (Appendix A.2). HF
  // bert-large-uncased config.json: vocab 30522, max_position_embeddings
  // 512, type_vocab_size 2, intermediate 4096. Counted as BertModel with its
  // pooler (no MLM / NSP heads): 335,141,888, what
  // BertModel.from_pretrained("bert-large-uncased").num_parameters() reports.
  ModelSpec m;
  m.name = "bert-large";
  m.family = ModelFamily::kBert;
  m.architecture = Architecture::kEncoderOnly;
  m.num_layers = 24;
  m.hidden_size = 1024;
  m.num_attention_heads = 16;
  m.num_kv_heads = 16;
  m.head_dim = 64;
  m.ffn_hidden_size = 4096;
  m.vocab_size = 30522;
  m.max_sequence_length = 512;
  m.default_sequence_length = 512;
  m.activation = Activation::kGelu;
  m.norm = NormKind::kLayerNorm;
  m.position_embedding = PositionEmbedding::kLearned;
  m.linear_bias = true;
  m.tied_embeddings = true;
  m.type_vocab_size = 2;
  m.pooler = true;
  m.source =
      "Devlin et al. (arXiv 1810.04805) Section 3 and Appendix A.2; HF bert-large-uncased "
      "config.json; counted as BertModel with pooler";
  return m;
}

ModelSpec T5Large() {
  // Raffel et al. (arXiv 1910.10683) Section 3.7: "Large" has 24 blocks in
  // encoder and decoder, d_model 1024, d_ff 4096, d_kv 64, 16 heads; Section
  // 3.1.2: sequences of 512 tokens. HF t5-large config.json (vocab 32128,
  // relu, 32 buckets, tied LM head). Counted as T5ForConditionalGeneration:
  // 737,668,096, the T5 codebase's own "Trainable Variables ... Total size:
  // 737668096" (google-research/text-to-text-transfer-transformer#326).
  ModelSpec m;
  m.name = "t5-large";
  m.family = ModelFamily::kT5;
  m.architecture = Architecture::kEncoderDecoder;
  m.num_layers = 24;
  m.num_encoder_layers = 24;
  m.hidden_size = 1024;
  m.num_attention_heads = 16;
  m.num_kv_heads = 16;
  m.head_dim = 64;
  m.ffn_hidden_size = 4096;
  m.vocab_size = 32128;
  m.max_sequence_length = 512;
  m.default_sequence_length = 512;
  m.activation = Activation::kRelu;
  m.norm = NormKind::kRmsNorm;
  m.position_embedding = PositionEmbedding::kRelativeBias;
  m.linear_bias = false;
  m.tied_embeddings = true;
  m.relative_attention_buckets = 32;
  m.source =
      "Raffel et al. (arXiv 1910.10683) Sections 3.1.2 and 3.7; HF t5-large config.json; "
      "counted as T5ForConditionalGeneration";
  return m;
}

ModelSpec VitLarge() {
  // Dosovitskiy et al. (arXiv 2010.11929) Table 1: ViT-Large 24 layers,
  // hidden 1024, MLP 4096, 16 heads. google/vit-large-patch16-224 is a
  // ViTForImageClassification (no pooler, a 1000-class ImageNet head) at
  // 224×224 with 16×16 patches: 196 patches + [CLS] = 197 tokens. Its count,
  // 304,326,632, is also torchvision's vit_l_16 "num_params" (same layout).
  ModelSpec m;
  m.name = "vit-large";
  m.family = ModelFamily::kVit;
  m.architecture = Architecture::kEncoderOnly;
  m.num_layers = 24;
  m.hidden_size = 1024;
  m.num_attention_heads = 16;
  m.num_kv_heads = 16;
  m.head_dim = 64;
  m.ffn_hidden_size = 4096;
  m.vocab_size = 0;
  m.max_sequence_length = 197;
  m.default_sequence_length = 197;
  m.activation = Activation::kGelu;
  m.norm = NormKind::kLayerNorm;
  m.position_embedding = PositionEmbedding::kLearned;
  m.linear_bias = true;
  m.tied_embeddings = false;
  m.image_size = 224;
  m.patch_size = 16;
  m.num_channels = 3;
  m.pooler = false;
  m.num_classes = 1000;
  m.source =
      "Dosovitskiy et al. (arXiv 2010.11929) Table 1; HF google/vit-large-patch16-224 "
      "config.json; counted as ViTForImageClassification (1000 classes, no pooler)";
  return m;
}

std::vector<ModelSpec> BuildPresets() {
  std::vector<ModelSpec> presets = {
      Sc21Gpt("gpt-1.7b", "1.7B", 24, 2304, 24),
      Sc21Gpt("gpt-3.6b", "3.6B", 30, 3072, 32),
      Sc21Gpt("gpt-7.5b", "7.5B", 36, 4096, 32),
      Sc21Gpt("gpt-18b", "18.4B", 40, 6144, 48),
      Sc21Gpt("gpt-39b", "39.1B", 48, 8192, 64),
      Sc21Gpt("gpt-76b", "76.1B", 60, 10240, 80),
      Sc21Gpt("gpt-145b", "145.6B", 80, 12288, 96),
      Sc21Gpt("gpt-310b", "310.1B", 96, 16384, 128),
      Sc21Gpt("gpt-530b", "529.6B", 105, 20480, 128),
      Sc21Gpt("gpt-1t", "1008.0B", 128, 25600, 160),
      // Brown et al. (arXiv 2005.14165) Table 2.1: GPT-3 175B, n_layers 96,
      // d_model 12288, n_heads 96, d_head 128, n_ctx 2048. As Megatron-LM
      // trains it, with the GPT-2 BPE padded to 51,200.
      MegatronGpt("gpt3-175b", 96, 12288, 96,
                  "Brown et al. (arXiv 2005.14165) Table 2.1: 96 layers, d_model 12288, 96 heads, "
                  "n_ctx 2048; Megatron-LM layout (vocab 51200)"),
      // Touvron et al., Llama 2 (arXiv 2307.09288) Table 1 (context 4k, GQA
      // for 70B) and Section 2.2; HF meta-llama/Llama-2-*-hf config.json.
      // Counts: 6,738,415,616 / 13,015,864,320 / 68,976,648,192 (the hub's
      // safetensors totals are larger by layers × 64 because those
      // checkpoints also store the rotary inv_freq buffers).
      Llama("llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, 4096,
            "Touvron et al., Llama 2 (arXiv 2307.09288) Table 1; HF meta-llama/Llama-2-7b-hf "
            "config.json"),
      Llama("llama2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, 4096,
            "Touvron et al., Llama 2 (arXiv 2307.09288) Table 1; HF meta-llama/Llama-2-13b-hf "
            "config.json"),
      Llama("llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, 4096,
            "Touvron et al., Llama 2 (arXiv 2307.09288) Table 1 (GQA); HF "
            "meta-llama/Llama-2-70b-hf config.json"),
      // Llama Team, The Llama 3 Herd of Models (arXiv 2407.21783) Table 3
      // (layers, model dim, FFN dim, heads, 8 KV heads, vocab 128K, RoPE
      // θ = 500,000) and Section 3.4 (pre-training at 8K tokens, then long-
      // context extension). 8B and 70B are Meta-Llama-3 (8K positions);
      // 405B exists only as Llama 3.1 (128K positions). HF config.json files.
      Llama("llama3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, 8192,
            "Llama Team (arXiv 2407.21783) Table 3; HF meta-llama/Meta-Llama-3-8B config.json"),
      Llama("llama3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, 8192,
            "Llama Team (arXiv 2407.21783) Table 3; HF meta-llama/Meta-Llama-3-70B config.json"),
      Llama("llama3-405b", 126, 16384, 128, 8, 53248, 128256, 131072, 8192,
            "Llama Team (arXiv 2407.21783) Table 3 and Section 3.4 (8K pre-training "
            "sequence); HF meta-llama/Llama-3.1-405B config.json"),
      Mixtral8x7b(),
      BertLarge(),
      T5Large(),
      VitLarge(),
      // Test-scale decoders for running the executor on a few CPU cores
      // (orrery execute, its correctness tests and the README's example):
      // the GPT and Llama structures at a size that trains in seconds.
      TinyGpt(),
      TinyLlama(),
  };
  for (const ModelSpec& m : presets) {
    Status valid = ValidateModelSpec(m);
    ORRERY_CHECK(valid.ok()) << "invalid preset: " << valid.message();
  }
  return presets;
}

}  // namespace

const std::vector<ModelSpec>& ModelPresets() {
  static const std::vector<ModelSpec> kPresets = BuildPresets();
  return kPresets;
}

std::vector<std::string> ModelPresetNames() {
  std::vector<std::string> names;
  for (const ModelSpec& m : ModelPresets()) names.push_back(m.name);
  return names;
}

Result<ModelSpec> ModelPreset(const std::string& name) {
  for (const ModelSpec& m : ModelPresets()) {
    if (m.name == name) return m;
  }
  std::string known;
  for (const std::string& n : ModelPresetNames()) known += (known.empty() ? "" : ", ") + n;
  return NotFoundError("unknown model preset '" + name + "' (presets: " + known + ")");
}

}  // namespace orrery::workload
