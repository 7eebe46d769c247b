// The kernels of exec/cuda/cuda_kernels.h. Every index is int64_t; every
// block has kThreads threads (a power of two, which the tree reductions
// need); element-wise kernels use grid-stride loops over a bounded grid.
#include "exec/cuda/cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace orrery::exec::cuda_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;

// Blocks for `n` elements, one per thread, at most kMaxBlocks (grid-stride
// loops cover the rest). At least one.
int Blocks(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__device__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ int64_t GridThreads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

// The reduction of `value` over the block, returned to every thread. Every
// thread of the block must call it; `buffer` holds kThreads elements of
// shared memory.
template <typename T, typename Op>
__device__ T BlockReduce(T value, Op op, T* buffer) {
  buffer[threadIdx.x] = value;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) {
      buffer[threadIdx.x] = op(buffer[threadIdx.x], buffer[threadIdx.x + s]);
    }
    __syncthreads();
  }
  const T result = buffer[0];
  __syncthreads();  // buffer may be reused right after
  return result;
}

// ---- Element-wise -----------------------------------------------------------

__global__ void FillKernel(float* x, int64_t n, float value) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) x[i] = value;
}

__global__ void AddKernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) out[i] = a[i] + b[i];
}

__global__ void AxpyKernel(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] += alpha * x[i];
}

__global__ void ScaleKernel(float* x, int64_t n, float alpha) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) x[i] *= alpha;
}

__global__ void BiasAddKernel(float* y, const float* bias, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] += bias[i % cols];
}

// dbias[c] += Σ_r dy[r][c]: one thread per column.
__global__ void ColumnSumKernel(const float* dy, int64_t rows, int64_t cols, float* dbias) {
  for (int64_t c = GlobalThread(); c < cols; c += GridThreads()) {
    double acc = 0;
    for (int64_t r = 0; r < rows; ++r) acc += dy[r * cols + c];
    dbias[c] += static_cast<float>(acc);
  }
}

// partials[block] = Σ over the block's grid-stride share of x (or x²).
__global__ void SumPartialsKernel(const float* x, int64_t n, bool squares, double* partials) {
  __shared__ double buffer[kThreads];
  double acc = 0;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const double xi = x[i];
    acc += squares ? xi * xi : xi;
  }
  const double total = BlockReduce(acc, SumOp(), buffer);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// *result = Σ partials[0..count), in one block.
__global__ void SumFinalKernel(const double* partials, int count, double* result) {
  __shared__ double buffer[kThreads];
  double acc = 0;
  for (int i = threadIdx.x; i < count; i += kThreads) acc += partials[i];
  const double total = BlockReduce(acc, SumOp(), buffer);
  if (threadIdx.x == 0) *result = total;
}

// ---- Normalization ----------------------------------------------------------

// One block per row.
__global__ void LayerNormForwardKernel(const float* x, const float* gamma, const float* beta,
                                       int64_t cols, float eps, float* y, float* mean,
                                       float* rstd) {
  __shared__ float buffer[kThreads];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float* yr = y + row * cols;
  float acc = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) acc += xr[c];
  const float mu = BlockReduce(acc, SumOp(), buffer) / static_cast<float>(cols);
  float sq = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float d = xr[c] - mu;
    sq += d * d;
  }
  const float variance = BlockReduce(sq, SumOp(), buffer) / static_cast<float>(cols);
  const float r = 1.0f / sqrtf(variance + eps);
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    yr[c] = (xr[c] - mu) * r * gamma[c] + beta[c];
  }
  if (threadIdx.x == 0) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

// dx of one row per block: with g = dy·γ and x̂ = (x − μ)·rstd,
//   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
__global__ void LayerNormBackwardDxKernel(const float* dy, const float* x, const float* gamma,
                                          const float* mean, const float* rstd, int64_t cols,
                                          float* dx) {
  __shared__ float buffer[kThreads];
  const int64_t row = blockIdx.x;
  const float* dyr = dy + row * cols;
  const float* xr = x + row * cols;
  const float mu = mean[row];
  const float r = rstd[row];
  float sum_g = 0;
  float sum_gx = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float g = dyr[c] * gamma[c];
    sum_g += g;
    sum_gx += g * (xr[c] - mu) * r;
  }
  const float mean_g = BlockReduce(sum_g, SumOp(), buffer) / static_cast<float>(cols);
  const float mean_gx = BlockReduce(sum_gx, SumOp(), buffer) / static_cast<float>(cols);
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float g = dyr[c] * gamma[c];
    const float xhat = (xr[c] - mu) * r;
    dx[row * cols + c] = r * (g - mean_g - xhat * mean_gx);
  }
}

