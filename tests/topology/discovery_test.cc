// Discovery on the shared fixtures (real hwloc exports and `nvidia-smi topo
// -m` matrices), on a fake /sys/class/infiniband, and on this machine.
#include "topology/discovery.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "core/file.h"
#include "topology/cluster_spec_json.h"
#include "topology/hwloc_reader.h"
#include "topology/infiniband_sysfs.h"
#include "topology/nvidia_smi_topo.h"
#include "topology/nvml_reader.h"
#include "topology/presets.h"

namespace orrery::topology {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = ORRERY_FIXTURES_DIR;
const std::string kDgx2 = kFixtures + "/hwloc/hwloc_nvidia_dgx2h_16xV100_nvswitch.xml";
const std::string kPower8 = kFixtures + "/hwloc/hwloc_power8_4xP100_nvlink.xml";
const std::string kDgxA100 = kFixtures + "/nvidia_smi_topo/topo_dgx_a100_8gpu_12xmlx5.txt";
const std::string kH100 = kFixtures + "/nvidia_smi_topo/topo_h100_8gpu_nv18_no-nics_stas00.txt";
const std::string kRtx4090 =
    kFixtures + "/nvidia_smi_topo/topo_8xRTX4090_pcie-only_1nic_nccl-tests-issue307.txt";

// A catalogue with devices shaped like the presets, so that these tests do
// not depend on the presets' figures (discovery_presets_test.cc uses them).
DeviceCatalogue TestCatalogue() {
  DeviceCatalogue c;
  DeviceType a100;
  a100.name = "a100-sxm4-80gb";
  a100.model = "NVIDIA A100-SXM4-80GB";
  a100.pci_device_ids = {"0x20B2"};
  DeviceType h100;
  h100.name = "h100-sxm5-80gb";
  h100.model = "NVIDIA H100 80GB HBM3";
  h100.pci_device_ids = {"0x2330"};
  c.devices = {a100, h100};
  return c;
}

NodeInventory Discover(const std::optional<std::string>& hwloc,
                       const std::optional<std::string>& smi) {
  DiscoveryInputs in;
  in.hwloc_xml = hwloc;
  in.nvidia_smi_topo = smi;
  Result<NodeInventory> node = DiscoverNode(in);
  EXPECT_TRUE(node.ok()) << node.status().ToString();
  return std::move(node).value();
}

std::string TempDir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("orrery_discovery_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// --- hwloc exports ---------------------------------------------------------

TEST(HwlocDgx2, Has16V100sAnd12NvSwitches) {
  NodeInventory node = ReadHwlocXml(kDgx2).value();
  EXPECT_EQ(node.machine_model, "NVIDIA DGX-2H");
  ASSERT_EQ(node.gpus.size(), 16u);
  for (const FoundGpu& gpu : node.gpus) {
    EXPECT_EQ(gpu.model, "Tesla V100-SXM3-32GB-H");
    EXPECT_EQ(gpu.pci_vendor_id, 0x10de);
    EXPECT_EQ(gpu.pci_device_id, 0x1db8);
  }
  EXPECT_EQ(node.gpus[0].pci_busid, "0000:34:00.0");
  EXPECT_EQ(node.gpus[0].label, "nvml0");
  EXPECT_EQ(node.nvswitches, 12);
  EXPECT_EQ(node.cpu.packages, 2);
  EXPECT_EQ(node.cpu.numa_nodes, 2);
}

TEST(HwlocDgx2, EachV100ReachesTheSwitchesAtSixLinksOf25GBps) {
  NodeInventory node = ReadHwlocXml(kDgx2).value();
  ASSERT_EQ(node.nvlink.to_switches.size(), 16u);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_DOUBLE_EQ(node.nvlink.to_switches[i].ToGBps(), 6 * 25.0) << "GPU " << i;
    for (size_t j = 0; j < 16; ++j) EXPECT_EQ(node.nvlink.bandwidth[i][j], Bandwidth::Zero());
  }
}

TEST(HwlocDgx2, IsAnNvSwitchNodeOfAnUnknownDevice) {
  NodeDescription d = DescribeNode(ReadHwlocXml(kDgx2).value(), TestCatalogue()).value();
  EXPECT_FALSE(d.device_known);
  EXPECT_EQ(d.unknown_device, "Tesla V100-SXM3-32GB-H (PCI 10de:1db8)");
  const NodeType& node = d.spec.node_types.at(0);
  EXPECT_EQ(node.devices_per_node, 16);
  EXPECT_EQ(node.device.name, "unknown");
  EXPECT_EQ(node.device.pci_device_ids, std::vector<std::string>{"0x1db8"});
  EXPECT_EQ(node.fabric.kind, FabricKind::kNvSwitch);
  EXPECT_DOUBLE_EQ(node.fabric.bandwidth_per_device.ToGBps(), 150.0);
  EXPECT_DOUBLE_EQ(d.nvlink_per_gpu->ToGBps(), 150.0);
  ASSERT_TRUE(d.nvlink_generation.has_value());
  EXPECT_EQ(d.nvlink_generation->version, 2);
}

TEST(HwlocPower8, HasFourP100sJoinedInPairsBy40GBpsOfNvLink) {
  NodeInventory node = ReadHwlocXml(kPower8).value();
  ASSERT_EQ(node.gpus.size(), 4u);
  for (const FoundGpu& gpu : node.gpus) {
    EXPECT_EQ(gpu.model, "Tesla P100-SXM2-16GB");
    EXPECT_EQ(gpu.pci_device_id, 0x15f9);
  }
  EXPECT_EQ(node.nvswitches, 0);
  EXPECT_EQ(node.cpu.packages, 2);
  EXPECT_EQ(node.cpu.hardware_threads, 16);
  const auto& bw = node.nvlink.bandwidth;
  EXPECT_DOUBLE_EQ(bw[0][1].ToGBps(), 40.0);
  EXPECT_DOUBLE_EQ(bw[1][0].ToGBps(), 40.0);
  EXPECT_DOUBLE_EQ(bw[2][3].ToGBps(), 40.0);
  EXPECT_EQ(bw[0][2], Bandwidth::Zero());
  EXPECT_EQ(bw[1][3], Bandwidth::Zero());
  for (size_t i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(node.nvlink.to_cpu[i].ToGBps(), 40.0);
}

TEST(HwlocPower8, GpusOfOneSocketShareANumaNodeAndOthersCrossTheSystem) {
  NodeInventory node = ReadHwlocXml(kPower8).value();
  EXPECT_EQ(node.gpus[0].numa_node, 0);
  EXPECT_EQ(node.gpus[1].numa_node, 0);
  EXPECT_EQ(node.gpus[2].numa_node, 1);
  EXPECT_EQ(node.gpu_paths[0][1], PathKind::kNode);
  EXPECT_EQ(node.gpu_paths[0][2], PathKind::kSys);
}

TEST(HwlocPower8, IsAnNvLinkMeshAt40GBpsPerGpu) {
  NodeDescription d = DescribeNode(ReadHwlocXml(kPower8).value(), TestCatalogue()).value();
  EXPECT_FALSE(d.device_known);
  EXPECT_EQ(d.unknown_device, "Tesla P100-SXM2-16GB (PCI 10de:15f9)");
  EXPECT_EQ(d.spec.node_types[0].fabric.kind, FabricKind::kNvLinkMesh);
  EXPECT_DOUBLE_EQ(d.spec.node_types[0].fabric.bandwidth_per_device.ToGBps(), 40.0);
}

TEST(HwlocXml, TruncatedExportIsAnErrorNamingTheFile) {
  const std::string dir = TempDir("trunc");
  const std::string text = ReadFile(kPower8).value();
  const std::string path = dir + "/half.xml";
  WriteText(path, text.substr(0, text.size() / 2));
  Result<NodeInventory> node = ReadHwlocXml(path);
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(node.status().message().find(path), std::string::npos);
  EXPECT_NE(node.status().message().find("truncated"), std::string::npos);
  fs::remove_all(dir);
}

TEST(HwlocXml, MalformedXmlIsAnErrorNamingTheFile) {
  const std::string dir = TempDir("malformed");
  const std::string path = dir + "/bad.xml";
  WriteText(path,
            "<?xml version=\"1.0\"?>\n<topology version=\"2.0\">\n<object type=\"Machine\" "
            "<<<\n</topology>\n");
  Result<NodeInventory> node = ReadHwlocXml(path);
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().message().rfind(path + ": hwloc could not", 0), 0u)
      << node.status().message();
  WriteText(path, "GPU0 GPU1\n");
  EXPECT_NE(ReadHwlocXml(path).status().message().find("not an hwloc XML export"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(HwlocXml, MissingFileIsAnIoErrorNamingIt) {
  Status s = ReadHwlocXml("/nonexistent/orrery.xml").status();
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_EQ(s.message().rfind("/nonexistent/orrery.xml: cannot open", 0), 0u) << s.message();
}

// --- nvidia-smi topo -m ------------------------------------------------------

TEST(SmiTopoDgxA100, IsNv12BetweenAllPairs) {
  SmiTopoMatrix m = ParseNvidiaSmiTopo(ReadFile(kDgxA100).value(), kDgxA100).value();
  ASSERT_EQ(m.labels.size(), 20u);
  for (size_t i = 0; i < 8; ++i) {
    for (size_t j = 0; j < 8; ++j) {
      if (i == j) {
        EXPECT_EQ(m.cells[i][j].path, PathKind::kSelf);
      } else {
        EXPECT_EQ(m.cells[i][j].path, PathKind::kNvLink);
        EXPECT_EQ(m.cells[i][j].nvlinks, 12);
      }
    }
  }
  EXPECT_EQ(m.affinity[0].at("CPU Affinity"), "48-63,176-191");
  EXPECT_EQ(m.affinity[0].at("NUMA Affinity"), "3");
}

TEST(SmiTopoDgxA100, Has12Mlx5NicsWithTheirGpuAffinity) {
  NodeInventory node = Discover(std::nullopt, kDgxA100);
  ASSERT_EQ(node.gpus.size(), 8u);
  ASSERT_EQ(node.nics.size(), 12u);
  for (size_t k = 0; k < 12; ++k) EXPECT_EQ(node.nics[k].name, "mlx5_" + std::to_string(k));
  const std::vector<std::vector<int>> expected = {{0, 1}, {0, 1}, {2, 3}, {2, 3}, {}, {},
                                                  {4, 5}, {4, 5}, {6, 7}, {6, 7}, {}, {}};
  for (size_t k = 0; k < 12; ++k) EXPECT_EQ(node.nics[k].nearest_gpus, expected[k]) << k;
  EXPECT_EQ(node.nics[0].nearest_path, PathKind::kPxb);
  const std::vector<int> numa = {3, 3, 1, 1, 7, 7, 5, 5};
  for (size_t g = 0; g < 8; ++g) EXPECT_EQ(node.gpus[g].numa_node, numa[g]);
}

TEST(SmiTopoDgxA100, IsAnNvSwitchNodeOf300GBpsPerA100With8Rails) {
  NodeDescription d = DescribeNode(Discover(std::nullopt, kDgxA100), TestCatalogue(),
                                   {.device = "a100-sxm4-80gb", .nic_rate = std::nullopt})
                          .value();
  const NodeType& node = d.spec.node_types[0];
  EXPECT_EQ(node.device.name, "a100-sxm4-80gb");
  EXPECT_EQ(node.fabric.kind, FabricKind::kNvSwitch);
  EXPECT_DOUBLE_EQ(node.fabric.bandwidth_per_device.ToGBps(), 12 * 25.0);
  EXPECT_EQ(d.rail_nics, 8);
  ASSERT_EQ(node.nics.size(), 8u);
  EXPECT_EQ(node.nics[0].devices, (std::vector<int>{0, 1}));
  EXPECT_FALSE(d.nic_bandwidth.has_value());  // topo -m does not give line rates
}

TEST(SmiTopoDgxA100, WithoutADeviceNameTheGpuIsUnknownAndSoIsTheNvLinkRate) {
  NodeDescription d = DescribeNode(Discover(std::nullopt, kDgxA100), TestCatalogue()).value();
  EXPECT_FALSE(d.device_known);
  EXPECT_EQ(d.spec.node_types[0].fabric.kind, FabricKind::kNvSwitch);
  EXPECT_FALSE(d.nvlink_per_gpu.has_value());
}

TEST(SmiTopoH100, IsNv18AndAn450GBpsNvSwitchNodeWithoutNics) {
  NodeInventory node = Discover(std::nullopt, kH100);
  ASSERT_EQ(node.gpus.size(), 8u);
  EXPECT_TRUE(node.nics.empty());
  for (size_t i = 0; i < 8; ++i) {
    for (size_t j = 0; j < 8; ++j) EXPECT_EQ(node.nvlink.links[i][j], i == j ? 0 : 18);
  }
  EXPECT_EQ(node.gpus[4].cpu_affinity, "52-103,156-207");
  NodeDescription d =
      DescribeNode(node, TestCatalogue(), {.device = "h100-sxm5-80gb", .nic_rate = std::nullopt})
          .value();
  EXPECT_EQ(d.spec.node_types[0].fabric.kind, FabricKind::kNvSwitch);
  EXPECT_DOUBLE_EQ(d.nvlink_per_gpu->ToGBps(), 18 * 25.0);
  EXPECT_EQ(d.rail_nics, 0);
}

TEST(SmiTopoRtx4090, IsPcieOnlyInTwoSwitchGroupsWithOneNic) {
  NodeInventory node = Discover(std::nullopt, kRtx4090);
  ASSERT_EQ(node.gpus.size(), 8u);
  EXPECT_TRUE(node.nvlink.links.empty());
  EXPECT_EQ(PcieSwitchGroups(node), (std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  ASSERT_EQ(node.nics.size(), 1u);
  EXPECT_EQ(node.nics[0].name, "mlx5_bond_0");
  EXPECT_EQ(node.nics[0].nearest_gpus, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(node.nics[0].nearest_path, PathKind::kPix);
  EXPECT_EQ(node.gpus[5].numa_node, 1);
  NodeDescription d = DescribeNode(node, TestCatalogue()).value();
  EXPECT_EQ(d.spec.node_types[0].fabric.kind, FabricKind::kPcie);
  EXPECT_EQ(d.nvlink_per_gpu, Bandwidth::Zero());
  EXPECT_EQ(d.rail_nics, 1);
}

TEST(SmiTopo, TruncatedMatrixIsAnErrorNamingTheFile) {
  const std::string text = ReadFile(kDgxA100).value();
  // Cut after the row of GPU3.
  const size_t cut = text.find("GPU4\tNV12");
  ASSERT_NE(cut, std::string::npos);
  Result<SmiTopoMatrix> m = ParseNvidiaSmiTopo(text.substr(0, cut), "cut.txt");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "cut.txt: the matrix has 4 rows but its header names column 'GPU4' with no row "
            "for it (a truncated copy?)");
}

TEST(SmiTopo, UnknownCellIsAnErrorNamingTheLineAndCell) {
  Result<SmiTopoMatrix> m =
      ParseNvidiaSmiTopo("\tGPU0\tGPU1\nGPU0\t X \tNVX\nGPU1\tNVX\t X \n", "bad.txt");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "bad.txt: line 2: cell GPU0/GPU1 is 'NVX', expected one of X, NV#, PIX, PXB, PHB, "
            "NODE, SYS");
}

TEST(SmiTopo, TextWithoutAMatrixIsAnError) {
  EXPECT_NE(ParseNvidiaSmiTopo("hello\n", "x.txt")
                .status()
                .message()
                .find("no `nvidia-smi "
                      "topo -m` header"),
            std::string::npos);
}

TEST(Discovery, HwlocExportAndTopoMatrixOfDifferentMachinesDoNotMix) {
  DiscoveryInputs in;
  in.hwloc_xml = kPower8;
  in.nvidia_smi_topo = kH100;
  Result<NodeInventory> node = DiscoverNode(in);
  ASSERT_FALSE(node.ok());
  EXPECT_NE(node.status().message().find("lists 8 GPUs but"), std::string::npos);
}

// --- NVLink generations -----------------------------------------------------

TEST(NvLinkGeneration, PerGpuBandwidthIsLinksTimesPerLinkRate) {
  auto a100 = NvLinkGenerationOf("NVIDIA A100-SXM4-40GB").value();
  EXPECT_DOUBLE_EQ((a100.per_link * a100.links_per_gpu).ToGBps(), 300.0);
  auto h100 = NvLinkGenerationOf("h100-sxm5-80gb").value();
  EXPECT_DOUBLE_EQ((h100.per_link * h100.links_per_gpu).ToGBps(), 450.0);
  auto v100 = NvLinkGenerationOf("Tesla V100-SXM3-32GB-H").value();
  EXPECT_DOUBLE_EQ((v100.per_link * v100.links_per_gpu).ToGBps(), 150.0);
  EXPECT_FALSE(NvLinkGenerationOf("NVIDIA GeForce RTX 4090").has_value());
}

TEST(MatchDevice, MatchesByPciIdThenByModel) {
  FoundGpu gpu;
  gpu.pci_device_id = 0x2330;
  EXPECT_EQ(MatchDevice(gpu, TestCatalogue())->name, "h100-sxm5-80gb");
  FoundGpu named;
  named.model = "nvidia a100-sxm4-80gb";
  EXPECT_EQ(MatchDevice(named, TestCatalogue())->name, "a100-sxm4-80gb");
  FoundGpu other;
  other.model = "NVIDIA GeForce RTX 4090";
  other.pci_device_id = 0x2684;
  EXPECT_FALSE(MatchDevice(other, TestCatalogue()).has_value());
}

TEST(DescribeNode, AnUnknownDeviceNameIsNotFound) {
  Result<NodeDescription> d = DescribeNode(Discover(std::nullopt, kH100), TestCatalogue(),
                                           {.device = "h800", .nic_rate = std::nullopt});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("a100-sxm4-80gb, h100-sxm5-80gb"), std::string::npos);
}

// --- /sys/class/infiniband ----------------------------------------------------

TEST(InfinibandSysfs, ParsesRates) {
  EXPECT_DOUBLE_EQ(ParseInfinibandRate("200 Gb/sec (4X HDR)")->ToGbps(), 200.0);
  EXPECT_DOUBLE_EQ(ParseInfinibandRate("400 Gb/sec (4X NDR)")->ToGBps(), 50.0);
  EXPECT_FALSE(ParseInfinibandRate("").has_value());
  EXPECT_FALSE(ParseInfinibandRate("fast").has_value());
}

// A fake sysfs: mlx5_0 (HDR, active, NUMA 1) and mlx5_10 (NDR, down).
std::string FakeSysfs() {
  const fs::path root = TempDir("sysfs");
  const fs::path pci = root / "devices" / "0000:0c:00.0";
  WriteText(pci / "numa_node", "1\n");
  const fs::path ib = root / "class" / "infiniband";
  WriteText(ib / "mlx5_0" / "ports" / "1" / "rate", "200 Gb/sec (4X HDR)\n");
  WriteText(ib / "mlx5_0" / "ports" / "1" / "state", "4: ACTIVE\n");
  WriteText(ib / "mlx5_0" / "ports" / "1" / "phys_state", "5: LinkUp\n");
  WriteText(ib / "mlx5_0" / "ports" / "1" / "link_layer", "InfiniBand\n");
  fs::create_directory_symlink(pci, ib / "mlx5_0" / "device");
  WriteText(ib / "mlx5_10" / "ports" / "1" / "rate", "400 Gb/sec (4X NDR)\n");
  WriteText(ib / "mlx5_10" / "ports" / "1" / "state", "1: DOWN\n");
  WriteText(ib / "mlx5_10" / "ports" / "1" / "link_layer", "InfiniBand\n");
  WriteText(ib / "mlx5_2" / "ports" / "1" / "rate", "100 Gb/sec (4X EDR)\n");
  WriteText(ib / "mlx5_2" / "ports" / "1" / "state", "4: ACTIVE\n");
  WriteText(ib / "mlx5_2" / "ports" / "1" / "link_layer", "Ethernet\n");
  return ib.string();
}

TEST(InfinibandSysfs, ReadsPortsRatesStatesAndPciDevice) {
  const std::string root = FakeSysfs();
  std::vector<InfinibandPort> ports = ReadInfinibandPorts(root).value();
  ASSERT_EQ(ports.size(), 3u);
  EXPECT_EQ(ports[0].adapter, "mlx5_0");
  EXPECT_EQ(ports[1].adapter, "mlx5_2");
  EXPECT_EQ(ports[2].adapter, "mlx5_10");
  EXPECT_DOUBLE_EQ(ports[0].rate->ToGbps(), 200.0);
  EXPECT_EQ(ports[0].state, "ACTIVE");
  EXPECT_EQ(ports[0].physical_state, "LinkUp");
  EXPECT_EQ(ports[0].link_layer, "InfiniBand");
  EXPECT_EQ(ports[0].pci_busid, "0000:0c:00.0");
  EXPECT_EQ(ports[0].numa_node, 1);
  EXPECT_EQ(ports[1].link_layer, "Ethernet");
  EXPECT_EQ(ports[2].state, "DOWN");
  EXPECT_FALSE(ports[2].numa_node.has_value());
  fs::remove_all(fs::path(root).parent_path().parent_path());
}

TEST(InfinibandSysfs, AMissingRootMeansNoAdapters) {
  EXPECT_TRUE(ReadInfinibandPorts("/nonexistent/infiniband").value().empty());
}

TEST(InfinibandSysfs, RatesReachTheRailsOfTheSpec) {
  const std::string root = FakeSysfs();
  NodeInventory node;
  node.gpus.resize(2);
  node.gpu_paths = {{PathKind::kSelf, PathKind::kPix}, {PathKind::kPix, PathKind::kSelf}};
  FoundNic nic;
  nic.name = "mlx5_0";
  nic.nearest_gpus = {0, 1};
  node.nics.push_back(nic);
  AddInfinibandPorts(root, node);
  ASSERT_EQ(node.nics.size(), 3u);  // mlx5_2 and mlx5_10 were not in the node
  EXPECT_DOUBLE_EQ(node.nics[0].rate->ToGbps(), 200.0);
  EXPECT_EQ(node.nics[0].state, "ACTIVE");
  NodeDescription d = DescribeNode(node, TestCatalogue()).value();
  EXPECT_EQ(d.rail_nics, 1);
  EXPECT_DOUBLE_EQ(d.nic_bandwidth->ToGbps(), 200.0);
  EXPECT_DOUBLE_EQ(d.spec.node_types[0].nics[0].bandwidth.ToGBps(), 25.0);
  fs::remove_all(fs::path(root).parent_path().parent_path());
}

// --- this machine --------------------------------------------------------------

TEST(LiveDiscovery, HwlocDescribesThisMachinesCpus) {
  NodeInventory node = ReadHwlocLocal().value();
  EXPECT_GE(node.cpu.cores, 1);
  EXPECT_GE(node.cpu.hardware_threads, node.cpu.cores);
  EXPECT_GT(node.cpu.memory, Bytes::Zero());
  EXPECT_EQ(node.source, "this machine");
}

TEST(LiveDiscovery, NvmlFromAMissingLibraryIsUnavailable) {
  Result<NvmlReading> r = ReadNvml("libnvidia-ml-not-here.so.1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("libnvidia-ml-not-here.so.1"), std::string::npos);
}

TEST(LiveDiscovery, ThisMachineIsReadAndAGpulessOneIsACpuNode) {
  DiscoveryInputs in;
  in.infiniband_root = "/nonexistent/infiniband";
  NodeInventory node = DiscoverNode(in).value();
  EXPECT_GE(node.cpu.cores, 1);
  Result<NvmlReading> nvml = ReadNvml();
  if (nvml.ok() && !nvml->gpus.empty()) {
    EXPECT_EQ(node.gpus.size(), nvml->gpus.size());  // a GPU machine
    return;
  }
  // No NVIDIA driver: a note says why NVLink was not read.
  EXPECT_TRUE(node.nvlink.Empty());
  NodeDescription d = DescribeNode(node, TestCatalogue()).value();
  if (node.gpus.empty()) {
    EXPECT_NE(std::find(d.notes.begin(), d.notes.end(), "no GPU found: a CPU node"), d.notes.end());
    EXPECT_EQ(d.spec.node_types[0].fabric.kind, FabricKind::kSharedMemory);
  }
}

// --- with the built-in presets -------------------------------------------------

TEST(PresetCatalogue, KnowsNoneOfTheFixtureGpusButA100AndH100ByName) {
  const DeviceCatalogue presets = PresetCatalogue();
  for (const std::string& path : {kDgx2, kPower8}) {
    NodeDescription d = DescribeNode(ReadHwlocXml(path).value(), presets).value();
    EXPECT_FALSE(d.device_known) << path;
    Status complete = CheckComplete(d);
    EXPECT_EQ(complete.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(complete.message().find("not a device Orrery knows (pass --device"),
              std::string::npos)
        << complete.message();
  }
  FoundGpu a100;
  a100.pci_vendor_id = 0x10de;
  a100.pci_device_id = 0x20b0;  // presets.cc: GA100 [A100 SXM4 40GB]
  EXPECT_EQ(MatchDevice(a100, presets)->name, "a100-sxm4-40gb");
}

TEST(PresetCatalogue, DgxA100MatrixWithItsDeviceAndNicRateIsAValidSpec) {
  NodeDescription d = DescribeNode(Discover(std::nullopt, kDgxA100), PresetCatalogue(),
                                   {.device = "a100-sxm4-40gb", .nic_rate = Gbps(200)})
                          .value();
  ASSERT_TRUE(CheckComplete(d).ok()) << CheckComplete(d).message();
  ASSERT_TRUE(ValidateClusterSpec(d.spec).ok()) << ValidateClusterSpec(d.spec).message();
  const NodeType& t = d.spec.node_types[0];
  EXPECT_DOUBLE_EQ(t.fabric.bandwidth_per_device.ToGBps(), 300.0);
  EXPECT_DOUBLE_EQ(t.NicBandwidthPerDevice(0).ToGbps(), 200.0);  // 2 NICs for 2 GPUs
  EXPECT_GT(t.fabric.latency, Duration::Zero());                 // the preset's NVSwitch hop
  // It reads back, and scales to several nodes.
  ClusterSpec back = ParseClusterSpec(ClusterSpecToJson(d.spec), "discovered.json").value();
  EXPECT_EQ(back, d.spec);
  ClusterSpec pod = d.spec.WithNodes(16).value();
  EXPECT_TRUE(ValidateClusterSpec(pod).ok()) << ValidateClusterSpec(pod).message();
}

TEST(PresetCatalogue, Rtx4090BoxRoutesTheFarGpusThroughItsOneNic) {
  NodeDescription d = DescribeNode(Discover(std::nullopt, kRtx4090), PresetCatalogue(),
                                   {.device = std::nullopt, .nic_rate = Gbps(100)})
                          .value();
  ASSERT_EQ(d.spec.node_types[0].nics.size(), 1u);
  EXPECT_EQ(d.spec.node_types[0].nics[0].devices, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_FALSE(d.device_known);
  EXPECT_EQ(d.unknown_device, "a GPU the source does not name");
}

TEST(PresetCatalogue, ThisGpulessMachineIsCpuLocal) {
  DiscoveryInputs in;
  in.infiniband_root = "/nonexistent/infiniband";
  NodeInventory node = DiscoverNode(in).value();
  if (!node.gpus.empty()) GTEST_SKIP() << "this machine has GPUs";
  NodeDescription d = DescribeNode(node, PresetCatalogue()).value();
  const ClusterSpec cpu = ClusterPreset("cpu-local").value();
  // (cpu-local reads the clock each time, so its peak may differ by a MHz.)
  EXPECT_EQ(d.spec.node_types[0].devices_per_node, cpu.node_types[0].devices_per_node);
  EXPECT_EQ(d.spec.node_types[0].device.name, cpu.node_types[0].device.name);
  EXPECT_EQ(d.spec.node_types[0].fabric, cpu.node_types[0].fabric);
  EXPECT_TRUE(CheckComplete(d).ok());
}

}  // namespace
}  // namespace orrery::topology
