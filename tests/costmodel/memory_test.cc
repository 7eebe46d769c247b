#include "costmodel/memory.h"

#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/operators.h"

namespace orrery::costmodel {
namespace {

using workload::LayerKind;
using workload::LayerLayout;
using workload::LayerStrategy;
using workload::ModelSpec;
using workload::PipelineSchedule;
using workload::Plan;
using workload::Recompute;

ModelSpec Model(const std::string& name) {
  Result<ModelSpec> m = workload::ModelPreset(name);
  EXPECT_TRUE(m.ok()) << name;
  return *m;
}

topology::ClusterSpec DgxH100(int nodes) {
  Result<topology::ClusterSpec> c = topology::ClusterPreset("dgx-h100");
  EXPECT_TRUE(c.ok());
  Result<topology::ClusterSpec> scaled = c->WithNodes(nodes);
  EXPECT_TRUE(scaled.ok());
  return *scaled;
}

MemoryEstimate Estimate(const ModelSpec& model, const Plan& plan,
                        const MemoryOptions& options = {}) {
  Result<MemoryEstimate> e = EstimateMemory(model, plan, DgxH100(8), options);
  EXPECT_TRUE(e.ok()) << e.status().message();
  return e.ok() ? *e : MemoryEstimate{};
}

// Saved activations of one decoder block for one micro-batch.
Bytes BlockActivations(const ModelSpec& model, int64_t b, int64_t s, const LayerLayout& layout,
                       bool selective) {
  Result<workload::LayerOperators> ops =
      workload::ExpandLayer(model, LayerKind::kDecoderBlock, b, s, layout);
  EXPECT_TRUE(ops.ok());
  return ops->SavedActivations(selective);
}

// ZeRO paper §5 (arXiv 1910.02054), with the paper's 2 bytes of gradient
// per parameter and K = 12, on Llama-2-7B with dp = 8 and no other split:
// the stage holds the whole model, Ψ = 6,738,415,616 (divisible by 8).
TEST(MemoryZero, StagesMatchTheZeroPaperExactly) {
  const ModelSpec model = Model("llama2-7b");
  MemoryOptions options;
  options.gradient_bytes = 2;
  const int64_t psi = model.ParameterCount();
  ASSERT_EQ(psi, 6'738'415'616);
  const int64_t nd = 8;
  const int64_t expected[] = {
      (2 + 2 + 12) * psi,                 // baseline DP
      4 * psi + 12 * psi / nd,            // stage 1
      2 * psi + (2 + 12) * psi / nd,      // stage 2
      (2 + 2 + 12) * psi / nd,            // stage 3
  };
  for (int zero = 0; zero <= 3; ++zero) {
    const Plan plan = Plan::Uniform(model, 1, LayerStrategy{.dp = 8, .zero_stage = zero}, 8, 1);
    const MemoryEstimate e = Estimate(model, plan, options);
    ASSERT_EQ(e.stages.size(), 1u);
    EXPECT_EQ(e.stages[0].parameters, psi);
    EXPECT_EQ(e.stages[0].ModelStates().count(), expected[zero]) << "ZeRO-" << zero;
  }
}

TEST(MemoryZero, ShardsOverDataAndContextParallelRanks) {
  const ModelSpec model = Model("llama2-7b");
  MemoryOptions options;
  options.gradient_bytes = 2;
  const int64_t psi = model.ParameterCount();
  const Plan plan =
      Plan::Uniform(model, 1, LayerStrategy{.cp = 2, .dp = 4, .zero_stage = 3}, 8, 1);
  EXPECT_EQ(Estimate(model, plan, options).stages[0].ModelStates().count(), 16 * psi / 8);
}

// Megatron-LM (REFERENCES.md): "18 B/param, or 6 + 12/d with the
// distributed optimizer" — 2-byte weights, 4-byte main gradients, K = 12.
TEST(MemoryZero, DefaultsToMegatronsEighteenBytesPerParameter) {
  const ModelSpec model = Model("llama2-7b");
  const int64_t psi = model.ParameterCount();
  const Plan ddp = Plan::Uniform(model, 1, LayerStrategy{.dp = 8}, 8, 1);
  EXPECT_EQ(Estimate(model, ddp).stages[0].ModelStates().count(), 18 * psi);
  const Plan distributed = Plan::Uniform(model, 1, LayerStrategy{.dp = 8, .zero_stage = 1}, 8, 1);
  EXPECT_EQ(Estimate(model, distributed).stages[0].ModelStates().count(), 6 * psi + 12 * psi / 8);
}

TEST(MemorySchedule, OneFOneBHoldsPMinusSMicroBatchesAtStageS) {
  for (int s = 0; s < 8; ++s) {
    EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::kOneFOneB, 8, s, 32, 1), 8 - s);
  }
  // Fewer micro-batches than stages: never more than m.
  EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::kOneFOneB, 8, 0, 3, 1), 3);
  EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::kOneFOneB, 8, 6, 3, 1), 2);
}

