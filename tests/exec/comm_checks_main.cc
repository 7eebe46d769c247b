// exec_comm_checks: the multi-rank checks of MpiWorld and the communicators
// (exec/mpi_world.h, exec/communicator.h), run under mpirun by
// tests/exec/communicator_test.cc:
//
//   mpirun -np N exec_comm_checks <check> [cpu|cuda]
//
// Every rank runs the named check and collects what it found wrong; the
// ranks agree on the outcome (MpiWorld::AgreeOnStatus), each rank prints its
// own failures to stderr, and every rank exits 1 when any rank failed, 0
// otherwise. Expected values are closed forms: group rank g contributes
// g + 1 + i at element i, so an all-reduce sum over n ranks is
// n(n+1)/2 + n·i.
//
// Checks: collectives, async, ring, chunked (MPI only), bad-group, agree,
// gather, fail (rank 1 fails the job: exits non-zero), world-of-one (run
// without a launcher).
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/backend.h"
#include "exec/communicator.h"
#include "exec/mpi_communicator.h"
#include "exec/mpi_world.h"
#include "tests/exec/mpi_checks.h"

namespace orrery::exec {
namespace {

std::string Describe(const std::vector<float>& values) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i > 0 ? ", " : "") << values[i];
  out << "]";
  return out.str();
}

std::string Describe(const std::vector<int>& ranks) {
  return Describe(std::vector<float>(ranks.begin(), ranks.end()));
}

// Host <-> device copies of float vectors on the check's backend.
class Buffers {
 public:
  explicit Buffers(Backend& backend) : backend_(backend) {}

  DeviceArray<float> Upload(const std::vector<float>& host) {
    DeviceArray<float> device(backend_, static_cast<int64_t>(host.size()));
    if (!host.empty()) backend_.CopyFromHost(host.data(), device.data(), device.bytes());
    return device;
  }
  DeviceArray<float> Zeros(int64_t n) {
    DeviceArray<float> device(backend_, n);
    if (n > 0) backend_.Fill(device.data(), n, 0.0f);
    return device;
  }
  std::vector<float> Download(const DeviceArray<float>& device) {
    std::vector<float> host(static_cast<size_t>(device.size()));
    if (!host.empty()) backend_.CopyToHost(device.data(), host.data(), device.bytes());
    return host;
  }

 private:
  Backend& backend_;
};

// A partition of the world into groups: the group of each world rank.
using Partition = std::function<std::vector<int>(int world_rank, int world_size)>;

std::vector<int> WholeWorld(int, int n) {
  std::vector<int> all(n);
  std::iota(all.begin(), all.end(), 0);
  return all;
}
// {0, 2, 4, …}, {1, 3, 5, …}: tensor-parallel-like strided groups.
std::vector<int> Strided(int r, int n) {
  std::vector<int> group;
  for (int q = r % 2; q < n; q += 2) group.push_back(q);
  return group;
}
// The strided groups listed from the highest rank down, so that group rank
// 0 is not the smallest world rank.
std::vector<int> StridedReversed(int r, int n) {
  std::vector<int> group = Strided(r, n);
  std::reverse(group.begin(), group.end());
  return group;
}
// {0 … ⌈n/2⌉−1}, {⌈n/2⌉ … n−1}.
std::vector<int> Halves(int r, int n) {
  const int half = (n + 1) / 2;
  std::vector<int> group;
  for (int q = r < half ? 0 : half; q < (r < half ? half : n); ++q) group.push_back(q);
  return group;
}

const std::vector<std::pair<std::string, Partition>>& Partitions() {
  static const auto* partitions = new std::vector<std::pair<std::string, Partition>>{
      {"world", WholeWorld},
      {"strided", Strided},
      {"strided-reversed", StridedReversed},
      {"halves", Halves}};
  return *partitions;
}

// Group rank g's contribution at element i.
float Contribution(int g, int64_t i) { return static_cast<float>(g + 1 + i); }

struct Context {
  MpiWorld& world;
  Backend& backend;
  Buffers buffers;
  Findings& findings;
};