// dgamma[c] += Σ_r dy·x̂; dbeta[c] += Σ_r dy: one thread per column.
__global__ void LayerNormBackwardParamsKernel(const float* dy, const float* x, const float* mean,
                                              const float* rstd, int64_t rows, int64_t cols,
                                              float* dgamma, float* dbeta) {
  for (int64_t c = GlobalThread(); c < cols; c += GridThreads()) {
    double acc_gamma = 0;
    double acc_beta = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const float d = dy[r * cols + c];
      acc_gamma += d * ((x[r * cols + c] - mean[r]) * rstd[r]);
      acc_beta += d;
    }
    dgamma[c] += static_cast<float>(acc_gamma);
    dbeta[c] += static_cast<float>(acc_beta);
  }
}

__global__ void RmsNormForwardKernel(const float* x, const float* gamma, int64_t cols, float eps,
                                     float* y, float* rstd) {
  __shared__ float buffer[kThreads];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float sq = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) sq += xr[c] * xr[c];
  const float mean_square = BlockReduce(sq, SumOp(), buffer) / static_cast<float>(cols);
  const float r = 1.0f / sqrtf(mean_square + eps);
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) y[row * cols + c] = xr[c] * r * gamma[c];
  if (threadIdx.x == 0) rstd[row] = r;
}

// y_i = x_i·r·γ_i with r = (mean(x²) + eps)^(−1/2), ∂r/∂x_i = −r³·x_i/cols:
//   dx_i = r·γ_i·dy_i − (r³/cols)·x_i·Σ_j dy_j·γ_j·x_j.
__global__ void RmsNormBackwardDxKernel(const float* dy, const float* x, const float* gamma,
                                        const float* rstd, int64_t cols, float* dx) {
  __shared__ float buffer[kThreads];
  const int64_t row = blockIdx.x;
  const float* dyr = dy + row * cols;
  const float* xr = x + row * cols;
  const float r = rstd[row];
  float acc = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) acc += dyr[c] * gamma[c] * xr[c];
  const float dot = BlockReduce(acc, SumOp(), buffer);
  const float coefficient = r * r * r / static_cast<float>(cols) * dot;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    dx[row * cols + c] = r * gamma[c] * dyr[c] - coefficient * xr[c];
  }
}

// dgamma[c] += Σ_r dy·x·rstd: one thread per column.
__global__ void RmsNormBackwardParamsKernel(const float* dy, const float* x, const float* rstd,
                                            int64_t rows, int64_t cols, float* dgamma) {
  for (int64_t c = GlobalThread(); c < cols; c += GridThreads()) {
    double acc = 0;
    for (int64_t r = 0; r < rows; ++r) acc += dy[r * cols + c] * (x[r * cols + c] * rstd[r]);
    dgamma[c] += static_cast<float>(acc);
  }
}

// ---- Activations ------------------------------------------------------------

// GELU's tanh approximation (Hendrycks & Gimpel 2016): √(2/π) and 0.044715.
constexpr float kGeluSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

__global__ void GeluForwardKernel(const float* x, float* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float xi = x[i];
    const float u = kGeluSqrt2OverPi * (xi + kGeluCubic * xi * xi * xi);
    y[i] = 0.5f * xi * (1.0f + tanhf(u));
  }
}

// gelu'(x) = ½(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(u).
__global__ void GeluBackwardKernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float xi = x[i];
    const float u = kGeluSqrt2OverPi * (xi + kGeluCubic * xi * xi * xi);
    const float t = tanhf(u);
    const float du = kGeluSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * xi * xi);
    dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * xi * (1.0f - t * t) * du);
  }
}

__device__ float Sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

__global__ void SwiGluForwardKernel(const float* gate_up, int64_t rows, int64_t cols,
                                    float* out) {
  const int64_t n = rows * cols;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    const float g = gate_up[r * 2 * cols + c];
    const float u = gate_up[r * 2 * cols + cols + c];
    out[i] = g * Sigmoid(g) * u;
  }
}

