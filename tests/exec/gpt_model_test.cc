// Tests of the executor's model units (exec/gpt_model.h) on the `cpu`
// backend with a one-rank tensor-parallel group: the gradients of the whole
// chain embedding → 2 blocks → head against central finite differences of
// its loss, for a tiny GPT and a tiny Llama; recomputation giving the same
// gradients bit for bit; the loss of a zero LM head (log V per token); the
// tp = 2 shards of the fused tensors by hand; the initial values; the
// executability checks' messages; activation memory freed by Backward.
// The multi-rank comparison against tp = 1 runs exec_model_checks under
// mpirun (tests/exec/model_checks_main.cc).
#include "exec/gpt_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "exec/backend.h"
#include "exec/communicator.h"
#include "exec/op_recorder.h"
#include "tests/cli/cli_runner.h"
#include "traces/execution_trace.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using workload::ModelSpec;
using workload::Recompute;

// A tensor-parallel group of `size` ranks of which this is `rank`, with no
// peers: only a group of one can run collectives, which are then copies.
// Larger groups serve to build units and inspect their shards.
class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(Backend& backend, int rank = 0, int size = 1)
      : backend_(backend), rank_(rank), world_ranks_(static_cast<size_t>(size)) {
    for (int r = 0; r < size; ++r) world_ranks_[static_cast<size_t>(r)] = r;
  }
  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(world_ranks_.size()); }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  std::string library() const override { return "local"; }

  void AllReduce(float*, int64_t, ReduceOp) override { CheckAlone(); }
  void AllGather(const float* send, float* recv, int64_t count) override {
    Copy(send, recv, count);
  }
  void ReduceScatter(const float* send, float* recv, int64_t count) override {
    Copy(send, recv, count);
  }
  void AllToAll(const float* send, float* recv, int64_t count) override { Copy(send, recv, count); }
  void Broadcast(float*, int64_t, int) override { CheckAlone(); }
  void Barrier() override { CheckAlone(); }
  std::unique_ptr<CommRequest> AllReduceAsync(float* data, int64_t count) override {
    AllReduce(data, count, ReduceOp::kSum);
    return std::make_unique<Done>();
  }
  std::unique_ptr<CommRequest> AllGatherAsync(const float* send, float* recv,
                                              int64_t count) override {
    AllGather(send, recv, count);
    return std::make_unique<Done>();
  }
  std::unique_ptr<CommRequest> ReduceScatterAsync(const float* send, float* recv,
                                                  int64_t count) override {
    ReduceScatter(send, recv, count);
    return std::make_unique<Done>();
  }
  std::unique_ptr<CommRequest> Isend(const float*, int64_t, int) override {
    ADD_FAILURE() << "a one-rank group has no peer to send to";
    return std::make_unique<Done>();
  }
  std::unique_ptr<CommRequest> Irecv(float*, int64_t, int) override {
    ADD_FAILURE() << "a one-rank group has no peer to receive from";
    return std::make_unique<Done>();
  }

 private:
  struct Done : CommRequest {
    void Wait() override {}
  };
  void CheckAlone() const { ASSERT_EQ(size(), 1) << "collective on a group with absent peers"; }
  void Copy(const float* send, float* recv, int64_t count) {
    CheckAlone();
    if (send != recv) backend_.CopyOnDevice(send, recv, count * int64_t{sizeof(float)});
  }
  Backend& backend_;
  int rank_;
  std::vector<int> world_ranks_;
};

