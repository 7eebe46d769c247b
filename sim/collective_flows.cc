#include "sim/collective_flows.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "core/check.h"

namespace orrery::sim {

namespace {

constexpr int64_t kPicosPerSecond = 1'000'000'000'000;

// Keys of by_key_: the pattern first, so ring, all-to-all and transfer
// footprints of the same ranks stay apart.
constexpr int kTransferKey = 2;

__int128 CeilDiv128(__int128 a, __int128 b) { return (a + b - 1) / b; }

// W of `op` on n ranks moving `size` bytes (see the header), rounded up.
Bytes ProgressBytes(costmodel::CollectiveOp op, Bytes size, int n) {
  using costmodel::CollectiveOp;
  const __int128 s = size.count();
  __int128 w = 0;
  switch (op) {
    case CollectiveOp::kAllReduce:
      w = CeilDiv128(2 * (n - 1) * s, n);
      break;
    case CollectiveOp::kAllGather:
    case CollectiveOp::kReduceScatter:
      w = CeilDiv128((n - 1) * s, n);
      break;
    case CollectiveOp::kAllToAll:
      w = CeilDiv128(s, n);
      break;
    case CollectiveOp::kBroadcast:
    case CollectiveOp::kReduce:
    case CollectiveOp::kSendRecv:
      w = s;
      break;
  }
  return Bytes(static_cast<int64_t>(w));
}

}  // namespace

costmodel::RankGroup ShapeOfGroup(std::span<const int> ranks, int devices_per_node) {
  ORRERY_CHECK(devices_per_node >= 1) << "devices_per_node " << devices_per_node;
  costmodel::RankGroup group;
  if (ranks.empty()) return group;
  // Local device indices by node, in node order.
  std::map<int, std::vector<int>> locals;
  for (const int rank : ranks) {
    ORRERY_CHECK(rank >= 0) << "rank " << rank;
    locals[rank / devices_per_node].push_back(rank % devices_per_node);
  }
  group.nodes = static_cast<int>(locals.size());
  group.ranks_per_node = 0;
  bool consecutive = true;
  for (auto& [node, devices] : locals) {
    group.ranks_per_node = std::max(group.ranks_per_node, static_cast<int>(devices.size()));
    std::sort(devices.begin(), devices.end());
    for (size_t i = 1; i < devices.size(); ++i) {
      if (devices[i] != devices[i - 1] + 1) consecutive = false;
    }
  }
  group.placement = consecutive ? costmodel::RankGroup::Placement::kConsecutive
                                : costmodel::RankGroup::Placement::kStrided;
  return group;
}

CollectiveFlows::CollectiveFlows(const TopologyNetwork* network,
                                 const costmodel::CollectiveModel* model)
    : network_(network), model_(model) {
  ORRERY_CHECK(network_ != nullptr && model_ != nullptr) << "collective flows without a network";
}

Result<FootprintId> CollectiveFlows::RegisterGroups(std::span<const std::vector<int>> groups,
                                                    Pattern pattern) {
  if (groups.empty()) return InvalidArgumentError("collective footprint: no groups");
  const size_t n = groups.front().size();
  const int devices = network_->topology().num_devices();
  std::vector<int> key = {static_cast<int>(pattern), static_cast<int>(n)};
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].size() != n || n == 0) {
      return InvalidArgumentError("collective footprint: group " + std::to_string(g) + " has " +
                                  std::to_string(groups[g].size()) + " ranks, expected " +
                                  std::to_string(n) + (n == 0 ? " (at least 1)" : ""));
    }
    for (size_t i = 0; i < n; ++i) {
      const int rank = groups[g][i];
      if (rank < 0 || rank >= devices) {
        return InvalidArgumentError("collective footprint: rank " + std::to_string(rank) +
                                    " of group " + std::to_string(g) + " outside [0, " +
                                    std::to_string(devices) + ")");
      }
      for (size_t j = 0; j < i; ++j) {
        if (groups[g][j] == rank) {
          return InvalidArgumentError("collective footprint: rank " + std::to_string(rank) +
                                      " twice in group " + std::to_string(g));
        }
      }
    }
    key.insert(key.end(), groups[g].begin(), groups[g].end());
  }
  if (const auto it = by_key_.find(key); it != by_key_.end()) return it->second;

  // The edges: ring neighbours, or every ordered pair.
  std::vector<int> src;
  std::vector<int> dst;
  for (const std::vector<int>& group : groups) {
    if (n == 1) continue;
    if (pattern == Pattern::kRing) {
      for (size_t i = 0; i < n; ++i) {
        src.push_back(group[i]);
        dst.push_back(group[(i + 1) % n]);
      }
    } else {
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < n; ++j) {
          if (i == j) continue;
          src.push_back(group[i]);
          dst.push_back(group[j]);
        }
      }
    }
  }
  const int devices_per_node = model_->cluster().PrimaryNodeType().devices_per_node;
  return AddFootprint(std::move(key), src, dst, ShapeOfGroup(groups.front(), devices_per_node),
                      static_cast<int>(n));
}