// d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))).
__global__ void SwiGluBackwardKernel(const float* gate_up, const float* dout, int64_t rows,
                                     int64_t cols, float* dgate_up) {
  const int64_t n = rows * cols;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    const float g = gate_up[r * 2 * cols + c];
    const float u = gate_up[r * 2 * cols + cols + c];
    const float s = Sigmoid(g);
    dgate_up[r * 2 * cols + c] = dout[i] * u * s * (1.0f + g * (1.0f - s));
    dgate_up[r * 2 * cols + cols + c] = dout[i] * g * s;
  }
}

// ---- Attention --------------------------------------------------------------

// One thread per (row, head, i < head_dim/2) pair, rotate-half form.
__global__ void RopeKernel(float* x, int64_t rows, int64_t batch, int64_t heads,
                           int64_t head_dim, int64_t row_stride, float theta, float sign) {
  const int64_t half = head_dim / 2;
  const int64_t n = rows * heads * half;
  for (int64_t idx = GlobalThread(); idx < n; idx += GridThreads()) {
    const int64_t i = idx % half;
    const int64_t head = (idx / half) % heads;
    const int64_t row = idx / (half * heads);
    const int64_t position = row / batch;
    const double inv_freq = pow(static_cast<double>(theta),
                                -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const double angle = sign * static_cast<double>(position) * inv_freq;
    const float cos_a = static_cast<float>(cos(angle));
    const float sin_a = static_cast<float>(sin(angle));
    float* p = x + row * row_stride + head * head_dim;
    const float a = p[i];
    const float b = p[i + half];
    p[i] = a * cos_a - b * sin_a;
    p[i + half] = b * cos_a + a * sin_a;
  }
}

// Which (sample, head, query position) block `blockIdx.x` is: blocks are
// numbered ((b·heads + h)·sequence + i), the order of probs' rows.
struct QueryBlock {
  int64_t b, h, i, kv_head;
};
__device__ QueryBlock DecodeQueryBlock(const AttentionDims& d) {
  const int64_t idx = blockIdx.x;
  QueryBlock q;
  q.i = idx % d.sequence;
  q.h = (idx / d.sequence) % d.heads;
  q.b = idx / (d.sequence * d.heads);
  q.kv_head = q.h / (d.heads / d.kv_heads);
  return q;
}

// One block per (b, h, i): scores of query i against keys j ≤ i into probs'
// row, softmax in place (zeros for j > i), then out row i of head h.
__global__ void AttentionForwardKernel(AttentionDims d, const float* q, const float* k,
                                       const float* v, float* out, float* probs) {
  __shared__ float buffer[kThreads];
  const QueryBlock qb = DecodeQueryBlock(d);
  const float scale = 1.0f / sqrtf(static_cast<float>(d.head_dim));
  const float* qi = q + (qb.i * d.batch + qb.b) * d.row_stride + qb.h * d.head_dim;
  float* prow = probs + ((qb.b * d.heads + qb.h) * d.sequence + qb.i) * d.sequence;

  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < d.sequence; j += kThreads) {
    if (j > qb.i) {
      prow[j] = 0.0f;
      continue;
    }
    const float* kj = k + (j * d.batch + qb.b) * d.row_stride + qb.kv_head * d.head_dim;
    float dot = 0;
    for (int64_t e = 0; e < d.head_dim; ++e) dot += qi[e] * kj[e];
    prow[j] = dot * scale;
    local_max = fmaxf(local_max, prow[j]);
  }
  const float row_max = BlockReduce(local_max, MaxOp(), buffer);
  float local_sum = 0;
  for (int64_t j = threadIdx.x; j <= qb.i; j += kThreads) {
    const float e = expf(prow[j] - row_max);
    prow[j] = e;
    local_sum += e;
  }
  const float total = BlockReduce(local_sum, SumOp(), buffer);
  for (int64_t j = threadIdx.x; j <= qb.i; j += kThreads) prow[j] /= total;
  __syncthreads();  // every thread reads the whole row below

  float* oi = out + (qb.i * d.batch + qb.b) * d.heads * d.head_dim + qb.h * d.head_dim;
  for (int64_t e = threadIdx.x; e < d.head_dim; e += kThreads) {
    float acc = 0;
    for (int64_t j = 0; j <= qb.i; ++j) {
      acc += prow[j] * v[(j * d.batch + qb.b) * d.row_stride + qb.kv_head * d.head_dim + e];
    }
    oi[e] = acc;
  }
}

