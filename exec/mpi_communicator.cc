#include "exec/mpi_communicator.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <set>
#include <sstream>
#include <utility>

#include "core/check.h"
#include "exec/mpi_world.h"

#ifdef ORRERY_HAVE_CUDA
#include "exec/cuda/nccl_communicator.h"
#endif

namespace orrery::exec {

namespace {

// One tag for every point-to-point message of a communicator: MPI keeps
// messages of one (sender, tag, communicator) in order, so the transfers of
// a peer pair match in program order (see the header).
constexpr int kPointToPointTag = 0;

MPI_Op ToMpiOp(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

// Calls `issue(offset, n)` for consecutive chunks [offset, offset + n) of
// [0, count), each of at most max_chunk elements; once (with n = 0) when
// count is 0, so that a zero-count operation is still one MPI call.
template <typename Issue>
void ForEachChunk(int64_t count, int max_chunk, Issue issue) {
  int64_t offset = 0;
  do {
    const int n = static_cast<int>(std::min<int64_t>(count - offset, max_chunk));
    issue(offset, n);
    offset += n;
  } while (offset < count);
}

// MPI requests in flight; Wait() is MPI_Waitall, and a request destroyed
// without Wait() waits, so that MPI never writes a buffer after its owner
// could have released it.
class MpiRequest : public CommRequest {
 public:
  explicit MpiRequest(const char* call) : call_(call) {}
  MpiRequest(const MpiRequest&) = delete;
  MpiRequest& operator=(const MpiRequest&) = delete;
  ~MpiRequest() override { Wait(); }

  std::vector<MPI_Request>& requests() { return requests_; }

  void Wait() override {
    if (requests_.empty()) return;
    CheckMpiCall(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(),
                             MPI_STATUSES_IGNORE),
                 call_);
    requests_.clear();
  }

 private:
  const char* call_;
  std::vector<MPI_Request> requests_;
};

std::string FormatRanks(const std::vector<int>& ranks) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < ranks.size(); ++i) out << (i > 0 ? ", " : "") << ranks[i];
  out << "]";
  return out.str();
}

// This rank's part in a split that makes no communicator for it, so that
// the other ranks' MPI_Comm_split does not wait for it forever.
void SplitOut() {
  MPI_Comm none = MPI_COMM_NULL;
  CheckMpiCall(MPI_Comm_split(MPI_COMM_WORLD, MPI_UNDEFINED, 0, &none), "MPI_Comm_split");
}

// InvalidArgument unless world_ranks is a group of distinct world ranks
// that holds this rank.
Status ValidateGroup(const MpiWorld& world, const std::vector<int>& world_ranks) {
  const std::string group = "group " + FormatRanks(world_ranks);
  if (world_ranks.empty()) return InvalidArgumentError("communicator group is empty");
  std::set<int> seen;
  for (int r : world_ranks) {
    if (r < 0 || r >= world.size()) {
      return InvalidArgumentError(group + ": rank " + std::to_string(r) +
                                  " is not a rank of the world of " +
                                  std::to_string(world.size()));
    }
    if (!seen.insert(r).second) {
      return InvalidArgumentError(group + ": rank " + std::to_string(r) + " is listed twice");
    }
  }
  if (seen.count(world.rank()) == 0) {
    return InvalidArgumentError(group + " does not hold this rank (" +
                                std::to_string(world.rank()) + ")");
  }
  return Status::Ok();
}

}  // namespace

void CheckMpiCall(int result, const char* call) {
  if (result == MPI_SUCCESS) return;
  int rank = -1;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "orrery: rank %d (%s): %s failed: %s\n", rank, HostName().c_str(),
               call, MpiErrorString(result).c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return; this keeps a broken MPI from going on.
}

