// `orrery execute` through the real binary: the correctness matrix — every
// parallel layout, schedule, ZeRO stage and recomputation run under
// `mpirun` trains exactly as the single-rank run does (the same loss at
// every step, the same parameters after three AdamW steps) — plus the
// refusal of a plan that does not fit the launched ranks, the JSON report's
// keys and the execution trace.
//
// Tolerances. All runs are fp32 on the same data from the same initial
// values; a plan changes only the order of floating-point sums (tp
// all-reduces, dp reductions, micro-batch accumulation), so gradients agree
// to rounding: a relative 1e-7 or so, or an absolute ~1e-11 for elements
// summed from terms of ~1e-4. Losses are compared at 1e-5 relative.
// Parameters are compared at 3e-5 absolute after 3 AdamW steps of lr 1e-3.
// Adam normalizes: an element's update lr·m̂/(√v̂+ε) is ±lr whatever the
// gradient's size, except where |g| is near ε = 1e-8, where it is about
// lr·g/(|g|+ε). For gradients at the level of the rounding (|g| ≲ 1e-10)
// the summation order can change g, even its sign, so the update can move
// by up to ~2·lr·|g|/ε ≈ 2·10⁻⁵·lr/10⁻³ per step. Measured: the worst
// element differs by 9.2e-6 (tp 2 × pp 2 × dp 2), and by 8.5e-7 for the
// same tp 2 run at lr 1e-4 — proportional to lr, as this predicts.
// 3e-5 = 3 steps × lr × 1e-2 bounds it; an error in the math moves
// parameters by ~lr = 1e-3 from the first step.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/json.h"
#include "tests/cli/cli_runner.h"
#include "traces/execution_trace.h"

namespace orrery::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kMpirun[] = "mpirun --oversubscribe --allow-run-as-root -np ";
// 8 samples of 32 tokens, 3 steps, no warm-up: a second or two per run.
constexpr char kCommon[] =
    " --backend cpu --iterations 3 --warmup 0 --format json --global-batch 8 --seq-len 32";

struct Training {
  std::vector<double> losses;
  std::vector<double> grad_norms;
  std::map<std::string, std::vector<double>> parameters;
};

std::string Command(int ranks, const std::string& args) {
  const std::string binary = OrreryBinary() + " execute " + args;
  return ranks == 1 ? binary : kMpirun + std::to_string(ranks) + " " + binary;
}

// Runs `orrery execute --model model <flags>` on `ranks` ranks and reads
// its losses and saved parameters; fails the test (returning empty) when
// the run fails.
Training Train(const std::string& model, const std::string& flags, int ranks,
               const std::string& tag) {
  const std::string dir = MakeTempDir("execute-" + tag);
  const std::string params = dir + "/parameters.json";
  CliRun run = RunShell(Command(ranks, "--model " + model + kCommon + " --save-parameters " +
                                           params + " " + flags));
  EXPECT_EQ(run.exit_code, 0) << run.err << run.out;
  if (run.exit_code != 0) return {};
  Result<Json> report = ParseJson(run.out, "stdout");
  EXPECT_TRUE(report.ok()) << report.status().message();
  Result<Json> saved = ReadJsonFile(params);
  EXPECT_TRUE(saved.ok()) << saved.status().message();
  if (!report.ok() || !saved.ok()) return {};
  Training t;
  t.losses = (*report)["losses"].get<std::vector<double>>();
  t.grad_norms = (*report)["grad_norms"].get<std::vector<double>>();
  for (const auto& [name, values] : saved->items()) {
    t.parameters[name] = values.get<std::vector<double>>();
  }
  return t;
}

// The single-rank run of `model`, once per test binary run.
const Training& Reference(const std::string& model) {
  static std::map<std::string, Training> cache;
  auto it = cache.find(model);
  if (it == cache.end()) it = cache.emplace(model, Train(model, "", 1, model + "-reference")).first;
  return it->second;
}

struct Layout {
  const char* name;
  const char* model;
  int ranks;
  const char* flags;
};

