// The executor's model: a GPT- or Llama-style decoder cut into units — the
// embedding, each transformer block, and the head (final norm, LM head,
// cross-entropy) — each holding one tensor-parallel rank's share.
//
// A unit is the granularity of everything the runtime (exec/runtime.h)
// does around the math: pipeline stages and chunks are runs of units,
// data-parallel buckets are runs of units' gradients, ZeRO-3 gathers one
// unit's parameters before it runs and frees them after.
//
// Parameters. A unit does not own its parameters: the runtime passes a
// flat float buffer of parameter_count() elements (and one for gradients)
// to every call, laid out as parameters() says. Each entry maps this rank's
// local tensor to the full, unsharded tensor of the single-rank model:
//
//   full tensor  name, full_shape (1-D or 2-D, row-major)
//   local tensor the concatenation along split_dim of the pieces
//                [begin, end) of the full tensor along that dimension
//                (split_dim −1: replicated, the whole tensor)
//
// e.g. a TP-2 rank's fused QKV weight holds its q heads, its k heads and
// its v heads: three column ranges of the full [h, (nq + 2·nkv)·d] weight.
// InitialParameterValue() gives every element of every full tensor from the
// seed alone, so a run with any plan starts from the single-rank run's
// parameters, and the runtime can gather the full tensors back.
//
// Math (y = x·W, W stored [in, out]), as Megatron-LM (Shoeybi et al. 2019,
// arXiv 1909.08053; Korthikanti et al. 2022 for sequence parallelism):
//   block  x += proj(attn(rope(qkv(norm1(x)))));  x += fc2(act(fc1(norm2(x))))
//   qkv, fc1 (and SwiGLU's gate) are column-parallel, proj and fc2
//   row-parallel; without SP a tp all-reduce follows each row-parallel GEMM
//   in forward and precedes each column-parallel GEMM's input gradient in
//   backward (Megatron's g and f); with SP an all-gather before each
//   column-parallel GEMM and a reduce-scatter after each row-parallel one,
//   and activations between them are sequence shards. Gradients of
//   parameters that SP ranks hold as replicas (norms, row-parallel biases)
//   are all-reduced over tp inside Backward, so after Backward returns a
//   unit's gradients are final for that micro-batch.
//   embedding  vocabulary-parallel lookup (+ learned positions, GPT) and a
//              tp all-reduce (SP: reduce-scatter);
//   head       final norm, vocabulary-parallel logits x·Eᵀ and
//              vocabulary-parallel cross-entropy (backend.h).
// No dropout: runs are deterministic. GELU is the tanh approximation.
//
// Tied embeddings (model.tied_embeddings): the head holds its own copy of
// "embedding.word_embeddings.weight" (same name, so the same initial
// values), as Megatron-LM's last pipeline stage does; the runtime sums the
// two copies' gradients (an all-reduce over the embedding group when they
// are on different ranks) before the optimizer step, so they stay equal.
//
// Activations between units: rows × hidden float buffers, rows =
// sequence·batch (sequence-major, backend.h), or sequence·batch / tp with
// sequence parallelism (this rank's contiguous row block).
//
// Recomputation (Korthikanti et al. §5): kFull keeps only the block's input
// and reruns its forward at the start of Backward; kSelective drops the
// attention probabilities and recomputes the attention core. Recomputed ops
// are recorded with phase kRecompute.
//
// Thread-safety: a unit is used from one thread.
#ifndef ORRERY_EXEC_GPT_MODEL_H_
#define ORRERY_EXEC_GPT_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "exec/backend.h"
#include "exec/communicator.h"
#include "exec/op_recorder.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::exec {

// Where one rank's local tensor comes from in the full tensor.
struct ParameterShard {
  std::string name;                 // "layers.3.attn.qkv.weight"
  std::vector<int64_t> full_shape;  // 1 or 2 dimensions
  int split_dim = -1;               // -1 replicated, else 0 or 1
  std::vector<std::pair<int64_t, int64_t>> pieces;  // [begin, end) along split_dim
  int64_t offset = 0;  // of the local tensor in the unit's flat buffer
  int64_t size = 0;    // elements of the local tensor

  // The local tensor's shape (full_shape with split_dim's extent replaced
  // by the pieces' total).
  std::vector<int64_t> LocalShape() const;
};

