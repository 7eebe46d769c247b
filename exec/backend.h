// Backend: the math of the executor, written once against this interface
// and implemented twice — `cpu` (Eigen, exec/cpu/cpu_backend.h) and `cuda`
// (cuBLAS for GEMMs, CUDA kernels for the rest, exec/cuda/cuda_backend.h).
//
// Conventions, for every operation:
//   * float32 throughout (the correctness matrix compares fp32 runs; the
//     CUDA backend may let cuBLAS use TF32 tensor cores when asked);
//   * tensors are row-major; an activation of a micro-batch is a matrix of
//     rows × hidden whose rows are ordered sequence-major, row = position ·
//     batch + sample — Megatron-LM's [s, b, h] layout, so that sequence
//     parallelism's shards are contiguous row blocks;
//   * pointers are device memory the backend allocated (DeviceArray);
//   * operations are ordered: each sees the effects of those issued before
//     it on the same backend. On CUDA they are asynchronous to the host
//     (one compute stream); Synchronize() waits for all of them. Functions
//     that return a value to the host synchronize.
//   * "+=" in a contract means the output is accumulated into, not
//     overwritten: gradients of parameters accumulate over micro-batches.
//
// Memory is accounted: every Allocate/Free goes through the base class, so
// allocated_bytes() and peak_allocated_bytes() are the executor's own
// measure of a rank's memory (as torch.cuda.max_memory_allocated is
// PyTorch's), on both backends.
//
// Thread-safety: a Backend is used from one thread.
#ifndef ORRERY_EXEC_BACKEND_H_
#define ORRERY_EXEC_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "core/status.h"

namespace orrery::exec {

enum class BackendKind { kCpu, kCuda };
// "cpu", "cuda".
std::string_view BackendKindName(BackendKind kind);
// InvalidArgument naming the accepted names otherwise.
Result<BackendKind> ParseBackendKind(std::string_view name);

// The shape of one causal self-attention core over a micro-batch, as the
// attention operations read it. q, k and v are column blocks of one
// [rows, row_stride] matrix (the fused QKV projection's output): q of
// heads·head_dim columns, k and v of kv_heads·head_dim columns each, at the
// column offsets the caller passes as pointers. rows = sequence · batch,
// sequence-major (see above). Grouped-query attention: query head j reads
// kv head j / (heads / kv_heads).
struct AttentionShape {
  int64_t batch = 1;
  int64_t sequence = 1;
  int64_t heads = 1;     // query heads on this rank
  int64_t kv_heads = 1;  // key/value heads on this rank; divides heads
  int64_t head_dim = 1;
  int64_t row_stride = 1;  // elements between consecutive rows of q, k, v

  int64_t rows() const { return sequence * batch; }
  // Elements of the saved softmax probabilities: batch·heads·sequence².
  int64_t probs_elements() const { return batch * heads * sequence * sequence; }
};

// AdamW (Loshchilov & Hutter, arXiv 1711.05101) with bias correction, as
// torch.optim.AdamW and Megatron-LM's optimizer:
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   p −= lr·( m/(1−β1^t) / (sqrt(v/(1−β2^t)) + ε) + wd·p )
struct AdamHyperparameters {
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
  float weight_decay = 0.01f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual BackendKind kind() const = 0;
  // What runs the math: "AMD EPYC 7B13 (1 thread, Eigen 3.4.0)", "NVIDIA
  // H100 80GB HBM3 (cuBLAS 13.0)".
  virtual std::string device_name() const = 0;

  // ---- Memory -------------------------------------------------------------

  // `bytes` of device memory, 256-byte aligned, contents unspecified.
  // CHECK-fails when the device is out of memory (the executor refuses plans
  // that do not fit before it starts).
  void* Allocate(int64_t bytes);
  // REQUIRES: `p` came from Allocate(bytes) with the same `bytes`.
  void Free(void* p, int64_t bytes);
  int64_t allocated_bytes() const { return allocated_; }
  int64_t peak_allocated_bytes() const { return peak_; }
  // Sets the peak to the current allocation.
  void ResetPeak() { peak_ = allocated_; }

  virtual void CopyToHost(const void* device_src, void* host_dst, int64_t bytes) = 0;
  virtual void CopyFromHost(const void* host_src, void* device_dst, int64_t bytes) = 0;
  virtual void CopyOnDevice(const void* src, void* dst, int64_t bytes) = 0;
  // x[0..n) = value.
  virtual void Fill(float* x, int64_t n, float value) = 0;
  // Waits until every operation issued so far has finished.
  virtual void Synchronize() = 0;

  // ---- Dense algebra --------------------------------------------------------

