// CollectiveFlows: a collective (or a pipeline transfer) of the training
// iteration as one coflow on the simulated network, such that alone on idle
// links it takes exactly the time the collective cost model predicts
// (costmodel/collective.h, NCCL's tuning model), and with other traffic on
// its links it slows down as max-min sharing dictates.
//
// The footprint. A group's collective is modelled on its ring: ranks
// g[0] → g[1] → … → g[n−1] → g[0] in the order given (NCCL builds its ring in
// rank order within a node and node by node). Its footprint is the union of
// the Topology routes of the n ring edges, each link weighted by how many
// edges cross it. Several groups that run the same collective at the same
// moment in lock-step (the tp data-parallel groups of one pipeline stage,
// one per tensor-parallel rank) form one coflow whose footprint is the sum
// of theirs. An all-to-all's footprint is every ordered pair of distinct
// ranks of each group, each link weighted by the pairs crossing it. A
// transfer between two lanes (pipeline send) pairs from[i] → to[i].
//
// Progress bytes, latency and cap. For a collective op of `size` bytes on n
// ranks, with the cost model's estimate T (time) and λ = its estimate for
// a zero-byte call of the same op on the same group (the latency part):
//   progress bytes W = the bytes each ring edge carries:
//                      all-reduce 2(n−1)/n·size, all-gather and
//                      reduce-scatter (n−1)/n·size (size: the whole
//                      gathered buffer, as nccl-tests), all-to-all size/n
//                      per pair, broadcast/reduce size;
//   latency           λ;
//   rate cap          W / (T − λ), so that latency + W / cap = T, in integer
//                      bytes per second rounded up: alone, the flow ends
//                      at most at T and early by at most (T − λ)/cap with
//                      cap in B/s (a relative 10⁻⁹ at 1 GB/s).
// The cap stands for what limits NCCL below the links' rate (channels,
// protocol overhead, tree or NVLS instead of ring). When the footprint's
// own rate alone, min_l ⌊C_l / w_l⌋, is below W / (T − λ) — an algorithm
// that sends fewer bytes over the links than the ring would (NVLS reduces
// inside the NVSwitch and sends each byte once) — W is lowered to what the
// links carry in T − λ, so that alone the coflow still takes T and under
// contention it loads its links at their full rate. When the footprint has
// no links (every edge within one device) the whole time T is latency; when
// T = λ the coflow moves no bytes (latency T). A transfer's W is its size,
// its latency the longest pair's route latency, its cap none — see
// Transfer().
//
// Degraded links (sim/faults.h). T is the cost model's time on healthy
// links, so the lowering of W above uses the footprint's nominal rate
// (TopologyNetwork::NominalCapacityBytesPerS): a link degraded below the
// cap then slows the coflow (its lone rate, and so its uncontended time,
// uses the degraded capacities) instead of lowering W. Without degraded
// links the two rates are the same.
//
// What this approximates. The footprint of a ring stands for any NCCL
// algorithm's under contention (tree and NVLS cross the same NICs and
// NVSwitch ports as the ring, in other proportions); lock-step groups share
// one rate, so a link slowing one group slows the others with it (NCCL's
// collectives across a stage's tp groups are independent but each is as
// slow as its slowest edge).
//
// Memoization. Footprints are registered once per group (RegisterGroups)
// and estimates cached per (footprint, op, size): a training iteration
// issues millions of collectives over a few hundred groups and sizes.
//
// Thread-safety: not thread-safe (the caches); one per simulation.
#ifndef ORRERY_SIM_COLLECTIVE_FLOWS_H_
#define ORRERY_SIM_COLLECTIVE_FLOWS_H_

#include <cstdint>
#include <map>
#include <span>
#include <tuple>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/collective.h"
#include "sim/flow_model.h"
#include "sim/network.h"
#include "sim/network_builder.h"