// One block per (b, h, i): dP[i][j] = dO_i·V_j and the softmax's backward
//   dS[i][j] = P[i][j]·(dP[i][j] − Σ_j' P[i][j']·dP[i][j'])   (zero for j > i).
__global__ void AttentionDScoresKernel(AttentionDims d, const float* v, const float* probs,
                                       const float* dout, float* dscores) {
  __shared__ float buffer[kThreads];
  const QueryBlock qb = DecodeQueryBlock(d);
  const int64_t row_offset = ((qb.b * d.heads + qb.h) * d.sequence + qb.i) * d.sequence;
  const float* prow = probs + row_offset;
  float* dsrow = dscores + row_offset;
  const float* doi = dout + (qb.i * d.batch + qb.b) * d.heads * d.head_dim + qb.h * d.head_dim;
  float local = 0;
  for (int64_t j = threadIdx.x; j < d.sequence; j += kThreads) {
    if (j > qb.i) {
      dsrow[j] = 0.0f;
      continue;
    }
    const float* vj = v + (j * d.batch + qb.b) * d.row_stride + qb.kv_head * d.head_dim;
    float dp = 0;
    for (int64_t e = 0; e < d.head_dim; ++e) dp += doi[e] * vj[e];
    dsrow[j] = dp;
    local += prow[j] * dp;
  }
  const float row_dot = BlockReduce(local, SumOp(), buffer);
  for (int64_t j = threadIdx.x; j <= qb.i; j += kThreads) {
    dsrow[j] = prow[j] * (dsrow[j] - row_dot);
  }
}

// One block per (b, h, i): dQ_i = scale·Σ_{j≤i} dS[i][j]·K_j.
__global__ void AttentionDqKernel(AttentionDims d, const float* k, const float* dscores,
                                  float* dq) {
  const QueryBlock qb = DecodeQueryBlock(d);
  const float scale = 1.0f / sqrtf(static_cast<float>(d.head_dim));
  const float* dsrow = dscores + ((qb.b * d.heads + qb.h) * d.sequence + qb.i) * d.sequence;
  float* dqi = dq + (qb.i * d.batch + qb.b) * d.row_stride + qb.h * d.head_dim;
  for (int64_t e = threadIdx.x; e < d.head_dim; e += kThreads) {
    float acc = 0;
    for (int64_t j = 0; j <= qb.i; ++j) {
      acc += dsrow[j] * k[(j * d.batch + qb.b) * d.row_stride + qb.kv_head * d.head_dim + e];
    }
    dqi[e] = scale * acc;
  }
}

// One block per (b, kv head g, key position j), summing over the query
// heads h of the group and the queries i ≥ j:
//   dK_j = scale·Σ_h Σ_i dS_h[i][j]·Q_{i,h},   dV_j = Σ_h Σ_i P_h[i][j]·dO_{i,h}.
__global__ void AttentionDkDvKernel(AttentionDims d, const float* q, const float* probs,
                                    const float* dout, const float* dscores, float* dk,
                                    float* dv) {
  const int64_t idx = blockIdx.x;
  const int64_t j = idx % d.sequence;
  const int64_t g = (idx / d.sequence) % d.kv_heads;
  const int64_t b = idx / (d.sequence * d.kv_heads);
  const int64_t group = d.heads / d.kv_heads;
  const float scale = 1.0f / sqrtf(static_cast<float>(d.head_dim));
  for (int64_t e = threadIdx.x; e < d.head_dim; e += kThreads) {
    float acc_k = 0;
    float acc_v = 0;
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      for (int64_t i = j; i < d.sequence; ++i) {
        const int64_t pij = ((b * d.heads + h) * d.sequence + i) * d.sequence + j;
        const int64_t row = i * d.batch + b;
        acc_k += dscores[pij] * q[row * d.row_stride + h * d.head_dim + e];
        acc_v += probs[pij] * dout[row * d.heads * d.head_dim + h * d.head_dim + e];
      }
    }
    const int64_t row_j = j * d.batch + b;
    dk[row_j * d.row_stride + g * d.head_dim + e] = scale * acc_k;
    dv[row_j * d.row_stride + g * d.head_dim + e] = acc_v;
  }
}

// ---- Embedding and loss -----------------------------------------------------