// hidden 16, 2 heads of 8, FFN 32, vocabulary 24, 2 layers: the Megatron GPT
// structure (LayerNorm, GELU, biases, learned positions, tied embeddings).
ModelSpec TinyGpt() {
  ModelSpec m;
  m.name = "test-gpt";
  m.family = workload::ModelFamily::kGpt;
  m.architecture = workload::Architecture::kDecoderOnly;
  m.num_layers = 2;
  m.hidden_size = 16;
  m.num_attention_heads = 2;
  m.num_kv_heads = 2;
  m.head_dim = 8;
  m.ffn_hidden_size = 32;
  m.vocab_size = 24;
  m.max_sequence_length = 8;
  m.default_sequence_length = 6;
  m.activation = workload::Activation::kGelu;
  m.norm = workload::NormKind::kLayerNorm;
  m.position_embedding = workload::PositionEmbedding::kLearned;
  m.linear_bias = true;
  m.tied_embeddings = true;
  m.source = "test";
  return m;
}

// The Llama structure at the same size: RMSNorm, SwiGLU, RoPE, 2 query heads
// sharing 1 kv head, no biases, an untied LM head.
ModelSpec TinyLlama() {
  ModelSpec m = TinyGpt();
  m.name = "test-llama";
  m.family = workload::ModelFamily::kLlama;
  m.num_kv_heads = 1;
  m.activation = workload::Activation::kSwiGlu;
  m.norm = workload::NormKind::kRmsNorm;
  m.position_embedding = workload::PositionEmbedding::kRotary;
  m.linear_bias = false;
  m.tied_embeddings = false;
  return m;
}

template <typename T>
DeviceArray<T> Upload(Backend& backend, const std::vector<T>& host) {
  DeviceArray<T> d(backend, static_cast<int64_t>(host.size()));
  backend.CopyFromHost(host.data(), d.data(), d.bytes());
  return d;
}

template <typename T>
std::vector<T> Download(Backend& backend, const T* data, int64_t n) {
  std::vector<T> host(static_cast<size_t>(n));
  backend.CopyToHost(data, host.data(), n * int64_t{sizeof(T)});
  return host;
}

// The model's units on one rank, with their parameters, gradients and one
// micro-batch of `batch` × `sequence` tokens.
class Chain {
 public:
  Chain(const ModelSpec& model, Recompute recompute, int64_t batch = 2, int64_t sequence = 6)
      : model_(model), backend_(MakeBackend(BackendKind::kCpu, 0).value()), comm_(*backend_) {
    recorder_ = std::make_unique<OpRecorder>(*backend_, 0);
    UnitContext context{&model_, backend_.get(), &comm_, false, recorder_.get()};
    units_.push_back(MakeEmbedding(context));
    for (int layer = 0; layer < model.num_layers; ++layer) {
      units_.push_back(MakeBlock(context, layer, recompute));
    }
    units_.push_back(MakeHead(context));
    for (auto& unit : units_) {
      params_.emplace_back(*backend_, unit->parameter_count());
      grads_.emplace_back(*backend_, unit->parameter_count());
      unit->InitializeParameters(/*seed=*/1234, params_.back().data());
    }
    rows_ = batch * sequence;
    std::vector<int32_t> tokens, targets, positions;
    for (int64_t r = 0; r < rows_; ++r) {
      tokens.push_back(static_cast<int32_t>((7 * r + 3) % model.vocab_size));
      targets.push_back(static_cast<int32_t>((5 * r + 11) % model.vocab_size));
      positions.push_back(static_cast<int32_t>(r / batch));
    }
    tokens_ = Upload(*backend_, tokens);
    targets_ = Upload(*backend_, targets);
    positions_ = Upload(*backend_, positions);
    mb_.batch = batch;
    mb_.sequence = sequence;
    mb_.tokens = tokens_.data();
    mb_.targets = targets_.data();
    mb_.positions = positions_.data();
    mb_.loss_scale = 1.0f;
  }

  Backend& backend() { return *backend_; }
  OpRecorder& recorder() { return *recorder_; }
  std::vector<std::unique_ptr<ModelUnit>>& units() { return units_; }
  ModelUnit& head() { return *units_.back(); }
  int64_t rows() const { return rows_; }
  MicroBatch micro_batch(int index) const {
    MicroBatch mb = mb_;
    mb.index = index;
    return mb;
  }
  float* params(size_t unit) { return params_[unit].data(); }

