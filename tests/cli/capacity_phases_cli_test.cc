// `orrery capacity --phases`: every sweep point planned phase by phase
// (search/capacity_phases.h). A two-phase GPT 1.7B schedule on two small
// H100 points: each point's total is its phases plus its switches, never
// more than the best single plan; the device-hours follow the phases'
// devices; a point where nothing fits is a row; conflicting options and a
// phase's own cluster are refused before anything runs or is written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
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
    "name,device,devices,nodes,nic_gbps,oversubscription,memory_gib,price_per_device_hour,"
    "days,phase_days,switches,switch_s,one_plan_days,saving_pct,device_hours,cost,plans,"
    "one_plan";

// One H100 node and two, at 400 Gb/s.
std::string WriteSweep(const std::string& dir, const std::string& extra = "") {
  const std::string path = dir + "/sweep.json";
  EXPECT_TRUE(WriteFileAtomically(path, R"({"clusters": [{"name": "h100",
      "cluster": "dgx-h100", "nodes": [1, 2], "nic_gbps": [400],
      "price_per_device_hour": 2.5}])" + extra + "}")
                  .ok());
  return path;
}

// A short phase of small batches, then long sequences at a larger batch.
std::string WritePhases(const std::string& dir, const std::string& second_extra = "") {
  const std::string path = dir + "/phases.json";
  EXPECT_TRUE(WriteFileAtomically(path, R"({"phases": [
      {"name": "short", "tokens": "2B", "seq_len": 1024, "global_batch": 16},
      {"name": "long", "tokens": "20B", "seq_len": 4096, "global_batch": 64)" +
                                              second_extra + R"(}],
      "checkpoint": {"write_gb_per_s": 50}})")
                  .ok());
  return path;
}

double Sum(const Json& phases, const char* key) {
  double s = 0;
  for (const Json& p : phases) {
    if (!p[key].is_null()) s += p[key].get<double>();
  }
  return s;
}

TEST(CapacityPhasesCli, EveryPointTotalsItsPhasesAndSwitchesAndBeatsOnePlan) {
  const std::string dir = MakeTempDir("capacity-phases");
  const std::string args = "capacity --model gpt-1.7b --phases " + WritePhases(dir) +
                           " --sweep " + WriteSweep(dir) + " --out " + dir + "/out";
  CliRun run = RunOrrery(args);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Capacity of gpt-1.7b for 2.2e+10 tokens in 2 phases"));
  EXPECT_THAT(run.err, HasSubstr("point 1/2 h100 8 devices 400 Gb/s: "));
  EXPECT_THAT(run.err, HasSubstr("point 2/2 h100 16 devices 400 Gb/s: "));

  Result<std::string> csv = ReadFile(dir + "/out/capacity-phases.csv");
  ASSERT_TRUE(csv.ok()) << csv.status().message();
  std::istringstream lines(*csv);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, kHeader);
  int rows = 0;
  while (std::getline(lines, line)) ++rows;
  EXPECT_EQ(rows, 2);

  Result<std::string> text = ReadFile(dir + "/out/capacity-phases.json");
  ASSERT_TRUE(text.ok());
  Result<Json> json = ParseJson(*text, "capacity-phases.json");
  ASSERT_TRUE(json.ok());
  ASSERT_EQ((*json)["points"].size(), 2u);
  EXPECT_EQ((*json)["scale"], "analytical");
  int switched_points = 0;
  for (const Json& p : (*json)["points"]) {
    ASSERT_TRUE(p["found"].get<bool>()) << p["why_not"];
    const Json& phases = p["phases"];
    ASSERT_EQ(phases.size(), 2u);
    const double total = p["total_seconds"].get<double>();
    const double switches = Sum(phases, "switch_in_seconds");
    int switched = 0;
    for (const Json& ph : phases) switched += ph["switch_in_seconds"].is_null() ? 0 : 1;
    // The total is what the phases and the switches report, nothing else.
    EXPECT_NEAR(total, Sum(phases, "seconds") + switches, 1e-9 * total);
    EXPECT_NEAR(p["switch_seconds"].get<double>(), switches, 1e-9 * total);
    EXPECT_EQ(p["switches"].get<int>(), switched);
    switched_points += switched > 0 ? 1 : 0;
    EXPECT_DOUBLE_EQ(p["days"].get<double>(), total / 86400.0);
    // The phase-wise plans include the best single plan's path.
    ASSERT_FALSE(p["one_plan_seconds"].is_null());
    EXPECT_LE(total, p["one_plan_seconds"].get<double>() * (1 + 1e-12));
    EXPECT_GE(p["saving_percent"].get<double>(), -1e-9);
    // Every phase on every device of the point.
    const double devices = p["devices"].get<double>();
    EXPECT_NEAR(p["device_hours"].get<double>(), total * devices / 3600.0, 1e-9 * total);
    EXPECT_DOUBLE_EQ(p["cost"].get<double>(), p["device_hours"].get<double>() * 2.5);
    for (const Json& ph : phases) EXPECT_FALSE(ph["plan"].is_null());
  }
  // On 16 devices the long phase switches plans (a switch the sums count).
  EXPECT_GE(switched_points, 1);
}