Result<FootprintId> CollectiveFlows::RegisterTransfer(std::span<const int> from,
                                                      std::span<const int> to) {
  if (from.empty() || from.size() != to.size()) {
    return InvalidArgumentError("transfer footprint: " + std::to_string(from.size()) +
                                " sources and " + std::to_string(to.size()) +
                                " destinations, expected as many and at least one");
  }
  const int devices = network_->topology().num_devices();
  for (size_t i = 0; i < from.size(); ++i) {
    for (const int rank : {from[i], to[i]}) {
      if (rank < 0 || rank >= devices) {
        return InvalidArgumentError("transfer footprint: rank " + std::to_string(rank) +
                                    " of pair " + std::to_string(i) + " outside [0, " +
                                    std::to_string(devices) + ")");
      }
    }
  }
  std::vector<int> key = {kTransferKey, static_cast<int>(from.size())};
  key.insert(key.end(), from.begin(), from.end());
  key.insert(key.end(), to.begin(), to.end());
  if (const auto it = by_key_.find(key); it != by_key_.end()) return it->second;
  const int devices_per_node = model_->cluster().PrimaryNodeType().devices_per_node;
  return AddFootprint(std::move(key), from, to, ShapeOfGroup(from, devices_per_node),
                      static_cast<int>(from.size()));
}

FootprintId CollectiveFlows::AddFootprint(std::vector<int> key, std::span<const int> src,
                                          std::span<const int> dst, costmodel::RankGroup group,
                                          int group_size) {
  const Network& network = network_->network();
  weight_by_link_.assign(network.num_links(), 0);
  Footprint footprint;
  Duration longest = Duration::Zero();
  for (size_t e = 0; e < src.size(); ++e) {
    network_->RouteInto(src[e], dst[e], &route_);
    Duration latency = Duration::Zero();
    for (const LinkId link : route_) {
      latency += network.link(link).latency;
      if (weight_by_link_[link.value()]++ == 0) footprint.links.push_back(link);
    }
    longest = std::max(longest, latency);
  }
  std::sort(footprint.links.begin(), footprint.links.end(),
            [](LinkId a, LinkId b) { return a.value() < b.value(); });
  int64_t lone_rate = footprint.links.empty() ? 0 : SharingProblem::kUnbounded;
  int64_t nominal_lone_rate = lone_rate;
  for (const LinkId link : footprint.links) {
    const uint32_t weight = weight_by_link_[link.value()];
    footprint.weights.push_back(weight);
    lone_rate = std::min(lone_rate,
                         network.link(link).capacity_bytes_per_s / static_cast<int64_t>(weight));
    nominal_lone_rate =
        std::min(nominal_lone_rate,
                 network_->NominalCapacityBytesPerS(link) / static_cast<int64_t>(weight));
  }
  footprint.group = group;
  footprint.group_size = group_size;
  const FootprintId id = static_cast<FootprintId>(footprints_.size());
  footprints_.push_back(std::move(footprint));
  path_latency_.push_back(longest);
  lone_rate_.push_back(lone_rate);
  nominal_lone_rate_.push_back(nominal_lone_rate);
  by_key_.emplace(std::move(key), id);
  return id;
}

