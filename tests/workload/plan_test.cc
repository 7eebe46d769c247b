#include "workload/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/json.h"
#include "core/units.h"
#include "workload/plan_json.h"

namespace orrery::workload {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A Llama-3-70B-shaped model: 80 layers, 64 heads, 8 kv heads.
ModelSpec Dense70b() {
  ModelSpec m;
  m.name = "dense-70b";
  m.family = ModelFamily::kLlama;
  m.num_layers = 80;
  m.hidden_size = 8192;
  m.num_attention_heads = 64;
  m.num_kv_heads = 8;
  m.default_sequence_length = 8192;
  m.max_sequence_length = 8192;
  return m;
}

// A Mixtral-shaped model: 32 layers, 8 experts.
ModelSpec Moe8x() {
  ModelSpec m = Dense70b();
  m.name = "moe-8x";
  m.family = ModelFamily::kMixtral;
  m.num_layers = 32;
  m.num_attention_heads = 32;
  m.num_experts = 8;
  m.experts_per_token = 2;
  return m;
}

// `nodes` nodes of `per_node` devices that support fp32 and bf16 only.
topology::ClusterSpec Cluster(int nodes, int per_node = 8) {
  topology::NodeType node;
  node.name = "node";
  node.count = nodes;
  node.devices_per_node = per_node;
  node.device.name = "test-gpu";
  node.device.peak[topology::Precision::kFp32] = TFlops(60);
  node.device.peak[topology::Precision::kBf16] = TFlops(900);
  topology::ClusterSpec c;
  c.name = "test-cluster";
  c.node_types.push_back(node);
  return c;
}

// tp 8 × dp 2 × pp 4 on 64 devices, global batch 512.
Plan Good70b() {
  return Plan::Uniform(Dense70b(), 4, LayerStrategy{.tp = 8, .dp = 2}, 512, 1);
}

TEST(PlanEnums, NamesParseBack) {
  for (PipelineSchedule s : {PipelineSchedule::kGpipe, PipelineSchedule::kOneFOneB,
                             PipelineSchedule::kInterleaved}) {
    EXPECT_EQ(ParsePipelineSchedule(PipelineScheduleName(s)).value(), s);
  }
  for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    EXPECT_EQ(ParseRecompute(RecomputeName(r)).value(), r);
  }
  EXPECT_EQ(PipelineScheduleName(PipelineSchedule::kOneFOneB), "1f1b");
  EXPECT_EQ(ParseRecompute("partial").status().message(),
            "expected 'none', 'selective' or 'full', got 'partial'");
}

TEST(PlanRankOrder, DefaultIsMegatronsAndParsesBack) {
  EXPECT_EQ(RankOrderName(DefaultRankOrder()), "tp-cp-ep-dp-pp");
  EXPECT_EQ(ParseRankOrder("tp-pp-dp-cp-ep").value(),
            (RankOrder{ParallelDim::kTp, ParallelDim::kPp, ParallelDim::kDp, ParallelDim::kCp,
                       ParallelDim::kEp}));
  EXPECT_FALSE(ParseRankOrder("tp-dp-pp").ok());
  EXPECT_FALSE(ParseRankOrder("tp-tp-cp-ep-dp").ok());
  EXPECT_FALSE(ParseRankOrder("tp-cp-ep-dp-pp-").ok());
}

TEST(PlanUniform, GivesEveryLayerTheSameStrategy) {
  const Plan plan = Good70b();
  EXPECT_EQ(plan.num_layers(), 80);
  EXPECT_TRUE(plan.is_uniform());
  EXPECT_EQ(plan.layers[79], (LayerStrategy{.tp = 8, .dp = 2}));
  EXPECT_EQ(plan.sequence_length, 8192);
  EXPECT_EQ(plan.precision, topology::Precision::kBf16);
  EXPECT_EQ(plan.schedule, PipelineSchedule::kOneFOneB);
  EXPECT_EQ(plan.StageLayerCounts(), std::vector<int>({20, 20, 20, 20}));
  EXPECT_EQ(plan.StageBoundaries(), std::vector<int>({0, 20, 40, 60, 80}));
}

