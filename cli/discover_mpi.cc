#include "cli/discover_mpi.h"

#include <mpi.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "core/check.h"

namespace orrery::cli {

bool LaunchedByMpiLauncher() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

std::unique_ptr<MpiJob> MpiJob::JoinIfLaunched() {
  if (!LaunchedByMpiLauncher()) return nullptr;
  return std::unique_ptr<MpiJob>(new MpiJob());
}

MpiJob::MpiJob() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  ORRERY_CHECK(!initialized) << "MPI is already initialized";
  // MPI's default error handler aborts the job on a failed call: a failure
  // here is the launcher's or the network's, not bad input.
  MPI_Init(nullptr, nullptr);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiJob::~MpiJob() { MPI_Finalize(); }

std::vector<std::string> MpiJob::GatherToRoot(const std::string& mine) const {
  ORRERY_CHECK(mine.size() <= static_cast<size_t>(INT_MAX)) << "message too long for MPI";
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(rank_ == 0 ? size_ : 0);
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(lengths.size());
  std::string all;
  if (rank_ == 0) {
    long long total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = static_cast<int>(total);
      total += lengths[r];
      ORRERY_CHECK(total <= INT_MAX) << "gathered messages too long for MPI";
    }
    all.resize(static_cast<size_t>(total));
  }
  MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
              0, MPI_COMM_WORLD);
  std::vector<std::string> out;
  for (int r = 0; r < static_cast<int>(lengths.size()); ++r) {
    out.push_back(all.substr(offsets[r], lengths[r]));
  }
  return out;
}

int MpiJob::BroadcastFromRoot(int value) const {
  MPI_Bcast(&value, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return value;
}

std::string HostName() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf;
}

}  // namespace orrery::cli