// The initial value of element `index` (row-major) of the full tensor
// `name` of shape full_shape, from `seed` alone: normal(0, 0.02) for
// weights, scaled by 1/sqrt(2·num_layers) for the output projections
// (attn.proj, mlp.fc2) as Megatron-LM's scaled_init_method_normal; zero
// for biases; one for norm weights. Counter-based (a hash of seed, name and
// index), so any shard is initialized without the others.
float InitialParameterValue(uint64_t seed, const std::string& name,
                            const std::vector<int64_t>& full_shape, int num_layers,
                            int64_t index);

// One micro-batch's data, on the device, as every unit of a stage sees it.
struct MicroBatch {
  int index = 0;             // micro-batch number within the iteration
  int64_t batch = 1;         // samples
  int64_t sequence = 1;      // tokens per sample
  const int32_t* tokens = nullptr;     // sequence·batch ids, sequence-major
  const int32_t* targets = nullptr;    // the next token of each, same layout
  const int32_t* positions = nullptr;  // row / batch for each row (learned positions)
  // The loss of the step is Σ token losses × loss_scale (1 / tokens of the
  // global batch); the head's backward starts from d(loss)/d(token loss) =
  // loss_scale.
  float loss_scale = 1.0f;
};

enum class UnitKind { kEmbedding, kBlock, kHead };

// What every unit of one rank shares.
struct UnitContext {
  const workload::ModelSpec* model = nullptr;
  Backend* backend = nullptr;
  Communicator* tp = nullptr;  // the tensor-parallel group (size 1 without tp)
  bool sequence_parallel = false;
  OpRecorder* recorder = nullptr;
};

class ModelUnit {
 public:
  virtual ~ModelUnit() = default;

  virtual UnitKind kind() const = 0;
  // "embedding", "layers.3", "head".
  virtual const std::string& name() const = 0;
  // The transformer layer of a block; absent for the embedding and head.
  virtual std::optional<int> layer() const = 0;
  virtual const std::vector<ParameterShard>& parameters() const = 0;
  // Elements of this rank's flat parameter (and gradient) buffer.
  virtual int64_t parameter_count() const = 0;

  // Writes this rank's initial parameters (device memory of
  // parameter_count() elements), from InitialParameterValue.
  virtual void InitializeParameters(uint64_t seed, float* params) = 0;

  // Forward of one micro-batch. `input` is the previous unit's output
  // (nullptr for the embedding, which reads mb.tokens); `output` receives
  // this unit's (nullptr for the head, which computes the loss). Saves
  // what Backward needs, per micro-batch, until Backward of that
  // micro-batch frees it.
  virtual void Forward(const MicroBatch& mb, const float* params, const float* input,
                       float* output) = 0;
  // Backward of one micro-batch whose Forward ran. grads += this
  // micro-batch's gradients; `grad_input` receives d(loss)/d(input)
  // (nullptr for the embedding); `grad_output` is d(loss)/d(output)
  // (nullptr for the head).
  virtual void Backward(const MicroBatch& mb, const float* params, float* grads,
                        const float* grad_output, float* grad_input) = 0;
  // Head only: Σ token losses of micro-batch `micro_batch` (unscaled),
  // computed by its Forward; the same on every tp rank.
  virtual double LossSum(int micro_batch) const { (void)micro_batch; return 0.0; }
};

// Rows of the activation a unit passes on: sequence·batch, divided by tp
// under sequence parallelism.
int64_t ActivationRows(int64_t sequence, int64_t batch, int tp, bool sequence_parallel);

// OK when the executor can run `model` with tensor parallelism `tp` (and
// sequence parallelism when asked) for micro-batches of `batch` samples of
// `sequence` tokens: a decoder-only GPT or Llama family model without
// experts; heads, kv heads, the FFN size and the vocabulary divisible by
// tp; sequence·batch divisible by tp under SP; sequence <= the model's
// maximum. Unimplemented or InvalidArgument otherwise, naming the field.
Status CheckExecutableModel(const workload::ModelSpec& model, int tp, bool sequence_parallel,
                            int64_t batch, int64_t sequence);

// The units. REQUIRES: CheckExecutableModel OK for the context's tp.
std::unique_ptr<ModelUnit> MakeEmbedding(const UnitContext& context);
std::unique_ptr<ModelUnit> MakeBlock(const UnitContext& context, int layer,
                                     workload::Recompute recompute);
std::unique_ptr<ModelUnit> MakeHead(const UnitContext& context);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_GPT_MODEL_H_