std::unique_ptr<Communicator> Make(Context& c, const std::string& label,
                                   const std::vector<int>& group) {
  Result<std::unique_ptr<Communicator>> comm = MakeCommunicator(c.world, c.backend, group);
  if (!comm.ok()) {
    c.findings.ExpectOk(comm.status(), label + ": MakeCommunicator");
    return nullptr;
  }
  std::unique_ptr<Communicator> made = std::move(comm).value();
  const int position = static_cast<int>(std::find(group.begin(), group.end(), c.world.rank()) -
                                        group.begin());
  c.findings.Expect(made->rank() == position, label + ": rank() is " +
                                                  std::to_string(made->rank()) + ", expected " +
                                                  std::to_string(position));
  c.findings.Expect(made->size() == static_cast<int>(group.size()), label + ": size()");
  c.findings.Expect(made->world_ranks() == group,
                    label + ": world_ranks() " + Describe(made->world_ranks()));
  return made;
}

// The blocking collectives on one communicator, against closed forms.
void CheckBlockingCollectives(Context& c, Communicator& comm, const std::string& label) {
  const int g = comm.rank();
  const int n = comm.size();
  constexpr int64_t kCount = 5;

  std::vector<float> mine(kCount);
  for (int64_t i = 0; i < kCount; ++i) mine[i] = Contribution(g, i);

  // All-reduce sum: Σ_g (g + 1 + i) = n(n+1)/2 + n·i.
  DeviceArray<float> sum = c.buffers.Upload(mine);
  comm.AllReduce(sum.data(), kCount, ReduceOp::kSum);
  std::vector<float> expected(kCount);
  for (int64_t i = 0; i < kCount; ++i) expected[i] = n * (n + 1) / 2.0f + n * i;
  std::vector<float> got = c.buffers.Download(sum);
  c.findings.Expect(got == expected, label + ": AllReduce sum " + Describe(got) + ", expected " +
                                         Describe(expected));

  // All-reduce max: the largest contribution is group rank n−1's, n + i.
  DeviceArray<float> max = c.buffers.Upload(mine);
  comm.AllReduce(max.data(), kCount, ReduceOp::kMax);
  for (int64_t i = 0; i < kCount; ++i) expected[i] = static_cast<float>(n + i);
  got = c.buffers.Download(max);
  c.findings.Expect(got == expected, label + ": AllReduce max " + Describe(got) + ", expected " +
                                         Describe(expected));

  // All-gather: block r is group rank r's contribution.
  DeviceArray<float> send = c.buffers.Upload(mine);
  DeviceArray<float> gathered = c.buffers.Zeros(n * kCount);
  comm.AllGather(send.data(), gathered.data(), kCount);
  expected.assign(n * kCount, 0);
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < kCount; ++i) expected[r * kCount + i] = Contribution(r, i);
  }
  got = c.buffers.Download(gathered);
  c.findings.Expect(got == expected, label + ": AllGather " + Describe(got) + ", expected " +
                                         Describe(expected));

  // Reduce-scatter: rank g sends (g + 1 + j) at element j of n·kCount, so
  // its block holds Σ_r (r + 1 + g·kCount + i) = n(n+1)/2 + n·(g·kCount + i).
  std::vector<float> long_mine(n * kCount);
  for (int64_t j = 0; j < n * kCount; ++j) long_mine[j] = Contribution(g, j);
  DeviceArray<float> scatter_send = c.buffers.Upload(long_mine);
  DeviceArray<float> scattered = c.buffers.Zeros(kCount);
  comm.ReduceScatter(scatter_send.data(), scattered.data(), kCount);
  expected.assign(kCount, 0);
  for (int64_t i = 0; i < kCount; ++i) expected[i] = n * (n + 1) / 2.0f + n * (g * kCount + i);
  got = c.buffers.Download(scattered);
  c.findings.Expect(got == expected, label + ": ReduceScatter " + Describe(got) +
                                         ", expected " + Describe(expected));

  // All-to-all: rank g's block d holds 100·g + 10·d + i; after the
  // transposition its block r holds 100·r + 10·g + i.
  std::vector<float> blocks(n * kCount);
  for (int d = 0; d < n; ++d) {
    for (int64_t i = 0; i < kCount; ++i) blocks[d * kCount + i] = 100.0f * g + 10.0f * d + i;
  }
  DeviceArray<float> a2a_send = c.buffers.Upload(blocks);
  DeviceArray<float> a2a_recv = c.buffers.Zeros(n * kCount);
  comm.AllToAll(a2a_send.data(), a2a_recv.data(), kCount);
  expected.assign(n * kCount, 0);
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < kCount; ++i) expected[r * kCount + i] = 100.0f * r + 10.0f * g + i;
  }
  got = c.buffers.Download(a2a_recv);
  c.findings.Expect(got == expected, label + ": AllToAll " + Describe(got) + ", expected " +
                                         Describe(expected));

  // Broadcast from the last group rank (a non-zero root whenever n > 1).
  const int root = n - 1;
  DeviceArray<float> bcast = c.buffers.Upload(mine);
  comm.Broadcast(bcast.data(), kCount, root);
  expected.assign(kCount, 0);
  for (int64_t i = 0; i < kCount; ++i) expected[i] = Contribution(root, i);
  got = c.buffers.Download(bcast);
  c.findings.Expect(got == expected, label + ": Broadcast from " + std::to_string(root) + " " +
                                         Describe(got) + ", expected " + Describe(expected));

  // A zero-count all-reduce is a no-op that every rank passes through.
  comm.AllReduce(sum.data(), 0);
  comm.Barrier();
}

