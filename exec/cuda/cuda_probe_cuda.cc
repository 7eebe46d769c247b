// The CUDA side of exec/cuda_probe.h: compiled only when the CUDA toolkit
// with cuBLAS and NCCL is found.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "exec/cuda_probe.h"

namespace orrery::exec {

Result<CudaEnvironment> ProbeCudaRuntime() {
  CudaEnvironment env;
  cudaRuntimeGetVersion(&env.runtime_version);
  env.cublas_version = static_cast<int>(cublasGetCudartVersion());
  if (ncclGetVersion(&env.nccl_version) != ncclSuccess) env.nccl_version = 0;
  if (cudaDriverGetVersion(&env.driver_version) != cudaSuccess || env.driver_version == 0) {
    return UnavailableError("no NVIDIA driver is installed on this machine (no GPU to run on)");
  }
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return UnavailableError(std::string("CUDA found no usable GPU: ") + cudaGetErrorString(err));
  }
  if (count == 0) return UnavailableError("CUDA sees no GPU on this machine");
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      return InternalError("cudaGetDeviceProperties failed for device " + std::to_string(i));
    }
    CudaDeviceInfo d;
    d.index = i;
    d.name = prop.name;
    char bus[32] = {0};
    if (cudaDeviceGetPCIBusId(bus, sizeof(bus), i) == cudaSuccess) d.pci_bus_id = bus;
    d.memory = Bytes(static_cast<int64_t>(prop.totalGlobalMem));
    d.compute_capability_major = prop.major;
    d.compute_capability_minor = prop.minor;
    d.multiprocessors = prop.multiProcessorCount;
    env.devices.push_back(d);
  }
  return env;
}

}  // namespace orrery::exec
