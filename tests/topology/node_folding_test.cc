// Folding the nodes of a cluster, each discovered alone, into one spec: on
// nodes built here and on the shared fixtures.
#include "topology/node_folding.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "topology/discovery.h"
#include "topology/presets.h"

namespace orrery::topology {
namespace {

const std::string kFixtures = ORRERY_FIXTURES_DIR;
const std::string kDgx2 = kFixtures + "/hwloc/hwloc_nvidia_dgx2h_16xV100_nvswitch.xml";
const std::string kPower8 = kFixtures + "/hwloc/hwloc_power8_4xP100_nvlink.xml";
const std::string kDgxA100 = kFixtures + "/nvidia_smi_topo/topo_dgx_a100_8gpu_12xmlx5.txt";

// An H100 node of `gpus` GPUs on NVSwitch with one 400 Gb/s NIC per GPU.
DiscoveredNode H100Node(const std::string& name, int gpus = 8) {
  DiscoveredNode n;
  n.name = name;
  n.source = "this machine";
  n.type.name = "node";
  n.type.devices_per_node = gpus;
  n.type.device = DevicePreset("h100-sxm5-80gb").value();
  n.type.fabric = {FabricKind::kNvSwitch, GBps(450), Micros(0.5)};
  for (int g = 0; g < gpus; ++g) {
    n.type.nics.push_back({Gbps(400), {g}});
    n.nic_names.push_back("mlx5_" + std::to_string(g));
  }
  n.gpus = gpus;
  n.gpu_model = n.type.device.model;
  n.nvlink_per_gpu = GBps(450);
  n.nic_bandwidth = Gbps(400);
  return n;
}

DiscoveredNode FromFile(const std::string& name, const std::string& hwloc,
                        const std::string& smi = "", const DescribeOptions& options = {}) {
  DiscoveryInputs in;
  if (!hwloc.empty()) in.hwloc_xml = hwloc;
  if (!smi.empty()) in.nvidia_smi_topo = smi;
  NodeInventory inv = DiscoverNode(in).value();
  return ToDiscoveredNode(DescribeNode(std::move(inv), PresetCatalogue(), options).value(), name);
}

Network FatTree() { return PresetCatalogue().network.value(); }

TEST(FoldNodes, FourIdenticalNodesAreOneNodeTypeOfCountFour) {
  const FoldedCluster f = FoldNodes(
      {H100Node("gpu01"), H100Node("gpu02"), H100Node("gpu03"), H100Node("gpu04")}, FatTree());
  ASSERT_EQ(f.spec.node_types.size(), 1u);
  EXPECT_EQ(f.spec.node_types[0].count, 4);
  EXPECT_EQ(f.spec.TotalDevices(), 32);
  EXPECT_EQ(f.members[0].size(), 4u);
  EXPECT_TRUE(f.differences.empty());
  EXPECT_TRUE(f.warnings.empty());
  EXPECT_TRUE(ValidateClusterSpec(f.spec).ok()) << ValidateClusterSpec(f.spec).ToString();
}

TEST(FoldNodes, ANodeWithSevenGpusIsItsOwnTypeAndTheDifferenceIsSaid) {
  std::vector<DiscoveredNode> nodes;
  for (int i = 1; i <= 8; ++i) {
    nodes.push_back(H100Node("gpu0" + std::to_string(i), i == 7 ? 7 : 8));
  }
  const FoldedCluster f = FoldNodes(nodes, FatTree());
  ASSERT_EQ(f.spec.node_types.size(), 2u);
  EXPECT_EQ(f.spec.node_types[0].name, "node");
  EXPECT_EQ(f.spec.node_types[0].count, 7);
  EXPECT_EQ(f.spec.node_types[1].name, "node-2");
  EXPECT_EQ(f.spec.node_types[1].count, 1);
  EXPECT_EQ(f.spec.node_types[1].devices_per_node, 7);
  EXPECT_EQ(f.spec.TotalDevices(), 7 * 8 + 7);
  ASSERT_EQ(f.differences.size(), 1u);
  EXPECT_EQ(f.differences[0], "node gpu07: 7 GPUs where the others have 8; 7 NICs where the "
                              "others have 8");
}

TEST(FoldNodes, ASlowerNicIsNamedWithBothRates) {
  std::vector<DiscoveredNode> nodes = {H100Node("gpu01"), H100Node("gpu02"), H100Node("gpu03"),
                                       H100Node("gpu04")};
  nodes[2].type.nics[2].bandwidth = Gbps(200);
  nodes[2].nic_bandwidth.reset();
  const FoldedCluster f = FoldNodes(nodes, FatTree());
  ASSERT_EQ(f.spec.node_types.size(), 2u);
  EXPECT_EQ(f.spec.node_types[0].count, 3);
  ASSERT_EQ(f.differences.size(), 1u);
  EXPECT_EQ(f.differences[0], "node gpu03: NIC mlx5_2 at 200 Gb/s where the others have 400 Gb/s");
}

TEST(FoldNodes, AgainstASingleReferenceNodeTheDifferenceNamesIt) {
  DiscoveredNode pcie = H100Node("box2");
  pcie.type.fabric = {FabricKind::kPcie, GBps(64), Micros(1)};
  const FoldedCluster f = FoldNodes({H100Node("box1"), pcie}, FatTree());
  ASSERT_EQ(f.differences.size(), 1u);
  EXPECT_EQ(f.differences[0],
            "node box2: fabric pcie where node box1 has nvswitch; pcie at 64 GB/s per GPU where "
            "node box1 has 450 GB/s per GPU");
}

TEST(FoldNodes, ALatencyIsADifferenceOnlyBetweenFabricsOfOneKind) {
  DiscoveredNode slow = H100Node("box2");
  slow.type.fabric.latency = Micros(1);
  const FoldedCluster f = FoldNodes({H100Node("box1"), slow}, FatTree());
  ASSERT_EQ(f.differences.size(), 1u);
  EXPECT_EQ(f.differences[0], "node box2: fabric latency 1 us where node box1 has 0.5 us");
}

TEST(FoldNodes, NamesOfNodesAndNicsDoNotMakeNodesDiffer) {
  DiscoveredNode other = H100Node("gpu02");
  other.type.name = "NVIDIA DGX H100";
  other.nic_names = {"ib0", "ib1", "ib2", "ib3", "ib4", "ib5", "ib6", "ib7"};
  const FoldedCluster f = FoldNodes({H100Node("gpu01"), other}, FatTree());
  ASSERT_EQ(f.spec.node_types.size(), 1u);
  EXPECT_EQ(f.spec.node_types[0].count, 2);
}

TEST(FoldNodes, AHostReportedByTwoRanksIsCountedOnceWithAWarning) {
  const FoldedCluster f =
      FoldNodes({H100Node("gpu01"), H100Node("gpu02"), H100Node("gpu01")}, FatTree());
  ASSERT_EQ(f.spec.node_types.size(), 1u);
  EXPECT_EQ(f.spec.node_types[0].count, 2);
  ASSERT_EQ(f.warnings.size(), 1u);
  EXPECT_EQ(f.warnings[0], "gpu01 was reported by rank 0 and again by rank 2: counted once "
                           "(one rank per node is assumed)");
}

TEST(FoldNodes, ThreeTypesAreComparedWithTheMostCommon) {
  DiscoveredNode a100 = H100Node("a");
  a100.type.device = DevicePreset("a100-sxm4-80gb").value();
  const FoldedCluster f =
      FoldNodes({H100Node("h1", 4), a100, H100Node("h2"), H100Node("h3")}, FatTree());
  ASSERT_EQ(f.spec.node_types.size(), 3u);
  EXPECT_EQ(f.spec.node_types[2].count, 2);  // h2, h3: the reference
  ASSERT_EQ(f.differences.size(), 2u);
  EXPECT_EQ(f.differences[0], "node h1: 4 GPUs where the 2 nodes of node type node-3 have 8; 4 "
                              "NICs where the 2 nodes of node type node-3 have 8");
  EXPECT_EQ(f.differences[1], "node a: GPU a100-sxm4-80gb where the 2 nodes of node type node-3 "
                              "have h100-sxm5-80gb");
}

TEST(FoldNodes, TheDgx2AndPower8ExportsAreTwoTypesWithTheirDifferences) {
  const FoldedCluster f =
      FoldNodes({FromFile("rank 0", kDgx2), FromFile("rank 1", kPower8)}, FatTree());
  ASSERT_EQ(f.spec.node_types.size(), 2u);
  EXPECT_EQ(f.spec.node_types[0].name, "NVIDIA DGX-2H");
  EXPECT_EQ(f.spec.node_types[1].name, "node");
  EXPECT_EQ(f.spec.TotalDevices(), 20);
  ASSERT_EQ(f.differences.size(), 1u);
  EXPECT_EQ(f.differences[0],
            "node rank 1: 4 GPUs where node rank 0 has 16; GPU Tesla P100-SXM2-16GB (PCI "
            "10de:15f9) where node rank 0 has Tesla V100-SXM3-32GB-H (PCI 10de:1db8); fabric "
            "nvlink-mesh where node rank 0 has nvswitch; nvlink-mesh at 40 GB/s per GPU where "
            "node rank 0 has 150 GB/s per GPU");
}

TEST(DiscoveredNode, JsonRoundTripsAKnownAndAnUnknownNodeExactly) {
  DescribeOptions a100;
  a100.device = "a100-sxm4-40gb";
  a100.nic_rate = Gbps(200);
  for (const DiscoveredNode& n :
       {FromFile("rank 0", "", kDgxA100, a100), FromFile("rank 1", kDgx2), H100Node("gpu01")}) {
    const std::string text = DumpJson(DiscoveredNodeToJson(n));
    Result<DiscoveredNode> back = ParseDiscoveredNode(ParseJson(text, "wire").value(), "rank 9");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, n) << text;
  }
}

TEST(DiscoveredNode, TheA100MatrixWithItsDeviceIsCompleteAndNamesItsRails) {
  DescribeOptions a100;
  a100.device = "a100-sxm4-40gb";
  a100.nic_rate = Gbps(200);
  const DiscoveredNode n = FromFile("rank 0", "", kDgxA100, a100);
  EXPECT_TRUE(n.incomplete.empty()) << n.incomplete;
  EXPECT_EQ(n.nic_names, (std::vector<std::string>{"mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3",
                                                   "mlx5_6", "mlx5_7", "mlx5_8", "mlx5_9"}));
  EXPECT_EQ(n.gpus, 8);
  const DiscoveredNode v100 = FromFile("rank 1", kDgx2);
  EXPECT_NE(v100.incomplete.find("Tesla V100-SXM3-32GB-H (PCI 10de:1db8) is not a device"),
            std::string::npos)
      << v100.incomplete;
}

TEST(DiscoveredNode, AMalformedMessageNamesItsSourceAndField) {
  Json j = DiscoveredNodeToJson(H100Node("gpu01"));
  j["gpus"] = "eight";
  Result<DiscoveredNode> back = ParseDiscoveredNode(j, "rank 3");
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("rank 3: field 'gpus'"), std::string::npos)
      << back.status().ToString();
}

}  // namespace
}  // namespace orrery::topology
