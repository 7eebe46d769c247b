#include "traces/collective_op.h"

#include <cstdio>
#include <string>

#include "core/check.h"

namespace orrery::traces {

const std::vector<CollectiveOp>& AllCollectiveOps() {
  static const std::vector<CollectiveOp> kOps = {
      CollectiveOp::kAllReduce, CollectiveOp::kAllGather, CollectiveOp::kReduceScatter,
      CollectiveOp::kAllToAll,  CollectiveOp::kBroadcast, CollectiveOp::kReduce,
      CollectiveOp::kSendRecv};
  return kOps;
}

std::string_view CollectiveOpName(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::kAllReduce: return "allreduce";
    case CollectiveOp::kAllGather: return "allgather";
    case CollectiveOp::kReduceScatter: return "reducescatter";
    case CollectiveOp::kAllToAll: return "alltoall";
    case CollectiveOp::kBroadcast: return "broadcast";
    case CollectiveOp::kReduce: return "reduce";
    case CollectiveOp::kSendRecv: return "sendrecv";
  }
  return "?";
}

std::string_view NcclTestsName(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::kAllReduce: return "all_reduce";
    case CollectiveOp::kAllGather: return "all_gather";
    case CollectiveOp::kReduceScatter: return "reduce_scatter";
    case CollectiveOp::kAllToAll: return "alltoall";
    case CollectiveOp::kBroadcast: return "broadcast";
    case CollectiveOp::kReduce: return "reduce";
    case CollectiveOp::kSendRecv: return "sendrecv";
  }
  return "?";
}

Result<CollectiveOp> ParseCollectiveOp(std::string_view name) {
  std::string_view base = name;
  for (std::string_view suffix : {std::string_view("_perf_mpi"), std::string_view("_perf")}) {
    if (base.size() > suffix.size() && base.ends_with(suffix)) {
      base.remove_suffix(suffix.size());
      break;
    }
  }
  for (CollectiveOp op : AllCollectiveOps()) {
    if (base == CollectiveOpName(op) || base == NcclTestsName(op)) return op;
  }
  return InvalidArgumentError(
      "unknown collective '" + std::string(name) +
      "': expected allreduce, allgather, reducescatter, alltoall, broadcast, reduce or sendrecv");
}

double BusBandwidthFactor(CollectiveOp op, int ranks) {
  ORRERY_CHECK(ranks >= 1) << "collective over " << ranks << " ranks";
  const double n = ranks;
  switch (op) {
    case CollectiveOp::kAllReduce: return 2.0 * (n - 1.0) / n;
    case CollectiveOp::kAllGather:
    case CollectiveOp::kReduceScatter:
    case CollectiveOp::kAllToAll: return (n - 1.0) / n;
    case CollectiveOp::kBroadcast:
    case CollectiveOp::kReduce:
    case CollectiveOp::kSendRecv: return 1.0;
  }
  return 1.0;
}

int64_t NcclTestsCount(CollectiveOp op, int64_t size_bytes, int ranks, int element_bytes) {
  ORRERY_CHECK(ranks >= 1 && element_bytes >= 1);
  switch (op) {
    case CollectiveOp::kAllGather:
    case CollectiveOp::kReduceScatter:
    case CollectiveOp::kAllToAll: return size_bytes / ranks / element_bytes;
    default: return size_bytes / element_bytes;
  }
}

std::string_view NcclTestsRedOp(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::kAllReduce:
    case CollectiveOp::kReduceScatter:
    case CollectiveOp::kReduce:
    case CollectiveOp::kSendRecv: return "sum";
    default: return "none";
  }
}

int NcclTestsRoot(CollectiveOp op) {
  return op == CollectiveOp::kBroadcast || op == CollectiveOp::kReduce ? 0 : -1;
}

std::string NcclTestsTime(double us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, us >= 10000 ? "%7.0f" : us >= 100 ? "%7.1f" : "%7.2f", us);
  return buf;
}

Result<int64_t> ParseNcclTestsSize(std::string_view option, std::string_view text) {
  std::string digits(text);
  int64_t unit = 1;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K': case 'k': unit = int64_t{1} << 10; break;
      case 'M': case 'm': unit = int64_t{1} << 20; break;
      case 'G': case 'g': unit = int64_t{1} << 30; break;
      default: break;
    }
    if (unit != 1) digits.pop_back();
  }
  // 12 digits keep digits × 2^30 within int64.
  bool ok = !digits.empty() && digits.size() <= 12;
  for (char c : digits) ok = ok && c >= '0' && c <= '9';
  if (!ok) {
    return InvalidArgumentError(std::string(option) +
                                ": expected a size like 8, 64K, 16M or 1G, got '" +
                                std::string(text) + "'");
  }
  return std::stoll(digits) * unit;
}

}  // namespace orrery::traces
