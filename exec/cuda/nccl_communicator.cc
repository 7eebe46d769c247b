// The NCCL Communicator (exec/cuda/nccl_communicator.h).
//
// Streams: each communicator has its own communication stream. Before an
// operation, an event recorded on the backend's compute stream makes the
// communication stream wait for every backend operation issued before it.
// A blocking operation then makes the compute stream wait for an event
// recorded after it on the communication stream; an asynchronous one
// returns a request holding that event, and its Wait() makes the compute
// stream wait on it. Nothing here blocks the host except Barrier and the
// destructor.
//
// Point-to-point batching (exec/communicator.h): Isend/Irecv only queue.
// Consecutive calls accumulate in one batch, which is issued as one
// ncclGroupStart/ncclGroupEnd on the communication stream (Megatron-LM's
// batch_isend_irecv) at the first Wait() of any of its requests or at the
// next call of this communicator that is not Isend/Irecv, whichever comes
// first. The communication stream waits for the compute stream as it was at
// the batch's last Isend/Irecv.
//
// Barrier: an all-reduce of one float on the communication stream (after
// the compute stream, like every operation), then the host waits for the
// communication stream: when it returns, every rank of the group has
// reached the barrier and this rank's device work before it is done.
//
// Failure: a failing CUDA or NCCL call prints the rank, the call and the
// library's error string to stderr and calls MPI_Abort on MPI_COMM_WORLD.
#include "exec/cuda/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "exec/cuda/cuda_backend.h"

namespace orrery::exec {
namespace {

// The failure contract of exec/communicator.h.
[[noreturn]] void AbortJob(int group_rank, const char* call, const char* error) {
  int world_rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  std::cerr << "orrery: rank " << world_rank << " (group rank " << group_rank << "): " << call
            << " failed: " << error << std::endl;
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return; this tells the compiler so
}

void CheckCuda(cudaError_t error, const char* call, int group_rank) {
  if (error != cudaSuccess) AbortJob(group_rank, call, cudaGetErrorString(error));
}

void CheckNccl(ncclResult_t result, const char* call, int group_rank) {
  if (result != ncclSuccess) AbortJob(group_rank, call, ncclGetErrorString(result));
}

#define ORRERY_COMM_CUDA(call) CheckCuda((call), #call, rank_)
#define ORRERY_COMM_NCCL(call) CheckNccl((call), #call, rank_)

cudaEvent_t NewEvent(int group_rank) {
  cudaEvent_t event = nullptr;
  CheckCuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreateWithFlags",
            group_rank);
  return event;
}

// An asynchronous collective: the event recorded after it on the
// communication stream.
class EventRequest final : public CommRequest {
 public:
  EventRequest(cudaStream_t compute, cudaEvent_t done, int rank)
      : compute_(compute), done_(done), rank_(rank) {}
  ~EventRequest() override { cudaEventDestroy(done_); }
  EventRequest(const EventRequest&) = delete;
  EventRequest& operator=(const EventRequest&) = delete;

  void Wait() override {
    if (waited_) return;
    ORRERY_COMM_CUDA(cudaStreamWaitEvent(compute_, done_, 0));
    waited_ = true;
  }

 private:
  cudaStream_t compute_;
  cudaEvent_t done_;
  int rank_;
  bool waited_ = false;
};

class NcclCommunicator;

// Queued Isend/Irecv calls, issued together.
struct P2pBatch {
  struct Transfer {
    bool send = false;
    float* data = nullptr;
    int64_t count = 0;
    int peer = 0;
  };
  std::vector<Transfer> transfers;
  NcclCommunicator* owner = nullptr;  // flushes every batch before it dies
  bool issued = false;
  cudaEvent_t done = nullptr;  // recorded after the group, once issued
  int rank = 0;

  P2pBatch() = default;
  P2pBatch(const P2pBatch&) = delete;
  P2pBatch& operator=(const P2pBatch&) = delete;
  ~P2pBatch() {
    if (done != nullptr) cudaEventDestroy(done);
  }
};

class P2pRequest final : public CommRequest {
 public:
  P2pRequest(cudaStream_t compute, std::shared_ptr<P2pBatch> batch)
      : compute_(compute), batch_(std::move(batch)) {}
  void Wait() override;

 private:
  cudaStream_t compute_;
  std::shared_ptr<P2pBatch> batch_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(cudaStream_t compute, int rank, int size, std::vector<int> world_ranks)
      : compute_(compute), rank_(rank), size_(size), world_ranks_(std::move(world_ranks)) {}

  ~NcclCommunicator() override {
    if (comm_ != nullptr) {
      FlushP2p();
      ORRERY_COMM_CUDA(cudaStreamSynchronize(comm_stream_));
      ORRERY_COMM_NCCL(ncclCommDestroy(comm_));
    }
    if (barrier_scratch_ != nullptr) cudaFree(barrier_scratch_);
    for (cudaEvent_t e : {compute_ready_, comm_done_, p2p_ready_}) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
  }

