#include "exec/profiler.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/units.h"
#include "exec/communicator.h"
#include "workload/operators.h"

namespace orrery::exec {
namespace {

using traces::CollectiveOp;
using traces::ComputeProfileEntry;
using workload::GemmShape;
using workload::Operator;
using workload::OperatorClass;

// ---- Compute ------------------------------------------------------------------

// Forward and (when the operator has one here) backward time of one kernel.
struct KernelTimes {
  Duration forward;
  std::optional<Duration> backward;
};

// A sysfs cache size: "2048K", "32M", or bytes; 0 when unreadable.
int64_t ParseCacheSize(const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || value <= 0) return 0;
  switch (*end) {
    case 'K': return value << 10;
    case 'M': return value << 20;
    case 'G': return value << 30;
    default: return value;
  }
}

// fp32 elements of the cache-flush buffer (ComputeProfileOptions::flush_bytes).
int64_t FlushElements(const Backend& backend, const ComputeProfileOptions& options) {
  int64_t bytes = options.flush_bytes;
  if (bytes < 0) {
    bytes = backend.kind() == BackendKind::kCpu ? 4 * CpuL2CacheBytes() : int64_t{256} << 20;
  }
  return bytes / static_cast<int64_t>(sizeof(float));
}

// The mean wall time of `run` over `repetitions` calls after `warmup`
// untimed ones, each call bracketed by Synchronize() so that an
// asynchronous backend's queue is empty before and drained after it, and
// preceded by overwriting `flush` (may be null) and by `align`. At least
// one nanosecond (a profile's times are positive).
//
// The mean, not the median: a training step is a sum of hundreds of
// operator calls, so its time is the sum of their expected times, and the
// interruptions a shared machine deals out (another tenant, the
// hypervisor, a timer) land in it in proportion. A median of short calls
// filters them out: on the 2-vCPU development machine the profile's
// medians predicted gpt-tiny's DP2 step 15-20% short, its means about 8%
// closer (experiments/calibration/README.md).
template <typename Run>
Duration MeanTime(Backend& backend, int warmup, int repetitions, DeviceArray<float>* flush,
                  const std::function<void()>& align, Run run) {
  for (int i = 0; i < warmup; ++i) run();
  backend.Synchronize();
  double total = 0;
  for (int i = 0; i < repetitions; ++i) {
    if (flush != nullptr && flush->size() > 0) {
      backend.Fill(flush->data(), flush->size(), static_cast<float>(i));
    }
    backend.Synchronize();
    if (align) align();
    const double start = MpiWorld::Now();
    run();
    backend.Synchronize();
    total += MpiWorld::Now() - start;
  }
  return std::max(Seconds(total / repetitions), Nanos(1));
}

// Device buffers of fp32 filled with `value`.
DeviceArray<float> Filled(Backend& backend, int64_t n, float value) {
  DeviceArray<float> a(backend, n);
  if (n > 0) backend.Fill(a.data(), n, value);
  return a;
}

// Device buffers of fp32 drawn from N(0, 1), as activations and gradients
// are after a norm. Not a constant: the time of tanh, exp and log (GELU,
// softmax, the loss) depends on their argument — glibc's tanhf returns
// early for small arguments, so a buffer of 0.01 times GELU at 0.6× of
// what a training step's activations cost. Seeded per call count, so runs
// repeat.
DeviceArray<float> Filled(Backend& backend, int64_t n) {
  static std::mt19937 generator(20261122);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> host(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (float& v : host) v = normal(generator);
  DeviceArray<float> a(backend, n);
  if (n > 0) backend.CopyFromHost(host.data(), a.data(), n * static_cast<int64_t>(sizeof(float)));
  return a;
}

// Token ids 0, 1, …, spread over [0, range), in device memory.
DeviceArray<int32_t> Ids(Backend& backend, int64_t rows, int64_t range) {
  std::vector<int32_t> host(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) host[static_cast<size_t>(r)] = static_cast<int32_t>(r % range);
  DeviceArray<int32_t> ids(backend, rows);
  backend.CopyFromHost(host.data(), ids.data(), ids.bytes());
  return ids;
}

double GemmFlops(const GemmShape& g) {
  return 2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k) *
         static_cast<double>(g.batch);
}

std::string Rate(double flops, Duration t) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f GFLOP/s", flops / t.ToSeconds() * 1e-9);
  return buf;
}

// The dimensions of a layer on one rank that the kernels take.
struct LayerDims {
  int64_t batch = 1;
  int64_t sequence = 1;
  int64_t tokens = 1;  // batch · sequence
  int64_t hidden = 1;
  int64_t heads = 1;     // query heads on this rank
  int64_t kv_heads = 1;  // replicated when fewer than tp, as workload/operators.cc
  int64_t head_dim = 1;
  int64_t ffn = 1;          // FFN width on this rank
  int64_t vocab_local = 1;  // vocabulary rows or columns on this rank
};

class ComputeProfiler {
 public:
  ComputeProfiler(Backend& backend, const workload::ModelSpec& model,
                  const ComputeProfileOptions& options,
                  const std::function<void(const std::string&)>& progress)
      : backend_(backend), model_(model), options_(options), progress_(progress) {}

