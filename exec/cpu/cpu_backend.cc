#include "exec/cpu/cpu_backend.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/check.h"

namespace orrery::exec {
namespace {

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const RowMajorMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using MatrixMap = Eigen::Map<RowMajorMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

constexpr int64_t kAlignment = 256;

ConstMatrixMap ConstView(const float* p, int64_t rows, int64_t cols, int64_t stride) {
  return ConstMatrixMap(p, rows, cols, Eigen::OuterStride<>(stride));
}
MatrixMap View(float* p, int64_t rows, int64_t cols, int64_t stride) {
  return MatrixMap(p, rows, cols, Eigen::OuterStride<>(stride));
}

// C = alpha·a·b + beta·C for Eigen expressions a (m×k) and b (k×n).
template <typename A, typename B>
void GemmInto(const A& a, const B& b, float alpha, float beta, MatrixMap& c) {
  if (beta == 0.0f) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != 1.0f) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

// The "model name" of the first processor in /proc/cpuinfo.
std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    size_t begin = line.find_first_not_of(" \t", colon + 1);
    if (begin == std::string::npos) continue;
    size_t end = line.find_last_not_of(" \t\r");
    return line.substr(begin, end - begin + 1);
  }
  return "unknown CPU";
}

float Sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

// √(2/π), GELU's tanh-approximation constant (Hendrycks & Gimpel 2016).
constexpr float kGeluC = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;

