// MpiCommunicator: the MPI implementation of Communicator
// (exec/communicator.h), for the `cpu` backend, whose device memory is host
// memory that MPI reads and writes directly.
//
// The group is an MPI sub-communicator split from MPI_COMM_WORLD
// (MPI_Comm_split, color = the group's smallest world rank, key = this
// rank's position in world_ranks, so group rank i is world_ranks[i]).
// Blocking collectives are MPI_Allreduce (in place), MPI_Allgather,
// MPI_Reduce_scatter_block, MPI_Alltoall, MPI_Bcast and MPI_Barrier; the
// asynchronous ones are MPI_Iallreduce, MPI_Iallgather and
// MPI_Ireduce_scatter_block, and Isend/Irecv are MPI_Isend/MPI_Irecv, all
// posted when called, so a batch of them progresses together. Every
// point-to-point message of a communicator carries one tag: MPI delivers
// messages of one (sender, tag, communicator) in the order they were sent
// (MPI-3.1 §3.5, "Order"), so the transfers between two peers match in
// program order.
//
// Counts above INT_MAX elements (MPI's `int` counts): the element-wise
// operations (AllReduce, AllReduceAsync, Broadcast, Isend, Irecv) are split
// into consecutive calls of at most `max_count_per_call` elements; the
// block operations (AllGather, ReduceScatter, AllToAll and their async
// forms), whose per-rank blocks would need strided chunks, CHECK that the
// count fits (a block of 2^31 floats is 8 GiB per rank).
//
// Failure: the communicator's MPI calls return their errors
// (MPI_ERRORS_RETURN); a failing call prints the rank, the call and
// MPI_Error_string to stderr and aborts the job (MPI_Abort), as the
// Communicator contract says.
//
// Lifetime: a communicator, and every request it returned, must be
// destroyed before the MpiWorld (whose destructor finalizes MPI). A request
// destroyed before its Wait() waits, so MPI never writes a buffer its owner
// may have released.
//
// Thread-safety: as Communicator.
#ifndef ORRERY_EXEC_MPI_COMMUNICATOR_H_
#define ORRERY_EXEC_MPI_COMMUNICATOR_H_

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "exec/backend.h"
#include "exec/communicator.h"

namespace orrery::exec {

// Aborts the job unless `result` is MPI_SUCCESS: prints
// "orrery: rank R (host): <call> failed: <MPI_Error_string>" to stderr and
// calls MPI_Abort(MPI_COMM_WORLD, 1). For MPI calls made with
// MPI_ERRORS_RETURN.
void CheckMpiCall(int result, const char* call);

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `group_comm` (freed on destruction), whose group rank
  // i is world rank world_ranks[i]; sets MPI_ERRORS_RETURN on it.
  // Operations first wait for `backend` (Synchronize) so that they see the
  // results of the operations issued before them. max_count_per_call is the
  // largest count of one MPI call (see above; smaller values are for tests).
  // REQUIRES: backend.kind() == kCpu; 1 <= max_count_per_call <= INT_MAX.
  MpiCommunicator(Backend& backend, MPI_Comm group_comm, std::vector<int> world_ranks,
                  int max_count_per_call = INT_MAX);
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(world_ranks_.size()); }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  std::string library() const override { return "mpi"; }

  void AllReduce(float* data, int64_t count, ReduceOp op = ReduceOp::kSum) override;
  void AllGather(const float* send, float* recv, int64_t count) override;
  void ReduceScatter(const float* send, float* recv, int64_t count) override;
  void AllToAll(const float* send, float* recv, int64_t count) override;
  void Broadcast(float* data, int64_t count, int root) override;
  void Barrier() override;

  std::unique_ptr<CommRequest> AllReduceAsync(float* data, int64_t count) override;
  std::unique_ptr<CommRequest> AllGatherAsync(const float* send, float* recv,
                                              int64_t count) override;
  std::unique_ptr<CommRequest> ReduceScatterAsync(const float* send, float* recv,
                                                  int64_t count) override;

  std::unique_ptr<CommRequest> Isend(const float* data, int64_t count, int peer) override;
  std::unique_ptr<CommRequest> Irecv(float* data, int64_t count, int peer) override;

 private:
  // The count of a block operation as MPI's int; CHECKs that it fits.
  int BlockCount(int64_t count, const char* operation) const;
  void CheckPeer(int peer) const;

  Backend& backend_;
  MPI_Comm comm_;
  std::vector<int> world_ranks_;
  int rank_ = 0;
  int max_count_per_call_;
};

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_MPI_COMMUNICATOR_H_
