// The host side of the `cuda` backend (exec/cuda/cuda_backend.h): the
// device, its compute stream, the cuBLAS handle bound to that stream, the
// memory, and the launches of exec/cuda/cuda_kernels.h.
//
// Choices:
//   * cuBLAS runs in CUBLAS_DEFAULT_MATH: true fp32 GEMMs, so that results
//     match the CPU backend to fp32 tolerances. TF32 tensor cores
//     (CUBLAS_TF32_TENSOR_OP_MATH) are for a later option, not enabled here.
//   * Memory comes from the device's stream-ordered pool (cudaMallocAsync /
//     cudaFreeAsync on the compute stream) rather than cudaMalloc/cudaFree:
//     cudaFree synchronizes the whole device, which would wait for NCCL
//     kernels in flight on the communication stream and can deadlock ranks
//     that exchange point-to-point messages (1F1B). Freeing on the compute
//     stream is ordered after every operation issued before it, and the
//     communicator's contract (buffers untouched until Wait) makes the
//     compute stream wait for NCCL's use of a buffer before its free. The
//     pool keeps freed memory for reuse (release threshold = max), as
//     PyTorch's caching allocator. Every pointer it returns is 256-byte
//     aligned (CUDA C++ Programming Guide, "Device Memory Accesses").
//   * Two scratch buffers lie outside the accounting of Backend::Allocate:
//     8 KiB for Sum/SumOfSquares, and AttentionBackward's dS
//     (batch·heads·sequence² floats, stream-ordered, freed at once).
//   * A CUDA or cuBLAS error after construction aborts (ORRERY_CHECK) with
//     the call and the library's error string; errors while constructing
//     are an Unavailable status.
#include "exec/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "core/check.h"
#include "exec/cuda/cuda_kernels.h"

