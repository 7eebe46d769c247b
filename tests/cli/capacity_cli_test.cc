// `orrery capacity`: a small sweep writes the CSV with the documented
// header (one row per point) and the JSON; two MPI ranks give the same
// answer as one; bad input names the file and field and writes nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/json.h"

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kHeader[] =
    "name,device,devices,devices_used,nodes,nic_gbps,oversubscription,memory_gib,"
    "price_per_device_hour,global_batch,seq_len,plan,iteration_s,tokens_per_s,days,"
    "device_hours,cost,mfu,bound,peak_memory_gib,days_nic_x2,days_memory_x2,days_devices_x2";

// Two H100 clusters of 8 and 16 devices at 200 and 400 Gb/s: 4 points,
// 10 distinct searches of GPT 1.7B.
std::string WriteSweep(const std::string& dir) {
  const std::string path = dir + "/sweep.json";
  EXPECT_TRUE(WriteFileAtomically(path, R"({"clusters": [{"name": "h100",
      "cluster": "dgx-h100", "devices": [8, 16], "nic_gbps": [200, 400],
      "price_per_device_hour": 2.5}]})")
                  .ok());
  return path;
}

std::string Args(const std::string& sweep) {
  return "capacity --model gpt-1.7b --tokens 300B --global-batch 16 --seq-len 1024 --sweep " +
         sweep;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(CapacityCli, WritesTheCsvAndJsonOfEveryPoint) {
  const std::string dir = MakeTempDir("capacity-cli");
  const std::string sweep = WriteSweep(dir);
  CliRun run = RunOrrery(Args(sweep) + " --out " + dir + "/out");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Capacity of gpt-1.7b for 3e+11 tokens"));
  EXPECT_THAT(run.err, HasSubstr("point 1/4 h100 8 devices 200 Gb/s: "));
  Result<std::string> csv = ReadFile(dir + "/out/capacity.csv");
  ASSERT_TRUE(csv.ok()) << csv.status().message();
  const std::vector<std::string> lines = Lines(*csv);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], kHeader);
  EXPECT_EQ(lines[1].rfind("h100,h100-sxm5-80gb,8,8,1,200,1,80,2.5,16,1024,\"", 0), 0u)
      << lines[1];
  Result<std::string> text = ReadFile(dir + "/out/capacity.json");
  ASSERT_TRUE(text.ok());
  Result<Json> json = ParseJson(*text, "capacity.json");
  ASSERT_TRUE(json.ok());
  ASSERT_EQ((*json)["points"].size(), 4u);
  for (const Json& p : (*json)["points"]) {
    ASSERT_TRUE(p["found"].get<bool>());
    // Arithmetic as documented.
    const double tokens_per_s = p["tokens_per_s"].get<double>();
    EXPECT_DOUBLE_EQ(tokens_per_s, 16.0 * 1024.0 / p["iteration_s"].get<double>());
    EXPECT_DOUBLE_EQ(p["days"].get<double>(), 3e11 / tokens_per_s / 86400.0);
    EXPECT_DOUBLE_EQ(p["cost"].get<double>(), p["device_hours"].get<double>() * 2.5);
  }
}

TEST(CapacityCli, TwoMpiRanksGiveTheSerialAnswer) {
  const std::string dir = MakeTempDir("capacity-mpi");
  const std::string sweep = WriteSweep(dir);
  CliRun serial = RunOrrery(Args(sweep) + " --out " + dir + "/serial");
  ASSERT_EQ(serial.exit_code, 0) << serial.err;
  CliRun mpi = RunShell("mpirun --oversubscribe --allow-run-as-root -np 2 " + OrreryBinary() +
                        " " + Args(sweep) + " --out " + dir + "/mpi");
  ASSERT_EQ(mpi.exit_code, 0) << mpi.err;
  EXPECT_THAT(mpi.err, HasSubstr("[rank 1] "));
  // The same table; only the directory written differs.
  const std::string table = serial.out.substr(0, serial.out.find("written:"));
  EXPECT_EQ(mpi.out.substr(0, mpi.out.find("written:")), table);
  EXPECT_THAT(table, HasSubstr("h100  16"));
  EXPECT_EQ(*ReadFile(dir + "/mpi/capacity.csv"), *ReadFile(dir + "/serial/capacity.csv"));
}

TEST(CapacityCli, BadInputNamesTheFieldAndWritesNothing) {
  const std::string dir = MakeTempDir("capacity-bad");
  const std::string sweep = dir + "/sweep.json";
  ASSERT_TRUE(WriteFileAtomically(sweep, R"({"clusters": [{"name": "h100",
      "cluster": "dgx-h100", "devices": [8, 12], "price_per_device_hour": 2.5}]})")
                  .ok());
  CliRun run = RunOrrery(Args(sweep) + " --out " + dir + "/out");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr(sweep));
  EXPECT_THAT(run.err, HasSubstr("clusters[0].devices[1]"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));

  CliRun tokens = RunOrrery("capacity --model gpt-1.7b --tokens 15X --sweep " + sweep);
  EXPECT_EQ(tokens.exit_code, 2);
  EXPECT_THAT(tokens.err, HasSubstr("--tokens"));
}

// A fault that a point's cluster lacks is found before any search runs.
TEST(CapacityCli, AFaultOutsideAPointNamesTheScenarioAndWritesNothing) {
  const std::string dir = MakeTempDir("capacity-fault");
  const std::string sweep = dir + "/sweep.json";
  ASSERT_TRUE(WriteFileAtomically(sweep, R"({"clusters": [{"name": "h100",
      "cluster": "dgx-h100", "devices": [8, 16], "price_per_device_hour": 2.5}],
      "faults": [{"name": "far-gpu", "slow_device": ["12:1.5"]}]})")
                  .ok());
  CliRun run = RunOrrery(Args(sweep) + " --out " + dir + "/out");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr(sweep));
  EXPECT_THAT(run.err, HasSubstr("'faults[0]' (far-gpu) on h100 8 devices"));
  EXPECT_THAT(run.err, Not(HasSubstr("point 1/")));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

TEST(CapacityCli, HelpTeachesTheSweepFile) {
  CliRun run = RunOrrery("capacity --help");
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("\"nic_gbps\""));
  EXPECT_THAT(run.out, HasSubstr("price_per_device_hour"));
  EXPECT_THAT(run.out, HasSubstr("mpirun"));
}

}  // namespace
}  // namespace orrery::testing