namespace orrery::sim {

// The collective model's view of a group of ranks on a cluster whose nodes
// hold `devices_per_node` devices each (rank r on node r / devices_per_node):
// how many nodes, ranks per node (the most on any node), and whether the
// ranks on a node are consecutive devices or strided over them. Shared by
// the simulator and the analytical path so both time a group alike.
costmodel::RankGroup ShapeOfGroup(std::span<const int> ranks, int devices_per_node);

// A registered footprint (index into CollectiveFlows' table).
using FootprintId = uint32_t;

// A coflow ready to start: FlowSpec's fields without the spans, which point
// into CollectiveFlows::Footprint(footprint).
struct CoflowSpec {
  FootprintId footprint = 0;
  Bytes progress_bytes;       // W
  Duration latency;           // λ
  int64_t rate_cap_bytes_per_s = 0;
  Duration uncontended_time;  // latency + W / cap (or W / the footprint's slowest link share)
};

struct Footprint {
  std::vector<LinkId> links;      // sorted, distinct
  std::vector<uint32_t> weights;  // parallel to links
  // The collective model's view of one group (for Estimate): nodes, ranks
  // per node, placement.
  costmodel::RankGroup group;
  int group_size = 1;
};

class CollectiveFlows {
 public:
  enum class Pattern { kRing, kAllToAll };

  // `network` and `model` must outlive this object.
  CollectiveFlows(const TopologyNetwork* network, const costmodel::CollectiveModel* model);

  // Registers the footprint of `groups` (each a list of ranks, all of one
  // size n >= 1, in ring order) under `pattern`. The same groups registered
  // twice return the same id. InvalidArgument on a rank outside the
  // topology, groups of differing sizes or an empty list.
  Result<FootprintId> RegisterGroups(std::span<const std::vector<int>> groups, Pattern pattern);
  // Registers the footprint of the parallel transfers from[i] → to[i].
  // REQUIRES: from.size() == to.size() >= 1; ranks in the topology.
  Result<FootprintId> RegisterTransfer(std::span<const int> from, std::span<const int> to);

  // The coflow of `op` moving `size` bytes (the collective's buffer size as
  // nccl-tests counts it) on a footprint registered with RegisterGroups;
  // cached. InvalidArgument when the collective model rejects the group.
  // A group of one rank, or size zero: W = 0, latency 0.
  Result<CoflowSpec> Collective(FootprintId footprint, costmodel::CollectiveOp op, Bytes size);
  // The coflow of each pair moving `size` bytes on a footprint registered
  // with RegisterTransfer: W = size, latency = the longest pair's route
  // latency, no cap.
  CoflowSpec Transfer(FootprintId footprint, Bytes size) const;

  const Footprint& footprint(FootprintId id) const { return footprints_[id]; }
  size_t num_footprints() const { return footprints_.size(); }

  // The FlowSpec of `coflow` (spans into footprint(coflow.footprint)).
  FlowSpec Spec(const CoflowSpec& coflow) const;

 private:
  // Adds the footprint of the routes src[i] → dst[i] (weights summed) under
  // `key`, or returns the one registered under it.
  FootprintId AddFootprint(std::vector<int> key, std::span<const int> src,
                           std::span<const int> dst, costmodel::RankGroup group, int group_size);
  // latency + ⌈W / rate⌉ for a coflow alone on its footprint (rate: the cap,
  // or the footprint's lone rate when uncapped or lower); the latency alone
  // when W = 0 or the footprint is empty.
  Duration UncontendedTime(FootprintId id, Bytes progress, Duration latency,
                           int64_t rate_cap_bytes_per_s) const;

  const TopologyNetwork* network_;
  const costmodel::CollectiveModel* model_;
  std::vector<Footprint> footprints_;
  // By footprint: the longest edge route's latency, and min_l ⌊C_l / w_l⌋
  // (0 for an empty footprint).
  std::vector<Duration> path_latency_;
  std::vector<int64_t> lone_rate_;
  std::vector<int64_t> nominal_lone_rate_;  // the same on healthy capacities
  // Scratch of AddFootprint: weight by sim link, routes.
  std::vector<uint32_t> weight_by_link_;
  std::vector<LinkId> route_;
  std::map<std::vector<int>, FootprintId> by_key_;  // pattern, then the ranks
  std::map<std::tuple<FootprintId, int, int64_t>, CoflowSpec> cache_;
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_COLLECTIVE_FLOWS_H_