TEST(MemorySchedule, GpipeHoldsAllMicroBatches) {
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::kGpipe, 4, s, 16, 1), 16);
  }
}

// Megatron-LM: the first stage holds (1 + (p−1)/(p·v))·p micro-batches'
// worth; p = 4, v = 2: 5.5, i.e. 11 chunk micro-batches, 7 of chunk 0
// (micro-batches 0..3 and 8..10 of Megatron's order) and 4 of chunk 1.
TEST(MemorySchedule, InterleavedFirstStageMatchesMegatronsFactor) {
  const int p = 4, v = 2;
  const int chunks = InFlightMicroBatches(PipelineSchedule::kInterleaved, p, 0, 8, v);
  EXPECT_EQ(chunks, 11);
  EXPECT_DOUBLE_EQ(static_cast<double>(chunks) / v, (1.0 + (p - 1.0) / (p * v)) * p);
  EXPECT_EQ(InFlightPerChunk(p, 0, 8, v), (std::vector<int>{7, 4}));
  // The last stage: (v−1)·p + 1 = 5.
  EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::kInterleaved, p, p - 1, 8, v), 5);
  EXPECT_EQ(InFlightPerChunk(p, p - 1, 8, v), (std::vector<int>{4, 1}));
}

// A middle stage (no embedding, no head) of Llama-2-7B on pp = 4: its 8
// layers' activations times the schedule's micro-batches in flight.
TEST(MemoryActivations, MiddleStageHoldsItsLayersTimesMicroBatchesInFlight) {
  const ModelSpec model = Model("llama2-7b");
  const int64_t seq = model.default_sequence_length;
  const Bytes layer = BlockActivations(model, 1, seq, LayerLayout{.tp = 2}, false);
  Plan plan = Plan::Uniform(model, 4, LayerStrategy{.tp = 2, .dp = 1}, 16, 1);
  ASSERT_EQ(plan.NumMicroBatches(), 16);

  MemoryEstimate e = Estimate(model, plan);
  EXPECT_EQ(e.stages[1].in_flight, 3);
  EXPECT_EQ(e.stages[1].activations, layer * (8 * 3));
  EXPECT_EQ(e.stages[2].activations, layer * (8 * 2));
  EXPECT_EQ(e.stages[1].recompute_activations, Bytes(0));

  plan.schedule = PipelineSchedule::kGpipe;
  e = Estimate(model, plan);
  EXPECT_EQ(e.stages[1].activations, layer * (8 * 16));

  // Interleaved, v = 2: stage 1 holds (v−1)p + 2(p−2) + 1 = 9 chunk
  // micro-batches of 4 layers each. Llama has no embedding dropout, so the
  // first stage's embedding saves nothing: 11 × 4 layers = 5.5 × 8 layers.
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  e = Estimate(model, plan);
  EXPECT_EQ(e.stages[1].in_flight, 9);
  EXPECT_EQ(e.stages[1].activations, layer * (9 * 4));
  EXPECT_EQ(e.stages[0].activations, layer * (11 * 4));
}