TEST(PlanMicroBatches, CountIsGlobalOverMicroTimesDp) {
  Plan plan = Good70b();
  EXPECT_EQ(plan.NumMicroBatches(), 512 / (1 * 2));
  plan.micro_batch_size = 4;
  EXPECT_EQ(plan.NumMicroBatches(), 512 / (4 * 2));
  EXPECT_EQ(plan.SamplesPerMicroBatch(), 8);
}

TEST(PlanMicroBatches, LayerWithSmallerDpTakesMoreSamplesPerReplica) {
  Plan plan = Good70b();
  for (int i = 0; i < 10; ++i) plan.layers[static_cast<size_t>(i)] = {.tp = 4, .dp = 4};
  EXPECT_EQ(plan.MaxDataParallel(), 4);
  EXPECT_EQ(plan.NumMicroBatches(), 512 / 4);
  EXPECT_EQ(plan.MicroBatchSizeOfLayer(0), 1);
  EXPECT_EQ(plan.MicroBatchSizeOfLayer(10), 2);
}

TEST(PlanRankGroups, MatchMegatronsSixteenGpuExample) {
  // Megatron-Core initialize_model_parallel's docstring: 16 GPUs, tp 2, pp 4.
  ModelSpec m = Dense70b();
  m.num_layers = 8;
  const Plan plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 2, .dp = 2}, 16, 1);
  const auto tp = RankGroups(plan, 0, ParallelDim::kTp);
  const auto dp = RankGroups(plan, 0, ParallelDim::kDp);
  const auto pp = RankGroups(plan, 0, ParallelDim::kPp);
  ASSERT_EQ(tp.size(), 8u);
  EXPECT_EQ(tp[0], std::vector<int>({0, 1}));
  EXPECT_EQ(tp[7], std::vector<int>({14, 15}));
  ASSERT_EQ(dp.size(), 8u);
  EXPECT_EQ(dp[0], std::vector<int>({0, 2}));
  EXPECT_EQ(dp[1], std::vector<int>({1, 3}));
  EXPECT_EQ(dp[2], std::vector<int>({4, 6}));
  ASSERT_EQ(pp.size(), 4u);
  EXPECT_EQ(pp[0], std::vector<int>({0, 4, 8, 12}));
  EXPECT_EQ(pp[3], std::vector<int>({3, 7, 11, 15}));
}

TEST(PlanRankGroups, ExpertGroupsAreCarvedOutOfDpTimesCp) {
  // tp 2, cp 2, dp 2 on 8 ranks; ep 4 spans the 4 ranks of one tp slot.
  ModelSpec m = Moe8x();
  const Plan plan = Plan::Uniform(m, 1, LayerStrategy{.tp = 2, .cp = 2, .dp = 2, .ep = 4}, 8, 1);
  const auto ep = RankGroups(plan, 0, ParallelDim::kEp);
  ASSERT_EQ(ep.size(), 2u);
  EXPECT_EQ(ep[0], std::vector<int>({0, 2, 4, 6}));
  EXPECT_EQ(ep[1], std::vector<int>({1, 3, 5, 7}));
  EXPECT_EQ(RankGroups(plan, 0, ParallelDim::kCp)[0], std::vector<int>({0, 2}));
}

TEST(PlanRankGroups, OrderWithDpInnermostPutsReplicasOnNeighbouringRanks) {
  ModelSpec m = Dense70b();
  m.num_layers = 8;
  Plan plan = Plan::Uniform(m, 1, LayerStrategy{.tp = 2, .dp = 4}, 8, 1);
  plan.rank_order = ParseRankOrder("dp-tp-cp-ep-pp").value();
  EXPECT_EQ(RankGroups(plan, 0, ParallelDim::kDp)[0], std::vector<int>({0, 1, 2, 3}));
  EXPECT_EQ(RankGroups(plan, 0, ParallelDim::kTp)[0], std::vector<int>({0, 4}));
}