  // The bootstrap of nccl-tests (src/common.cu): group rank 0 makes the
  // unique id, MPI broadcasts it, every rank joins with ncclCommInitRank.
  // Rank 0 broadcasts its failure too, so that no rank waits for it.
  Status Init(MPI_Comm group_comm) {
    struct {
      int ok = 1;
      ncclResult_t result = ncclSuccess;
      ncclUniqueId id{};
    } bootstrap;
    if (rank_ == 0) {
      bootstrap.result = ncclGetUniqueId(&bootstrap.id);
      bootstrap.ok = bootstrap.result == ncclSuccess ? 1 : 0;
    }
    MPI_Bcast(&bootstrap, static_cast<int>(sizeof(bootstrap)), MPI_BYTE, 0, group_comm);
    if (bootstrap.ok == 0) {
      return InternalError(std::string("ncclGetUniqueId failed on group rank 0: ") +
                           ncclGetErrorString(bootstrap.result));
    }
    if (cudaError_t e = cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking);
        e != cudaSuccess) {
      comm_stream_ = nullptr;
      return InternalError(std::string("cudaStreamCreateWithFlags failed: ") +
                           cudaGetErrorString(e));
    }
    compute_ready_ = NewEvent(rank_);
    comm_done_ = NewEvent(rank_);
    p2p_ready_ = NewEvent(rank_);
    void* scratch = nullptr;
    ORRERY_COMM_CUDA(cudaMalloc(&scratch, sizeof(float)));
    barrier_scratch_ = static_cast<float*>(scratch);
    ORRERY_COMM_CUDA(cudaMemset(barrier_scratch_, 0, sizeof(float)));
    if (ncclResult_t r = ncclCommInitRank(&comm_, size_, bootstrap.id, rank_); r != ncclSuccess) {
      comm_ = nullptr;
      return InternalError(std::string("ncclCommInitRank failed: ") + ncclGetErrorString(r));
    }
    return Status::Ok();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  std::string library() const override { return "nccl"; }

  void AllReduce(float* data, int64_t count, ReduceOp op) override {
    BeforeOp();
    if (count > 0) {
      ORRERY_COMM_NCCL(ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat,
                                     op == ReduceOp::kSum ? ncclSum : ncclMax, comm_,
                                     comm_stream_));
    }
    AfterBlockingOp();
  }
  void AllGather(const float* send, float* recv, int64_t count) override {
    BeforeOp();
    IssueAllGather(send, recv, count);
    AfterBlockingOp();
  }
  void ReduceScatter(const float* send, float* recv, int64_t count) override {
    BeforeOp();
    IssueReduceScatter(send, recv, count);
    AfterBlockingOp();
  }
  void AllToAll(const float* send, float* recv, int64_t count) override {
    BeforeOp();
    if (count > 0) {
      const size_t n = static_cast<size_t>(count);
      ORRERY_COMM_NCCL(ncclGroupStart());
      for (int peer = 0; peer < size_; ++peer) {
        ORRERY_COMM_NCCL(ncclSend(send + peer * count, n, ncclFloat, peer, comm_, comm_stream_));
        ORRERY_COMM_NCCL(ncclRecv(recv + peer * count, n, ncclFloat, peer, comm_, comm_stream_));
      }
      ORRERY_COMM_NCCL(ncclGroupEnd());
    }
    AfterBlockingOp();
  }
  void Broadcast(float* data, int64_t count, int root) override {
    ORRERY_CHECK(root >= 0 && root < size_) << "broadcast root " << root << " of " << size_;
    BeforeOp();
    if (count > 0) {
      ORRERY_COMM_NCCL(ncclBroadcast(data, data, static_cast<size_t>(count), ncclFloat, root,
                                     comm_, comm_stream_));
    }
    AfterBlockingOp();
  }
  void Barrier() override {
    BeforeOp();
    ORRERY_COMM_NCCL(ncclAllReduce(barrier_scratch_, barrier_scratch_, 1, ncclFloat, ncclSum,
                                   comm_, comm_stream_));
    ORRERY_COMM_CUDA(cudaStreamSynchronize(comm_stream_));
  }

