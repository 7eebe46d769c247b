// MpiWorld: this process's membership in the MPI job that `mpirun` or
// `srun` started — the distributed engine of the executor and of the
// profilers (DESIGN.md: "the distributed engine is MPI").
//
// It initializes MPI (MPI_THREAD_FUNNELED) on Join and finalizes it on
// destruction, and offers the few host-side collectives the executor needs
// around the device communicators: agreeing on a status, reducing scalars,
// gathering each rank's bytes on rank 0. A process not started by a
// launcher joins as a world of one (MPI singleton initialization).
//
// Errors: Fail() is how a rank that cannot go on takes the job down. It
// prints "orrery: rank R (host): <message>" to stderr and calls MPI_Abort,
// so the other ranks do not hang. AgreeOnStatus() is the collective way to
// stop cleanly: when any rank's status is an error, every rank returns the
// first failing rank's error (with its rank named), and all can exit
// without a partial output.
//
// Thread-safety: one MpiWorld per process, used from the thread that made it.
#ifndef ORRERY_EXEC_MPI_WORLD_H_
#define ORRERY_EXEC_MPI_WORLD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace orrery::exec {

class MpiWorld {
 public:
  // MPI_Init_thread. Internal when MPI cannot be initialized; FailedPrecondition
  // when a world was already joined in this process.
  static Result<std::unique_ptr<MpiWorld>> Join();

  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;
  ~MpiWorld();  // MPI_Finalize

  int rank() const { return rank_; }
  int size() const { return size_; }
  // The rank among the ranks on this node (MPI_Comm_split_type shared).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& host_name() const { return host_name_; }

  // Prints the error as above and aborts the job. Never returns.
  [[noreturn]] void Fail(const Status& error) const;

  // Collective. OK when every rank passed OK; otherwise the error of the
  // lowest failing rank on every rank, its message prefixed "rank R: ".
  Status AgreeOnStatus(const Status& mine) const;

  void Barrier() const;
  // Collective sums and maxima of host scalars over the world.
  double AllReduceSum(double value) const;
  double AllReduceMax(double value) const;
  int64_t AllReduceMax(int64_t value) const;
  // Element-wise maximum of `values` over the world, in place.
  // REQUIRES: every rank passes the same number of values.
  void AllReduceMax(std::vector<double>& values) const;

  // Collective: on rank 0, every rank's bytes in rank order; elsewhere empty.
  std::vector<std::string> GatherToRoot(const std::string& mine) const;
  // Collective: rank 0's `value` on every rank.
  std::string BroadcastFromRoot(const std::string& value) const;

  // MPI_Wtime-independent wall clock in seconds (steady_clock), for timing.
  static double Now();

 private:
  MpiWorld() = default;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::string host_name_;
};

// True when a launcher started this process: OpenMPI's mpirun
// (OMPI_COMM_WORLD_SIZE), a PMIx launcher (PMIX_RANK) or a PMI one such as
// srun or MPICH's mpiexec (PMI_SIZE). Commands that also run by hand (such
// as `orrery discover`) join the world only then.
bool LaunchedByMpiLauncher();

// The name of this host (gethostname), or "unknown-host".
std::string HostName();

// MPI's text for an error code (MPI_Error_string), or "MPI error N".
std::string MpiErrorString(int code);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_MPI_WORLD_H_
