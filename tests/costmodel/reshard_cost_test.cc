// The switch cost model (costmodel/reshard_cost.h): bytes counted by hand
// for small switches, the sender rule, off-node counting, the time of a
// switch and the choice of a checkpoint. tests/exec/reshard_cost_test.cc
// checks the bytes against the executor's own re-sharding plan.
#include "costmodel/reshard_cost.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "costmodel/collective.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::costmodel {
namespace {

using workload::LayerStrategy;
using workload::ModelSpec;
using workload::Plan;

ModelSpec Model(const std::string& name) {
  Result<ModelSpec> m = workload::ModelPreset(name);
  EXPECT_TRUE(m.ok()) << name;
  return *m;
}

Plan Uniform(const ModelSpec& model, int pp, LayerStrategy layer) {
  return Plan::Uniform(model, pp, layer, /*global_batch_size=*/64, /*micro_batch_size=*/1);
}

ReshardTraffic Traffic(const ModelSpec& model, const Plan& from, int from_ranks, const Plan& to,
                       int to_ranks, int devices_per_node,
                       StateBytes bytes = StateBytes::Fp32Adam()) {
  StateLayoutOptions options;
  options.bytes = bytes;
  Result<ReshardTraffic> t =
      ComputeReshardTraffic(model, from, from_ranks, to, to_ranks, devices_per_node, options);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : ReshardTraffic{};
}

// gpt-tiny: hidden h = 64, FFN 4h, vocab 512, 64 positions, biases and
// LayerNorm, tied embeddings. A layer holds 12h² + 13h parameters, of
// which 6h are whole on every tensor-parallel rank (two norms' weights and
// biases, the row-parallel biases of proj and fc2).
constexpr int64_t kH = 64;
constexpr int64_t kLayer = 12 * kH * kH + 13 * kH;  // 49 984
constexpr int64_t kLayerWhole = 6 * kH;
constexpr int64_t kWords = 512 * kH;
constexpr int64_t kPositions = 64 * kH;
constexpr int64_t kModel = kWords + kPositions + 4 * kLayer + 2 * kH;
constexpr int64_t kFp32Adam = 12;  // bytes an element: parameter 4, m and v 8

TEST(ComputeReshardTraffic, PipelineToDataParallelSendsEachStageWhatTheOtherHeld) {
  // Stage 0 holds the embeddings and layers 0–1; stage 1 layers 2–3 and
  // the head (its norm and its copy of the tied word embeddings).
  const ModelSpec model = Model("gpt-tiny");
  const ReshardTraffic t = Traffic(model, Uniform(model, 2, {}), 2, Uniform(model, 1, {.dp = 2}), 2,
                                   /*devices_per_node=*/2);
  const int64_t to_rank0 = kFp32Adam * (2 * kLayer + 2 * kH);
  const int64_t to_rank1 = kFp32Adam * (2 * kLayer + kPositions);
  EXPECT_EQ(t.bytes_received, (std::vector<int64_t>{to_rank0, to_rank1}));
  EXPECT_EQ(t.bytes_sent, (std::vector<int64_t>{to_rank1, to_rank0}));
  EXPECT_EQ(t.bytes_kept,
            (std::vector<int64_t>{kFp32Adam * kModel - to_rank0, kFp32Adam * kModel - to_rank1}));
  EXPECT_EQ(t.messages_sent, (std::vector<int>{1, 1}));
  EXPECT_EQ(t.messages_received, (std::vector<int>{1, 1}));
  EXPECT_EQ(t.sent_off_node, (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(t.old_state_bytes, kFp32Adam * kModel);
  EXPECT_EQ(t.new_state_bytes, 2 * kFp32Adam * kModel);
  EXPECT_EQ(t.total_bytes(), to_rank0 + to_rank1);
}

TEST(ComputeReshardTraffic, DataToPipelineParallelMovesNothing) {
  const ModelSpec model = Model("gpt-tiny");
  const ReshardTraffic t =
      Traffic(model, Uniform(model, 1, {.dp = 2}), 2, Uniform(model, 2, {}), 2, 2);
  EXPECT_EQ(t.total_bytes(), 0);
  EXPECT_EQ(t.bytes_kept, (std::vector<int64_t>{kFp32Adam * (kWords + kPositions + 2 * kLayer),
                                                kFp32Adam * (2 * kLayer + 2 * kH + kWords)}));
  EXPECT_EQ(t.messages_sent, (std::vector<int>{0, 0}));
}

TEST(ComputeReshardTraffic, DestinationsSharingANearestHolderAreDealtOverItsReplicas) {
  // pp 2 × dp 2 → dp 4: ranks 0, 1 held stage 0, ranks 2, 3 stage 1. Both
  // ranks 0 and 1 have rank 2 as the nearest holder at or after them of
  // stage 1's state; nearest first, rank 1 gets it from rank 2 and rank 0
  // from the next replica, rank 3. Stage 0's, cyclically nearest rank 0 for
  // ranks 2 and 3: rank 3 from rank 0, rank 2 from rank 1.
  const ModelSpec model = Model("gpt-tiny");
  const Plan from = Uniform(model, 2, {.dp = 2});
  const Plan to = Uniform(model, 1, {.dp = 4});
  const int64_t stage1_only = kFp32Adam * (2 * kLayer + 2 * kH);
  const int64_t stage0_only = kFp32Adam * (2 * kLayer + kPositions);
  for (const int per_node : {2, 4}) {
    SCOPED_TRACE("devices per node " + std::to_string(per_node));
    const ReshardTraffic t = Traffic(model, from, 4, to, 4, per_node);
    EXPECT_EQ(t.bytes_sent,
              (std::vector<int64_t>{stage0_only, stage0_only, stage1_only, stage1_only}));
    EXPECT_EQ(t.bytes_received,
              (std::vector<int64_t>{stage1_only, stage1_only, stage0_only, stage0_only}));
    EXPECT_EQ(t.messages_sent, (std::vector<int>{1, 1, 1, 1}));
    EXPECT_EQ(t.messages_received, (std::vector<int>{1, 1, 1, 1}));
    // Two nodes of two: every transfer crosses between them; one node of
    // four: none does.
    const bool crossing = per_node == 2;
    EXPECT_EQ(t.sent_off_node, crossing ? t.bytes_sent : std::vector<int64_t>(4, 0));
    EXPECT_EQ(t.received_off_node, crossing ? t.bytes_received : std::vector<int64_t>(4, 0));
    EXPECT_EQ(t.messages_sent_off_node, crossing ? t.messages_sent : std::vector<int>(4, 0));
    EXPECT_EQ(t.messages_received_off_node,
              crossing ? t.messages_received : std::vector<int>(4, 0));
  }
}

TEST(ComputeReshardTraffic, MoreDestinationsThanReplicasWrapAroundTheHolders) {
  // pp 4 × dp 2 → dp 8, one gpt-tiny layer a stage: stage s held by ranks
  // 2s and 2s + 1, needed by the 6 others, which all have 2s as nearest
  // holder at or after them (cyclically). Nearest first they take 2s,
  // 2s + 1, 2s, … : each replica sends its stage to 3 ranks. The word
  // embeddings, on ranks 0, 1 (embedding) and 6, 7 (the head's copy), are
  // needed by ranks 2 to 5, nearest holder 6: 5 from 6, 4 from 7, 3 from 0,
  // 2 from 1. Each rank sends to 3 others. (The old rule, nearest holder
  // alone, had ranks 0, 2, 4, 6 send 6 copies and the others none.)
  const ModelSpec model = Model("gpt-tiny");
  const ReshardTraffic t = Traffic(model, Uniform(model, 4, {.dp = 2}), 8,
                                   Uniform(model, 1, {.dp = 8}), 8, 8);
  const int64_t s0 = kFp32Adam * (kLayer + kPositions);
  const int64_t s1 = kFp32Adam * kLayer;  // and s2
  const int64_t s3 = kFp32Adam * (kLayer + 2 * kH);
  const int64_t w = kFp32Adam * kWords;
  EXPECT_EQ(t.bytes_sent, (std::vector<int64_t>{3 * s0 + w, 3 * s0 + w, 3 * s1, 3 * s1, 3 * s1,
                                                3 * s1, 3 * s3 + w, 3 * s3 + w}));
  EXPECT_EQ(t.messages_sent, (std::vector<int>(8, 3)));
  EXPECT_EQ(t.bytes_received, (std::vector<int64_t>{2 * s1 + s3, 2 * s1 + s3, s0 + s1 + s3 + w,
                                                    s0 + s1 + s3 + w, s0 + s1 + s3 + w,
                                                    s0 + s1 + s3 + w, s0 + 2 * s1, s0 + 2 * s1}));
}

TEST(ComputeReshardTraffic, ShrinkingTheWorldGathersTheTensorParallelHalves) {
  // tp 2 on 2 ranks → 1 rank: rank 0 lacks rank 1's half of every split
  // tensor (the replicated ones — positions, norms, row-parallel biases —
  // it has).
  const ModelSpec model = Model("gpt-tiny");
  const ReshardTraffic t =
      Traffic(model, Uniform(model, 1, {.tp = 2}), 2, Uniform(model, 1, {}), 1, 8);
  const int64_t whole = kPositions + 4 * kLayerWhole + 2 * kH;
  const int64_t half = kFp32Adam * (kModel - whole) / 2;
  EXPECT_EQ(t.ranks, 2);
  EXPECT_EQ(t.bytes_received, (std::vector<int64_t>{half, 0}));
  EXPECT_EQ(t.bytes_sent, (std::vector<int64_t>{0, half}));
  EXPECT_EQ(t.old_state_bytes, kFp32Adam * kModel);
  EXPECT_EQ(t.new_state_bytes, kFp32Adam * kModel);
}

TEST(ComputeReshardTraffic, ZeroOneShardsOfOneBucketMoveHalfTheMoments) {
  // llama-tiny (untied, 213 568 parameters, one bucket under the default
  // bucket size): under ZeRO 1 each of 2 ranks holds the moments of half
  // the bucket; under ZeRO 0 each needs all of them.
  const ModelSpec model = Model("llama-tiny");
  ASSERT_EQ(model.ParameterCount(), 213'568);
  const ReshardTraffic t = Traffic(model, Uniform(model, 1, {.dp = 2, .zero_stage = 1}), 2,
                                   Uniform(model, 1, {.dp = 2}), 2, 2);
  const int64_t moments = 8 * 213'568 / 2;
  EXPECT_EQ(t.bytes_received, (std::vector<int64_t>{moments, moments}));
  EXPECT_EQ(t.bytes_sent, (std::vector<int64_t>{moments, moments}));
  EXPECT_EQ(t.bytes_kept[0], kFp32Adam * 213'568 - moments);
  // Mixed precision: 2-byte parameters (all kept) and 12 bytes of moments.
  const ReshardTraffic mixed =
      Traffic(model, Uniform(model, 1, {.dp = 2, .zero_stage = 1}), 2, Uniform(model, 1, {.dp = 2}),
              2, 2, StateBytes::MixedPrecisionAdam());
  EXPECT_EQ(mixed.bytes_received[0], 12 * 213'568 / 2);
  EXPECT_EQ(mixed.old_state_bytes, 14 * 213'568);
}

TEST(ComputeReshardTraffic, ALayerWisePlanLaysOutEachLayerByItsOwnStrategy) {
  // Layers 0–1 (and the embedding before them) tp 2, layers 2–3 (and the
  // head) dp 2, each unit its own space → dp 2 everywhere. Each rank lacks
  // the other's half of layers 0–1's split tensors; the word embeddings it
  // has whole in the head's copy.
  const ModelSpec model = Model("gpt-tiny");
  Plan layer_wise = Uniform(model, 1, {.dp = 2});
  layer_wise.layers[0] = layer_wise.layers[1] = LayerStrategy{.tp = 2};
  const ReshardTraffic t = Traffic(model, layer_wise, 2, Uniform(model, 1, {.dp = 2}), 2, 2);
  const int64_t half = kFp32Adam * 2 * (kLayer - kLayerWhole) / 2;
  EXPECT_EQ(half, 595'200);
  EXPECT_EQ(t.bytes_received, (std::vector<int64_t>{half, half}));
  EXPECT_EQ(t.bytes_sent, (std::vector<int64_t>{half, half}));
  // And back: nothing to move, every rank holds a part of what it had.
  EXPECT_EQ(Traffic(model, Uniform(model, 1, {.dp = 2}), 2, layer_wise, 2, 2).total_bytes(), 0);
}

TEST(ComputeReshardTraffic, Llama405bStateTotalsAreTheModelsOwn) {
  // llama3-405b on 128 ranks. Every element of its P parameters is in the
  // old state once; a tp-8 layout holds P + 7R elements over the 8 tp
  // ranks of a replica, R the replicated ones (two RMSNorms per layer and
  // the final one). dp 16 → pp 16 moves nothing; pp 16 → dp 16 sends each
  // rank the 15 stages it lacks.
  const ModelSpec model = Model("llama3-405b");
  const int64_t p = model.ParameterCount();
  const int64_t r = (2 * 126 + 1) * int64_t{16384};
  const int64_t replica = kFp32Adam * (p + 7 * r);
  const Plan dp16 = Uniform(model, 1, {.tp = 8, .dp = 16});
  const Plan pp16 = Uniform(model, 16, {.tp = 8});
  const ReshardTraffic to_pp = Traffic(model, dp16, 128, pp16, 128, 8);
  EXPECT_EQ(to_pp.total_bytes(), 0);
  EXPECT_EQ(to_pp.old_state_bytes, kFp32Adam * p);
  EXPECT_EQ(to_pp.new_state_bytes, replica);
  const ReshardTraffic to_dp = Traffic(model, pp16, 128, dp16, 128, 8);
  EXPECT_EQ(to_dp.new_state_bytes, 16 * replica);
  EXPECT_EQ(to_dp.total_bytes(), 15 * replica);
  // Stages are whole nodes of 8 (tp innermost): every byte crosses nodes.
  int64_t off = 0;
  for (int64_t b : to_dp.sent_off_node) off += b;
  EXPECT_EQ(off, to_dp.total_bytes());
}

TEST(ComputeReshardTraffic, MixtureOfExpertsStateIsEveryParameterOnce) {
  // mixtral-8x7b with ep 4 out of dp 4 (2 experts a rank), tp 2, pp 2,
  // ZeRO 1 over the expert-data-parallel ranks: each element once in the
  // old state.
  const ModelSpec model = Model("mixtral-8x7b");
  const Plan ep4 = Uniform(model, 2, {.tp = 2, .dp = 4, .ep = 4, .zero_stage = 1});
  const Plan tp4 = Uniform(model, 2, {.tp = 4, .dp = 2, .ep = 2});
  const ReshardTraffic t = Traffic(model, ep4, 16, tp4, 16, 8);
  EXPECT_EQ(t.old_state_bytes, kFp32Adam * model.ParameterCount());
  EXPECT_GT(t.total_bytes(), 0);
}

TEST(ComputeReshardTraffic, StateTotalsMatchTheParameterCountOfEveryDecoderFamily) {
  for (const std::string name : {"gpt3-175b", "llama3-70b", "llama2-7b"}) {
    const ModelSpec model = Model(name);
    const ReshardTraffic t = Traffic(model, Uniform(model, 4, {.tp = 4, .dp = 2}), 32,
                                     Uniform(model, 2, {.tp = 8, .dp = 2, .zero_stage = 3}), 32, 8,
                                     StateBytes::MixedPrecisionAdam());
    EXPECT_EQ(t.old_state_bytes, 14 * model.ParameterCount()) << name;
    // ZeRO 3 over dp holds each element once per tp rank that needs it.
    EXPECT_GE(t.new_state_bytes, 14 * model.ParameterCount()) << name;
  }
}

TEST(ComputeReshardTraffic, RefusesPlansThatDoNotFitTheRanksOrTheModel) {
  const ModelSpec model = Model("gpt-tiny");
  const Plan dp2 = Uniform(model, 1, {.dp = 2});
  Result<ReshardTraffic> t = ComputeReshardTraffic(model, dp2, 4, dp2, 2, 2);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("old plan"), std::string::npos) << t.status().message();
  const Plan tp3 = Uniform(model, 1, {.tp = 3});
  t = ComputeReshardTraffic(model, dp2, 2, tp3, 3, 2);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("num_attention_heads"), std::string::npos)
      << t.status().message();
  const ModelSpec t5 = Model("t5-large");
  const Plan t5_dp2 = Uniform(t5, 1, {.dp = 2});
  EXPECT_EQ(ComputeReshardTraffic(t5, t5_dp2, 2, t5_dp2, 2, 2).status().code(),
            StatusCode::kUnimplemented);
}

// ---- EstimateSwitchCost -------------------------------------------------------

topology::ClusterSpec DgxH100(int nodes) {
  Result<topology::ClusterSpec> c = topology::ClusterPreset("dgx-h100");
  EXPECT_TRUE(c.ok());
  Result<topology::ClusterSpec> scaled = c->WithNodes(nodes);
  EXPECT_TRUE(scaled.ok());
  return *scaled;
}

// 16 ranks on two nodes of 8: rank 0 sends 1 GB to rank 1 (same node) and
// 2 GB to rank 8 (the other node).
ReshardTraffic HandMadeTraffic() {
  ReshardTraffic t;
  t.ranks = 16;
  t.devices_per_node = 8;
  t.bytes_sent.assign(16, 0);
  t.bytes_received.assign(16, 0);
  t.bytes_kept.assign(16, 0);
  t.sent_off_node.assign(16, 0);
  t.received_off_node.assign(16, 0);
  t.messages_sent.assign(16, 0);
  t.messages_received.assign(16, 0);
  t.messages_sent_off_node.assign(16, 0);
  t.messages_received_off_node.assign(16, 0);
  t.bytes_sent[0] = 3'000'000'000;
  t.sent_off_node[0] = 2'000'000'000;
  t.messages_sent[0] = 2;
  t.messages_sent_off_node[0] = 1;
  t.bytes_received[1] = 1'000'000'000;
  t.messages_received[1] = 1;
  t.bytes_received[8] = t.received_off_node[8] = 2'000'000'000;
  t.messages_received[8] = t.messages_received_off_node[8] = 1;
  t.old_state_bytes = 5'000'000'000;
  t.new_state_bytes = 6'000'000'000;
  return t;
}

TEST(EstimateSwitchCost, TheSlowestRankSendsOverItsFabricAndItsNicWithAnAlphaPerMessage) {
  const topology::ClusterSpec cluster = DgxH100(2);
  const topology::NodeType& node = cluster.PrimaryNodeType();
  Result<CollectiveModel> collectives = CollectiveModel::Create(cluster);
  ASSERT_TRUE(collectives.ok());
  const double alpha_on =
      collectives->Estimate(CollectiveOp::kSendRecv, Bytes(0), RankGroup{1, 2})->time.ToSeconds();
  const double alpha_off =
      collectives->Estimate(CollectiveOp::kSendRecv, Bytes(0), RankGroup{2, 1})->time.ToSeconds();
  // NCCL's point-to-point latency (Simple): base 8.4 µs + NVLink 3.4 µs on
  // a node; across nodes the network's 14 µs and more.
  EXPECT_NEAR(alpha_on, 11.8e-6, 1e-9);
  EXPECT_GT(alpha_off, alpha_on + 14e-6 - 1e-9);

  Result<SwitchCost> cost = EstimateSwitchCost(HandMadeTraffic(), cluster, std::nullopt);
  ASSERT_TRUE(cost.ok()) << cost.status().message();
  const double fabric = node.fabric.bandwidth_per_device.BytesPerSecond();
  const double nic = node.NicBandwidthPerDevice(0).BytesPerSecond();
  const double rank0_out = 1e9 / fabric + 2e9 / nic + alpha_on + alpha_off;
  EXPECT_NEAR(cost->in_memory.ToSeconds(), rank0_out, 1e-9);
  EXPECT_FALSE(cost->checkpoint.has_value());
  EXPECT_FALSE(cost->via_checkpoint);
  EXPECT_EQ(cost->time(), cost->in_memory);
}

TEST(EstimateSwitchCost, ACheckpointIsChosenOnlyWhenStrictlyCheaper) {
  const topology::ClusterSpec cluster = DgxH100(2);
  // 5 GB written at 10 GB/s and 6 GB read at 20 GB/s: 0.8 s, far above
  // the in-memory exchange (2 GB over a 50 GB/s NIC: about 40 ms).
  Result<SwitchCost> slow =
      EstimateSwitchCost(HandMadeTraffic(), cluster, StorageBandwidth{10, 20});
  ASSERT_TRUE(slow.ok());
  EXPECT_NEAR(slow->checkpoint->ToSeconds(), 0.8, 1e-9);
  EXPECT_FALSE(slow->via_checkpoint);
  EXPECT_EQ(slow->time(), slow->in_memory);
  // At 2 TB/s both ways: 5.5 ms, cheaper.
  Result<SwitchCost> fast =
      EstimateSwitchCost(HandMadeTraffic(), cluster, StorageBandwidth{2000, 2000});
  ASSERT_TRUE(fast.ok());
  EXPECT_NEAR(fast->checkpoint->ToSeconds(), 0.0055, 1e-9);
  EXPECT_TRUE(fast->via_checkpoint);
  EXPECT_EQ(fast->time(), *fast->checkpoint);
}

TEST(EstimateSwitchCost, ASwitchThatMovesNothingCostsNothing) {
  const ModelSpec model = Model("gpt-tiny");
  const ReshardTraffic t =
      Traffic(model, Uniform(model, 1, {.dp = 2}), 2, Uniform(model, 1, {.tp = 2}), 2, 8);
  ASSERT_EQ(t.total_bytes(), 0);
  Result<SwitchCost> cost = EstimateSwitchCost(t, DgxH100(1), StorageBandwidth{10, 10});
  ASSERT_TRUE(cost.ok());
  EXPECT_EQ(cost->in_memory, Duration::Zero());
  EXPECT_EQ(*cost->checkpoint, Duration::Zero());
  EXPECT_FALSE(cost->via_checkpoint);
}

TEST(EstimateSwitchCost, RefusesANodeSizeOtherThanTheTrafficsAndBadStorage) {
  ReshardTraffic t = HandMadeTraffic();
  t.devices_per_node = 4;
  EXPECT_EQ(EstimateSwitchCost(t, DgxH100(4), std::nullopt).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EstimateSwitchCost(HandMadeTraffic(), DgxH100(2), StorageBandwidth{0, 10}).status().code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace orrery::costmodel