TEST(PlanCheck, AcceptsAGoodPlan) {
  const PlanCheck check = CheckPlan(Good70b(), Dense70b(), Cluster(8));
  EXPECT_THAT(check.errors, IsEmpty());
  EXPECT_THAT(check.notes, IsEmpty());
  EXPECT_TRUE(ValidatePlan(Good70b(), Dense70b(), Cluster(8)).ok());
}

TEST(PlanCheck, DegreesMustMultiplyToTheDeviceCount) {
  const PlanCheck check = CheckPlan(Good70b(), Dense70b(), Cluster(4));
  EXPECT_THAT(check.errors,
              ElementsAre("layers[0-79]: tp × cp × dp × pp = 8 × 1 × 2 × 4 = 64, but the "
                          "cluster has 32 devices"));
}

TEST(PlanCheck, ListsEveryBrokenRuleInTheStatus) {
  Plan plan = Good70b();
  plan.global_batch_size = 511;
  for (LayerStrategy& l : plan.layers) l.sequence_parallel = false;
  plan.layers[0].tp = 3;  // also breaks the device count for layer 0
  const Status s = ValidatePlan(plan, Dense70b(), Cluster(8));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "the plan breaks 4 rules:\n"
            "  layers[0]: tp × cp × dp × pp = 3 × 1 × 2 × 4 = 24, but the cluster has 64 devices\n"
            "  layers[0].tp: num_attention_heads = 64 is not divisible by tp = 3\n"
            "  layers[0].tp: num_kv_heads = 8 and tp = 3: one must divide the other\n"
            "  global_batch_size: 511 is not divisible by micro_batch_size × dp = 1 × 2 = 2");
}

TEST(PlanCheck, RejectsNonPositiveFields) {
  Plan plan = Good70b();
  plan.micro_batch_size = 0;
  plan.layers[5].dp = 0;
  plan.layers[6].zero_stage = 4;
  const PlanCheck check = CheckPlan(plan, Dense70b(), Cluster(8));
  EXPECT_THAT(check.errors, Contains("micro_batch_size: expected a positive integer, got 0"));
  EXPECT_THAT(check.errors, Contains("layers[5].dp: expected a positive integer, got 0"));
  EXPECT_THAT(check.errors, Contains("layers[6].zero_stage: expected 0, 1, 2 or 3, got 4"));
}

TEST(PlanCheck, LayerCountMustMatchTheModel) {
  Plan plan = Good70b();
  plan.layers.resize(40);
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              Contains("layers: the plan has 40 layer strategies, but dense-70b has 80 "
                       "transformer layers"));
}

TEST(PlanCheck, EvenPartitionNeedsLayersDivisibleByPp) {
  ModelSpec m = Dense70b();
  m.num_layers = 78;
  const Plan plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 8, .dp = 2}, 512, 1);
  EXPECT_THAT(CheckPlan(plan, m, Cluster(8)).errors,
              ElementsAre("pipeline.stage_layers: 78 layers do not split evenly over pp = 4 "
                          "stages; list the layers per stage in stage_layers"));
}

TEST(PlanCheck, UnevenPartitionIsAllowedWhenItSumsToTheLayers) {
  ModelSpec m = Dense70b();
  m.num_layers = 78;
  Plan plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 8, .dp = 2}, 512, 1);
  plan.stage_layers = {18, 20, 20, 20};
  EXPECT_THAT(CheckPlan(plan, m, Cluster(8)).errors, IsEmpty());
  EXPECT_EQ(plan.StageBoundaries(), std::vector<int>({0, 18, 38, 58, 78}));
}

TEST(PlanCheck, ExplicitPartitionMustHavePpStagesSummingToTheLayers) {
  Plan plan = Good70b();
  plan.stage_layers = {40, 0, 30};
  const PlanCheck check = CheckPlan(plan, Dense70b(), Cluster(8));
  EXPECT_THAT(check.errors, ElementsAre("pipeline.stage_layers: 3 stages listed, expected pp = 4",
                                        "pipeline.stage_layers[1]: expected at least 1 layer, got 0",
                                        "pipeline.stage_layers: the stages hold 70 layers, "
                                        "expected 80"));
}