  Status Layer(const workload::LayerOperators& layer, const LayerDims& d) {
    for (size_t i = 0; i < layer.ops.size(); ++i) {
      const Operator& op = layer.ops[i];
      switch (op.op_class) {
        case OperatorClass::kGemm:
          if (op.gemm.has_value()) AddGemm(op);
          break;
        case OperatorClass::kAttention:
          // The unfused core is attn.qk, attn.softmax, attn.av; the backend
          // runs it as one kernel (AttentionForward), measured on its first
          // operator and entered as "<prefix>.core" with the FLOPs of all three.
          if (op.name.ends_with(".qk")) AddAttention(layer, i, d);
          break;
        case OperatorClass::kNorm:
          AddNorm(op, d);
          break;
        case OperatorClass::kElementwise:
          AddElementwise(op, d);
          break;
        case OperatorClass::kEmbedding:
          AddEmbedding(op, d);
          break;
        case OperatorClass::kLoss:
          AddLoss(op, d);
          break;
      }
    }
    return Status::Ok();
  }

  std::vector<ComputeProfileEntry> TakeEntries() { return std::move(entries_); }

 private:
  void Note(const std::string& line) {
    if (progress_) progress_(line);
  }

  template <typename Run>
  Duration Time(Run run) {
    if (!flush_.has_value()) flush_.emplace(backend_, FlushElements(backend_, options_));
    return MeanTime(backend_, options_.warmup, options_.repetitions, &*flush_, options_.align,
                      run);
  }

  // Entries for operators measured by the kernel `key` (timed once by
  // `measure`): one entry per distinct (class, name, FLOPs).
  // The bytes an entry's operators move (workload/operators.h's count);
  // zero is "not given" (a profile's byte counts are positive).
  static void SetBytes(ComputeProfileEntry& e, Bytes forward, Bytes backward) {
    if (forward > Bytes::Zero()) e.forward_bytes = forward;
    if (backward > Bytes::Zero()) e.backward_bytes = backward;
  }

  // Entries for operators measured by the kernel `key` (timed once by
  // `measure`): one entry per distinct (class, name, FLOPs), carrying the
  // bytes of `op` (or `bytes`, for an entry covering several operators)
  // and the names it `covers`.
  struct Moved {
    Bytes forward;
    Bytes backward;
  };
  template <typename Measure>
  void AddNamed(const Operator& op, const std::string& name, Flops forward_flops,
                const std::string& key, Measure measure) {
    AddNamed(op, name, forward_flops, Moved{op.forward_bytes, op.backward_bytes}, {}, key,
             measure);
  }
  template <typename Measure>
  void AddNamed(const Operator& op, const std::string& name, Flops forward_flops, Moved bytes,
                std::vector<std::string> covers, const std::string& key, Measure measure) {
    auto entry_key = std::make_tuple(static_cast<int>(op.op_class), name, forward_flops.count(),
                                     bytes.forward.count());
    if (!named_.insert(entry_key).second) return;
    auto it = kernels_.find(key);
    if (it == kernels_.end()) {
      KernelTimes t = measure();
      std::string line = key + "   fwd " + FormatDuration(t.forward);
      if (t.backward.has_value()) line += "   bwd " + FormatDuration(*t.backward);
      Note(line);
      it = kernels_.emplace(key, t).first;
    }
    ComputeProfileEntry e;
    e.op_class = op.op_class;
    e.name = name;
    if (forward_flops.count() > 0) e.forward_flops = forward_flops;
    SetBytes(e, bytes.forward, bytes.backward);
    if (e.forward_flops.has_value()) e.covers = std::move(covers);
    e.forward = it->second.forward;
    e.backward = it->second.backward;
    entries_.push_back(std::move(e));
  }

  // Y = X·W forward; dX = dY·Wᵀ and dW = Xᵀ·dY backward (Narayanan et al.:
  // the backward is the two GEMMs of the input and weight gradients).
  void AddGemm(const Operator& op) {
    const GemmShape& g = *op.gemm;
    if (!gemms_.insert({g.m, g.n, g.k, g.batch}).second) return;
    const int64_t m = g.m, n = g.n, k = g.k;
    DeviceArray<float> x = Filled(backend_, m * k), w = Filled(backend_, k * n);
    DeviceArray<float> y = Filled(backend_, m * n), dx = Filled(backend_, m * k);
    DeviceArray<float> dw = Filled(backend_, k * n);
    const Duration fwd = Time([&] {
      for (int64_t b = 0; b < g.batch; ++b) {
        backend_.Gemm(false, false, m, n, k, 1.0f, x.data(), k, w.data(), n, 0.0f, y.data(), n);
      }
    });
    const Duration bwd = Time([&] {
      for (int64_t b = 0; b < g.batch; ++b) {
        backend_.Gemm(false, true, m, k, n, 1.0f, y.data(), n, w.data(), n, 0.0f, dx.data(), k);
        backend_.Gemm(true, false, k, n, m, 1.0f, x.data(), k, y.data(), n, 0.0f, dw.data(), n);
      }
    });
    const double flops = GemmFlops(g);
    std::string shape = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
    if (g.batch != 1) shape += " (batch " + std::to_string(g.batch) + ")";
    Note("gemm " + shape + "   fwd " + FormatDuration(fwd) + " (" + Rate(flops, fwd) +
         ")   bwd " + FormatDuration(bwd) + " (" + Rate(2.0 * flops, bwd) + ")");
    ComputeProfileEntry e;
    e.op_class = OperatorClass::kGemm;
    e.gemm = g;
    e.forward_flops = Flop(flops);
    SetBytes(e, op.forward_bytes, op.backward_bytes);
    e.forward = fwd;
    e.backward = bwd;
    entries_.push_back(std::move(e));
  }

