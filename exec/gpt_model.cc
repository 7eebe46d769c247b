#include "exec/gpt_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numbers>
#include <string_view>

#include "core/check.h"
#include "traces/collective_op.h"
#include "traces/execution_trace.h"

namespace orrery::exec {

namespace {

using traces::CollectiveOp;
using traces::ExecutionPhase;
using workload::GemmShape;

// Standard deviation of the weights' normal initialization, Megatron-LM's
// init_method_std default (and GPT-2's initializer_range).
constexpr double kInitStd = 0.02;
// Norm epsilons (ModelSpec has no field for them): Megatron-LM's
// layernorm_epsilon default and GPT-2's layer_norm_epsilon are 1e-5; Llama 2's
// HuggingFace config has rms_norm_eps 1e-5.
constexpr float kLayerNormEpsilon = 1e-5f;
constexpr float kRmsNormEpsilon = 1e-5f;
// RoPE base (ModelSpec has no field for it): Llama 2's rope_theta 10000 (Su et
// al.'s RoFormer value). Llama 3 uses 500000.
constexpr float kRopeTheta = 10000.0f;

constexpr int64_t kFloatBytes = 4;

// SplitMix64's output function (Steele, Lea & Flood, OOPSLA 2014): the k-th
// value of the stream seeded s is SplitMix64(s + k·γ).
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
uint64_t SplitMix64(uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// FNV-1a, 64-bit (Fowler, Noll, Vo).
uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// A uniform in (0, 1) from 53 random bits.
double OpenUniform(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The full tensor's row-major index of every element of the local tensor.
std::vector<int64_t> LocalToFullIndices(const ParameterShard& shard) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(shard.size));
  const std::vector<int64_t>& full = shard.full_shape;
  if (shard.split_dim < 0) {
    for (int64_t i = 0; i < shard.size; ++i) out.push_back(i);
  } else if (full.size() == 1 || shard.split_dim == 0) {
    const int64_t row = full.size() == 1 ? 1 : full[1];
    for (const auto& [begin, end] : shard.pieces) {
      for (int64_t i = begin * row; i < end * row; ++i) out.push_back(i);
    }
  } else {
    for (int64_t r = 0; r < full[0]; ++r) {
      for (const auto& [begin, end] : shard.pieces) {
        for (int64_t c = begin; c < end; ++c) out.push_back(r * full[1] + c);
      }
    }
  }
  ORRERY_CHECK_EQ(static_cast<int64_t>(out.size()), shard.size) << shard.name;
  return out;
}

// Rows of a micro-batch's activations: all of them, and this rank's.
struct Rows {
  int64_t full = 0;   // sequence·batch
  int64_t local = 0;  // full, or full / tp under sequence parallelism
};

// What every unit has: its parameter table, the context, and the recorded
// wrappers around collectives and norms.
class UnitBase : public ModelUnit {
 public:
  UnitBase(const UnitContext& context, UnitKind kind, std::string name, std::optional<int> layer)
      : model_(*context.model),
        backend_(*context.backend),
        tp_(*context.tp),
        recorder_(context.recorder),
        tp_size_(context.tp->size()),
        tp_rank_(context.tp->rank()),
        // Sequence parallelism over one rank is the identity: run as without it.
        sp_(context.sequence_parallel && context.tp->size() > 1),
        hidden_(context.model->hidden_size),
        kind_(kind),
        name_(std::move(name)),
        layer_(layer) {
    ORRERY_CHECK(context.model != nullptr && context.backend != nullptr && context.tp != nullptr);
  }

  UnitKind kind() const override { return kind_; }
  const std::string& name() const override { return name_; }
  std::optional<int> layer() const override { return layer_; }
  const std::vector<ParameterShard>& parameters() const override { return shards_; }
  int64_t parameter_count() const override { return parameter_count_; }

  void InitializeParameters(uint64_t seed, float* params) override {
    std::vector<float> host(static_cast<size_t>(parameter_count_));
    for (const ParameterShard& shard : shards_) {
      const std::vector<int64_t> full = LocalToFullIndices(shard);
      for (int64_t i = 0; i < shard.size; ++i) {
        host[static_cast<size_t>(shard.offset + i)] = InitialParameterValue(
            seed, shard.name, shard.full_shape, model_.num_layers, full[static_cast<size_t>(i)]);
      }
    }
    if (parameter_count_ > 0) {
      backend_.CopyFromHost(host.data(), params, parameter_count_ * kFloatBytes);
    }
  }

 protected:
  // Adds a parameter; returns its index in parameters().
  int AddParameter(std::string name, std::vector<int64_t> full_shape, int split_dim,
                   std::vector<std::pair<int64_t, int64_t>> pieces = {}) {
    ParameterShard shard;
    shard.name = std::move(name);
    shard.full_shape = std::move(full_shape);
    shard.split_dim = split_dim;
    shard.pieces = std::move(pieces);
    shard.offset = parameter_count_;
    shard.size = Elements(shard.LocalShape());
    parameter_count_ += shard.size;
    shards_.push_back(std::move(shard));
    return static_cast<int>(shards_.size()) - 1;
  }
  // This rank's piece of a dimension of `extent` split evenly over tp, offset by `base`.
  std::pair<int64_t, int64_t> TpPiece(int64_t extent, int64_t base = 0) const {
    const int64_t local = extent / tp_size_;
    return {base + tp_rank_ * local, base + (tp_rank_ + 1) * local};
  }

  const float* Param(const float* params, int i) const {
    return params + shards_[static_cast<size_t>(i)].offset;
  }
  float* Grad(float* grads, int i) const { return grads + shards_[static_cast<size_t>(i)].offset; }

  Rows RowsOf(const MicroBatch& mb) const {
    Rows rows;
    rows.full = mb.sequence * mb.batch;
    rows.local = ActivationRows(mb.sequence, mb.batch, tp_size_, sp_);
    return rows;
  }

  std::optional<OpRecorder::Scope> Compute(std::string_view op, ExecutionPhase phase, int mb,
                                           std::optional<GemmShape> gemm = std::nullopt) const {
    std::optional<OpRecorder::Scope> scope;
    if (recorder_ != nullptr) {
      scope.emplace(recorder_->Compute(op, phase, layer_, mb));
      if (gemm.has_value()) scope->set_gemm(*gemm);
    }
    return scope;
  }
  std::optional<OpRecorder::Scope> Communication(std::string_view op, CollectiveOp collective,
                                                 ExecutionPhase phase, int mb,
                                                 int64_t bytes) const {
    std::optional<OpRecorder::Scope> scope;
    if (recorder_ != nullptr) {
      scope.emplace(
          recorder_->Communication(op, collective, phase, layer_, mb, tp_.world_ranks(), bytes));
    }
    return scope;
  }

