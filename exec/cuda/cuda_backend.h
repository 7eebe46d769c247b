// The `cuda` backend of the executor (exec/backend.h): cuBLAS for the
// GEMMs, CUDA kernels (exec/cuda/cuda_kernels.cu) for everything else, all
// on one stream of the rank's GPU.
//
// Thread-safety: as Backend.
#ifndef ORRERY_EXEC_CUDA_CUDA_BACKEND_H_
#define ORRERY_EXEC_CUDA_CUDA_BACKEND_H_

#include <memory>

#include "core/status.h"
#include "exec/backend.h"

namespace orrery::exec {

// The backend on GPU `local_rank` mod the visible GPU count. Unavailable
// with the reason (no driver, no GPU, a CUDA or cuBLAS error) otherwise.
// Defined only when the binary is built with CUDA (ORRERY_HAVE_CUDA).
Result<std::unique_ptr<Backend>> MakeCudaBackend(int local_rank);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_CUDA_CUDA_BACKEND_H_
