// `orrery discover` run as a person would, on the shared fixtures and on
// this machine.
#include <gtest/gtest.h>


#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/file.h"
#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

namespace fs = std::filesystem;

const std::string kDgx2 = Fixture("hwloc/hwloc_nvidia_dgx2h_16xV100_nvswitch.xml");
const std::string kPower8 = Fixture("hwloc/hwloc_power8_4xP100_nvlink.xml");
const std::string kDgxA100 = Fixture("nvidia_smi_topo/topo_dgx_a100_8gpu_12xmlx5.txt");
const std::string kH100 = Fixture("nvidia_smi_topo/topo_h100_8gpu_nv18_no-nics_stas00.txt");
const std::string kRtx4090 =
    Fixture("nvidia_smi_topo/topo_8xRTX4090_pcie-only_1nic_nccl-tests-issue307.txt");

Json SummaryType(const CliRun& run) {
  Json doc = ParseJson(run.out, "stdout").value();
  return doc.at("summary").at("node_types").at(0);
}

TEST(DiscoverCli, Dgx2ExportIs16UnknownV100sOn12NvSwitches) {
  CliRun run = RunOrrery("discover --hwloc-xml " + kDgx2);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("machine     NVIDIA DGX-2H\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("GPUs        16 x Tesla V100-SXM3-32GB-H (PCI 10de:1db8): not a "
                         "device Orrery knows\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("NVSwitches  12\n"), std::string::npos);
  EXPECT_NE(run.out.find("fabric      nvswitch, 150 GB/s per GPU per direction (NVLink2, 25 "
                         "GB/s per link)"),
            std::string::npos)
      << run.out;
}

TEST(DiscoverCli, Power8JsonSummaryHas4GpusAt40GBpsOfNvLink) {
  CliRun run = RunOrrery("discover --format json --hwloc-xml " + kPower8);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Json t = SummaryType(run);
  EXPECT_EQ(t.at("gpus"), 4);
  EXPECT_EQ(t.at("gpu_model"), "Tesla P100-SXM2-16GB");
  EXPECT_EQ(t.at("nvlink_gbps"), 40.0);
  EXPECT_EQ(t.at("nics"), 0);
  EXPECT_EQ(t.at("count"), 1);
}

TEST(DiscoverCli, H100MatrixWithItsDeviceIs450GBpsPerGpu) {
  CliRun run =
      RunOrrery("discover --format json --device h100-sxm5-80gb --nvidia-smi-topo " + kH100);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Json t = SummaryType(run);
  EXPECT_EQ(t.at("gpus"), 8);
  EXPECT_EQ(t.at("nvlink_gbps"), 450.0);
  EXPECT_EQ(t.at("nics"), 0);
  EXPECT_EQ(t.at("nic_gbps"), 0);
}

TEST(DiscoverCli, DgxA100MatrixWritesASpecThatClustersReadsBack) {
  const std::string dir = MakeTempDir("discover_a100");
  const std::string out = dir + "/dgx-a100.json";
  CliRun run = RunOrrery("discover --nvidia-smi-topo " + kDgxA100 +
                         " --device a100-sxm4-40gb --nic-gbps 200 --out " + out);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("NICs        12 adapter(s), 8 near GPUs (rails) at 200 Gb/s\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("    mlx5_0 -> GPU 0,1 (PXB)\n"), std::string::npos);
  EXPECT_NE(run.out.find("no GPU nearby (storage or management): mlx5_4 mlx5_5 mlx5_10 "
                         "mlx5_11\n"),
            std::string::npos);
  CliRun back = RunOrrery("clusters --format json --cluster " + out);
  ASSERT_EQ(back.exit_code, 0) << back.err;
  Json t = SummaryType(back);
  EXPECT_EQ(t.at("gpus"), 8);
  EXPECT_EQ(t.at("nvlink_gbps"), 300.0);
  EXPECT_EQ(t.at("nics"), 8);
  EXPECT_EQ(t.at("nic_gbps"), 200.0);
  fs::remove_all(dir);
}

TEST(DiscoverCli, Rtx4090BoxIsPcieInTwoSwitchGroupsWithOneNic) {
  CliRun run = RunOrrery("discover --nvidia-smi-topo " + kRtx4090);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("PCIe        2 switch group(s): {0,1,2,3} {4,5,6,7}\n"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("    mlx5_bond_0 -> GPU 0,1,2,3 (PIX)\n"), std::string::npos);
  Json t = SummaryType(RunOrrery("discover --format json --nvidia-smi-topo " + kRtx4090));
  EXPECT_EQ(t.at("nvlink_gbps"), 0.0);
  EXPECT_EQ(t.at("nics"), 1);
  EXPECT_TRUE(t.at("nic_gbps").is_null());
}

TEST(DiscoverCli, TruncatedExportIsExitTwoNamingTheFileAndWritesNothing) {
  const std::string dir = MakeTempDir("discover_trunc");
  const std::string text = ReadFile(kDgx2).value();
  const std::string cut = dir + "/cut.xml";
  std::ofstream(cut) << text.substr(0, 20000);
  const std::string out = dir + "/spec.json";
  CliRun run = RunOrrery("discover --hwloc-xml " + cut + " --out " + out);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "orrery discover: error: " + cut +
                         ": truncated hwloc XML export: the file (20000 bytes) ends before its "
                         "closing </topology>\n");
  EXPECT_TRUE(run.out.empty());
  EXPECT_FALSE(fs::exists(out));
  fs::remove_all(dir);
}

TEST(DiscoverCli, IncompleteSpecIsNotWritten) {
  const std::string dir = MakeTempDir("discover_incomplete");
  const std::string out = dir + "/v100.json";
  CliRun run = RunOrrery("discover --hwloc-xml " + kDgx2 + " --out " + out);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find(out + " not written: the discovered spec is incomplete: the GPU Tesla "
                               "V100-SXM3-32GB-H (PCI 10de:1db8) is not a device Orrery knows"),
            std::string::npos)
      << run.err;
  EXPECT_FALSE(fs::exists(out));
  fs::remove_all(dir);
}

