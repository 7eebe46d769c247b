// `orrery simulate --slow-device / --degrade-link` (sim/faults.h): the
// healthy and faulted runs side by side in text and JSON, the JSON of a
// run without faults unchanged, bad faults rejected with exit code 2, and
// `orrery clusters --links`, the listing an unknown link name points at.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/json.h"

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// tp 8 within a node, dp 2 across the two nodes: rank 3 slows tp group
// 0-7, node1/nic0 carries rail 0 of the gradient all-reduce.
constexpr char kPlan[] =
    "simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 8 --pp 1 --micro-batch 2 "
    "--global-batch 16";

Json ParseOut(const CliRun& run) {
  Result<Json> j = ParseJson(run.out, "stdout");
  EXPECT_TRUE(j.ok()) << j.status().message() << "\n" << run.out;
  return j.ok() ? *j : Json();
}

TEST(FaultsCli, TextComparesTheHealthyAndFaultedRuns) {
  CliRun run = RunOrrery(std::string(kPlan) + " --slow-device 3:1.2 --degrade-link node1/nic0:2");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out,
              HasSubstr("Faults: slow device 3:1.2, degraded link node1/nic0:2\n"));
  EXPECT_THAT(run.out, HasSubstr("  baseline (healthy)  "));
  EXPECT_THAT(run.out, HasSubstr("  with the faults     "));
  EXPECT_THAT(run.out, HasSubstr(" ms per iteration (+"));
  EXPECT_THAT(run.out, HasSubstr("  bound by            stage 0, lane 0 (ranks 0-7: the slow "
                                 "device's lane)"));
  EXPECT_EQ(run.err, "");
}

TEST(FaultsCli, JsonAddsTheFaultsObjectAndReportsTheFaultedRun) {
  CliRun healthy = RunOrrery(std::string(kPlan) + " --format json");
  CliRun faulted = RunOrrery(std::string(kPlan) +
                             " --slow-device 3:1.2 --degrade-link node1/nic0:2 --format json");
  ASSERT_EQ(healthy.exit_code, 0) << healthy.err;
  ASSERT_EQ(faulted.exit_code, 0) << faulted.err;
  const Json h = ParseOut(healthy);
  const Json f = ParseOut(faulted);
  EXPECT_FALSE(h.contains("faults"));
  ASSERT_TRUE(f.contains("faults"));
  const Json& faults = f["faults"];
  ASSERT_EQ(faults["slow_devices"].size(), 1u);
  EXPECT_EQ(faults["slow_devices"][0]["rank"], 3);
  EXPECT_EQ(faults["slow_devices"][0]["factor"], 1.2);
  ASSERT_EQ(faults["degraded_links"].size(), 1u);
  EXPECT_EQ(faults["degraded_links"][0]["link"], "node1/nic0");
  EXPECT_EQ(faults["degraded_links"][0]["factor"], 2.0);
  // The baseline is the healthy run; the top-level figures the faulted one.
  const double base = faults["baseline_iteration_time_s"].get<double>();
  const double with = faults["iteration_time_s"].get<double>();
  EXPECT_EQ(base, h["iteration_time_s"].get<double>());
  EXPECT_EQ(with, f["iteration_time_s"].get<double>());
  EXPECT_GT(with, base);
  EXPECT_NEAR(faults["slowdown"].get<double>(), with / base - 1.0, 1e-12);
  EXPECT_EQ(faults["baseline_tokens_per_s"].get<double>(), h["tokens_per_s"].get<double>());
  EXPECT_EQ(faults["tokens_per_s"].get<double>(), f["tokens_per_s"].get<double>());
  EXPECT_EQ(faults["bound_ranks"].size(), 8u);
  // The rest of the healthy report keeps its keys.
  for (auto it = h.begin(); it != h.end(); ++it) EXPECT_TRUE(f.contains(it.key())) << it.key();
}

TEST(FaultsCli, AFactorOfOneCostsNothing) {
  CliRun run =
      RunOrrery(std::string(kPlan) + " --slow-device 0:1 --degrade-link node0/nic0:1 "
                                     "--format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const Json j = ParseOut(run);
  EXPECT_EQ(j["faults"]["slowdown"].get<double>(), 0.0);
}

TEST(FaultsCli, AnUnknownLinkPointsAtTheListing) {
  CliRun run = RunOrrery(std::string(kPlan) + " --degrade-link node1/nic9:2");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, HasSubstr("cluster dgx-h100"));
  EXPECT_THAT(run.err, HasSubstr("\"node1/nic9\""));
  EXPECT_THAT(run.err, HasSubstr("orrery clusters --cluster dgx-h100 --nodes 2 --links"));
}

TEST(FaultsCli, BadFaultTextIsAnErrorNamingTheFlag) {
  CliRun factor = RunOrrery(std::string(kPlan) + " --slow-device 3:0.5");
  EXPECT_EQ(factor.exit_code, 2);
  EXPECT_EQ(factor.out, "");
  EXPECT_THAT(factor.err, HasSubstr("--slow-device"));
  EXPECT_THAT(factor.err, HasSubstr("\"3:0.5\""));
  CliRun rank = RunOrrery(std::string(kPlan) + " --slow-device 16:2");
  EXPECT_EQ(rank.exit_code, 2);
  EXPECT_THAT(rank.err, HasSubstr("[0, 16)"));
  CliRun colon = RunOrrery(std::string(kPlan) + " --degrade-link node1/nic0");
  EXPECT_EQ(colon.exit_code, 2);
  EXPECT_THAT(colon.err, HasSubstr("--degrade-link"));
}

TEST(FaultsCli, HelpTeachesTheFlags) {
  CliRun run = RunOrrery("simulate --help");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("--slow-device RANK:FACTOR"));
  EXPECT_THAT(run.out, HasSubstr("--degrade-link LINK:FACTOR"));
  EXPECT_THAT(run.out, HasSubstr("--slow-device 13:1.2 --degrade-link node1/nic0:2"));
}

TEST(ClustersLinksCli, ListsEveryDirectedLinkByName) {
  CliRun text = RunOrrery("clusters --cluster dgx-h100 --nodes 2 --links");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("directed links of cluster dgx-h100 (2 node(s), 16 devices)"));
  EXPECT_THAT(text.out, HasSubstr("node1/nic0->leaf0.rail0"));
  EXPECT_THAT(text.out, HasSubstr("leaf0.rail0->node1/nic0"));
  EXPECT_THAT(text.out, HasSubstr("node0/dev0->node0/nvswitch"));

  CliRun json = RunOrrery("clusters --cluster dgx-h100 --nodes 2 --links --format json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const Json links = ParseOut(json);
  ASSERT_TRUE(links.is_array());
  bool found = false;
  for (const Json& link : links) {
    for (const char* key : {"name", "from", "to", "kind", "bandwidth_GBps", "latency_s"}) {
      EXPECT_TRUE(link.contains(key)) << key;
    }
    if (link["name"] == "node1/nic0->leaf0.rail0") {
      found = true;
      EXPECT_EQ(link["from"], "node1/nic0");
      EXPECT_EQ(link["to"], "leaf0.rail0");
      EXPECT_EQ(link["kind"], "nic-leaf");
      EXPECT_EQ(link["bandwidth_GBps"], 50);  // 400 Gb/s ConnectX-7
    }
  }
  EXPECT_TRUE(found);
  EXPECT_THAT(text.out, Not(HasSubstr("node2/")));  // --nodes 2: nodes 0 and 1

  CliRun bad = RunOrrery("clusters --links");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--links needs --cluster"));
}

}  // namespace
}  // namespace orrery::testing
