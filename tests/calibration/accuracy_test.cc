// Issue #8's acceptance check: on this machine, with 2 MPI ranks, the
// simulator calibrated on profiler runs only predicts the executor's
// measured median iteration time within 15% for four plans of a small GPT
// (DP2, TP2, PP2 with 1F1B, ZeRO-3 with DP2), and orders every two plans
// whose measured times differ by more than 10% as the measurements do.
//
// The calibration comes from `orrery profile` (operator sweeps at tp 1 and
// 2, the optimizer step and the MPI collectives), five runs of it spread
// between the measurements, never from the runs being predicted; `orrery
// validate --calibration` executes each plan and simulates it. The test runs serially (RUN_SERIAL in
// tests/CMakeLists.txt): timings taken beside another test's processes on
// two cores would measure the contention, not the plan.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery {
namespace {

using testing::CliRun;
using testing::MakeTempDir;
using testing::OrreryBinary;
using testing::RunOrrery;
using testing::RunShell;

constexpr char kMpirun[] = "timeout 600 mpirun --oversubscribe --allow-run-as-root -np 2 ";

struct Outcome {
  double predicted = 0;
  double measured = 0;
  double error = 0;
};

TEST(CalibrationAccuracyTest, CalibratedSimulatorPredictsTheExecutorWithin15Percent) {
  const std::string dir = MakeTempDir("calibration-accuracy");
  const std::vector<std::pair<std::string, std::string>> plans = {
      {"dp2", "--dp 2"},
      {"tp2", "--tp 2"},
      {"pp2-1f1b", "--pp 2 --schedule 1f1b"},
      {"zero3-dp2", "--dp 2 --zero 3"},
  };
  // Five rounds, each a profiler run followed by one measurement of every
  // plan: on a shared 2-vCPU machine a whole minute can run 10-20% slower
  // than the next (another tenant's work), so the profiler runs are spread
  // over the same minutes as the measurements. Round r calibrates on the
  // profiler runs 1..r (costmodel::Calibrate merges repeated runs by their
  // median); the prediction compared is the last round's, from all five
  // profiler runs, against the median of the five measured medians. The
  // runs being predicted are never calibrated on.
  constexpr int kRuns = 5;
  std::map<std::string, std::vector<double>> measured;
  std::map<std::string, double> predicted;
  std::string profiles;
  for (int run = 0; run < kRuns; ++run) {
    const std::string profile_dir = dir + "/profile" + std::to_string(run);
    const CliRun profile =
        RunShell(std::string(kMpirun) + OrreryBinary() +
                 " profile --backend cpu --model gpt-tiny --tp 1,2 --micro-batch 2"
                 " --max-bytes 4M --out " + profile_dir);
    ASSERT_EQ(profile.exit_code, 0) << profile.err;
    profiles += " " + profile_dir;
    const CliRun calibrate = RunOrrery("calibrate --cluster cpu-local --from" + profiles +
                                       " --out " + dir + "/calibrated.json");
    ASSERT_EQ(calibrate.exit_code, 0) << calibrate.err;
    for (const auto& [name, flags] : plans) {
      const CliRun v = RunOrrery(
          "validate --model gpt-tiny --backend cpu --ranks 2 --micro-batch 2 --global-batch 16"
          " --iterations 10 --warmup 2 --format json --calibration " + dir +
          "/calibrated.json " + flags);
      ASSERT_EQ(v.exit_code, 0) << name << ": " << v.err;
      Result<Json> json = ParseJson(v.out, name);
      ASSERT_TRUE(json.ok()) << json.status().ToString() << "\n" << v.out;
      const double p = json->at("predicted_iteration_time_s").get<double>();
      const double m = json->at("measured_iteration_time_s").get<double>();
      EXPECT_NEAR(json->at("error").get<double>(), (p - m) / m, 1e-9) << name;
      predicted[name] = p;  // the last round's: calibrated on every profiler run
      measured[name].push_back(m);
    }
  }
  std::map<std::string, Outcome> outcomes;
  std::string table;
  for (const auto& [name, flags] : plans) {
    std::vector<double> m = measured[name];
    std::sort(m.begin(), m.end());
    Outcome o;
    o.predicted = predicted[name];
    o.measured = m[m.size() / 2];
    o.error = (o.predicted - o.measured) / o.measured;
    outcomes[name] = o;
    table += name + ": predicted " + std::to_string(o.predicted * 1e3) + " ms, measured " +
             std::to_string(o.measured * 1e3) + " ms (median of " + std::to_string(kRuns) +
             " runs), error " + std::to_string(o.error * 100) + "%\n";
  }
  for (const auto& [name, o] : outcomes) {
    EXPECT_LE(std::abs(o.error), 0.15) << name << "\n" << table;
  }
  for (const auto& [a, oa] : outcomes) {
    for (const auto& [b, ob] : outcomes) {
      if (a >= b) continue;
      if (std::abs(oa.measured - ob.measured) / std::min(oa.measured, ob.measured) <= 0.10) {
        continue;
      }
      EXPECT_EQ(oa.predicted < ob.predicted, oa.measured < ob.measured)
          << a << " vs " << b << "\n" << table;
    }
  }
  std::cout << table;
}

}  // namespace
}  // namespace orrery
