// `orrery calibrate`: a cpu-local calibration from a profile directory
// written here (a compute profile and a two-rank nccl-tests log), its file,
// re-calibrating a calibrated cluster, failures that write nothing, and a
// dgx-a100-40gb calibration from Galvatron's real profiler files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// A compute profile of a CPU core at fp32: GEMMs at 20 GFLOP/s forward and
// 18 GFLOP/s backward, a norm that moves its bytes at 8 GB/s, an AdamW step.
std::string ComputeProfile() {
  std::ostringstream entries;
  bool first = true;
  for (const int s : {64, 128, 256}) {
    const double flops = 2.0 * s * s * s;
    const double forward_us = flops / 20e9 * 1e6;
    const double backward_us = 2 * flops / 18e9 * 1e6;
    entries << (first ? "" : ",\n") << "    {\"op_class\": \"gemm\", \"gemm\": {\"m\": " << s
            << ", \"n\": " << s << ", \"k\": " << s << ", \"batch\": 1}, \"forward_us\": "
            << forward_us << ", \"backward_us\": " << backward_us << "}";
    first = false;
  }
  entries << ",\n    {\"op_class\": \"norm\", \"name\": \"ln\", \"forward_flops\": 40960,"
             " \"forward_bytes\": 65536, \"backward_bytes\": 131072,"
             " \"forward_us\": 8.192, \"backward_us\": 16.384}";
  return "{\n  \"device\": \"test cpu core\",\n  \"precision\": \"fp32\",\n"
         "  \"source\": \"written by calibrate_cli_test\",\n  \"entries\": [\n" +
         entries.str() +
         "\n  ],\n  \"optimizer\": [{\"name\": \"adamw\", \"parameters\": 100000, "
         "\"step_us\": 500.0}]\n}\n";
}

// nccl-tests' all_reduce_perf log on 2 ranks of one host: 25 us + size /
// 2 GB/s algbw, so busbw = algbw (2(n-1)/n = 1).
std::string AllReduceLog() {
  std::ostringstream log;
  log << "# nThread 1 nGpus 1 minBytes 8 maxBytes 4194304 step: 2(factor) warmup iters: 5 "
         "iters: 20 agg iters: 1 validation: 1 graph: 0\n#\n# Using devices\n"
         "#  Rank  0 Group  0 Pid  10001 on testhost device  0 [0000:00:00] cpu\n"
         "#  Rank  1 Group  0 Pid  10002 on testhost device  1 [0000:00:00] cpu\n#\n"
         "#                                                              out-of-place"
         "                       in-place\n"
         "#       size         count      type   redop    root     time   algbw   busbw "
         "#wrong     time   algbw   busbw #wrong\n"
         "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)"
         "            (us)  (GB/s)  (GB/s)\n";
  for (int64_t size = 8; size <= 4 * 1024 * 1024; size *= 4) {
    const double time_us = 25.0 + static_cast<double>(size) / 2e9 * 1e6;
    const double algbw = static_cast<double>(size) / (time_us * 1e-6) / 1e9;
    char row[256];
    std::snprintf(row, sizeof(row),
                  "%12lld  %12lld     float     sum      -1  %7.2f  %6.2f  %6.2f      0  "
                  "%7.2f  %6.2f  %6.2f      0\n",
                  static_cast<long long>(size), static_cast<long long>(size / 4), time_us,
                  algbw, algbw, time_us, algbw, algbw);
    log << row;
  }
  log << "# Out of bounds values : 0 OK\n# Avg bus bandwidth    : 0.9\n#\n";
  return log.str();
}

// A profile directory as `orrery profile` leaves it, plus a note to skip.
std::string ProfileDir(const std::string& name) {
  const std::string dir = MakeTempDir(name);
  WriteText(dir + "/compute_profile.json", ComputeProfile());
  WriteText(dir + "/all_reduce.log", AllReduceLog());
  WriteText(dir + "/README.txt", "profiled by hand\n");
  return dir;
}

bool Exists(const std::string& path) { return std::filesystem::exists(path); }