  // C = alpha·op(A)·op(B) + beta·C, row-major, with op(A) m×k and op(B) k×n.
  // A is stored m×k (k×m when transpose_a) with leading dimension lda (the
  // stored row length); likewise B (k×n, or n×k when transpose_b) with ldb,
  // and C m×n with ldc. beta = 0 ignores C's prior contents (NaN included).
  virtual void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                    float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                    float beta, float* c, int64_t ldc) = 0;
  // out[i] = a[i] + b[i]; out may alias a or b.
  virtual void Add(const float* a, const float* b, float* out, int64_t n) = 0;
  // y[i] += alpha·x[i].
  virtual void Axpy(float alpha, const float* x, float* y, int64_t n) = 0;
  // x[i] *= alpha.
  virtual void Scale(float* x, int64_t n, float alpha) = 0;
  // y[r][c] += bias[c] for a rows × cols y.
  virtual void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols) = 0;
  // dbias[c] += Σ_r dy[r][c].
  virtual void BiasGradient(const float* dy, int64_t rows, int64_t cols, float* dbias) = 0;
  // Σ x[i], returned to the host (synchronizes). Accumulated in double.
  virtual double Sum(const float* x, int64_t n) = 0;
  // Σ x[i]², returned to the host (synchronizes). Accumulated in double.
  virtual double SumOfSquares(const float* x, int64_t n) = 0;

  // ---- Normalization --------------------------------------------------------

  // LayerNorm over each row of a rows × cols x (Ba et al. 2016):
  //   y = (x − μ)·rstd·γ + β,  rstd = 1/sqrt(σ² + eps)  (biased variance)
  // Saves mean[rows] and rstd[rows] for the backward pass.
  virtual void LayerNormForward(const float* x, const float* gamma, const float* beta,
                                int64_t rows, int64_t cols, float eps, float* y, float* mean,
                                float* rstd) = 0;
  // dx = (overwritten); dgamma += Σ_r dy·x̂; dbeta += Σ_r dy.
  virtual void LayerNormBackward(const float* dy, const float* x, const float* gamma,
                                 const float* mean, const float* rstd, int64_t rows, int64_t cols,
                                 float* dx, float* dgamma, float* dbeta) = 0;
  // RMSNorm (Zhang & Sennrich 2019), as Llama: y = x·rstd·γ,
  // rstd = 1/sqrt(mean(x²) + eps). Saves rstd[rows].
  virtual void RmsNormForward(const float* x, const float* gamma, int64_t rows, int64_t cols,
                              float eps, float* y, float* rstd) = 0;
  // dx overwritten; dgamma += Σ_r dy·x·rstd.
  virtual void RmsNormBackward(const float* dy, const float* x, const float* gamma,
                               const float* rstd, int64_t rows, int64_t cols, float* dx,
                               float* dgamma) = 0;

  // ---- Activations ----------------------------------------------------------

  // GELU, tanh approximation (Hendrycks & Gimpel 2016; GPT-2's "gelu_new",
  // Megatron-LM's bias_gelu):
  //   y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
  virtual void GeluForward(const float* x, float* y, int64_t n) = 0;
  // dx = dy·gelu'(x) (overwritten).
  virtual void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) = 0;
  // SwiGLU (Shazeer 2020), as Llama's MLP: for a rows × 2·cols input whose
  // row is [gate | up], out[r][c] = silu(gate[r][c])·up[r][c], silu(z) =
  // z·σ(z). out is rows × cols.
  virtual void SwiGluForward(const float* gate_up, int64_t rows, int64_t cols, float* out) = 0;
  // d(gate_up) (rows × 2·cols, overwritten) from dout (rows × cols).
  virtual void SwiGluBackward(const float* gate_up, const float* dout, int64_t rows, int64_t cols,
                              float* dgate_up) = 0;

  // ---- Attention ------------------------------------------------------------

  // Rotary position embedding (Su et al., RoFormer, arXiv 2104.09864) in
  // place on `heads` heads of head_dim columns at x (rows of row_stride
  // elements, rows = sequence·batch sequence-major, so row r is position
  // r / batch). Llama's rotate-half form: for i < head_dim/2, with
  // θ_i = theta^(−2i/head_dim) and angle = position·θ_i,
  //   (x_i, x_{i+d/2}) ← (x_i·cos − x_{i+d/2}·sin, x_{i+d/2}·cos + x_i·sin).
  // REQUIRES: head_dim even.
  virtual void RopeForward(float* x, int64_t sequence, int64_t batch, int64_t heads,
                           int64_t head_dim, int64_t row_stride, float theta) = 0;
  // The transpose (rotation by −angle), applied in place to a gradient.
  virtual void RopeBackward(float* dx, int64_t sequence, int64_t batch, int64_t heads,
                            int64_t head_dim, int64_t row_stride, float theta) = 0;

  // Causal softmax attention (Vaswani et al. 2017), per sample and head:
  //   P = softmax(Q·Kᵀ/√head_dim + causal mask),  O = P·V
  // q, k, v are column blocks of rows of shape.row_stride elements; out is
  // rows × heads·head_dim, contiguous; probs (shape.probs_elements(),
  // [batch][heads][sequence][sequence]) receives P for the backward pass.
  virtual void AttentionForward(const AttentionShape& shape, const float* q, const float* k,
                                const float* v, float* out, float* probs) = 0;
  // dq, dk, dv (column blocks with shape.row_stride, like q, k, v;
  // overwritten) from dout (rows × heads·head_dim) and the forward's probs.
  // Grouped-query attention sums the query heads' contributions into their
  // shared kv head.
  virtual void AttentionBackward(const AttentionShape& shape, const float* q, const float* k,
                                 const float* v, const float* probs, const float* dout, float* dq,
                                 float* dk, float* dv) = 0;

  // ---- Embedding and loss ---------------------------------------------------

  // A vocabulary-parallel lookup (Megatron-LM's VocabParallelEmbedding):
  // this rank holds rows [vocab_start, vocab_start + vocab_local) of the
  // table (vocab_local × hidden). out[r] = table[ids[r] − vocab_start] when
  // ids[r] falls in that range, zero otherwise (the tp all-reduce sums the
  // ranks' outputs).
  virtual void EmbeddingForward(const int32_t* ids, int64_t rows, const float* table,
                                int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                                float* out) = 0;
  // dtable[ids[r] − vocab_start] += dout[r] for the ids in range.
  virtual void EmbeddingBackward(const int32_t* ids, int64_t rows, const float* dout,
                                 int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                                 float* dtable) = 0;

  // Vocabulary-parallel softmax cross-entropy (Megatron-LM's
  // _VocabParallelCrossEntropy), in three steps with tp all-reduces between
  // them. logits is rows × vocab_local, this rank's columns
  // [vocab_start, vocab_start + vocab_local) of the vocabulary.
  //   1. row_max[r] = max_c logits[r][c]                  (then all-reduce max)
  virtual void LogitsRowMax(const float* logits, int64_t rows, int64_t vocab_local,
                            float* row_max) = 0;
  //   2. sum_exp[r] = Σ_c exp(logits[r][c] − row_max[r]);
  //      target_logit[r] = logits[r][targets[r] − vocab_start] when the
  //      target is this rank's, else 0                     (then all-reduce sum)
  virtual void CrossEntropyPartials(const float* logits, int64_t rows, int64_t vocab_local,
                                    const float* row_max, const int32_t* targets,
                                    int64_t vocab_start, float* sum_exp, float* target_logit) = 0;
  //   3. loss[r] = log(sum_exp[r]) + row_max[r] − target_logit[r];
  //      dlogits = scale·(softmax − onehot(target)) (overwritten).
  virtual void CrossEntropyLoss(const float* row_max, const float* sum_exp,
                                const float* target_logit, int64_t rows, float* loss) = 0;
  virtual void CrossEntropyBackward(const float* logits, int64_t rows, int64_t vocab_local,
                                    const float* row_max, const float* sum_exp,
                                    const int32_t* targets, int64_t vocab_start, float scale,
                                    float* dlogits) = 0;

  // ---- Optimizer ------------------------------------------------------------

  // One AdamW step (see AdamHyperparameters) on n parameters; `step` is the
  // 1-based step count t used in the bias corrections.
  virtual void AdamStep(float* param, const float* grad, float* m, float* v, int64_t n,
                        const AdamHyperparameters& hyper, int64_t step) = 0;

 protected:
  Backend() = default;
  virtual void* AllocateBytes(int64_t bytes) = 0;
  virtual void FreeBytes(void* p, int64_t bytes) = 0;

 private:
  int64_t allocated_ = 0;
  int64_t peak_ = 0;
};

// Makes the backend of `kind` for the rank that is `local_rank` on its node
// (the CUDA backend uses GPU local_rank mod the visible count). Unavailable
// with the reason when the binary was built without CUDA or no GPU is
// visible.
Result<std::unique_ptr<Backend>> MakeBackend(BackendKind kind, int local_rank);

// Device memory of `size` elements of T, owned; freed through its backend.
// Move-only.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  // REQUIRES: size >= 0.
  DeviceArray(Backend& backend, int64_t size)
      : backend_(&backend),
        data_(size > 0 ? static_cast<T*>(backend.Allocate(size * int64_t{sizeof(T)})) : nullptr),
        size_(size) {}
  DeviceArray(DeviceArray&& other) noexcept { *this = std::move(other); }
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    if (this != &other) {
      Reset();
      backend_ = std::exchange(other.backend_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { Reset(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  int64_t bytes() const { return size_ * int64_t{sizeof(T)}; }
  bool empty() const { return size_ == 0; }

  // Frees the memory; the array becomes empty.
  void Reset() {
    if (data_ != nullptr) backend_->Free(data_, bytes());
    data_ = nullptr;
    size_ = 0;
  }

 private:
  Backend* backend_ = nullptr;
  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_BACKEND_H_