  // The tp collectives; over one rank they are the identity (a copy when the
  // buffers differ) and are not recorded. Sizes as nccl-tests counts them.
  void TpAllReduce(float* data, int64_t count, ReduceOp op, ExecutionPhase phase, int mb) {
    if (tp_size_ == 1) return;
    auto scope =
        Communication("tp.allreduce", CollectiveOp::kAllReduce, phase, mb, count * kFloatBytes);
    tp_.AllReduce(data, count, op);
  }
  // `count` elements per rank; recv holds tp·count.
  void TpAllGather(const float* send, float* recv, int64_t count, ExecutionPhase phase, int mb) {
    if (tp_size_ == 1) {
      if (send != recv) backend_.CopyOnDevice(send, recv, count * kFloatBytes);
      return;
    }
    auto scope = Communication("tp.allgather", CollectiveOp::kAllGather, phase, mb,
                               count * tp_size_ * kFloatBytes);
    tp_.AllGather(send, recv, count);
  }
  // `count` elements received; send holds tp·count.
  void TpReduceScatter(const float* send, float* recv, int64_t count, ExecutionPhase phase,
                       int mb) {
    if (tp_size_ == 1) {
      if (send != recv) backend_.CopyOnDevice(send, recv, count * kFloatBytes);
      return;
    }
    auto scope = Communication("tp.reducescatter", CollectiveOp::kReduceScatter, phase, mb,
                               count * tp_size_ * kFloatBytes);
    tp_.ReduceScatter(send, recv, count);
  }

  // Under SP, the input of a column-parallel GEMM: this rank's shard
  // all-gathered into `gathered`; without SP the shard itself.
  const float* GatherSequence(const float* shard, const Rows& rows, DeviceArray<float>& gathered,
                              ExecutionPhase phase, int mb) {
    if (!sp_) return shard;
    gathered = DeviceArray<float>(backend_, rows.full * hidden_);
    TpAllGather(shard, gathered.data(), rows.local * hidden_, phase, mb);
    return gathered.data();
  }
  // The output of a row-parallel GEMM, a partial sum over tp of rows.full ×
  // hidden: all-reduced in place (returned) without SP; reduce-scattered into
  // `scattered` (returned) under SP.
  float* ReduceSequence(float* partial, const Rows& rows, DeviceArray<float>& scattered,
                        ExecutionPhase phase, int mb) {
    if (!sp_) {
      TpAllReduce(partial, rows.full * hidden_, ReduceOp::kSum, phase, mb);
      return partial;
    }
    scattered = DeviceArray<float>(backend_, rows.local * hidden_);
    TpReduceScatter(partial, scattered.data(), rows.local * hidden_, phase, mb);
    return scattered.data();
  }

  // The model's norm over `rows` rows of hidden; stats holds 2·rows (mean,
  // rstd). `beta` is nullptr for RMSNorm.
  void NormForward(const float* x, const float* gamma, const float* beta, int64_t rows, float* y,
                   float* stats) {
    if (model_.norm == workload::NormKind::kLayerNorm) {
      backend_.LayerNormForward(x, gamma, beta, rows, hidden_, kLayerNormEpsilon, y, stats,
                                stats + rows);
    } else {
      backend_.RmsNormForward(x, gamma, rows, hidden_, kRmsNormEpsilon, y, stats + rows);
    }
  }
  void NormBackward(const float* dy, const float* x, const float* gamma, const float* stats,
                    int64_t rows, float* dx, float* dgamma, float* dbeta) {
    if (model_.norm == workload::NormKind::kLayerNorm) {
      backend_.LayerNormBackward(dy, x, gamma, stats, stats + rows, rows, hidden_, dx, dgamma,
                                 dbeta);
    } else {
      backend_.RmsNormBackward(dy, x, gamma, stats + rows, rows, hidden_, dx, dgamma);
    }
  }
  bool has_norm_bias() const { return model_.norm == workload::NormKind::kLayerNorm; }

  // Gradients of the parameters every tp rank holds whole (split_dim −1).
  // Under SP each rank sees only its sequence shard, so one backward's
  // contributions are summed in a zeroed scratch, all-reduced over tp and
  // added to the gradients by Finish(); without SP the ranks' contributions
  // are equal and go straight into the gradients.
  class ReplicaGradients {
   public:
    ReplicaGradients(UnitBase& unit, float* grads, int mb) : unit_(unit), grads_(grads), mb_(mb) {
      if (!unit.sp_) return;
      int64_t total = 0;
      for (const ParameterShard& shard : unit.shards_) {
        if (shard.split_dim < 0) total += shard.size;
      }
      scratch_ = DeviceArray<float>(unit.backend_, total);
      if (total > 0) unit.backend_.Fill(scratch_.data(), total, 0.0f);
    }
    // Where parameter i's gradient contributions go.
    float* operator()(int i) {
      const ParameterShard& shard = unit_.shards_[static_cast<size_t>(i)];
      ORRERY_CHECK_LT(shard.split_dim, 0) << shard.name << " is not replicated";
      if (!unit_.sp_) return grads_ + shard.offset;
      int64_t offset = 0;
      for (const ParameterShard& s : unit_.shards_) {
        if (&s == &shard) break;
        if (s.split_dim < 0) offset += s.size;
      }
      return scratch_.data() + offset;
    }
    void Finish() {
      if (!unit_.sp_ || scratch_.empty()) return;
      unit_.TpAllReduce(scratch_.data(), scratch_.size(), ReduceOp::kSum, ExecutionPhase::kBackward,
                        mb_);
      int64_t offset = 0;
      for (const ParameterShard& shard : unit_.shards_) {
        if (shard.split_dim >= 0) continue;
        unit_.backend_.Axpy(1.0f, scratch_.data() + offset, grads_ + shard.offset, shard.size);
        offset += shard.size;
      }
      scratch_.Reset();
    }

   private:
    UnitBase& unit_;
    float* grads_;
    int mb_;
    DeviceArray<float> scratch_;
  };