TEST(PlanCheck, InterleavedNeedsTwoOrMoreVirtualStages) {
  Plan plan = Good70b();
  plan.schedule = PipelineSchedule::kInterleaved;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("pipeline.vpp: the interleaved schedule needs vpp >= 2, got 1"));
}

TEST(PlanCheck, InterleavedNeedsLayersPerStageDivisibleByVpp) {
  Plan plan = Good70b();
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 3;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("pipeline.vpp: 20 layers per stage do not divide into vpp = 3 model "
                          "chunks"));
  plan.stage_layers = {21, 21, 21, 17};
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("pipeline.stage_layers[3]: 17 layers do not divide into vpp = 3 model "
                          "chunks"));
}

TEST(PlanCheck, InterleavedNeedsMicroBatchesAMultipleOfPp) {
  Plan plan = Good70b();
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  plan.global_batch_size = 12;  // m = 6, pp = 4
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("pipeline.schedule: interleaved needs the number of micro-batches (6 = "
                          "global_batch_size / (micro_batch_size × dp)) to be a multiple of pp = "
                          "4"));
  plan.global_batch_size = 16;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors, IsEmpty());
}

TEST(PlanCheck, InterleavedNeedsAPipeline) {
  Plan plan = Plan::Uniform(Dense70b(), 1, LayerStrategy{.tp = 8, .dp = 8}, 512, 1);
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("pipeline.pp: the interleaved schedule needs pp >= 2, got 1"));
}

TEST(PlanCheck, VirtualStagesNeedTheInterleavedSchedule) {
  Plan plan = Good70b();
  plan.vpp = 2;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("pipeline.vpp: only the interleaved schedule has virtual stages; got "
                          "vpp = 2 with schedule 1f1b"));
}

TEST(PlanCheck, InterleavedIsNotForEncoderDecoderModels) {
  ModelSpec m = Dense70b();
  m.architecture = Architecture::kEncoderDecoder;
  m.num_layers = 40;
  m.num_encoder_layers = 40;
  Plan plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 8, .dp = 2}, 512, 1);
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  EXPECT_THAT(CheckPlan(plan, m, Cluster(8)).errors,
              ElementsAre("pipeline.schedule: interleaved is not supported for encoder-decoder "
                          "models"));
}

TEST(PlanCheck, HeadsMustDivideOverTp) {
  ModelSpec m = Dense70b();
  m.num_attention_heads = 36;
  m.num_kv_heads = 36;
  EXPECT_THAT(CheckPlan(Good70b(), m, Cluster(8)).errors,
              ElementsAre("layers[0-79].tp: num_attention_heads = 36 is not divisible by tp = 8"));
}

TEST(PlanCheck, KvHeadsMayBeAMultipleOrADivisorOfTp) {
  ModelSpec m = Dense70b();
  m.num_kv_heads = 4;  // tp 8 replicates each kv head twice: allowed
  EXPECT_THAT(CheckPlan(Good70b(), m, Cluster(8)).errors, IsEmpty());
  m.num_kv_heads = 16;  // 16 / 8: allowed
  EXPECT_THAT(CheckPlan(Good70b(), m, Cluster(8)).errors, IsEmpty());
  m.num_attention_heads = 48;
  m.num_kv_heads = 12;  // neither divides the other
  EXPECT_THAT(CheckPlan(Good70b(), m, Cluster(8)).errors,
              ElementsAre("layers[0-79].tp: num_kv_heads = 12 and tp = 8: one must divide the "
                          "other"));
}

TEST(PlanCheck, GlobalBatchMustDivideByMicroTimesDp) {
  Plan plan = Good70b();
  plan.micro_batch_size = 3;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("global_batch_size: 512 is not divisible by micro_batch_size × dp = 3 × "
                          "2 = 6"));
}