// cos and sin of position·θ_i for every position < sequence and i < half,
// θ_i = theta^(−2i/head_dim) (RoFormer; Llama's rotate-half form),
// computed in double and stored [position][i].
void RopeTables(int64_t sequence, int64_t head_dim, float theta, std::vector<float>& cos_table,
                std::vector<float>& sin_table) {
  const int64_t half = head_dim / 2;
  cos_table.resize(sequence * half);
  sin_table.resize(sequence * half);
  for (int64_t i = 0; i < half; ++i) {
    double inv_freq = std::pow(static_cast<double>(theta),
                               -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    for (int64_t p = 0; p < sequence; ++p) {
      double angle = static_cast<double>(p) * inv_freq;
      cos_table[p * half + i] = static_cast<float>(std::cos(angle));
      sin_table[p * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

// Rotates pairs (x_i, x_{i+d/2}) by angle·direction (direction ±1).
void Rope(float* x, int64_t sequence, int64_t batch, int64_t heads, int64_t head_dim,
          int64_t row_stride, float theta, float direction) {
  ORRERY_CHECK(head_dim % 2 == 0) << "RoPE needs an even head_dim, got " << head_dim;
  const int64_t half = head_dim / 2;
  std::vector<float> cos_table;
  std::vector<float> sin_table;
  RopeTables(sequence, head_dim, theta, cos_table, sin_table);
  for (int64_t p = 0; p < sequence; ++p) {
    const float* cs = cos_table.data() + p * half;
    const float* sn = sin_table.data() + p * half;
    for (int64_t b = 0; b < batch; ++b) {
      float* row = x + (p * batch + b) * row_stride;
      for (int64_t h = 0; h < heads; ++h) {
        float* head = row + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          float c = cs[i];
          float s = direction * sn[i];
          float x0 = head[i];
          float x1 = head[i + half];
          head[i] = x0 * c - x1 * s;
          head[i + half] = x1 * c + x0 * s;
        }
      }
    }
  }
}

class CpuBackend final : public Backend {
 public:
  CpuBackend() : device_name_(MakeDeviceName()) { Eigen::setNbThreads(1); }
  ~CpuBackend() override {
    ReleaseCachedBlocks();
  }

  BackendKind kind() const override { return BackendKind::kCpu; }
  std::string device_name() const override { return device_name_; }

  void CopyToHost(const void* device_src, void* host_dst, int64_t bytes) override {
    if (bytes > 0) std::memmove(host_dst, device_src, bytes);
  }
  void CopyFromHost(const void* host_src, void* device_dst, int64_t bytes) override {
    if (bytes > 0) std::memmove(device_dst, host_src, bytes);
  }
  void CopyOnDevice(const void* src, void* dst, int64_t bytes) override {
    if (bytes > 0) std::memmove(dst, src, bytes);
  }
  void Fill(float* x, int64_t n, float value) override { std::fill(x, x + n, value); }
  void Synchronize() override {}

  void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
            int64_t ldc) override {
    if (m == 0 || n == 0) return;
    MatrixMap cm = View(c, m, n, ldc);
    if (k == 0) {
      if (beta == 0.0f) {
        cm.setZero();
      } else {
        cm *= beta;
      }
      return;
    }
    // A is stored m×k (k×m transposed), B k×n (n×k transposed).
    ConstMatrixMap am = transpose_a ? ConstView(a, k, m, lda) : ConstView(a, m, k, lda);
    ConstMatrixMap bm = transpose_b ? ConstView(b, n, k, ldb) : ConstView(b, k, n, ldb);
    if (!transpose_a && !transpose_b) {
      GemmInto(am, bm, alpha, beta, cm);
    } else if (transpose_a && !transpose_b) {
      GemmInto(am.transpose(), bm, alpha, beta, cm);
    } else if (!transpose_a && transpose_b) {
      GemmInto(am, bm.transpose(), alpha, beta, cm);
    } else {
      GemmInto(am.transpose(), bm.transpose(), alpha, beta, cm);
    }
  }

  void Add(const float* a, const float* b, float* out, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }
  void Axpy(float alpha, const float* x, float* y, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  }
  void Scale(float* x, int64_t n, float alpha) override {
    for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
  }
  void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols) override {
    for (int64_t r = 0; r < rows; ++r) {
      float* row = y + r * cols;
      for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
    }
  }
  void BiasGradient(const float* dy, int64_t rows, int64_t cols, float* dbias) override {
    std::vector<double>& acc = ZeroedColumnAccumulator(0, cols);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = dy + r * cols;
      for (int64_t c = 0; c < cols; ++c) acc[c] += row[c];
    }
    for (int64_t c = 0; c < cols; ++c) dbias[c] += static_cast<float>(acc[c]);
  }
  double Sum(const float* x, int64_t n) override {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += x[i];
    return s;
  }
  double SumOfSquares(const float* x, int64_t n) override {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
    return s;
  }

  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int64_t cols, float eps, float* y, float* mean, float* rstd) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      double sum = 0.0;
      for (int64_t c = 0; c < cols; ++c) sum += xr[c];
      const double mu = sum / static_cast<double>(cols);
      double squares = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        double d = xr[c] - mu;
        squares += d * d;
      }
      const double variance = squares / static_cast<double>(cols);
      const float rs = static_cast<float>(1.0 / std::sqrt(variance + static_cast<double>(eps)));
      const float m = static_cast<float>(mu);
      for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) * rs * gamma[c] + beta[c];
      mean[r] = m;
      rstd[r] = rs;
    }
  }

  // x̂ = (x − μ)·rstd, g = dy·γ:  dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
  void LayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int64_t cols, float* dx, float* dgamma,
                         float* dbeta) override {
    std::vector<double>& dgamma_acc = ZeroedColumnAccumulator(0, cols);
    std::vector<double>& dbeta_acc = ZeroedColumnAccumulator(1, cols);
    for (int64_t r = 0; r < rows; ++r) {
      const float* dyr = dy + r * cols;
      const float* xr = x + r * cols;
      float* dxr = dx + r * cols;
      const float m = mean[r];
      const float rs = rstd[r];
      double sum_g = 0.0;
      double sum_gx = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        const float xhat = (xr[c] - m) * rs;
        const float g = dyr[c] * gamma[c];
        sum_g += g;
        sum_gx += static_cast<double>(g) * xhat;
        dgamma_acc[c] += static_cast<double>(dyr[c]) * xhat;
        dbeta_acc[c] += dyr[c];
      }
      const float mean_g = static_cast<float>(sum_g / static_cast<double>(cols));
      const float mean_gx = static_cast<float>(sum_gx / static_cast<double>(cols));
      for (int64_t c = 0; c < cols; ++c) {
        const float xhat = (xr[c] - m) * rs;
        dxr[c] = rs * (dyr[c] * gamma[c] - mean_g - xhat * mean_gx);
      }
    }
    for (int64_t c = 0; c < cols; ++c) {
      dgamma[c] += static_cast<float>(dgamma_acc[c]);
      dbeta[c] += static_cast<float>(dbeta_acc[c]);
    }
  }

  void RmsNormForward(const float* x, const float* gamma, int64_t rows, int64_t cols, float eps,
                      float* y, float* rstd) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      double squares = 0.0;
      for (int64_t c = 0; c < cols; ++c) squares += static_cast<double>(xr[c]) * xr[c];
      const float rs = static_cast<float>(
          1.0 / std::sqrt(squares / static_cast<double>(cols) + static_cast<double>(eps)));
      for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] * rs * gamma[c];
      rstd[r] = rs;
    }
  }

  // x̂ = x·rstd, g = dy·γ:  dx = rstd·(g − x̂·mean(g·x̂)).
  void RmsNormBackward(const float* dy, const float* x, const float* gamma, const float* rstd,
                       int64_t rows, int64_t cols, float* dx, float* dgamma) override {
    std::vector<double>& dgamma_acc = ZeroedColumnAccumulator(0, cols);
    for (int64_t r = 0; r < rows; ++r) {
      const float* dyr = dy + r * cols;
      const float* xr = x + r * cols;
      float* dxr = dx + r * cols;
      const float rs = rstd[r];
      double sum_gx = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        const float xhat = xr[c] * rs;
        sum_gx += static_cast<double>(dyr[c] * gamma[c]) * xhat;
        dgamma_acc[c] += static_cast<double>(dyr[c]) * xhat;
      }
      const float mean_gx = static_cast<float>(sum_gx / static_cast<double>(cols));
      for (int64_t c = 0; c < cols; ++c) {
        dxr[c] = rs * (dyr[c] * gamma[c] - xr[c] * rs * mean_gx);
      }
    }
    for (int64_t c = 0; c < cols; ++c) dgamma[c] += static_cast<float>(dgamma_acc[c]);
  }

  // tanh and exp below are Eigen's vectorized, branch-free approximations
  // (a few ulp in fp32), as PyTorch's CPU kernels use SLEEF's: libm's tanhf
  // and expf branch on their argument, so a kernel's time would depend on
  // the values it sees (GELU on N(0, 1) inputs 1.7x slower than on
  // N(0, 0.16)), and a profile could not time what a training step runs.
  void GeluForward(const float* x, float* y, int64_t n) override {
    const ConstArrayMap xv(x, n);
    ArrayMap(y, n) = 0.5f * xv * (1.0f + (kGeluC * (xv + kGeluA * xv.cube())).tanh());
  }
  // gelu'(x) = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²),
  // t = tanh(√(2/π)·(x + 0.044715·x³)).
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override {
    const ConstArrayMap xv(x, n);
    const Eigen::ArrayXf t = (kGeluC * (xv + kGeluA * xv.cube())).tanh();
    ArrayMap(dx, n) = ConstArrayMap(dy, n) *
                      (0.5f * (1.0f + t) + 0.5f * xv * (1.0f - t.square()) * kGeluC *
                                               (1.0f + 3.0f * kGeluA * xv.square()));
  }

  void SwiGluForward(const float* gate_up, int64_t rows, int64_t cols, float* out) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* gate = gate_up + r * 2 * cols;
      const float* up = gate + cols;
      float* o = out + r * cols;
      for (int64_t c = 0; c < cols; ++c) o[c] = gate[c] * Sigmoid(gate[c]) * up[c];
    }
  }
  // silu'(z) = σ(z)·(1 + z·(1 − σ(z))).
  void SwiGluBackward(const float* gate_up, const float* dout, int64_t rows, int64_t cols,
                      float* dgate_up) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* gate = gate_up + r * 2 * cols;
      const float* up = gate + cols;
      const float* d = dout + r * cols;
      float* dgate = dgate_up + r * 2 * cols;
      float* dup = dgate + cols;
      for (int64_t c = 0; c < cols; ++c) {
        const float z = gate[c];
        const float s = Sigmoid(z);
        dgate[c] = d[c] * up[c] * s * (1.0f + z * (1.0f - s));
        dup[c] = d[c] * z * s;
      }
    }
  }

  void RopeForward(float* x, int64_t sequence, int64_t batch, int64_t heads, int64_t head_dim,
                   int64_t row_stride, float theta) override {
    Rope(x, sequence, batch, heads, head_dim, row_stride, theta, 1.0f);
  }
  void RopeBackward(float* dx, int64_t sequence, int64_t batch, int64_t heads, int64_t head_dim,
                    int64_t row_stride, float theta) override {
    Rope(dx, sequence, batch, heads, head_dim, row_stride, theta, -1.0f);
  }

  // Per sample b and query head h (kv head g): the sequence × head_dim
  // blocks of q, k, v are strided views (rows batch·row_stride apart).
  void AttentionForward(const AttentionShape& shape, const float* q, const float* k, const float* v,
                        float* out, float* probs) override {
    CheckAttentionShape(shape);
    const int64_t s = shape.sequence;
    const int64_t d = shape.head_dim;
    const int64_t group = shape.heads / shape.kv_heads;
    const int64_t in_stride = shape.batch * shape.row_stride;
    const int64_t out_cols = shape.heads * d;
    const int64_t out_stride = shape.batch * out_cols;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    for (int64_t b = 0; b < shape.batch; ++b) {
      for (int64_t h = 0; h < shape.heads; ++h) {
        const int64_t g = h / group;
        ConstMatrixMap qm = ConstView(q + b * shape.row_stride + h * d, s, d, in_stride);
        ConstMatrixMap km = ConstView(k + b * shape.row_stride + g * d, s, d, in_stride);
        ConstMatrixMap vm = ConstView(v + b * shape.row_stride + g * d, s, d, in_stride);
        MatrixMap p = View(probs + (b * shape.heads + h) * s * s, s, s, s);
        p.noalias() = scale * qm * km.transpose();
        for (int64_t i = 0; i < s; ++i) {
          float* row = p.data() + i * s;
          float row_max = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j <= i; ++j) row_max = std::max(row_max, row[j]);
          ArrayMap r(row, i + 1);
          r = (r - row_max).exp();
          const double sum = r.cast<double>().sum();
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
          for (int64_t j = i + 1; j < s; ++j) row[j] = 0.0f;
        }
        MatrixMap o = View(out + b * out_cols + h * d, s, d, out_stride);
        o.noalias() = p * vm;
      }
    }
  }

  // dV = Pᵀ·dO;  dP = dO·Vᵀ;  dS = P ∘ (dP − rowsum(dP ∘ P));
  // dQ = dS·K/√d;  dK = dSᵀ·Q/√d — summed over a kv head's query heads.
  void AttentionBackward(const AttentionShape& shape, const float* q, const float* k,
                         const float* v, const float* probs, const float* dout, float* dq,
                         float* dk, float* dv) override {
    CheckAttentionShape(shape);
    const int64_t s = shape.sequence;
    const int64_t d = shape.head_dim;
    const int64_t group = shape.heads / shape.kv_heads;
    const int64_t in_stride = shape.batch * shape.row_stride;
    const int64_t out_cols = shape.heads * d;
    const int64_t out_stride = shape.batch * out_cols;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    scratch_.resize(s * s);
    MatrixMap ds = View(scratch_.data(), s, s, s);
    for (int64_t b = 0; b < shape.batch; ++b) {
      for (int64_t g = 0; g < shape.kv_heads; ++g) {
        ConstMatrixMap km = ConstView(k + b * shape.row_stride + g * d, s, d, in_stride);
        ConstMatrixMap vm = ConstView(v + b * shape.row_stride + g * d, s, d, in_stride);
        MatrixMap dkm = View(dk + b * shape.row_stride + g * d, s, d, in_stride);
        MatrixMap dvm = View(dv + b * shape.row_stride + g * d, s, d, in_stride);
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const bool first = h == g * group;
          ConstMatrixMap qm = ConstView(q + b * shape.row_stride + h * d, s, d, in_stride);
          ConstMatrixMap p = ConstView(probs + (b * shape.heads + h) * s * s, s, s, s);
          ConstMatrixMap dom = ConstView(dout + b * out_cols + h * d, s, d, out_stride);
          MatrixMap dqm = View(dq + b * shape.row_stride + h * d, s, d, in_stride);
          if (first) {
            dvm.noalias() = p.transpose() * dom;
          } else {
            dvm.noalias() += p.transpose() * dom;
          }
          ds.noalias() = dom * vm.transpose();
          for (int64_t i = 0; i < s; ++i) {
            const float* prow = p.data() + i * s;
            float* row = ds.data() + i * s;
            double dot = 0.0;
            for (int64_t j = 0; j <= i; ++j) dot += static_cast<double>(row[j]) * prow[j];
            const float c = static_cast<float>(dot);
            for (int64_t j = 0; j <= i; ++j) row[j] = prow[j] * (row[j] - c);
            for (int64_t j = i + 1; j < s; ++j) row[j] = 0.0f;
          }
          dqm.noalias() = scale * ds * km;
          if (first) {
            dkm.noalias() = scale * ds.transpose() * qm;
          } else {
            dkm.noalias() += scale * ds.transpose() * qm;
          }
        }
      }
    }
  }

  void EmbeddingForward(const int32_t* ids, int64_t rows, const float* table, int64_t vocab_start,
                        int64_t vocab_local, int64_t hidden, float* out) override {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t local = static_cast<int64_t>(ids[r]) - vocab_start;
      float* o = out + r * hidden;
      if (local >= 0 && local < vocab_local) {
        std::memcpy(o, table + local * hidden, hidden * sizeof(float));
      } else {
        std::fill(o, o + hidden, 0.0f);
      }
    }
  }
  void EmbeddingBackward(const int32_t* ids, int64_t rows, const float* dout, int64_t vocab_start,
                         int64_t vocab_local, int64_t hidden, float* dtable) override {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t local = static_cast<int64_t>(ids[r]) - vocab_start;
      if (local < 0 || local >= vocab_local) continue;
      const float* d = dout + r * hidden;
      float* t = dtable + local * hidden;
      for (int64_t c = 0; c < hidden; ++c) t[c] += d[c];
    }
  }

  void LogitsRowMax(const float* logits, int64_t rows, int64_t vocab_local,
                    float* row_max) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* l = logits + r * vocab_local;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < vocab_local; ++c) m = std::max(m, l[c]);
      row_max[r] = m;
    }
  }
  void CrossEntropyPartials(const float* logits, int64_t rows, int64_t vocab_local,
                            const float* row_max, const int32_t* targets, int64_t vocab_start,
                            float* sum_exp, float* target_logit) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* l = logits + r * vocab_local;
      const float m = row_max[r];
      sum_exp[r] = static_cast<float>((ConstArrayMap(l, vocab_local) - m).exp().cast<double>().sum());
      const int64_t local = static_cast<int64_t>(targets[r]) - vocab_start;
      target_logit[r] = local >= 0 && local < vocab_local ? l[local] : 0.0f;
    }
  }
  void CrossEntropyLoss(const float* row_max, const float* sum_exp, const float* target_logit,
                        int64_t rows, float* loss) override {
    for (int64_t r = 0; r < rows; ++r) {
      loss[r] = std::log(sum_exp[r]) + row_max[r] - target_logit[r];
    }
  }
  // dlogits = scale·(exp(logit − max)/sum_exp − onehot(target)).
  void CrossEntropyBackward(const float* logits, int64_t rows, int64_t vocab_local,
                            const float* row_max, const float* sum_exp, const int32_t* targets,
                            int64_t vocab_start, float scale, float* dlogits) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* l = logits + r * vocab_local;
      float* dl = dlogits + r * vocab_local;
      const float m = row_max[r];
      const float inv_sum = 1.0f / sum_exp[r];
      ArrayMap(dl, vocab_local) = (scale * inv_sum) * (ConstArrayMap(l, vocab_local) - m).exp();
      const int64_t local = static_cast<int64_t>(targets[r]) - vocab_start;
      if (local >= 0 && local < vocab_local) dl[local] -= scale;
    }
  }

  void AdamStep(float* param, const float* grad, float* m, float* v, int64_t n,
                const AdamHyperparameters& hyper, int64_t step) override {
    ORRERY_CHECK_GE(step, 1);
    const float b1 = hyper.beta1;
    const float b2 = hyper.beta2;
    const double t = static_cast<double>(step);
    const float correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(b1), t));
    const float correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(b2), t));
    for (int64_t i = 0; i < n; ++i) {
      const float g = grad[i];
      m[i] = b1 * m[i] + (1.0f - b1) * g;
      v[i] = b2 * v[i] + (1.0f - b2) * g * g;
      const float m_hat = m[i] / correction1;
      const float v_hat = v[i] / correction2;
      param[i] -= hyper.learning_rate *
                  (m_hat / (std::sqrt(v_hat) + hyper.epsilon) + hyper.weight_decay * param[i]);
    }
  }

 protected:
  // A caching allocator, as PyTorch's CUDA allocator is: a freed block is
  // kept, by its rounded size, for the next allocation of that size. A
  // training step allocates the same activations every micro-batch, so after
  // the first step every allocation is a cache hit. Without it, glibc hands
  // blocks above its mmap threshold back to the kernel on free (and trims
  // the heap), and every step's first write to each fresh page takes a page
  // fault inside the operator that writes it: measured on gpt-tiny, DP2, 2
  // ranks, that made the executor's steps about 6% slower than the same
  // operators in the profiler (which reuses its buffers), time the cost
  // model has no operator for. Blocks stay cached until the backend is
  // destroyed; the base class accounts them as freed.
  void* AllocateBytes(int64_t bytes) override {
    const int64_t rounded = RoundedSize(bytes);
    auto it = cached_blocks_.find(rounded);
    if (it != cached_blocks_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      return p;
    }
    void* p = std::aligned_alloc(kAlignment, static_cast<size_t>(rounded));
    if (p == nullptr) {
      // Out of memory with blocks cached: give them back and try once more.
      ReleaseCachedBlocks();
      p = std::aligned_alloc(kAlignment, static_cast<size_t>(rounded));
    }
    ORRERY_CHECK(p != nullptr) << "out of host memory allocating " << bytes << " bytes";
    return p;
  }
  void FreeBytes(void* p, int64_t bytes) override {
    cached_blocks_[RoundedSize(bytes)].push_back(p);
  }

 private:
  static std::string MakeDeviceName() {
    return CpuModelName() + " (1 thread, Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." +
           std::to_string(EIGEN_MAJOR_VERSION) + "." + std::to_string(EIGEN_MINOR_VERSION) + ")";
  }

  static void CheckAttentionShape(const AttentionShape& shape) {
    ORRERY_CHECK(shape.kv_heads >= 1 && shape.heads % shape.kv_heads == 0)
        << "attention: kv_heads " << shape.kv_heads << " must divide heads " << shape.heads;
  }

  // aligned_alloc wants a multiple of the alignment; at least one block so
  // that every allocation has a distinct, non-null address.
  static int64_t RoundedSize(int64_t bytes) {
    return std::max<int64_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  }
  void ReleaseCachedBlocks() {
    for (auto& [bytes, blocks] : cached_blocks_) {
      for (void* p : blocks) std::free(p);
    }
    cached_blocks_.clear();
  }

  // Column accumulator `index` (one per simultaneous use), cols doubles of 0.
  std::vector<double>& ZeroedColumnAccumulator(int index, int64_t cols) {
    std::vector<double>& acc = column_accumulators_[index];
    acc.assign(cols, 0.0);
    return acc;
  }

  std::string device_name_;
  std::vector<float> scratch_;
  std::vector<double> column_accumulators_[2];
  // Freed blocks by rounded size (AllocateBytes).
  std::unordered_map<int64_t, std::vector<void*>> cached_blocks_;
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend() { return std::make_unique<CpuBackend>(); }

}  // namespace orrery::exec