  const workload::ModelSpec& model_;
  Backend& backend_;
  Communicator& tp_;
  OpRecorder* recorder_;
  int tp_size_;
  int tp_rank_;
  bool sp_;
  int64_t hidden_;

 private:
  UnitKind kind_;
  std::string name_;
  std::optional<int> layer_;
  std::vector<ParameterShard> shards_;
  int64_t parameter_count_ = 0;
};

// ---- Embedding ---------------------------------------------------------------

class Embedding : public UnitBase {
 public:
  explicit Embedding(const UnitContext& context)
      : UnitBase(context, UnitKind::kEmbedding, "embedding", std::nullopt) {
    const int64_t vocab = model_.vocab_size;
    vocab_local_ = vocab / tp_size_;
    vocab_start_ = tp_rank_ * vocab_local_;
    words_ =
        AddParameter("embedding.word_embeddings.weight", {vocab, hidden_}, 0, {TpPiece(vocab)});
    if (learned_positions()) {
      positions_ = AddParameter("embedding.position_embeddings.weight",
                                {model_.max_sequence_length, hidden_}, -1);
    }
  }

  void Forward(const MicroBatch& mb, const float* params, const float* input,
               float* output) override {
    (void)input;
    const Rows rows = RowsOf(mb);
    const ExecutionPhase phase = ExecutionPhase::kForward;
    DeviceArray<float> partial;
    float* lookup = output;
    if (sp_) {
      partial = DeviceArray<float>(backend_, rows.full * hidden_);
      lookup = partial.data();
    }
    {
      auto scope = Compute("embed.tokens", phase, mb.index);
      backend_.EmbeddingForward(mb.tokens, rows.full, Param(params, words_), vocab_start_,
                                vocab_local_, hidden_, lookup);
    }
    if (sp_) {
      TpReduceScatter(partial.data(), output, rows.local * hidden_, phase, mb.index);
    } else {
      TpAllReduce(output, rows.full * hidden_, ReduceOp::kSum, phase, mb.index);
    }
    partial.Reset();
    if (learned_positions()) {
      auto scope = Compute("embed.positions", phase, mb.index);
      DeviceArray<float> pos(backend_, rows.local * hidden_);
      backend_.EmbeddingForward(LocalPositions(mb, rows), rows.local, Param(params, positions_), 0,
                                model_.max_sequence_length, hidden_, pos.data());
      backend_.Add(output, pos.data(), output, rows.local * hidden_);
    }
  }

  void Backward(const MicroBatch& mb, const float* params, float* grads, const float* grad_output,
                float* grad_input) override {
    (void)params;
    (void)grad_input;
    const Rows rows = RowsOf(mb);
    const ExecutionPhase phase = ExecutionPhase::kBackward;
    ReplicaGradients replicas(*this, grads, mb.index);
    if (learned_positions()) {
      auto scope = Compute("embed.positions", phase, mb.index);
      backend_.EmbeddingBackward(LocalPositions(mb, rows), rows.local, grad_output, 0,
                                 model_.max_sequence_length, hidden_, replicas(positions_));
    }
    DeviceArray<float> gathered;
    const float* dout = GatherSequence(grad_output, rows, gathered, phase, mb.index);
    {
      auto scope = Compute("embed.tokens", phase, mb.index);
      backend_.EmbeddingBackward(mb.tokens, rows.full, dout, vocab_start_, vocab_local_, hidden_,
                                 Grad(grads, words_));
    }
    gathered.Reset();
    replicas.Finish();
  }

 private:
  bool learned_positions() const {
    return model_.position_embedding == workload::PositionEmbedding::kLearned;
  }
  // Positions of this rank's rows (a contiguous block under SP).
  const int32_t* LocalPositions(const MicroBatch& mb, const Rows& rows) const {
    return mb.positions + (sp_ ? tp_rank_ * rows.local : 0);
  }

  int64_t vocab_local_ = 0;
  int64_t vocab_start_ = 0;
  int words_ = -1;
  int positions_ = -1;
};

// ---- Transformer block -------------------------------------------------------

// What a block's forward keeps for its backward, per micro-batch.
struct BlockState {
  DeviceArray<float> input;        // x, local rows × h
  DeviceArray<float> norm1_out;    // local rows × h
  DeviceArray<float> norm1_stats;  // 2 · local rows
  DeviceArray<float> qkv;          // rows × qkv columns, q and k rotated
  DeviceArray<float> probs;        // attention probabilities (not kept by kSelective)
  DeviceArray<float> context;      // rows × local q heads · d
  DeviceArray<float> mid;          // x after attention's residual add, local rows × h
  DeviceArray<float> norm2_out;
  DeviceArray<float> norm2_stats;
  DeviceArray<float> fc1_out;  // rows × fc1 columns (before the activation)
  DeviceArray<float> act_out;  // rows × local FFN
};

class Block : public UnitBase {
 public:
  Block(const UnitContext& context, int layer, workload::Recompute recompute)
      : UnitBase(context, UnitKind::kBlock, "layers." + std::to_string(layer), layer),
        recompute_(recompute) {
    const int64_t d = model_.head_dim;
    const int64_t nq = model_.num_attention_heads;
    const int64_t nkv = model_.num_kv_heads;
    const int64_t ffn = model_.ffn_hidden_size;
    heads_ = nq / tp_size_;
    kv_heads_ = nkv / tp_size_;
    qkv_cols_ = (heads_ + 2 * kv_heads_) * d;
    ffn_local_ = ffn / tp_size_;
    gated_ = model_.activation == workload::Activation::kSwiGlu;
    fc1_cols_ = gated_ ? 2 * ffn_local_ : ffn_local_;
    const bool bias = model_.linear_bias;
    const std::string p = name() + ".";

    // The fused QKV's columns are [q heads | k heads | v heads]; a rank holds
    // its heads of each.
    const std::vector<std::pair<int64_t, int64_t>> qkv_pieces = {
        TpPiece(nq * d), TpPiece(nkv * d, nq * d), TpPiece(nkv * d, (nq + nkv) * d)};
    // SwiGLU's fc1 columns are [gate | up]; a rank holds its columns of each,
    // so its local output is [gate_local | up_local] as SwiGluForward reads it.
    std::vector<std::pair<int64_t, int64_t>> fc1_pieces = {TpPiece(ffn)};
    if (gated_) fc1_pieces.push_back(TpPiece(ffn, ffn));
    const int64_t fc1_full = gated_ ? 2 * ffn : ffn;

    norm1_w_ = AddParameter(p + "attn.norm.weight", {hidden_}, -1);
    if (has_norm_bias()) norm1_b_ = AddParameter(p + "attn.norm.bias", {hidden_}, -1);
    qkv_w_ = AddParameter(p + "attn.qkv.weight", {hidden_, (nq + 2 * nkv) * d}, 1, qkv_pieces);
    if (bias) qkv_b_ = AddParameter(p + "attn.qkv.bias", {(nq + 2 * nkv) * d}, 0, qkv_pieces);
    proj_w_ = AddParameter(p + "attn.proj.weight", {nq * d, hidden_}, 0, {TpPiece(nq * d)});
    if (bias) proj_b_ = AddParameter(p + "attn.proj.bias", {hidden_}, -1);
    norm2_w_ = AddParameter(p + "mlp.norm.weight", {hidden_}, -1);
    if (has_norm_bias()) norm2_b_ = AddParameter(p + "mlp.norm.bias", {hidden_}, -1);
    fc1_w_ = AddParameter(p + "mlp.fc1.weight", {hidden_, fc1_full}, 1, fc1_pieces);
    if (bias) fc1_b_ = AddParameter(p + "mlp.fc1.bias", {fc1_full}, 0, fc1_pieces);
    fc2_w_ = AddParameter(p + "mlp.fc2.weight", {ffn, hidden_}, 0, {TpPiece(ffn)});
    if (bias) fc2_b_ = AddParameter(p + "mlp.fc2.bias", {hidden_}, -1);
  }

