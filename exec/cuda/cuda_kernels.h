// The CUDA kernels of the `cuda` backend (exec/cuda/cuda_backend.h): one
// host launcher per Backend operation that is not a GEMM, with the exact
// contract of the operation of the same name in exec/backend.h. Each
// launcher enqueues its kernel(s) on `stream` and returns the launch's
// error (cudaGetLastError); the caller checks it. Nothing here
// synchronizes except where stated.
//
// The kernels are written to be obviously correct rather than fast: one
// thread per element for element-wise operations, one block per row with a
// shared-memory tree reduction for row reductions, one thread per column
// looping over rows for column sums (deterministic, no atomics), and a
// naive attention that computes each query's scores, softmax and output in
// one block. Reductions of the norms and the softmax are in float, as the
// CPU backend's; Sum and SumOfSquares accumulate in double.
//
// Plain C++: this header is included by exec/cuda/cuda_backend.cc.
//
// Thread-safety: launchers are thread-safe; streams are not shared.
#ifndef ORRERY_EXEC_CUDA_CUDA_KERNELS_H_
#define ORRERY_EXEC_CUDA_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace orrery::exec::cuda_kernels {

// ---- Element-wise -----------------------------------------------------------

cudaError_t Fill(float* x, int64_t n, float value, cudaStream_t stream);
cudaError_t Add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream);
cudaError_t Axpy(float alpha, const float* x, float* y, int64_t n, cudaStream_t stream);
cudaError_t Scale(float* x, int64_t n, float alpha, cudaStream_t stream);
cudaError_t BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols,
                    cudaStream_t stream);
cudaError_t BiasGradient(const float* dy, int64_t rows, int64_t cols, float* dbias,
                         cudaStream_t stream);

// Σ x[i] (or Σ x[i]² when `squares`) in double, written to *result (device
// memory) using `partials` (device memory of kReducePartials doubles) as
// scratch. Does not synchronize.
inline constexpr int kReducePartials = 1024;
cudaError_t SumToDevice(const float* x, int64_t n, bool squares, double* partials,
                        double* result, cudaStream_t stream);

// ---- Normalization ----------------------------------------------------------

cudaError_t LayerNormForward(const float* x, const float* gamma, const float* beta,
                             int64_t rows, int64_t cols, float eps, float* y, float* mean,
                             float* rstd, cudaStream_t stream);
cudaError_t LayerNormBackward(const float* dy, const float* x, const float* gamma,
                              const float* mean, const float* rstd, int64_t rows, int64_t cols,
                              float* dx, float* dgamma, float* dbeta, cudaStream_t stream);
cudaError_t RmsNormForward(const float* x, const float* gamma, int64_t rows, int64_t cols,
                           float eps, float* y, float* rstd, cudaStream_t stream);
cudaError_t RmsNormBackward(const float* dy, const float* x, const float* gamma,
                            const float* rstd, int64_t rows, int64_t cols, float* dx,
                            float* dgamma, cudaStream_t stream);

// ---- Activations ------------------------------------------------------------

cudaError_t GeluForward(const float* x, float* y, int64_t n, cudaStream_t stream);
cudaError_t GeluBackward(const float* x, const float* dy, float* dx, int64_t n,
                         cudaStream_t stream);
cudaError_t SwiGluForward(const float* gate_up, int64_t rows, int64_t cols, float* out,
                          cudaStream_t stream);
cudaError_t SwiGluBackward(const float* gate_up, const float* dout, int64_t rows, int64_t cols,
                           float* dgate_up, cudaStream_t stream);

// ---- Attention --------------------------------------------------------------

// `sign` +1 rotates by +angle (forward), −1 by −angle (backward).
cudaError_t Rope(float* x, int64_t sequence, int64_t batch, int64_t heads, int64_t head_dim,
                 int64_t row_stride, float theta, float sign, cudaStream_t stream);

// The shape of exec/backend.h's AttentionShape, repeated here so that this
// header does not depend on the executor's.
struct AttentionDims {
  int64_t batch = 1;
  int64_t sequence = 1;
  int64_t heads = 1;
  int64_t kv_heads = 1;
  int64_t head_dim = 1;
  int64_t row_stride = 1;
};
cudaError_t AttentionForward(const AttentionDims& dims, const float* q, const float* k,
                             const float* v, float* out, float* probs, cudaStream_t stream);
// `dscores` is device scratch of batch·heads·sequence² floats, in use until
// the work enqueued here has run (stream order).
cudaError_t AttentionBackward(const AttentionDims& dims, const float* q, const float* k,
                              const float* v, const float* probs, const float* dout, float* dq,
                              float* dk, float* dv, float* dscores, cudaStream_t stream);

// ---- Embedding and loss -----------------------------------------------------

cudaError_t EmbeddingForward(const int32_t* ids, int64_t rows, const float* table,
                             int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                             float* out, cudaStream_t stream);
cudaError_t EmbeddingBackward(const int32_t* ids, int64_t rows, const float* dout,
                              int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                              float* dtable, cudaStream_t stream);
cudaError_t LogitsRowMax(const float* logits, int64_t rows, int64_t vocab_local, float* row_max,
                         cudaStream_t stream);
cudaError_t CrossEntropyPartials(const float* logits, int64_t rows, int64_t vocab_local,
                                 const float* row_max, const int32_t* targets,
                                 int64_t vocab_start, float* sum_exp, float* target_logit,
                                 cudaStream_t stream);
cudaError_t CrossEntropyLoss(const float* row_max, const float* sum_exp,
                             const float* target_logit, int64_t rows, float* loss,
                             cudaStream_t stream);
cudaError_t CrossEntropyBackward(const float* logits, int64_t rows, int64_t vocab_local,
                                 const float* row_max, const float* sum_exp,
                                 const int32_t* targets, int64_t vocab_start, float scale,
                                 float* dlogits, cudaStream_t stream);

// ---- Optimizer --------------------------------------------------------------

// AdamW with the bias corrections 1−β1^t and 1−β2^t computed by the caller.
cudaError_t AdamStep(float* param, const float* grad, float* m, float* v, int64_t n,
                     float learning_rate, float beta1, float beta2, float epsilon,
                     float weight_decay, float bias_correction1, float bias_correction2,
                     cudaStream_t stream);

}  // namespace orrery::exec::cuda_kernels

#endif  // ORRERY_EXEC_CUDA_CUDA_KERNELS_H_
