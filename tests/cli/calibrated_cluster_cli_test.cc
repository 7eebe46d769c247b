// A calibrated cluster file (a cluster spec with the "calibration" member
// `orrery calibrate` writes) taken by --cluster: `simulate`, `plan` and
// `search` load it with its calibration, say so in their reports, and the
// calibration's figures reach the simulation. Also the simulation options'
// precision-aware default (--grad-reduce-bytes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/json.h"

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;

// dgx-h100 (one node) as `orrery clusters` writes it, with a calibration of
// its device: a measured optimizer step of `optimizer_ns` per parameter
// and an overlap slowdown, from two (named) measurement files.
std::string WriteCalibratedCluster(const std::string& dir, double optimizer_ns) {
  const CliRun described = RunOrrery("clusters --cluster dgx-h100 --format json");
  EXPECT_EQ(described.exit_code, 0) << described.err;
  Result<Json> spec = ParseJson(described.out, "clusters output");
  EXPECT_TRUE(spec.ok()) << spec.status().message();
  Json calibration = Json::object();
  calibration["device"] = (*spec)["nodes"][0]["device"]["name"];
  calibration["sources"] = Json::array({"prof/compute_profile.json", "prof/all_reduce.log"});
  calibration["compute"] = Json::object();
  calibration["profiles"] = Json::array();
  calibration["optimizer_ns_per_parameter"] = optimizer_ns;
  calibration["collectives"] = Json::array();
  calibration["overlap_slowdown"] = 0.25;
  calibration["residuals"] = Json::array();
  (*spec)["calibration"] = calibration;
  const std::string path = dir + "/calibrated.json";
  std::ofstream(path) << DumpJson(*spec);
  return path;
}

constexpr char kPlan[] = " --model gpt-tiny --tp 1 --micro-batch 2 --free-communication";

TEST(CalibratedClusterCli, SimulateTakesTheCalibrationAndSaysSo) {
  const std::string dir = MakeTempDir("calibrated_cluster_simulate");
  const std::string path = WriteCalibratedCluster(dir, 1000.0);  // 1 µs per parameter

  const CliRun text = RunOrrery("simulate --cluster " + path + kPlan);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("calibrated: 2 measurements (" + path + ")\n"));

  const CliRun calibrated = RunOrrery("simulate --cluster " + path + kPlan + " --format json");
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.err;
  Result<Json> c = ParseJson(calibrated.out, "simulate output");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ((*c)["calibrated"], true);

  const CliRun preset = RunOrrery("simulate --cluster dgx-h100" + std::string(kPlan) +
                                  " --format json");
  ASSERT_EQ(preset.exit_code, 0) << preset.err;
  Result<Json> p = ParseJson(preset.out, "simulate output");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ((*p)["calibrated"], false);
  EXPECT_THAT(preset.out, ::testing::Not(HasSubstr("calibrated:")));

  // One stage, free communication: the iteration is m·(F + B) and then the
  // optimizer step, parameters × 1 µs with the calibration.
  const auto optimizer_of = [](const Json& r) {
    const Json& stage = r["per_stage"][0];
    return r["iteration_time_s"].get<double>() -
           r["micro_batches"].get<double>() * (stage["forward_per_micro_batch_s"].get<double>() +
                                               stage["backward_per_micro_batch_s"].get<double>());
  };
  const double parameters = (*c)["per_stage"][0]["parameters"].get<double>();
  EXPECT_NEAR(optimizer_of(*c), parameters * 1e-6, 1e-6 * parameters * 1e-6);
  // The preset's: 12 bytes per parameter at H100's streaming bandwidth, far less.
  EXPECT_LT(optimizer_of(*p), parameters * 1e-8);
}

TEST(CalibratedClusterCli, OverlapSlowdownFlagOverridesTheCalibrations) {
  // ZeRO-3 over dp 8 with communication: the calibration's σ = 0.25 slows
  // the compute that overlaps the parameter gathers; --overlap-slowdown 0
  // removes it.
  const std::string dir = MakeTempDir("calibrated_cluster_overlap");
  const std::string path = WriteCalibratedCluster(dir, 5.0);
  const std::string plan = " --model gpt-tiny --tp 1 --zero 3 --micro-batch 32 --format json";
  const CliRun calibrated = RunOrrery("simulate --cluster " + path + plan);
  const CliRun overridden = RunOrrery("simulate --cluster " + path + plan +
                                      " --overlap-slowdown 0");
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.err;
  ASSERT_EQ(overridden.exit_code, 0) << overridden.err;
  Result<Json> c = ParseJson(calibrated.out, "simulate output");
  Result<Json> o = ParseJson(overridden.out, "simulate output");
  ASSERT_TRUE(c.ok() && o.ok());
  EXPECT_GT((*c)["iteration_time_s"].get<double>(), (*o)["iteration_time_s"].get<double>());
}