__global__ void EmbeddingForwardKernel(const int32_t* ids, int64_t rows, const float* table,
                                       int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                                       float* out) {
  const int64_t n = rows * hidden;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t local = static_cast<int64_t>(ids[i / hidden]) - vocab_start;
    out[i] = (local >= 0 && local < vocab_local) ? table[local * hidden + i % hidden] : 0.0f;
  }
}

// One thread per column, rows in order: deterministic, no atomics, even
// when ids repeat.
__global__ void EmbeddingBackwardKernel(const int32_t* ids, int64_t rows, const float* dout,
                                        int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                                        float* dtable) {
  for (int64_t c = GlobalThread(); c < hidden; c += GridThreads()) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t local = static_cast<int64_t>(ids[r]) - vocab_start;
      if (local >= 0 && local < vocab_local) dtable[local * hidden + c] += dout[r * hidden + c];
    }
  }
}

__global__ void LogitsRowMaxKernel(const float* logits, int64_t vocab_local, float* row_max) {
  __shared__ float buffer[kThreads];
  const int64_t row = blockIdx.x;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < vocab_local; c += kThreads) {
    m = fmaxf(m, logits[row * vocab_local + c]);
  }
  const float result = BlockReduce(m, MaxOp(), buffer);
  if (threadIdx.x == 0) row_max[row] = result;
}

__global__ void CrossEntropyPartialsKernel(const float* logits, int64_t vocab_local,
                                           const float* row_max, const int32_t* targets,
                                           int64_t vocab_start, float* sum_exp,
                                           float* target_logit) {
  __shared__ float buffer[kThreads];
  const int64_t row = blockIdx.x;
  const float m = row_max[row];
  float acc = 0;
  for (int64_t c = threadIdx.x; c < vocab_local; c += kThreads) {
    acc += expf(logits[row * vocab_local + c] - m);
  }
  const float total = BlockReduce(acc, SumOp(), buffer);
  if (threadIdx.x == 0) {
    sum_exp[row] = total;
    const int64_t t = static_cast<int64_t>(targets[row]) - vocab_start;
    target_logit[row] = (t >= 0 && t < vocab_local) ? logits[row * vocab_local + t] : 0.0f;
  }
}

__global__ void CrossEntropyLossKernel(const float* row_max, const float* sum_exp,
                                       const float* target_logit, int64_t rows, float* loss) {
  for (int64_t r = GlobalThread(); r < rows; r += GridThreads()) {
    loss[r] = logf(sum_exp[r]) + row_max[r] - target_logit[r];
  }
}

__global__ void CrossEntropyBackwardKernel(const float* logits, int64_t rows,
                                           int64_t vocab_local, const float* row_max,
                                           const float* sum_exp, const int32_t* targets,
                                           int64_t vocab_start, float scale, float* dlogits) {
  const int64_t n = rows * vocab_local;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t r = i / vocab_local;
    const int64_t c = i % vocab_local;
    float p = expf(logits[i] - row_max[r]) / sum_exp[r];
    if (c == static_cast<int64_t>(targets[r]) - vocab_start) p -= 1.0f;
    dlogits[i] = scale * p;
  }
}

// ---- Optimizer --------------------------------------------------------------

__global__ void AdamStepKernel(float* param, const float* grad, float* m, float* v, int64_t n,
                               float learning_rate, float beta1, float beta2, float epsilon,
                               float weight_decay, float bias_correction1,
                               float bias_correction2) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mi / bias_correction1;
    const float v_hat = vi / bias_correction2;
    const float p = param[i];
    param[i] = p - learning_rate * (m_hat / (sqrtf(v_hat) + epsilon) + weight_decay * p);
  }
}

// Grid size of a one-block-per-row kernel.
unsigned int RowBlocks(int64_t rows) { return static_cast<unsigned int>(rows); }

}  // namespace

cudaError_t Fill(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  FillKernel<<<Blocks(n), kThreads, 0, stream>>>(x, n, value);
  return cudaGetLastError();
}

cudaError_t Add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  AddKernel<<<Blocks(n), kThreads, 0, stream>>>(a, b, out, n);
  return cudaGetLastError();
}

cudaError_t Axpy(float alpha, const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  AxpyKernel<<<Blocks(n), kThreads, 0, stream>>>(alpha, x, y, n);
  return cudaGetLastError();
}

cudaError_t Scale(float* x, int64_t n, float alpha, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  ScaleKernel<<<Blocks(n), kThreads, 0, stream>>>(x, n, alpha);
  return cudaGetLastError();
}