  void AddAttention(const workload::LayerOperators& layer, size_t qk_index, const LayerDims& d) {
    const Operator& qk = layer.ops[qk_index];
    const std::string prefix = qk.name.substr(0, qk.name.size() - 3);
    Flops flops = qk.forward_flops;
    Moved bytes{qk.forward_bytes, qk.backward_bytes};
    std::vector<std::string> covers = {qk.name};
    for (const char* suffix : {".softmax", ".av"}) {
      for (const Operator& op : layer.ops) {
        if (op.name != prefix + suffix) continue;
        flops += op.forward_flops;
        bytes.forward += op.forward_bytes;
        bytes.backward += op.backward_bytes;
        covers.push_back(op.name);
        break;
      }
    }
    AttentionShape s;
    s.batch = d.batch;
    s.sequence = d.sequence;
    s.heads = d.heads;
    s.kv_heads = d.kv_heads;
    s.head_dim = d.head_dim;
    s.row_stride = (d.heads + 2 * d.kv_heads) * d.head_dim;
    const std::string key = "b" + std::to_string(s.batch) + " s" + std::to_string(s.sequence) +
                            " heads " + std::to_string(s.heads) + "/" +
                            std::to_string(s.kv_heads) + " d" + std::to_string(s.head_dim);
    AddNamed(qk, prefix + ".core", flops, bytes, std::move(covers), "attention " + key, [&] {
      DeviceArray<float> qkv = Filled(backend_, s.rows() * s.row_stride);
      DeviceArray<float> out = Filled(backend_, s.rows() * s.heads * s.head_dim);
      DeviceArray<float> probs = Filled(backend_, s.probs_elements());
      DeviceArray<float> dqkv = Filled(backend_, s.rows() * s.row_stride);
      const float* q = qkv.data();
      const float* k = q + s.heads * s.head_dim;
      const float* v = k + s.kv_heads * s.head_dim;
      float* dq = dqkv.data();
      float* dk = dq + s.heads * s.head_dim;
      float* dv = dk + s.kv_heads * s.head_dim;
      KernelTimes t;
      t.forward = Time([&] { backend_.AttentionForward(s, q, k, v, out.data(), probs.data()); });
      t.backward = Time([&] {
        backend_.AttentionBackward(s, q, k, v, probs.data(), out.data(), dq, dk, dv);
      });
      return t;
    });
  }

  void AddNorm(const Operator& op, const LayerDims& d) {
    const int64_t rows = d.tokens, cols = d.hidden;
    const bool layer_norm = model_.norm == workload::NormKind::kLayerNorm;
    const std::string key = std::string(layer_norm ? "layernorm " : "rmsnorm ") +
                            std::to_string(rows) + "x" + std::to_string(cols);
    AddNamed(op, op.name, op.forward_flops, key, [&] {
      DeviceArray<float> x = Filled(backend_, rows * cols), y = Filled(backend_, rows * cols);
      DeviceArray<float> dx = Filled(backend_, rows * cols);
      DeviceArray<float> gamma = Filled(backend_, cols, 1.0f), beta = Filled(backend_, cols);
      DeviceArray<float> dgamma = Filled(backend_, cols), dbeta = Filled(backend_, cols);
      DeviceArray<float> mean = Filled(backend_, rows), rstd = Filled(backend_, rows);
      KernelTimes t;
      constexpr float kEps = 1e-5f;
      if (layer_norm) {
        t.forward = Time([&] {
          backend_.LayerNormForward(x.data(), gamma.data(), beta.data(), rows, cols, kEps,
                                    y.data(), mean.data(), rstd.data());
        });
        t.backward = Time([&] {
          backend_.LayerNormBackward(y.data(), x.data(), gamma.data(), mean.data(), rstd.data(),
                                     rows, cols, dx.data(), dgamma.data(), dbeta.data());
        });
      } else {
        t.forward = Time([&] {
          backend_.RmsNormForward(x.data(), gamma.data(), rows, cols, kEps, y.data(),
                                  rstd.data());
        });
        t.backward = Time([&] {
          backend_.RmsNormBackward(y.data(), x.data(), gamma.data(), rstd.data(), rows, cols,
                                   dx.data(), dgamma.data());
        });
      }
      return t;
    });
  }

  void AddElementwise(const Operator& op, const LayerDims& d) {
    if (op.name.ends_with(".softmax")) return;  // inside the attention core
    if (op.name.ends_with(".act")) {
      const workload::Activation act = model_.activation;
      if (act != workload::Activation::kGelu && act != workload::Activation::kSwiGlu) {
        Note("skipped " + op.name + ": the backends have no " +
             std::string(workload::ActivationName(act)) + " kernel");
        return;
      }
      const int64_t rows = d.tokens, cols = d.ffn;
      const bool gelu = act == workload::Activation::kGelu;
      const std::string key =
          std::string(gelu ? "gelu " : "swiglu ") + std::to_string(rows) + "x" +
          std::to_string(cols);
      AddNamed(op, op.name, op.forward_flops, key, [&] {
        const int64_t in = gelu ? rows * cols : 2 * rows * cols;
        DeviceArray<float> x = Filled(backend_, in), dx = Filled(backend_, in);
        DeviceArray<float> y = Filled(backend_, rows * cols);
        KernelTimes t;
        if (gelu) {
          t.forward = Time([&] { backend_.GeluForward(x.data(), y.data(), rows * cols); });
          t.backward = Time([&] {
            backend_.GeluBackward(x.data(), y.data(), dx.data(), rows * cols);
          });
        } else {
          t.forward = Time([&] { backend_.SwiGluForward(x.data(), rows, cols, y.data()); });
          t.backward = Time([&] {
            backend_.SwiGluBackward(x.data(), y.data(), rows, cols, dx.data());
          });
        }
        return t;
      });
      return;
    }
    if (op.name.ends_with("dropout_add") || op.name.ends_with(".dropout")) {
      // The executor has no dropout: the residual (or position) add. Its
      // backward passes the gradient through (no kernel), so none is entered.
      const int64_t n = d.tokens * d.hidden;
      AddNamed(op, op.name, op.forward_flops, "add " + std::to_string(n), [&] {
        DeviceArray<float> a = Filled(backend_, n), b = Filled(backend_, n);
        DeviceArray<float> out = Filled(backend_, n);
        KernelTimes t;
        t.forward = Time([&] { backend_.Add(a.data(), b.data(), out.data(), n); });
        return t;
      });
      return;
    }
    Note("skipped " + op.name + ": no backend kernel implements it");
  }

