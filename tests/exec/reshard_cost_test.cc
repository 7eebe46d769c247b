// The switch cost model (costmodel/reshard_cost.h) against the executor's
// re-sharding plan (exec/reshard.h): for the executor's fp32 Adam state
// the bytes each rank sends, receives and keeps, and its messages, are the
// same whether counted from the model's rectangles or from exec's
// element runs. Over MPI, exec_reshard_checks compares them with the bytes
// counted at the Isend/Irecv calls too.
#include "costmodel/reshard_cost.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "exec/reshard.h"
#include "exec/runtime.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using workload::LayerStrategy;
using workload::ModelSpec;
using workload::Plan;

Plan TinyPlan(const ModelSpec& model, int pp, LayerStrategy layer, int global_batch = 8) {
  Plan plan = Plan::Uniform(model, pp, layer, global_batch, /*micro_batch_size=*/1);
  plan.sequence_length = 32;
  return plan;
}

struct NamedPlan {
  std::string name;
  Plan plan;
};

// What exec's plan says of each rank, in the model's terms.
struct Counts {
  std::vector<int64_t> sent, received, kept;
  std::vector<int> messages_sent, messages_received;
};

Counts FromExec(const ReshardPlan& plan) {
  Counts c;
  c.sent = plan.bytes_sent;
  c.received = plan.bytes_received;
  c.kept = plan.bytes_kept;
  const size_t n = static_cast<size_t>(plan.world_size);
  c.messages_sent.assign(n, 0);
  c.messages_received.assign(n, 0);
  std::set<std::pair<int, int>> pairs;
  for (const StateTransfer& t : plan.transfers) pairs.insert({t.src, t.dst});
  for (const auto& [src, dst] : pairs) {
    ++c.messages_sent[static_cast<size_t>(src)];
    ++c.messages_received[static_cast<size_t>(dst)];
  }
  return c;
}

Counts FromModel(const costmodel::ReshardTraffic& t) {
  return {t.bytes_sent, t.bytes_received, t.bytes_kept, t.messages_sent, t.messages_received};
}

// Compares the two for one switch; returns exec's total bytes.
int64_t ExpectSameCounts(const ModelSpec& model, const NamedPlan& a, const NamedPlan& b, int world,
                         int64_t bucket_parameters = 0) {
  const std::string what = a.name + " → " + b.name;
  ExecuteOptions options;
  options.bucket_parameters = bucket_parameters;
  Result<std::vector<StateMap>> from = DescribeStates(model, a.plan, options, world);
  Result<std::vector<StateMap>> to = DescribeStates(model, b.plan, options, world);
  EXPECT_TRUE(from.ok() && to.ok()) << what;
  if (!from.ok() || !to.ok()) return 0;
  Result<ReshardPlan> plan = PlanReshard(*from, *to);
  EXPECT_TRUE(plan.ok()) << what << ": " << plan.status().message();
  if (!plan.ok()) return 0;

  costmodel::StateLayoutOptions layout;
  layout.bucket_parameters = bucket_parameters;
  layout.bytes = costmodel::StateBytes::Fp32Adam();
  Result<costmodel::ReshardTraffic> traffic = costmodel::ComputeReshardTraffic(
      model, a.plan, world, b.plan, world, /*devices_per_node=*/2, layout);
  EXPECT_TRUE(traffic.ok()) << what << ": " << traffic.status().message();
  if (!traffic.ok()) return 0;
  EXPECT_EQ(traffic->ranks, world) << what;

  const Counts e = FromExec(*plan);
  const Counts m = FromModel(*traffic);
  EXPECT_EQ(m.sent, e.sent) << what << ": bytes sent";
  EXPECT_EQ(m.received, e.received) << what << ": bytes received";
  EXPECT_EQ(m.kept, e.kept) << what << ": bytes kept";
  EXPECT_EQ(m.messages_sent, e.messages_sent) << what << ": messages sent";
  EXPECT_EQ(m.messages_received, e.messages_received) << what << ": messages received";
  int64_t held = 0;
  for (const StateMap& map : *to) held += 4 * map.DistinctElements();
  EXPECT_EQ(traffic->new_state_bytes, held) << what << ": bytes of the new state";
  return plan->total_bytes();
}

std::vector<NamedPlan> TwoRankPlans(const ModelSpec& model) {
  return {{"dp2", TinyPlan(model, 1, LayerStrategy{.dp = 2})},
          {"tp2", TinyPlan(model, 1, LayerStrategy{.tp = 2})},
          {"pp2", TinyPlan(model, 2, LayerStrategy{})},
          {"dp2-zero1", TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 1})},
          {"dp2-zero3", TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 3})},
          {"tp2-sp", TinyPlan(model, 1, LayerStrategy{.tp = 2, .sequence_parallel = true})}};
}

