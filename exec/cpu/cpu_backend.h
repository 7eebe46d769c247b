// The `cpu` backend of the executor (exec/backend.h): the math every rank
// runs on its CPU core. GEMMs and attention's matrix products are Eigen's
// (single-threaded: one rank per core, orrery_exec is built without OpenMP);
// everything else is plain loops over host memory. Reductions over a row
// (norm statistics, softmax sums, Sum, SumOfSquares) and over the rows of a
// column (bias, γ and β gradients) accumulate in double.
//
// "Device memory" is host memory from aligned_alloc (256-byte aligned),
// cached by size once freed, as a GPU framework's caching allocator does (a
// step reuses the previous step's blocks instead of page-faulting on fresh
// ones); operations are synchronous, so Synchronize() has nothing to wait
// for.
//
// The class is private to exec/cpu/cpu_backend.cc; MakeBackend(kCpu) and
// MakeCpuBackend() make one.
//
// Thread-safety: as Backend (one thread).
#ifndef ORRERY_EXEC_CPU_CPU_BACKEND_H_
#define ORRERY_EXEC_CPU_CPU_BACKEND_H_

#include <memory>

#include "exec/backend.h"

namespace orrery::exec {

// A CPU backend; never fails. Its device_name() is the CPU model from
// /proc/cpuinfo and the Eigen version: "AMD EPYC 7B13 (1 thread, Eigen 3.4.0)".
std::unique_ptr<Backend> MakeCpuBackend();

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_CPU_CPU_BACKEND_H_
