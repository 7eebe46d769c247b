// Collectives as coflows on the dgx-h100 topology: footprints from the
// topology's routes, and alone on idle links a coflow takes the time the
// collective cost model predicts.
#include "sim/collective_flows.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/units.h"
#include "costmodel/collective.h"
#include "sim/engine.h"
#include "sim/flow_model.h"
#include "sim/network_builder.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"

namespace orrery::sim {
namespace {

using costmodel::CollectiveOp;
using costmodel::RankGroup;

// A dgx-h100 cluster of `nodes` nodes, its network and collective model.
struct Cluster {
  explicit Cluster(int nodes)
      : spec(Spec(nodes)),
        topology(Build(spec)),
        network(&topology),
        model(Model(spec)),
        flows(&network, &model) {}

  static topology::ClusterSpec Spec(int nodes) {
    Result<topology::ClusterSpec> spec = topology::ResolveCluster("dgx-h100", nodes);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return *spec;
  }
  static topology::Topology Build(const topology::ClusterSpec& spec) {
    Result<topology::Topology> topology = topology::Topology::Build(spec);
    EXPECT_TRUE(topology.ok()) << topology.status().ToString();
    return std::move(topology).value();
  }
  static costmodel::CollectiveModel Model(const topology::ClusterSpec& spec) {
    Result<costmodel::CollectiveModel> model = costmodel::CollectiveModel::Create(spec);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    return std::move(model).value();
  }

  topology::ClusterSpec spec;
  topology::Topology topology;
  TopologyNetwork network;
  costmodel::CollectiveModel model;
  CollectiveFlows flows;
};

class Completions : public FlowObserver {
 public:
  explicit Completions(const Engine* engine) : engine_(engine) {}
  void OnFlowCompleted(FlowId, uint64_t tag) override { time[tag] = engine_->now(); }
  std::map<uint64_t, SimTime> time;

 private:
  const Engine* engine_;
};

std::vector<int> Ranks(int first, int count, int stride = 1) {
  std::vector<int> ranks;
  for (int i = 0; i < count; ++i) ranks.push_back(first + i * stride);
  return ranks;
}

TEST(ShapeOfGroup, CountsNodesRanksPerNodeAndPlacement) {
  const std::vector<int> node = Ranks(0, 8);
  RankGroup g = ShapeOfGroup(node, 8);
  EXPECT_EQ(g.nodes, 1);
  EXPECT_EQ(g.ranks_per_node, 8);
  EXPECT_EQ(g.placement, RankGroup::Placement::kConsecutive);

  const std::vector<int> strided = Ranks(0, 4, 2);  // 0 2 4 6
  g = ShapeOfGroup(strided, 8);
  EXPECT_EQ(g.nodes, 1);
  EXPECT_EQ(g.ranks_per_node, 4);
  EXPECT_EQ(g.placement, RankGroup::Placement::kStrided);

  const std::vector<int> one_per_node = Ranks(3, 4, 8);  // dp group: 3 11 19 27
  g = ShapeOfGroup(one_per_node, 8);
  EXPECT_EQ(g.nodes, 4);
  EXPECT_EQ(g.ranks_per_node, 1);
  EXPECT_EQ(g.placement, RankGroup::Placement::kConsecutive);

  const std::vector<int> halves = {4, 5, 6, 7, 12, 13, 14, 15};
  g = ShapeOfGroup(halves, 8);
  EXPECT_EQ(g.nodes, 2);
  EXPECT_EQ(g.ranks_per_node, 4);
  EXPECT_EQ(g.placement, RankGroup::Placement::kConsecutive);

  const std::vector<int> uneven = {0, 1, 2, 8};
  g = ShapeOfGroup(uneven, 8);
  EXPECT_EQ(g.nodes, 2);
  EXPECT_EQ(g.ranks_per_node, 3);
}

// Ring 0 → 1 → … → 7 → 0 inside one NVSwitch node: edge i → i+1 crosses
// dev_i → nvswitch and nvswitch → dev_{i+1}, so the 8 edges use each of the
// 8 up links and each of the 8 down links once: 16 links of weight 1.
TEST(CollectiveFlows, ARingOfEightGpusInOneNodeCrossesSixteenFabricLinksOnce) {
  Cluster c(1);
  const std::vector<std::vector<int>> groups = {Ranks(0, 8)};
  Result<FootprintId> id = c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kRing);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  const Footprint& fp = c.flows.footprint(*id);
  ASSERT_EQ(fp.links.size(), 16u);
  for (size_t i = 0; i < fp.links.size(); ++i) {
    EXPECT_EQ(fp.weights[i], 1u);
    EXPECT_EQ(c.topology.link(c.network.ToTopology(fp.links[i])).kind,
              topology::LinkKind::kFabric);
    if (i > 0) {
      EXPECT_LT(fp.links[i - 1].value(), fp.links[i].value()) << "sorted";
    }
  }
  EXPECT_EQ(fp.group_size, 8);
  EXPECT_EQ(fp.group.nodes, 1);
  EXPECT_EQ(fp.group.ranks_per_node, 8);
  // The same groups again: the same footprint.
  Result<FootprintId> again = c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kRing);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *id);
  EXPECT_EQ(c.flows.num_footprints(), 1u);
}