TEST(CalibratedClusterCli, PlanAndSearchAcceptTheCalibratedFile) {
  const std::string dir = MakeTempDir("calibrated_cluster_search");
  const std::string path = WriteCalibratedCluster(dir, 5.0);
  const CliRun plan = RunOrrery("plan --cluster " + path + " --model gpt-tiny --tp 2");
  EXPECT_EQ(plan.exit_code, 0) << plan.err;

  // A measured optimizer step of 5 ns per parameter (the nominal H100 one is
  // 12 B at 2.7 TB/s, 4.5 ps) makes sharding the optimizer states pay: the
  // best plan uses ZeRO, where the preset's does not.
  const std::string search = " --model gpt-tiny --global-batch 16 --top 1";
  const CliRun calibrated = RunOrrery("search --cluster " + path + search + " --format json");
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.err;
  Result<Json> c = ParseJson(calibrated.out, "search output");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ((*c)["calibrated"], true);
  ASSERT_FALSE((*c)["plans"].empty());
  EXPECT_THAT((*c)["plans"][0]["summary"].get<std::string>(), HasSubstr(" z"));

  const CliRun preset = RunOrrery("search --cluster dgx-h100" + search + " --format json");
  ASSERT_EQ(preset.exit_code, 0) << preset.err;
  Result<Json> p = ParseJson(preset.out, "search output");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ((*p)["calibrated"], false);
  ASSERT_FALSE((*p)["plans"].empty());
  EXPECT_THAT((*p)["plans"][0]["summary"].get<std::string>(), ::testing::Not(HasSubstr(" z")));

  const CliRun text = RunOrrery("search --cluster " + path + search);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("calibrated: 2 measurements (" + path + ")\n"));
}

TEST(SimulateCli, GradientReductionOfAnFp32PlanIsFourBytesPerElementByDefault) {
  // The executor reduces fp32 gradients of an fp32 plan: the default
  // --grad-reduce-bytes follows the plan's precision.
  const std::string plan =
      "simulate --cluster dgx-h100 --model gpt-tiny --tp 1 --micro-batch 2 --format json";
  const auto time_of = [](const CliRun& run) {
    EXPECT_EQ(run.exit_code, 0) << run.err;
    Result<Json> j = ParseJson(run.out, "simulate output");
    EXPECT_TRUE(j.ok()) << j.status().message();
    return j.ok() ? (*j)["iteration_time_s"].get<double>() : 0.0;
  };
  const double fp32 = time_of(RunOrrery(plan + " --precision fp32"));
  EXPECT_EQ(fp32, time_of(RunOrrery(plan + " --precision fp32 --grad-reduce-bytes 4")));
  EXPECT_NE(fp32, time_of(RunOrrery(plan + " --precision fp32 --grad-reduce-bytes 2")));
  EXPECT_EQ(time_of(RunOrrery(plan)), time_of(RunOrrery(plan + " --grad-reduce-bytes 2")));
}

TEST(CalibratedClusterCli, CalibrationOfAnotherDeviceIsAnErrorNamingTheFile) {
  const std::string dir = MakeTempDir("calibrated_cluster_wrong_device");
  const std::string path = dir + "/calibrated.json";
  {
    const std::string good = WriteCalibratedCluster(dir, 5.0);
    Result<Json> spec = ReadJsonFile(good);
    ASSERT_TRUE(spec.ok()) << spec.status().message();
    (*spec)["calibration"]["device"] = "not-this-device";
    std::ofstream(path) << DumpJson(*spec);
  }
  const CliRun run = RunOrrery("simulate --cluster " + path + kPlan);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_THAT(run.err, HasSubstr("orrery simulate: error: " + path));
  EXPECT_THAT(run.err, HasSubstr("calibration.device"));
}

}  // namespace
}  // namespace orrery::testing
