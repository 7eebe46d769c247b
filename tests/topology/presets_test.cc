// Device and cluster presets: each loads, validates and carries its
// datasheet figures (../shared/REFERENCES.md §1).
#include "topology/presets.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "core/file.h"
#include "topology/cluster_spec_json.h"

namespace orrery::topology {
namespace {

double Tflops(const DeviceType& d, Precision p) { return d.Peak(p).value().ToTFlops(); }

TEST(ClusterPresets, EveryPresetLoadsValidatesAndIsOneNode) {
  ASSERT_EQ(ClusterPresetNames(),
            (std::vector<std::string>{"dgx-a100-40gb", "dgx-a100-80gb", "dgx-h100", "dgx-h200",
                                      "dgx-b200", "gb200-nvl72", "pcie-l40s-8", "cpu-local"}));
  for (const std::string& name : ClusterPresetNames()) {
    Result<ClusterSpec> spec = ClusterPreset(name);
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status().ToString();
    EXPECT_EQ(spec->name, name);
    EXPECT_EQ(spec->TotalNodes(), 1) << name;
    EXPECT_TRUE(ValidateClusterSpec(*spec).ok()) << name << ": " << ValidateClusterSpec(*spec).ToString();
    EXPECT_FALSE(spec->PrimaryNodeType().device.source.empty()) << name;
    EXPECT_FALSE(spec->description.empty()) << name;
  }
}

TEST(ClusterPresets, EveryGpuPresetScalesTo64NodesOnItsFatTree) {
  for (const std::string& name : ClusterPresetNames()) {
    if (name == "cpu-local") continue;
    Result<ClusterSpec> spec = ResolveCluster(name, 64);
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status().ToString();
    EXPECT_EQ(spec->TotalNodes(), 64);
    const Network& net = spec->network;
    EXPECT_TRUE(net.rail_optimized) << name;
    ASSERT_EQ(net.tiers.size(), 2u) << name;
    EXPECT_EQ(net.tiers[0].nodes_per_switch, 32);
    EXPECT_DOUBLE_EQ(net.tiers[0].oversubscription, 1.0);
    EXPECT_FALSE(net.tiers[1].nodes_per_switch.has_value());
  }
}

TEST(DevicePresets, EveryDevicePresetHasPositiveFiguresAndACitation) {
  for (const std::string& name : DevicePresetNames()) {
    DeviceType d = DevicePreset(name).value();
    EXPECT_EQ(d.name, name);
    EXPECT_FALSE(d.model.empty()) << name;
    EXPECT_FALSE(d.source.empty()) << name;
    EXPECT_EQ(d.pci_device_ids.size(), 1u) << name;
    EXPECT_GT(d.memory, Bytes::Zero()) << name;
    EXPECT_GT(d.memory_bandwidth, Bandwidth::Zero()) << name;
    // Dense bf16 and fp16 rates are equal on every one of these parts.
    EXPECT_EQ(d.Peak(Precision::kBf16), d.Peak(Precision::kFp16)) << name;
  }
}

TEST(ClusterPresets, DgxH100MatchesItsDatasheet) {
  ClusterSpec spec = ClusterPreset("dgx-h100").value();
  const NodeType& t = spec.PrimaryNodeType();
  EXPECT_EQ(t.devices_per_node, 8);
  EXPECT_EQ(t.device.name, "h100-sxm5-80gb");
  EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kBf16), 989.5);
  EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kFp16), 989.5);
  EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kTf32), 494.7);
  EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kFp32), 67);
  EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kFp8), 1979);
  EXPECT_EQ(t.device.memory, GiB(80));
  EXPECT_DOUBLE_EQ(t.device.memory_bandwidth.ToGBps(), 3350);  // 3.35 TB/s
  EXPECT_EQ(t.device.pci_device_ids, std::vector<std::string>{"0x2330"});
  EXPECT_EQ(t.fabric.kind, FabricKind::kNvSwitch);
  EXPECT_DOUBLE_EQ(t.fabric.bandwidth_per_device.ToGBps(), 450);  // 18 links x 25 GB/s
  ASSERT_EQ(t.nics.size(), 8u);
  for (int k = 0; k < 8; ++k) {
    EXPECT_DOUBLE_EQ(t.nics[k].bandwidth.ToGbps(), 400);
    EXPECT_EQ(t.nics[k].devices, std::vector<int>{k});
  }
  EXPECT_DOUBLE_EQ(t.NicBandwidthPerDevice(5).ToGBps(), 50);  // 400 Gb/s
}