// What ctest and gtest print for a layout.
void PrintTo(const Layout& layout, std::ostream* os) {
  *os << layout.model << " on " << layout.ranks << " ranks: " << layout.flags;
}

class ExecuteMatchesTheSingleRankRun : public ::testing::TestWithParam<Layout> {};

TEST_P(ExecuteMatchesTheSingleRankRun, LossesAndParametersAfterThreeSteps) {
  const Layout& layout = GetParam();
  const Training& reference = Reference(layout.model);
  ASSERT_EQ(reference.losses.size(), 3u);
  ASSERT_FALSE(reference.parameters.empty());
  const Training run = Train(layout.model, layout.flags, layout.ranks, layout.name);
  ASSERT_EQ(run.losses.size(), reference.losses.size());
  for (size_t i = 0; i < run.losses.size(); ++i) {
    EXPECT_NEAR(run.losses[i], reference.losses[i], 1e-5 * std::abs(reference.losses[i]))
        << "step " << i;
  }
  // The gradient's norm catches what AdamW's scale invariance hides from
  // the losses and parameters: gradients averaged over replicas where they
  // should be summed, a tp-replicated tensor's gradient counted twice.
  ASSERT_EQ(run.grad_norms.size(), reference.grad_norms.size());
  for (size_t i = 0; i < run.grad_norms.size(); ++i) {
    EXPECT_NEAR(run.grad_norms[i], reference.grad_norms[i], 1e-4 * reference.grad_norms[i])
        << "step " << i;
  }
  // Training moved the parameters, so agreeing on them means something.
  EXPECT_LT(reference.losses[2], reference.losses[0]);
  ASSERT_EQ(run.parameters.size(), reference.parameters.size());
  for (const auto& [name, expected] : reference.parameters) {
    auto it = run.parameters.find(name);
    ASSERT_NE(it, run.parameters.end()) << name << " missing";
    ASSERT_EQ(it->second.size(), expected.size()) << name;
    double worst = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      worst = std::max(worst, std::abs(it->second[i] - expected[i]));
    }
    EXPECT_LE(worst, 3e-5) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, ExecuteMatchesTheSingleRankRun,
    ::testing::Values(
        Layout{"Tp2", "gpt-tiny", 2, "--tp 2"},
        Layout{"Tp2SequenceParallel", "gpt-tiny", 2, "--tp 2 --sequence-parallel"},
        Layout{"Pp2Gpipe", "gpt-tiny", 2, "--pp 2 --schedule gpipe --micro-batch 2"},
        Layout{"Pp2OneFOneB", "gpt-tiny", 2, "--pp 2 --schedule 1f1b --micro-batch 2"},
        Layout{"Pp2OneFOneBManyMicroBatches", "gpt-tiny", 2, "--pp 2 --micro-batch 1"},
        Layout{"Pp2Interleaved", "gpt-tiny", 2, "--pp 2 --vpp 2 --micro-batch 1"},
        Layout{"Dp2", "gpt-tiny", 2, "--micro-batch 2"},
        Layout{"Dp2SmallBuckets", "gpt-tiny", 2, "--micro-batch 2 --bucket-parameters 20000"},
        Layout{"Dp2Zero1", "gpt-tiny", 2, "--micro-batch 2 --zero 1 --bucket-parameters 20000"},
        Layout{"Dp2Zero2", "gpt-tiny", 2, "--micro-batch 2 --zero 2"},
        Layout{"Dp2Zero3", "gpt-tiny", 2, "--micro-batch 2 --zero 3"},
        Layout{"Pp2Dp2Zero1TiedEmbeddings", "gpt-tiny", 4, "--pp 2 --micro-batch 1 --zero 1"},
        Layout{"Tp2Pp2Dp2", "gpt-tiny", 8, "--tp 2 --pp 2 --micro-batch 1"},
        Layout{"FullRecompute", "gpt-tiny", 2, "--pp 2 --micro-batch 2 --recompute full"},
        Layout{"SelectiveRecompute", "gpt-tiny", 2, "--tp 2 --recompute selective"},
        Layout{"LlamaTp2", "llama-tiny", 2, "--tp 2"},
        Layout{"LlamaPp2", "llama-tiny", 2, "--pp 2 --micro-batch 2"},
        Layout{"LlamaDp2Zero3", "llama-tiny", 2, "--micro-batch 2 --zero 3"}),
    [](const ::testing::TestParamInfo<Layout>& info) { return std::string(info.param.name); });