// Two lock-step rings {0..3} and {4..7}: disjoint devices, so 16 links of
// weight 1 again; a ring of two (0 → 1 → 0) crosses 4 links once each.
TEST(CollectiveFlows, LockStepGroupsAddTheirFootprints) {
  Cluster c(1);
  const std::vector<std::vector<int>> two = {Ranks(0, 4), Ranks(4, 4)};
  Result<FootprintId> id = c.flows.RegisterGroups(two, CollectiveFlows::Pattern::kRing);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(c.flows.footprint(*id).links.size(), 16u);
  EXPECT_EQ(c.flows.footprint(*id).group.ranks_per_node, 4);
  const std::vector<std::vector<int>> pair = {Ranks(0, 2)};
  id = c.flows.RegisterGroups(pair, CollectiveFlows::Pattern::kRing);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(c.flows.footprint(*id).links.size(), 4u);
  for (const uint32_t w : c.flows.footprint(*id).weights) EXPECT_EQ(w, 1u);
}

// All-to-all of 4 GPUs in a node: each of the 12 ordered pairs crosses its
// source's up link and its destination's down link, so each of the 8 links
// carries 3 pairs: weight 3.
TEST(CollectiveFlows, AnAllToAllWeighsEachLinkByThePairsCrossingIt) {
  Cluster c(1);
  const std::vector<std::vector<int>> groups = {Ranks(0, 4)};
  Result<FootprintId> id = c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kAllToAll);
  ASSERT_TRUE(id.ok());
  const Footprint& fp = c.flows.footprint(*id);
  ASSERT_EQ(fp.links.size(), 8u);
  for (const uint32_t w : fp.weights) EXPECT_EQ(w, 3u);
  Result<FootprintId> ring = c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kRing);
  ASSERT_TRUE(ring.ok());
  EXPECT_NE(*ring, *id) << "pattern is part of the key";
}

TEST(CollectiveFlows, RejectsBadGroups) {
  Cluster c(1);
  EXPECT_FALSE(c.flows.RegisterGroups({}, CollectiveFlows::Pattern::kRing).ok());
  const std::vector<std::vector<int>> uneven = {Ranks(0, 4), Ranks(4, 3)};
  EXPECT_FALSE(c.flows.RegisterGroups(uneven, CollectiveFlows::Pattern::kRing).ok());
  const std::vector<std::vector<int>> outside = {{6, 7, 8}};
  EXPECT_FALSE(c.flows.RegisterGroups(outside, CollectiveFlows::Pattern::kRing).ok());
  const std::vector<int> from = {0, 1};
  const std::vector<int> to = {2};
  EXPECT_FALSE(c.flows.RegisterTransfer(from, to).ok());
}

