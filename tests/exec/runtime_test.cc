// Tests of the executor's runtime that need no MPI job: which plans it
// refuses and why (CheckExecutable), and the op recorder. The training
// runs themselves — every parallel layout against the single-rank run —
// go through the real binary under mpirun (tests/cli/execute_cli_test.cc).
#include "exec/runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "exec/op_recorder.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using ::testing::HasSubstr;
using workload::LayerStrategy;
using workload::ModelSpec;
using workload::Plan;

ModelSpec GptTiny() { return *workload::ModelPreset("gpt-tiny"); }

// gpt-tiny (4 layers) on tp 2 × pp 2 × dp 2, 8 samples of 32 tokens.
Plan EightRankPlan(const ModelSpec& model) {
  Plan plan = Plan::Uniform(model, /*pp=*/2, LayerStrategy{.tp = 2, .dp = 2},
                            /*global_batch_size=*/8, /*micro_batch_size=*/1);
  plan.sequence_length = 32;
  return plan;
}

TEST(CheckExecutable, AcceptsAPlanThatFitsTheJob) {
  const ModelSpec model = GptTiny();
  EXPECT_TRUE(CheckExecutable(model, EightRankPlan(model), 8).ok());
  Plan interleaved = EightRankPlan(model);
  interleaved.schedule = workload::PipelineSchedule::kInterleaved;
  interleaved.vpp = 2;  // 4 micro-batches, a multiple of pp
  EXPECT_TRUE(CheckExecutable(model, interleaved, 8).ok());
}

TEST(CheckExecutable, RefusesAPlanForADifferentNumberOfRanks) {
  const ModelSpec model = GptTiny();
  Plan plan = Plan::Uniform(model, /*pp=*/4, LayerStrategy{.tp = 2, .dp = 2}, 8, 1);
  plan.sequence_length = 32;
  const Status s = CheckExecutable(model, plan, 8);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("plan needs 16 ranks (tp 2 × pp 4 × dp 2), the job has 8"));
}

TEST(CheckExecutable, RefusesLayersWithDifferentTensorParallelism) {
  const ModelSpec model = GptTiny();
  Plan plan = EightRankPlan(model);
  plan.layers[2].tp = 4;
  plan.layers[2].dp = 1;
  const Status s = CheckExecutable(model, plan, 8);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("plan.layers[2]: tp, dp"));
}

TEST(CheckExecutable, AcceptsRecomputationThatDiffersByLayer) {
  const ModelSpec model = GptTiny();
  Plan plan = EightRankPlan(model);
  plan.layers[1].recompute = workload::Recompute::kFull;
  plan.layers[3].recompute = workload::Recompute::kSelective;
  EXPECT_TRUE(CheckExecutable(model, plan, 8).ok());
}

TEST(CheckExecutable, RefusesContextParallelism) {
  const ModelSpec model = GptTiny();
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 2, .cp = 2, .dp = 1}, 8, 1);
  plan.sequence_length = 32;
  const Status s = CheckExecutable(model, plan, 8);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("plan.layers.cp: context parallelism (cp 2)"));
}

TEST(CheckExecutable, RefusesAVocabularyTheTensorParallelRanksCannotSplit) {
  ModelSpec model = GptTiny();
  model.vocab_size = 511;
  const Status s = CheckExecutable(model, EightRankPlan(model), 8);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("vocab"));
}

TEST(CheckExecutable, RefusesInterleavingWhenMicroBatchesAreNotAMultipleOfStages) {
  const ModelSpec model = GptTiny();
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 2, .dp = 2}, 6, 1);  // m = 3
  plan.sequence_length = 32;
  plan.schedule = workload::PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  const Status s = CheckExecutable(model, plan, 8);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("micro-batches (3) to be a multiple of pp (2)"));
}

TEST(CheckExecutable, RefusesAModelChunkWithoutALayer) {
  const ModelSpec model = GptTiny();
  Plan plan = EightRankPlan(model);
  plan.schedule = workload::PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  plan.stage_layers = {1, 3};  // stage 0's one layer cannot make two chunks
  const Status s = CheckExecutable(model, plan, 8);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("stage 0 has 1 layers, which do not split into 2 model "
                                     "chunks"));
}

TEST(CheckExecutable, ListsEveryReasonAtOnce) {
  const ModelSpec model = GptTiny();
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 2, .cp = 2, .dp = 2}, 8, 1);
  plan.sequence_length = 32;
  const Status s = CheckExecutable(model, plan, 8);
  EXPECT_THAT(s.message(), HasSubstr("the plan cannot run on 8 ranks:"));
  EXPECT_THAT(s.message(), HasSubstr("context parallelism"));
  EXPECT_THAT(s.message(), HasSubstr("plan needs 16 ranks (tp 2 × pp 2 × cp 2 × dp 2)"));
}