void CheckCollectives(Context& c) {
  for (const auto& [name, partition] : Partitions()) {
    const std::vector<int> group = partition(c.world.rank(), c.world.size());
    const std::string label = name + " group " + Describe(group);
    std::unique_ptr<Communicator> comm = Make(c, label, group);
    if (comm != nullptr) CheckBlockingCollectives(c, *comm, label);
  }
}

// The async collectives issued together, overlapped with a blocking
// all-reduce and host work, and waited in the reverse order (twice).
void CheckAsync(Context& c) {
  for (const auto& [name, partition] : Partitions()) {
    const std::vector<int> group = partition(c.world.rank(), c.world.size());
    const std::string label = name + " group " + Describe(group);
    std::unique_ptr<Communicator> comm = Make(c, label, group);
    if (comm == nullptr) continue;
    const int g = comm->rank();
    const int n = comm->size();
    constexpr int64_t kCount = 64;

    std::vector<float> mine(kCount), long_mine(n * kCount);
    for (int64_t i = 0; i < kCount; ++i) mine[i] = Contribution(g, i);
    for (int64_t j = 0; j < n * kCount; ++j) long_mine[j] = Contribution(g, j);
    DeviceArray<float> reduced = c.buffers.Upload(mine);
    DeviceArray<float> gather_send = c.buffers.Upload(mine);
    DeviceArray<float> gathered = c.buffers.Zeros(n * kCount);
    DeviceArray<float> scatter_send = c.buffers.Upload(long_mine);
    DeviceArray<float> scattered = c.buffers.Zeros(kCount);
    DeviceArray<float> other = c.buffers.Upload(mine);

    std::unique_ptr<CommRequest> all_reduce = comm->AllReduceAsync(reduced.data(), kCount);
    std::unique_ptr<CommRequest> all_gather =
        comm->AllGatherAsync(gather_send.data(), gathered.data(), kCount);
    std::unique_ptr<CommRequest> reduce_scatter =
        comm->ReduceScatterAsync(scatter_send.data(), scattered.data(), kCount);
    // Other work while they are in flight: host arithmetic, and a blocking
    // collective on other memory.
    double host = 0;
    for (int i = 0; i < 100000; ++i) host += 1.0 / (i + 1);
    c.findings.Expect(host > 12, label + ": host work");
    comm->AllReduce(other.data(), kCount, ReduceOp::kMax);

    reduce_scatter->Wait();
    all_gather->Wait();
    all_reduce->Wait();
    all_reduce->Wait();  // idempotent

    std::vector<float> expected(kCount);
    for (int64_t i = 0; i < kCount; ++i) expected[i] = n * (n + 1) / 2.0f + n * i;
    c.findings.Expect(c.buffers.Download(reduced) == expected, label + ": AllReduceAsync");
    for (int64_t i = 0; i < kCount; ++i) expected[i] = n * (n + 1) / 2.0f + n * (g * kCount + i);
    c.findings.Expect(c.buffers.Download(scattered) == expected, label + ": ReduceScatterAsync");
    std::vector<float> all(n * kCount);
    for (int r = 0; r < n; ++r) {
      for (int64_t i = 0; i < kCount; ++i) all[r * kCount + i] = Contribution(r, i);
    }
    c.findings.Expect(c.buffers.Download(gathered) == all, label + ": AllGatherAsync");
    for (int64_t i = 0; i < kCount; ++i) expected[i] = static_cast<float>(n + i);
    c.findings.Expect(c.buffers.Download(other) == expected,
                      label + ": AllReduce max while async collectives were in flight");
  }
}

