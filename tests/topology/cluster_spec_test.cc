// ClusterSpec: its JSON form (good and bad files), validation, the round
// trip, scaling and NIC bandwidth shares.
#include "topology/cluster_spec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/file.h"
#include "core/json.h"
#include "topology/cluster_spec_json.h"
#include "topology/presets.h"

namespace orrery::topology {
namespace {

Result<ClusterSpec> ParseText(const std::string& text) {
  Result<Json> json = ParseJson(text, "cluster.json");
  if (!json.ok()) return json.status();
  return ParseClusterSpec(*json, "cluster.json");
}

// A valid two-tier cluster with the device written out in full and
// explicit NICs; the bad cases below each break one field of it.
constexpr const char* kFullSpec = R"({
  "name": "test-pod",
  "description": "four nodes of four GPUs",
  "nodes": [{
    "name": "box",
    "count": 4,
    "devices_per_node": 4,
    "device": {"name": "toy-gpu", "model": "Toy GPU 16GB",
               "peak_tflops": {"fp32": 10, "bf16": 100.5},
               "memory_gib": 16, "memory_bandwidth_GBps": 900,
               "pci_device_ids": ["0x1234"], "source": "made up for a test"},
    "fabric": {"kind": "nvlink-mesh", "GBps_per_device": 150, "latency_us": 0.75},
    "nics": [{"Gbps": 200, "devices": [0, 1]}, {"Gbps": 100, "devices": [2, 3]},
             {"Gbps": 100, "devices": [3]}]
  }],
  "network": {"rail_optimized": false,
              "tiers": [{"name": "leaf", "nodes_per_switch": 2, "oversubscription": 2,
                         "latency_us": 1.5},
                        {"name": "spine", "latency_us": 2}]}
})";

TEST(ClusterSpecJson, ReadsEveryFieldOfAFullSpec) {
  Result<ClusterSpec> spec = ParseText(kFullSpec);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "test-pod");
  EXPECT_EQ(spec->description, "four nodes of four GPUs");
  ASSERT_EQ(spec->node_types.size(), 1u);
  const NodeType& t = spec->node_types[0];
  EXPECT_EQ(t.name, "box");
  EXPECT_EQ(t.count, 4);
  EXPECT_EQ(t.devices_per_node, 4);
  EXPECT_EQ(t.device.name, "toy-gpu");
  EXPECT_EQ(t.device.model, "Toy GPU 16GB");
  EXPECT_DOUBLE_EQ(t.device.Peak(Precision::kBf16)->ToTFlops(), 100.5);
  EXPECT_DOUBLE_EQ(t.device.Peak(Precision::kFp32)->ToTFlops(), 10);
  EXPECT_FALSE(t.device.Peak(Precision::kFp8).has_value());
  EXPECT_EQ(t.device.memory, GiB(16));
  EXPECT_DOUBLE_EQ(t.device.memory_bandwidth.ToGBps(), 900);
  EXPECT_EQ(t.device.pci_device_ids, std::vector<std::string>{"0x1234"});
  EXPECT_EQ(t.fabric.kind, FabricKind::kNvLinkMesh);
  EXPECT_DOUBLE_EQ(t.fabric.bandwidth_per_device.ToGBps(), 150);
  EXPECT_EQ(t.fabric.latency, Nanos(750));
  ASSERT_EQ(t.nics.size(), 3u);
  EXPECT_EQ(t.nics[2].devices, std::vector<int>{3});
  EXPECT_FALSE(spec->network.rail_optimized);
  ASSERT_EQ(spec->network.tiers.size(), 2u);
  EXPECT_EQ(spec->network.tiers[0].nodes_per_switch, 2);
  EXPECT_DOUBLE_EQ(spec->network.tiers[0].oversubscription, 2.0);
  EXPECT_EQ(spec->network.tiers[0].latency, Nanos(1500));
  EXPECT_FALSE(spec->network.tiers[1].nodes_per_switch.has_value());
  EXPECT_DOUBLE_EQ(spec->network.tiers[1].oversubscription, 1.0);
  EXPECT_EQ(spec->TotalNodes(), 4);
  EXPECT_EQ(spec->TotalDevices(), 16);
}