namespace orrery::exec {
namespace {

#define ORRERY_CUDA_CHECK(call)                                               \
  do {                                                                        \
    const cudaError_t orrery_cuda_error = (call);                             \
    ORRERY_CHECK(orrery_cuda_error == cudaSuccess)                            \
        << #call << " failed: " << cudaGetErrorString(orrery_cuda_error);     \
  } while (0)

#define ORRERY_CUBLAS_CHECK(call)                                             \
  do {                                                                        \
    const cublasStatus_t orrery_cublas_status = (call);                       \
    ORRERY_CHECK(orrery_cublas_status == CUBLAS_STATUS_SUCCESS)               \
        << #call << " failed: " << cublasGetStatusString(orrery_cublas_status); \
  } while (0)

Status CudaUnavailable(const char* call, cudaError_t error) {
  return UnavailableError(std::string("CUDA backend: ") + call + " failed: " +
                          cudaGetErrorString(error));
}

Status CublasUnavailable(const char* call, cublasStatus_t status) {
  return UnavailableError(std::string("CUDA backend: ") + call + " failed: " +
                          cublasGetStatusString(status));
}

// "13.0" from cudaRuntimeGetVersion's 13000.
std::string CudaVersionString(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

// "13.0.2" from cublasGetVersion's 130002 (CUBLAS_VERSION's encoding:
// major·10000 + minor·100 + patch).
std::string CublasVersionString(int version) {
  return std::to_string(version / 10000) + "." + std::to_string((version / 100) % 100) + "." +
         std::to_string(version % 100);
}

int CheckedInt(int64_t value, const char* what) {
  ORRERY_CHECK(value >= 0 && value <= std::numeric_limits<int>::max())
      << what << " = " << value << " does not fit cuBLAS's int";
  return static_cast<int>(value);
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {}
  ~CudaBackend() override {
    // Errors are ignored here: the device may already be unusable.
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (reduce_scratch_ != nullptr) cudaFree(reduce_scratch_);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Everything that can fail at construction, as a status.
  Status Init() {
    if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) {
      return CudaUnavailable("cudaSetDevice", e);
    }
    cudaDeviceProp prop{};
    if (cudaError_t e = cudaGetDeviceProperties(&prop, device_); e != cudaSuccess) {
      return CudaUnavailable("cudaGetDeviceProperties", e);
    }
    int runtime_version = 0;
    if (cudaError_t e = cudaRuntimeGetVersion(&runtime_version); e != cudaSuccess) {
      return CudaUnavailable("cudaRuntimeGetVersion", e);
    }
    if (cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
        e != cudaSuccess) {
      stream_ = nullptr;
      return CudaUnavailable("cudaStreamCreateWithFlags", e);
    }
    if (cublasStatus_t s = cublasCreate(&cublas_); s != CUBLAS_STATUS_SUCCESS) {
      cublas_ = nullptr;
      return CublasUnavailable("cublasCreate", s);
    }
    if (cublasStatus_t s = cublasSetStream(cublas_, stream_); s != CUBLAS_STATUS_SUCCESS) {
      return CublasUnavailable("cublasSetStream", s);
    }
    if (cublasStatus_t s = cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH);
        s != CUBLAS_STATUS_SUCCESS) {
      return CublasUnavailable("cublasSetMathMode", s);
    }
    int cublas_version = 0;
    if (cublasStatus_t s = cublasGetVersion(cublas_, &cublas_version);
        s != CUBLAS_STATUS_SUCCESS) {
      return CublasUnavailable("cublasGetVersion", s);
    }
    cudaMemPool_t pool = nullptr;
    if (cudaError_t e = cudaDeviceGetDefaultMemPool(&pool, device_); e != cudaSuccess) {
      return CudaUnavailable("cudaDeviceGetDefaultMemPool", e);
    }
    uint64_t threshold = std::numeric_limits<uint64_t>::max();
    if (cudaError_t e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
        e != cudaSuccess) {
      return CudaUnavailable("cudaMemPoolSetAttribute", e);
    }
    void* scratch = nullptr;
    if (cudaError_t e = cudaMalloc(&scratch, (cuda_kernels::kReducePartials + 1) * sizeof(double));
        e != cudaSuccess) {
      return CudaUnavailable("cudaMalloc", e);
    }
    reduce_scratch_ = static_cast<double*>(scratch);
    device_name_ = std::string(prop.name) + " (CUDA " + CudaVersionString(runtime_version) +
                   ", cuBLAS " + CublasVersionString(cublas_version) + ")";
    return Status::Ok();
  }

  cudaStream_t stream() const { return stream_; }

  BackendKind kind() const override { return BackendKind::kCuda; }
  std::string device_name() const override { return device_name_; }

  void CopyToHost(const void* device_src, void* host_dst, int64_t bytes) override {
    if (bytes <= 0) return;
    ORRERY_CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, static_cast<size_t>(bytes),
                                      cudaMemcpyDeviceToHost, stream_));
    ORRERY_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void CopyFromHost(const void* host_src, void* device_dst, int64_t bytes) override {
    if (bytes <= 0) return;
    ORRERY_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, static_cast<size_t>(bytes),
                                      cudaMemcpyHostToDevice, stream_));
    // The caller may reuse or free host_src as soon as this returns.
    ORRERY_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void CopyOnDevice(const void* src, void* dst, int64_t bytes) override {
    if (bytes <= 0) return;
    ORRERY_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes),
                                      cudaMemcpyDeviceToDevice, stream_));
  }
  void Fill(float* x, int64_t n, float value) override {
    ORRERY_CUDA_CHECK(cuda_kernels::Fill(x, n, value, stream_));
  }
  void Synchronize() override { ORRERY_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
            int64_t ldc) override {
    const ColumnMajorGemm g = MapRowMajorGemm(transpose_a, transpose_b, m, n, k, lda, ldb, ldc);
    ORRERY_CUBLAS_CHECK(cublasSgemm(
        cublas_, g.transpose_first ? CUBLAS_OP_T : CUBLAS_OP_N,
        g.transpose_second ? CUBLAS_OP_T : CUBLAS_OP_N, CheckedInt(g.m, "m"), CheckedInt(g.n, "n"),
        CheckedInt(g.k, "k"), &alpha, b, CheckedInt(g.ld_first, "ldb"), a,
        CheckedInt(g.ld_second, "lda"), &beta, c, CheckedInt(g.ldc, "ldc")));
  }
  void Add(const float* a, const float* b, float* out, int64_t n) override {
    ORRERY_CUDA_CHECK(cuda_kernels::Add(a, b, out, n, stream_));
  }
  void Axpy(float alpha, const float* x, float* y, int64_t n) override {
    ORRERY_CUDA_CHECK(cuda_kernels::Axpy(alpha, x, y, n, stream_));
  }
  void Scale(float* x, int64_t n, float alpha) override {
    ORRERY_CUDA_CHECK(cuda_kernels::Scale(x, n, alpha, stream_));
  }
  void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols) override {
    ORRERY_CUDA_CHECK(cuda_kernels::BiasAdd(y, bias, rows, cols, stream_));
  }
  void BiasGradient(const float* dy, int64_t rows, int64_t cols, float* dbias) override {
    ORRERY_CUDA_CHECK(cuda_kernels::BiasGradient(dy, rows, cols, dbias, stream_));
  }
  double Sum(const float* x, int64_t n) override { return Reduce(x, n, /*squares=*/false); }
  double SumOfSquares(const float* x, int64_t n) override {
    return Reduce(x, n, /*squares=*/true);
  }

  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int64_t cols, float eps, float* y, float* mean, float* rstd) override {
    ORRERY_CUDA_CHECK(
        cuda_kernels::LayerNormForward(x, gamma, beta, rows, cols, eps, y, mean, rstd, stream_));
  }
  void LayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int64_t cols, float* dx, float* dgamma,
                         float* dbeta) override {
    ORRERY_CUDA_CHECK(cuda_kernels::LayerNormBackward(dy, x, gamma, mean, rstd, rows, cols, dx,
                                                      dgamma, dbeta, stream_));
  }
  void RmsNormForward(const float* x, const float* gamma, int64_t rows, int64_t cols, float eps,
                      float* y, float* rstd) override {
    ORRERY_CUDA_CHECK(cuda_kernels::RmsNormForward(x, gamma, rows, cols, eps, y, rstd, stream_));
  }
  void RmsNormBackward(const float* dy, const float* x, const float* gamma, const float* rstd,
                       int64_t rows, int64_t cols, float* dx, float* dgamma) override {
    ORRERY_CUDA_CHECK(
        cuda_kernels::RmsNormBackward(dy, x, gamma, rstd, rows, cols, dx, dgamma, stream_));
  }

  void GeluForward(const float* x, float* y, int64_t n) override {
    ORRERY_CUDA_CHECK(cuda_kernels::GeluForward(x, y, n, stream_));
  }
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override {
    ORRERY_CUDA_CHECK(cuda_kernels::GeluBackward(x, dy, dx, n, stream_));
  }
  void SwiGluForward(const float* gate_up, int64_t rows, int64_t cols, float* out) override {
    ORRERY_CUDA_CHECK(cuda_kernels::SwiGluForward(gate_up, rows, cols, out, stream_));
  }
  void SwiGluBackward(const float* gate_up, const float* dout, int64_t rows, int64_t cols,
                      float* dgate_up) override {
    ORRERY_CUDA_CHECK(cuda_kernels::SwiGluBackward(gate_up, dout, rows, cols, dgate_up, stream_));
  }

  void RopeForward(float* x, int64_t sequence, int64_t batch, int64_t heads, int64_t head_dim,
                   int64_t row_stride, float theta) override {
    ORRERY_CHECK(head_dim % 2 == 0) << "RoPE needs an even head_dim, got " << head_dim;
    ORRERY_CUDA_CHECK(cuda_kernels::Rope(x, sequence, batch, heads, head_dim, row_stride, theta,
                                         1.0f, stream_));
  }
  void RopeBackward(float* dx, int64_t sequence, int64_t batch, int64_t heads, int64_t head_dim,
                    int64_t row_stride, float theta) override {
    ORRERY_CHECK(head_dim % 2 == 0) << "RoPE needs an even head_dim, got " << head_dim;
    ORRERY_CUDA_CHECK(cuda_kernels::Rope(dx, sequence, batch, heads, head_dim, row_stride, theta,
                                         -1.0f, stream_));
  }

  void AttentionForward(const AttentionShape& shape, const float* q, const float* k,
                        const float* v, float* out, float* probs) override {
    ORRERY_CUDA_CHECK(
        cuda_kernels::AttentionForward(Dims(shape), q, k, v, out, probs, stream_));
  }
  void AttentionBackward(const AttentionShape& shape, const float* q, const float* k,
                         const float* v, const float* probs, const float* dout, float* dq,
                         float* dk, float* dv) override {
    const int64_t elements = shape.probs_elements();
    if (elements <= 0) return;
    void* dscores = nullptr;
    ORRERY_CUDA_CHECK(cudaMallocAsync(&dscores, static_cast<size_t>(elements) * sizeof(float),
                                      stream_));
    ORRERY_CUDA_CHECK(cuda_kernels::AttentionBackward(Dims(shape), q, k, v, probs, dout, dq, dk,
                                                      dv, static_cast<float*>(dscores), stream_));
    ORRERY_CUDA_CHECK(cudaFreeAsync(dscores, stream_));
  }

  void EmbeddingForward(const int32_t* ids, int64_t rows, const float* table, int64_t vocab_start,
                        int64_t vocab_local, int64_t hidden, float* out) override {
    ORRERY_CUDA_CHECK(cuda_kernels::EmbeddingForward(ids, rows, table, vocab_start, vocab_local,
                                                     hidden, out, stream_));
  }
  void EmbeddingBackward(const int32_t* ids, int64_t rows, const float* dout,
                         int64_t vocab_start, int64_t vocab_local, int64_t hidden,
                         float* dtable) override {
    ORRERY_CUDA_CHECK(cuda_kernels::EmbeddingBackward(ids, rows, dout, vocab_start, vocab_local,
                                                      hidden, dtable, stream_));
  }
  void LogitsRowMax(const float* logits, int64_t rows, int64_t vocab_local,
                    float* row_max) override {
    ORRERY_CUDA_CHECK(cuda_kernels::LogitsRowMax(logits, rows, vocab_local, row_max, stream_));
  }
  void CrossEntropyPartials(const float* logits, int64_t rows, int64_t vocab_local,
                            const float* row_max, const int32_t* targets, int64_t vocab_start,
                            float* sum_exp, float* target_logit) override {
    ORRERY_CUDA_CHECK(cuda_kernels::CrossEntropyPartials(
        logits, rows, vocab_local, row_max, targets, vocab_start, sum_exp, target_logit, stream_));
  }
  void CrossEntropyLoss(const float* row_max, const float* sum_exp, const float* target_logit,
                        int64_t rows, float* loss) override {
    ORRERY_CUDA_CHECK(
        cuda_kernels::CrossEntropyLoss(row_max, sum_exp, target_logit, rows, loss, stream_));
  }
  void CrossEntropyBackward(const float* logits, int64_t rows, int64_t vocab_local,
                            const float* row_max, const float* sum_exp, const int32_t* targets,
                            int64_t vocab_start, float scale, float* dlogits) override {
    ORRERY_CUDA_CHECK(cuda_kernels::CrossEntropyBackward(logits, rows, vocab_local, row_max,
                                                         sum_exp, targets, vocab_start, scale,
                                                         dlogits, stream_));
  }

  void AdamStep(float* param, const float* grad, float* m, float* v, int64_t n,
                const AdamHyperparameters& hyper, int64_t step) override {
    ORRERY_CHECK(step >= 1) << "AdamW's step count is 1-based, got " << step;
    const double t = static_cast<double>(step);
    const float bias_correction1 = static_cast<float>(1.0 - std::pow(double{hyper.beta1}, t));
    const float bias_correction2 = static_cast<float>(1.0 - std::pow(double{hyper.beta2}, t));
    ORRERY_CUDA_CHECK(cuda_kernels::AdamStep(
        param, grad, m, v, n, hyper.learning_rate, hyper.beta1, hyper.beta2, hyper.epsilon,
        hyper.weight_decay, bias_correction1, bias_correction2, stream_));
  }

 protected:
  void* AllocateBytes(int64_t bytes) override {
    if (bytes <= 0) return nullptr;
    void* p = nullptr;
    const cudaError_t e = cudaMallocAsync(&p, static_cast<size_t>(bytes), stream_);
    ORRERY_CHECK(e == cudaSuccess) << "cudaMallocAsync of " << bytes
                                   << " bytes failed: " << cudaGetErrorString(e);
    return p;
  }
  void FreeBytes(void* p, int64_t /*bytes*/) override {
    if (p == nullptr) return;
    ORRERY_CUDA_CHECK(cudaFreeAsync(p, stream_));
  }

 private:
  static cuda_kernels::AttentionDims Dims(const AttentionShape& shape) {
    ORRERY_CHECK(shape.kv_heads >= 1 && shape.heads % shape.kv_heads == 0)
        << "kv_heads " << shape.kv_heads << " must divide heads " << shape.heads;
    cuda_kernels::AttentionDims d;
    d.batch = shape.batch;
    d.sequence = shape.sequence;
    d.heads = shape.heads;
    d.kv_heads = shape.kv_heads;
    d.head_dim = shape.head_dim;
    d.row_stride = shape.row_stride;
    return d;
  }

  double Reduce(const float* x, int64_t n, bool squares) {
    double* result = reduce_scratch_ + cuda_kernels::kReducePartials;
    ORRERY_CUDA_CHECK(
        cuda_kernels::SumToDevice(x, n, squares, reduce_scratch_, result, stream_));
    double host = 0;
    ORRERY_CUDA_CHECK(
        cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    ORRERY_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }

  const int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  double* reduce_scratch_ = nullptr;  // kReducePartials partials, then the result
  std::string device_name_;
};

}  // namespace

Result<std::unique_ptr<Backend>> MakeCudaBackend(int local_rank) {
  if (local_rank < 0) {
    return InvalidArgumentError("local rank must be >= 0, got " + std::to_string(local_rank));
  }
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    return UnavailableError(std::string("CUDA found no usable GPU: ") + cudaGetErrorString(e));
  }
  if (count == 0) return UnavailableError("CUDA sees no GPU on this machine");
  auto backend = std::make_unique<CudaBackend>(local_rank % count);
  ORRERY_RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

cudaStream_t CudaStreamOf(Backend& backend) {
  ORRERY_CHECK(backend.kind() == BackendKind::kCuda)
      << "CudaStreamOf needs a cuda backend, got " << BackendKindName(backend.kind());
  return static_cast<CudaBackend&>(backend).stream();
}

}  // namespace orrery::exec