Duration CollectiveFlows::UncontendedTime(FootprintId id, Bytes progress, Duration latency,
                                          int64_t rate_cap_bytes_per_s) const {
  if (progress == Bytes::Zero() || footprints_[id].links.empty()) return latency;
  int64_t rate = lone_rate_[id];
  if (rate_cap_bytes_per_s > 0) rate = std::min(rate, rate_cap_bytes_per_s);
  ORRERY_CHECK(rate > 0) << "a footprint of zero capacity";
  const __int128 picos =
      CeilDiv128(static_cast<__int128>(progress.count()) * kPicosPerSecond, rate);
  return latency + Duration::FromPicos(static_cast<int64_t>(picos));
}

Result<CoflowSpec> CollectiveFlows::Collective(FootprintId footprint, costmodel::CollectiveOp op,
                                               Bytes size) {
  ORRERY_CHECK(footprint < footprints_.size()) << "footprint " << footprint;
  if (size < Bytes::Zero()) {
    return InvalidArgumentError("collective: size " + std::to_string(size.count()) +
                                ", expected a non-negative byte count");
  }
  const auto key = std::make_tuple(footprint, static_cast<int>(op), size.count());
  if (const auto it = cache_.find(key); it != cache_.end()) return it->second;

  const Footprint& fp = footprints_[footprint];
  CoflowSpec coflow;
  coflow.footprint = footprint;
  if (fp.group_size > 1 && size > Bytes::Zero()) {
    ORRERY_ASSIGN_OR_RETURN(const costmodel::CollectiveEstimate whole,
                            model_->Estimate(op, size, fp.group));
    ORRERY_ASSIGN_OR_RETURN(const costmodel::CollectiveEstimate empty,
                            model_->Estimate(op, Bytes::Zero(), fp.group));
    const Duration total = whole.time;
    const Duration latency = std::min(empty.time, total);
    const Duration transfer = total - latency;
    const Bytes progress = ProgressBytes(op, size, fp.group_size);
    if (fp.links.empty() || transfer <= Duration::Zero() || progress == Bytes::Zero()) {
      // Nothing crosses a link, or nothing adds time to the latency.
      coflow.latency = total;
    } else {
      // The most the footprint carries alone in `transfer` on healthy links.
      const __int128 carried = static_cast<__int128>(nominal_lone_rate_[footprint]) *
                               transfer.picos() / kPicosPerSecond;
      const __int128 moved = std::min<__int128>(progress.count(), carried);
      coflow.progress_bytes = Bytes(static_cast<int64_t>(moved));
      coflow.latency = latency;
      if (moved > 0) {
        coflow.rate_cap_bytes_per_s =
            static_cast<int64_t>(CeilDiv128(moved * kPicosPerSecond, transfer.picos()));
      } else {
        coflow.latency = total;
      }
    }
  }
  coflow.uncontended_time = UncontendedTime(footprint, coflow.progress_bytes, coflow.latency,
                                            coflow.rate_cap_bytes_per_s);
  cache_.emplace(key, coflow);
  return coflow;
}

CoflowSpec CollectiveFlows::Transfer(FootprintId footprint, Bytes size) const {
  ORRERY_CHECK(footprint < footprints_.size()) << "footprint " << footprint;
  ORRERY_CHECK(size >= Bytes::Zero()) << "transfer of " << size.count() << " bytes";
  CoflowSpec coflow;
  coflow.footprint = footprint;
  coflow.progress_bytes = size;
  coflow.latency = path_latency_[footprint];
  coflow.uncontended_time = UncontendedTime(footprint, size, coflow.latency, 0);
  return coflow;
}

FlowSpec CollectiveFlows::Spec(const CoflowSpec& coflow) const {
  ORRERY_CHECK(coflow.footprint < footprints_.size()) << "footprint " << coflow.footprint;
  const Footprint& fp = footprints_[coflow.footprint];
  FlowSpec spec;
  spec.links = fp.links;
  spec.weights = fp.weights;
  spec.size = coflow.progress_bytes;
  spec.latency = coflow.latency;
  spec.rate_cap_bytes_per_s = coflow.rate_cap_bytes_per_s;
  return spec;
}

}  // namespace orrery::sim