TEST(ClusterPresets, DgxA100MatchesItsDatasheet) {
  for (const auto& [name, gib, gbps] : {std::tuple{"dgx-a100-40gb", 40, 1555.0},
                                        std::tuple{"dgx-a100-80gb", 80, 2039.0}}) {
    const NodeType t = ClusterPreset(name)->PrimaryNodeType();
    EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kBf16), 312) << name;
    EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kTf32), 156) << name;
    EXPECT_DOUBLE_EQ(Tflops(t.device, Precision::kFp32), 19.5) << name;
    EXPECT_FALSE(t.device.Peak(Precision::kFp8).has_value()) << name;
    EXPECT_EQ(t.device.memory, GiB(gib)) << name;
    EXPECT_DOUBLE_EQ(t.device.memory_bandwidth.ToGBps(), gbps) << name;
    EXPECT_DOUBLE_EQ(t.fabric.bandwidth_per_device.ToGBps(), 300) << name;
    ASSERT_EQ(t.nics.size(), 8u) << name;
    EXPECT_DOUBLE_EQ(t.nics[0].bandwidth.ToGbps(), 200) << name;  // HDR
  }
}

TEST(ClusterPresets, H200B200Gb200AndL40sMatchTheirDatasheets) {
  const NodeType h200 = ClusterPreset("dgx-h200")->PrimaryNodeType();
  EXPECT_DOUBLE_EQ(Tflops(h200.device, Precision::kBf16), 989.5);
  EXPECT_EQ(h200.device.memory, GiB(141));
  EXPECT_DOUBLE_EQ(h200.device.memory_bandwidth.ToGBps(), 4800);

  const NodeType b200 = ClusterPreset("dgx-b200")->PrimaryNodeType();
  EXPECT_DOUBLE_EQ(Tflops(b200.device, Precision::kBf16), 2250);
  EXPECT_DOUBLE_EQ(Tflops(b200.device, Precision::kFp8), 4500);
  EXPECT_EQ(b200.device.memory, GiB(180));
  EXPECT_DOUBLE_EQ(b200.device.memory_bandwidth.ToGBps(), 7700);
  EXPECT_DOUBLE_EQ(b200.fabric.bandwidth_per_device.ToGBps(), 900);  // 1.8 TB/s total
  EXPECT_EQ(b200.nics.size(), 8u);

  const NodeType gb200 = ClusterPreset("gb200-nvl72")->PrimaryNodeType();
  EXPECT_EQ(gb200.devices_per_node, 72);
  EXPECT_DOUBLE_EQ(Tflops(gb200.device, Precision::kBf16), 2500);
  EXPECT_EQ(gb200.device.memory, GiB(186));
  EXPECT_DOUBLE_EQ(gb200.device.memory_bandwidth.ToGBps(), 8000);
  EXPECT_DOUBLE_EQ(gb200.fabric.bandwidth_per_device.ToGBps(), 900);
  EXPECT_EQ(gb200.nics.size(), 72u);

  const NodeType l40s = ClusterPreset("pcie-l40s-8")->PrimaryNodeType();
  EXPECT_EQ(l40s.fabric.kind, FabricKind::kPcie);
  EXPECT_FALSE(l40s.fabric.IsNvLink());
  EXPECT_DOUBLE_EQ(Tflops(l40s.device, Precision::kBf16), 362);
  EXPECT_DOUBLE_EQ(Tflops(l40s.device, Precision::kFp32), 91.6);
  EXPECT_EQ(l40s.device.memory, GiB(48));
  EXPECT_DOUBLE_EQ(l40s.device.memory_bandwidth.ToGBps(), 864);
  EXPECT_DOUBLE_EQ(l40s.fabric.bandwidth_per_device.ToGBps(), 32);  // Gen4 x16, per direction
  ASSERT_EQ(l40s.nics.size(), 4u);
  EXPECT_DOUBLE_EQ(l40s.NicBandwidthPerDevice(7).ToGbps(), 200);  // a 400G NIC per 2 GPUs
}