TEST(ClusterSpecJson, DeviceMayBeAPresetNameAndNicsCompact) {
  Result<ClusterSpec> spec = ParseText(R"({
    "nodes": [{"count": 2, "devices_per_node": 8, "device": "h100-sxm5-80gb",
               "fabric": {"kind": "nvswitch", "GBps_per_device": 450, "latency_us": 0.5},
               "nics": {"count": 4, "Gbps": 400, "devices_per_nic": 2}}],
    "network": {"tiers": [{"name": "leaf", "latency_us": 1}]}})");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const NodeType& t = spec->PrimaryNodeType();
  EXPECT_EQ(t.device, DevicePreset("h100-sxm5-80gb").value());
  ASSERT_EQ(t.nics.size(), 4u);
  EXPECT_EQ(t.nics[1].devices, (std::vector<int>{2, 3}));
  EXPECT_DOUBLE_EQ(t.nics[3].bandwidth.ToGbps(), 400);
}

TEST(ClusterSpecJson, CompactNicsDefaultToAnEvenSplitOfTheDevices) {
  Result<ClusterSpec> spec = ParseText(R"({
    "nodes": [{"count": 1, "devices_per_node": 8, "device": "l40s-48gb",
               "fabric": {"kind": "pcie", "GBps_per_device": 32, "latency_us": 1},
               "nics": {"count": 2, "Gbps": 200}}]})");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->PrimaryNodeType().nics[1].devices, (std::vector<int>{4, 5, 6, 7}));
}

// Each bad case: the text of a spec, and what its message must contain —
// the field's path and what was expected.
struct BadCase {
  std::string name;
  std::string from;  // a fragment of kFullSpec
  std::string to;    // its replacement
  std::string message;
};

// gtest prints a parameter in test listings; without this it dumps raw bytes.
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class ClusterSpecJsonRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(ClusterSpecJsonRejects, NamingTheFileTheFieldAndWhatWasExpected) {
  const BadCase& c = GetParam();
  std::string text = kFullSpec;
  const size_t at = text.find(c.from);
  ASSERT_NE(at, std::string::npos) << c.from;
  text.replace(at, c.from.size(), c.to);
  Result<ClusterSpec> spec = ParseText(text);
  ASSERT_FALSE(spec.ok()) << c.name;
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("cluster.json"), std::string::npos)
      << spec.status().message();
  EXPECT_NE(spec.status().message().find(c.message), std::string::npos)
      << "got: " << spec.status().message() << "\nwanted: " << c.message;
}

