// exec_model_checks: the multi-rank check of the model units
// (exec/gpt_model.h), run under mpirun by tests/exec/gpt_model_test.cc:
//
//   mpirun -np 2 exec_model_checks <check>
//
// Checks: gpt, gpt-sp, llama, llama-sp — a tiny model of that family on 2
// ranks with tp = 2 (-sp: with sequence parallelism). Every rank also runs
// the tp = 1 model alone (a communicator of its own rank) from the same
// seed, runs one forward and backward of the same micro-batch through the
// whole chain (embedding, 2 blocks, head) in both, and compares the loss
// (relative 1e-5) and every element of its gradient shards with the tp = 1
// gradients at the same elements of the full tensors (mapped through the
// shards' pieces): |g_tp2 − g_tp1| <= 1e-6 + 1e-4·|g_tp1|, with gradients of
// loss_scale 1/tokens of order 1e-3..1e-1 (the sums over 2 shards reassociate
// float additions; the observed worst difference is printed). The tp = 2
// blocks use recomputation (gpt: selective, llama: full, the -sp checks the
// other way round), so recomputation under tp is covered too.
//
// Every rank prints its worst element; ranks agree on the outcome
// (MpiWorld::AgreeOnStatus) and exit 1 when any rank failed.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/backend.h"
#include "exec/communicator.h"
#include "exec/gpt_model.h"
#include "exec/mpi_world.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using workload::ModelSpec;
using workload::Recompute;

constexpr uint64_t kSeed = 2024;
constexpr int64_t kBatch = 2;
constexpr int64_t kSequence = 6;

// hidden 16, 4 heads of 4 (Llama: 2 kv heads, so both divide tp 2), FFN 32,
// vocab 24, 2 layers.
ModelSpec TinyModel(bool llama) {
  ModelSpec m;
  m.name = llama ? "check-llama" : "check-gpt";
  m.family = llama ? workload::ModelFamily::kLlama : workload::ModelFamily::kGpt;
  m.architecture = workload::Architecture::kDecoderOnly;
  m.num_layers = 2;
  m.hidden_size = 16;
  m.num_attention_heads = 4;
  m.num_kv_heads = llama ? 2 : 4;
  m.head_dim = 4;
  m.ffn_hidden_size = 32;
  m.vocab_size = 24;
  m.max_sequence_length = 8;
  m.default_sequence_length = kSequence;
  m.activation = llama ? workload::Activation::kSwiGlu : workload::Activation::kGelu;
  m.norm = llama ? workload::NormKind::kRmsNorm : workload::NormKind::kLayerNorm;
  m.position_embedding =
      llama ? workload::PositionEmbedding::kRotary : workload::PositionEmbedding::kLearned;
  m.linear_bias = !llama;
  m.tied_embeddings = !llama;
  m.source = "exec_model_checks";
  return m;
}

template <typename T>
DeviceArray<T> Upload(Backend& backend, const std::vector<T>& host) {
  DeviceArray<T> d(backend, static_cast<int64_t>(host.size()));
  backend.CopyFromHost(host.data(), d.data(), d.bytes());
  return d;
}

std::vector<float> Download(Backend& backend, const DeviceArray<float>& d) {
  std::vector<float> host(static_cast<size_t>(d.size()));
  backend.CopyToHost(d.data(), host.data(), d.bytes());
  return host;
}

// The full tensor's index of every local element.
std::vector<int64_t> FullIndices(const ParameterShard& shard) {
  std::vector<int64_t> out;
  if (shard.split_dim < 0) {
    for (int64_t i = 0; i < shard.size; ++i) out.push_back(i);
    return out;
  }
  const bool rows = shard.full_shape.size() == 1 || shard.split_dim == 0;
  const int64_t row = shard.full_shape.size() == 1 ? 1 : shard.full_shape[1];
  if (rows) {
    for (const auto& [begin, end] : shard.pieces) {
      for (int64_t i = begin * row; i < end * row; ++i) out.push_back(i);
    }
  } else {
    for (int64_t r = 0; r < shard.full_shape[0]; ++r) {
      for (const auto& [begin, end] : shard.pieces) {
        for (int64_t c = begin; c < end; ++c) out.push_back(r * row + c);
      }
    }
  }
  return out;
}