TEST(ClusterPresets, CpuLocalIsThisMachineOneDevicePerCore) {
  ClusterSpec spec = ClusterPreset("cpu-local").value();
  const NodeType& t = spec.PrimaryNodeType();
  EXPECT_GE(t.devices_per_node, 1);
  EXPECT_EQ(t.fabric.kind, FabricKind::kSharedMemory);
  EXPECT_TRUE(t.nics.empty());
  EXPECT_TRUE(spec.network.tiers.empty());
  // The peak is clock x {8, 32, 64} FLOPs per cycle: between 8 x 100 MHz and
  // 64 x 10 GHz per core.
  const double gflops = t.device.Peak(Precision::kFp32).value().ToGFlops();
  EXPECT_GE(gflops, 0.8);
  EXPECT_LE(gflops, 640);
  EXPECT_FALSE(t.device.Peak(Precision::kBf16).has_value());
  // Memory per core times cores is the node's memory: at least 64 MiB.
  EXPECT_GE(t.device.memory * t.devices_per_node, MiB(64));
  EXPECT_NE(t.device.source.find("nominal"), std::string::npos);
}

TEST(ClusterPresets, CpuLocalCannotScaleToNodesWithoutNics) {
  Result<ClusterSpec> spec = ResolveCluster("cpu-local", 2);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(),
            "cpu-local scaled to 2 nodes: nodes[0].nics: a cluster of more than one node needs "
            "NICs on every node type");
}

TEST(ClusterPresets, UnknownPresetIsNotFoundNamingTheKnownOnes) {
  Result<ClusterSpec> spec = ClusterPreset("dgx-h1000");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(spec.status().message(),
            "unknown cluster preset 'dgx-h1000' (known presets: dgx-a100-40gb, dgx-a100-80gb, "
            "dgx-h100, dgx-h200, dgx-b200, gb200-nvl72, pcie-l40s-8, cpu-local)");
  Result<DeviceType> device = DevicePreset("h1000");
  EXPECT_EQ(device.status().code(), StatusCode::kNotFound);
  EXPECT_NE(device.status().message().find("h100-sxm5-80gb"), std::string::npos);
}

TEST(ResolveCluster, TakesAPresetNameWithNodes) {
  ClusterSpec spec = ResolveCluster("dgx-h100", 16).value();
  EXPECT_EQ(spec.TotalDevices(), 128);
  EXPECT_EQ(ResolveCluster("dgx-h100").value(), ClusterPreset("dgx-h100").value());
}

TEST(ResolveCluster, TakesAJsonPath) {
  const std::string path = ::testing::TempDir() + "/orrery_resolve_cluster.json";
  ClusterSpec pod = ClusterPreset("dgx-b200")->WithNodes(4).value();
  ASSERT_TRUE(WriteFileAtomically(path, DumpJson(ClusterSpecToJson(pod))).ok());
  EXPECT_EQ(ResolveCluster(path).value(), pod);
  EXPECT_EQ(ResolveCluster(path, 8)->TotalDevices(), 64);
  std::remove(path.c_str());
}

TEST(ResolveCluster, UnknownNameSaysPresetOrPath) {
  Result<ClusterSpec> spec = ResolveCluster("dgx-h1000");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), StatusCode::kNotFound);
  EXPECT_NE(spec.status().message().find("known presets: dgx-a100-40gb"), std::string::npos);
  EXPECT_NE(spec.status().message().find("or give the path of a cluster JSON file"),
            std::string::npos);
}

TEST(ResolveCluster, MissingFileIsAnError) {
  Result<ClusterSpec> spec = ResolveCluster("/nonexistent/cluster.json");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("/nonexistent/cluster.json"), std::string::npos);
}

}  // namespace
}  // namespace orrery::topology