TEST(PlanCheck, EveryLayersDpMustSplitTheMicroBatch) {
  // 48 devices per stage on 192: dp 6 for most layers, dp 4 for the first.
  ModelSpec m = Dense70b();
  Plan plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 8, .dp = 6}, 480, 1);
  plan.layers[0] = {.tp = 12, .dp = 4};
  m.num_attention_heads = 96;
  m.num_kv_heads = 96;
  EXPECT_THAT(CheckPlan(plan, m, Cluster(24)).errors,
              ElementsAre("layers[0].dp: a micro-batch of 6 samples (micro_batch_size 1 × the "
                          "plan's largest dp 6) does not split over dp = 4"));
}

TEST(PlanCheck, SequenceParallelNeedsTensorParallel) {
  Plan plan = Plan::Uniform(Dense70b(), 4, LayerStrategy{.tp = 1, .dp = 16}, 512, 1);
  for (int i = 0; i < 4; ++i) plan.layers[static_cast<size_t>(i)].sequence_parallel = true;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("layers[0-3].sequence_parallel: needs tp > 1, got tp = 1"));
}

TEST(PlanCheck, ContextParallelNeedsTwoCpChunksOfTheSequence) {
  Plan plan = Plan::Uniform(Dense70b(), 4, LayerStrategy{.tp = 8, .cp = 2}, 512, 1);
  plan.sequence_length = 8190;  // divisible by 2, not by 4
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("layers[0-79].cp: sequence_length 8190 is not divisible by 2 × cp = 4 "
                          "(causal load balancing splits it into 2·cp chunks)"));
  ModelSpec encoder = Dense70b();
  encoder.architecture = Architecture::kEncoderOnly;
  EXPECT_THAT(CheckPlan(plan, encoder, Cluster(8)).errors, IsEmpty());
}

TEST(PlanCheck, ExpertParallelOnlyForMixtureOfExperts) {
  Plan plan = Plan::Uniform(Dense70b(), 4, LayerStrategy{.tp = 8, .dp = 2, .ep = 2}, 512, 1);
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("layers[0-79].ep: dense-70b is not a mixture-of-experts model; "
                          "expected ep = 1, got 2"));
}

TEST(PlanCheck, ExpertParallelMustDivideExpertsAndDpTimesCp) {
  const ModelSpec m = Moe8x();
  Plan plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 2, .dp = 4, .ep = 8}, 256, 1);
  EXPECT_THAT(CheckPlan(plan, m, Cluster(4)).errors,
              ElementsAre("layers[0-31].ep: ep = 8 does not divide dp × cp = 4 × 1 = 4 (expert "
                          "ranks are carved out of the dp × cp ranks)"));
  plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 2, .dp = 3, .ep = 3}, 240, 1);
  EXPECT_THAT(CheckPlan(plan, m, Cluster(3)).errors,
              ElementsAre("layers[0-31].ep: num_experts = 8 is not divisible by ep = 3"));
  plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 2, .cp = 2, .dp = 2, .ep = 4}, 256, 1);
  EXPECT_THAT(CheckPlan(plan, m, Cluster(4)).errors, IsEmpty());
}

TEST(PlanCheck, ExpertParallelWithPpNeedsPpOutermost) {
  const ModelSpec m = Moe8x();
  Plan plan = Plan::Uniform(m, 4, LayerStrategy{.tp = 2, .dp = 4, .ep = 2}, 256, 1);
  plan.rank_order = ParseRankOrder("tp-cp-ep-pp-dp").value();
  EXPECT_THAT(CheckPlan(plan, m, Cluster(4)).errors,
              ElementsAre("rank_order: 'tp-cp-ep-pp-dp' must end with pp when pp > 1 and a "
                          "layer has ep != cp (layer 0: ep = 2, cp = 1): the dense and expert "
                          "data-parallel sizes would differ"));
}

TEST(PlanCheck, RankOrderMustNameEveryDimensionOnce) {
  Plan plan = Good70b();
  plan.rank_order = {ParallelDim::kTp, ParallelDim::kDp, ParallelDim::kPp};
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("rank_order: expected each of tp, cp, ep, dp, pp once, got "
                          "'tp-dp-pp'"));
}