// A whole model on one tp group: its units, parameters and gradients.
struct Replica {
  std::vector<std::unique_ptr<ModelUnit>> units;
  std::vector<DeviceArray<float>> params;
  std::vector<DeviceArray<float>> grads;
  double loss_sum = 0.0;
};

Replica Build(const ModelSpec& model, Backend& backend, Communicator& tp, bool sp,
              Recompute recompute) {
  UnitContext context{&model, &backend, &tp, sp, nullptr};
  Replica r;
  r.units.push_back(MakeEmbedding(context));
  for (int layer = 0; layer < model.num_layers; ++layer) {
    r.units.push_back(MakeBlock(context, layer, recompute));
  }
  r.units.push_back(MakeHead(context));
  for (auto& unit : r.units) {
    r.params.emplace_back(backend, unit->parameter_count());
    r.grads.emplace_back(backend, unit->parameter_count());
    unit->InitializeParameters(kSeed, r.params.back().data());
    backend.Fill(r.grads.back().data(), r.grads.back().size(), 0.0f);
  }
  return r;
}

// One forward and backward of `mb` through the chain.
void Step(Replica& r, const MicroBatch& mb, Backend& backend, int64_t activation_rows,
          int64_t hidden) {
  std::vector<DeviceArray<float>> acts;
  const float* input = nullptr;
  for (size_t u = 0; u < r.units.size(); ++u) {
    const bool head = u + 1 == r.units.size();
    acts.emplace_back(backend, head ? 0 : activation_rows * hidden);
    r.units[u]->Forward(mb, r.params[u].data(), input, head ? nullptr : acts.back().data());
    input = acts.back().data();
  }
  r.loss_sum = r.units.back()->LossSum(mb.index);
  DeviceArray<float> upstream;
  for (size_t u = r.units.size(); u-- > 0;) {
    DeviceArray<float> grad_in;
    if (u > 0) grad_in = DeviceArray<float>(backend, activation_rows * hidden);
    r.units[u]->Backward(mb, r.params[u].data(), r.grads[u].data(), upstream.data(),
                         grad_in.data());
    upstream = std::move(grad_in);
  }
}

