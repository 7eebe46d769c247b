#include "workload/operators.h"

#include <string>

namespace orrery::workload {

std::string_view OperatorClassName(OperatorClass c) {
  switch (c) {
    case OperatorClass::kGemm: return "gemm";
    case OperatorClass::kAttention: return "attention";
    case OperatorClass::kNorm: return "norm";
    case OperatorClass::kElementwise: return "elementwise";
    case OperatorClass::kEmbedding: return "embedding";
    case OperatorClass::kLoss: return "loss";
  }
  return "unknown";
}

std::string_view LayerKindName(LayerKind k) {
  switch (k) {
    case LayerKind::kEmbedding: return "embedding";
    case LayerKind::kPatchEmbedding: return "patch-embedding";
    case LayerKind::kEncoderBlock: return "encoder-block";
    case LayerKind::kDecoderBlock: return "decoder-block";
    case LayerKind::kMoeDecoderBlock: return "moe-decoder-block";
    case LayerKind::kCrossAttentionBlock: return "cross-attention-block";
    case LayerKind::kLmHead: return "lm-head";
  }
  return "unknown";
}

std::vector<LayerKind> ModelLayers(const ModelSpec& model) {
  std::vector<LayerKind> layers;
  layers.push_back(model.family == ModelFamily::kVit ? LayerKind::kPatchEmbedding
                                                      : LayerKind::kEmbedding);
  switch (model.architecture) {
    case Architecture::kEncoderOnly:
      layers.insert(layers.end(), model.num_layers, LayerKind::kEncoderBlock);
      break;
    case Architecture::kEncoderDecoder:
      layers.insert(layers.end(), model.num_encoder_layers, LayerKind::kEncoderBlock);
      layers.insert(layers.end(), model.num_layers, LayerKind::kCrossAttentionBlock);
      break;
    case Architecture::kDecoderOnly:
      layers.insert(layers.end(), model.num_layers,
                    model.is_moe() ? LayerKind::kMoeDecoderBlock : LayerKind::kDecoderBlock);
      break;
  }
  layers.push_back(LayerKind::kLmHead);
  return layers;
}

Flops LayerOperators::ForwardFlops() const {
  Flops f;
  for (const Operator& op : ops) f += op.forward_flops;
  return f;
}

Flops LayerOperators::BackwardFlops() const {
  Flops f;
  for (const Operator& op : ops) f += op.backward_flops;
  return f;
}

int64_t LayerOperators::Parameters() const {
  int64_t n = 0;
  for (const Operator& op : ops) n += op.parameters;
  return n;
}

Bytes LayerOperators::SavedActivations(bool selective_recompute) const {
  Bytes b;
  for (const Operator& op : ops) {
    if (selective_recompute && op.recomputed_selectively) continue;
    b += op.saved_activations;
  }
  return b;
}

namespace {

// Families trained with dropout on hidden states and attention
// probabilities (GPT-2 and Megatron GPT: 0.1; BERT: 0.1; T5: 0.1). Llama,
// Mixtral and ViT-Large's released configs use none.
bool HasDropout(const ModelSpec& m) {
  return m.family == ModelFamily::kGpt || m.family == ModelFamily::kBert ||
         m.family == ModelFamily::kT5;
}

int64_t NormParameters(const ModelSpec& m) {
  // LayerNorm has a gain and a bias; RMSNorm (Llama, T5) only a gain.
  return m.norm == NormKind::kLayerNorm ? 2 * int64_t{m.hidden_size} : m.hidden_size;
}

// Everything the expansion of one layer needs, per rank.
struct Dims {
  int64_t b;         // micro-batch
  int64_t s;         // local tokens per sequence (sequence / cp)
  int64_t s_full;    // keys each query attends to
  int64_t tokens;    // b·s
  int64_t h;
  int64_t d;         // head dim
  int64_t heads;     // attention heads on this rank
  int64_t kv_heads;  // key/value heads on this rank (replicated when fewer than tp)
  int64_t ffn;       // FFN width on this rank
  int64_t t;         // tp
  int64_t norm_tokens;  // tokens a norm or dropout sees: tokens / tp with SP
  int64_t ab;        // bytes per activation element
  bool dropout;
};

Bytes Elems(int64_t n, int64_t bytes_per_elem) { return Bytes(n * bytes_per_elem); }

// A GEMM of (m×k)·(k×n): 2mkn FLOPs forward, 4mkn backward (dX and dW).
Operator Gemm(std::string name, int64_t m, int64_t n, int64_t k, int64_t parameters,
              Bytes saved, const Dims& d, int64_t batch = 1) {
  Operator op;
  op.name = std::move(name);
  op.op_class = OperatorClass::kGemm;
  const double mnk = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) *
                     static_cast<double>(batch);
  op.forward_flops = Flop(2.0 * mnk);
  op.backward_flops = Flop(4.0 * mnk);
  const Bytes a = Elems(batch * m * k, d.ab), w = Elems(k * n, d.ab), y = Elems(batch * m * n, d.ab);
  op.forward_bytes = a + w + y;
  // dX = dY·Wᵀ and dW = Xᵀ·dY: read dY twice, W and X once, write dX and dW.
  op.backward_bytes = y + y + w + a + a + w;
  op.gemm = GemmShape{m, n, k, batch};
  op.parameters = parameters;
  op.saved_activations = saved;
  return op;
}

// A memory-bound op over `elems` elements reading `reads` and writing
// `writes` tensors of that size, `flops_per_elem` each way.
Operator Elementwise(std::string name, OperatorClass c, int64_t elems, int reads, int writes,
                     double flops_per_elem, Bytes saved, const Dims& d) {
  Operator op;
  op.name = std::move(name);
  op.op_class = c;
  op.forward_flops = Flop(flops_per_elem * static_cast<double>(elems));
  op.backward_flops = Flop(2.0 * flops_per_elem * static_cast<double>(elems));
  op.forward_bytes = Elems(elems * (reads + writes), d.ab);
  op.backward_bytes = Elems(elems * (reads + writes + 1), d.ab);
  op.saved_activations = saved;
  return op;
}

// A norm over the block's input: saves its input (Korthikanti: 2sbh, /t
// with sequence parallelism). ~5 FLOPs per element (mean, variance, scale).
Operator Norm(std::string name, const ModelSpec& m, const Dims& d) {
  const int64_t elems = d.norm_tokens * d.h;
  Operator op = Elementwise(std::move(name), OperatorClass::kNorm, elems, 1, 1, 5.0,
                            Elems(elems, d.ab), d);
  op.parameters = NormParameters(m);
  return op;
}

// Dropout on the hidden state plus the residual add; saves a 1-byte mask.
Operator DropoutAdd(std::string name, const Dims& d) {
  const int64_t elems = d.norm_tokens * d.h;
  return Elementwise(std::move(name), OperatorClass::kElementwise, elems, 2, 1, 2.0,
                     d.dropout ? Bytes(elems) : Bytes(0), d);
}

// Self- or cross-attention: projections, core, output projection.
// `kv_tokens` are the tokens keys and values come from (the encoder's for
// cross-attention); `causal` does not change the FLOP count (convention).
void AddAttention(const std::string& prefix, const ModelSpec& m, const Dims& d, bool cross,
                  const ExpansionOptions& options, std::vector<Operator>& ops) {
  const int64_t q_width = d.heads * d.d;
  const int64_t kv_width = d.kv_heads * d.d;
  const int64_t bias = m.linear_bias ? 1 : 0;
  // The projections' input: stored sharded over tp with sequence parallelism.
  const Bytes input = Elems(d.norm_tokens * d.h, d.ab);
  if (cross) {
    ops.push_back(Gemm(prefix + ".q", d.tokens, q_width, d.h, d.h * q_width + bias * q_width,
                       input, d));
    // Keys and values from the encoder output (assumed of the same length).
    ops.push_back(Gemm(prefix + ".kv", d.tokens, 2 * kv_width, d.h,
                       d.h * 2 * kv_width + bias * 2 * kv_width, input, d));
  } else {
    const int64_t n = q_width + 2 * kv_width;
    ops.push_back(Gemm(prefix + ".qkv", d.tokens, n, d.h, d.h * n + bias * n, input, d));
  }
  const int64_t scores = d.b * d.heads * d.s * d.s_full;
  const Bytes q = Elems(d.tokens * q_width, d.ab);
  const Bytes k = Elems(d.tokens * kv_width, d.ab);
  const Bytes v = k;
  if (options.flash_attention) {
    // One fused kernel: saves Q, K, V and the softmax statistics (fp32 log-sum-exp
    // per row and head); the backward recomputes the scores (FlashAttention-2 §3).
    Operator core;
    core.name = prefix + ".flash";
    core.op_class = OperatorClass::kAttention;
    const double f = 2.0 * static_cast<double>(scores) * static_cast<double>(d.d);
    core.forward_flops = Flop(2.0 * f);
    // dQ, dK, dV, dP and the recomputed scores: 2.5× forward (FlashAttention-2 §4.1).
    core.backward_flops = Flop(5.0 * f);
    core.forward_bytes = q + k + v + q;
    core.backward_bytes = (q + k + v) * 3;
    core.gemm = GemmShape{d.s, d.s_full, d.d, d.b * d.heads};
    core.saved_activations = q + k + v + Bytes(4 * d.b * d.heads * d.s);
    ops.push_back(core);
  } else {
    // QKᵀ saves Q and K (Korthikanti: 4sbh).
    Operator qk = Gemm(prefix + ".qk", d.s, d.s_full, d.d, 0, q + k, d, d.b * d.heads);
    qk.op_class = OperatorClass::kAttention;
    ops.push_back(qk);
    // Softmax (and attention dropout): saves the probabilities (2as²b), the
    // mask (as²b) and the dropout output (2as²b) — what selective
    // recomputation drops.
    const int64_t per_score = d.dropout ? 2 * d.ab + 1 : d.ab;
    Operator softmax = Elementwise(prefix + ".softmax", OperatorClass::kElementwise, scores, 1,
                                   d.dropout ? 2 : 1, 5.0, Bytes(scores * per_score), d);
    softmax.recomputed_selectively = true;
    ops.push_back(softmax);
    // A·V saves V (2sbh); the probabilities are counted above.
    Operator av = Gemm(prefix + ".av", d.s, d.d, d.s_full, 0, v, d, d.b * d.heads);
    av.op_class = OperatorClass::kAttention;
    ops.push_back(av);
  }
  // Output projection: row-parallel; its bias is added after the reduction,
  // so every tp rank holds all of it.
  ops.push_back(Gemm(prefix + ".proj", d.tokens, d.h, q_width, q_width * d.h + bias * d.h,
                     Elems(d.tokens * q_width, d.ab), d));
  ops.push_back(DropoutAdd(prefix + ".dropout_add", d));
}

// The feed-forward network of `tokens` tokens, `width` wide on this rank;
// fc1 saves `input` (its input as stored: sharded with SP for a dense MLP,
// the dispatched tokens for experts).
void AddMlp(const std::string& prefix, const ModelSpec& m, const Dims& d, int64_t tokens,
            int64_t width, Bytes input, std::vector<Operator>& ops) {
  const bool gated = IsGated(m.activation);
  const int64_t bias = m.linear_bias ? 1 : 0;
  const int64_t up = gated ? 2 * width : width;
  ops.push_back(Gemm(prefix + ".fc1", tokens, up, d.h, d.h * up + bias * up, input, d));
  // GELU saves its input (8sbh/t for f = 4h); a gated unit saves both halves.
  ops.push_back(Elementwise(prefix + ".act", OperatorClass::kElementwise, tokens * width,
                            gated ? 2 : 1, 1, gated ? 6.0 : 8.0,
                            Elems(tokens * up, d.ab), d));
  // fc2 saves its input (8sbh/t for f = 4h).
  ops.push_back(Gemm(prefix + ".fc2", tokens, d.h, width, width * d.h + bias * d.h,
                     Elems(tokens * width, d.ab), d));
}

Status CheckLayout(const ModelSpec& m, int64_t sequence_length, const LayerLayout& l) {
  if (l.tp < 1 || l.cp < 1 || l.ep < 1) {
    return InvalidArgumentError("layout degrees must be >= 1 (tp " + std::to_string(l.tp) +
                                ", cp " + std::to_string(l.cp) + ", ep " +
                                std::to_string(l.ep) + ")");
  }
  if (m.num_attention_heads % l.tp != 0) {
    return InvalidArgumentError("tp " + std::to_string(l.tp) + " does not divide the " +
                                std::to_string(m.num_attention_heads) + " attention heads of " +
                                m.name);
  }
  if (m.ffn_hidden_size % l.tp != 0) {
    return InvalidArgumentError("tp " + std::to_string(l.tp) + " does not divide the FFN width " +
                                std::to_string(m.ffn_hidden_size) + " of " + m.name);
  }
  if (sequence_length % l.cp != 0) {
    return InvalidArgumentError("cp " + std::to_string(l.cp) + " does not divide the sequence " +
                                "length " + std::to_string(sequence_length));
  }
  if (l.ep > 1 && (!m.is_moe() || m.num_experts % l.ep != 0)) {
    return InvalidArgumentError("ep " + std::to_string(l.ep) + " does not divide the " +
                                std::to_string(m.num_experts) + " experts of " + m.name);
  }
  return Status::Ok();
}

}  // namespace