  void Forward(const MicroBatch& mb, const float* params, const float* input,
               float* output) override {
    const Rows rows = RowsOf(mb);
    BlockState state;
    state.input = DeviceArray<float>(backend_, rows.local * hidden_);
    backend_.CopyOnDevice(input, state.input.data(), state.input.bytes());
    RunForward(mb, params, output, ExecutionPhase::kForward,
               /*keep_probs=*/recompute_ == workload::Recompute::kNone, state);
    if (recompute_ == workload::Recompute::kFull) {
      BlockState kept;
      kept.input = std::move(state.input);
      state = std::move(kept);
    }
    ORRERY_CHECK(!saved_.contains(mb.index))
        << name() << ": micro-batch " << mb.index << " forwarded twice without a backward";
    saved_.emplace(mb.index, std::move(state));
  }

  void Backward(const MicroBatch& mb, const float* params, float* grads, const float* grad_output,
                float* grad_input) override {
    auto it = saved_.find(mb.index);
    ORRERY_CHECK(it != saved_.end())
        << name() << ": backward of micro-batch " << mb.index << " without its forward";
    BlockState st = std::move(it->second);
    saved_.erase(it);

    const Rows rows = RowsOf(mb);
    const int m = mb.index;
    const ExecutionPhase phase = ExecutionPhase::kBackward;
    const int64_t h = hidden_;
    const int64_t q_cols = heads_ * model_.head_dim;
    const AttentionShape shape = Shape(mb);

    if (recompute_ == workload::Recompute::kFull) {
      DeviceArray<float> discarded(backend_, rows.local * h);
      RunForward(mb, params, discarded.data(), ExecutionPhase::kRecompute, /*keep_probs=*/true, st);
    } else if (recompute_ == workload::Recompute::kSelective) {
      auto scope = Compute("attn.core", ExecutionPhase::kRecompute, m, CoreGemm(mb));
      st.probs = DeviceArray<float>(backend_, shape.probs_elements());
      DeviceArray<float> discarded(backend_, rows.full * q_cols);
      const float* qkv = st.qkv.data();
      backend_.AttentionForward(shape, qkv, qkv + q_cols,
                                qkv + q_cols + kv_heads_ * model_.head_dim, discarded.data(),
                                st.probs.data());
    }

    ReplicaGradients replicas(*this, grads, m);

    // MLP: out = mid + fc2(act(fc1(norm2(mid)))) + b2.
    if (fc2_b_ >= 0) {
      auto scope = Compute("mlp.dropout_add", phase, m);
      backend_.BiasGradient(grad_output, rows.local, h, replicas(fc2_b_));
    }
    DeviceArray<float> d_act(backend_, rows.full * ffn_local_);
    {
      DeviceArray<float> gathered;
      const float* dy = GatherSequence(grad_output, rows, gathered, phase, m);
      auto scope = Compute("mlp.fc2", phase, m, GemmShape{rows.full, h, ffn_local_});
      backend_.Gemm(true, false, ffn_local_, h, rows.full, 1.0f, st.act_out.data(), ffn_local_, dy,
                    h, 1.0f, Grad(grads, fc2_w_), h);
      backend_.Gemm(false, true, rows.full, ffn_local_, h, 1.0f, dy, h, Param(params, fc2_w_), h,
                    0.0f, d_act.data(), ffn_local_);
    }
    st.act_out.Reset();
    DeviceArray<float> d_fc1(backend_, rows.full * fc1_cols_);
    {
      auto scope = Compute("mlp.act", phase, m);
      if (gated_) {
        backend_.SwiGluBackward(st.fc1_out.data(), d_act.data(), rows.full, ffn_local_,
                                d_fc1.data());
      } else {
        backend_.GeluBackward(st.fc1_out.data(), d_act.data(), d_fc1.data(),
                              rows.full * ffn_local_);
      }
    }
    d_act.Reset();
    st.fc1_out.Reset();
    DeviceArray<float> d_ln2_partial(backend_, rows.full * h);
    {
      DeviceArray<float> gathered;
      const float* ln2 = GatherSequence(st.norm2_out.data(), rows, gathered, phase, m);
      auto scope = Compute("mlp.fc1", phase, m, GemmShape{rows.full, fc1_cols_, h});
      if (fc1_b_ >= 0) {
        backend_.BiasGradient(d_fc1.data(), rows.full, fc1_cols_, Grad(grads, fc1_b_));
      }
      backend_.Gemm(true, false, h, fc1_cols_, rows.full, 1.0f, ln2, h, d_fc1.data(), fc1_cols_,
                    1.0f, Grad(grads, fc1_w_), fc1_cols_);
      backend_.Gemm(false, true, rows.full, h, fc1_cols_, 1.0f, d_fc1.data(), fc1_cols_,
                    Param(params, fc1_w_), fc1_cols_, 0.0f, d_ln2_partial.data(), h);
    }
    d_fc1.Reset();
    st.norm2_out.Reset();
    DeviceArray<float> scattered;
    const float* d_ln2 = ReduceSequence(d_ln2_partial.data(), rows, scattered, phase, m);
    DeviceArray<float> d_mid(backend_, rows.local * h);
    {
      auto scope = Compute("mlp.norm", phase, m);
      NormBackward(d_ln2, st.mid.data(), Param(params, norm2_w_), st.norm2_stats.data(), rows.local,
                   d_mid.data(), replicas(norm2_w_), norm2_b_ >= 0 ? replicas(norm2_b_) : nullptr);
      backend_.Add(d_mid.data(), grad_output, d_mid.data(), rows.local * h);
    }
    scattered.Reset();
    d_ln2_partial.Reset();
    st.mid.Reset();
    st.norm2_stats.Reset();

    // Attention: mid = x + proj(attn(rope(qkv(norm1(x))))) + b_proj.
    if (proj_b_ >= 0) {
      auto scope = Compute("attn.dropout_add", phase, m);
      backend_.BiasGradient(d_mid.data(), rows.local, h, replicas(proj_b_));
    }
    DeviceArray<float> d_context(backend_, rows.full * q_cols);
    {
      DeviceArray<float> gathered;
      const float* dy = GatherSequence(d_mid.data(), rows, gathered, phase, m);
      auto scope = Compute("attn.proj", phase, m, GemmShape{rows.full, h, q_cols});
      backend_.Gemm(true, false, q_cols, h, rows.full, 1.0f, st.context.data(), q_cols, dy, h, 1.0f,
                    Grad(grads, proj_w_), h);
      backend_.Gemm(false, true, rows.full, q_cols, h, 1.0f, dy, h, Param(params, proj_w_), h, 0.0f,
                    d_context.data(), q_cols);
    }
    st.context.Reset();
    DeviceArray<float> d_qkv(backend_, rows.full * qkv_cols_);
    {
      auto scope = Compute("attn.core", phase, m, CoreGemm(mb));
      const float* qkv = st.qkv.data();
      const int64_t kv_cols = kv_heads_ * model_.head_dim;
      float* dq = d_qkv.data();
      backend_.AttentionBackward(shape, qkv, qkv + q_cols, qkv + q_cols + kv_cols, st.probs.data(),
                                 d_context.data(), dq, dq + q_cols, dq + q_cols + kv_cols);
    }
    d_context.Reset();
    st.probs.Reset();
    st.qkv.Reset();
    DeviceArray<float> d_ln1_partial(backend_, rows.full * h);
    {
      DeviceArray<float> gathered;
      const float* ln1 = GatherSequence(st.norm1_out.data(), rows, gathered, phase, m);
      auto scope = Compute("attn.qkv", phase, m, GemmShape{rows.full, qkv_cols_, h});
      if (rotary()) {
        backend_.RopeBackward(d_qkv.data(), mb.sequence, mb.batch, heads_, model_.head_dim,
                              qkv_cols_, kRopeTheta);
        backend_.RopeBackward(d_qkv.data() + q_cols, mb.sequence, mb.batch, kv_heads_,
                              model_.head_dim, qkv_cols_, kRopeTheta);
      }
      if (qkv_b_ >= 0) {
        backend_.BiasGradient(d_qkv.data(), rows.full, qkv_cols_, Grad(grads, qkv_b_));
      }
      backend_.Gemm(true, false, h, qkv_cols_, rows.full, 1.0f, ln1, h, d_qkv.data(), qkv_cols_,
                    1.0f, Grad(grads, qkv_w_), qkv_cols_);
      backend_.Gemm(false, true, rows.full, h, qkv_cols_, 1.0f, d_qkv.data(), qkv_cols_,
                    Param(params, qkv_w_), qkv_cols_, 0.0f, d_ln1_partial.data(), h);
    }
    d_qkv.Reset();
    st.norm1_out.Reset();
    const float* d_ln1 = ReduceSequence(d_ln1_partial.data(), rows, scattered, phase, m);
    {
      auto scope = Compute("attn.norm", phase, m);
      NormBackward(d_ln1, st.input.data(), Param(params, norm1_w_), st.norm1_stats.data(),
                   rows.local, grad_input, replicas(norm1_w_),
                   norm1_b_ >= 0 ? replicas(norm1_b_) : nullptr);
      backend_.Add(grad_input, d_mid.data(), grad_input, rows.local * h);
    }
    scattered.Reset();
    d_ln1_partial.Reset();
    replicas.Finish();
  }

