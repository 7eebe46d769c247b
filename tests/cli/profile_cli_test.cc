// `orrery profile`: what it prints and writes, and bad flags named. (cli_test
// links only orrery_core: exec_test's profiler tests read the files back
// with the traces parsers.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/json.h"
#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

bool HaveMpirun() { return RunShell("command -v mpirun >/dev/null 2>&1").exit_code == 0; }

std::string Mpirun(int ranks) {
  return "mpirun --oversubscribe --allow-run-as-root -np " + std::to_string(ranks) + " " +
         OrreryBinary() + " ";
}

TEST(ProfileCli, WritesAComputeProfileOfGptTinysShapes) {
  const std::string dir = MakeTempDir("profile_compute");
  CliRun run = RunOrrery("profile --backend cpu --what compute --repetitions 3 --out " + dir);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_NE(run.out.find("gemm 64x192x64"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("GFLOP/s"), std::string::npos);
  Result<Json> doc = ReadJsonFile(dir + "/compute_profile.json");
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_EQ((*doc)["precision"], "fp32");
  int gemms = 0;
  for (const Json& e : (*doc)["entries"]) {
    if (e["op_class"] == "gemm") ++gemms;
  }
  EXPECT_EQ(gemms, 5);  // gpt-tiny's five GEMM shapes
  // (exec_test's ProfileCli tests read it back with traces::LoadComputeProfile.)
}

TEST(ProfileCli, UnderMpirunPrintsNcclTestsTablesAndWritesALogPerCollective) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not found";
  const std::string dir = MakeTempDir("profile_collectives");
  CliRun run = RunShell(Mpirun(2) +
                        "profile --backend cpu --what collectives --max-bytes 64K "
                        "--iterations 5 --out " + dir);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  // nccl-tests' columns, printed once (by rank 0).
  EXPECT_NE(run.out.find("size         count      type   redop    root     time   algbw   busbw"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("# Collective test starting: all_reduce_perf"), std::string::npos);
  EXPECT_EQ(run.out.find("# Collective test starting: all_reduce_perf"),
            run.out.rfind("# Collective test starting: all_reduce_perf"));
  EXPECT_NE(run.out.find("#  Rank  1 Group  0 Pid"), std::string::npos);
  EXPECT_NE(run.out.find("       65536         16384     float     sum      -1"),
            std::string::npos);
  for (const char* name : {"all_reduce", "all_gather", "reduce_scatter", "alltoall",
                           "sendrecv"}) {
    CliRun cat = RunShell("cat " + dir + "/" + name + ".log");
    ASSERT_EQ(cat.exit_code, 0) << name;
    EXPECT_NE(cat.out.find(std::string("# Collective test starting: ") + name + "_perf"),
              std::string::npos);
    EXPECT_NE(cat.out.find("# Out of bounds values : 0 OK"), std::string::npos) << cat.out;
    EXPECT_NE(cat.out.find("# Avg bus bandwidth    : "), std::string::npos);
  }
}

TEST(ProfileCli, ListsOfTpAndMicroBatchSweepIntoOneProfileWithOptimizerSteps) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not found";
  const std::string dir = MakeTempDir("profile_sweep");
  CliRun run = RunShell("timeout 120 " + Mpirun(2) +
                        "profile --backend cpu --what compute --repetitions 2 --warmup 1 "
                        "--tp 1,2 --micro-batch 2 --out " + dir);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_NE(run.out.find("# tp 1, micro-batch 2"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("# tp 2, micro-batch 2"), std::string::npos) << run.out;
  Result<Json> doc = ReadJsonFile(dir + "/compute_profile.json");
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  // gpt-tiny's qkv GEMM at 128 tokens: n = 192 at tp 1, 96 at tp 2.
  bool qkv1 = false, qkv2 = false;
  int cores = 0;
  for (const Json& e : (*doc)["entries"]) {
    EXPECT_TRUE(e.contains("forward_bytes")) << e.dump();
    if (e.contains("gemm") && e["gemm"]["m"] == 128 && e["gemm"]["k"] == 64) {
      qkv1 = qkv1 || e["gemm"]["n"] == 192;
      qkv2 = qkv2 || e["gemm"]["n"] == 96;
    }
    if (e.value("name", "") == "attn.core") {
      ++cores;
      EXPECT_EQ(e["covers"], Json::array({"attn.qk", "attn.softmax", "attn.av"}));
    }
  }
  EXPECT_TRUE(qkv1 && qkv2);
  EXPECT_EQ(cores, 2);  // 4 heads at tp 1, 2 at tp 2
  ASSERT_TRUE(doc->contains("optimizer"));
  // Per tp: P/2, P and 2P parameters (none coincide for gpt-tiny).
  EXPECT_EQ((*doc)["optimizer"].size(), 6u);
  for (const Json& m : (*doc)["optimizer"]) {
    EXPECT_EQ(m["name"], "adamw");
    EXPECT_GT(m["step_us"].get<double>(), 0);
  }
}

TEST(ProfileCli, BadFlagsExitTwoNamingTheFlag) {
  struct Case {
    std::string args;
    std::string flag;
  };
  for (const Case& c : {Case{"--backend tpu --out /tmp/x", "--backend"},
                        Case{"--backend cpu", "--out"},
                        Case{"--backend cpu --out /tmp/x --what gpus", "--what"},
                        Case{"--backend cpu --out /tmp/x --max-bytes 1T", "--max-bytes"},
                        Case{"--backend cpu --out /tmp/x --ops allsum", "--ops"},
                        Case{"--backend cpu --out /tmp/x --tp 0", "--tp"},
                        Case{"--backend cpu --out /tmp/x --tp 1,x", "--tp"},
                        Case{"--backend cpu --out /tmp/x --micro-batch 2,", "--micro-batch"},
                        Case{"--backend cpu --out /tmp/x --iterations 0", "--iterations"},
                        Case{"--backend cpu --out /tmp/x --model no-such-model", "--model"}}) {
    CliRun run = RunOrrery("profile " + c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args;
    EXPECT_NE(run.err.find(c.flag), std::string::npos) << c.args << ": " << run.err;
    EXPECT_TRUE(run.out.empty()) << c.args;
  }
}

TEST(ProfileCli, HelpTeachesTheMpirunInvocation) {
  CliRun run = RunOrrery("profile --help");
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("mpirun"), std::string::npos);
  EXPECT_NE(run.out.find("busbw"), std::string::npos);
  EXPECT_NE(run.out.find("--max-bytes"), std::string::npos);
  EXPECT_NE(run.out.find("--tp N[,N...]"), std::string::npos);
  EXPECT_NE(run.out.find("AdamW"), std::string::npos);
}

}  // namespace
}  // namespace orrery::testing
