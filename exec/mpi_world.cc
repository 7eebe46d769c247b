#include "exec/mpi_world.h"

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "core/check.h"
#include "exec/mpi_communicator.h"

namespace orrery::exec {

namespace {

// Set by the first Join and never cleared: MPI can be initialized once per
// process, and not again after MPI_Finalize.
bool joined = false;

int CheckedInt(size_t n, const char* what) {
  ORRERY_CHECK(n <= static_cast<size_t>(INT_MAX)) << what << " of " << n
                                                  << " bytes: MPI counts stop at INT_MAX";
  return static_cast<int>(n);
}

}  // namespace

bool LaunchedByMpiLauncher() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

std::string HostName() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf;
}

std::string MpiErrorString(int result) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(result, text, &length) != MPI_SUCCESS) {
    return "MPI error " + std::to_string(result);
  }
  return std::string(text, length);
}

Result<std::unique_ptr<MpiWorld>> MpiWorld::Join() {
  if (joined) {
    return FailedPreconditionError(
        "this process already joined its MPI world (MPI is initialized once per process)");
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (finalized || initialized) {
    return FailedPreconditionError(
        "MPI was already initialized in this process by another component");
  }
  joined = true;
  int provided = MPI_THREAD_SINGLE;
  if (int result = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      result != MPI_SUCCESS) {
    return InternalError("MPI_Init_thread failed: " + MpiErrorString(result));
  }
  if (provided < MPI_THREAD_FUNNELED) {
    MPI_Finalize();
    return InternalError("MPI_Init_thread: this MPI does not support MPI_THREAD_FUNNELED");
  }
  // Failed calls come back to CheckMpiCall, which names the rank and the
  // call before it aborts the job.
  CheckMpiCall(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
               "MPI_Comm_set_errhandler");

  std::unique_ptr<MpiWorld> world(new MpiWorld());
  CheckMpiCall(MPI_Comm_rank(MPI_COMM_WORLD, &world->rank_), "MPI_Comm_rank");
  CheckMpiCall(MPI_Comm_size(MPI_COMM_WORLD, &world->size_), "MPI_Comm_size");
  world->host_name_ = HostName();

  MPI_Comm node = MPI_COMM_NULL;
  CheckMpiCall(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world->rank_,
                                   MPI_INFO_NULL, &node),
               "MPI_Comm_split_type");
  CheckMpiCall(MPI_Comm_rank(node, &world->local_rank_), "MPI_Comm_rank");
  CheckMpiCall(MPI_Comm_size(node, &world->local_size_), "MPI_Comm_size");
  CheckMpiCall(MPI_Comm_free(&node), "MPI_Comm_free");
  return world;
}

MpiWorld::~MpiWorld() { MPI_Finalize(); }

void MpiWorld::Fail(const Status& error) const {
  std::fprintf(stderr, "orrery: rank %d (%s): %s\n", rank_, host_name_.c_str(),
               error.ToString().c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return.
}

Status MpiWorld::AgreeOnStatus(const Status& mine) const {
  const int failing = mine.ok() ? INT_MAX : rank_;
  int first = INT_MAX;
  CheckMpiCall(MPI_Allreduce(&failing, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
               "MPI_Allreduce");
  if (first == INT_MAX) return Status::Ok();
  // The first failing rank sends its code and message to every rank.
  int64_t header[2] = {static_cast<int64_t>(mine.code()),
                       static_cast<int64_t>(mine.message().size())};
  CheckMpiCall(MPI_Bcast(header, 2, MPI_INT64_T, first, MPI_COMM_WORLD), "MPI_Bcast");
  std::string message = rank_ == first ? mine.message() : std::string();
  message.resize(static_cast<size_t>(header[1]));
  CheckMpiCall(MPI_Bcast(message.data(), CheckedInt(message.size(), "status message"), MPI_CHAR,
                         first, MPI_COMM_WORLD),
               "MPI_Bcast");
  return Status(static_cast<StatusCode>(header[0]),
                "rank " + std::to_string(first) + ": " + message);
}

void MpiWorld::Barrier() const { CheckMpiCall(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

double MpiWorld::AllReduceSum(double value) const {
  double sum = 0;
  CheckMpiCall(MPI_Allreduce(&value, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
               "MPI_Allreduce");
  return sum;
}

double MpiWorld::AllReduceMax(double value) const {
  double max = 0;
  CheckMpiCall(MPI_Allreduce(&value, &max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
               "MPI_Allreduce");
  return max;
}

void MpiWorld::AllReduceMax(std::vector<double>& values) const {
  ORRERY_CHECK(values.size() <= static_cast<size_t>(std::numeric_limits<int>::max()));
  CheckMpiCall(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                             MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
               "MPI_Allreduce");
}

int64_t MpiWorld::AllReduceMax(int64_t value) const {
  int64_t max = 0;
  CheckMpiCall(MPI_Allreduce(&value, &max, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD),
               "MPI_Allreduce");
  return max;
}

std::vector<std::string> MpiWorld::GatherToRoot(const std::string& mine) const {
  const int length = CheckedInt(mine.size(), "GatherToRoot message");
  std::vector<int> lengths(rank_ == 0 ? size_ : 0);
  CheckMpiCall(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD),
               "MPI_Gather");
  std::vector<int> offsets(lengths.size());
  std::string all;
  if (rank_ == 0) {
    size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = CheckedInt(total, "GatherToRoot messages");
      total += static_cast<size_t>(lengths[r]);
    }
    all.resize(static_cast<size_t>(CheckedInt(total, "GatherToRoot messages")));
  }
  CheckMpiCall(MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(),
                           offsets.data(), MPI_CHAR, 0, MPI_COMM_WORLD),
               "MPI_Gatherv");
  std::vector<std::string> out;
  out.reserve(lengths.size());
  for (size_t r = 0; r < lengths.size(); ++r) out.push_back(all.substr(offsets[r], lengths[r]));
  return out;
}

std::string MpiWorld::BroadcastFromRoot(const std::string& value) const {
  int64_t length = static_cast<int64_t>(value.size());
  CheckMpiCall(MPI_Bcast(&length, 1, MPI_INT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  std::string out = rank_ == 0 ? value : std::string(static_cast<size_t>(length), '\0');
  CheckMpiCall(MPI_Bcast(out.data(), CheckedInt(out.size(), "BroadcastFromRoot value"), MPI_CHAR,
                         0, MPI_COMM_WORLD),
               "MPI_Bcast");
  return out;
}

double MpiWorld::Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace orrery::exec
