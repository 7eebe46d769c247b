// CollectiveOp: the collective operations nccl-tests measures and the cost
// model times, with nccl-tests' names and its bus-bandwidth convention.
//
// nccl-tests reports for each message size S and time t (NVIDIA/nccl-tests
// doc/PERFORMANCE.md, ../shared/REFERENCES.md §2):
//   algbw = S / t
//   busbw = algbw × factor(op, n)
// with factor 2(n-1)/n for all-reduce, (n-1)/n for all-gather, reduce-scatter
// and all-to-all, and 1 for broadcast, reduce and send/recv. S is the full
// array size: for all-gather and reduce-scatter the gathered buffer (count ×
// n × element size), as nccl-tests' "size" column prints it.
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_TRACES_COLLECTIVE_OP_H_
#define ORRERY_TRACES_COLLECTIVE_OP_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace orrery::traces {

enum class CollectiveOp {
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kAllToAll,
  kBroadcast,
  kReduce,
  kSendRecv,
};

// Every op, in the order above.
const std::vector<CollectiveOp>& AllCollectiveOps();

// The short name the CLI takes: "allreduce", "allgather", "reducescatter",
// "alltoall", "broadcast", "reduce", "sendrecv".
std::string_view CollectiveOpName(CollectiveOp op);
// nccl-tests' name of its test binary without "_perf": "all_reduce", ...
std::string_view NcclTestsName(CollectiveOp op);

// Accepts the short name, nccl-tests' name, and nccl-tests' binary names
// ("all_reduce_perf", "all_reduce_perf_mpi"). InvalidArgument lists the
// accepted short names.
Result<CollectiveOp> ParseCollectiveOp(std::string_view name);

// busbw / algbw for `op` over `ranks` ranks, as nccl-tests defines it.
// REQUIRES: ranks >= 1.
double BusBandwidthFactor(CollectiveOp op, int ranks);

// Elements per rank buffer that nccl-tests prints in its "count" column for
// a size of `size_bytes` of `element_bytes`-byte elements: the per-rank
// count for all-gather, reduce-scatter and all-to-all (size / n / element),
// the whole count otherwise.
// REQUIRES: ranks >= 1, element_bytes >= 1.
int64_t NcclTestsCount(CollectiveOp op, int64_t size_bytes, int ranks, int element_bytes);

// The "redop" column nccl-tests prints: "sum" for the reducing ops and
// send/recv (which nccl-tests runs with ncclSum), "none" otherwise.
std::string_view NcclTestsRedOp(CollectiveOp op);
// The "root" column: 0 for broadcast and reduce, -1 for the rest.
int NcclTestsRoot(CollectiveOp op);

// A time in microseconds as nccl-tests' "time" column prints it: 7 wide,
// with 2, 1 or 0 decimals as it grows (below 100 µs, below 10 ms, above).
std::string NcclTestsTime(double us);

// A size as nccl-tests' -b/-e flags take it (its parsesize): digits with an
// optional K, M or G suffix, binary (1K = 1024). InvalidArgument prefixed
// with `option` ("--max-bytes: expected a size like 8, 64K, 16M or 1G, got
// '1T'") otherwise.
Result<int64_t> ParseNcclTestsSize(std::string_view option, std::string_view text);

}  // namespace orrery::traces

#endif  // ORRERY_TRACES_COLLECTIVE_OP_H_