MpiCommunicator::MpiCommunicator(Backend& backend, MPI_Comm group_comm,
                                 std::vector<int> world_ranks, int max_count_per_call)
    : backend_(backend),
      comm_(group_comm),
      world_ranks_(std::move(world_ranks)),
      max_count_per_call_(max_count_per_call) {
  ORRERY_CHECK(backend_.kind() == BackendKind::kCpu) << "MPI communicators need the cpu backend";
  ORRERY_CHECK(max_count_per_call_ >= 1);
  ORRERY_CHECK(comm_ != MPI_COMM_NULL);
  CheckMpiCall(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  CheckMpiCall(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  int size = 0;
  CheckMpiCall(MPI_Comm_size(comm_, &size), "MPI_Comm_size");
  ORRERY_CHECK_EQ(size, static_cast<int>(world_ranks_.size()));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // After MPI_Finalize the communicator is gone with the rest of MPI.
  if (!finalized) CheckMpiCall(MPI_Comm_free(&comm_), "MPI_Comm_free");
}

int MpiCommunicator::BlockCount(int64_t count, const char* operation) const {
  ORRERY_CHECK(count >= 0 && count <= INT_MAX)
      << operation << " of " << count << " elements per rank: MPI counts stop at INT_MAX";
  return static_cast<int>(count);
}

void MpiCommunicator::CheckPeer(int peer) const {
  ORRERY_CHECK(peer >= 0 && peer < size()) << "peer " << peer << " of a group of " << size();
}

void MpiCommunicator::AllReduce(float* data, int64_t count, ReduceOp op) {
  ORRERY_CHECK(count >= 0);
  backend_.Synchronize();
  ForEachChunk(count, max_count_per_call_, [&](int64_t offset, int n) {
    CheckMpiCall(MPI_Allreduce(MPI_IN_PLACE, data + offset, n, MPI_FLOAT, ToMpiOp(op), comm_),
                 "MPI_Allreduce");
  });
}

void MpiCommunicator::AllGather(const float* send, float* recv, int64_t count) {
  const int n = BlockCount(count, "AllGather");
  backend_.Synchronize();
  CheckMpiCall(MPI_Allgather(send, n, MPI_FLOAT, recv, n, MPI_FLOAT, comm_), "MPI_Allgather");
}

void MpiCommunicator::ReduceScatter(const float* send, float* recv, int64_t count) {
  const int n = BlockCount(count, "ReduceScatter");
  backend_.Synchronize();
  CheckMpiCall(MPI_Reduce_scatter_block(send, recv, n, MPI_FLOAT, MPI_SUM, comm_),
               "MPI_Reduce_scatter_block");
}

void MpiCommunicator::AllToAll(const float* send, float* recv, int64_t count) {
  const int n = BlockCount(count, "AllToAll");
  backend_.Synchronize();
  CheckMpiCall(MPI_Alltoall(send, n, MPI_FLOAT, recv, n, MPI_FLOAT, comm_), "MPI_Alltoall");
}

void MpiCommunicator::Broadcast(float* data, int64_t count, int root) {
  ORRERY_CHECK(count >= 0);
  CheckPeer(root);
  backend_.Synchronize();
  ForEachChunk(count, max_count_per_call_, [&](int64_t offset, int n) {
    CheckMpiCall(MPI_Bcast(data + offset, n, MPI_FLOAT, root, comm_), "MPI_Bcast");
  });
}

void MpiCommunicator::Barrier() {
  backend_.Synchronize();
  CheckMpiCall(MPI_Barrier(comm_), "MPI_Barrier");
}

std::unique_ptr<CommRequest> MpiCommunicator::AllReduceAsync(float* data, int64_t count) {
  ORRERY_CHECK(count >= 0);
  backend_.Synchronize();
  auto request = std::make_unique<MpiRequest>("MPI_Iallreduce");
  ForEachChunk(count, max_count_per_call_, [&](int64_t offset, int n) {
    MPI_Request r = MPI_REQUEST_NULL;
    CheckMpiCall(MPI_Iallreduce(MPI_IN_PLACE, data + offset, n, MPI_FLOAT, MPI_SUM, comm_, &r),
                 "MPI_Iallreduce");
    request->requests().push_back(r);
  });
  return request;
}

std::unique_ptr<CommRequest> MpiCommunicator::AllGatherAsync(const float* send, float* recv,
                                                             int64_t count) {
  const int n = BlockCount(count, "AllGatherAsync");
  backend_.Synchronize();
  auto request = std::make_unique<MpiRequest>("MPI_Iallgather");
  MPI_Request r = MPI_REQUEST_NULL;
  CheckMpiCall(MPI_Iallgather(send, n, MPI_FLOAT, recv, n, MPI_FLOAT, comm_, &r),
               "MPI_Iallgather");
  request->requests().push_back(r);
  return request;
}

std::unique_ptr<CommRequest> MpiCommunicator::ReduceScatterAsync(const float* send, float* recv,
                                                                 int64_t count) {
  const int n = BlockCount(count, "ReduceScatterAsync");
  backend_.Synchronize();
  auto request = std::make_unique<MpiRequest>("MPI_Ireduce_scatter_block");
  MPI_Request r = MPI_REQUEST_NULL;
  CheckMpiCall(MPI_Ireduce_scatter_block(send, recv, n, MPI_FLOAT, MPI_SUM, comm_, &r),
               "MPI_Ireduce_scatter_block");
  request->requests().push_back(r);
  return request;
}

std::unique_ptr<CommRequest> MpiCommunicator::Isend(const float* data, int64_t count, int peer) {
  ORRERY_CHECK(count >= 0);
  CheckPeer(peer);
  backend_.Synchronize();
  auto request = std::make_unique<MpiRequest>("MPI_Isend");
  ForEachChunk(count, max_count_per_call_, [&](int64_t offset, int n) {
    MPI_Request r = MPI_REQUEST_NULL;
    CheckMpiCall(MPI_Isend(data + offset, n, MPI_FLOAT, peer, kPointToPointTag, comm_, &r),
                 "MPI_Isend");
    request->requests().push_back(r);
  });
  return request;
}

std::unique_ptr<CommRequest> MpiCommunicator::Irecv(float* data, int64_t count, int peer) {
  ORRERY_CHECK(count >= 0);
  CheckPeer(peer);
  backend_.Synchronize();
  auto request = std::make_unique<MpiRequest>("MPI_Irecv");
  ForEachChunk(count, max_count_per_call_, [&](int64_t offset, int n) {
    MPI_Request r = MPI_REQUEST_NULL;
    CheckMpiCall(MPI_Irecv(data + offset, n, MPI_FLOAT, peer, kPointToPointTag, comm_, &r),
                 "MPI_Irecv");
    request->requests().push_back(r);
  });
  return request;
}

Result<std::unique_ptr<Communicator>> MakeCommunicator(MpiWorld& world, Backend& backend,
                                                       const std::vector<int>& world_ranks) {
  // Every failure below still takes part in MPI_Comm_split (or happens
  // after it), so that a rank that refuses does not leave the others
  // waiting in the collective split.
  if (Status valid = ValidateGroup(world, world_ranks); !valid.ok()) {
    SplitOut();
    return valid;
  }
  const int color = *std::min_element(world_ranks.begin(), world_ranks.end());
  const int key = static_cast<int>(std::find(world_ranks.begin(), world_ranks.end(),
                                             world.rank()) -
                                   world_ranks.begin());
  MPI_Comm comm = MPI_COMM_NULL;
  if (int result = MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm); result != MPI_SUCCESS) {
    return InternalError("MPI_Comm_split of group " + FormatRanks(world_ranks) +
                         " failed: " + MpiErrorString(result));
  }
  CheckMpiCall(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");

  // The groups of one call must partition the world the same way on every
  // rank; the members MPI put together say whether they did.
  int size = 0;
  CheckMpiCall(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  std::vector<int> members(size);
  const int me = world.rank();
  CheckMpiCall(MPI_Allgather(&me, 1, MPI_INT, members.data(), 1, MPI_INT, comm),
               "MPI_Allgather");
  if (members != world_ranks) {
    CheckMpiCall(MPI_Comm_free(&comm), "MPI_Comm_free");
    return InvalidArgumentError(
        "communicator groups do not partition the world alike on every rank: rank " +
        std::to_string(me) + " asked for group " + FormatRanks(world_ranks) +
        " but the ranks that chose the same smallest rank are " + FormatRanks(members));
  }

  switch (backend.kind()) {
    case BackendKind::kCpu:
      return std::unique_ptr<Communicator>(
          std::make_unique<MpiCommunicator>(backend, comm, world_ranks));
    case BackendKind::kCuda: {
#ifdef ORRERY_HAVE_CUDA
      // NCCL uses the MPI communicator for its bootstrap only.
      Result<std::unique_ptr<Communicator>> nccl =
          MakeNcclCommunicator(backend, comm, world_ranks);
      CheckMpiCall(MPI_Comm_free(&comm), "MPI_Comm_free");
      return nccl;
#else
      CheckMpiCall(MPI_Comm_free(&comm), "MPI_Comm_free");
      return UnavailableError("this orrery was built without CUDA: no NCCL communicator");
#endif
    }
  }
  CheckMpiCall(MPI_Comm_free(&comm), "MPI_Comm_free");
  return InternalError("unknown backend kind");
}

}  // namespace orrery::exec
