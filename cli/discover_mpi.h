// The MPI side of `orrery discover` across nodes: joining the job that
// `mpirun` (or `srun`) started, and gathering each rank's bytes on rank 0.
//
// One rank per node is assumed: each rank discovers the node it runs on and
// sends what it found to rank 0, which folds the nodes into one cluster spec
// (topology/node_folding.h). MPI is initialized only when a launcher's
// environment is present, so that `orrery discover` run by hand never starts
// an MPI runtime.
//
// Thread-safety: one MpiJob per process, used from the thread that made it.
#ifndef ORRERY_CLI_DISCOVER_MPI_H_
#define ORRERY_CLI_DISCOVER_MPI_H_

#include <memory>
#include <string>
#include <vector>

namespace orrery::cli {

// True when a launcher started this process: OpenMPI's mpirun
// (OMPI_COMM_WORLD_SIZE), a PMIx launcher (PMIX_RANK) or a PMI one such as
// srun or MPICH's mpiexec (PMI_SIZE).
bool LaunchedByMpiLauncher();

// Membership in the MPI job: MPI_Init on construction, MPI_Finalize on
// destruction.
class MpiJob {
 public:
  // Joins the job when LaunchedByMpiLauncher(); nullptr otherwise.
  static std::unique_ptr<MpiJob> JoinIfLaunched();

  MpiJob(const MpiJob&) = delete;
  MpiJob& operator=(const MpiJob&) = delete;
  ~MpiJob();

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Collective: every rank calls it with its bytes. On rank 0, the bytes of
  // every rank in rank order (MPI_Gather of the lengths, then MPI_Gatherv);
  // elsewhere empty.
  std::vector<std::string> GatherToRoot(const std::string& mine) const;

  // Collective: rank 0's `value` on every rank (MPI_Bcast).
  int BroadcastFromRoot(int value) const;

 private:
  MpiJob();
  int rank_ = 0;
  int size_ = 1;
};

// The name of this host (gethostname), or "unknown-host".
std::string HostName();

}  // namespace orrery::cli

#endif  // ORRERY_CLI_DISCOVER_MPI_H_
