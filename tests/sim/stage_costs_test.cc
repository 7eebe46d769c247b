#include "sim/stage_costs.h"

#include <gtest/gtest.h>

#include <vector>

#include "costmodel/compute.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::sim {
namespace {

using costmodel::CollectiveOp;
using workload::ParallelDim;

// Every call costs `per_call` and is recorded.
class FixedTimer final : public PathCollectiveTimer {
 public:
  struct Call {
    int plan_layer;
    ParallelDim dim;
    CollectiveOp op;
    Bytes size;
  };
  explicit FixedTimer(Duration per_call) : per_call_(per_call) {}
  Result<Duration> Time(int plan_layer, ParallelDim dim, CollectiveOp op, Bytes size) override {
    calls.push_back({plan_layer, dim, op, size});
    return per_call_;
  }
  std::vector<Call> calls;

 private:
  Duration per_call_;
};

struct Fixture {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
};

Fixture Gpt() {
  Result<workload::ModelSpec> model = workload::ModelPreset("gpt-1.7b");  // 24 layers, h 2304
  Result<topology::ClusterSpec> cluster = topology::ResolveCluster("dgx-a100-80gb", 2);
  EXPECT_TRUE(model.ok() && cluster.ok());
  return {*model, *cluster};
}

TEST(ChunkLayers, InterleavedChunksAreVirtualStagesInModelOrder) {
  Fixture f = Gpt();
  workload::Plan plan = workload::Plan::Uniform(f.model, 2, {.tp = 1, .dp = 8}, 64, 1);
  plan.schedule = workload::PipelineSchedule::kInterleaved;
  plan.vpp = 3;
  // 24 layers, 12 per stage, 4 per chunk; virtual stage c·p + s.
  const std::vector<std::pair<int, int>> ranges = ChunkLayerRanges(plan);
  ASSERT_EQ(ranges.size(), 6u);
  EXPECT_EQ(ranges[0], std::make_pair(0, 4));   // stage 0 chunk 0: virtual 0
  EXPECT_EQ(ranges[3], std::make_pair(4, 4));   // stage 1 chunk 0: virtual 1
  EXPECT_EQ(ranges[1], std::make_pair(8, 4));   // stage 0 chunk 1: virtual 2
  EXPECT_EQ(ranges[4], std::make_pair(12, 4));  // stage 1 chunk 1: virtual 3
  EXPECT_EQ(ranges[2], std::make_pair(16, 4));
  EXPECT_EQ(ranges[5], std::make_pair(20, 4));
}

TEST(StageCosts, EmbeddingFirstHeadLastAndTensorParallelCollectives) {
  Fixture f = Gpt();
  workload::Plan plan = workload::Plan::Uniform(f.model, 2, {.tp = 4, .dp = 2}, 16, 2);
  Result<costmodel::ComputeModel> compute =
      costmodel::ComputeModel::Create(f.cluster.PrimaryNodeType().device, plan.precision);
  ASSERT_TRUE(compute.ok());
  FixedTimer timer(Micros(10));
  Result<StageCostTable> table = BuildStageCosts(f.model, plan, *compute, &timer);
  ASSERT_TRUE(table.ok()) << table.status().message();
  ASSERT_EQ(table->chunks.size(), 2u);
  const ChunkCost& first = table->chunk(0, 0);
  const ChunkCost& last = table->chunk(1, 0);
  ASSERT_EQ(first.layers.size(), 13u);  // embedding + 12 blocks
  ASSERT_EQ(last.layers.size(), 13u);   // 12 blocks + head
  EXPECT_EQ(first.layers.front().kind, workload::LayerKind::kEmbedding);
  EXPECT_EQ(last.layers.back().kind, workload::LayerKind::kLmHead);
  // A block: two all-reduces of b·s·h·2 bytes each pass.
  const LayerCost& block = first.layers[1];
  ASSERT_EQ(block.forward_comm.size(), 1u);
  EXPECT_EQ(block.forward_comm[0].op, CollectiveOp::kAllReduce);
  EXPECT_EQ(block.forward_comm[0].count, 2);
  EXPECT_EQ(block.forward_comm[0].size, Bytes(2 * 2048 * 2304 * 2));
  EXPECT_EQ(block.ForwardComm(), Micros(20));
  EXPECT_EQ(block.BackwardComm(), Micros(20));
  // Embedding: one all-reduce forward, none backward; head: the reverse.
  EXPECT_EQ(first.layers.front().ForwardComm(), Micros(10));
  EXPECT_EQ(first.layers.front().BackwardComm(), Duration::Zero());
  EXPECT_EQ(last.layers.back().ForwardComm(), Duration::Zero());
  EXPECT_EQ(last.layers.back().BackwardComm(), Micros(10));
  // Chunk sums are the layers' compute plus their collectives.
  Duration forward;
  for (const LayerCost& l : first.layers) forward += l.forward + l.ForwardComm();
  EXPECT_EQ(first.Forward(), forward);
  EXPECT_GT(first.Backward(), first.Forward());
  // Scatter-gather: each tp rank sends 1/tp of b·s·h·2.
  EXPECT_EQ(table->p2p_bytes, Bytes(2 * 2048 * 2304 * 2 / 4));
}

TEST(StageCosts, SequenceParallelAndFullRecompute) {
  Fixture f = Gpt();
  workload::Plan plan = workload::Plan::Uniform(
      f.model, 1,
      {.tp = 2, .dp = 8, .sequence_parallel = true, .recompute = workload::Recompute::kFull}, 8,
      1);
  Result<costmodel::ComputeModel> compute =
      costmodel::ComputeModel::Create(f.cluster.PrimaryNodeType().device, plan.precision);
  ASSERT_TRUE(compute.ok());
  FixedTimer timer(Micros(1));
  Result<StageCostTable> table = BuildStageCosts(f.model, plan, *compute, &timer);
  ASSERT_TRUE(table.ok()) << table.status().message();
  const LayerCost& block = table->chunk(0, 0).layers[1];
  ASSERT_EQ(block.forward_comm.size(), 2u);
  EXPECT_EQ(block.forward_comm[0].op, CollectiveOp::kAllGather);
  EXPECT_EQ(block.forward_comm[1].op, CollectiveOp::kReduceScatter);
  // Full recomputation: the forward again, and only the input (2sbh / t) kept.
  EXPECT_EQ(block.recompute, block.forward);
  EXPECT_EQ(block.saved_activations, Bytes(2 * 1 * 2048 * 2304 / 2));
  EXPECT_GT(block.recompute_activations, block.saved_activations);
  // Embedding and head are never recomputed.
  EXPECT_EQ(table->chunk(0, 0).layers.front().recompute, Duration::Zero());
}

}  // namespace
}  // namespace orrery::sim