  void AddEmbedding(const Operator& op, const LayerDims& d) {
    int64_t table_rows = 0;
    if (op.name == "embed.tokens") {
      table_rows = d.vocab_local;
    } else if (op.name == "embed.positions") {
      table_rows = model_.max_sequence_length;
    } else if (op.name == "embed.token_types") {
      table_rows = model_.type_vocab_size;
    }
    if (table_rows <= 0) {
      Note("skipped " + op.name + ": no backend kernel implements it");
      return;
    }
    const int64_t rows = d.tokens, hidden = d.hidden;
    const std::string key = "lookup " + std::to_string(rows) + " of " +
                            std::to_string(table_rows) + "x" + std::to_string(hidden);
    AddNamed(op, op.name, op.forward_flops, key, [&] {
      DeviceArray<int32_t> ids = Ids(backend_, rows, table_rows);
      DeviceArray<float> table = Filled(backend_, table_rows * hidden);
      DeviceArray<float> out = Filled(backend_, rows * hidden);
      KernelTimes t;
      t.forward = Time([&] {
        backend_.EmbeddingForward(ids.data(), rows, table.data(), 0, table_rows, hidden,
                                  out.data());
      });
      t.backward = Time([&] {
        backend_.EmbeddingBackward(ids.data(), rows, out.data(), 0, table_rows, hidden,
                                   table.data());
      });
      return t;
    });
  }

  // Megatron-LM's vocabulary-parallel cross-entropy: the three forward steps
  // (row max, partial sums, loss) and the backward, without the tp
  // all-reduces between them (the collective profiler measures those).
  void AddLoss(const Operator& op, const LayerDims& d) {
    const int64_t rows = d.tokens, vocab = d.vocab_local;
    const std::string key =
        "cross-entropy " + std::to_string(rows) + "x" + std::to_string(vocab);
    AddNamed(op, op.name, op.forward_flops, key, [&] {
      DeviceArray<float> logits = Filled(backend_, rows * vocab);
      DeviceArray<float> dlogits = Filled(backend_, rows * vocab);
      DeviceArray<int32_t> targets = Ids(backend_, rows, vocab);
      DeviceArray<float> row_max = Filled(backend_, rows), sum_exp = Filled(backend_, rows);
      DeviceArray<float> target_logit = Filled(backend_, rows), loss = Filled(backend_, rows);
      KernelTimes t;
      t.forward = Time([&] {
        backend_.LogitsRowMax(logits.data(), rows, vocab, row_max.data());
        backend_.CrossEntropyPartials(logits.data(), rows, vocab, row_max.data(), targets.data(),
                                      0, sum_exp.data(), target_logit.data());
        backend_.CrossEntropyLoss(row_max.data(), sum_exp.data(), target_logit.data(), rows,
                                  loss.data());
      });
      t.backward = Time([&] {
        backend_.CrossEntropyBackward(logits.data(), rows, vocab, row_max.data(), sum_exp.data(),
                                      targets.data(), 0, 1.0f / static_cast<float>(rows),
                                      dlogits.data());
      });
      return t;
    });
  }

  Backend& backend_;
  const workload::ModelSpec& model_;
  const ComputeProfileOptions& options_;
  const std::function<void(const std::string&)>& progress_;
  std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>> gemms_;
  std::set<std::tuple<int, std::string, double, int64_t>> named_;
  std::map<std::string, KernelTimes> kernels_;
  std::vector<ComputeProfileEntry> entries_;
  std::optional<DeviceArray<float>> flush_;  // ComputeProfileOptions::flush_bytes
};

// ---- Collectives ----------------------------------------------------------------

constexpr int kElementBytes = 4;  // float32, nccl-tests' default type

// The value rank `r` contributes at element `i` when results are checked:
// small integers, so that sums over ranks are exact in float32.
float CheckValue(int r, int64_t i) { return static_cast<float>(r + 1 + i % 13); }

// Does the communicator offer an in-place form of `op`? All-reduce and
// broadcast work in place by contract. The others take distinct send and
// receive buffers: MPI forbids aliasing them without MPI_IN_PLACE, which
// the Communicator interface does not expose, so their in-place columns
// repeat the out-of-place measurement (and say so in the log).
bool MeasuresInPlace(CollectiveOp op) {
  return op == CollectiveOp::kAllReduce || op == CollectiveOp::kBroadcast;
}

struct Variant {
  double time_us = 0;
  double algbw_gbps = 0;
  double busbw_gbps = 0;
  std::optional<int64_t> wrong;  // nullopt: not checked (printed N/A)
};

class CollectiveProfiler {
 public:
  CollectiveProfiler(MpiWorld& world, Backend& backend, Communicator& comm,
                     const CollectiveProfileOptions& options, int64_t capacity)
      : world_(world),
        backend_(backend),
        comm_(comm),
        options_(options),
        n_(comm.size()),
        rank_(comm.rank()),
        send_(backend, capacity),
        recv_(backend, capacity) {}