// A phase with "nodes" runs on that many nodes of the point's cluster and
// pays for them; no plan then runs in both phases.
TEST(CapacityPhasesCli, APhaseWithNodesRunsOnThatManyNodesOfThePoint) {
  const std::string dir = MakeTempDir("capacity-phases-nodes");
  const std::string sweep = dir + "/one.json";
  ASSERT_TRUE(WriteFileAtomically(sweep, R"({"clusters": [{"name": "h100",
      "cluster": "dgx-h100", "nodes": [1], "price_per_device_hour": 2}]})")
                  .ok());
  CliRun run = RunOrrery("capacity --model gpt-1.7b --format json --phases " +
                         WritePhases(dir, R"(, "nodes": 2)") + " --sweep " + sweep);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Result<Json> json = ParseJson(run.out, "stdout");
  ASSERT_TRUE(json.ok()) << run.out;
  const Json& p = (*json)["points"][0];
  ASSERT_TRUE(p["found"].get<bool>()) << p["why_not"];
  const Json& phases = p["phases"];
  EXPECT_EQ(phases[0]["devices"].get<int>(), 8);
  EXPECT_EQ(phases[1]["devices"].get<int>(), 16);
  EXPECT_TRUE(p["one_plan_seconds"].is_null());
  EXPECT_TRUE(p["saving_percent"].is_null());
  ASSERT_EQ(p["switches"].get<int>(), 1);
  const double s0 = phases[0]["seconds"].get<double>();
  const double s1 = phases[1]["seconds"].get<double>();
  const double sw = phases[1]["switch_in_seconds"].get<double>();
  // Each phase pays for its devices; the switch for the larger world.
  EXPECT_NEAR(p["device_hours"].get<double>(), (s0 * 8 + s1 * 16 + sw * 16) / 3600.0,
              1e-9 * p["device_hours"].get<double>());
}

// Llama 3 70B does not fit one H100 node: the point is a row saying why,
// not an error, as a plain sweep's "no plan fits".
TEST(CapacityPhasesCli, APointWhereNoScheduleFitsIsARowNotAnError) {
  const std::string dir = MakeTempDir("capacity-phases-nofit");
  const std::string sweep = dir + "/one.json";
  ASSERT_TRUE(WriteFileAtomically(sweep, R"({"clusters": [{"name": "h100",
      "cluster": "dgx-h100", "nodes": [1], "price_per_device_hour": 2}]})")
                  .ok());
  CliRun run = RunOrrery("capacity --model llama3-70b --phases " + WritePhases(dir) +
                         " --sweep " + sweep + " --out " + dir + "/out");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("no schedule fits"));
  EXPECT_THAT(run.out, HasSubstr("phases[0] (short): no plan of llama3-70b fits 8 devices"));
  Result<std::string> json = ReadFile(dir + "/out/capacity-phases.json");
  ASSERT_TRUE(json.ok());
  const Json p = (*ParseJson(*json, "capacity-phases.json"))["points"][0];
  EXPECT_FALSE(p["found"].get<bool>());
  EXPECT_TRUE(p["days"].is_null());
  EXPECT_TRUE(p["cost"].is_null());
}

TEST(CapacityPhasesCli, RefusesTokensBatchAndSequenceBesidePhases) {
  const std::string dir = MakeTempDir("capacity-phases-flags");
  const std::string base = "capacity --model gpt-1.7b --phases " + WritePhases(dir) +
                           " --sweep " + WriteSweep(dir) + " --out " + dir + "/out";
  for (const char* flag : {"--tokens 300B", "--global-batch 16", "--seq-len 1024"}) {
    CliRun run = RunOrrery(base + " " + flag);
    EXPECT_EQ(run.exit_code, 2) << flag;
    const std::string name = std::string(flag).substr(0, std::string(flag).find(' '));
    EXPECT_THAT(run.err, HasSubstr(name + " and --phases")) << run.err;
    EXPECT_THAT(run.err, Not(HasSubstr("point 1/")));
  }
  CliRun sensitivity = RunOrrery(base + " --sensitivity nic");
  EXPECT_EQ(sensitivity.exit_code, 2);
  EXPECT_THAT(sensitivity.err, HasSubstr("--sensitivity and --phases"));
  const std::string faults = WriteSweep(
      dir, R"(, "faults": [{"name": "slow", "slow_device": ["0:1.5"]}])");
  CliRun fault = RunOrrery("capacity --model gpt-1.7b --phases " + dir +
                           "/phases.json --sweep " + faults);
  EXPECT_EQ(fault.exit_code, 2);
  EXPECT_THAT(fault.err, HasSubstr(faults + ": field 'faults'"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

TEST(CapacityPhasesCli, RefusesAPhaseNamingItsOwnCluster) {
  const std::string dir = MakeTempDir("capacity-phases-cluster");
  const std::string phases = WritePhases(dir, R"(, "cluster": "dgx-a100-80gb")");
  CliRun run = RunOrrery("capacity --model gpt-1.7b --phases " + phases + " --sweep " +
                         WriteSweep(dir) + " --out " + dir + "/out");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr(phases + ": phases[1] (long): field 'cluster'"));
  EXPECT_THAT(run.err, HasSubstr("dgx-a100-80gb"));
  EXPECT_THAT(run.err, Not(HasSubstr("point 1/")));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

TEST(CapacityPhasesCli, HelpTeachesPhases) {
  CliRun run = RunOrrery("capacity --help");
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.out, HasSubstr("--phases FILE"));
  EXPECT_THAT(run.out, HasSubstr("capacity-phases.csv"));
}

}  // namespace
}  // namespace orrery::testing