INSTANTIATE_TEST_SUITE_P(
    BadFields, ClusterSpecJsonRejects,
    ::testing::Values(
        BadCase{"ZeroCount", R"("count": 4)", R"("count": 0)",
                "field 'nodes[0].count': expected a positive integer, got 0"},
        BadCase{"StringDevicesPerNode", R"("devices_per_node": 4)", R"("devices_per_node": "4")",
                "field 'nodes[0].devices_per_node': expected an integer, got \"4\""},
        BadCase{"UnknownNodeField", R"("name": "box")", R"("name": "box", "gpus": 4)",
                "field 'nodes[0].gpus': unknown field"},
        BadCase{"UnknownRootField", R"("name": "test-pod")", R"("name": "test-pod", "nodez": 1)",
                "field 'nodez': unknown field"},
        BadCase{"UnknownPrecision", R"("fp32": 10)", R"("fp64": 10)",
                "field 'nodes[0].device.peak_tflops.fp64': unknown field"},
        BadCase{"NegativePeak", R"("bf16": 100.5)", R"("bf16": -1)",
                "field 'nodes[0].device.peak_tflops.bf16': expected a positive number"},
        BadCase{"MissingMemory", R"("memory_gib": 16, )", "",
                "field 'nodes[0].device.memory_gib': missing"},
        BadCase{"UnknownDevicePreset", R"("device": {)", R"("device": "h1000", "x": {)",
                "field 'nodes[0].device': unknown device preset 'h1000' (known device presets: "},
        BadCase{"DeviceOfWrongType", R"("device": {)", R"("device": 7, "x": {)",
                "field 'nodes[0].device': expected a device preset name or an object, got 7"},
        BadCase{"UnknownFabricKind", R"("kind": "nvlink-mesh")", R"("kind": "infinity-fabric")",
                "field 'nodes[0].fabric.kind': unknown fabric kind 'infinity-fabric' (expected "
                "nvswitch, nvlink-mesh, pcie or shared-memory)"},
        BadCase{"ZeroFabricBandwidth", R"("GBps_per_device": 150)", R"("GBps_per_device": 0)",
                "field 'nodes[0].fabric.GBps_per_device': expected a positive number, got 0"},
        BadCase{"NegativeFabricLatency", R"("latency_us": 0.75)", R"("latency_us": -1)",
                "field 'nodes[0].fabric.latency_us': expected a number >= 0, got -1"},
        BadCase{"NicDeviceOutOfRange", R"("devices": [3])", R"("devices": [4])",
                "field 'nodes[0].nics[2].devices[0]': expected a device index in [0, 4), got 4"},
        BadCase{"NicWithoutDevices", R"("devices": [3])", R"("devices": [])",
                "field 'nodes[0].nics[2].devices': expected at least one device index"},
        BadCase{"NicDeviceTwice", R"("devices": [0, 1])", R"("devices": [0, 0])",
                "nodes[0].nics[0].devices: device 0 listed twice"},
        BadCase{"DeviceWithoutNic", R"("devices": [2, 3])", R"("devices": [3])",
                "nodes[0].nics: device 2 is served by no NIC"},
        BadCase{"CompactNicsNotCoveringTheNode",
                R"([{"Gbps": 200, "devices": [0, 1]}, {"Gbps": 100, "devices": [2, 3]},
             {"Gbps": 100, "devices": [3]}])",
                R"({"count": 1, "Gbps": 400, "devices_per_nic": 2})",
                "field 'nodes[0].nics.count': expected count x devices_per_nic = "
                "devices_per_node (4), got 1 x 2"},
        BadCase{"CompactNicsNotDividingTheNode",
                R"([{"Gbps": 200, "devices": [0, 1]}, {"Gbps": 100, "devices": [2, 3]},
             {"Gbps": 100, "devices": [3]}])",
                R"({"count": 1, "Gbps": 400, "devices_per_nic": 3})",
                "field 'nodes[0].nics.devices_per_nic': expected a divisor of devices_per_node "
                "(4), got 3"},
        BadCase{"NicsOfWrongType", R"("nics": [)", R"("nics": 8, "x": [)",
                "field 'nodes[0].nics': expected an object {count, Gbps, devices_per_nic} or an "
                "array of {Gbps, devices}, got 8"},
        BadCase{"MultiNodeWithoutNics",
                R"(,
    "nics": [{"Gbps": 200, "devices": [0, 1]}, {"Gbps": 100, "devices": [2, 3]},
             {"Gbps": 100, "devices": [3]}])",
                "", "nodes[0].nics: a cluster of more than one node needs NICs"},
        BadCase{"OversubscriptionBelowOne", R"("oversubscription": 2)",
                R"("oversubscription": 0.5)",
                "field 'network.tiers[0].oversubscription': expected a ratio >= 1 (1 is "
                "non-blocking), got 0.5"},
        BadCase{"TierSpansNotGrowing", R"({"name": "spine", "latency_us": 2})",
                R"({"name": "spine", "nodes_per_switch": 2, "latency_us": 2})",
                "network.tiers[1].nodes_per_switch: expected more nodes per switch than the tier "
                "below (2), got 2"},
        BadCase{"LowerTierWithoutSpan", R"("name": "leaf", "nodes_per_switch": 2, )",
                R"("name": "leaf", )",
                "network.tiers[0].nodes_per_switch: only the top (last) tier may omit "
                "nodes_per_switch"},
        BadCase{"TopTierTooSmall", R"({"name": "spine", "latency_us": 2})",
                R"({"name": "spine", "nodes_per_switch": 3, "latency_us": 2})",
                "network.tiers[1].nodes_per_switch: the top tier spans 3 nodes but the cluster "
                "has 4"},
        BadCase{"DuplicateTierName", R"({"name": "spine", "latency_us": 2})",
                R"({"name": "leaf", "latency_us": 2})",
                "network.tiers[1].name: tier name 'leaf' used twice"},
        BadCase{"MissingTierLatency", R"({"name": "spine", "latency_us": 2})",
                R"({"name": "spine"})",
                "field 'network.tiers[1].latency_us': missing (expected a number)"},
        BadCase{"UnknownNetworkField", R"("tiers": [)", R"("tiers": [], "x": [)",
                "field 'network.x': unknown field"},
        BadCase{"EmptyNodes", R"("nodes": [{)", R"("nodes": [], "x": [{)",
                "field 'nodes': expected at least one node type"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(ClusterSpecJson, AMultiNodeClusterNeedsANetworkTier) {
  std::string text = kFullSpec;
  const std::string network_start = R"(,
  "network")";
  text = text.substr(0, text.find(network_start)) + "\n}";
  Result<ClusterSpec> spec = ParseText(text);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(),
            "cluster.json: network.tiers: a cluster of 4 nodes needs at least one network tier");
}