TEST(ExecuteCli, RefusesAPlanThatNeedsMoreRanksThanTheJobHas) {
  CliRun run = RunShell(Command(2, "--model gpt-tiny --tp 2 --pp 4 --dp 2" + std::string(kCommon)));
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("orrery execute: error: the plan cannot run on 2 ranks:"));
  EXPECT_THAT(run.err, HasSubstr("plan needs 16 ranks (tp 2 × pp 4 × dp 2), the job has 2"));
  EXPECT_EQ(run.out, "");
}

// --slow-rank injects a straggler: the same losses (only time changes),
// the injection reported; a rank outside the job is refused.
TEST(ExecuteCli, ASlowRankChangesTheTimeNotTheTraining) {
  CliRun healthy = RunShell(Command(2, "--model gpt-tiny --dp 2" + std::string(kCommon)));
  ASSERT_EQ(healthy.exit_code, 0) << healthy.err;
  CliRun slow =
      RunShell(Command(2, "--model gpt-tiny --dp 2 --slow-rank 1:3" + std::string(kCommon)));
  ASSERT_EQ(slow.exit_code, 0) << slow.err;
  const Json h = *ParseJson(healthy.out, "healthy");
  const Json f = *ParseJson(slow.out, "slow");
  EXPECT_EQ(f["losses"], h["losses"]);
  ASSERT_EQ(f["slow_ranks"].size(), 1u);
  EXPECT_EQ(f["slow_ranks"][0]["rank"], 1);
  EXPECT_EQ(f["slow_ranks"][0]["factor"], 3.0);
  EXPECT_TRUE(h["slow_ranks"].empty());

  CliRun bad = RunShell(Command(2, "--model gpt-tiny --dp 2 --slow-rank 2:1.5" +
                                       std::string(kCommon)));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("slow rank 2"));
  CliRun malformed = RunShell(Command(1, "--model gpt-tiny --slow-rank 1" + std::string(kCommon)));
  EXPECT_EQ(malformed.exit_code, 2);
  EXPECT_THAT(malformed.err, HasSubstr("--slow-rank"));
}