 private:
  bool rotary() const { return model_.position_embedding == workload::PositionEmbedding::kRotary; }
  AttentionShape Shape(const MicroBatch& mb) const {
    AttentionShape shape;
    shape.batch = mb.batch;
    shape.sequence = mb.sequence;
    shape.heads = heads_;
    shape.kv_heads = kv_heads_;
    shape.head_dim = model_.head_dim;
    shape.row_stride = qkv_cols_;
    return shape;
  }
  // The cost model's shape of the attention core (its QKᵀ, per sample and head).
  GemmShape CoreGemm(const MicroBatch& mb) const {
    return GemmShape{mb.sequence, mb.sequence, model_.head_dim, mb.batch * heads_};
  }

  // The block's forward from state.input into `output`, filling the state.
  void RunForward(const MicroBatch& mb, const float* params, float* output, ExecutionPhase phase,
                  bool keep_probs, BlockState& st) {
    const Rows rows = RowsOf(mb);
    const int m = mb.index;
    const int64_t h = hidden_;
    const int64_t d = model_.head_dim;
    const int64_t q_cols = heads_ * d;
    const int64_t kv_cols = kv_heads_ * d;

    st.norm1_out = DeviceArray<float>(backend_, rows.local * h);
    st.norm1_stats = DeviceArray<float>(backend_, 2 * rows.local);
    {
      auto scope = Compute("attn.norm", phase, m);
      NormForward(st.input.data(), Param(params, norm1_w_),
                  norm1_b_ >= 0 ? Param(params, norm1_b_) : nullptr, rows.local,
                  st.norm1_out.data(), st.norm1_stats.data());
    }
    st.qkv = DeviceArray<float>(backend_, rows.full * qkv_cols_);
    {
      DeviceArray<float> gathered;
      const float* ln1 = GatherSequence(st.norm1_out.data(), rows, gathered, phase, m);
      // RoPE is recorded as part of the QKV projection (an epilogue on its
      // output; the cost model has no operator for it).
      auto scope = Compute("attn.qkv", phase, m, GemmShape{rows.full, qkv_cols_, h});
      backend_.Gemm(false, false, rows.full, qkv_cols_, h, 1.0f, ln1, h, Param(params, qkv_w_),
                    qkv_cols_, 0.0f, st.qkv.data(), qkv_cols_);
      if (qkv_b_ >= 0) backend_.BiasAdd(st.qkv.data(), Param(params, qkv_b_), rows.full, qkv_cols_);
      if (rotary()) {
        backend_.RopeForward(st.qkv.data(), mb.sequence, mb.batch, heads_, d, qkv_cols_,
                             kRopeTheta);
        backend_.RopeForward(st.qkv.data() + q_cols, mb.sequence, mb.batch, kv_heads_, d, qkv_cols_,
                             kRopeTheta);
      }
    }
    const AttentionShape shape = Shape(mb);
    st.context = DeviceArray<float>(backend_, rows.full * q_cols);
    st.probs = DeviceArray<float>(backend_, shape.probs_elements());
    {
      auto scope = Compute("attn.core", phase, m, CoreGemm(mb));
      const float* qkv = st.qkv.data();
      backend_.AttentionForward(shape, qkv, qkv + q_cols, qkv + q_cols + kv_cols, st.context.data(),
                                st.probs.data());
    }
    if (!keep_probs) st.probs.Reset();
    st.mid = DeviceArray<float>(backend_, rows.local * h);
    {
      DeviceArray<float> partial(backend_, rows.full * h);
      {
        auto scope = Compute("attn.proj", phase, m, GemmShape{rows.full, h, q_cols});
        backend_.Gemm(false, false, rows.full, h, q_cols, 1.0f, st.context.data(), q_cols,
                      Param(params, proj_w_), h, 0.0f, partial.data(), h);
      }
      DeviceArray<float> scattered;
      float* y = ReduceSequence(partial.data(), rows, scattered, phase, m);
      // The row-parallel bias is added after the reduction, with the
      // residual (Megatron-LM's bias_dropout_add, without dropout).
      auto scope = Compute("attn.dropout_add", phase, m);
      if (proj_b_ >= 0) backend_.BiasAdd(y, Param(params, proj_b_), rows.local, h);
      backend_.Add(st.input.data(), y, st.mid.data(), rows.local * h);
    }

    st.norm2_out = DeviceArray<float>(backend_, rows.local * h);
    st.norm2_stats = DeviceArray<float>(backend_, 2 * rows.local);
    {
      auto scope = Compute("mlp.norm", phase, m);
      NormForward(st.mid.data(), Param(params, norm2_w_),
                  norm2_b_ >= 0 ? Param(params, norm2_b_) : nullptr, rows.local,
                  st.norm2_out.data(), st.norm2_stats.data());
    }
    st.fc1_out = DeviceArray<float>(backend_, rows.full * fc1_cols_);
    {
      DeviceArray<float> gathered;
      const float* ln2 = GatherSequence(st.norm2_out.data(), rows, gathered, phase, m);
      auto scope = Compute("mlp.fc1", phase, m, GemmShape{rows.full, fc1_cols_, h});
      backend_.Gemm(false, false, rows.full, fc1_cols_, h, 1.0f, ln2, h, Param(params, fc1_w_),
                    fc1_cols_, 0.0f, st.fc1_out.data(), fc1_cols_);
      if (fc1_b_ >= 0)
        backend_.BiasAdd(st.fc1_out.data(), Param(params, fc1_b_), rows.full, fc1_cols_);
    }
    st.act_out = DeviceArray<float>(backend_, rows.full * ffn_local_);
    {
      auto scope = Compute("mlp.act", phase, m);
      if (gated_) {
        backend_.SwiGluForward(st.fc1_out.data(), rows.full, ffn_local_, st.act_out.data());
      } else {
        backend_.GeluForward(st.fc1_out.data(), st.act_out.data(), rows.full * ffn_local_);
      }
    }
    {
      DeviceArray<float> partial(backend_, rows.full * h);
      {
        auto scope = Compute("mlp.fc2", phase, m, GemmShape{rows.full, h, ffn_local_});
        backend_.Gemm(false, false, rows.full, h, ffn_local_, 1.0f, st.act_out.data(), ffn_local_,
                      Param(params, fc2_w_), h, 0.0f, partial.data(), h);
      }
      DeviceArray<float> scattered;
      float* y = ReduceSequence(partial.data(), rows, scattered, phase, m);
      auto scope = Compute("mlp.dropout_add", phase, m);
      if (fc2_b_ >= 0) backend_.BiasAdd(y, Param(params, fc2_b_), rows.local, h);
      backend_.Add(st.mid.data(), y, output, rows.local * h);
    }
  }