  // Elements per rank buffer for `size` bytes (nccl-tests' count column):
  // 0 when the size holds less than one element per rank.
  int64_t Count(CollectiveOp op, int64_t size) const {
    return traces::NcclTestsCount(op, size, n_, kElementBytes);
  }
  // nccl-tests' size of `count`: the whole array.
  int64_t SizeOf(CollectiveOp op, int64_t count) const {
    const bool per_rank = op == CollectiveOp::kAllGather || op == CollectiveOp::kReduceScatter ||
                          op == CollectiveOp::kAllToAll;
    return count * kElementBytes * (per_rank ? n_ : 1);
  }
  // Elements the op touches in the larger of its two buffers.
  int64_t Footprint(CollectiveOp op, int64_t count) const { return SizeOf(op, count) / 4; }

  // Times `op` on `count` elements, in place or not, and checks its result.
  Variant Measure(CollectiveOp op, int64_t count, bool in_place) {
    const int64_t elems = Footprint(op, count);
    backend_.Fill(send_.data(), elems, 0.0f);
    backend_.Fill(recv_.data(), elems, 0.0f);
    for (int i = 0; i < options_.warmup; ++i) Run(op, count, in_place);
    backend_.Synchronize();
    world_.Barrier();
    const double start = MpiWorld::Now();
    for (int i = 0; i < options_.iterations; ++i) Run(op, count, in_place);
    backend_.Synchronize();
    const double per_iteration = (MpiWorld::Now() - start) / options_.iterations;
    // The slowest rank's time (nccl-tests' -a 3; its default -a 1 averages
    // over ranks): a collective is done when its last rank is.
    const double seconds = world_.AllReduceMax(per_iteration);
    Variant v;
    v.time_us = seconds * 1e6;
    v.algbw_gbps = static_cast<double>(SizeOf(op, count)) / seconds * 1e-9;
    v.busbw_gbps = v.algbw_gbps * traces::BusBandwidthFactor(op, n_);
    v.wrong = static_cast<int64_t>(world_.AllReduceSum(static_cast<double>(Check(op, count,
                                                                                 in_place))));
    return v;
  }

 private:
  void Run(CollectiveOp op, int64_t count, bool in_place) {
    float* send = send_.data();
    float* recv = recv_.data();
    switch (op) {
      case CollectiveOp::kAllReduce:
        if (!in_place) backend_.CopyOnDevice(send, recv, count * kElementBytes);
        comm_.AllReduce(recv, count);
        break;
      case CollectiveOp::kBroadcast:
        if (!in_place && rank_ == NcclTestsRoot(op)) {
          backend_.CopyOnDevice(send, recv, count * kElementBytes);
        }
        comm_.Broadcast(recv, count, NcclTestsRoot(op));
        break;
      case CollectiveOp::kAllGather:
        comm_.AllGather(send, recv, count);
        break;
      case CollectiveOp::kReduceScatter:
        comm_.ReduceScatter(send, recv, count);
        break;
      case CollectiveOp::kAllToAll:
        comm_.AllToAll(send, recv, count);
        break;
      case CollectiveOp::kSendRecv: {
        // nccl-tests' sendrecv: each rank sends to the next and receives
        // from the previous (a ring), as one batch.
        const int next = (rank_ + 1) % n_;
        const int prev = (rank_ - 1 + n_) % n_;
        std::unique_ptr<CommRequest> s = comm_.Isend(send, count, next);
        std::unique_ptr<CommRequest> r = comm_.Irecv(recv, count, prev);
        s->Wait();
        r->Wait();
        break;
      }
      case CollectiveOp::kReduce:
        ORRERY_CHECK(false) << "reduce is not measured (the Communicator has no reduce)";
    }
  }

  // Runs the op once on known inputs and counts the wrong output elements
  // of this rank (nccl-tests' #wrong).
  int64_t Check(CollectiveOp op, int64_t count, bool in_place) {
    const int64_t elems = Footprint(op, count);
    std::vector<float> host(static_cast<size_t>(elems));
    auto upload = [&](float* dst, int64_t n, auto value) {
      for (int64_t i = 0; i < n; ++i) host[static_cast<size_t>(i)] = value(i);
      backend_.CopyFromHost(host.data(), dst, n * kElementBytes);
    };
    const float garbage = -1.0f;
    backend_.Fill(recv_.data(), elems, garbage);
    const int r = rank_;
    const int64_t ranks_sum = int64_t{n_} * (n_ + 1) / 2;
    std::function<float(int64_t)> expected;
    int64_t out = count;
    switch (op) {
      case CollectiveOp::kAllReduce:
        upload(in_place ? recv_.data() : send_.data(), count,
               [&](int64_t i) { return CheckValue(r, i); });
        expected = [&](int64_t i) {
          return static_cast<float>(ranks_sum + int64_t{n_} * (i % 13));
        };
        break;
      case CollectiveOp::kBroadcast:
        if (r == NcclTestsRoot(op)) {
          upload(in_place ? recv_.data() : send_.data(), count,
                 [&](int64_t i) { return CheckValue(0, i); });
        }
        expected = [&](int64_t i) { return CheckValue(0, i); };
        break;
      case CollectiveOp::kAllGather:
        upload(send_.data(), count, [&](int64_t i) { return CheckValue(r, i); });
        expected = [&](int64_t i) {
          return CheckValue(static_cast<int>(i / count), i % count);
        };
        out = count * n_;
        break;
      case CollectiveOp::kReduceScatter:
        upload(send_.data(), count * n_, [&](int64_t i) { return CheckValue(r, i); });
        expected = [&](int64_t i) {
          return static_cast<float>(ranks_sum + int64_t{n_} * ((r * count + i) % 13));
        };
        break;
      case CollectiveOp::kAllToAll:
        upload(send_.data(), count * n_, [&](int64_t i) { return CheckValue(r, i); });
        expected = [&](int64_t i) {
          return CheckValue(static_cast<int>(i / count), r * count + i % count);
        };
        out = count * n_;
        break;
      case CollectiveOp::kSendRecv:
        upload(send_.data(), count, [&](int64_t i) { return CheckValue(r, i); });
        expected = [&](int64_t i) { return CheckValue((r - 1 + n_) % n_, i); };
        break;
      case CollectiveOp::kReduce:
        return 0;
    }
    world_.Barrier();
    Run(op, count, in_place);
    backend_.Synchronize();
    backend_.CopyToHost(recv_.data(), host.data(), out * kElementBytes);
    int64_t wrong = 0;
    for (int64_t i = 0; i < out; ++i) {
      if (host[static_cast<size_t>(i)] != expected(i)) ++wrong;
    }
    return wrong;
  }

