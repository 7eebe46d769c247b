// Profilers: the measurements calibration needs (issue 8), taken on the
// machine at hand with the executor's backends.
//
//   * Compute: every GEMM, attention-core, norm, element-wise, embedding
//     and loss shape a model's layers use under a tensor-parallel degree
//     and micro-batch (from workload::ExpandLayer), timed on one rank's
//     backend: forward and backward, mean of timed repetitions after
//     warm-up. Written as a traces::ComputeProfile whose entries carry the
//     bytes the cost model's operators move (forward_bytes,
//     backward_bytes) and, for the fused attention core
//     ("<prefix>.core"), the operators it covers (<prefix>.qk,
//     <prefix>.softmax, <prefix>.av) with their summed forward FLOPs. A
//     sweep over several tensor-parallel degrees and micro-batches enters
//     each distinct operator (class, name, FLOPs, bytes) or GEMM shape
//     once.
//   * Optimizer: one AdamW step (Backend::AdamStep) over the parameters
//     one rank holds with the whole model split tp ways (P), and over P/2
//     and 2P, into the profile's "optimizer" list.
//   * Collectives: all-reduce, all-gather, reduce-scatter, all-to-all and
//     send/recv over the whole MPI world, sizes from min_bytes to max_bytes
//     doubling, timed as nccl-tests does (warm-up iterations, a barrier,
//     `iterations` timed back to back, time = mean per iteration, maximum
//     over ranks), printed in nccl-tests' columns (size, count, type,
//     redop, root, time, algbw, busbw, #wrong) and saved in nccl-tests'
//     log format so that traces::ParseNcclTestsLog and `orrery calibrate`
//     read them like any nccl-tests log.
//
// Thread-safety: called from one thread per rank.
#ifndef ORRERY_EXEC_PROFILER_H_
#define ORRERY_EXEC_PROFILER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "traces/collective_op.h"
#include "traces/compute_profile.h"
#include "workload/model_spec.h"

namespace orrery::exec {

struct ComputeProfileOptions {
  int tp = 1;
  int64_t micro_batch = 1;
  int64_t sequence_length = 0;  // 0: the model's default
  int warmup = 2;
  int repetitions = 10;
  // Time the AdamW step too (see above), at most this many parameters per
  // measurement (four fp32 arrays of that length are allocated).
  bool optimizer = true;
  int64_t max_optimizer_parameters = int64_t{1} << 26;
  // Bytes written to a scratch buffer before every timed call, so that a
  // kernel's operands are not left in the caches by its previous call: in a
  // training step the data of one operator is evicted by the others'
  // before it runs again (Triton's do_bench clears the L2 the same way,
  // with 256 MB on GPUs). 0: no flush. -1: the backend's default — on the
  // cpu backend four times the core's L2 (CpuL2CacheBytes; 8 MiB on this
  // project's machines, whose cores have 2 MiB of L2: the level a repeated
  // call keeps warm; without the flush the profile times gpt-tiny's GEMMs
  // 15-20% faster than the executor's traced steps show them), 256 MiB on
  // cuda.
  int64_t flush_bytes = -1;
  // Called before every timed call (after the flush), on every rank that
  // profiles at once: `orrery profile` passes an MPI barrier, so that all
  // ranks run the same kernel at the same moment and each is timed beside
  // the others' work, as in a data- or tensor-parallel step. Empty: none.
  std::function<void()> align;
};

// The L2 cache of the CPU this process runs on, from sysfs
// (/sys/devices/system/cpu/cpu0/cache/index*/ with level 2: the size of the
// unified or data cache); 2 MiB when sysfs does not say.
int64_t CpuL2CacheBytes();

// Times the operators of `model`'s layers on `backend`. `progress` (may be
// empty) is called with a line per measured shape. InvalidArgument when
// the layout does not divide the model.
Result<traces::ComputeProfile> ProfileCompute(
    Backend& backend, const workload::ModelSpec& model, const ComputeProfileOptions& options,
    const std::function<void(const std::string&)>& progress);

// ProfileCompute over every (tp, micro-batch) of `tps` × `micro_batches`
// (options.tp and options.micro_batch are not read), into one profile: an
// operator that several combinations share is measured and entered once;
// the optimizer is timed per tp (sizes already measured are not repeated).
// InvalidArgument when a list is empty, a value is < 1, or a tp does not
// divide the model.
Result<traces::ComputeProfile> ProfileComputeSweep(
    Backend& backend, const workload::ModelSpec& model, const ComputeProfileOptions& options,
    const std::vector<int>& tps, const std::vector<int64_t>& micro_batches,
    const std::function<void(const std::string&)>& progress);

// Collective over `world`: replaces every time of `profile` (each entry's
// forward and backward, each optimizer step) by its maximum over the
// ranks, so that a profile every rank took at once (`orrery profile` under
// mpirun) times each operator as a synchronous step pays for it — the step
// waits for its slowest rank, as nccl-tests reports a collective's slowest
// rank. On the development machine one vCPU ran gpt-tiny's operators
// 20-40% slower than the other; the profile of rank 0 alone predicted every
// 2-rank plan short. FailedPrecondition (on every rank) when the ranks'
// profiles do not list the same entries in the same order.
Status TakeSlowestRank(const MpiWorld& world, traces::ComputeProfile& profile);

struct CollectiveProfileOptions {
  std::vector<traces::CollectiveOp> ops;  // empty: the five above
  int64_t min_bytes = 8;
  int64_t max_bytes = int64_t{1} << 30;
  int warmup = 5;
  int iterations = 20;
};

// One measured row, as nccl-tests prints it.
struct CollectiveMeasurement {
  traces::CollectiveOp op = traces::CollectiveOp::kAllReduce;
  int ranks = 1;
  int64_t bytes = 0;  // nccl-tests' size
  double time_us = 0;
  double algbw_gbps = 0;  // decimal GB/s
  double busbw_gbps = 0;
};

// Collective over `world`: measures every op at every size on `backend`
// with the world communicator. On rank 0 the measurements and, per op, the
// nccl-tests-format log text (keyed in the same order as `ops`); `print`
// (rank 0 only, may be empty) is called with each line of the table as it
// is measured. Sizes that do not fit the device are skipped with a note.
struct CollectiveProfile {
  std::vector<CollectiveMeasurement> rows;
  std::vector<std::pair<traces::CollectiveOp, std::string>> logs;
};
Result<CollectiveProfile> ProfileCollectives(MpiWorld& world, Backend& backend,
                                             const CollectiveProfileOptions& options,
                                             const std::function<void(const std::string&)>& print);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_PROFILER_H_