  workload::Recompute recompute_;
  int64_t heads_ = 0;     // local query heads
  int64_t kv_heads_ = 0;  // local key/value heads
  int64_t qkv_cols_ = 0;
  int64_t ffn_local_ = 0;
  int64_t fc1_cols_ = 0;
  bool gated_ = false;
  int norm1_w_ = -1, norm1_b_ = -1, qkv_w_ = -1, qkv_b_ = -1, proj_w_ = -1, proj_b_ = -1;
  int norm2_w_ = -1, norm2_b_ = -1, fc1_w_ = -1, fc1_b_ = -1, fc2_w_ = -1, fc2_b_ = -1;
  std::map<int, BlockState> saved_;
};

// ---- Head ----------------------------------------------------------------------

struct HeadState {
  DeviceArray<float> input;       // local rows × h
  DeviceArray<float> norm_out;    // local rows × h
  DeviceArray<float> norm_stats;  // 2 · local rows
  DeviceArray<float> logits;      // rows × local vocabulary
  DeviceArray<float> row_max;     // rows
  DeviceArray<float> sums;        // [sum_exp | target_logit], 2 · rows
};

class Head : public UnitBase {
 public:
  explicit Head(const UnitContext& context)
      : UnitBase(context, UnitKind::kHead, "head", std::nullopt) {
    const int64_t vocab = model_.vocab_size;
    vocab_local_ = vocab / tp_size_;
    vocab_start_ = tp_rank_ * vocab_local_;
    norm_w_ = AddParameter("head.norm.weight", {hidden_}, -1);
    if (has_norm_bias()) norm_b_ = AddParameter("head.norm.bias", {hidden_}, -1);
    // Tied: the head's own copy of the word embeddings (same name, same
    // initial values); the runtime sums the two copies' gradients.
    output_ = AddParameter(
        model_.tied_embeddings ? "embedding.word_embeddings.weight" : "head.output.weight",
        {vocab, hidden_}, 0, {TpPiece(vocab)});
  }