TEST(ClusterSpecJson, NotAnObjectIsAnError) {
  Result<ClusterSpec> spec = ParseText("[1, 2]");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(), "cluster.json: expected an object, got an array [1,2]");
}

TEST(ClusterSpecJson, RoundTripGivesBackTheSameSpec) {
  ClusterSpec spec = ParseText(kFullSpec).value();
  Json json = ClusterSpecToJson(spec);
  Result<ClusterSpec> back = ParseClusterSpec(json, "round-trip");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, spec);
  // Explicit NICs that are not a compact layout stay an array.
  EXPECT_TRUE(json["nodes"][0]["nics"].is_array());
}

TEST(ClusterSpecJson, RoundTripOfEveryPresetIsExactAndWritesPlainNumbers) {
  for (const std::string& name : ClusterPresetNames()) {
    ClusterSpec spec = ClusterPreset(name).value();
    Json json = ClusterSpecToJson(spec);
    Result<ClusterSpec> back = ParseClusterSpec(json, name);
    ASSERT_TRUE(back.ok()) << name << ": " << back.status().ToString();
    EXPECT_EQ(*back, spec) << name;
  }
  Json h100 = ClusterSpecToJson(ClusterPreset("dgx-h100").value());
  EXPECT_EQ(h100["nodes"][0]["device"]["peak_tflops"]["bf16"].dump(), "989.5");
  EXPECT_EQ(h100["nodes"][0]["device"]["memory_gib"].dump(), "80");
  EXPECT_EQ(h100["nodes"][0]["fabric"]["latency_us"].dump(), "0.5");
  EXPECT_EQ(h100["nodes"][0]["nics"].dump(), R"({"count":8,"Gbps":400,"devices_per_nic":1})");
}

// Quantities built from the JSON's units (TFlops, GBps, GiBf, Micros) come
// back exactly, even when the decimal number is not short.
TEST(ClusterSpecJson, RoundTripKeepsAwkwardNumbersExact) {
  ClusterSpec spec = ClusterPreset("dgx-h100").value();
  NodeType& t = spec.node_types[0];
  t.device.peak[Precision::kFp32] = TFlops(100.0 / 3.0);
  t.device.peak[Precision::kFp8] = TFlops(0.1 + 0.2);
  t.device.memory = Bytes(85899345921);  // 80 GiB + 1 byte
  t.device.memory_bandwidth = GBps(1.0 / 7.0);
  t.fabric.bandwidth_per_device = GBps(123.456789123456789);
  t.fabric.latency = Picos(1);
  t.nics[3].bandwidth = Gbps(2.0 / 3.0);
  spec.network.tiers[0].oversubscription = 1.0 + 1.0 / 7.0;
  spec.network.tiers[1].latency = Micros(1.0 / 3.0);
  Result<ClusterSpec> back = ParseClusterSpec(ClusterSpecToJson(spec), "round-trip");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const NodeType& b = back->node_types[0];
  EXPECT_EQ(b.device.peak, t.device.peak);
  EXPECT_EQ(b.device.memory, t.device.memory);
  EXPECT_EQ(b.device.memory_bandwidth, t.device.memory_bandwidth);
  EXPECT_EQ(b.fabric, t.fabric);
  EXPECT_EQ(b.nics, t.nics);
  EXPECT_EQ(back->network, spec.network);
  EXPECT_EQ(*back, spec);
}

TEST(ClusterSpecJson, ReadsBackTheDerivedSummaryItWritesAndIgnoresIt) {
  Json json = ClusterSpecToJson(ClusterPreset("dgx-a100-80gb").value());
  json["summary"] = Json::object({{"total_devices", 8}});
  Result<ClusterSpec> back = ParseClusterSpec(json, "described.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, ClusterPreset("dgx-a100-80gb").value());
}

TEST(ClusterSpecJson, LoadsAFileAndNamesItInErrors) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/orrery_good_cluster.json";
  const std::string bad = dir + "/orrery_bad_cluster.json";
  ASSERT_TRUE(WriteFileAtomically(good, kFullSpec).ok());
  ASSERT_TRUE(WriteFileAtomically(bad, R"({"nodes": [{"count": -1}]})").ok());
  Result<ClusterSpec> spec = LoadClusterSpecFile(good);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "test-pod");
  Result<ClusterSpec> broken = LoadClusterSpecFile(bad);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().message(),
            bad + ": field 'nodes[0].count': expected a positive integer, got -1");
  EXPECT_FALSE(LoadClusterSpecFile(dir + "/orrery_no_such_cluster.json").ok());
  std::filesystem::remove(good);
  std::filesystem::remove(bad);
}