TEST(PlanCheck, PrecisionMustBeSupportedByTheDevices) {
  Plan plan = Good70b();
  plan.precision = topology::Precision::kFp8;
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).errors,
              ElementsAre("precision: fp8 is not supported by test-gpu"));
}

TEST(PlanCheck, ZeroWithoutDataParallelIsANoteNotAnError) {
  Plan plan = Plan::Uniform(Dense70b(), 8, LayerStrategy{.tp = 8, .zero_stage = 1}, 64, 1);
  const PlanCheck check = CheckPlan(plan, Dense70b(), Cluster(8));
  EXPECT_THAT(check.errors, IsEmpty());
  EXPECT_THAT(check.notes,
              ElementsAre("layers[0-79].zero_stage: ZeRO stage 1 with dp × cp = 1 shards over a "
                          "single rank and saves no memory"));
}

TEST(PlanCheck, TpGroupAcrossNodesIsANote) {
  Plan plan = Plan::Uniform(Dense70b(), 4, LayerStrategy{.tp = 16}, 64, 1);
  const PlanCheck check = CheckPlan(plan, Dense70b(), Cluster(8));
  EXPECT_THAT(check.errors, IsEmpty());
  EXPECT_THAT(check.notes, ElementsAre("layers[0-79].tp: tp groups of 16 ranks span 2 nodes (8 "
                                       "devices per node); their collectives cross the network"));
  // With dp innermost, even tp 8 groups leave the node.
  plan = Good70b();
  plan.rank_order = ParseRankOrder("dp-tp-cp-ep-pp").value();
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).notes,
              ElementsAre("layers[0-79].tp: tp groups of 8 ranks span 2 nodes (8 devices per "
                          "node); their collectives cross the network"));
}

TEST(PlanCheck, FewMicroBatchesForThePipelineIsANote) {
  Plan plan = Good70b();
  plan.global_batch_size = 4;  // m = 2 < pp = 4
  EXPECT_THAT(CheckPlan(plan, Dense70b(), Cluster(8)).notes,
              ElementsAre("pipeline: 2 micro-batches for pp = 4 stages; the pipeline bubble "
                          "(pp - 1) / m is 150% of the ideal time"));
}

TEST(PlanCheck, FoldsPerLayerMessagesIntoRanges) {
  Plan plan = Good70b();
  for (int i = 0; i < 10; ++i) plan.layers[static_cast<size_t>(i)].tp = 5;
  for (int i = 70; i < 80; ++i) plan.layers[static_cast<size_t>(i)].tp = 5;
  const PlanCheck check = CheckPlan(plan, Dense70b(), Cluster(8));
  EXPECT_THAT(check.errors,
              Contains("layers[0-9].tp: num_attention_heads = 64 is not divisible by tp = 5"));
  EXPECT_THAT(check.errors,
              Contains("layers[70-79].tp: num_attention_heads = 64 is not divisible by tp = 5"));
  EXPECT_THAT(check.errors, Not(Contains(HasSubstr("layers[10"))));
}

TEST(PlanJson, UniformPlanIsWrittenCompactly) {
  const Json j = PlanToJson(Good70b());
  EXPECT_FALSE(j.contains("overrides"));
  EXPECT_EQ(j["layers"]["tp"], 8);
  EXPECT_EQ(j["pipeline"]["schedule"], "1f1b");
  EXPECT_EQ(j["rank_order"], "tp-cp-ep-dp-pp");
  EXPECT_EQ(ParsePlanJson(j, "p.json").value(), Good70b());
}