  std::vector<float> Params(size_t unit) {
    return Download(*backend_, params_[unit].data(), params_[unit].size());
  }
  void SetParams(size_t unit, const std::vector<float>& values) {
    backend_->CopyFromHost(values.data(), params_[unit].data(), params_[unit].bytes());
  }
  std::vector<float> Grads(size_t unit) {
    return Download(*backend_, grads_[unit].data(), grads_[unit].size());
  }
  void ZeroGrads() {
    for (auto& g : grads_) backend_->Fill(g.data(), g.size(), 0.0f);
  }

  // Forward of micro-batch `index` through every unit (from the first block,
  // fed `block_input`, when given); returns Σ token losses · loss_scale.
  double Forward(int index, const float* block_input = nullptr) {
    const MicroBatch mb = micro_batch(index);
    const int64_t h = model_.hidden_size;
    auto& acts = activations_[index];
    const size_t first = block_input != nullptr ? 1 : 0;
    acts.clear();
    const float* input = block_input;
    for (size_t u = first; u < units_.size(); ++u) {
      const bool head = u + 1 == units_.size();
      acts.emplace_back(*backend_, head ? 0 : rows_ * h);
      units_[u]->Forward(mb, params_[u].data(), input, head ? nullptr : acts.back().data());
      input = acts.back().data();
    }
    return head().LossSum(index) * mb.loss_scale;
  }
  // Backward of micro-batch `index`, whose Forward ran; d(loss)/d(block
  // input) into grad_block_input when given.
  void Backward(int index, float* grad_block_input = nullptr) {
    const MicroBatch mb = micro_batch(index);
    const int64_t h = model_.hidden_size;
    const size_t first = grad_block_input != nullptr ? 1 : 0;
    DeviceArray<float> upstream;
    for (size_t u = units_.size(); u-- > first;) {
      const bool embedding = u == 0;
      DeviceArray<float> grad_in;
      float* grad_in_ptr = nullptr;
      if (!embedding) {
        if (u == first) {
          grad_in_ptr = grad_block_input;
        } else {
          grad_in = DeviceArray<float>(*backend_, rows_ * h);
          grad_in_ptr = grad_in.data();
        }
      }
      units_[u]->Backward(mb, params_[u].data(), grads_[u].data(), upstream.data(), grad_in_ptr);
      upstream = std::move(grad_in);
    }
    activations_.erase(index);
  }
  double Step(const float* block_input = nullptr, float* grad_block_input = nullptr) {
    const double loss = Forward(0, block_input);
    Backward(0, grad_block_input);
    return loss;
  }

 private:
  ModelSpec model_;
  std::unique_ptr<Backend> backend_;
  LocalCommunicator comm_;
  std::unique_ptr<OpRecorder> recorder_;
  std::vector<std::unique_ptr<ModelUnit>> units_;
  std::vector<DeviceArray<float>> params_;
  std::vector<DeviceArray<float>> grads_;
  std::map<int, std::vector<DeviceArray<float>>> activations_;
  DeviceArray<int32_t> tokens_, targets_, positions_;
  MicroBatch mb_;
  int64_t rows_ = 0;
};

// Random parameters of a scale that makes every gradient well above the
// finite differences' rounding noise: weights uniform in ±0.5, norm weights
// in 1 ± 0.25 (the initial values' 0.02 would leave most gradients at 1e-4).
void RandomizeParameters(Chain& chain, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> weight(-0.5f, 0.5f);
  for (size_t u = 0; u < chain.units().size(); ++u) {
    std::vector<float> p = chain.Params(u);
    for (const ParameterShard& shard : chain.units()[u]->parameters()) {
      const bool norm = shard.name.find("norm.weight") != std::string::npos;
      for (int64_t i = 0; i < shard.size; ++i) {
        p[static_cast<size_t>(shard.offset + i)] = (norm ? 1.0f + 0.5f * weight(rng) : weight(rng));
      }
    }
    chain.SetParams(u, p);
  }
}