cudaError_t BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols,
                    cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  BiasAddKernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(y, bias, rows, cols);
  return cudaGetLastError();
}

cudaError_t BiasGradient(const float* dy, int64_t rows, int64_t cols, float* dbias,
                         cudaStream_t stream) {
  if (cols <= 0) return cudaSuccess;
  ColumnSumKernel<<<Blocks(cols), kThreads, 0, stream>>>(dy, rows, cols, dbias);
  return cudaGetLastError();
}

cudaError_t SumToDevice(const float* x, int64_t n, bool squares, double* partials,
                        double* result, cudaStream_t stream) {
  const int blocks = std::min(Blocks(n), kReducePartials);
  SumPartialsKernel<<<blocks, kThreads, 0, stream>>>(x, n, squares, partials);
  SumFinalKernel<<<1, kThreads, 0, stream>>>(partials, blocks, result);
  return cudaGetLastError();
}

cudaError_t LayerNormForward(const float* x, const float* gamma, const float* beta,
                             int64_t rows, int64_t cols, float eps, float* y, float* mean,
                             float* rstd, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  LayerNormForwardKernel<<<RowBlocks(rows), kThreads, 0, stream>>>(x, gamma, beta, cols, eps, y,
                                                                   mean, rstd);
  return cudaGetLastError();
}

cudaError_t LayerNormBackward(const float* dy, const float* x, const float* gamma,
                              const float* mean, const float* rstd, int64_t rows, int64_t cols,
                              float* dx, float* dgamma, float* dbeta, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  LayerNormBackwardDxKernel<<<RowBlocks(rows), kThreads, 0, stream>>>(dy, x, gamma, mean, rstd,
                                                                      cols, dx);
  LayerNormBackwardParamsKernel<<<Blocks(cols), kThreads, 0, stream>>>(dy, x, mean, rstd, rows,
                                                                       cols, dgamma, dbeta);
  return cudaGetLastError();
}

cudaError_t RmsNormForward(const float* x, const float* gamma, int64_t rows, int64_t cols,
                           float eps, float* y, float* rstd, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  RmsNormForwardKernel<<<RowBlocks(rows), kThreads, 0, stream>>>(x, gamma, cols, eps, y, rstd);
  return cudaGetLastError();
}

cudaError_t RmsNormBackward(const float* dy, const float* x, const float* gamma,
                            const float* rstd, int64_t rows, int64_t cols, float* dx,
                            float* dgamma, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  RmsNormBackwardDxKernel<<<RowBlocks(rows), kThreads, 0, stream>>>(dy, x, gamma, rstd, cols, dx);
  RmsNormBackwardParamsKernel<<<Blocks(cols), kThreads, 0, stream>>>(dy, x, rstd, rows, cols,
                                                                     dgamma);
  return cudaGetLastError();
}

cudaError_t GeluForward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  GeluForwardKernel<<<Blocks(n), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t GeluBackward(const float* x, const float* dy, float* dx, int64_t n,
                         cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  GeluBackwardKernel<<<Blocks(n), kThreads, 0, stream>>>(x, dy, dx, n);
  return cudaGetLastError();
}

cudaError_t SwiGluForward(const float* gate_up, int64_t rows, int64_t cols, float* out,
                          cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  SwiGluForwardKernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(gate_up, rows, cols, out);
  return cudaGetLastError();
}

cudaError_t SwiGluBackward(const float* gate_up, const float* dout, int64_t rows, int64_t cols,
                           float* dgate_up, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  SwiGluBackwardKernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(gate_up, dout, rows, cols,
                                                                     dgate_up);
  return cudaGetLastError();
}

cudaError_t Rope(float* x, int64_t sequence, int64_t batch, int64_t heads, int64_t head_dim,
                 int64_t row_stride, float theta, float sign, cudaStream_t stream) {
  const int64_t n = sequence * batch * heads * (head_dim / 2);
  if (n <= 0) return cudaSuccess;
  RopeKernel<<<Blocks(n), kThreads, 0, stream>>>(x, sequence * batch, batch, heads, head_dim,
                                                 row_stride, theta, sign);
  return cudaGetLastError();
}

cudaError_t AttentionForward(const AttentionDims& dims, const float* q, const float* k,
                             const float* v, float* out, float* probs, cudaStream_t stream) {
  const int64_t blocks = dims.batch * dims.heads * dims.sequence;
  if (blocks <= 0) return cudaSuccess;
  AttentionForwardKernel<<<RowBlocks(blocks), kThreads, 0, stream>>>(dims, q, k, v, out, probs);
  return cudaGetLastError();
}