TEST(PlanJson, NonUniformPlanRoundTripsThroughOverrides) {
  Plan plan = Good70b();
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  plan.stage_layers = {18, 22, 20, 20};
  plan.precision = topology::Precision::kFp16;
  plan.rank_order = ParseRankOrder("tp-dp-cp-ep-pp").value();
  for (int i = 0; i < 10; ++i) plan.layers[static_cast<size_t>(i)].recompute = Recompute::kFull;
  plan.layers[40] = {.tp = 4, .dp = 4, .zero_stage = 2, .sequence_parallel = true};
  const Json j = PlanToJson(plan);
  ASSERT_TRUE(j.contains("overrides"));
  EXPECT_EQ(j["overrides"].size(), 2u);
  EXPECT_EQ(j["overrides"][0], Json::parse(R"({"layers": "0-9", "recompute": "full"})"));
  EXPECT_EQ(ParsePlanJson(j, "p.json").value(), plan);
}

TEST(PlanJson, ReadsTheDocumentedForm) {
  const Plan plan = ParsePlanJsonText(R"({
    "num_layers": 80, "global_batch_size": 512, "sequence_length": 8192,
    "pipeline": {"pp": 4},
    "layers": {"tp": 8, "dp": 2, "sequence_parallel": true},
    "overrides": [{"layers": "0-15", "recompute": "selective"}, {"layers": 79, "zero_stage": 1}]
  })", "p.json").value();
  EXPECT_EQ(plan.num_layers(), 80);
  EXPECT_EQ(plan.micro_batch_size, 1);
  EXPECT_EQ(plan.precision, topology::Precision::kBf16);
  EXPECT_EQ(plan.layers[15].recompute, Recompute::kSelective);
  EXPECT_EQ(plan.layers[16].recompute, Recompute::kNone);
  EXPECT_EQ(plan.layers[79].zero_stage, 1);
  EXPECT_TRUE(plan.layers[40].sequence_parallel);
  EXPECT_TRUE(ValidatePlan(plan, Dense70b(), Cluster(8)).ok());
}

std::string ParseError(const char* text) {
  Result<Plan> plan = ParsePlanJsonText(text, "p.json");
  return plan.ok() ? "OK" : plan.status().message();
}

TEST(PlanJson, ErrorsNameTheFileAndTheField) {
  EXPECT_EQ(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                           "layers": {"tensor_parallel": 2}})"),
            "p.json: field 'layers.tensor_parallel': unknown field (known fields here: cp, dp, "
            "ep, recompute, sequence_parallel, tp, zero_stage)");
  EXPECT_EQ(ParseError(R"({"global_batch_size": 8, "sequence_length": 4})"),
            "p.json: field 'num_layers': missing (expected an integer)");
  EXPECT_EQ(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                           "pipeline": {"schedule": "zb"}})"),
            "p.json: field 'pipeline.schedule': expected 'gpipe', '1f1b' or 'interleaved', got "
            "'zb'");
  EXPECT_EQ(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                           "layers": {"zero_stage": 5}})"),
            "p.json: field 'layers.zero_stage': expected 0, 1, 2 or 3, got 5");
  EXPECT_EQ(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                           "overrides": [{"layers": "4-8", "tp": 2}]})"),
            "p.json: field 'overrides[0].layers': expected a layer index or an inclusive range "
            "\"first-last\" within 0-7, got \"4-8\"");
  EXPECT_EQ(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                           "rank_order": "tp-dp-pp"})"),
            "p.json: field 'rank_order': expected each of tp, cp, ep, dp, pp once, joined by '-' "
            "(e.g. 'tp-cp-ep-dp-pp'), got 'tp-dp-pp'");
  EXPECT_EQ(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                           "precision": "int4"})"),
            "p.json: field 'precision': unknown precision 'int4' (expected fp32, tf32, bf16, "
            "fp16 or fp8)");
}

TEST(PlanJson, RejectsUnknownFieldsAtEveryLevel) {
  EXPECT_THAT(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                              "micro_batch": 2})"),
              HasSubstr("micro_batch"));
  EXPECT_THAT(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                              "pipeline": {"stages": 2}})"),
              HasSubstr("stages"));
  EXPECT_THAT(ParseError(R"({"num_layers": 8, "global_batch_size": 8, "sequence_length": 4,
                              "overrides": [{"layers": "0", "recomptue": "full"}]})"),
              HasSubstr("recomptue"));
}

}  // namespace
}  // namespace orrery::workload