  MpiWorld& world_;
  Backend& backend_;
  Communicator& comm_;
  const CollectiveProfileOptions& options_;
  int n_;
  int rank_;
  DeviceArray<float> send_;
  DeviceArray<float> recv_;
};

std::string Fixed(double v, const char* format) {
  char buf[48];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string VariantColumns(const Variant& v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, " %s %7.2f %7.2f  %5s", traces::NcclTestsTime(v.time_us).c_str(),
                v.algbw_gbps, v.busbw_gbps,
                v.wrong.has_value() ? std::to_string(*v.wrong).c_str() : "N/A");
  return buf;
}

}  // namespace

namespace {

// The model's layers at `tp`, `micro_batch` and `sequence` into `profiler`.
Status ProfileLayers(ComputeProfiler& profiler, const workload::ModelSpec& model, int tp,
                     int64_t micro_batch, int64_t sequence) {
  workload::LayerLayout layout;
  layout.tp = tp;
  workload::ExpansionOptions expansion;
  expansion.activation_bytes = 4;  // the backends compute in fp32
  if (model.vocab_size > 0 && model.vocab_size % tp != 0) {
    return InvalidArgumentError("tp " + std::to_string(tp) +
                                " does not divide the vocabulary of " +
                                std::to_string(model.vocab_size) + " of " + model.name);
  }
  LayerDims d;
  d.batch = micro_batch;
  d.sequence = sequence;
  d.tokens = d.batch * d.sequence;
  d.hidden = model.hidden_size;
  d.heads = model.num_attention_heads / tp;
  d.kv_heads = model.num_kv_heads >= tp ? model.num_kv_heads / tp : 1;
  d.head_dim = model.head_dim;
  d.ffn = model.ffn_hidden_size / tp;
  d.vocab_local = model.vocab_size / tp;
  std::set<workload::LayerKind> seen;
  for (workload::LayerKind kind : workload::ModelLayers(model)) {
    if (!seen.insert(kind).second) continue;
    ORRERY_ASSIGN_OR_RETURN(workload::LayerOperators layer,
                            workload::ExpandLayer(model, kind, micro_batch, sequence, layout,
                                                  expansion));
    ORRERY_RETURN_IF_ERROR(profiler.Layer(layer, d));
  }
  return Status::Ok();
}

// The parameters one rank holds with the whole model on it, split tp ways.
Result<int64_t> ParametersPerRank(const workload::ModelSpec& model, int tp, int64_t sequence) {
  workload::LayerLayout layout;
  layout.tp = tp;
  std::map<workload::LayerKind, int64_t> per_kind;
  int64_t total = 0;
  for (workload::LayerKind kind : workload::ModelLayers(model)) {
    auto it = per_kind.find(kind);
    if (it == per_kind.end()) {
      ORRERY_ASSIGN_OR_RETURN(workload::LayerOperators layer,
                              workload::ExpandLayer(model, kind, 1, sequence, layout));
      it = per_kind.emplace(kind, layer.Parameters()).first;
    }
    total += it->second;
  }
  return total;
}

// The mean time of one AdamW step (Backend::AdamStep) over n parameters.
traces::OptimizerMeasurement TimeAdam(Backend& backend, int64_t n,
                                      const ComputeProfileOptions& options) {
  DeviceArray<float> param = Filled(backend, n), grad = Filled(backend, n, 1e-3f);
  DeviceArray<float> m = Filled(backend, n, 0.0f), v = Filled(backend, n, 0.0f);
  const AdamHyperparameters hyper;
  int64_t step = 0;
  traces::OptimizerMeasurement out;
  out.name = "adamw";
  out.parameters = n;
  DeviceArray<float> flush(backend, FlushElements(backend, options));
  out.step = MeanTime(backend, options.warmup, options.repetitions, &flush, options.align, [&] {
    backend.AdamStep(param.data(), grad.data(), m.data(), v.data(), n, hyper, ++step);
  });
  return out;
}

std::string JoinInts(const auto& values) {
  std::string out;
  for (const auto& v : values) out += (out.empty() ? "" : ",") + std::to_string(v);
  return out;
}

}  // namespace

Result<traces::ComputeProfile> ProfileCompute(
    Backend& backend, const workload::ModelSpec& model, const ComputeProfileOptions& options,
    const std::function<void(const std::string&)>& progress) {
  return ProfileComputeSweep(backend, model, options, {options.tp}, {options.micro_batch},
                             progress);
}