cudaError_t AttentionBackward(const AttentionDims& dims, const float* q, const float* k,
                              const float* v, const float* probs, const float* dout, float* dq,
                              float* dk, float* dv, float* dscores, cudaStream_t stream) {
  const int64_t query_blocks = dims.batch * dims.heads * dims.sequence;
  const int64_t key_blocks = dims.batch * dims.kv_heads * dims.sequence;
  if (query_blocks <= 0) return cudaSuccess;
  AttentionDScoresKernel<<<RowBlocks(query_blocks), kThreads, 0, stream>>>(dims, v, probs, dout,
                                                                          dscores);
  AttentionDqKernel<<<RowBlocks(query_blocks), kThreads, 0, stream>>>(dims, k, dscores, dq);
  AttentionDkDvKernel<<<RowBlocks(key_blocks), kThreads, 0, stream>>>(dims, q, probs, dout,
                                                                     dscores, dk, dv);
  return cudaGetLastError();
}

cudaError_t EmbeddingForward(const int32_t* ids, int64_t rows, const float* table,
                             int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                             float* out, cudaStream_t stream) {
  if (rows <= 0 || hidden <= 0) return cudaSuccess;
  EmbeddingForwardKernel<<<Blocks(rows * hidden), kThreads, 0, stream>>>(
      ids, rows, table, vocab_start, vocab_local, hidden, out);
  return cudaGetLastError();
}

cudaError_t EmbeddingBackward(const int32_t* ids, int64_t rows, const float* dout,
                              int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                              float* dtable, cudaStream_t stream) {
  if (rows <= 0 || hidden <= 0) return cudaSuccess;
  EmbeddingBackwardKernel<<<Blocks(hidden), kThreads, 0, stream>>>(ids, rows, dout, vocab_start,
                                                                   vocab_local, hidden, dtable);
  return cudaGetLastError();
}

cudaError_t LogitsRowMax(const float* logits, int64_t rows, int64_t vocab_local, float* row_max,
                         cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  LogitsRowMaxKernel<<<RowBlocks(rows), kThreads, 0, stream>>>(logits, vocab_local, row_max);
  return cudaGetLastError();
}

cudaError_t CrossEntropyPartials(const float* logits, int64_t rows, int64_t vocab_local,
                                 const float* row_max, const int32_t* targets,
                                 int64_t vocab_start, float* sum_exp, float* target_logit,
                                 cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  CrossEntropyPartialsKernel<<<RowBlocks(rows), kThreads, 0, stream>>>(
      logits, vocab_local, row_max, targets, vocab_start, sum_exp, target_logit);
  return cudaGetLastError();
}

cudaError_t CrossEntropyLoss(const float* row_max, const float* sum_exp,
                             const float* target_logit, int64_t rows, float* loss,
                             cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  CrossEntropyLossKernel<<<Blocks(rows), kThreads, 0, stream>>>(row_max, sum_exp, target_logit,
                                                                rows, loss);
  return cudaGetLastError();
}

cudaError_t CrossEntropyBackward(const float* logits, int64_t rows, int64_t vocab_local,
                                 const float* row_max, const float* sum_exp,
                                 const int32_t* targets, int64_t vocab_start, float scale,
                                 float* dlogits, cudaStream_t stream) {
  if (rows <= 0 || vocab_local <= 0) return cudaSuccess;
  CrossEntropyBackwardKernel<<<Blocks(rows * vocab_local), kThreads, 0, stream>>>(
      logits, rows, vocab_local, row_max, sum_exp, targets, vocab_start, scale, dlogits);
  return cudaGetLastError();
}

cudaError_t AdamStep(float* param, const float* grad, float* m, float* v, int64_t n,
                     float learning_rate, float beta1, float beta2, float epsilon,
                     float weight_decay, float bias_correction1, float bias_correction2,
                     cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  AdamStepKernel<<<Blocks(n), kThreads, 0, stream>>>(param, grad, m, v, n, learning_rate, beta1,
                                                     beta2, epsilon, weight_decay,
                                                     bias_correction1, bias_correction2);
  return cudaGetLastError();
}

}  // namespace orrery::exec::cuda_kernels