// One batch: send to the next group rank and to the previous one, receive
// from the previous and from the next, then two more messages of other
// sizes to the next; all posted before any is waited for (in reverse).
void CheckRing(Context& c) {
  for (const auto& [name, partition] : Partitions()) {
    const std::vector<int> group = partition(c.world.rank(), c.world.size());
    const std::string label = name + " group " + Describe(group);
    std::unique_ptr<Communicator> comm = Make(c, label, group);
    if (comm == nullptr) continue;
    const int g = comm->rank();
    const int n = comm->size();
    const int next = (g + 1) % n;
    const int prev = (g + n - 1) % n;
    constexpr int64_t kCount = 1000;

    // Message of sender s, kind k, element i: 10000·k + 100·s + i mod 100.
    auto message = [](int sender, int kind, int64_t count) {
      std::vector<float> m(count);
      for (int64_t i = 0; i < count; ++i) m[i] = 10000.0f * kind + 100.0f * sender + i % 100;
      return m;
    };
    DeviceArray<float> forward = c.buffers.Upload(message(g, 0, kCount));
    DeviceArray<float> backward = c.buffers.Upload(message(g, 1, kCount));
    DeviceArray<float> small = c.buffers.Upload(message(g, 2, 3));
    DeviceArray<float> empty;
    DeviceArray<float> from_prev = c.buffers.Zeros(kCount);
    DeviceArray<float> from_next = c.buffers.Zeros(kCount);
    DeviceArray<float> small_from_prev = c.buffers.Zeros(3);
    DeviceArray<float> empty_from_prev;

    std::vector<std::unique_ptr<CommRequest>> batch;
    batch.push_back(comm->Isend(forward.data(), kCount, next));
    batch.push_back(comm->Isend(backward.data(), kCount, prev));
    batch.push_back(comm->Isend(small.data(), 3, next));
    batch.push_back(comm->Isend(empty.data(), 0, next));
    batch.push_back(comm->Irecv(from_prev.data(), kCount, prev));
    batch.push_back(comm->Irecv(from_next.data(), kCount, next));
    batch.push_back(comm->Irecv(small_from_prev.data(), 3, prev));
    batch.push_back(comm->Irecv(empty_from_prev.data(), 0, prev));
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) (*it)->Wait();

    c.findings.Expect(c.buffers.Download(from_prev) == message(prev, 0, kCount),
                      label + ": the message from the previous rank");
    c.findings.Expect(c.buffers.Download(from_next) == message(next, 1, kCount),
                      label + ": the message from the next rank");
    c.findings.Expect(c.buffers.Download(small_from_prev) == message(prev, 2, 3),
                      label + ": the second message from the previous rank, in order: " +
                          Describe(c.buffers.Download(small_from_prev)));
  }
}

