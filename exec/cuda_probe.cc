#include "exec/cuda_probe.h"

namespace orrery::exec {

#ifdef ORRERY_HAVE_CUDA
// Defined in exec/cuda/cuda_probe_cuda.cc, the only file that includes the
// CUDA headers.
Result<CudaEnvironment> ProbeCudaRuntime();

bool CudaBackendCompiled() { return true; }
Result<CudaEnvironment> ProbeCuda() { return ProbeCudaRuntime(); }
#else
bool CudaBackendCompiled() { return false; }
Result<CudaEnvironment> ProbeCuda() {
  return UnavailableError(
      "this orrery was built without the CUDA toolkit (no CUDA backend); "
      "rebuild where CUDA, cuBLAS and NCCL are installed");
}
#endif

}  // namespace orrery::exec