TEST(DiscoverCli, ThisMachineIsDescribedAndItsSpecWritten) {
  const std::string dir = MakeTempDir("discover_live");
  const std::string out = dir + "/here.json";
  CliRun run = RunOrrery("discover --out " + out);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("node discovered from this machine\n"), std::string::npos);
  const bool cpu_node =
      run.out.find("  GPUs        no GPU found: this is a CPU node of ") != std::string::npos;
  const bool gpu_node = run.out.find("  fabric      ") != std::string::npos;
  EXPECT_NE(cpu_node, gpu_node) << run.out;
  if (cpu_node) {
    CliRun back = RunOrrery("clusters --cluster " + out);
    EXPECT_EQ(back.exit_code, 0) << back.err;
  }
  fs::remove_all(dir);
}

TEST(DiscoverCli, HelpShowsExamplesWithTheFixtures) {
  CliRun run = RunOrrery("discover --help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("orrery discover --hwloc-xml "
                         "../shared/fixtures/hwloc/hwloc_nvidia_dgx2h_16xV100_nvswitch.xml"),
            std::string::npos)
      << run.out;
}

// Under mpirun: `orrery discover` with one rank per node. The ranks all run
// on this machine, so the tests give each rank its own file (%r).

bool MpirunOnPath() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

// Runs `mpirun -np <ranks> orrery <args>` as root may (this suite runs as
// root here) with more ranks than cores.
CliRun RunUnderMpirun(int ranks, const std::string& args) {
  return RunShell("mpirun -np " + std::to_string(ranks) + " --oversubscribe --allow-run-as-root " +
                  OrreryBinary() + " " + args);
}

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

#define SKIP_WITHOUT_MPIRUN() \
  if (!MpirunOnPath()) GTEST_SKIP() << "mpirun is not on PATH: the multi-node discovery is not run"