// Central differences with step 1e-2 in float against the analytic
// gradient: |fd − g| <= 2e-3 + 2e-2·|g|. The loss is Σ token losses
// (loss_scale 1, about 40), whose float rounding (~4e-6) puts ~2e-4 of
// noise in a difference quotient; the O(step²) truncation error stays below
// the relative part.
constexpr float kStep = 1e-2f;
void ExpectNear(double fd, double analytic, const std::string& what) {
  EXPECT_NEAR(fd, analytic, 2e-3 + 2e-2 * std::fabs(analytic)) << what;
}

void CheckParameterGradients(const ModelSpec& model) {
  Chain chain(model, Recompute::kNone);
  RandomizeParameters(chain, 7);
  chain.ZeroGrads();
  chain.Step();
  // Read before the finite differences' steps accumulate more into them.
  std::vector<std::vector<float>> all_grads;
  for (size_t u = 0; u < chain.units().size(); ++u) all_grads.push_back(chain.Grads(u));
  int checked = 0;
  for (size_t u = 0; u < chain.units().size(); ++u) {
    const std::vector<float>& grads = all_grads[u];
    const std::vector<float> base = chain.Params(u);
    for (const ParameterShard& shard : chain.units()[u]->parameters()) {
      // Five elements of every tensor, spread over it.
      for (int k = 0; k < 5; ++k) {
        const int64_t i = shard.offset + (k * 7919 + 13) % shard.size;
        std::vector<float> p = base;
        p[static_cast<size_t>(i)] = base[static_cast<size_t>(i)] + kStep;
        chain.SetParams(u, p);
        const double plus = chain.Step();
        p[static_cast<size_t>(i)] = base[static_cast<size_t>(i)] - kStep;
        chain.SetParams(u, p);
        const double minus = chain.Step();
        ExpectNear((plus - minus) / (2.0 * kStep), grads[static_cast<size_t>(i)],
                   shard.name + "[" + std::to_string(i - shard.offset) + "]");
        ++checked;
      }
    }
    chain.SetParams(u, base);
  }
  EXPECT_GT(checked, 5 * 10);
}

void CheckInputGradient(const ModelSpec& model) {
  Chain chain(model, Recompute::kNone);
  RandomizeParameters(chain, 11);
  const int64_t n = chain.rows() * model.hidden_size;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  DeviceArray<float> input = Upload(chain.backend(), x);
  DeviceArray<float> grad_input(chain.backend(), n);
  chain.Step(input.data(), grad_input.data());
  const std::vector<float> grad = Download(chain.backend(), grad_input.data(), n);
  for (int k = 0; k < 24; ++k) {
    const int64_t i = (k * 613 + 5) % n;
    std::vector<float> p = x;
    p[static_cast<size_t>(i)] = x[static_cast<size_t>(i)] + kStep;
    DeviceArray<float> plus_input = Upload(chain.backend(), p);
    const double plus = chain.Step(plus_input.data(), grad_input.data());
    p[static_cast<size_t>(i)] = x[static_cast<size_t>(i)] - kStep;
    DeviceArray<float> minus_input = Upload(chain.backend(), p);
    const double minus = chain.Step(minus_input.data(), grad_input.data());
    ExpectNear((plus - minus) / (2.0 * kStep), grad[static_cast<size_t>(i)],
               "input[" + std::to_string(i) + "]");
  }
}

TEST(GptModel, GptParameterGradientsMatchFiniteDifferencesOfTheLoss) {
  CheckParameterGradients(TinyGpt());
}

TEST(GptModel, LlamaParameterGradientsMatchFiniteDifferencesOfTheLoss) {
  CheckParameterGradients(TinyLlama());
}