TEST(ExecuteCli, ReportsTimesThroughputLossesAndMemoryAsJson) {
  CliRun run = RunShell(Command(
      2, "--model gpt-tiny --pp 2 --backend cpu --iterations 2 --warmup 1 --format json "
         "--global-batch 4 --seq-len 16"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Result<Json> j = ParseJson(run.out, "stdout");
  ASSERT_TRUE(j.ok()) << j.status().message() << run.out;
  EXPECT_EQ((*j)["model"], "gpt-tiny");
  EXPECT_EQ((*j)["backend"], "cpu");
  EXPECT_EQ((*j)["world_size"], 2);
  EXPECT_EQ((*j)["plan"]["pipeline"]["pp"], 2);
  const Json& times = (*j)["iteration_time_s"];
  EXPECT_EQ(times["samples"].size(), 2u);  // timed steps only
  EXPECT_GT(times["median"].get<double>(), 0);
  EXPECT_LE(times["min"].get<double>(), times["median"].get<double>());
  EXPECT_LE(times["median"].get<double>(), times["max"].get<double>());
  EXPECT_NEAR((*j)["tokens_per_s"].get<double>(), 4 * 16 / times["median"].get<double>(), 1e-6);
  EXPECT_EQ((*j)["losses"].size(), 3u);  // warm-up included
  ASSERT_EQ((*j)["grad_norms"].size(), 3u);
  EXPECT_GT((*j)["grad_norms"][0].get<double>(), 0);
  // Initial loss near log V = log 512 (parameters start small).
  EXPECT_NEAR((*j)["losses"][0].get<double>(), std::log(512.0), 0.5);
  ASSERT_EQ((*j)["peak_memory_bytes"].size(), 2u);
  EXPECT_GT((*j)["peak_memory_bytes"][0].get<int64_t>(), 0);
  EXPECT_GT((*j)["peak_memory_bytes"][1].get<int64_t>(), 0);
}

// The synthetic data is a walk through a fixed successor table
// (exec/runtime.h): a model that trains learns it, and the loss falls well
// below log V = 6.24 within a dozen AdamW steps. Independent random tokens
// would keep it at log V whatever the model computed.
TEST(ExecuteCli, TrainingLowersTheLossOnTheSyntheticData) {
  for (const char* model : {"gpt-tiny", "llama-tiny"}) {
    CliRun run = RunOrrery(std::string("execute --model ") + model +
                           " --backend cpu --iterations 12 --warmup 0 --global-batch 8 "
                           "--seq-len 32 --lr 0.01 --format json");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    Result<Json> j = ParseJson(run.out, "stdout");
    ASSERT_TRUE(j.ok()) << j.status().message() << run.out;
    const Json& losses = (*j)["losses"];
    ASSERT_EQ(losses.size(), 12u);
    const double first = losses[0].get<double>();
    const double last3 =
        (losses[9].get<double>() + losses[10].get<double>() + losses[11].get<double>()) / 3;
    EXPECT_NEAR(first, std::log(512.0), 0.1) << model;
    EXPECT_LT(last3, first - 1.0) << model << ": " << losses.dump();
  }
}

TEST(ExecuteCli, PrintsAReadableSummary) {
  CliRun run = RunOrrery("execute --model gpt-tiny --backend cpu --iterations 2 --warmup 1 "
                         "--global-batch 4 --micro-batch 2 --seq-len 16");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Executed gpt-tiny on 1 rank: tp 1, pp 1, dp 1, 1f1b, "
                                 "2 micro-batches of 2 × 16 tokens, ZeRO 0, recompute none"));
  EXPECT_THAT(run.out, HasSubstr("(warm-up)"));
  EXPECT_THAT(run.out, HasSubstr("iteration time  median"));
  EXPECT_THAT(run.out, HasSubstr("tokens/s"));
  EXPECT_THAT(run.out, HasSubstr("peak memory     rank 0 "));
}

TEST(ExecuteCli, WritesAnExecutionTraceWithTheOpsOfEveryRank) {
  const std::string dir = MakeTempDir("execute-trace");
  CliRun run = RunShell(Command(
      2, "--model gpt-tiny --tp 2 --backend cpu --iterations 1 --warmup 0 --global-batch 2 "
         "--seq-len 16 --trace-out " + dir + "/trace"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("trace written to"));
  // Read back with the format's own parser, which checks every field.
  Result<traces::ExecutionTrace> trace =
      traces::LoadExecutionTrace(dir + "/trace/execution_trace.json");
  ASSERT_TRUE(trace.ok()) << trace.status().message();
  EXPECT_EQ(trace->world_size, 2);
  EXPECT_EQ(trace->backend, "cpu");
  EXPECT_EQ(trace->iterations.size(), 2u);  // 1 timed + 1 traced
  std::set<int> ranks;
  std::set<std::string> names;
  bool saw_tp_collective = false;
  for (const traces::ExecutionOp& op : trace->ops) {
    ranks.insert(op.rank);
    names.insert(op.name);
    EXPECT_EQ(op.iteration, 1);  // only the traced step is recorded
    EXPECT_LE(op.start, op.end);
    if (op.name == "tp.allreduce") {
      saw_tp_collective = true;
      EXPECT_EQ(op.group, (std::vector<int>{0, 1}));
      EXPECT_GT(op.bytes, 0);
    }
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1}));
  EXPECT_TRUE(names.count("optimizer.adam")) << "no optimizer op";
  EXPECT_TRUE(names.count("attn.qkv")) << "no QKV GEMM";
  EXPECT_TRUE(saw_tp_collective) << "no tp all-reduce";
  Result<Json> timeline = ReadJsonFile(dir + "/trace/timeline.json");
  ASSERT_TRUE(timeline.ok()) << timeline.status().message();
}

}  // namespace
}  // namespace orrery::testing