// Korthikanti Table 2, "Full recompute": 2sbh per layer, /t with SP; the
// layer being recomputed holds its full activations once more.
TEST(MemoryActivations, FullRecomputeKeepsEachLayersInputOnly) {
  const ModelSpec model = Model("gpt3-175b");
  const int64_t s = 2048, h = model.hidden_size;
  Plan plan = Plan::Uniform(
      model, 8, LayerStrategy{.tp = 8, .sequence_parallel = true, .recompute = Recompute::kFull},
      8, 1);
  plan.sequence_length = static_cast<int>(s);
  MemoryEstimate e = Estimate(model, plan);
  const StageMemory& middle = e.stages[3];
  EXPECT_EQ(middle.in_flight, 5);
  EXPECT_EQ(middle.activations, Bytes(2 * s * 1 * h / 8 * 12 * 5));
  EXPECT_EQ(middle.recompute_activations,
            BlockActivations(model, 1, s, LayerLayout{.tp = 8, .sequence_parallel = true}, false));

  // Without SP the kept input is the full 2sbh.
  for (LayerStrategy& l : plan.layers) l.sequence_parallel = false;
  e = Estimate(model, plan);
  EXPECT_EQ(e.stages[3].activations, Bytes(2 * s * 1 * h * 12 * 5));
}

// Context parallelism splits the sequence: a layer's activations halve with
// cp = 2 (without the s² attention terms, which selective recompute drops).
TEST(MemoryActivations, ContextParallelismSplitsTheSequence) {
  const ModelSpec model = Model("llama2-7b");
  Plan plan = Plan::Uniform(model, 1, LayerStrategy{.recompute = Recompute::kSelective}, 1, 1);
  const Bytes whole = Estimate(model, plan).stages[0].activations;
  for (LayerStrategy& l : plan.layers) l.cp = 2;
  const Bytes half = Estimate(model, plan).stages[0].activations;
  EXPECT_EQ(half * 2, whole);
}