  void Forward(const MicroBatch& mb, const float* params, const float* input,
               float* output) override {
    (void)output;
    const Rows rows = RowsOf(mb);
    const int m = mb.index;
    const ExecutionPhase phase = ExecutionPhase::kForward;
    const int64_t h = hidden_;
    HeadState st;
    st.input = DeviceArray<float>(backend_, rows.local * h);
    backend_.CopyOnDevice(input, st.input.data(), st.input.bytes());
    st.norm_out = DeviceArray<float>(backend_, rows.local * h);
    st.norm_stats = DeviceArray<float>(backend_, 2 * rows.local);
    {
      auto scope = Compute("head.norm", phase, m);
      NormForward(st.input.data(), Param(params, norm_w_),
                  norm_b_ >= 0 ? Param(params, norm_b_) : nullptr, rows.local, st.norm_out.data(),
                  st.norm_stats.data());
    }
    st.logits = DeviceArray<float>(backend_, rows.full * vocab_local_);
    {
      DeviceArray<float> gathered;
      const float* x = GatherSequence(st.norm_out.data(), rows, gathered, phase, m);
      auto scope = Compute("head.logits", phase, m, GemmShape{rows.full, vocab_local_, h});
      backend_.Gemm(false, true, rows.full, vocab_local_, h, 1.0f, x, h, Param(params, output_), h,
                    0.0f, st.logits.data(), vocab_local_);
    }
    // Vocabulary-parallel cross-entropy: max, then the sums, all-reduced over
    // tp between the steps (recorded as up to three head.loss ops).
    st.row_max = DeviceArray<float>(backend_, rows.full);
    st.sums = DeviceArray<float>(backend_, 2 * rows.full);
    float* sum_exp = st.sums.data();
    float* target_logit = st.sums.data() + rows.full;
    {
      auto scope = Compute("head.loss", phase, m);
      backend_.LogitsRowMax(st.logits.data(), rows.full, vocab_local_, st.row_max.data());
    }
    TpAllReduce(st.row_max.data(), rows.full, ReduceOp::kMax, phase, m);
    {
      auto scope = Compute("head.loss", phase, m);
      backend_.CrossEntropyPartials(st.logits.data(), rows.full, vocab_local_, st.row_max.data(),
                                    mb.targets, vocab_start_, sum_exp, target_logit);
    }
    TpAllReduce(st.sums.data(), 2 * rows.full, ReduceOp::kSum, phase, m);
    {
      auto scope = Compute("head.loss", phase, m);
      DeviceArray<float> loss(backend_, rows.full);
      backend_.CrossEntropyLoss(st.row_max.data(), sum_exp, target_logit, rows.full, loss.data());
      loss_sums_[m] = backend_.Sum(loss.data(), rows.full);
    }
    ORRERY_CHECK(!saved_.contains(m))
        << name() << ": micro-batch " << m << " forwarded twice without a backward";
    saved_.emplace(m, std::move(st));
  }

  void Backward(const MicroBatch& mb, const float* params, float* grads, const float* grad_output,
                float* grad_input) override {
    (void)grad_output;
    auto it = saved_.find(mb.index);
    ORRERY_CHECK(it != saved_.end())
        << name() << ": backward of micro-batch " << mb.index << " without its forward";
    HeadState st = std::move(it->second);
    saved_.erase(it);
    const Rows rows = RowsOf(mb);
    const int m = mb.index;
    const ExecutionPhase phase = ExecutionPhase::kBackward;
    const int64_t h = hidden_;
    ReplicaGradients replicas(*this, grads, m);

    DeviceArray<float> d_logits(backend_, rows.full * vocab_local_);
    {
      auto scope = Compute("head.loss", phase, m);
      backend_.CrossEntropyBackward(st.logits.data(), rows.full, vocab_local_, st.row_max.data(),
                                    st.sums.data(), mb.targets, vocab_start_, mb.loss_scale,
                                    d_logits.data());
    }
    st.logits.Reset();
    DeviceArray<float> d_norm_partial(backend_, rows.full * h);
    {
      DeviceArray<float> gathered;
      const float* x = GatherSequence(st.norm_out.data(), rows, gathered, phase, m);
      auto scope = Compute("head.logits", phase, m, GemmShape{rows.full, vocab_local_, h});
      backend_.Gemm(true, false, vocab_local_, h, rows.full, 1.0f, d_logits.data(), vocab_local_, x,
                    h, 1.0f, Grad(grads, output_), h);
      backend_.Gemm(false, false, rows.full, h, vocab_local_, 1.0f, d_logits.data(), vocab_local_,
                    Param(params, output_), h, 0.0f, d_norm_partial.data(), h);
    }
    d_logits.Reset();
    st.norm_out.Reset();
    DeviceArray<float> scattered;
    const float* d_norm = ReduceSequence(d_norm_partial.data(), rows, scattered, phase, m);
    {
      auto scope = Compute("head.norm", phase, m);
      NormBackward(d_norm, st.input.data(), Param(params, norm_w_), st.norm_stats.data(),
                   rows.local, grad_input, replicas(norm_w_),
                   norm_b_ >= 0 ? replicas(norm_b_) : nullptr);
    }
    scattered.Reset();
    d_norm_partial.Reset();
    replicas.Finish();
  }

  double LossSum(int micro_batch) const override {
    auto it = loss_sums_.find(micro_batch);
    ORRERY_CHECK(it != loss_sums_.end())
        << "no loss for micro-batch " << micro_batch << ": its forward did not run";
    return it->second;
  }