// Busy work of about `micros` microseconds that the compiler keeps.
double Spin(double micros) {
  const double until = MpiWorld::Now() + micros * 1e-6;
  double x = 0;
  while (MpiWorld::Now() < until) x += 1.0;
  return x;
}

// A compute factor f makes a compute scope last at least f times its
// work (the scope busy-waits (f − 1) × the work's time after it), whether
// or not it records; communication is not slowed.
TEST(OpRecorder, AComputeFactorStretchesComputeScopesOnly) {
  Result<std::unique_ptr<Backend>> backend = MakeBackend(BackendKind::kCpu, 0);
  ASSERT_TRUE(backend.ok()) << backend.status().message();
  OpRecorder recorder(**backend, /*rank=*/0);
  recorder.set_compute_factor(3.0);
  const double before = MpiWorld::Now();
  {
    OpRecorder::Scope s = recorder.Compute("mlp.fc1", traces::ExecutionPhase::kForward, 0, 0);
    EXPECT_GT(Spin(2000), 0.0);
  }
  const double took = MpiWorld::Now() - before;
  EXPECT_TRUE(recorder.ops().empty());  // not recording: nothing kept
  // The injected wait is twice the scope's own time, which is >= 2 ms.
  EXPECT_GE(recorder.injected_delay(), Seconds(2 * 2000e-6));
  EXPECT_GE(took, 3 * 2000e-6);

  recorder.set_recording(true);
  {
    OpRecorder::Scope s = recorder.Compute("mlp.fc2", traces::ExecutionPhase::kForward, 0, 0);
    EXPECT_GT(Spin(1000), 0.0);
  }
  const Duration injected = recorder.injected_delay();
  {
    OpRecorder::Scope s = recorder.Communication("tp.allreduce", traces::CollectiveOp::kAllReduce,
                                                 traces::ExecutionPhase::kForward, 0, 0, {0, 1},
                                                 4096);
    EXPECT_GT(Spin(1000), 0.0);
  }
  EXPECT_EQ(recorder.injected_delay(), injected);
  const std::vector<traces::ExecutionOp> ops = recorder.TakeOps();
  ASSERT_EQ(ops.size(), 2u);
  // The recorded compute op includes the wait: a slow device's time.
  EXPECT_GE(ops[0].end - ops[0].start, Seconds(3 * 1000e-6));
}

TEST(CheckSlowRanks, NamesTheRank) {
  ExecuteOptions options;
  options.slow_ranks = {{1, 1.5}};
  EXPECT_TRUE(CheckSlowRanks(options, 2).ok());
  options.slow_ranks = {{2, 1.5}};
  EXPECT_THAT(CheckSlowRanks(options, 2).message(), ::testing::HasSubstr("slow rank 2"));
  options.slow_ranks = {{0, 0.5}};
  EXPECT_THAT(CheckSlowRanks(options, 2).message(), ::testing::HasSubstr(">= 1"));
}

TEST(OpRecorder, RecordsNothingWhileOffAndTimedScopesWhileOn) {
  Result<std::unique_ptr<Backend>> backend = MakeBackend(BackendKind::kCpu, 0);
  ASSERT_TRUE(backend.ok()) << backend.status().message();
  OpRecorder recorder(**backend, /*rank=*/3);
  { OpRecorder::Scope s = recorder.Compute("attn.qkv", traces::ExecutionPhase::kForward, 1, 0); }
  EXPECT_TRUE(recorder.ops().empty());

  recorder.set_recording(true);
  recorder.set_iteration(7);
  recorder.set_chunk(1);
  {
    OpRecorder::Scope s = recorder.Compute("attn.qkv", traces::ExecutionPhase::kForward, 1, 0);
    s.set_gemm({64, 96, 32, 1});
  }
  {
    OpRecorder::Scope s = recorder.Communication("tp.allreduce", traces::CollectiveOp::kAllReduce,
                                                 traces::ExecutionPhase::kForward, 1, 0, {2, 3},
                                                 4096);
  }
  std::vector<traces::ExecutionOp> ops = recorder.TakeOps();
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0].rank, 3);
  EXPECT_EQ(ops[0].iteration, 7);
  EXPECT_EQ(ops[0].chunk, 1);
  EXPECT_EQ(ops[0].layer, 1);
  EXPECT_EQ(ops[0].kind, traces::ExecutionOpKind::kCompute);
  ASSERT_TRUE(ops[0].gemm.has_value());
  EXPECT_EQ(ops[0].gemm->n, 96);
  EXPECT_LE(ops[0].start, ops[0].end);
  EXPECT_LE(ops[0].end, ops[1].start);
  EXPECT_EQ(ops[1].kind, traces::ExecutionOpKind::kCommunication);
  EXPECT_EQ(ops[1].bytes, 4096);
  EXPECT_EQ(ops[1].group, (std::vector<int>{2, 3}));
  EXPECT_TRUE(recorder.ops().empty());
}

}  // namespace
}  // namespace orrery::exec