TEST(CollectiveFlows, AGroupOfOneRankHasNoFootprintAndCostsNothing) {
  Cluster c(1);
  const std::vector<std::vector<int>> groups = {{5}};
  Result<FootprintId> id = c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kRing);
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(c.flows.footprint(*id).links.empty());
  Result<CoflowSpec> coflow = c.flows.Collective(*id, CollectiveOp::kAllReduce, MiB(64));
  ASSERT_TRUE(coflow.ok());
  EXPECT_EQ(coflow->progress_bytes, Bytes::Zero());
  EXPECT_EQ(coflow->latency, Duration::Zero());
  EXPECT_EQ(coflow->uncontended_time, Duration::Zero());
}

// Progress bytes per op on 8 ranks and 64 MiB: all-reduce 2·7/8, all-gather
// and reduce-scatter 7/8 of the buffer, unless the 450 GB/s fabric links
// cannot carry that much in T − λ (NCCL picks NVLS for this all-reduce,
// which sends each byte once: W is then what the links carry, see the
// header).
TEST(CollectiveFlows, ProgressBytesFollowTheRingsPerEdgeTraffic) {
  Cluster c(1);
  const std::vector<std::vector<int>> groups = {Ranks(0, 8)};
  const FootprintId id = *c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kRing);
  const Bytes size = MiB(64);
  for (const auto& [op, bytes] : std::vector<std::pair<CollectiveOp, int64_t>>{
           {CollectiveOp::kAllReduce, size.count() * 14 / 8},
           {CollectiveOp::kAllGather, size.count() * 7 / 8},
           {CollectiveOp::kReduceScatter, size.count() * 7 / 8}}) {
    Result<CoflowSpec> coflow = c.flows.Collective(id, op, size);
    ASSERT_TRUE(coflow.ok()) << coflow.status().ToString();
    const Duration t = c.model.Estimate(op, size, c.flows.footprint(id).group)->time;
    const Duration lambda = c.model.Estimate(op, Bytes::Zero(), c.flows.footprint(id).group)->time;
    EXPECT_EQ(coflow->latency, lambda);
    // What 450 GB/s links carry in T − λ bounds W.
    const int64_t carried = static_cast<int64_t>(
        static_cast<__int128>(450'000'000'000) * (t - lambda).picos() / 1'000'000'000'000);
    EXPECT_EQ(coflow->progress_bytes.count(), std::min(bytes, carried))
        << traces::CollectiveOpName(op);
  }
}

constexpr int64_t kPicosPerSecond = 1'000'000'000'000;

// ⌈bytes / rate⌉ in picoseconds.
Duration TimeAt(Bytes bytes, int64_t rate_bytes_per_s) {
  return Picos(static_cast<int64_t>(
      (static_cast<__int128>(bytes.count()) * kPicosPerSecond + rate_bytes_per_s - 1) /
      rate_bytes_per_s));
}

// Alone on idle links a coflow takes the model's time T: exactly its
// uncontended_time in the flow model, which is at most T and short of it by
// at most (T − λ)/cap (cap in B/s: far below 10⁻⁶ of T).
TEST(CollectiveFlows, ACollectiveAloneTakesTheCostModelsTime) {
  Cluster c(2);
  const std::vector<std::vector<int>> node = {Ranks(0, 8)};
  const std::vector<std::vector<int>> both = {Ranks(0, 16)};
  const std::vector<std::vector<int>> rails = {Ranks(0, 2, 8), Ranks(3, 2, 8)};
  for (const auto* groups : {&node, &both, &rails}) {
    const FootprintId id = *c.flows.RegisterGroups(*groups, CollectiveFlows::Pattern::kRing);
    for (const CollectiveOp op : {CollectiveOp::kAllReduce, CollectiveOp::kAllGather,
                                  CollectiveOp::kReduceScatter, CollectiveOp::kBroadcast}) {
      for (const Bytes size : {KiB(64), MiB(64), GiB(1)}) {
        Result<CoflowSpec> coflow = c.flows.Collective(id, op, size);
        ASSERT_TRUE(coflow.ok()) << coflow.status().ToString();
        const Duration t = c.model.Estimate(op, size, c.flows.footprint(id).group)->time;
        EXPECT_LE(coflow->uncontended_time, t);
        EXPECT_LE((t - coflow->uncontended_time).ToSeconds(), 1e-6 * t.ToSeconds());

        Engine engine;
        FlowModel model(&engine, &c.network.network());
        Completions done(&engine);
        model.StartFlow(c.flows.Spec(*coflow), &done, 1);
        engine.Run();
        EXPECT_EQ(done.time.at(1), coflow->uncontended_time)
            << traces::CollectiveOpName(op) << " of " << size.count() << " B on "
            << groups->size() << "x" << groups->front().size();
        // Cached: the same coflow again.
        Result<CoflowSpec> again = c.flows.Collective(id, op, size);
        EXPECT_EQ(again->progress_bytes, coflow->progress_bytes);
        EXPECT_EQ(again->rate_cap_bytes_per_s, coflow->rate_cap_bytes_per_s);
      }
    }
  }
}

// Two all-reduces of 64 MiB on the same 8 GPUs, started together. Alone
// each is link-bound (NVLS: W is what the 450 GB/s links carry in T − λ),
// so together they share every link: each runs at 225 GB/s and ends at
// λ + W / 225 GB/s ≈ 2(T − λ) + λ.
TEST(CollectiveFlows, TwoLinkBoundAllReducesOnOneGroupTakeTwiceTheTransferTime) {
  Cluster c(1);
  const std::vector<std::vector<int>> groups = {Ranks(0, 8)};
  const FootprintId id = *c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kRing);
  const CoflowSpec coflow = *c.flows.Collective(id, CollectiveOp::kAllReduce, MiB(64));
  const Duration t = c.model.Estimate(CollectiveOp::kAllReduce, MiB(64),
                                      c.flows.footprint(id).group)->time;
  ASSERT_GT(coflow.rate_cap_bytes_per_s, 225'000'000'000) << "the links, not the cap, bind";

  Engine engine;
  FlowModel model(&engine, &c.network.network());
  Completions done(&engine);
  model.StartFlow(c.flows.Spec(coflow), &done, 1);
  model.StartFlow(c.flows.Spec(coflow), &done, 2);
  engine.Run();
  const Duration expected = coflow.latency + TimeAt(coflow.progress_bytes, 225'000'000'000);
  EXPECT_EQ(done.time.at(1), expected);
  EXPECT_EQ(done.time.at(2), expected);
  const Duration twice = (t - coflow.latency) * 2 + coflow.latency;
  EXPECT_NEAR(done.time.at(1).ToSeconds(), twice.ToSeconds(), 1e-6 * twice.ToSeconds());
}

// Two all-gathers of 64 MiB on the same 8 GPUs: alone each is held by its
// cap (NCCL's ring reaches about 318 GB/s of the 450 GB/s links), so
// together, at 225 GB/s each, they slow down by cap / 225 GB/s < 2.
TEST(CollectiveFlows, TwoCapBoundAllGathersSlowDownLessThanTwice) {
  Cluster c(1);
  const std::vector<std::vector<int>> groups = {Ranks(0, 8)};
  const FootprintId id = *c.flows.RegisterGroups(groups, CollectiveFlows::Pattern::kRing);
  const CoflowSpec coflow = *c.flows.Collective(id, CollectiveOp::kAllGather, MiB(64));
  ASSERT_GT(coflow.rate_cap_bytes_per_s, 225'000'000'000);
  ASSERT_LT(coflow.rate_cap_bytes_per_s, 450'000'000'000) << "the cap binds alone";
  EXPECT_EQ(coflow.progress_bytes, Bytes(MiB(64).count() * 7 / 8));

  Engine engine;
  FlowModel model(&engine, &c.network.network());
  Completions done(&engine);
  model.StartFlow(c.flows.Spec(coflow), &done, 1);
  model.StartFlow(c.flows.Spec(coflow), &done, 2);
  engine.Run();
  const Duration expected = coflow.latency + TimeAt(coflow.progress_bytes, 225'000'000'000);
  EXPECT_EQ(done.time.at(1), expected);
  EXPECT_EQ(done.time.at(2), expected);
  const double slowdown = (expected - coflow.latency).ToSeconds() /
                          (coflow.uncontended_time - coflow.latency).ToSeconds();
  EXPECT_NEAR(slowdown, static_cast<double>(coflow.rate_cap_bytes_per_s) / 225e9, 1e-6);
  EXPECT_LT(slowdown, 2.0);
}

// Pipeline transfer between two nodes, 8 lanes d → 8 + d: each pair crosses
// dev → NIC → leaf → NIC → dev on its own rail (4 links), so 32 links of
// weight 1; latency one leaf hop (1 us); 1 GB at the NIC's 50 GB/s: 20 ms.
TEST(CollectiveFlows, EightParallelTransfersBetweenTwoNodesUseEightRails) {
  Cluster c(2);
  const std::vector<int> from = Ranks(0, 8);
  const std::vector<int> to = Ranks(8, 8);
  Result<FootprintId> id = c.flows.RegisterTransfer(from, to);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  const Footprint& fp = c.flows.footprint(*id);
  ASSERT_EQ(fp.links.size(), 32u);
  for (const uint32_t w : fp.weights) EXPECT_EQ(w, 1u);
  EXPECT_EQ(*c.flows.RegisterTransfer(from, to), *id);

  const CoflowSpec transfer = c.flows.Transfer(*id, GB(1));
  EXPECT_EQ(transfer.progress_bytes, GB(1));
  EXPECT_EQ(transfer.latency, Micros(1));
  EXPECT_EQ(transfer.rate_cap_bytes_per_s, 0);
  EXPECT_EQ(transfer.uncontended_time, Micros(1) + Millis(20));
  Engine engine;
  FlowModel model(&engine, &c.network.network());
  Completions done(&engine);
  model.StartFlow(c.flows.Spec(transfer), &done, 1);
  engine.Run();
  EXPECT_EQ(done.time.at(1), transfer.uncontended_time);
}

// A transfer and a data-parallel all-reduce sharing rail 0's NIC links
// slow each other down: the coflow is max-min shared like any flow.
TEST(CollectiveFlows, ACoflowSharesItsLinksWithOtherTraffic) {
  Cluster c(2);
  const std::vector<std::vector<int>> dp = {{0, 8}};
  const FootprintId ring = *c.flows.RegisterGroups(dp, CollectiveFlows::Pattern::kRing);
  const CoflowSpec all_reduce = *c.flows.Collective(ring, CollectiveOp::kAllReduce, GiB(1));
  const std::vector<int> from = {0};
  const std::vector<int> to = {8};
  const CoflowSpec transfer = c.flows.Transfer(*c.flows.RegisterTransfer(from, to), GiB(1));

  Engine engine;
  FlowModel model(&engine, &c.network.network());
  Completions done(&engine);
  model.StartFlow(c.flows.Spec(all_reduce), &done, 1);
  model.StartFlow(c.flows.Spec(transfer), &done, 2);
  engine.Run();
  EXPECT_GT(done.time.at(1), all_reduce.uncontended_time);
  EXPECT_GT(done.time.at(2), transfer.uncontended_time);
}

}  // namespace
}  // namespace orrery::sim