 private:
  int64_t vocab_local_ = 0;
  int64_t vocab_start_ = 0;
  int norm_w_ = -1;
  int norm_b_ = -1;
  int output_ = -1;
  std::map<int, HeadState> saved_;
  std::map<int, double> loss_sums_;
};

std::string Quoted(const workload::ModelSpec& model) { return "model '" + model.name + "'"; }

Status NotDivisible(const workload::ModelSpec& model, std::string_view field, int64_t value, int tp,
                    std::string_view why = "") {
  std::string message = Quoted(model) + ": field '" + std::string(field) +
                        "': " + std::to_string(value) + " is not divisible by tp " +
                        std::to_string(tp);
  if (!why.empty()) message += " (" + std::string(why) + ")";
  return InvalidArgumentError(std::move(message));
}

}  // namespace

std::vector<int64_t> ParameterShard::LocalShape() const {
  std::vector<int64_t> shape = full_shape;
  if (split_dim >= 0) {
    ORRERY_CHECK_LT(static_cast<size_t>(split_dim), shape.size()) << name;
    int64_t extent = 0;
    for (const auto& [begin, end] : pieces) extent += end - begin;
    shape[static_cast<size_t>(split_dim)] = extent;
  }
  return shape;
}

float InitialParameterValue(uint64_t seed, const std::string& name,
                            const std::vector<int64_t>& full_shape, int num_layers, int64_t index) {
  ORRERY_CHECK(index >= 0 && index < Elements(full_shape))
      << name << ": element " << index << " out of range";
  if (EndsWith(name, ".bias")) return 0.0f;
  if (EndsWith(name, "norm.weight")) return 1.0f;
  double std = kInitStd;
  if (EndsWith(name, "attn.proj.weight") || EndsWith(name, "mlp.fc2.weight")) {
    // Megatron-LM's scaled_init_method_normal: σ / sqrt(2·num_layers).
    std /= std::sqrt(2.0 * std::max(num_layers, 1));
  }
  // Two uniforms from a counter-based stream keyed by (seed, name), then
  // Box–Muller (Box & Muller 1958).
  const uint64_t key = SplitMix64(seed ^ Fnv1a(name));
  const uint64_t counter = 2 * static_cast<uint64_t>(index);
  const double u1 = OpenUniform(SplitMix64(key + counter * kGolden));
  const double u2 = OpenUniform(SplitMix64(key + (counter + 1) * kGolden));
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  return static_cast<float>(std * z);
}

int64_t ActivationRows(int64_t sequence, int64_t batch, int tp, bool sequence_parallel) {
  ORRERY_CHECK_GE(tp, 1);
  return sequence_parallel ? sequence * batch / tp : sequence * batch;
}

Status CheckExecutableModel(const workload::ModelSpec& model, int tp, bool sequence_parallel,
                            int64_t batch, int64_t sequence) {
  const std::string who = Quoted(model);
  if (model.family != workload::ModelFamily::kGpt &&
      model.family != workload::ModelFamily::kLlama) {
    return UnimplementedError(who +
                              ": field 'family': the executor runs the gpt and llama "
                              "families, not '" +
                              std::string(workload::ModelFamilyName(model.family)) + "'");
  }
  if (model.architecture != workload::Architecture::kDecoderOnly) {
    return UnimplementedError(who +
                              ": field 'architecture': the executor runs decoder-only "
                              "models, not '" +
                              std::string(workload::ArchitectureName(model.architecture)) + "'");
  }
  if (model.is_moe()) {
    return UnimplementedError(who + ": field 'num_experts': the executor runs dense models, not " +
                              std::to_string(model.num_experts) + " experts");
  }
  if (model.activation != workload::Activation::kGelu &&
      model.activation != workload::Activation::kSwiGlu) {
    return UnimplementedError(who +
                              ": field 'activation': the executor runs gelu and swiglu, "
                              "not '" +
                              std::string(workload::ActivationName(model.activation)) + "'");
  }
  if (model.position_embedding != workload::PositionEmbedding::kLearned &&
      model.position_embedding != workload::PositionEmbedding::kRotary) {
    return UnimplementedError(
        who + ": field 'position_embedding': the executor runs learned and rotary, not '" +
        std::string(workload::PositionEmbeddingName(model.position_embedding)) + "'");
  }
  ORRERY_RETURN_IF_ERROR(workload::ValidateModelSpec(model));
  if (tp < 1) {
    return InvalidArgumentError(who + ": tp must be >= 1, got " + std::to_string(tp));
  }
  if (batch < 1 || sequence < 1) {
    return InvalidArgumentError(who + ": micro-batches need >= 1 sample of >= 1 token, got " +
                                std::to_string(batch) + " × " + std::to_string(sequence));
  }
  if (model.num_attention_heads % tp != 0) {
    return NotDivisible(model, "num_attention_heads", model.num_attention_heads, tp);
  }
  if (model.num_kv_heads % tp != 0) {
    return NotDivisible(model, "num_kv_heads", model.num_kv_heads, tp,
                        "the executor does not replicate key/value heads");
  }
  if (model.ffn_hidden_size % tp != 0) {
    return NotDivisible(model, "ffn_hidden_size", model.ffn_hidden_size, tp);
  }
  if (model.vocab_size % tp != 0) {
    return NotDivisible(model, "vocab_size", model.vocab_size, tp,
                        "the executor does not pad the vocabulary");
  }
  if (sequence_parallel && (sequence * batch) % tp != 0) {
    return InvalidArgumentError(who + ": sequence parallelism splits the " +
                                std::to_string(sequence * batch) + " tokens of a micro-batch (" +
                                std::to_string(sequence) + " × " + std::to_string(batch) +
                                "), not divisible by tp " + std::to_string(tp));
  }
  if (sequence > model.max_sequence_length) {
    return InvalidArgumentError(who + ": field 'max_sequence_length': sequence " +
                                std::to_string(sequence) + " exceeds the model's maximum " +
                                std::to_string(model.max_sequence_length));
  }
  if (model.position_embedding == workload::PositionEmbedding::kRotary && model.head_dim % 2 != 0) {
    return InvalidArgumentError(who +
                                ": field 'head_dim': rotary embeddings need an even "
                                "head_dim, got " +
                                std::to_string(model.head_dim));
  }
  return Status::Ok();
}

std::unique_ptr<ModelUnit> MakeEmbedding(const UnitContext& context) {
  return std::make_unique<Embedding>(context);
}

std::unique_ptr<ModelUnit> MakeBlock(const UnitContext& context, int layer,
                                     workload::Recompute recompute) {
  return std::make_unique<Block>(context, layer, recompute);
}

std::unique_ptr<ModelUnit> MakeHead(const UnitContext& context) {
  return std::make_unique<Head>(context);
}

}  // namespace orrery::exec