TEST(SwitchCostAgainstExecutor, AllThirtySixTwoRankSwitchesOfGptTinyCountTheSameBytes) {
  const ModelSpec model = *workload::ModelPreset("gpt-tiny");
  const std::vector<NamedPlan> plans = TwoRankPlans(model);
  int moving = 0;
  for (const NamedPlan& a : plans) {
    for (const NamedPlan& b : plans) {
      if (ExpectSameCounts(model, a, b, 2) > 0) ++moving;
    }
  }
  // Not a vacuous agreement: 23 of the 36 move bytes. The 13 that move
  // none: the 6 identities, dp2 (which holds everything) to each other
  // layout, and tp2 ↔ tp2-sp (sequence parallelism holds the same state).
  EXPECT_EQ(moving, 23);
}

TEST(SwitchCostAgainstExecutor, LlamaTinyTwoRankSwitchesCountTheSameBytes) {
  // GQA (2 kv heads), SwiGLU's [gate | up] fc1, RMSNorm, untied head.
  const ModelSpec model = *workload::ModelPreset("llama-tiny");
  const std::vector<NamedPlan> plans = TwoRankPlans(model);
  for (const NamedPlan& a : plans) {
    for (const NamedPlan& b : plans) ExpectSameCounts(model, a, b, 2);
  }
}

TEST(SwitchCostAgainstExecutor, FourRankSwitchesCountTheSameBytes) {
  const ModelSpec model = *workload::ModelPreset("gpt-tiny");
  const std::vector<NamedPlan> plans = {
      {"tp2-dp2", TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 2})},
      {"tp4", TinyPlan(model, 1, LayerStrategy{.tp = 4})},
      {"pp2-dp2-zero1", TinyPlan(model, 2, LayerStrategy{.dp = 2, .zero_stage = 1})},
      {"pp2-tp2", TinyPlan(model, 2, LayerStrategy{.tp = 2})},
      {"dp4-zero3", TinyPlan(model, 1, LayerStrategy{.dp = 4, .zero_stage = 3})},
      {"pp4", TinyPlan(model, 4, LayerStrategy{})},
      {"tp2-dp2-zero2", TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 2, .zero_stage = 2})}};
  for (const NamedPlan& a : plans) {
    for (const NamedPlan& b : plans) EXPECT_GE(ExpectSameCounts(model, a, b, 4), 0);
  }
}

TEST(SwitchCostAgainstExecutor, EightRankSwitchesCountTheSameBytes) {
  // Groups of destinations sharing a nearest holder, larger and smaller
  // than the holder's replicas, dealt over them (pp 4 × dp 2 → dp 8: 6
  // destinations, 2 replicas; pp 2 × dp 4 → dp 8: 4 and 4).
  const ModelSpec model = *workload::ModelPreset("gpt-tiny");
  const std::vector<NamedPlan> plans = {
      {"pp4-dp2", TinyPlan(model, 4, LayerStrategy{.dp = 2})},
      {"pp2-dp4", TinyPlan(model, 2, LayerStrategy{.dp = 4})},
      {"dp8", TinyPlan(model, 1, LayerStrategy{.dp = 8})},
      {"pp2-tp2-dp2-zero1", TinyPlan(model, 2, LayerStrategy{.tp = 2, .dp = 2, .zero_stage = 1})},
      {"tp2-dp4-zero3", TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 4, .zero_stage = 3})}};
  for (const NamedPlan& a : plans) {
    for (const NamedPlan& b : plans) EXPECT_GE(ExpectSameCounts(model, a, b, 8), 0);
  }
}

TEST(SwitchCostAgainstExecutor, SmallBucketsInterleavingAndRankOrderCountTheSameBytes) {
  const ModelSpec model = *workload::ModelPreset("gpt-tiny");
  Plan interleaved = TinyPlan(model, 2, LayerStrategy{.dp = 2, .zero_stage = 1});
  interleaved.schedule = workload::PipelineSchedule::kInterleaved;
  interleaved.vpp = 2;
  Plan reordered = TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 2, .zero_stage = 1});
  reordered.rank_order = *workload::ParseRankOrder("dp-tp-cp-ep-pp");
  Plan uneven = TinyPlan(model, 2, LayerStrategy{.tp = 2});
  uneven.stage_layers = {1, 3};
  const std::vector<NamedPlan> plans = {
      {"pp2-dp2-zero1-vpp2", interleaved},
      {"dp-first tp2-dp2-zero1", reordered},
      {"pp2-tp2 1+3 layers", uneven},
      {"dp4-zero1", TinyPlan(model, 1, LayerStrategy{.dp = 4, .zero_stage = 1})}};
  // Buckets of 3·10⁴ parameters: a few units each, so the ZeRO shards cut
  // through the middle of tensors of different units.
  for (const NamedPlan& a : plans) {
    for (const NamedPlan& b : plans) {
      ExpectSameCounts(model, a, b, 4, /*bucket_parameters=*/30'000);
      ExpectSameCounts(model, a, b, 4, /*bucket_parameters=*/0);
    }
  }
}

}  // namespace
}  // namespace orrery::exec
