// `orrery clusters`: the preset table, one cluster described as text and as
// JSON, and bad input.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

TEST(ClustersCli, ListsEveryPresetWithItsFigures) {
  CliRun run = RunOrrery("clusters");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.err.empty()) << run.err;
  for (const char* name : {"dgx-a100-40gb", "dgx-a100-80gb", "dgx-h100", "dgx-h200", "dgx-b200",
                           "gb200-nvl72", "pcie-l40s-8", "cpu-local"}) {
    EXPECT_NE(run.out.find(std::string("\n") + name + " "), std::string::npos) << name;
  }
  EXPECT_NE(run.out.find("bf16 TFLOP/s"), std::string::npos);
  // The DGX H100 row: 8 devices, the model, 80 GiB, 989.5 TFLOP/s, 450 GB/s, 8 NICs.
  const size_t row = run.out.find("\ndgx-h100 ");
  ASSERT_NE(row, std::string::npos);
  const std::string line = run.out.substr(row + 1, run.out.find('\n', row + 1) - row - 1);
  for (const char* cell : {" 8 ", "NVIDIA H100 80GB HBM3", "80.0 GiB", "989.5", "450 nvswitch",
                           "8x 400 Gb/s"}) {
    EXPECT_NE(line.find(cell), std::string::npos) << cell << " in: " << line;
  }
}

TEST(ClustersCli, ListsPresetsAsJson) {
  CliRun run = RunOrrery("clusters --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json doc = nlohmann::json::parse(run.out);
  ASSERT_EQ(doc["presets"].size(), 8u);
  EXPECT_EQ(doc["presets"][2]["name"], "dgx-h100");
  EXPECT_DOUBLE_EQ(doc["presets"][2]["bf16_tflops"].get<double>(), 989.5);
  EXPECT_TRUE(doc["presets"][7]["bf16_tflops"].is_null());  // cpu-local
}

TEST(ClustersCli, DescribesAPresetScaledToNodesAsJsonWithASummary) {
  CliRun run = RunOrrery("clusters --cluster dgx-h100 --nodes 16 --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json doc = nlohmann::json::parse(run.out);
  EXPECT_EQ(doc["name"], "dgx-h100");
  EXPECT_EQ(doc["nodes"][0]["count"], 16);
  EXPECT_EQ(doc["nodes"][0]["device"]["peak_tflops"]["bf16"], 989.5);
  EXPECT_EQ(doc["network"]["tiers"][0]["nodes_per_switch"], 32);
  const nlohmann::json& summary = doc["summary"];
  EXPECT_EQ(summary["total_devices"], 128);
  EXPECT_EQ(summary["total_nodes"], 16);
  ASSERT_EQ(summary["node_types"].size(), 1u);
  const nlohmann::json& type = summary["node_types"][0];
  EXPECT_EQ(type["count"], 16);
  EXPECT_EQ(type["gpus"], 8);
  EXPECT_EQ(type["gpu_model"], "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(type["nics"], 8);
  EXPECT_EQ(type["nic_gbps"], 400.0);
  EXPECT_EQ(type["nvlink_gbps"], 450.0);
}

TEST(ClustersCli, PcieClusterHasNoNvLinkInItsSummary) {
  CliRun run = RunOrrery("clusters --cluster pcie-l40s-8 --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json doc = nlohmann::json::parse(run.out);
  EXPECT_EQ(doc["summary"]["node_types"][0]["nvlink_gbps"], 0.0);
  EXPECT_EQ(doc["summary"]["node_types"][0]["nics"], 4);
}

TEST(ClustersCli, DescribesAPresetAsText) {
  CliRun run = RunOrrery("clusters --cluster gb200-nvl72");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("1 node(s), 72 device(s)"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("bf16 2500"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("900 GB/s per device per direction"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("UNVERIFIED"), std::string::npos) << run.out;
}

TEST(ClustersCli, ItsJsonOutputReadsBackAsAClusterFile) {
  const std::string dir = MakeTempDir("clusters_cli_round_trip");
  const std::string path = dir + "/pod.json";
  CliRun described = RunOrrery("clusters --cluster dgx-b200 --nodes 4 --format json");
  ASSERT_EQ(described.exit_code, 0) << described.err;
  std::ofstream(path) << described.out;
  CliRun again = RunOrrery("clusters --cluster " + path + " --format json");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, described.out);
}

TEST(ClustersCli, UnknownPresetExitsTwoNamingTheKnownOnes) {
  CliRun run = RunOrrery("clusters --cluster dgx-h1000");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.out.empty());
  EXPECT_EQ(run.err,
            "orrery clusters: error: unknown cluster preset 'dgx-h1000' (known presets: "
            "dgx-a100-40gb, dgx-a100-80gb, dgx-h100, dgx-h200, dgx-b200, gb200-nvl72, "
            "pcie-l40s-8, cpu-local; or give the path of a cluster JSON file)\n");
}

TEST(ClustersCli, BadFileExitsTwoNamingTheFileAndTheField) {
  const std::string dir = MakeTempDir("clusters_cli_bad_file");
  const std::string path = dir + "/bad.json";
  std::ofstream(path) << R"({"nodes": [{"count": 2, "devices_per_node": 8, "device": "h100",
      "fabric": {"kind": "nvswitch", "GBps_per_device": 450, "latency_us": 0.5}}]})";
  CliRun run = RunOrrery("clusters --cluster " + path);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.out.empty());
  EXPECT_NE(run.err.find("orrery clusters: error: " + path +
                         ": field 'nodes[0].device': unknown device preset 'h100'"),
            std::string::npos)
      << run.err;
}

TEST(ClustersCli, MissingFileAndInvalidJsonExitTwo) {
  CliRun missing = RunOrrery("clusters --cluster /nonexistent/pod.json");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("/nonexistent/pod.json"), std::string::npos) << missing.err;

  const std::string dir = MakeTempDir("clusters_cli_not_json");
  const std::string path = dir + "/pod.json";
  std::ofstream(path) << "{\"nodes\": [";
  CliRun broken = RunOrrery("clusters --cluster " + path);
  EXPECT_EQ(broken.exit_code, 2);
  EXPECT_NE(broken.err.find(path + ": not valid JSON"), std::string::npos) << broken.err;
}

TEST(ClustersCli, BadNodesAndFormatExitTwo) {
  CliRun zero = RunOrrery("clusters --cluster dgx-h100 --nodes 0");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_EQ(zero.err, "orrery clusters: error: --nodes: expected a positive integer, got 0\n");

  CliRun format = RunOrrery("clusters --cluster dgx-h100 --format yaml");
  EXPECT_EQ(format.exit_code, 2);
  EXPECT_NE(format.err.find("--format: expected 'text' or 'json', got 'yaml'"), std::string::npos);

  CliRun cpu = RunOrrery("clusters --cluster cpu-local --nodes 2");
  EXPECT_EQ(cpu.exit_code, 2);
  EXPECT_NE(cpu.err.find("needs NICs"), std::string::npos) << cpu.err;
}

TEST(ClustersCli, HelpTeachesUsageAndExamples) {
  CliRun run = RunOrrery("clusters --help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("Usage: orrery clusters [--cluster NAME|FILE] [--nodes N]"),
            std::string::npos);
  EXPECT_NE(run.out.find("--nodes"), std::string::npos);
  EXPECT_NE(run.out.find("Examples:\n  orrery clusters\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("orrery clusters --cluster dgx-h100 --nodes 16"), std::string::npos);
}

}  // namespace
}  // namespace orrery::testing
