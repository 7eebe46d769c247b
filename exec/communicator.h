// Communicator: the collectives and point-to-point transfers of one group
// of ranks, on a backend's device memory — MPI on the `cpu` backend
// (exec/mpi_communicator.h), NCCL on the `cuda` backend
// (exec/cuda/nccl_communicator.h, bootstrapped from MPI as nccl-tests does).
//
// Every buffer is float32 device memory of the group's backend; counts are
// elements. Ranks are group ranks, 0 … size() − 1; world_ranks() maps them
// to the MPI job's ranks.
//
// Ordering: an operation is issued in program order after the backend
// operations before it and before those after it (CUDA: NCCL runs on a
// communication stream that waits for the compute stream and is waited for
// by it; CPU: MPI calls are made in program order). Blocking operations
// return once their result may be used by the next backend operation.
// Asynchronous ones (…Async, Isend, Irecv) return a request; their buffers
// must not be touched until the request's Wait() returned — that is how
// the data-parallel gradient reduction overlaps the backward pass.
//
// Point-to-point: Isend/Irecv calls issued back to back, with no other
// call of this communicator between them, form one batch that progresses
// together (MPI: all posted before any is waited for; NCCL: one
// ncclGroupStart/ncclGroupEnd), as Megatron-LM's batch_isend_irecv. A send
// may wait for its receiver to post the matching receive.
//
// Failure: a failing MPI or NCCL call is not recoverable in a collective
// job. It aborts the whole job (MPI_Abort) after printing the rank, the call
// and the library's error string to stderr, so that no rank hangs waiting
// for one that died.
//
// Thread-safety: a Communicator is used from one thread.
#ifndef ORRERY_EXEC_COMMUNICATOR_H_
#define ORRERY_EXEC_COMMUNICATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/backend.h"

namespace orrery::exec {

class MpiWorld;

enum class ReduceOp { kSum, kMax };

// An operation in flight.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  // Returns once the operation has completed (CUDA: once the compute
  // stream waits for it). Idempotent.
  virtual void Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The MPI world rank of each group rank.
  virtual const std::vector<int>& world_ranks() const = 0;
  // "mpi" or "nccl".
  virtual std::string library() const = 0;

  // data[0..count) = the element-wise reduction over the group.
  virtual void AllReduce(float* data, int64_t count, ReduceOp op = ReduceOp::kSum) = 0;
  // recv[r·count .. (r+1)·count) = send of group rank r.
  // REQUIRES: recv holds size()·count elements.
  virtual void AllGather(const float* send, float* recv, int64_t count) = 0;
  // recv[0..count) = Σ_ranks send[rank()·count .. (rank()+1)·count).
  // REQUIRES: send holds size()·count elements.
  virtual void ReduceScatter(const float* send, float* recv, int64_t count) = 0;
  // recv block r = block rank() of group rank r's send; blocks of count.
  virtual void AllToAll(const float* send, float* recv, int64_t count) = 0;
  // data on every rank = data of group rank `root`.
  virtual void Broadcast(float* data, int64_t count, int root) = 0;
  virtual void Barrier() = 0;

  virtual std::unique_ptr<CommRequest> AllReduceAsync(float* data, int64_t count) = 0;
  virtual std::unique_ptr<CommRequest> AllGatherAsync(const float* send, float* recv,
                                                      int64_t count) = 0;
  virtual std::unique_ptr<CommRequest> ReduceScatterAsync(const float* send, float* recv,
                                                          int64_t count) = 0;

  // Point-to-point with group rank `peer` (see the batching rule above).
  virtual std::unique_ptr<CommRequest> Isend(const float* data, int64_t count, int peer) = 0;
  virtual std::unique_ptr<CommRequest> Irecv(float* data, int64_t count, int peer) = 0;
};

// The communicator of the group `world_ranks` (sorted or not: group rank i
// is world_ranks[i]) on `backend`: MPI for the cpu backend, NCCL for cuda.
// Collective over the whole world: every rank calls it, each with the group
// it belongs to, and the groups of one call partition the world (every
// rank in exactly one group), as MPI_Comm_split. InvalidArgument when this
// rank is not in its own group; Internal with the library's message when
// the communicator cannot be made.
Result<std::unique_ptr<Communicator>> MakeCommunicator(MpiWorld& world, Backend& backend,
                                                       const std::vector<int>& world_ranks);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_COMMUNICATOR_H_