TEST(ClusterSpec, WithNodesScalesTheOnlyNodeType) {
  ClusterSpec one = ClusterPreset("dgx-h100").value();
  ClusterSpec many = one.WithNodes(64).value();
  EXPECT_EQ(many.TotalNodes(), 64);
  EXPECT_EQ(many.TotalDevices(), 512);
  EXPECT_EQ(many.PrimaryNodeType().device, one.PrimaryNodeType().device);
  EXPECT_TRUE(ValidateClusterSpec(many).ok());
  EXPECT_EQ(one.TotalNodes(), 1);
}

TEST(ClusterSpec, WithNodesRejectsZeroAndSeveralNodeTypes) {
  ClusterSpec one = ClusterPreset("dgx-h100").value();
  EXPECT_EQ(one.WithNodes(0).status().message(),
            "cluster 'dgx-h100': the number of nodes must be >= 1, got 0");
  ClusterSpec mixed = one;
  mixed.node_types.push_back(ClusterPreset("dgx-a100-80gb")->node_types[0]);
  EXPECT_EQ(mixed.TotalDevices(), 16);
  Result<ClusterSpec> scaled = mixed.WithNodes(4);
  ASSERT_FALSE(scaled.ok());
  EXPECT_NE(scaled.status().message().find("has 2 node types"), std::string::npos);
}

TEST(ClusterSpec, NicBandwidthPerDeviceSharesANicAmongItsDevices) {
  ClusterSpec spec = ParseText(kFullSpec).value();
  const NodeType& t = spec.PrimaryNodeType();
  // NIC 0: 200 Gb/s for devices 0,1; NIC 1: 100 Gb/s for 2,3; NIC 2: 100 Gb/s for 3.
  EXPECT_DOUBLE_EQ(t.NicBandwidthPerDevice(0).ToGbps(), 100);
  EXPECT_DOUBLE_EQ(t.NicBandwidthPerDevice(1).ToGbps(), 100);
  EXPECT_DOUBLE_EQ(t.NicBandwidthPerDevice(2).ToGbps(), 50);
  EXPECT_DOUBLE_EQ(t.NicBandwidthPerDevice(3).ToGbps(), 150);
  EXPECT_DOUBLE_EQ(t.NicBandwidthPerNode().ToGbps(), 400);
}

TEST(ClusterSpec, NicBandwidthPerDeviceIsZeroWithoutNics) {
  NodeType t;
  t.devices_per_node = 2;
  EXPECT_EQ(t.NicBandwidthPerDevice(1), Bandwidth::Zero());
}

TEST(ClusterSpec, ValidateRejectsAHandBuiltSpecWithoutNodeTypes) {
  EXPECT_EQ(ValidateClusterSpec(ClusterSpec{}).message(),
            "nodes: expected at least one node type");
}

TEST(Precision, NamesParseBackAndHaveSizes) {
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kBf16, Precision::kFp16,
                      Precision::kFp8}) {
    EXPECT_EQ(ParsePrecision(PrecisionName(p)).value(), p);
  }
  EXPECT_EQ(BytesPerElement(Precision::kFp32), 4);
  EXPECT_EQ(BytesPerElement(Precision::kTf32), 4);
  EXPECT_EQ(BytesPerElement(Precision::kBf16), 2);
  EXPECT_EQ(BytesPerElement(Precision::kFp8), 1);
  EXPECT_EQ(ParsePrecision("fp64").status().message(),
            "unknown precision 'fp64' (expected fp32, tf32, bf16, fp16 or fp8)");
}

TEST(FabricKind, NamesParseBack) {
  for (FabricKind k : {FabricKind::kNvSwitch, FabricKind::kNvLinkMesh, FabricKind::kPcie,
                       FabricKind::kSharedMemory}) {
    EXPECT_EQ(ParseFabricKind(FabricKindName(k)).value(), k);
  }
  EXPECT_FALSE(ParseFabricKind("ethernet").ok());
}

}  // namespace
}  // namespace orrery::topology