TEST(GptModel, GptInputGradientMatchesFiniteDifferencesOfTheLoss) { CheckInputGradient(TinyGpt()); }

TEST(GptModel, LlamaInputGradientMatchesFiniteDifferencesOfTheLoss) {
  CheckInputGradient(TinyLlama());
}

std::vector<std::vector<float>> AllGradients(const ModelSpec& model, Recompute recompute) {
  Chain chain(model, recompute);
  chain.ZeroGrads();
  chain.Step();
  std::vector<std::vector<float>> grads;
  for (size_t u = 0; u < chain.units().size(); ++u) grads.push_back(chain.Grads(u));
  return grads;
}

TEST(GptModel, RecomputationGivesBitIdenticalGradients) {
  for (const ModelSpec& model : {TinyGpt(), TinyLlama()}) {
    const auto none = AllGradients(model, Recompute::kNone);
    EXPECT_EQ(AllGradients(model, Recompute::kSelective), none) << model.name;
    EXPECT_EQ(AllGradients(model, Recompute::kFull), none) << model.name;
  }
}

TEST(GptModel, AZeroLmHeadGivesLogVocabularyPerToken) {
  for (const ModelSpec& model : {TinyGpt(), TinyLlama()}) {
    Chain chain(model, Recompute::kNone);
    const size_t head = chain.units().size() - 1;
    std::vector<float> p = chain.Params(head);
    for (const ParameterShard& shard : chain.head().parameters()) {
      if (shard.full_shape.size() != 2) continue;
      for (int64_t i = 0; i < shard.size; ++i) p[static_cast<size_t>(shard.offset + i)] = 0.0f;
    }
    chain.SetParams(head, p);
    const double loss = chain.Step();
    EXPECT_NEAR(loss, chain.rows() * std::log(model.vocab_size), 1e-4) << model.name;
    EXPECT_DOUBLE_EQ(chain.head().LossSum(0), loss);
  }
}

std::unique_ptr<ModelUnit> UnitOnRank(const ModelSpec& model, Backend& backend,
                                      LocalCommunicator& comm, UnitKind kind) {
  UnitContext context{&model, &backend, &comm, false, nullptr};
  switch (kind) {
    case UnitKind::kEmbedding:
      return MakeEmbedding(context);
    case UnitKind::kBlock:
      return MakeBlock(context, 3, Recompute::kNone);
    case UnitKind::kHead:
      return MakeHead(context);
  }
  return nullptr;
}

const ParameterShard& Find(const ModelUnit& unit, const std::string& name) {
  for (const ParameterShard& shard : unit.parameters()) {
    if (shard.name == name) return shard;
  }
  ADD_FAILURE() << "no parameter " << name << " in " << unit.name();
  static const ParameterShard none;
  return none;
}

using Pieces = std::vector<std::pair<int64_t, int64_t>>;