Result<traces::ComputeProfile> ProfileComputeSweep(
    Backend& backend, const workload::ModelSpec& model, const ComputeProfileOptions& options,
    const std::vector<int>& tps, const std::vector<int64_t>& micro_batches,
    const std::function<void(const std::string&)>& progress) {
  const bool tps_ok = !tps.empty() && std::all_of(tps.begin(), tps.end(), [](int t) {
    return t >= 1;
  });
  const bool micro_batches_ok =
      !micro_batches.empty() &&
      std::all_of(micro_batches.begin(), micro_batches.end(), [](int64_t b) { return b >= 1; });
  if (!tps_ok || !micro_batches_ok || options.sequence_length < 0 || options.warmup < 0 ||
      options.repetitions < 1 || options.max_optimizer_parameters < 1) {
    return InvalidArgumentError(
        "compute profile options: expected tp >= 1, micro-batch >= 1, sequence length >= 0 "
        "(0: the model's), warm-up >= 0, repetitions >= 1 and an optimizer cap >= 1");
  }
  const int64_t sequence =
      options.sequence_length > 0 ? options.sequence_length : model.default_sequence_length;
  ComputeProfiler profiler(backend, model, options, progress);
  std::vector<traces::OptimizerMeasurement> optimizer;
  std::set<int64_t> optimizer_sizes;
  for (int tp : tps) {
    for (int64_t micro_batch : micro_batches) {
      if (progress && (tps.size() > 1 || micro_batches.size() > 1)) {
        progress("# tp " + std::to_string(tp) + ", micro-batch " + std::to_string(micro_batch));
      }
      ORRERY_RETURN_IF_ERROR(ProfileLayers(profiler, model, tp, micro_batch, sequence));
    }
    if (!options.optimizer) continue;
    // AdamW over what one rank holds at this tp, and half and twice that,
    // for a line through several points.
    ORRERY_ASSIGN_OR_RETURN(int64_t held, ParametersPerRank(model, tp, sequence));
    for (int64_t n : {held / 2, held, 2 * held}) {
      n = std::min(n, options.max_optimizer_parameters);
      if (n < 1 || !optimizer_sizes.insert(n).second) continue;
      traces::OptimizerMeasurement m = TimeAdam(backend, n, options);
      if (progress) {
        progress("adamw " + std::to_string(n) + " parameters" +
                 (n == held ? " (one rank at tp " + std::to_string(tp) + ")" : "") + "   step " +
                 FormatDuration(m.step));
      }
      optimizer.push_back(std::move(m));
    }
  }
  traces::ComputeProfile profile;
  profile.device = backend.device_name();
  profile.precision = topology::Precision::kFp32;
  profile.source = "orrery profile: " + model.name + " on the " +
                   std::string(BackendKindName(backend.kind())) + " backend, tp " +
                   JoinInts(tps) + ", micro-batch " + JoinInts(micro_batches) + ", sequence " +
                   std::to_string(sequence) + "; mean of " +
                   std::to_string(options.repetitions) + " after " +
                   std::to_string(options.warmup) + " warm-up";
  profile.entries = profiler.TakeEntries();
  std::sort(optimizer.begin(), optimizer.end(),
            [](const traces::OptimizerMeasurement& a, const traces::OptimizerMeasurement& b) {
              return a.parameters < b.parameters;
            });
  profile.optimizer = std::move(optimizer);
  return profile;
}

int64_t CpuL2CacheBytes() {
  constexpr int64_t kFallback = int64_t{2} << 20;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
    std::ifstream level_file(dir + "/level");
    if (!level_file) break;
    int level = 0;
    level_file >> level;
    std::string type;
    std::ifstream(dir + "/type") >> type;
    if (level != 2 || type == "Instruction") continue;
    std::string size;
    std::ifstream(dir + "/size") >> size;
    const int64_t bytes = ParseCacheSize(size);
    return bytes > 0 ? bytes : kFallback;
  }
  return kFallback;
}

Status TakeSlowestRank(const MpiWorld& world, traces::ComputeProfile& profile) {
  // Times in seconds, in entry order (0 for a backward not measured), then
  // the optimizer steps; the count first, so that ranks that disagree are
  // found before anything is reduced.
  std::vector<double> times;
  for (const traces::ComputeProfileEntry& e : profile.entries) {
    times.push_back(e.forward.ToSeconds());
    times.push_back(e.backward.has_value() ? e.backward->ToSeconds() : 0.0);
  }
  for (const traces::OptimizerMeasurement& o : profile.optimizer) {
    times.push_back(o.step.ToSeconds());
  }
  const auto count = static_cast<int64_t>(times.size());
  const int64_t most = world.AllReduceMax(count);
  const int64_t fewest = -world.AllReduceMax(-count);
  if (most != fewest) {
    return FailedPreconditionError("the ranks' compute profiles differ (between " +
                                   std::to_string(fewest) + " and " + std::to_string(most) +
                                   " timings per rank)");
  }
  world.AllReduceMax(times);
  size_t i = 0;
  for (traces::ComputeProfileEntry& e : profile.entries) {
    e.forward = Seconds(times[i++]);
    const double backward = times[i++];
    if (e.backward.has_value()) e.backward = Seconds(backward);
  }
  for (traces::OptimizerMeasurement& o : profile.optimizer) o.step = Seconds(times[i++]);
  return Status::Ok();
}