// GPT-3 175B with TP 8, PP 8, sequence parallelism and selective
// recomputation, b = 1, s = 2048, 1F1B, m = 8 (Korthikanti et al.'s setup).
// By hand, h = 12288, t = 8, 12 layers per stage:
//   per layer per rank: 12h²/t + 7h/t (column-parallel biases) + 6h
//     (row-parallel biases and two LayerNorms, replicated) = 226,576,896;
//   stage 0 adds the vocabulary-parallel embedding V·h/t = 78,643,200 and the
//     learned positions 2048·h = 25,165,824: Ψ = 2,822,731,776;
//   model states, Megatron's 18 B/param: 50,809,171,968 B;
//   activations (Korthikanti Eq. 5 with SP + selective, plus the embedding
//     dropout's sbhp/t): p = 8 micro-batches × sbh/t (12·34 + 1)
//     = 8 × 3,145,728 × 409 = 10,292,822,016 B;
//   the recomputed attention core of one layer: 5as²b/t = 251,658,240 B.
TEST(MemoryMegatron, Gpt3On8x8MatchesTheHandComputation) {
  const ModelSpec model = Model("gpt3-175b");
  Plan plan = Plan::Uniform(
      model, 8,
      LayerStrategy{.tp = 8, .sequence_parallel = true, .recompute = Recompute::kSelective}, 8,
      1);
  plan.sequence_length = 2048;
  const MemoryEstimate e = Estimate(model, plan);
  ASSERT_EQ(e.stages.size(), 8u);
  const StageMemory& first = e.stages[0];
  EXPECT_EQ(first.num_layers, 12);
  EXPECT_EQ(first.parameters, 2'822'731'776);
  EXPECT_EQ(first.ModelStates().count(), 50'809'171'968);
  EXPECT_EQ(first.in_flight, 8);
  EXPECT_EQ(first.activations.count(), 10'292'822'016);
  EXPECT_EQ(first.recompute_activations.count(), 251'658'240);
  EXPECT_EQ(e.peak_stage, 0);
  // About 64 GiB with the nominal allowance: it fits an 80 GiB H100.
  EXPECT_TRUE(e.Fits());
  EXPECT_LT(first.Total(), GiB(70));
  EXPECT_GT(first.Total(), GiB(55));
}

// Megatron keeps a tied embedding's copy on the last stage when pp > 1.
TEST(MemoryEmbedding, TiedEmbeddingIsCopiedToTheLastStage) {
  const ModelSpec model = Model("gpt3-175b");
  ASSERT_TRUE(model.tied_embeddings);
  const int64_t copy = int64_t{model.vocab_size} * model.hidden_size / 8;
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 8}, 8, 1);
  const MemoryEstimate two = Estimate(model, plan);
  // Stage 1's layers plus the head's final LayerNorm (2h) plus the copy.
  const int64_t layers = two.stages[0].parameters - copy - 2048 * int64_t{model.hidden_size};
  EXPECT_EQ(two.stages[1].parameters, layers + 2 * model.hidden_size + copy);
}

TEST(MemoryAllowance, OptionsOverrideFragmentationContextAndReserve) {
  const ModelSpec model = Model("llama2-7b");
  const Plan plan = Plan::Uniform(model, 1, LayerStrategy{.tp = 8}, 1, 1);
  MemoryOptions none;
  none.fragmentation = 0.0;
  none.framework_context = Bytes(0);
  none.reserve = Bytes(0);
  const MemoryEstimate bare = Estimate(model, plan, none);
  const StageMemory& b = bare.stages[0];
  const Bytes allocated =
      b.ModelStates() + b.activations + b.recompute_activations + b.communication_buffers;
  EXPECT_EQ(b.Total(), allocated);
  EXPECT_EQ(bare.Usable(), GiB(80));

  MemoryOptions custom;
  custom.fragmentation = 0.25;
  custom.framework_context = GiB(3);
  custom.reserve = GiB(5);
  const MemoryEstimate e = Estimate(model, plan, custom);
  EXPECT_EQ(e.stages[0].fragmentation, allocated * 0.25);
  EXPECT_EQ(e.stages[0].framework_context, GiB(3));
  EXPECT_EQ(e.stages[0].Total(), allocated + allocated * 0.25 + GiB(3));
  EXPECT_EQ(e.Usable(), GiB(75));

  // The default allowance is what MemoryOptions states.
  const MemoryEstimate d = Estimate(model, plan);
  EXPECT_EQ(d.stages[0].framework_context, GiB(1));
  EXPECT_EQ(d.stages[0].fragmentation, allocated * 0.10);
}

TEST(MemoryFit, SeventyBillionParametersDoNotFitOneDeviceWithoutSharding) {
  const ModelSpec model = Model("llama3-70b");
  const Plan ddp = Plan::Uniform(model, 1, LayerStrategy{.dp = 8}, 8, 1);
  EXPECT_FALSE(Estimate(model, ddp).Fits());
  Plan sharded = Plan::Uniform(
      model, 8,
      LayerStrategy{.tp = 8, .sequence_parallel = true, .recompute = Recompute::kFull}, 8, 1);
  sharded.sequence_length = 4096;
  EXPECT_TRUE(Estimate(model, sharded).Fits());
}

TEST(MemoryFit, ZeroThreeBuffersHoldTwoGatheredLayersAndOneGradient) {
  const ModelSpec model = Model("llama2-7b");
  const Plan plan = Plan::Uniform(model, 1, LayerStrategy{.dp = 8, .zero_stage = 3}, 8, 1);
  Result<workload::LayerOperators> block = workload::ExpandLayer(
      model, LayerKind::kDecoderBlock, 1, model.default_sequence_length, LayerLayout{});
  ASSERT_TRUE(block.ok());
  // 2 bf16 copies (in use, prefetched) and a 4-byte gradient of one layer.
  EXPECT_EQ(Estimate(model, plan).stages[0].communication_buffers,
            Bytes(block->Parameters() * (2 * 2 + 4)));
}

TEST(MemoryErrors, RejectsAPlanWithTheWrongNumberOfLayers) {
  const ModelSpec model = Model("llama2-7b");
  Plan plan = Plan::Uniform(model, 1, LayerStrategy{}, 1, 1);
  plan.layers.pop_back();
  Result<MemoryEstimate> e = EstimateMemory(model, plan, DgxH100(1));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("plan.layers"), std::string::npos)
      << e.status().message();
}

TEST(MemoryTable, ListsEveryStageAndMarksThePeak) {
  const ModelSpec model = Model("gpt3-175b");
  Plan plan = Plan::Uniform(
      model, 8,
      LayerStrategy{.tp = 8, .sequence_parallel = true, .recompute = Recompute::kSelective}, 8,
      1);
  const std::string table = FormatMemoryTable(Estimate(model, plan));
  std::cout << "GPT-3 175B, TP 8 PP 8, SP, selective recompute, 1F1B, b 1, s 2048, m 8:\n"
            << table;
  EXPECT_NE(table.find("activations"), std::string::npos);
  EXPECT_NE(table.find("    0*"), std::string::npos) << table;
  EXPECT_NE(table.find("84-95"), std::string::npos) << table;
  EXPECT_NE(table.find("usable"), std::string::npos);
}

}  // namespace
}  // namespace orrery::costmodel
