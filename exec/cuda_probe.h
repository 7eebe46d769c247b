// What the CUDA backend finds on this machine: the driver, the runtime,
// cuBLAS, NCCL and each visible GPU. The executor and `orrery discover`
// ask this before using a GPU; tests that need a GPU skip, with this
// status's message, when it is not OK.
//
// Thread-safety: ProbeCuda() is thread-safe.
#ifndef ORRERY_EXEC_CUDA_PROBE_H_
#define ORRERY_EXEC_CUDA_PROBE_H_

#include <string>
#include <vector>

#include "core/status.h"
#include "core/units.h"

namespace orrery::exec {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;        // "NVIDIA H100 80GB HBM3"
  std::string pci_bus_id;  // "0000:18:00.0"
  Bytes memory;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;
};

struct CudaEnvironment {
  int driver_version = 0;   // as cudaDriverGetVersion: 1000·major + 10·minor
  int runtime_version = 0;  // as cudaRuntimeGetVersion
  int cublas_version = 0;
  int nccl_version = 0;     // as ncclGetVersion: e.g. 22703 for 2.27.3
  std::vector<CudaDeviceInfo> devices;
};

// True when this binary was built with the CUDA backend.
bool CudaBackendCompiled();

// The CUDA environment. Unavailable when the binary was built without CUDA,
// when no driver is installed, or when no GPU is visible; the message says
// which.
Result<CudaEnvironment> ProbeCuda();

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_CUDA_PROBE_H_