Result<LayerOperators> ExpandLayer(const ModelSpec& m, LayerKind kind, int64_t micro_batch,
                                   int64_t sequence_length, const LayerLayout& layout,
                                   const ExpansionOptions& options) {
  if (micro_batch < 1 || sequence_length < 1) {
    return InvalidArgumentError("micro-batch and sequence length must be positive");
  }
  ORRERY_RETURN_IF_ERROR(CheckLayout(m, sequence_length, layout));
  Dims d;
  d.b = micro_batch;
  d.s = sequence_length / layout.cp;
  d.s_full = sequence_length;
  d.tokens = d.b * d.s;
  d.h = m.hidden_size;
  d.d = m.head_dim;
  d.t = layout.tp;
  d.heads = m.num_attention_heads / layout.tp;
  // Megatron replicates key/value heads when there are fewer than tp.
  d.kv_heads = m.num_kv_heads >= layout.tp ? m.num_kv_heads / layout.tp : 1;
  d.ffn = m.ffn_hidden_size / layout.tp;
  d.norm_tokens = layout.sequence_parallel ? d.tokens / layout.tp : d.tokens;
  d.ab = options.activation_bytes;
  d.dropout = HasDropout(m);

  LayerOperators layer;
  layer.kind = kind;
  std::vector<Operator>& ops = layer.ops;
  switch (kind) {
    case LayerKind::kEmbedding: {
      // Vocabulary-parallel lookup (Megatron splits the table's rows over tp).
      Operator lookup = Elementwise("embed.tokens", OperatorClass::kEmbedding, d.tokens * d.h, 1,
                                    1, 0.0, Bytes(0), d);
      lookup.parameters = int64_t{m.vocab_size} * d.h / d.t;
      ops.push_back(lookup);
      if (m.position_embedding == PositionEmbedding::kLearned) {
        Operator pos = Elementwise("embed.positions", OperatorClass::kEmbedding, d.tokens * d.h,
                                   2, 1, 1.0, Bytes(0), d);
        pos.parameters = int64_t{m.max_sequence_length} * d.h;
        ops.push_back(pos);
      }
      if (m.type_vocab_size > 0) {
        Operator types = Elementwise("embed.token_types", OperatorClass::kEmbedding,
                                     d.tokens * d.h, 2, 1, 1.0, Bytes(0), d);
        types.parameters = int64_t{m.type_vocab_size} * d.h;
        ops.push_back(types);
      }
      if (m.family == ModelFamily::kBert) ops.push_back(Norm("embed.norm", m, d));
      // Embedding dropout saves a mask (Korthikanti §4.1: sbhp/t with p = 1).
      if (d.dropout) ops.push_back(DropoutAdd("embed.dropout", d));
      break;
    }
    case LayerKind::kPatchEmbedding: {
      // Patches of p×p×c pixels projected to h (a strided convolution as a GEMM).
      const int64_t patch = int64_t{m.patch_size} * m.patch_size * m.num_channels;
      const int64_t patches = d.tokens - d.b;  // one class token per image
      ops.push_back(Gemm("patch.proj", patches, d.h, patch, patch * d.h + d.h,
                         Elems(patches * patch, d.ab), d));
      Operator tokens = Elementwise("patch.cls_positions", OperatorClass::kEmbedding,
                                    d.tokens * d.h, 2, 1, 1.0, Bytes(0), d);
      tokens.parameters = d.h + int64_t{m.max_sequence_length} * d.h;
      ops.push_back(tokens);
      break;
    }
    case LayerKind::kEncoderBlock:
    case LayerKind::kDecoderBlock:
      ops.push_back(Norm("attn.norm", m, d));
      AddAttention("attn", m, d, /*cross=*/false, options, ops);
      ops.push_back(Norm("mlp.norm", m, d));
      AddMlp("mlp", m, d, d.tokens, d.ffn, Elems(d.norm_tokens * d.h, d.ab), ops);
      ops.push_back(DropoutAdd("mlp.dropout_add", d));
      break;
    case LayerKind::kCrossAttentionBlock:
      ops.push_back(Norm("attn.norm", m, d));
      AddAttention("attn", m, d, /*cross=*/false, options, ops);
      ops.push_back(Norm("xattn.norm", m, d));
      AddAttention("xattn", m, d, /*cross=*/true, options, ops);
      ops.push_back(Norm("mlp.norm", m, d));
      AddMlp("mlp", m, d, d.tokens, d.ffn, Elems(d.norm_tokens * d.h, d.ab), ops);
      ops.push_back(DropoutAdd("mlp.dropout_add", d));
      break;
    case LayerKind::kMoeDecoderBlock: {
      ops.push_back(Norm("attn.norm", m, d));
      AddAttention("attn", m, d, /*cross=*/false, options, ops);
      ops.push_back(Norm("moe.norm", m, d));
      // The router: a replicated h×E linear and its softmax (fp32 probabilities saved).
      const int64_t experts = m.num_experts;
      ops.push_back(Gemm("moe.router", d.tokens, experts, d.h, d.h * experts,
                         Elems(d.tokens * d.h, d.ab), d));
      ops.push_back(Elementwise("moe.router.softmax_topk", OperatorClass::kElementwise,
                                d.tokens * experts, 1, 1, 5.0, Bytes(4 * d.tokens * experts), d));
      // Under uniform routing each rank of the expert-parallel group processes
      // tokens·k token-slots over its num_experts/ep experts.
      const int64_t slots = d.tokens * m.experts_per_token;
      ops.push_back(Elementwise("moe.dispatch", OperatorClass::kElementwise, slots * d.h, 1, 1,
                                0.0, Bytes(0), d));
      const size_t first_expert_op = ops.size();
      AddMlp("moe.experts", m, d, slots, d.ffn, Elems(slots * d.h, d.ab), ops);
      // Each of the rank's experts holds its own weights.
      const int64_t local_experts = experts / layout.ep;
      for (size_t i = first_expert_op; i < ops.size(); ++i) ops[i].parameters *= local_experts;
      ops.push_back(Elementwise("moe.combine", OperatorClass::kElementwise, slots * d.h, 2, 1,
                                2.0, Elems(slots, 4), d));
      ops.push_back(DropoutAdd("moe.dropout_add", d));
      break;
    }
    case LayerKind::kLmHead: {
      ops.push_back(Norm("head.norm", m, d));
      if (m.vocab_size > 0) {
        // The logits GEMM (vocabulary-parallel); its weight is the embedding's
        // when tied (counted there).
        const int64_t v = m.vocab_size / d.t;
        const int64_t params = m.tied_embeddings ? 0 : d.h * v;
        ops.push_back(Gemm("head.logits", d.tokens, v, d.h, params,
                           Elems(d.norm_tokens * d.h, d.ab), d));
        // Cross-entropy keeps the fp32 logits for its backward (Korthikanti:
        // the 4sbV/t of the output layer).
        ops.push_back(Elementwise("head.loss", OperatorClass::kLoss, d.tokens * v, 1, 1, 5.0,
                                  Bytes(4 * d.tokens * v), d));
      }
      break;
    }
  }
  return layer;
}