// Counts above the largest count of one MPI call are split into several
// calls (MPI only: counts above INT_MAX, here above 3).
void CheckChunked(Context& c) {
  if (c.backend.kind() != BackendKind::kCpu) return;
  MPI_Comm dup = MPI_COMM_NULL;
  CheckMpiCall(MPI_Comm_dup(MPI_COMM_WORLD, &dup), "MPI_Comm_dup");
  MpiCommunicator comm(c.backend, dup, WholeWorld(0, c.world.size()), /*max_count_per_call=*/3);
  const int g = comm.rank();
  const int n = comm.size();
  constexpr int64_t kCount = 10;
  std::vector<float> mine(kCount), expected(kCount);
  for (int64_t i = 0; i < kCount; ++i) mine[i] = Contribution(g, i);

  DeviceArray<float> sum = c.buffers.Upload(mine);
  comm.AllReduce(sum.data(), kCount);
  for (int64_t i = 0; i < kCount; ++i) expected[i] = n * (n + 1) / 2.0f + n * i;
  c.findings.Expect(c.buffers.Download(sum) == expected, "chunked AllReduce");

  DeviceArray<float> async_sum = c.buffers.Upload(mine);
  comm.AllReduceAsync(async_sum.data(), kCount)->Wait();
  c.findings.Expect(c.buffers.Download(async_sum) == expected, "chunked AllReduceAsync");

  DeviceArray<float> bcast = c.buffers.Upload(mine);
  comm.Broadcast(bcast.data(), kCount, n - 1);
  for (int64_t i = 0; i < kCount; ++i) expected[i] = Contribution(n - 1, i);
  c.findings.Expect(c.buffers.Download(bcast) == expected, "chunked Broadcast");

  const int next = (g + 1) % n;
  const int prev = (g + n - 1) % n;
  DeviceArray<float> send = c.buffers.Upload(mine);
  DeviceArray<float> recv = c.buffers.Zeros(kCount);
  std::unique_ptr<CommRequest> s = comm.Isend(send.data(), kCount, next);
  std::unique_ptr<CommRequest> r = comm.Irecv(recv.data(), kCount, prev);
  r->Wait();
  s->Wait();
  for (int64_t i = 0; i < kCount; ++i) expected[i] = Contribution(prev, i);
  c.findings.Expect(c.buffers.Download(recv) == expected, "chunked Isend/Irecv");
}

// Groups that do not partition the world alike are InvalidArgument (on
// the ranks that see it) and leave no rank waiting; a good split after
// them still works.
void CheckBadGroup(Context& c) {
  const int me = c.world.rank();
  const int n = c.world.size();
  // This rank missing from its own group.
  std::vector<int> without_me;
  for (int r = 0; r < n; ++r) {
    if (r != me) without_me.push_back(r);
  }
  Result<std::unique_ptr<Communicator>> missing =
      MakeCommunicator(c.world, c.backend, me == 0 ? without_me : WholeWorld(me, n));
  if (me == 0) {
    c.findings.Expect(missing.status().code() == StatusCode::kInvalidArgument,
                      "a group without this rank: " + missing.status().ToString());
  } else {
    // The others asked for the whole world but MPI put them together
    // without rank 0.
    c.findings.Expect(n == 1 || missing.status().code() == StatusCode::kInvalidArgument,
                      "a group its member left: " + missing.status().ToString());
  }
  // A rank listed twice.
  std::vector<int> twice = WholeWorld(me, n);
  twice.push_back(me);
  Result<std::unique_ptr<Communicator>> duplicate = MakeCommunicator(c.world, c.backend, twice);
  c.findings.Expect(duplicate.status().code() == StatusCode::kInvalidArgument,
                    "a rank listed twice: " + duplicate.status().ToString());

  std::unique_ptr<Communicator> good = Make(c, "after bad groups", WholeWorld(me, n));
  if (good != nullptr) CheckBlockingCollectives(c, *good, "after bad groups");
}

// AgreeOnStatus, the scalar reductions and the broadcast of a string.
void CheckAgree(Context& c) {
  const int me = c.world.rank();
  const int n = c.world.size();
  c.findings.ExpectOk(c.world.AgreeOnStatus(Status::Ok()), "AgreeOnStatus of all OK");

  // One failing rank: rank 1 (or 0 in a world of one).
  const int failing = n > 1 ? 1 : 0;
  Status one = c.world.AgreeOnStatus(me == failing ? NotFoundError("no such thing") : Status());
  const std::string want = "rank " + std::to_string(failing) + ": no such thing";
  c.findings.Expect(one.code() == StatusCode::kNotFound && one.message() == want,
                    "AgreeOnStatus with one failing rank: " + one.ToString());

  // Every rank but 0 fails: the lowest of them wins.
  if (n > 2) {
    Status many = c.world.AgreeOnStatus(
        me == 0 ? Status() : InternalError("failure of rank " + std::to_string(me)));
    c.findings.Expect(many.code() == StatusCode::kInternal &&
                          many.message() == "rank 1: failure of rank 1",
                      "AgreeOnStatus with several failing ranks: " + many.ToString());
  }

  c.findings.Expect(c.world.AllReduceSum(me + 1.0) == n * (n + 1) / 2.0, "AllReduceSum");
  c.findings.Expect(c.world.AllReduceMax(me + 0.5) == n - 0.5, "AllReduceMax(double)");
  c.findings.Expect(c.world.AllReduceMax(int64_t{me} << 40) == int64_t{n - 1} << 40,
                    "AllReduceMax(int64_t)");
  const std::string root = c.world.BroadcastFromRoot(me == 0 ? "from rank zero" : "ignored");
  c.findings.Expect(root == "from rank zero", "BroadcastFromRoot: '" + root + "'");
  c.world.Barrier();
  c.findings.Expect(MpiWorld::Now() > 0, "Now()");
}