  std::unique_ptr<CommRequest> AllReduceAsync(float* data, int64_t count) override {
    BeforeOp();
    if (count > 0) {
      ORRERY_COMM_NCCL(ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat, ncclSum,
                                     comm_, comm_stream_));
    }
    return AfterAsyncOp();
  }
  std::unique_ptr<CommRequest> AllGatherAsync(const float* send, float* recv,
                                              int64_t count) override {
    BeforeOp();
    IssueAllGather(send, recv, count);
    return AfterAsyncOp();
  }
  std::unique_ptr<CommRequest> ReduceScatterAsync(const float* send, float* recv,
                                                  int64_t count) override {
    BeforeOp();
    IssueReduceScatter(send, recv, count);
    return AfterAsyncOp();
  }

  std::unique_ptr<CommRequest> Isend(const float* data, int64_t count, int peer) override {
    // NCCL's ncclSend takes a const buffer; the batch stores both directions alike.
    return Enqueue(/*send=*/true, const_cast<float*>(data), count, peer);
  }
  std::unique_ptr<CommRequest> Irecv(float* data, int64_t count, int peer) override {
    return Enqueue(/*send=*/false, data, count, peer);
  }

  // Issues the pending point-to-point batch, if any.
  void FlushP2p() {
    if (pending_ == nullptr) return;
    std::shared_ptr<P2pBatch> batch = std::move(pending_);
    pending_ = nullptr;
    ORRERY_COMM_CUDA(cudaStreamWaitEvent(comm_stream_, p2p_ready_, 0));
    ORRERY_COMM_NCCL(ncclGroupStart());
    for (const P2pBatch::Transfer& t : batch->transfers) {
      if (t.count <= 0) continue;
      const size_t n = static_cast<size_t>(t.count);
      if (t.send) {
        ORRERY_COMM_NCCL(ncclSend(t.data, n, ncclFloat, t.peer, comm_, comm_stream_));
      } else {
        ORRERY_COMM_NCCL(ncclRecv(t.data, n, ncclFloat, t.peer, comm_, comm_stream_));
      }
    }
    ORRERY_COMM_NCCL(ncclGroupEnd());
    batch->done = NewEvent(rank_);
    ORRERY_COMM_CUDA(cudaEventRecord(batch->done, comm_stream_));
    batch->issued = true;
    batch->owner = nullptr;
  }

 private:
  std::unique_ptr<CommRequest> Enqueue(bool send, float* data, int64_t count, int peer) {
    ORRERY_CHECK(peer >= 0 && peer < size_) << "peer " << peer << " of " << size_;
    if (pending_ == nullptr) {
      pending_ = std::make_shared<P2pBatch>();
      pending_->owner = this;
      pending_->rank = rank_;
    }
    pending_->transfers.push_back({send, data, count, peer});
    // Re-recorded at every call: the batch waits for the compute stream as
    // of its last transfer, which covers the earlier ones.
    ORRERY_COMM_CUDA(cudaEventRecord(p2p_ready_, compute_));
    return std::make_unique<P2pRequest>(compute_, pending_);
  }

  void IssueAllGather(const float* send, float* recv, int64_t count) {
    if (count <= 0) return;
    ORRERY_COMM_NCCL(ncclAllGather(send, recv, static_cast<size_t>(count), ncclFloat, comm_,
                                   comm_stream_));
  }
  void IssueReduceScatter(const float* send, float* recv, int64_t count) {
    if (count <= 0) return;
    ORRERY_COMM_NCCL(ncclReduceScatter(send, recv, static_cast<size_t>(count), ncclFloat, ncclSum,
                                       comm_, comm_stream_));
  }

  // Every operation but Isend/Irecv: issue the pending batch, then order the
  // communication stream after the compute stream.
  void BeforeOp() {
    FlushP2p();
    ORRERY_COMM_CUDA(cudaEventRecord(compute_ready_, compute_));
    ORRERY_COMM_CUDA(cudaStreamWaitEvent(comm_stream_, compute_ready_, 0));
  }
  void AfterBlockingOp() {
    ORRERY_COMM_CUDA(cudaEventRecord(comm_done_, comm_stream_));
    ORRERY_COMM_CUDA(cudaStreamWaitEvent(compute_, comm_done_, 0));
  }
  std::unique_ptr<CommRequest> AfterAsyncOp() {
    cudaEvent_t done = NewEvent(rank_);
    ORRERY_COMM_CUDA(cudaEventRecord(done, comm_stream_));
    return std::make_unique<EventRequest>(compute_, done, rank_);
  }

  cudaStream_t compute_;
  const int rank_;
  const int size_;
  const std::vector<int> world_ranks_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr;  // compute stream before a collective
  cudaEvent_t comm_done_ = nullptr;      // communication stream after a blocking one
  cudaEvent_t p2p_ready_ = nullptr;      // compute stream at the pending batch's last call
  float* barrier_scratch_ = nullptr;
  std::shared_ptr<P2pBatch> pending_;
};

void P2pRequest::Wait() {
  if (waited_) return;
  if (!batch_->issued) batch_->owner->FlushP2p();
  CheckCuda(cudaStreamWaitEvent(compute_, batch_->done, 0), "cudaStreamWaitEvent", batch_->rank);
  waited_ = true;
}

}  // namespace

Result<std::unique_ptr<Communicator>> MakeNcclCommunicator(Backend& backend, MPI_Comm group_comm,
                                                           std::vector<int> world_ranks) {
  ORRERY_CHECK(backend.kind() == BackendKind::kCuda)
      << "the NCCL communicator needs a cuda backend, got " << BackendKindName(backend.kind());
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(group_comm, &rank);
  MPI_Comm_size(group_comm, &size);
  if (static_cast<int>(world_ranks.size()) != size) {
    return InvalidArgumentError("the group's MPI communicator has " + std::to_string(size) +
                                " ranks but world_ranks names " +
                                std::to_string(world_ranks.size()));
  }
  auto comm = std::make_unique<NcclCommunicator>(CudaStreamOf(backend), rank, size,
                                                 std::move(world_ranks));
  ORRERY_RETURN_IF_ERROR(comm->Init(group_comm));
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace orrery::exec