FlopsPerToken TrainingFlopsPerToken(const ModelSpec& m, int64_t sequence_length,
                                    RecomputeAccounting recompute) {
  const double n = static_cast<double>(m.ParameterCount());
  const double attention = 12.0 * m.total_layers() * static_cast<double>(m.num_attention_heads) *
                           m.head_dim * static_cast<double>(sequence_length);
  FlopsPerToken f;
  f.model = Flop(6.0 * n + attention);
  switch (recompute) {
    case RecomputeAccounting::kNone:
      f.hardware = f.model;
      break;
    case RecomputeAccounting::kSelective:
      // The attention core's forward again: 4·L·H·Q·T per token
      // (Korthikanti Eq. 8: 1 + s/3h instead of 1 + s/6h).
      f.hardware = f.model + Flop(attention / 3.0);
      break;
    case RecomputeAccounting::kFull: {
      // One more forward pass of the transformer blocks: 2·N_blocks + 4·L·H·Q·T
      // per token (Narayanan Eq. 3 recomputes the blocks, not the embedding or
      // the logits). The non-block parameters do not depend on b, s or tp.
      int64_t non_block = 0;
      for (LayerKind kind : {m.family == ModelFamily::kVit ? LayerKind::kPatchEmbedding
                                                           : LayerKind::kEmbedding,
                             LayerKind::kLmHead}) {
        Result<LayerOperators> layer = ExpandLayer(m, kind, 1, m.family == ModelFamily::kVit ? 2 : 1, {});
        if (layer.ok()) non_block += layer->Parameters();
      }
      const double blocks = n - static_cast<double>(non_block);
      f.hardware = f.model + Flop(2.0 * blocks + attention / 3.0);
      break;
    }
  }
  return f;
}

}  // namespace orrery::workload