Result<CollectiveProfile> ProfileCollectives(MpiWorld& world, Backend& backend,
                                             const CollectiveProfileOptions& options,
                                             const std::function<void(const std::string&)>& print) {
  std::vector<CollectiveOp> ops = options.ops;
  if (ops.empty()) {
    ops = {CollectiveOp::kAllReduce, CollectiveOp::kAllGather, CollectiveOp::kReduceScatter,
           CollectiveOp::kAllToAll, CollectiveOp::kSendRecv};
  }
  for (CollectiveOp op : ops) {
    if (op == CollectiveOp::kReduce) {
      return InvalidArgumentError(
          "reduce cannot be profiled: the executor's communicators have no reduce (profile "
          "allreduce, allgather, reducescatter, alltoall, broadcast or sendrecv)");
    }
  }
  if (options.min_bytes < 1 || options.max_bytes < options.min_bytes || options.warmup < 0 ||
      options.iterations < 1) {
    return InvalidArgumentError(
        "collective profile options: expected 1 <= min bytes <= max bytes, warm-up >= 0 and "
        "iterations >= 1, got min " + std::to_string(options.min_bytes) + ", max " +
        std::to_string(options.max_bytes) + ", warm-up " + std::to_string(options.warmup) +
        ", iterations " + std::to_string(options.iterations));
  }
  std::vector<int> all(static_cast<size_t>(world.size()));
  for (int r = 0; r < world.size(); ++r) all[static_cast<size_t>(r)] = r;
  ORRERY_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                          MakeCommunicator(world, backend, all));
  const int n = comm->size();
  const bool root = world.rank() == 0;
  auto emit = [&](std::string& log, const std::string& line) {
    log += line;
    log += '\n';
    if (root && print) print(line);
  };

  // nccl-tests' "#  Rank  0 Group  0 Pid 1234 on host device  0 [bus] name"
  // lines; the bracket holds the backend ("cpu", "cuda") where nccl-tests
  // prints the PCI bus id, which the Backend interface does not expose.
  char rank_line[512];
  std::snprintf(rank_line, sizeof rank_line,
                "#  Rank %2d Group  0 Pid %6d on %10s device %2d [%s] %s", world.rank(),
                static_cast<int>(getpid()), world.host_name().c_str(),
                world.local_rank(), std::string(BackendKindName(backend.kind())).c_str(),
                backend.device_name().c_str());
  const std::vector<std::string> rank_lines = world.GatherToRoot(rank_line);

  // One buffer pair for every op and size, as large as the largest size.
  const int64_t capacity = (options.max_bytes + kElementBytes - 1) / kElementBytes;
  CollectiveProfiler profiler(world, backend, *comm, options, capacity);

  CollectiveProfile result;
  for (CollectiveOp op : ops) {
    std::string log;
    const std::string name(traces::NcclTestsName(op));
    emit(log, "# Collective test starting: " + name + "_perf");
    emit(log, "# nThread 1 nGpus 1 minBytes " + std::to_string(options.min_bytes) +
                  " maxBytes " + std::to_string(options.max_bytes) +
                  " step: 2(factor) warmup iters: " + std::to_string(options.warmup) +
                  " iters: " + std::to_string(options.iterations) +
                  " agg iters: 1 validation: 1 graph: 0");
    emit(log, "#");
    emit(log, "# Using devices");
    for (const std::string& line : rank_lines) emit(log, line);
    emit(log, "#");
    emit(log, "# orrery profile over " + std::to_string(n) + " ranks (" + comm->library() +
                  "); time = mean per iteration, maximum over ranks");
    if (!MeasuresInPlace(op)) {
      emit(log, "# in-place columns repeat the out-of-place measurement: the communicator "
                "takes distinct send and receive buffers for " +
                    std::string(traces::CollectiveOpName(op)));
    }
    emit(log, "#");
    emit(log, "#                                                              out-of-place      "
              "                 in-place          ");
    emit(log, "#       size         count      type   redop    root     time   algbw   busbw "
              "#wrong     time   algbw   busbw #wrong");
    emit(log, "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)   "
              "         (us)  (GB/s)  (GB/s)       ");
    int64_t wrong_total = 0;
    double busbw_sum = 0;
    int busbw_count = 0;
    for (int64_t size = options.min_bytes; size <= options.max_bytes; size *= 2) {
      const int64_t count = profiler.Count(op, size);
      if (count < 1) {
        emit(log, "# size " + std::to_string(size) + " B skipped: less than one float per rank");
        continue;
      }
      const int64_t bytes = profiler.SizeOf(op, count);
      if (bytes > capacity * kElementBytes) {
        emit(log, "# size " + std::to_string(size) + " B skipped: does not fit the buffers of " +
                      std::to_string(options.max_bytes) + " B");
        continue;
      }
      const Variant out_of_place = profiler.Measure(op, count, /*in_place=*/false);
      Variant in_place = out_of_place;
      if (MeasuresInPlace(op)) {
        in_place = profiler.Measure(op, count, /*in_place=*/true);
        busbw_sum += in_place.busbw_gbps;
        ++busbw_count;
      } else {
        in_place.wrong.reset();
      }
      busbw_sum += out_of_place.busbw_gbps;
      ++busbw_count;
      wrong_total += out_of_place.wrong.value_or(0) + in_place.wrong.value_or(0);
      char row[128];
      std::snprintf(row, sizeof row, "%12lld  %12lld  %8s  %6s  %6d",
                    static_cast<long long>(bytes), static_cast<long long>(count), "float",
                    std::string(NcclTestsRedOp(op)).c_str(), NcclTestsRoot(op));
      emit(log, row + VariantColumns(out_of_place) + VariantColumns(in_place));
      CollectiveMeasurement m;
      m.op = op;
      m.ranks = n;
      m.bytes = bytes;
      m.time_us = out_of_place.time_us;
      m.algbw_gbps = out_of_place.algbw_gbps;
      m.busbw_gbps = out_of_place.busbw_gbps;
      if (root) result.rows.push_back(m);
      if (size > std::numeric_limits<int64_t>::max() / 2) break;
    }
    emit(log, "# Out of bounds values : " + std::to_string(wrong_total) +
                  (wrong_total == 0 ? " OK" : " FAILED"));
    emit(log, "# Avg bus bandwidth    : " +
                  Fixed(busbw_count > 0 ? busbw_sum / busbw_count : 0.0, "%g"));
    emit(log, "#");
    if (root) result.logs.emplace_back(op, std::move(log));
  }
  return result;
}

}  // namespace orrery::exec