Status RunCheck(MpiWorld& world, const std::string& check) {
  const bool llama = check.rfind("llama", 0) == 0;
  const bool sp = check.size() > 3 && check.substr(check.size() - 3) == "-sp";
  if (check != "gpt" && check != "gpt-sp" && check != "llama" && check != "llama-sp") {
    return InvalidArgumentError("unknown check '" + check +
                                "': expected gpt, gpt-sp, llama or llama-sp");
  }
  if (world.size() != 2) {
    return InvalidArgumentError("the model checks run on 2 ranks, not " +
                                std::to_string(world.size()));
  }
  const Recompute recompute = (llama != sp) ? Recompute::kFull : Recompute::kSelective;
  const ModelSpec model = TinyModel(llama);
  ORRERY_RETURN_IF_ERROR(CheckExecutableModel(model, 2, sp, kBatch, kSequence));

  ORRERY_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, MakeBackend(BackendKind::kCpu, 0));
  // Collective over the world: both ranks make the pair, then each its own.
  ORRERY_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> pair,
                          MakeCommunicator(world, *backend, {0, 1}));
  ORRERY_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> alone,
                          MakeCommunicator(world, *backend, {world.rank()}));

  const int64_t rows = kBatch * kSequence;
  std::vector<int32_t> tokens, targets, positions;
  for (int64_t r = 0; r < rows; ++r) {
    tokens.push_back(static_cast<int32_t>((7 * r + 3) % model.vocab_size));
    targets.push_back(static_cast<int32_t>((5 * r + 11) % model.vocab_size));
    positions.push_back(static_cast<int32_t>(r / kBatch));
  }
  DeviceArray<int32_t> d_tokens = Upload(*backend, tokens);
  DeviceArray<int32_t> d_targets = Upload(*backend, targets);
  DeviceArray<int32_t> d_positions = Upload(*backend, positions);
  MicroBatch mb;
  mb.batch = kBatch;
  mb.sequence = kSequence;
  mb.tokens = d_tokens.data();
  mb.targets = d_targets.data();
  mb.positions = d_positions.data();
  mb.loss_scale = 1.0f / static_cast<float>(rows);

  Replica reference = Build(model, *backend, *alone, false, Recompute::kNone);
  Step(reference, mb, *backend, rows, model.hidden_size);
  Replica parallel = Build(model, *backend, *pair, sp, recompute);
  Step(parallel, mb, *backend, ActivationRows(kSequence, kBatch, 2, sp), model.hidden_size);

  std::string failures;
  const double loss_error =
      std::fabs(parallel.loss_sum - reference.loss_sum) / std::fabs(reference.loss_sum);
  if (!(loss_error <= 1e-5)) {
    failures += "loss " + std::to_string(parallel.loss_sum) + " vs tp=1 " +
                std::to_string(reference.loss_sum) + "; ";
  }
  double worst = 0.0;  // the largest |difference| / tolerance
  std::string worst_what = "none";
  int64_t compared = 0;
  for (size_t u = 0; u < parallel.units.size(); ++u) {
    const std::vector<float> got = Download(*backend, parallel.grads[u]);
    const std::vector<float> want = Download(*backend, reference.grads[u]);
    for (const ParameterShard& shard : parallel.units[u]->parameters()) {
      const ParameterShard* full = nullptr;
      for (const ParameterShard& s : reference.units[u]->parameters()) {
        if (s.name == shard.name) full = &s;
      }
      if (full == nullptr || full->full_shape != shard.full_shape) {
        failures += shard.name + " has no tp=1 counterpart of its shape; ";
        continue;
      }
      const std::vector<int64_t> index = FullIndices(shard);
      for (int64_t i = 0; i < shard.size; ++i) {
        const double a = got[static_cast<size_t>(shard.offset + i)];
        const double b = want[static_cast<size_t>(full->offset + index[static_cast<size_t>(i)])];
        const double ratio = std::fabs(a - b) / (1e-6 + 1e-4 * std::fabs(b));
        ++compared;
        if (!(ratio <= worst)) {
          worst = ratio;
          worst_what = shard.name + "[" + std::to_string(index[static_cast<size_t>(i)]) +
                       "]: tp=2 " + std::to_string(a) + ", tp=1 " + std::to_string(b);
        }
      }
    }
  }
  std::fprintf(stderr,
               "rank %d %s (recompute %s): loss %.9g vs %.9g, %lld gradient elements, worst "
               "|diff|/tolerance %.3g at %s\n",
               world.rank(), check.c_str(), std::string(workload::RecomputeName(recompute)).c_str(),
               parallel.loss_sum, reference.loss_sum, static_cast<long long>(compared), worst,
               worst_what.c_str());
  if (!(worst <= 1.0)) failures += "gradient mismatch at " + worst_what + "; ";
  if (compared == 0) failures += "no gradients compared; ";
  if (!failures.empty()) return InternalError(check + ": " + failures);
  return Status::Ok();
}

int Main(int argc, char** argv) {
  Result<std::unique_ptr<MpiWorld>> world = MpiWorld::Join();
  if (!world.ok()) {
    std::fprintf(stderr, "exec_model_checks: %s\n", world.status().ToString().c_str());
    return 1;
  }
  const std::string check = argc > 1 ? argv[1] : "";
  const Status mine = RunCheck(**world, check);
  const Status all = (*world)->AgreeOnStatus(mine);
  if (!mine.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", (*world)->rank(), mine.ToString().c_str());
  }
  return all.ok() ? 0 : 1;
}

}  // namespace
}  // namespace orrery::exec

int main(int argc, char** argv) { return orrery::exec::Main(argc, argv); }