// GatherToRoot of messages of different lengths, the first one empty.
void CheckGather(Context& c) {
  const int me = c.world.rank();
  const std::string mine(static_cast<size_t>(me * 3), static_cast<char>('a' + me));
  std::vector<std::string> all = c.world.GatherToRoot(mine);
  if (me != 0) {
    c.findings.Expect(all.empty(), "GatherToRoot away from rank 0 is empty");
    return;
  }
  c.findings.Expect(static_cast<int>(all.size()) == c.world.size(), "GatherToRoot size");
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    c.findings.Expect(all[r] == std::string(static_cast<size_t>(r * 3), static_cast<char>('a' + r)),
                      "GatherToRoot message of rank " + std::to_string(r) + ": '" + all[r] + "'");
  }
}

// Rank 1 takes the job down; the others wait in a barrier that only the
// abort ends.
void CheckFail(Context& c) {
  if (c.world.rank() == 1) c.world.Fail(InternalError("boom"));
  c.world.Barrier();
  c.findings.Expect(false, "the job went on after rank 1 failed");
}

// Run without a launcher: a singleton world; a second Join is refused.
void CheckWorldOfOne(Context& c) {
  c.findings.Expect(c.world.size() == 1 && c.world.rank() == 0,
                    "world of " + std::to_string(c.world.size()));
  c.findings.Expect(c.world.local_size() == 1 && c.world.local_rank() == 0, "local world");
  c.findings.Expect(!c.world.host_name().empty(), "host name");
  Result<std::unique_ptr<MpiWorld>> again = MpiWorld::Join();
  c.findings.Expect(again.status().code() == StatusCode::kFailedPrecondition,
                    "a second Join: " + again.status().ToString());
  std::vector<std::string> gathered = c.world.GatherToRoot("solo");
  c.findings.Expect(gathered == std::vector<std::string>{"solo"}, "GatherToRoot of one");
  CheckCollectives(c);
}

// `check` with a Context on a backend of `kind`, made on every rank; the
// backend lives while the check runs.
MpiCheck OnBackend(void (*check)(Context&)) {
  return [check](MpiWorld& world, BackendKind kind, Findings& findings) -> Status {
    Result<std::unique_ptr<Backend>> backend = MakeBackend(kind, world.local_rank());
    Status ready = world.AgreeOnStatus(backend.status());
    if (!ready.ok()) return InternalError("MakeBackend: " + ready.ToString());
    Context context{world, **backend, Buffers(**backend), findings};
    check(context);
    return Status();
  };
}

int Main(int argc, char** argv) {
  return RunMpiChecks(argc, argv, "exec_comm_checks",
                      {{"collectives", OnBackend(CheckCollectives)},
                       {"async", OnBackend(CheckAsync)},
                       {"ring", OnBackend(CheckRing)},
                       {"chunked", OnBackend(CheckChunked)},
                       {"bad-group", OnBackend(CheckBadGroup)},
                       {"agree", OnBackend(CheckAgree)},
                       {"gather", OnBackend(CheckGather)},
                       {"fail", OnBackend(CheckFail)},
                       {"world-of-one", OnBackend(CheckWorldOfOne)}});
}

}  // namespace
}  // namespace orrery::exec

int main(int argc, char** argv) { return orrery::exec::Main(argc, argv); }
