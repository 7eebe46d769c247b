// The Topology graph a ClusterSpec expands to: its vertices and links
// counted in closed form, and its routes checked hop by hop.
#include "topology/topology_graph.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/units.h"
#include "topology/presets.h"

namespace orrery::topology {
namespace {

ClusterSpec Preset(const std::string& name, int nodes) {
  Result<ClusterSpec> spec = ResolveCluster(name, nodes);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return *spec;
}

Topology Build(const ClusterSpec& spec) {
  Result<Topology> topology = Topology::Build(spec);
  EXPECT_TRUE(topology.ok()) << topology.status().ToString();
  return std::move(topology).value();
}

std::vector<std::string> Names(const Topology& topology, const std::vector<LinkId>& route) {
  std::vector<std::string> names;
  for (const LinkId id : route) names.push_back(topology.link(id).name);
  return names;
}

// The links leaving `vertex` of kind `kind`.
std::vector<LinkId> LinksFrom(const Topology& topology, const std::string& vertex, LinkKind kind) {
  std::vector<LinkId> out;
  for (uint32_t i = 0; i < topology.num_links(); ++i) {
    const Link& link = topology.link(LinkId(i));
    if (link.kind == kind && topology.vertex(link.from).name == vertex) out.push_back(LinkId(i));
  }
  return out;
}

TEST(TopologyGraph, FourDgxH100NodesHaveTheirDevicesNicsAndSwitches) {
  const Topology t = Build(Preset("dgx-h100", 4));
  EXPECT_EQ(t.num_nodes(), 4);
  EXPECT_EQ(t.num_devices(), 32);
  EXPECT_EQ(t.CountVertices(VertexKind::kDevice), 32);
  EXPECT_EQ(t.CountVertices(VertexKind::kNic), 32);
  EXPECT_EQ(t.CountVertices(VertexKind::kNvSwitch), 4);
  EXPECT_EQ(t.CountVertices(VertexKind::kPcieHostBridge), 0);
  // 4 nodes fit one leaf group of 32: one leaf per rail (8), and a spine of
  // 8 planes (8 NICs per node; a full leaf has 32 uplink ports).
  EXPECT_EQ(t.planes(), 8);
  EXPECT_EQ(t.CountNetworkSwitches(0), 8);
  EXPECT_EQ(t.CountNetworkSwitches(1), 8);
  EXPECT_EQ(t.CountVertices(VertexKind::kNetworkSwitch), 16);
  EXPECT_EQ(t.num_vertices(), 32u + 4u + 32u + 16u);
  // Duplex: device<->NVSwitch 2x32, device<->NIC 2x32, NIC<->leaf 2x32,
  // leaf<->spine 2x8x8.
  EXPECT_EQ(t.CountLinks(LinkKind::kFabric), 64);
  EXPECT_EQ(t.CountLinks(LinkKind::kDeviceNic), 64);
  EXPECT_EQ(t.CountLinks(LinkKind::kNicLeaf), 64);
  EXPECT_EQ(t.CountLinks(LinkKind::kTier), 128);
  EXPECT_EQ(t.num_links(), 320u);
}

TEST(TopologyGraph, RanksAreNodeMajor) {
  const Topology t = Build(Preset("dgx-h100", 4));
  const Vertex& v = t.vertex(t.DeviceVertex(11));
  EXPECT_EQ(v.name, "node1/dev3");
  EXPECT_EQ(v.node, 1);
  EXPECT_EQ(v.local, 3);
  EXPECT_EQ(v.rank, 11);
  EXPECT_EQ(t.NodeOfRank(31), 3);
}

TEST(TopologyGraph, AnIntraNodeRouteCrossesTheNvSwitchAtFullDeviceBandwidth) {
  const Topology t = Build(Preset("dgx-h100", 4));
  const std::vector<LinkId> route = t.Route(8, 13);
  EXPECT_EQ(Names(t, route), (std::vector<std::string>{"node1/dev0->node1/nvswitch",
                                                       "node1/nvswitch->node1/dev5"}));
  EXPECT_EQ(t.PathBottleneck(route), GBps(450));
  // One NVSwitch hop of the preset: 0.5 us.
  EXPECT_EQ(t.PathLatency(route), Micros(0.5));
}

TEST(TopologyGraph, ARouteToItselfIsEmpty) {
  const Topology t = Build(Preset("dgx-h100", 2));
  EXPECT_TRUE(t.Route(5, 5).empty());
  EXPECT_EQ(t.PathBottleneck({}), std::nullopt);
  EXPECT_EQ(t.PathLatency({}), Duration::Zero());
}

TEST(TopologyGraph, SameRailAcrossNodesStaysOnTheRailLeaf) {
  const Topology t = Build(Preset("dgx-h100", 4));
  const std::vector<LinkId> route = t.Route(3, 11);
  EXPECT_EQ(Names(t, route),
            (std::vector<std::string>{"node0/dev3->node0/nic3", "node0/nic3->leaf0.rail3",
                                      "leaf0.rail3->node1/nic3", "node1/nic3->node1/dev3"}));
  // 400 Gb/s ConnectX-7 = 50 GB/s; one leaf hop of 1 us (the preset's).
  EXPECT_EQ(t.PathBottleneck(route), Gbps(400));
  EXPECT_EQ(t.PathBottleneck(route), GBps(50));
  EXPECT_EQ(t.PathLatency(route), Micros(1));
}

TEST(TopologyGraph, DifferentRailsMeetAtTheSpine) {
  const Topology t = Build(Preset("dgx-h100", 4));
  const std::vector<LinkId> route = t.Route(3, 12);  // node0/dev3 -> node1/dev4
  ASSERT_EQ(route.size(), 6u);
  const std::string plane = std::to_string(Topology::EcmpHash(3, 12, 1) % 8);
  EXPECT_EQ(Names(t, route),
            (std::vector<std::string>{"node0/dev3->node0/nic3", "node0/nic3->leaf0.rail3",
                                      "leaf0.rail3->spine0.plane" + plane,
                                      "spine0.plane" + plane + "->leaf0.rail4",
                                      "leaf0.rail4->node1/nic4", "node1/nic4->node1/dev4"}));
  // leaf, spine, leaf: 3 us.
  EXPECT_EQ(t.PathLatency(route), Micros(3));
}

TEST(TopologyGraph, AcrossLeafGroupsTheRouteGoesThroughTheSpine) {
  ClusterSpec spec = Preset("dgx-h100", 4);
  spec.network.tiers[0].nodes_per_switch = 2;  // nodes {0,1} and {2,3}
  const Topology t = Build(spec);
  EXPECT_EQ(t.CountNetworkSwitches(0), 16);
  // A full leaf has 2 uplink ports: 2 planes.
  EXPECT_EQ(t.planes(), 2);
  EXPECT_EQ(t.CountNetworkSwitches(1), 2);
  const std::vector<LinkId> route = t.Route(3, 19);  // node0/dev3 -> node2/dev3
  const std::string plane = std::to_string(Topology::EcmpHash(3, 19, 1) % 2);
  EXPECT_EQ(Names(t, route),
            (std::vector<std::string>{"node0/dev3->node0/nic3", "node0/nic3->leaf0.rail3",
                                      "leaf0.rail3->spine0.plane" + plane,
                                      "spine0.plane" + plane + "->leaf1.rail3",
                                      "leaf1.rail3->node2/nic3", "node2/nic3->node2/dev3"}));
  // Leaf of 2 x 50 GB/s down, non-blocking: 100 GB/s up over 2 planes.
  EXPECT_EQ(t.link(route[2]).bandwidth, GBps(50));
  EXPECT_EQ(t.PathBottleneck(route), GBps(50));
  EXPECT_EQ(t.PathLatency(route), Micros(3));
}

TEST(TopologyGraph, OversubscriptionTwoHalvesUplinkCapacity) {
  ClusterSpec spec = Preset("dgx-h100", 4);
  const Topology full = Build(spec);
  spec.network.tiers[0].oversubscription = 2.0;
  const Topology half = Build(spec);
  const std::vector<LinkId> up_full = LinksFrom(full, "leaf0.rail0", LinkKind::kTier);
  const std::vector<LinkId> up_half = LinksFrom(half, "leaf0.rail0", LinkKind::kTier);
  ASSERT_EQ(up_full.size(), 8u);
  ASSERT_EQ(up_half.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    // A full leaf: 32 nodes x 50 GB/s down; up = 1600 / oversubscription,
    // over 8 planes.
    EXPECT_EQ(full.link(up_full[i]).bandwidth, GBps(200));
    EXPECT_EQ(half.link(up_half[i]).bandwidth, GBps(100));
  }
  // The way down is as wide as the way up.
  const LinkId down = *half.FindLink(half.link(up_half[0]).to, half.link(up_half[0]).from);
  EXPECT_EQ(half.link(down).bandwidth, GBps(100));
  // Below the leaf nothing changes.
  EXPECT_EQ(half.PathBottleneck(half.Route(3, 11)), GBps(50));
}

TEST(TopologyGraph, EcmpIsDeterministicAndSpreadsPairsOverSpinePlanes) {
  const Topology t = Build(Preset("dgx-h100", 4));
  const Topology again = Build(Preset("dgx-h100", 4));
  std::set<std::string> spines;
  for (int i = 0; i < 8; ++i) {
    for (int j = 8; j < 16; ++j) {
      if (i == j - 8) continue;  // same rail: no spine
      const std::vector<LinkId> route = t.Route(i, j);
      EXPECT_EQ(route, t.Route(i, j));
      EXPECT_EQ(route, again.Route(i, j));
      ASSERT_EQ(route.size(), 6u);
      const Vertex& spine = t.vertex(t.link(route[2]).to);
      EXPECT_EQ(spine.tier, 1);
      EXPECT_EQ(spine.lane, static_cast<int>(Topology::EcmpHash(i, j, 1) % 8));
      spines.insert(spine.name);
    }
  }
  // 56 pairs over 8 planes.
  EXPECT_GE(spines.size(), 6u);
}

TEST(TopologyGraph, AnNvLinkMeshSplitsDeviceBandwidthOverPeers) {
  ClusterSpec spec = Preset("dgx-h100", 1);
  spec.node_types[0].devices_per_node = 4;
  spec.node_types[0].nics.resize(4);
  spec.node_types[0].fabric.kind = FabricKind::kNvLinkMesh;
  spec.node_types[0].fabric.bandwidth_per_device = GBps(300);
  const Topology t = Build(spec);
  EXPECT_EQ(t.CountVertices(VertexKind::kNvSwitch), 0);
  EXPECT_EQ(t.CountLinks(LinkKind::kFabric), 4 * 3);
  const std::vector<LinkId> route = t.Route(0, 2);
  EXPECT_EQ(Names(t, route), (std::vector<std::string>{"node0/dev0->node0/dev2"}));
  EXPECT_EQ(t.PathBottleneck(route), GBps(100));
}

TEST(TopologyGraph, PcieNodesShareANicBetweenTwoDevices) {
  const Topology t = Build(Preset("pcie-l40s-8", 2));
  EXPECT_EQ(t.CountVertices(VertexKind::kPcieHostBridge), 2);
  EXPECT_EQ(t.CountVertices(VertexKind::kNic), 8);
  EXPECT_EQ(Names(t, t.Route(0, 1)), (std::vector<std::string>{"node0/dev0->node0/pcie",
                                                               "node0/pcie->node0/dev1"}));
  // Devices 0 and 1 of each node share NIC 0.
  EXPECT_EQ(Names(t, t.Route(1, 8)),
            (std::vector<std::string>{"node0/dev1->node0/nic0", "node0/nic0->leaf0.rail0",
                                      "leaf0.rail0->node1/nic0", "node1/nic0->node1/dev0"}));
}

TEST(TopologyGraph, ACpuNodeHasAMemoryBusAndNoNetwork) {
  ClusterSpec spec = Preset("dgx-h100", 1);
  spec.node_types[0].fabric.kind = FabricKind::kSharedMemory;
  spec.node_types[0].nics.clear();
  spec.network.tiers.clear();
  const Topology t = Build(spec);
  EXPECT_EQ(t.CountVertices(VertexKind::kMemoryBus), 1);
  EXPECT_EQ(t.CountVertices(VertexKind::kNetworkSwitch), 0);
  EXPECT_EQ(t.planes(), 0);
  EXPECT_EQ(t.Route(2, 7).size(), 2u);
}

TEST(TopologyGraph, RejectsAnInvalidSpecAndARailOptimizedSingleTier) {
  ClusterSpec spec = Preset("dgx-h100", 2);
  spec.node_types[0].nics[0].devices = {9};
  const Result<Topology> bad = Topology::Build(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().ToString().find("nics[0]"), std::string::npos) << bad.status().ToString();

  ClusterSpec one_tier = Preset("dgx-h100", 2);
  one_tier.network.tiers.resize(1);
  one_tier.network.tiers[0].nodes_per_switch.reset();
  const Result<Topology> rails = Topology::Build(one_tier);
  ASSERT_FALSE(rails.ok());
  EXPECT_NE(rails.status().ToString().find("rail-optimized"), std::string::npos);
  one_tier.network.rail_optimized = false;
  const Result<Topology> flat = Topology::Build(one_tier);
  ASSERT_TRUE(flat.ok()) << flat.status().ToString();
  EXPECT_EQ(flat->CountNetworkSwitches(0), 1);
  EXPECT_EQ(Names(*flat, flat->Route(3, 12)),
            (std::vector<std::string>{"node0/dev3->node0/nic3", "node0/nic3->leaf0",
                                      "leaf0->node1/nic4", "node1/nic4->node1/dev4"}));
}

TEST(TopologyGraph, ThreeTiersClimbOnlyAsHighAsNeeded) {
  ClusterSpec spec = Preset("dgx-h100", 8);
  NetworkTier core = spec.network.tiers[1];
  core.name = "core";
  spec.network.tiers[0].nodes_per_switch = 2;
  spec.network.tiers[1].nodes_per_switch = 4;
  spec.network.tiers.push_back(core);
  const Topology t = Build(spec);
  EXPECT_EQ(t.CountNetworkSwitches(0), 4 * 8);
  EXPECT_EQ(t.CountNetworkSwitches(1), 2 * t.planes());
  EXPECT_EQ(t.CountNetworkSwitches(2), t.planes());
  // node0 -> node2: same spine group, no core.
  EXPECT_EQ(t.Route(0, 16).size(), 6u);
  // node0 -> node4: leaf, spine, core, spine, leaf.
  const std::vector<LinkId> route = t.Route(0, 32);
  ASSERT_EQ(route.size(), 8u);
  EXPECT_EQ(t.vertex(t.link(route[3]).to).tier, 2);
  EXPECT_EQ(t.PathLatency(route), Micros(5));
}

}  // namespace
}  // namespace orrery::topology
