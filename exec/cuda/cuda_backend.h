// The `cuda` backend of the executor (exec/backend.h): cuBLAS for the
// GEMMs, CUDA kernels (exec/cuda/cuda_kernels.cu) for everything else, all
// on one stream of the rank's GPU.
//
// Thread-safety: as Backend.
#ifndef ORRERY_EXEC_CUDA_CUDA_BACKEND_H_
#define ORRERY_EXEC_CUDA_CUDA_BACKEND_H_

#include <cstdint>
#include <memory>

#include "core/status.h"
#include "exec/backend.h"

// The CUDA runtime's stream handle, declared as <driver_types.h> does so
// that this header needs no CUDA include.
struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace orrery::exec {

// The backend on GPU `local_rank` mod the visible GPU count. Unavailable
// with the reason (no driver, no GPU, a CUDA or cuBLAS error) otherwise.
// Defined only when the binary is built with CUDA (ORRERY_HAVE_CUDA).
Result<std::unique_ptr<Backend>> MakeCudaBackend(int local_rank);

// The compute stream of a backend made by MakeCudaBackend, on which every
// one of its operations runs (the NCCL communicator orders its own stream
// against it). REQUIRES: backend.kind() == BackendKind::kCuda.
cudaStream_t CudaStreamOf(Backend& backend);

// How Backend::Gemm's row-major product maps onto cuBLAS's column-major
// cublasSgemm. A row-major matrix read as column-major is its transpose, so
// the row-major C = op(A)·op(B) (m × n) is computed as the column-major
//   Cᵀ = op(B)ᵀ·op(A)ᵀ   (n × m):
// B is cuBLAS's first operand and A its second, each keeping its own
// transpose flag and leading dimension; cuBLAS's (m, n) are the row-major
// (n, m); ldc is unchanged. (The identity (XY)ᵀ = YᵀXᵀ.)
struct ColumnMajorGemm {
  bool transpose_first = false;   // cublasSgemm's transa, applied to B
  bool transpose_second = false;  // transb, applied to A
  int64_t m = 0;                  // rows of cuBLAS's C = row-major n
  int64_t n = 0;                  // columns of cuBLAS's C = row-major m
  int64_t k = 0;
  int64_t ld_first = 0;   // ldb
  int64_t ld_second = 0;  // lda
  int64_t ldc = 0;
};

// The arguments of Backend::Gemm, mapped as above. Pure host arithmetic.
inline ColumnMajorGemm MapRowMajorGemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                                       int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  ColumnMajorGemm g;
  g.transpose_first = transpose_b;
  g.transpose_second = transpose_a;
  g.m = n;
  g.n = m;
  g.k = k;
  g.ld_first = ldb;
  g.ld_second = lda;
  g.ldc = ldc;
  return g;
}

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_CUDA_CUDA_BACKEND_H_
