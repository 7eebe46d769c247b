#include "exec/backend.h"

#include <algorithm>
#include <string>

#include "core/check.h"
#include "exec/cpu/cpu_backend.h"

#ifdef ORRERY_HAVE_CUDA
#include "exec/cuda/cuda_backend.h"
#endif

namespace orrery::exec {

std::string_view BackendKindName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kCpu:
      return "cpu";
    case BackendKind::kCuda:
      return "cuda";
  }
  ORRERY_CHECK(false) << "unknown BackendKind " << static_cast<int>(kind);
  return "";
}

Result<BackendKind> ParseBackendKind(std::string_view name) {
  for (BackendKind kind : {BackendKind::kCpu, BackendKind::kCuda}) {
    if (name == BackendKindName(kind)) return kind;
  }
  return InvalidArgumentError("unknown backend '" + std::string(name) +
                              "': expected 'cpu' or 'cuda'");
}

void* Backend::Allocate(int64_t bytes) {
  ORRERY_CHECK_GE(bytes, 0);
  void* p = AllocateBytes(bytes);
  allocated_ += bytes;
  peak_ = std::max(peak_, allocated_);
  return p;
}

void Backend::Free(void* p, int64_t bytes) {
  ORRERY_CHECK_GE(bytes, 0);
  ORRERY_CHECK_LE(bytes, allocated_) << "freeing more than is allocated";
  FreeBytes(p, bytes);
  allocated_ -= bytes;
}

Result<std::unique_ptr<Backend>> MakeBackend(BackendKind kind, int local_rank) {
  switch (kind) {
    case BackendKind::kCpu:
      return MakeCpuBackend();
    case BackendKind::kCuda:
#ifdef ORRERY_HAVE_CUDA
      return MakeCudaBackend(local_rank);
#else
      (void)local_rank;
      return UnavailableError(
          "this orrery was built without the CUDA backend (no CUDA toolkit with cuBLAS and "
          "NCCL was found at configure time)");
#endif
  }
  return InvalidArgumentError("unknown BackendKind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace orrery::exec