TEST(DiscoverUnderMpirun, TwoRanksOnDifferentExportsAreTwoNodeTypesAndTheDifferenceIsPrinted) {
  SKIP_WITHOUT_MPIRUN();
  const std::string dir = MakeTempDir("discover_mpi_two");
  fs::create_symlink(kDgx2, dir + "/node0.xml");
  fs::create_symlink(kPower8, dir + "/node1.xml");
  CliRun run = RunUnderMpirun(2, "discover --hwloc-xml '" + dir + "/node%r.xml'");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(Occurrences(run.out, "cluster discovered by"), 1u) << run.out;  // rank 0 only
  EXPECT_NE(run.out.find("cluster discovered by 2 MPI ranks: 2 node(s) of 2 type(s)\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("  NVIDIA DGX-2H x 1  16 x Tesla V100-SXM3-32GB-H (PCI 10de:1db8), not "
                         "a device Orrery knows; nvswitch, 150 GB/s per GPU; no NICs\n"
                         "    nodes: rank 0 (" + dir + "/node0.xml)\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("differences\n  - node rank 1: 4 GPUs where node rank 0 has 16; GPU "
                         "Tesla P100-SXM2-16GB (PCI 10de:15f9) where node rank 0 has Tesla "
                         "V100-SXM3-32GB-H (PCI 10de:1db8); fabric nvlink-mesh where node rank 0 "
                         "has nvswitch; nvlink-mesh at 40 GB/s per GPU where node rank 0 has "
                         "150 GB/s per GPU\n"),
            std::string::npos)
      << run.out;
  fs::remove_all(dir);
}

TEST(DiscoverUnderMpirun, TwoRanksOnTheSameMatrixAreOneNodeTypeOfCountTwoAndItsSpecIsWritten) {
  SKIP_WITHOUT_MPIRUN();
  const std::string dir = MakeTempDir("discover_mpi_same");
  const std::string out = dir + "/two-a100.json";
  const std::string args =
      "discover --nvidia-smi-topo " + kDgxA100 + " --device a100-sxm4-40gb --nic-gbps 200";
  CliRun run = RunUnderMpirun(2, args + " --out " + out);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("cluster discovered by 2 MPI ranks: 2 node(s) of 1 type(s)\n"
                         "  node x 2  8 x a100-sxm4-40gb (NVIDIA A100-SXM4-40GB); nvswitch, 300 "
                         "GB/s per GPU; 8 NIC(s) at 200 Gb/s\n"),
            std::string::npos)
      << run.out;
  EXPECT_EQ(run.out.find("differences"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("wrote " + out + "\n"), std::string::npos);
  CliRun back = RunOrrery("clusters --format json --cluster " + out);
  ASSERT_EQ(back.exit_code, 0) << back.err;
  Json doc = ParseJson(back.out, "stdout").value();
  EXPECT_EQ(doc.at("summary").at("total_nodes"), 2);
  EXPECT_EQ(doc.at("summary").at("total_devices"), 16);

  CliRun json = RunUnderMpirun(2, args + " --format json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  Json t = SummaryType(json);
  EXPECT_EQ(t.at("count"), 2);
  EXPECT_EQ(t.at("gpus"), 8);
  EXPECT_EQ(t.at("nvlink_gbps"), 300.0);
  EXPECT_EQ(t.at("nics"), 8);
  EXPECT_EQ(t.at("nic_gbps"), 200.0);
  fs::remove_all(dir);
}

TEST(DiscoverUnderMpirun, TwoRanksOnThisMachineAreOneNodeAndSaySo) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunUnderMpirun(2, "discover");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("cluster discovered by 2 MPI ranks: 1 node(s) of 1 type(s)\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("was reported by rank 0 and again by rank 1: counted once (one rank "
                         "per node is assumed)\n"),
            std::string::npos)
      << run.out;
}

TEST(DiscoverUnderMpirun, ABadFileOnOneRankIsReportedByRankZeroAndNothingIsWritten) {
  SKIP_WITHOUT_MPIRUN();
  const std::string dir = MakeTempDir("discover_mpi_bad");
  fs::create_symlink(kDgx2, dir + "/node0.xml");
  std::ofstream(dir + "/node1.xml") << ReadFile(kDgx2).value().substr(0, 20000);
  const std::string out = dir + "/spec.json";
  CliRun run =
      RunUnderMpirun(2, "discover --hwloc-xml '" + dir + "/node%r.xml' --out " + out);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("orrery discover: error: rank 1 ("), std::string::npos) << run.err;
  EXPECT_NE(run.err.find(dir + "/node1.xml: truncated hwloc XML export"), std::string::npos)
      << run.err;
  EXPECT_TRUE(run.out.empty()) << run.out;
  EXPECT_FALSE(fs::exists(out));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace orrery::testing
