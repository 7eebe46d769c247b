#include "search/space.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "search/search.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::search {
namespace {

using workload::LayerStrategy;
using workload::PipelineSchedule;
using workload::Recompute;

// GPT 1.7B (24 heads) cut to `layers` layers on one DGX A100 (8 GPUs).
SearchRequest SmallRequest(int layers = 4) {
  SearchRequest r;
  r.model = *workload::ModelPreset("gpt-1.7b");
  r.model.num_layers = layers;
  r.cluster = *topology::ClusterPreset("dgx-a100-80gb");
  r.cluster = *r.cluster.WithNodes(1);
  r.global_batch_size = 16;
  return r;
}

Space MakeSpace(const SearchRequest& r) {
  Result<Space> space = Space::Create(r);
  EXPECT_TRUE(space.ok()) << space.status().message();
  return *space;
}

TEST(Space, PipelineDegreesAreDivisorsOfTheDevicesUpToTheLayers) {
  EXPECT_EQ(MakeSpace(SmallRequest(4)).PipelineDegrees(), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(MakeSpace(SmallRequest(24)).PipelineDegrees(), (std::vector<int>{1, 2, 4, 8}));
}

TEST(Space, LayerCandidatesCountTheClosedForm) {
  SearchRequest r = SmallRequest();
  r.allow_context_parallel = false;
  r.allow_zero = false;
  // pp = 1, 8 devices, 24 heads: tp ∈ {1, 2, 4, 8}; tp = 1 has no sp:
  // 3 recomputations; tp > 1 has sp off/on: 6 each. 3 + 3·6 = 21.
  EXPECT_EQ(MakeSpace(r).LayerCandidates(1).size(), 21u);
  // With ZeRO 0-3 where dp > 1: tp1 dp8: 4·3 = 12; tp2 dp4, tp4 dp2: 4·2·3 =
  // 24 each; tp8 dp1: 2·3 = 6. 66 in all.
  r.allow_zero = true;
  EXPECT_EQ(MakeSpace(r).LayerCandidates(1).size(), 66u);
  // pp = 4, 2 devices per stage: tp1 dp2: 12; tp2 dp1: 6.
  EXPECT_EQ(MakeSpace(r).LayerCandidates(4).size(), 18u);
}

TEST(Space, TensorParallelDegreesDivideTheHeads) {
  SearchRequest r = SmallRequest();
  r.model.num_attention_heads = 12;
  r.model.num_kv_heads = 12;
  r.model.head_dim = r.model.hidden_size / 12;
  std::set<int> tps;
  for (const LayerStrategy& s : MakeSpace(r).LayerCandidates(1)) tps.insert(s.tp);
  EXPECT_EQ(tps, (std::set<int>{1, 2, 4}));  // 8 does not divide 12
}

TEST(Space, ContextParallelSplitsTheSequenceInTwoCpChunks) {
  SearchRequest r = SmallRequest();
  r.sequence_length = 6;  // causal: 2·cp | 6 → cp ∈ {1, 3}; 3 does not divide 8
  for (const LayerStrategy& s : MakeSpace(r).LayerCandidates(1)) EXPECT_EQ(s.cp, 1);
  r.sequence_length = 2048;
  std::set<int> cps;
  for (const LayerStrategy& s : MakeSpace(r).LayerCandidates(1)) cps.insert(s.cp);
  EXPECT_EQ(cps, (std::set<int>{1, 2, 4, 8}));
}

TEST(Space, ExpertParallelismOnlyForMixtureOfExpertsModels) {
  for (const LayerStrategy& s : MakeSpace(SmallRequest()).LayerCandidates(1)) EXPECT_EQ(s.ep, 1);
  SearchRequest r = SmallRequest();
  r.model = *workload::ModelPreset("mixtral-8x7b");
  r.model.num_layers = 4;
  std::set<int> eps;
  for (const LayerStrategy& s : MakeSpace(r).LayerCandidates(1)) {
    eps.insert(s.ep);
    EXPECT_EQ(r.model.num_experts % s.ep, 0);
    EXPECT_EQ((s.dp * s.cp) % s.ep, 0) << StrategyName(s);
  }
  EXPECT_EQ(eps, (std::set<int>{1, 2, 4, 8}));
}

TEST(Space, StagePartitionsMoveOneOrTwoLayersOffTheEnds) {
  const Space space = MakeSpace(SmallRequest(24));
  // 24 layers on 4 stages: even, then 1 and 2 layers fewer on the first,
  // the last, and both ends.
  const std::vector<std::vector<int>> expected = {
      {},           {5, 7, 6, 6}, {7, 6, 6, 5}, {5, 7, 7, 5},
      {4, 7, 7, 6}, {7, 7, 6, 4}, {4, 8, 8, 4},
  };
  EXPECT_EQ(space.StagePartitions(4), expected);
  EXPECT_EQ(space.StagePartitions(1), (std::vector<std::vector<int>>{{}}));
  SearchRequest even = SmallRequest(24);
  even.allow_uneven_stages = false;
  EXPECT_EQ(MakeSpace(even).StagePartitions(4).size(), 1u);
}

TEST(Space, MicroBatchCountsComeFromSizesAndDataParallelDegrees) {
  const Space space = MakeSpace(SmallRequest());
  EXPECT_EQ(space.MicroBatchSizes(), (std::vector<int>{1, 2, 4, 8, 16}));
  // pp = 4: dp ∈ {1, 2}; 16 / (mbs · dp) for mbs · dp | 16.
  EXPECT_EQ(space.MicroBatchCounts(4), (std::vector<int>{1, 2, 4, 8, 16}));
  // pp = 1: dp up to 8; mbs·dp ≤ 16: the same counts.
  EXPECT_EQ(space.MicroBatchCounts(1), (std::vector<int>{1, 2, 4, 8, 16}));
}

TEST(Space, InterleavingNeedsChunksDividingEveryStage) {
  const Space space = MakeSpace(SmallRequest(24));
  // 24 layers over 4 stages: 6 per stage → vpp ∈ {2, 3, 6}.
  const auto schedules = space.Schedules(4, {});
  std::vector<int> vpps;
  for (const auto& [schedule, vpp] : schedules) {
    if (schedule == PipelineSchedule::kInterleaved) vpps.push_back(vpp);
  }
  EXPECT_EQ(vpps, (std::vector<int>{2, 3, 6}));
  EXPECT_EQ(space.Schedules(1, {}).size(), 1u);  // 1f1b (gpipe is the same on one stage)
  // [5, 7, 6, 6] has no common chunk count.
  EXPECT_EQ(space.Schedules(4, {5, 7, 6, 6}).size(), 2u);
}

TEST(Space, EveryUniformPlanOfTheSpaceValidates) {
  const SearchRequest r = SmallRequest();
  const Space space = MakeSpace(r);
  int plans = 0;
  for (const PipelineShape& shape : space.AllShapes()) {
    for (const LayerStrategy& s : space.LayerCandidates(shape)) {
      Result<workload::Plan> plan = space.UniformPlan(shape, s);
      ASSERT_TRUE(plan.ok()) << plan.status().message();
      const Status valid = workload::ValidatePlan(*plan, r.model, r.cluster);
      ASSERT_TRUE(valid.ok()) << ShapeName(shape) << " " << StrategyName(s) << ": "
                              << valid.message();
      EXPECT_EQ(ShapeOfPlan(*plan), shape);
      ++plans;
    }
  }
  EXPECT_GT(plans, 1000);
}

TEST(Space, RandomLayerWisePlansValidate) {
  for (const char* model : {"gpt-1.7b", "mixtral-8x7b"}) {
    SearchRequest r = SmallRequest(8);
    r.model = *workload::ModelPreset(model);
    r.model.num_layers = 8;
    const Space space = MakeSpace(r);
    const std::vector<PipelineShape> shapes = space.AllShapes();
    std::mt19937_64 rng(7);
    int layer_wise = 0;
    for (int k = 0; k < 300; ++k) {
      const PipelineShape& shape = shapes[rng() % shapes.size()];
      const std::vector<LayerStrategy> layers =
          space.RandomLayers(shape, space.LayerCandidates(shape), &rng);
      ASSERT_EQ(static_cast<int>(layers.size()), 8);
      Result<workload::Plan> plan = space.BuildPlan(shape, layers);
      ASSERT_TRUE(plan.ok()) << plan.status().message();
      const Status valid = workload::ValidatePlan(*plan, r.model, r.cluster);
      ASSERT_TRUE(valid.ok()) << PlanSummary(*plan) << ": " << valid.message();
      if (!plan->is_uniform()) ++layer_wise;
    }
    EXPECT_GT(layer_wise, 250) << model;
  }
}

TEST(Space, BuildPlanTakesTheMicroBatchFromTheLargestDataParallelDegree) {
  const Space space = MakeSpace(SmallRequest());
  PipelineShape shape;
  shape.pp = 2;
  shape.micro_batches = 4;  // 4 samples per micro-batch
  const LayerStrategy a{.tp = 1, .dp = 4};
  const LayerStrategy b{.tp = 1, .dp = 4, .recompute = Recompute::kFull};
  Result<workload::Plan> plan = space.BuildPlan(shape, {a, b, a, b});
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->micro_batch_size, 1);  // 4 samples / dp 4
  EXPECT_EQ(plan->NumMicroBatches(), 4);
  EXPECT_EQ(plan->sequence_length, 2048);
  // tp differing within a stage is refused (the simulator models one tp
  // layout per stage); across stages it is fine.
  const LayerStrategy c{.tp = 2, .dp = 2};
  EXPECT_FALSE(space.BuildPlan(shape, {a, c, a, a}).ok());
  EXPECT_TRUE(space.BuildPlan(shape, {a, a, c, c}).ok());
  // dp must divide the 4 samples of a micro-batch.
  shape.micro_batches = 8;  // 2 samples
  EXPECT_FALSE(space.BuildPlan(shape, {a, a, a, a}).ok());
}

TEST(Space, SummariesNameTheLayout) {
  const Space space = MakeSpace(SmallRequest(24));
  PipelineShape shape;
  shape.pp = 2;
  shape.schedule = PipelineSchedule::kInterleaved;
  shape.vpp = 2;
  shape.micro_batches = 4;
  const LayerStrategy s{.tp = 4, .dp = 1, .sequence_parallel = true,
                        .recompute = Recompute::kSelective};
  Result<workload::Plan> plan = space.UniformPlan(shape, s);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(PlanSummary(*plan), "tp4 pp2(v2) dp1 mb4 sp sel");
  EXPECT_EQ(ShapeName(shape), "pp2(v2) interleaved m4");
}

}  // namespace
}  // namespace orrery::search
