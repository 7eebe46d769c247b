// The operator decomposition of a model's layers: what each layer computes,
// moves and keeps, on one rank, for one micro-batch, under its parallel
// layout.
//
// A layer (an embedding, a transformer block, an LM head) expands into
// operators — GEMMs, attention cores, norms, element-wise ops, embedding
// lookups, the loss — each with forward and backward FLOPs, bytes read and
// written, parameters and the activations it saves for the backward pass.
// Everything is per rank: tensor parallelism (tp) splits heads and the FFN
// dimension (Megatron column/row parallel linears), sequence parallelism
// splits the norms' and dropouts' tokens over the tp ranks, context
// parallelism (cp) splits the sequence, expert parallelism (ep) splits the
// experts of an MoE layer.
//
// Accounting follows Narayanan et al. (SC21, arXiv 2104.04473) and
// Korthikanti et al. (arXiv 2205.05198):
//   * a GEMM of m×k by k×n costs 2mkn FLOPs forward and twice that backward
//     (input and weight gradients);
//   * the attention core costs 2·b·s²·h for QKᵀ and again for A·V, not
//     halved for causal masking (the Megatron and PaLM convention);
//   * saved activations are those of Korthikanti §4.1: 2-byte activations,
//     1-byte dropout masks, which for a GPT block without parallelism sum to
//     sbh(34 + 5as/h). Families without dropout (Llama, Mixtral) save no
//     masks. With FlashAttention the s² terms are not stored; the softmax
//     statistics (fp32, 4 bytes per row and head) are.
// docs/costmodel.md derives each figure.
//
// Thread-safety: pure functions of their arguments.
#ifndef ORRERY_WORKLOAD_OPERATORS_H_
#define ORRERY_WORKLOAD_OPERATORS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "workload/model_spec.h"

namespace orrery::workload {

// What kind of work an operator is; the cost model keeps an efficiency per
// class.
enum class OperatorClass {
  kGemm,         // dense matrix multiply (linears, the LM head)
  kAttention,    // the attention core: QKᵀ, softmax, A·V
  kNorm,         // LayerNorm / RMSNorm
  kElementwise,  // activation functions, dropout, residual adds, the router's softmax
  kEmbedding,    // table lookups (and their scatter-add backward)
  kLoss,         // softmax cross-entropy over the vocabulary
};
std::string_view OperatorClassName(OperatorClass c);

// M×K by K×N, `batch` times (attention's batched GEMMs, grouped experts).
struct GemmShape {
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  int64_t batch = 1;
};

struct Operator {
  std::string name;  // "attn.qkv", "mlp.fc2", "moe.experts.fc1", ...
  OperatorClass op_class = OperatorClass::kElementwise;
  Flops forward_flops;
  Flops backward_flops;
  Bytes forward_bytes;   // read plus written by the forward pass
  Bytes backward_bytes;  // read plus written by the backward pass
  std::optional<GemmShape> gemm;  // forward shape, for GEMMs and attention
  int64_t parameters = 0;         // held by this rank
  Bytes saved_activations;        // kept from forward until backward
  // Korthikanti's selective recomputation drops this operator's saved
  // activations and recomputes them in backward (the attention core).
  bool recomputed_selectively = false;
};

enum class LayerKind {
  kEmbedding,            // token (+ position, token-type) embedding
  kPatchEmbedding,       // ViT: patches to hidden (+ class token, positions)
  kEncoderBlock,         // bidirectional self-attention + MLP (BERT, ViT, T5 encoder)
  kDecoderBlock,         // causal self-attention + MLP (GPT, Llama)
  kMoeDecoderBlock,      // causal self-attention + routed experts (Mixtral)
  kCrossAttentionBlock,  // T5 decoder: self-attention, cross-attention, MLP
  kLmHead,               // final norm, vocabulary projection, cross-entropy loss
};
std::string_view LayerKindName(LayerKind k);

// The layers of a model in execution order: embedding, blocks, head.
std::vector<LayerKind> ModelLayers(const ModelSpec& model);

// The parallel layout of one layer on one rank.
struct LayerLayout {
  int tp = 1;
  bool sequence_parallel = false;
  int cp = 1;
  int ep = 1;
};

struct ExpansionOptions {
  int activation_bytes = 2;  // bf16/fp16 activations
  // A fused attention kernel that never stores the s×s scores.
  bool flash_attention = false;
};

struct LayerOperators {
  LayerKind kind = LayerKind::kDecoderBlock;
  std::vector<Operator> ops;

  Flops ForwardFlops() const;
  Flops BackwardFlops() const;
  int64_t Parameters() const;
  // Saved activations with or without selective recomputation.
  Bytes SavedActivations(bool selective_recompute = false) const;
};

// Expands one layer for a micro-batch of `micro_batch` sequences of
// `sequence_length` tokens. InvalidArgument when the layout does not divide
// the model (heads by tp, sequence by cp, experts by ep).
Result<LayerOperators> ExpandLayer(const ModelSpec& model, LayerKind kind, int64_t micro_batch,
                                   int64_t sequence_length, const LayerLayout& layout,
                                   const ExpansionOptions& options = {});

// FLOPs per token for training (forward and backward), PaLM App. B:
//   model:    6·N + 12·L·H·Q·T      (N parameters excluding embeddings' lookups are
//                                     not separated: N is every parameter, as PaLM)
//   hardware: model + the recomputed forward (full: one more forward of the
//             blocks; selective: the attention core's forward)
// where L layers, H heads, Q head size, T sequence length.
struct FlopsPerToken {
  Flops model;     // for MFU: recomputation not counted
  Flops hardware;  // for HFU: recomputation counted
};
enum class RecomputeAccounting { kNone, kSelective, kFull };
FlopsPerToken TrainingFlopsPerToken(const ModelSpec& model, int64_t sequence_length,
                                    RecomputeAccounting recompute);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_OPERATORS_H_
