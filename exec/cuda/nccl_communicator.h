// The NCCL implementation of Communicator (exec/communicator.h), for the
// `cuda` backend: the group's NCCL communicator is bootstrapped from MPI as
// nccl-tests does (group rank 0 calls ncclGetUniqueId, MPI_Bcast sends it
// to the group, every member calls ncclCommInitRank).
//
// Thread-safety: as Communicator.
#ifndef ORRERY_EXEC_CUDA_NCCL_COMMUNICATOR_H_
#define ORRERY_EXEC_CUDA_NCCL_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include <mpi.h>

#include "core/status.h"
#include "exec/backend.h"
#include "exec/communicator.h"

namespace orrery::exec {

// The NCCL communicator of the group whose MPI communicator is
// `group_comm` (used for the bootstrap only; the caller keeps owning it);
// world_ranks[i] is the world rank of group rank i. REQUIRES: backend is a
// cuda backend. Internal with NCCL's error string on failure. Defined only
// when the binary is built with CUDA (ORRERY_HAVE_CUDA).
Result<std::unique_ptr<Communicator>> MakeNcclCommunicator(Backend& backend, MPI_Comm group_comm,
                                                           std::vector<int> world_ranks);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_CUDA_NCCL_COMMUNICATOR_H_
