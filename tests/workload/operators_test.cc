#include "workload/operators.h"

#include <gtest/gtest.h>

#include "workload/model_presets.h"

namespace orrery::workload {
namespace {

// A Megatron GPT block (Narayanan et al. Table 1, 1.7B row), as Korthikanti
// et al. analyse it: LayerNorm, GELU MLP of 4h, dropout, biases.
ModelSpec MegatronGpt() { return ModelPreset("gpt-1.7b").value(); }

// Llama-3-8B: GQA (32 heads, 8 KV heads), SwiGLU, RMSNorm, no bias.
ModelSpec LlamaLike() { return ModelPreset("llama3-8b").value(); }

LayerOperators Block(const ModelSpec& m, int64_t b, int64_t s, LayerLayout layout,
                     ExpansionOptions options = {}) {
  return ExpandLayer(m, LayerKind::kDecoderBlock, b, s, layout, options).value();
}

// Korthikanti et al. 2022, Table 2, in bytes per layer.
TEST(Operators, GptBlockSavesKorthikantiActivationsWithoutParallelism) {
  const ModelSpec m = MegatronGpt();
  const int64_t s = 2048, b = 2, h = m.hidden_size, a = m.num_attention_heads;
  // sbh(34 + 5as/h)
  EXPECT_EQ(Block(m, b, s, {}).SavedActivations().count(), 34 * s * b * h + 5 * a * s * s * b);
}

TEST(Operators, GptBlockSavesKorthikantiActivationsWithTensorParallelism) {
  const ModelSpec m = MegatronGpt();
  const int64_t s = 2048, b = 1, h = m.hidden_size, a = m.num_attention_heads;
  for (int64_t t : {2, 4, 8}) {
    // sbh(10 + 24/t + 5as/ht)
    EXPECT_EQ(Block(m, b, s, {.tp = static_cast<int>(t)}).SavedActivations().count(),
              10 * s * b * h + 24 * s * b * h / t + 5 * a * s * s * b / t)
        << "t = " << t;
  }
}

TEST(Operators, SequenceParallelismDividesEveryActivationByTp) {
  const ModelSpec m = MegatronGpt();
  const int64_t s = 2048, b = 1, h = m.hidden_size, a = m.num_attention_heads, t = 4;
  // (sbh/t)(34 + 5as/h)
  LayerOperators layer = Block(m, b, s, {.tp = 4, .sequence_parallel = true});
  EXPECT_EQ(layer.SavedActivations().count(), (34 * s * b * h + 5 * a * s * s * b) / t);
}

TEST(Operators, SelectiveRecomputationDropsTheAttentionScores) {
  const ModelSpec m = MegatronGpt();
  const int64_t s = 2048, b = 1, h = m.hidden_size, t = 8;
  // TP + selective: sbh(10 + 24/t); TP + SP + selective: 34sbh/t.
  EXPECT_EQ(Block(m, b, s, {.tp = 8}).SavedActivations(true).count(),
            10 * s * b * h + 24 * s * b * h / t);
  EXPECT_EQ(Block(m, b, s, {.tp = 8, .sequence_parallel = true}).SavedActivations(true).count(),
            34 * s * b * h / t);
}

TEST(Operators, GptBlockForwardFlopsAreNarayanansCount) {
  const ModelSpec m = MegatronGpt();
  const double s = 2048, b = 4, h = m.hidden_size;
  LayerOperators layer = Block(m, 4, 2048, {});
  double matmul = 0, total_backward_matmul = 0;
  for (const Operator& op : layer.ops) {
    if (op.op_class == OperatorClass::kGemm || op.op_class == OperatorClass::kAttention) {
      matmul += op.forward_flops.count();
      total_backward_matmul += op.backward_flops.count();
    }
  }
  // 24bsh² + 4bs²h per layer forward (Narayanan et al. §5.1), backward twice that.
  EXPECT_DOUBLE_EQ(matmul, 24 * b * s * h * h + 4 * b * s * s * h);
  EXPECT_DOUBLE_EQ(total_backward_matmul, 2 * matmul);
}

TEST(Operators, TensorParallelismSplitsFlopsAndParametersEvenly) {
  const ModelSpec m = MegatronGpt();
  LayerOperators one = Block(m, 1, 2048, {});
  LayerOperators four = Block(m, 1, 2048, {.tp = 4});
  double mm1 = 0, mm4 = 0;
  for (const Operator& op : one.ops) {
    if (op.gemm) mm1 += op.forward_flops.count();
  }
  for (const Operator& op : four.ops) {
    if (op.gemm) mm4 += op.forward_flops.count();
  }
  EXPECT_DOUBLE_EQ(mm4 * 4, mm1);
  // 12h² + 13h parameters per block (Narayanan Eq. 2); under tp the
  // weights and column-parallel biases split, while the norms and the two
  // row-parallel biases (2h) are held by every rank.
  const int64_t h = m.hidden_size;
  EXPECT_EQ(one.Parameters(), 12 * h * h + 13 * h);
  EXPECT_EQ(four.Parameters(), (12 * h * h + 7 * h) / 4 + 6 * h);
}

TEST(Operators, GroupedQueryAttentionShrinksKeysAndValues) {
  const ModelSpec m = LlamaLike();
  LayerOperators layer = Block(m, 1, 8192, {});
  const Operator* qkv = nullptr;
  for (const Operator& op : layer.ops) {
    if (op.name == "attn.qkv") qkv = &op;
  }
  ASSERT_NE(qkv, nullptr);
  // Q: 32·128, K and V: 8·128 each.
  EXPECT_EQ(qkv->gemm->n, 32 * 128 + 2 * 8 * 128);
  // Llama-3-8B's block: 218,112,000 parameters (4096² + 2·4096·1024 + 4096²
  // + 3·4096·14336 + 2·4096), from the published 8,030,261,248 total.
  EXPECT_EQ(layer.Parameters(), 218112000);
}

TEST(Operators, FlashAttentionStoresNoScores) {
  const ModelSpec m = LlamaLike();
  const int64_t s = 8192, b = 1, h = 4096, kv = 8 * 128, f = 14336;
  LayerOperators layer = Block(m, b, s, {}, {.flash_attention = true});
  // Norm inputs 2·2sbh, QKV input 2sbh, Q 2sbh, K and V 2·2sb·kv, softmax
  // statistics 4·a·s·b, projection input 2sbh, MLP input 2sbh, gate and up
  // 2·2sbf, fc2 input 2sbf; no dropout masks.
  const int64_t expected = 4 * s * b * h + 2 * s * b * h + 2 * s * b * h + 4 * s * b * kv +
                           4 * 32 * s * b + 2 * s * b * h + 2 * s * b * h + 4 * s * b * f +
                           2 * s * b * f;
  EXPECT_EQ(layer.SavedActivations().count(), expected);
}

TEST(Operators, ContextParallelismSplitsQueriesNotKeys) {
  const ModelSpec m = LlamaLike();
  LayerOperators whole = Block(m, 1, 8192, {});
  LayerOperators split = Block(m, 1, 8192, {.cp = 4});
  EXPECT_DOUBLE_EQ(split.ForwardFlops().count() * 4, whole.ForwardFlops().count());
}

TEST(Operators, LayoutsThatDoNotDivideTheModelAreRejected) {
  const ModelSpec m = MegatronGpt();
  Result<LayerOperators> bad = ExpandLayer(m, LayerKind::kDecoderBlock, 1, 2048, {.tp = 5});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "tp 5 does not divide the 24 attention heads of gpt-1.7b");
  EXPECT_FALSE(ExpandLayer(m, LayerKind::kDecoderBlock, 1, 2048, {.cp = 3}).ok());
  EXPECT_FALSE(ExpandLayer(m, LayerKind::kDecoderBlock, 1, 2048, {.ep = 2}).ok());
}

TEST(Operators, MoeExpertsSplitOverExpertParallelRanks) {
  ModelSpec m = LlamaLike();
  m.family = ModelFamily::kMixtral;
  m.num_experts = 8;
  m.experts_per_token = 2;
  LayerOperators ep1 = ExpandLayer(m, LayerKind::kMoeDecoderBlock, 1, 4096, {}).value();
  LayerOperators ep4 = ExpandLayer(m, LayerKind::kMoeDecoderBlock, 1, 4096, {.ep = 4}).value();
  const int64_t expert = 3 * int64_t{4096} * 14336;
  EXPECT_EQ(ep1.Parameters() - ep4.Parameters(), 6 * expert);
  // Top-2 routing: each token passes through two experts' MLPs.
  double expert_flops = 0;
  for (const Operator& op : ep4.ops) {
    if (op.name == "moe.experts.fc1" || op.name == "moe.experts.fc2") {
      expert_flops += op.forward_flops.count();
    }
  }
  EXPECT_DOUBLE_EQ(expert_flops, 2.0 * 4096 * 2 * expert);
}

TEST(Operators, LmHeadKeepsFp32LogitsAsKorthikantiCounts) {
  const ModelSpec m = MegatronGpt();
  const int64_t s = 2048, b = 1, h = m.hidden_size, v = m.vocab_size, t = 8;
  LayerOperators head =
      ExpandLayer(m, LayerKind::kLmHead, b, s, {.tp = 8, .sequence_parallel = true}).value();
  // 4sbh/t · (1 + V/h)
  EXPECT_EQ(head.SavedActivations().count(), 4 * s * b * h / t + 4 * s * b * v / t);
}

// The layers' parameters add up to the model's exact published count.
TEST(Operators, LayerParametersSumToTheModelsCount) {
  for (const char* name : {"gpt-1.7b", "gpt3-175b", "llama2-7b", "llama3-8b", "llama3-70b",
                           "mixtral-8x7b"}) {
    const ModelSpec m = ModelPreset(name).value();
    int64_t sum = 0;
    for (LayerKind kind : ModelLayers(m)) {
      sum += ExpandLayer(m, kind, 1, m.default_sequence_length, {}).value().Parameters();
    }
    EXPECT_EQ(sum, m.ParameterCount()) << name;
  }
}

// Matmul FLOPs of the whole model, forward and backward, per token.
double MatmulFlopsPerToken(const ModelSpec& m, int64_t seq) {
  double total = 0;
  for (LayerKind kind : ModelLayers(m)) {
    const LayerOperators layer = ExpandLayer(m, kind, 1, seq, {}).value();
    for (const Operator& op : layer.ops) {
      if (op.op_class == OperatorClass::kGemm || op.op_class == OperatorClass::kAttention) {
        total += op.forward_flops.count() + op.backward_flops.count();
      }
    }
  }
  return total / static_cast<double>(seq);
}

// PaLM's 6N + 12LHQT counts every parameter as a multiply-add; the operators
// count only the matmuls. For a tied-embedding GPT they agree to within the
// norms, biases and position table (0.3% for GPT 1.7B); for Llama, whose input
// embedding is a lookup, 6N also counts that table's 6·V·h.
TEST(Operators, TrainingFlopsPerTokenMatchSixNPlusAttention) {
  const ModelSpec gpt = MegatronGpt();
  const double gpt_ops = MatmulFlopsPerToken(gpt, 2048);
  const double gpt_palm =
      TrainingFlopsPerToken(gpt, 2048, RecomputeAccounting::kNone).model.count();
  EXPECT_NEAR(gpt_ops / gpt_palm, 1.0, 0.004);

  const ModelSpec llama = LlamaLike();
  const double llama_ops = MatmulFlopsPerToken(llama, 8192);
  const double llama_palm =
      TrainingFlopsPerToken(llama, 8192, RecomputeAccounting::kNone).model.count();
  const double lookup = 6.0 * llama.vocab_size * llama.hidden_size;
  EXPECT_NEAR((llama_ops + lookup) / llama_palm, 1.0, 0.001);
}

// Narayanan et al. Eq. 3 (full recomputation): 96·B·s·l·h²(1 + s/6h + V/16lh)
// per iteration, i.e. 96lh² + 16lhs + 6Vh per token.
TEST(Operators, FullRecomputeHardwareFlopsMatchNarayananEquationThree) {
  const ModelSpec m = MegatronGpt();
  const double l = m.num_layers, h = m.hidden_size, s = 2048, v = m.vocab_size;
  const double eq3 = 96 * l * h * h + 16 * l * h * s + 6 * v * h;
  const double ours = TrainingFlopsPerToken(m, 2048, RecomputeAccounting::kFull).hardware.count();
  EXPECT_NEAR(ours / eq3, 1.0, 0.005);
}

TEST(Operators, ModelLayersRunEmbeddingBlocksHead) {
  std::vector<LayerKind> layers = ModelLayers(MegatronGpt());
  ASSERT_EQ(layers.size(), 26u);
  EXPECT_EQ(layers.front(), LayerKind::kEmbedding);
  EXPECT_EQ(layers[1], LayerKind::kDecoderBlock);
  EXPECT_EQ(layers.back(), LayerKind::kLmHead);
}

}  // namespace
}  // namespace orrery::workload