TEST(CalibrateCli, CalibratesCpuLocalFromAProfileDirectoryAndWritesTheCluster) {
  const std::string dir = ProfileDir("calibrate_profile");
  const std::string out = MakeTempDir("calibrate_out") + "/calibrated.json";
  CliRun run = RunOrrery("calibrate --cluster cpu-local --from " + dir + " --out " + out);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_NE(run.out.find("Calibrated cpu-local (cpu-core) from 2 files, 1 skipped"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("read     " + dir + "/all_reduce.log"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("skipped  " + dir + "/README.txt"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("quantity"), std::string::npos);
  EXPECT_NE(run.out.find("calibrated cluster written to " + out), std::string::npos);

  Result<Json> doc = ReadJsonFile(out);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_EQ((*doc)["name"], "cpu-local");
  ASSERT_TRUE(doc->contains("calibration")) << DumpJson(*doc);
  const Json& calibration = (*doc)["calibration"];
  EXPECT_EQ(calibration["device"], "cpu-core");  // the cluster's device, not the profile's label
  ASSERT_EQ(calibration["sources"].size(), 2u);
  bool all_reduce = false;
  for (const Json& c : calibration["collectives"]) {
    if (c["op"] == "allreduce" && c["ranks"] == 2) all_reduce = true;
  }
  EXPECT_TRUE(all_reduce) << DumpJson(calibration["collectives"]);
  ASSERT_TRUE(calibration.contains("optimizer_ns_per_parameter"));
  EXPECT_NEAR(calibration["optimizer_ns_per_parameter"].get<double>(), 5.0, 0.01);
  EXPECT_FALSE(calibration["residuals"].empty());
}

TEST(CalibrateCli, AJsonReportListsChangesAndResidualsAndACalibratedClusterIsTheBefore) {
  const std::string dir = ProfileDir("calibrate_json");
  const std::string out = MakeTempDir("calibrate_json_out") + "/calibrated.json";
  CliRun first = RunOrrery("calibrate --cluster cpu-local --from " + dir + "/compute_profile.json " +
                           dir + "/all_reduce.log --out " + out + " --format json");
  ASSERT_EQ(first.exit_code, 0) << first.err << first.out;
  Result<Json> report = ParseJson(first.out, "calibrate's report");
  ASSERT_TRUE(report.ok()) << report.status().ToString() << first.out;
  EXPECT_EQ((*report)["before"], "nominal");
  EXPECT_EQ((*report)["out"], out);
  EXPECT_EQ((*report)["sources"].size(), 2u);
  ASSERT_FALSE((*report)["changes"].empty()) << first.out;
  for (const Json& change : (*report)["changes"]) {
    EXPECT_TRUE(change.contains("quantity") && change.contains("before") &&
                change.contains("after") && change.contains("residual"));
  }
  ASSERT_FALSE((*report)["residuals"].empty());
  for (const Json& r : (*report)["residuals"]) {
    EXPECT_GE(r["points"].get<int>(), 1);
    EXPECT_GE(r["max_relative_error"].get<double>(), r["rms_relative_error"].get<double>() - 1e-12);
  }

  // The calibrated file as --cluster: its calibration is the "before", so the
  // same measurements give every row equal before and after columns.
  CliRun again = RunOrrery("calibrate --cluster " + out + " --from " + dir + " --format json");
  ASSERT_EQ(again.exit_code, 0) << again.err << again.out;
  Result<Json> second = ParseJson(again.out, "calibrate's second report");
  ASSERT_TRUE(second.ok()) << again.out;
  EXPECT_EQ((*second)["before"], "calibration");
  EXPECT_TRUE((*second)["out"].is_null());
  ASSERT_EQ((*second)["changes"].size(), (*report)["changes"].size()) << again.out;
  for (const Json& change : (*second)["changes"]) {
    EXPECT_EQ(change["before"], change["after"]) << DumpJson(change);
  }
}

TEST(CalibrateCli, FailuresNameTheProblemAndWriteNothing) {
  const std::string out_dir = MakeTempDir("calibrate_fail");
  struct Case {
    std::string args;
    std::string expected;  // in the error message
  };
  const std::string eight_gpus =
      Fixture("nccl_tests/nccl_allreduce_1node_8xH100_dgx_nvswitch_dgxc-benchmarking.log");
  for (const Case& c : {
           // A collective on 8 ranks cannot have been measured on 2 cores.
           Case{"--cluster cpu-local --from " + eight_gpus, "nccl_allreduce_1node_8xH100"},
           Case{"--cluster cpu-local --from /no/such/profile", "/no/such/profile"},
           Case{"--cluster no-such-cluster --from " + eight_gpus, "--cluster"},
           Case{"--cluster cpu-local", "--from"},
           Case{"--cluster dgx-a100-40gb --precision fp5 --from " + eight_gpus, "--precision"},
           // Whole-layer timings without the model they were measured on.
           Case{"--cluster dgx-a100-40gb --from " +
                    Fixture("galvatron/main_gpt_llama2-7b/"
                            "computation_profiling_bf16_llama2-7b_all.json"),
                "computation_profiling_bf16_llama2-7b_all.json"},
       }) {
    const std::string out = out_dir + "/calibrated.json";
    CliRun run = RunOrrery("calibrate " + c.args + " --out " + out);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.out;
    EXPECT_NE(run.err.find("orrery calibrate: error:"), std::string::npos) << run.err;
    EXPECT_NE(run.err.find(c.expected), std::string::npos) << c.args << "\n" << run.err;
    EXPECT_FALSE(Exists(out)) << c.args;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
  EXPECT_TRUE(std::filesystem::is_empty(out_dir));  // not even a temporary file
}

TEST(CalibrateCli, CalibratesADgxA100FromGalvatronsProfilesOfLlama2_7b) {
  const std::string out = MakeTempDir("calibrate_galvatron") + "/a100.json";
  const std::string hw = Fixture("galvatron/hardware_configs/");
  CliRun run = RunOrrery(
      "calibrate --cluster dgx-a100-40gb --model llama2-7b --format json --out " + out +
      " --from " + hw + "allreduce_bandwidth_1nodes_8gpus_per_node.json " + hw +
      "p2p_bandwidth_1nodes_8gpus_per_node.json " + hw + "overlap_coefficient.json " +
      Fixture("galvatron/main_gpt_llama2-7b/"
              "computation_profiling_bf16_llama2-7b_all.json"));
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  Result<Json> report = ParseJson(run.out, "calibrate's report");
  ASSERT_TRUE(report.ok()) << run.out;
  EXPECT_EQ((*report)["device"], "a100-sxm4-40gb");
  EXPECT_EQ((*report)["sources"].size(), 4u);
  // Galvatron's overlap coefficient 1.125552573612729 is 1 + sigma.
  EXPECT_NEAR((*report)["overlap_slowdown"].get<double>(), 0.125552573612729, 1e-9);
  EXPECT_FALSE((*report)["changes"].empty());

  Result<Json> doc = ReadJsonFile(out);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  const Json& calibration = (*doc)["calibration"];
  EXPECT_EQ(calibration["device"], "a100-sxm4-40gb");
  bool eight_rank_all_reduce = false;
  for (const Json& c : calibration["collectives"]) {
    if (c["op"] == "allreduce" && c["ranks"] == 8) eight_rank_all_reduce = true;
  }
  EXPECT_TRUE(eight_rank_all_reduce) << DumpJson(calibration["collectives"]);
  bool layer_scale = false;
  for (const Json& r : calibration["residuals"]) {
    if (r["quantity"].get<std::string>().find("llama2-7b") != std::string::npos) {
      layer_scale = true;
    }
  }
  EXPECT_TRUE(layer_scale) << DumpJson(calibration["residuals"]);
}

TEST(CalibrateCli, HelpTeachesWithExamples) {
  CliRun run = RunOrrery("calibrate --help");
  ASSERT_EQ(run.exit_code, 0);
  for (const char* expected : {"Usage: orrery calibrate --cluster C", "--from", "--model",
                               "--precision", "--out", "orrery profile --backend cpu --out prof",
                               "computation_profiling_bf16_llama2-7b_all.json",
                               "Examples:"}) {
    EXPECT_NE(run.out.find(expected), std::string::npos) << expected;
  }
}

}  // namespace
}  // namespace orrery::testing