TEST(GptModel, Tp2RankOneHoldsItsHeadsOfQkvAndItsColumnsOfGateAndUp) {
  // Llama, hidden 16, 4 query heads and 2 kv heads of 4, FFN 32, vocab 24.
  ModelSpec model = TinyLlama();
  model.num_attention_heads = 4;
  model.num_kv_heads = 2;
  model.head_dim = 4;
  auto backend = MakeBackend(BackendKind::kCpu, 0).value();
  LocalCommunicator comm(*backend, /*rank=*/1, /*size=*/2);
  auto block = UnitOnRank(model, *backend, comm, UnitKind::kBlock);
  EXPECT_EQ(block->name(), "layers.3");
  EXPECT_EQ(block->layer(), 3);

  // Full QKV columns: q [0, 16), k [16, 24), v [24, 32); rank 1 holds q heads
  // 2-3, kv head 1.
  const ParameterShard& qkv = Find(*block, "layers.3.attn.qkv.weight");
  EXPECT_EQ(qkv.full_shape, (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(qkv.split_dim, 1);
  EXPECT_EQ(qkv.pieces, (Pieces{{8, 16}, {20, 24}, {28, 32}}));
  EXPECT_EQ(qkv.LocalShape(), (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(qkv.size, 256);
  // SwiGLU fc1 [16, 64]: gate columns [16, 32) and up columns [48, 64).
  const ParameterShard& fc1 = Find(*block, "layers.3.mlp.fc1.weight");
  EXPECT_EQ(fc1.full_shape, (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(fc1.split_dim, 1);
  EXPECT_EQ(fc1.pieces, (Pieces{{16, 32}, {48, 64}}));
  const ParameterShard& proj = Find(*block, "layers.3.attn.proj.weight");
  EXPECT_EQ(proj.split_dim, 0);
  EXPECT_EQ(proj.pieces, (Pieces{{8, 16}}));
  const ParameterShard& fc2 = Find(*block, "layers.3.mlp.fc2.weight");
  EXPECT_EQ(fc2.pieces, (Pieces{{16, 32}}));
  EXPECT_EQ(Find(*block, "layers.3.attn.norm.weight").split_dim, -1);

  // The flat buffer: the tensors back to back.
  int64_t offset = 0;
  for (const ParameterShard& shard : block->parameters()) {
    EXPECT_EQ(shard.offset, offset) << shard.name;
    offset += shard.size;
  }
  EXPECT_EQ(block->parameter_count(), offset);

  // The local QKV element (row 5, column 9) is k's column 20 + 1 of the full tensor.
  DeviceArray<float> params(*backend, block->parameter_count());
  block->InitializeParameters(99, params.data());
  const std::vector<float> host = Download(*backend, params.data(), params.size());
  EXPECT_EQ(host[static_cast<size_t>(qkv.offset + 5 * 16 + 9)],
            InitialParameterValue(99, qkv.name, qkv.full_shape, model.num_layers, 5 * 32 + 21));
  // The local fc1 element (row 2, column 16 + 3) is up's column 48 + 3.
  EXPECT_EQ(host[static_cast<size_t>(fc1.offset + 2 * 32 + 19)],
            InitialParameterValue(99, fc1.name, fc1.full_shape, model.num_layers, 2 * 64 + 51));

  // Vocabulary-parallel tables: rank 1 of 2 holds rows [12, 24).
  auto embedding = UnitOnRank(model, *backend, comm, UnitKind::kEmbedding);
  EXPECT_EQ(Find(*embedding, "embedding.word_embeddings.weight").pieces, (Pieces{{12, 24}}));
  auto head = UnitOnRank(model, *backend, comm, UnitKind::kHead);
  EXPECT_EQ(Find(*head, "head.output.weight").pieces, (Pieces{{12, 24}}));
}

TEST(GptModel, TiedHeadHoldsTheWordEmbeddingsUnderTheirName) {
  const ModelSpec model = TinyGpt();
  auto backend = MakeBackend(BackendKind::kCpu, 0).value();
  LocalCommunicator comm(*backend);
  auto head = UnitOnRank(model, *backend, comm, UnitKind::kHead);
  const ParameterShard& words = Find(*head, "embedding.word_embeddings.weight");
  EXPECT_EQ(words.full_shape, (std::vector<int64_t>{24, 16}));
  EXPECT_EQ(Find(*head, "head.norm.bias").size, 16);
  auto embedding = UnitOnRank(model, *backend, comm, UnitKind::kEmbedding);
  EXPECT_EQ(Find(*embedding, "embedding.position_embeddings.weight").full_shape,
            (std::vector<int64_t>{8, 16}));
}

TEST(GptModel, InitialValuesAreDeterministicNormalsScaledForOutputProjections) {
  const std::vector<int64_t> shape = {100, 100};
  EXPECT_EQ(InitialParameterValue(5, "layers.0.attn.qkv.weight", shape, 4, 123),
            InitialParameterValue(5, "layers.0.attn.qkv.weight", shape, 4, 123));
  EXPECT_NE(InitialParameterValue(5, "layers.0.attn.qkv.weight", shape, 4, 123),
            InitialParameterValue(6, "layers.0.attn.qkv.weight", shape, 4, 123));
  EXPECT_NE(InitialParameterValue(5, "layers.0.attn.qkv.weight", shape, 4, 123),
            InitialParameterValue(5, "layers.1.attn.qkv.weight", shape, 4, 123));
  auto moments = [&](const std::string& name) {
    double sum = 0.0, sum_sq = 0.0;
    const int n = 10000;
    for (int i = 0; i < n; ++i) {
      const double v = InitialParameterValue(5, name, shape, 4, i);
      sum += v;
      sum_sq += v * v;
    }
    const double mean = sum / n;
    return std::pair<double, double>{mean, std::sqrt(sum_sq / n - mean * mean)};
  };
  // Standard errors over 10⁴ samples: 2e-4 for the mean, 1.4e-4 for σ.
  const auto [mean, std] = moments("layers.0.mlp.fc1.weight");
  EXPECT_NEAR(mean, 0.0, 1e-3);
  EXPECT_NEAR(std, 0.02, 7e-4);
  // Megatron-LM's scaled_init_method_normal: 0.02 / sqrt(2·4).
  const auto [proj_mean, proj_std] = moments("layers.2.attn.proj.weight");
  EXPECT_NEAR(proj_mean, 0.0, 1e-3 / std::sqrt(8.0));
  EXPECT_NEAR(proj_std, 0.02 / std::sqrt(8.0), 7e-4 / std::sqrt(8.0));
  EXPECT_NEAR(moments("layers.2.mlp.fc2.weight").second, 0.02 / std::sqrt(8.0),
              7e-4 / std::sqrt(8.0));
  EXPECT_EQ(InitialParameterValue(5, "layers.0.attn.qkv.bias", {300}, 4, 7), 0.0f);
  EXPECT_EQ(InitialParameterValue(5, "layers.0.mlp.norm.weight", {16}, 4, 7), 1.0f);
  EXPECT_EQ(InitialParameterValue(5, "head.norm.bias", {16}, 4, 7), 0.0f);
}

TEST(GptModel, CheckExecutableModelNamesTheModelAndTheField) {
  ModelSpec gpt2 = TinyGpt();
  gpt2.name = "gpt2";
  gpt2.vocab_size = 50257;
  gpt2.max_sequence_length = 1024;
  Status s = CheckExecutableModel(gpt2, 2, false, 1, 1024);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "model 'gpt2': field 'vocab_size': 50257 is not divisible by tp 2 (the executor does "
            "not pad the vocabulary)");
  EXPECT_TRUE(CheckExecutableModel(gpt2, 1, false, 1, 1024).ok());
  s = CheckExecutableModel(gpt2, 1, false, 1, 2048);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("field 'max_sequence_length'"), std::string::npos) << s.message();

  const ModelSpec llama = TinyLlama();  // 2 heads, 1 kv head
  EXPECT_TRUE(CheckExecutableModel(llama, 1, true, 2, 6).ok());
  s = CheckExecutableModel(llama, 2, false, 2, 6);
  EXPECT_NE(
      s.message().find("model 'test-llama': field 'num_kv_heads': 1 is not divisible by tp 2"),
      std::string::npos)
      << s.message();
  s = CheckExecutableModel(TinyGpt(), 2, false, 2, 6);
  EXPECT_TRUE(s.ok()) << s.message();
  s = CheckExecutableModel(TinyGpt(), 2, true, 1, 5);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not divisible by tp 2"), std::string::npos) << s.message();

  ModelSpec mixtral = TinyLlama();
  mixtral.name = "moe";
  mixtral.family = workload::ModelFamily::kMixtral;
  mixtral.num_experts = 4;
  mixtral.experts_per_token = 2;
  s = CheckExecutableModel(mixtral, 1, false, 1, 6);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("model 'moe': field 'family'"), std::string::npos) << s.message();

  ModelSpec odd = TinyLlama();
  odd.hidden_size = 14;
  odd.head_dim = 7;
  s = CheckExecutableModel(odd, 1, false, 1, 6);
  EXPECT_NE(s.message().find("field 'head_dim'"), std::string::npos) << s.message();
}

TEST(GptModel, BackwardFreesWhatForwardSavedAndFullRecomputationSavesLeast) {
  std::map<Recompute, int64_t> saved;
  for (Recompute recompute : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    for (const ModelSpec& model : {TinyGpt(), TinyLlama()}) {
      Chain chain(model, recompute);
      const int64_t before = chain.backend().allocated_bytes();
      chain.Forward(0);
      chain.Forward(1);
      saved[recompute] = chain.backend().allocated_bytes() - before;
      EXPECT_GT(saved[recompute], 0);
      chain.Backward(1);
      chain.Backward(0);
      EXPECT_EQ(chain.backend().allocated_bytes(), before) << model.name;
    }
  }
  EXPECT_LT(saved[Recompute::kSelective], saved[Recompute::kNone]);
  EXPECT_LT(saved[Recompute::kFull], saved[Recompute::kSelective]);
}

TEST(GptModel, RecordsEveryOperatorOnceAndRecomputationAsRecompute) {
  const std::set<std::string> names = {
      "embed.tokens", "embed.positions",  "attn.norm", "attn.qkv",    "attn.core",
      "attn.proj",    "attn.dropout_add", "mlp.norm",  "mlp.fc1",     "mlp.act",
      "mlp.fc2",      "mlp.dropout_add",  "head.norm", "head.logits", "head.loss"};
  Chain chain(TinyGpt(), Recompute::kFull);
  chain.recorder().set_recording(true);
  chain.Step();
  int recomputed = 0, qkv_forward = 0;
  for (const traces::ExecutionOp& op : chain.recorder().ops()) {
    EXPECT_TRUE(names.contains(op.name)) << op.name;
    EXPECT_EQ(op.micro_batch, 0);
    if (op.phase == traces::ExecutionPhase::kRecompute) ++recomputed;
    if (op.name == "attn.qkv" && op.phase == traces::ExecutionPhase::kForward) {
      ++qkv_forward;
      ASSERT_TRUE(op.gemm.has_value());
      EXPECT_EQ(op.gemm->m, 12);
      EXPECT_EQ(op.gemm->n, 48);
      EXPECT_EQ(op.gemm->k, 16);
    }
  }
  EXPECT_EQ(qkv_forward, 2);
  // Each of the 2 blocks reruns its 10 forward ops.
  EXPECT_EQ(recomputed, 2 * 10);
}

// exec_model_checks on 2 ranks: tp = 2 against each rank's own tp = 1 run.
void RunModelCheck(const std::string& check) {
  if (orrery::testing::RunShell("command -v mpirun").exit_code != 0) {
    GTEST_SKIP() << "mpirun is not installed";
  }
  const orrery::testing::CliRun run =
      orrery::testing::RunShell("mpirun --oversubscribe --allow-run-as-root -np 2 " +
                                std::string(ORRERY_EXEC_MODEL_CHECKS) + " " + check);
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(GptModelMpi, GptOnTwoTensorParallelRanksMatchesOneRank) { RunModelCheck("gpt"); }
TEST(GptModelMpi, GptWithSequenceParallelismMatchesOneRank) { RunModelCheck("gpt-sp"); }
TEST(GptModelMpi, LlamaOnTwoTensorParallelRanksMatchesOneRank) { RunModelCheck("llama"); }
TEST(GptModelMpi, LlamaWithSequenceParallelismMatchesOneRank) { RunModelCheck("llama-sp"); }

}  // namespace
}  // namespace orrery::exec
