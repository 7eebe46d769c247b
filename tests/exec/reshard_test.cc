// Re-sharding between plans (exec/reshard.h). The pure part — what each
// rank holds, the plan, and its execution in one process — is checked here
// on gpt-tiny's layouts; the exchange over MPI and the training that goes
// on after it run in exec_reshard_checks (tests/exec/reshard_checks_main.cc)
// under mpirun.
#include "exec/reshard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/cli/cli_runner.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::exec {
namespace {

using ::orrery::testing::CliRun;
using ::orrery::testing::RunShell;
using ::testing::HasSubstr;
using workload::LayerStrategy;
using workload::ModelSpec;
using workload::Plan;

ModelSpec GptTiny() { return *workload::ModelPreset("gpt-tiny"); }

Plan TinyPlan(const ModelSpec& model, int pp, LayerStrategy layer) {
  Plan plan = Plan::Uniform(model, pp, layer, /*global_batch_size=*/8, /*micro_batch_size=*/1);
  plan.sequence_length = 32;
  return plan;
}

struct NamedPlan {
  std::string name;
  Plan plan;
};

// The layouts of the round-trip tests, all on 2 ranks.
std::vector<NamedPlan> TwoRankPlans(const ModelSpec& model) {
  return {{"dp2", TinyPlan(model, 1, LayerStrategy{.dp = 2})},
          {"tp2", TinyPlan(model, 1, LayerStrategy{.tp = 2})},
          {"pp2", TinyPlan(model, 2, LayerStrategy{})},
          {"dp2-zero1", TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 1})},
          {"dp2-zero3", TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 3})},
          {"tp2-sp", TinyPlan(model, 1, LayerStrategy{.tp = 2, .sequence_parallel = true})}};
}

std::vector<StateMap> Maps(const ModelSpec& model, const Plan& plan, int world,
                           int64_t bucket_parameters = 0) {
  ExecuteOptions options;
  options.bucket_parameters = bucket_parameters;
  Result<std::vector<StateMap>> maps = DescribeStates(model, plan, options, world);
  EXPECT_TRUE(maps.ok()) << maps.status().message();
  return maps.ok() ? *maps : std::vector<StateMap>{};
}

// A value that names its element: (kind, tensor) pairs get consecutive
// ids as they are first seen in this process, and element i of the pair
// with id k is k·2^15 + i — exact in float and distinct for gpt-tiny (its
// largest tensor has 2^15 elements, it has fewer than 2^9 pairs).
uint64_t TagBase(StateKind kind, const std::string& tensor) {
  static std::map<std::pair<StateKind, std::string>, uint64_t> ids;
  return ids.emplace(std::make_pair(kind, tensor), ids.size() + 1).first->second << 15;
}

// The state `map` describes with every element set to its Tag (padding zero).
TrainerState Tagged(const StateMap& map, int64_t step) {
  TrainerState state = EmptyState(map, step);
  for (const StateRun& r : map.runs) {
    SpaceState& s = state.spaces[static_cast<size_t>(r.space)];
    std::vector<float>& buffer = r.kind == StateKind::kParameter ? s.params
                                 : r.kind == StateKind::kAdamM   ? s.adam_m
                                                                 : s.adam_v;
    const uint64_t base = TagBase(r.kind, r.tensor);
    for (int64_t i = 0; i < r.length; ++i) {
      buffer[static_cast<size_t>(r.offset + i)] =
          static_cast<float>(base + static_cast<uint64_t>(r.begin + i));
    }
  }
  return state;
}

bool SameState(const TrainerState& a, const TrainerState& b) {
  if (a.step != b.step || a.spaces.size() != b.spaces.size()) return false;
  for (size_t i = 0; i < a.spaces.size(); ++i) {
    if (a.spaces[i].params != b.spaces[i].params || a.spaces[i].adam_m != b.spaces[i].adam_m ||
        a.spaces[i].adam_v != b.spaces[i].adam_v) {
      return false;
    }
  }
  return true;
}

// Elements (kind, tensor, index) a map holds, as one flag per element.
using Held = std::map<std::pair<StateKind, std::string>, std::vector<char>>;

Held HeldBy(const StateMap& map) {
  Held held;
  for (const StateRun& r : map.runs) {
    std::vector<char>& flags = held[{r.kind, r.tensor}];
    flags.resize(static_cast<size_t>(map.tensor_elements.at(r.tensor)), 0);
    for (int64_t i = r.begin; i < r.begin + r.length; ++i) flags[static_cast<size_t>(i)] = 1;
  }
  return held;
}

// Bytes of the elements `to` holds and `from` does not: what a rank must
// receive, counted element by element.
int64_t MissingBytes(const StateMap& from, const StateMap& to) {
  const Held had = HeldBy(from);
  int64_t missing = 0;
  for (const auto& [key, flags] : HeldBy(to)) {
    auto it = had.find(key);
    for (size_t i = 0; i < flags.size(); ++i) {
      if (flags[i] && (it == had.end() || !it->second[i])) missing += 4;
    }
  }
  return missing;
}

// gpt-tiny: hidden h = 64, FFN 4h, vocab 512, 64 positions, biases and
// LayerNorm with bias, tied embeddings. A layer holds 12h² + 13h
// parameters (qkv 3h² + 3h, proj h² + h, fc1 4h² + 4h, fc2 4h² + h, two
// norms 4h); the head's own tensors are its norm (2h).
constexpr int64_t kH = 64;
constexpr int64_t kLayer = 12 * kH * kH + 13 * kH;  // 49 984
constexpr int64_t kWords = 512 * kH;
constexpr int64_t kPositions = 64 * kH;
constexpr int64_t kModel = kWords + kPositions + 4 * kLayer + 2 * kH;
constexpr int64_t kKinds = 3;  // parameters, Adam m, Adam v
constexpr int64_t kBytesPerElement = 4;

TEST(DescribeState, ADataParallelRankHoldsTheWholeModelThreeTimesOver) {
  const ModelSpec model = GptTiny();
  for (const StateMap& map : Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 2}), 2)) {
    EXPECT_EQ(map.DistinctElements(), kKinds * kModel) << "rank " << map.rank;
    EXPECT_EQ(map.tensor_elements.at("embedding.word_embeddings.weight"), kWords);
  }
}

TEST(DescribeState, ZeroShardsTheMomentsAndZeroThreeTheParametersToo) {
  const ModelSpec model = GptTiny();
  int64_t zero1 = 0, zero3 = 0;
  for (const StateMap& map :
       Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 1}), 2)) {
    zero1 += map.DistinctElements();
  }
  for (const StateMap& map :
       Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 3}), 2)) {
    zero3 += map.DistinctElements();
  }
  // ZeRO 1: two parameter replicas, one copy of each moment over the two
  // ranks. ZeRO 3: one copy of everything. Except the tied word
  // embeddings: their two copies (the embedding's and the head's) sit at
  // different places of the sharded buffers, so an element may be in rank
  // 0's shard of one copy and in rank 1's of the other.
  EXPECT_GE(zero1, 2 * kModel + 2 * kModel);
  EXPECT_LE(zero1, 2 * kModel + 2 * (kModel + kWords));
  EXPECT_GE(zero3, kKinds * kModel);
  EXPECT_LE(zero3, kKinds * (kModel + kWords));
}

TEST(DescribeState, TensorParallelRanksSplitTheMatricesAndReplicateTheVectors) {
  const ModelSpec model = GptTiny();
  const std::vector<StateMap> maps = Maps(model, TinyPlan(model, 1, LayerStrategy{.tp = 2}), 2);
  ASSERT_EQ(maps.size(), 2u);
  // Replicated on both tp ranks: positions, per layer the two norms (4h)
  // and the row-parallel biases (proj, fc2: 2h), the head's norm (2h).
  const int64_t replicated = kPositions + 4 * (4 * kH + 2 * kH) + 2 * kH;
  EXPECT_EQ(maps[0].DistinctElements() + maps[1].DistinctElements(),
            kKinds * (kModel + replicated));
}

TEST(PlanReshard, DataToTensorParallelMovesNothing) {
  // Under ZeRO 0 a data-parallel rank holds everything a tensor-parallel
  // rank needs.
  const ModelSpec model = GptTiny();
  const std::vector<StateMap> from = Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 2}), 2);
  const std::vector<StateMap> to = Maps(model, TinyPlan(model, 1, LayerStrategy{.tp = 2}), 2);
  Result<ReshardPlan> plan = PlanReshard(from, to);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_TRUE(plan->transfers.empty());
  EXPECT_EQ(plan->total_bytes(), 0);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(plan->bytes_received[static_cast<size_t>(r)], 0);
    EXPECT_EQ(plan->bytes_kept[static_cast<size_t>(r)],
              kBytesPerElement * to[static_cast<size_t>(r)].DistinctElements());
  }
}

TEST(PlanReshard, PipelineToDataParallelSendsEachStageWhatTheOtherHeld) {
  // Stage 0 holds the embeddings and layers 0–1; stage 1 layers 2–3 and
  // the head (its norm and its copy of the tied word embeddings). Under
  // dp 2 each rank needs the whole model.
  const ModelSpec model = GptTiny();
  const std::vector<StateMap> from = Maps(model, TinyPlan(model, 2, LayerStrategy{}), 2);
  const std::vector<StateMap> to = Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 2}), 2);
  Result<ReshardPlan> plan = PlanReshard(from, to);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  const int64_t to_rank0 = kKinds * kBytesPerElement * (2 * kLayer + 2 * kH);
  const int64_t to_rank1 = kKinds * kBytesPerElement * (2 * kLayer + kPositions);
  EXPECT_EQ(plan->bytes_received, (std::vector<int64_t>{to_rank0, to_rank1}));
  EXPECT_EQ(plan->bytes_sent, (std::vector<int64_t>{to_rank1, to_rank0}));
  EXPECT_EQ(plan->messages(), 2);
  for (const StateTransfer& t : plan->transfers) EXPECT_NE(t.src, t.dst);
}

TEST(PlanReshard, EveryRankReceivesExactlyWhatItMustHoldAndDidNotHold) {
  const ModelSpec model = GptTiny();
  const std::vector<NamedPlan> plans = TwoRankPlans(model);
  for (const NamedPlan& a : plans) {
    for (const NamedPlan& b : plans) {
      const std::vector<StateMap> from = Maps(model, a.plan, 2);
      const std::vector<StateMap> to = Maps(model, b.plan, 2);
      Result<ReshardPlan> plan = PlanReshard(from, to);
      ASSERT_TRUE(plan.ok()) << a.name << " → " << b.name << ": " << plan.status().message();
      int64_t sent = 0, received = 0;
      for (size_t r = 0; r < 2; ++r) {
        EXPECT_EQ(plan->bytes_received[r], MissingBytes(from[r], to[r]))
            << a.name << " → " << b.name << ", rank " << r;
        EXPECT_EQ(plan->bytes_received[r] + plan->bytes_kept[r],
                  kBytesPerElement * to[r].DistinctElements())
            << a.name << " → " << b.name << ", rank " << r;
        sent += plan->bytes_sent[r];
        received += plan->bytes_received[r];
      }
      EXPECT_EQ(sent, received) << a.name << " → " << b.name;
    }
  }
}

TEST(ApplyReshardOnHost, AnyLayoutToAnyOtherAndBackGivesTheFirstStateExactly) {
  const ModelSpec model = GptTiny();
  const std::vector<NamedPlan> plans = TwoRankPlans(model);
  for (const NamedPlan& a : plans) {
    const std::vector<StateMap> maps_a = Maps(model, a.plan, 2);
    std::vector<TrainerState> state_a;
    for (const StateMap& m : maps_a) state_a.push_back(Tagged(m, /*step=*/3));
    for (const NamedPlan& b : plans) {
      const std::vector<StateMap> maps_b = Maps(model, b.plan, 2);
      Result<ReshardPlan> there = PlanReshard(maps_a, maps_b);
      Result<ReshardPlan> back = PlanReshard(maps_b, maps_a);
      ASSERT_TRUE(there.ok() && back.ok()) << a.name << " ↔ " << b.name;
      const std::vector<TrainerState> state_b =
          ApplyReshardOnHost(*there, maps_a, maps_b, state_a);
      for (size_t r = 0; r < 2; ++r) {
        // Every element of B's layout, and the padding, is as B's own
        // tagged state: nothing missing, nothing misplaced.
        EXPECT_TRUE(SameState(state_b[r], Tagged(maps_b[r], 3)))
            << a.name << " → " << b.name << ", rank " << r;
      }
      const std::vector<TrainerState> again = ApplyReshardOnHost(*back, maps_b, maps_a, state_b);
      for (size_t r = 0; r < 2; ++r) {
        EXPECT_TRUE(SameState(again[r], state_a[r]))
            << a.name << " → " << b.name << " → " << a.name << ", rank " << r;
      }
    }
  }
}

TEST(ApplyReshardOnHost, SmallBucketsAndFourRanksRoundTripToo) {
  // pp 2 × dp 2 with ZeRO 1 in buckets of one unit, to tp 2 × dp 2 with
  // ZeRO 3 and back.
  const ModelSpec model = GptTiny();
  const Plan a = TinyPlan(model, 2, LayerStrategy{.dp = 2, .zero_stage = 1});
  const Plan b = TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 2, .zero_stage = 3});
  const std::vector<StateMap> maps_a = Maps(model, a, 4, /*bucket_parameters=*/1);
  const std::vector<StateMap> maps_b = Maps(model, b, 4);
  std::vector<TrainerState> state_a;
  for (const StateMap& m : maps_a) state_a.push_back(Tagged(m, 5));
  Result<ReshardPlan> there = PlanReshard(maps_a, maps_b);
  Result<ReshardPlan> back = PlanReshard(maps_b, maps_a);
  ASSERT_TRUE(there.ok() && back.ok());
  const std::vector<TrainerState> state_b = ApplyReshardOnHost(*there, maps_a, maps_b, state_a);
  for (size_t r = 0; r < 4; ++r) EXPECT_TRUE(SameState(state_b[r], Tagged(maps_b[r], 5))) << r;
  const std::vector<TrainerState> again = ApplyReshardOnHost(*back, maps_b, maps_a, state_b);
  for (size_t r = 0; r < 4; ++r) EXPECT_TRUE(SameState(again[r], state_a[r])) << r;
}

TEST(PlanReshard, DealsDestinationsSharingANearestHolderOverTheReplicas) {
  // pp 2 × dp 2 → dp 4: ranks 0, 1 held stage 0, ranks 2, 3 stage 1.
  // Stage 1's state: holders {2, 3}, destinations {0, 1}, both with
  // nearest holder at or after them rank 2; nearest first, rank 1 takes
  // rank 2 and rank 0 the next replica, rank 3. Stage 0's: holders {0, 1},
  // destinations {2, 3}, both nearest (cyclically) to rank 0; rank 3 takes
  // rank 0, rank 2 rank 1. Every rank sends its stage's own state once
  // (the old rule had ranks 0 and 2 send twice, ranks 1 and 3 nothing).
  const ModelSpec model = GptTiny();
  const std::vector<StateMap> from = Maps(model, TinyPlan(model, 2, LayerStrategy{.dp = 2}), 4);
  const std::vector<StateMap> to = Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 4}), 4);
  Result<ReshardPlan> plan = PlanReshard(from, to);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  std::set<std::pair<int, int>> pairs;
  for (const StateTransfer& t : plan->transfers) pairs.insert({t.src, t.dst});
  EXPECT_EQ(pairs, (std::set<std::pair<int, int>>{{0, 3}, {1, 2}, {2, 1}, {3, 0}}));
  const int64_t stage1_only = kKinds * kBytesPerElement * (2 * kLayer + 2 * kH);
  const int64_t stage0_only = kKinds * kBytesPerElement * (2 * kLayer + kPositions);
  EXPECT_EQ(plan->bytes_sent,
            (std::vector<int64_t>{stage0_only, stage0_only, stage1_only, stage1_only}));
  EXPECT_EQ(plan->bytes_received,
            (std::vector<int64_t>{stage1_only, stage1_only, stage0_only, stage0_only}));
}

TEST(PlanReshard, GivesEachDestinationItsOwnNearestHolderWhenItHasOne) {
  // tp 2 × dp 2 → dp 4 (4 ranks, tp innermost): ranks 0, 2 held tp rank
  // 0's half of every split tensor, ranks 1, 3 tp rank 1's. Rank 0 lacks
  // the second half, nearest at or after it on rank 1; rank 2 lacks it too,
  // nearest on rank 3: two groups of one, each served by its own nearest
  // holder. Rank 1 lacks the first half: nearest rank 2; rank 3's,
  // cyclically, rank 0.
  const ModelSpec model = GptTiny();
  const std::vector<StateMap> from =
      Maps(model, TinyPlan(model, 1, LayerStrategy{.tp = 2, .dp = 2}), 4);
  const std::vector<StateMap> to = Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 4}), 4);
  Result<ReshardPlan> plan = PlanReshard(from, to);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  std::set<std::pair<int, int>> pairs;
  for (const StateTransfer& t : plan->transfers) pairs.insert({t.src, t.dst});
  EXPECT_EQ(pairs, (std::set<std::pair<int, int>>{{1, 0}, {2, 1}, {3, 2}, {0, 3}}));
}

TEST(PlanReshard, IsTheSameWhicheverRankComputesIt) {
  const ModelSpec model = GptTiny();
  const std::vector<StateMap> from = Maps(model, TinyPlan(model, 2, LayerStrategy{}), 2);
  const std::vector<StateMap> to =
      Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 2, .zero_stage = 3}), 2);
  Result<ReshardPlan> a = PlanReshard(from, to);
  Result<ReshardPlan> b = PlanReshard(from, to);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->transfers.size(), b->transfers.size());
  for (size_t i = 0; i < a->transfers.size(); ++i) {
    const StateTransfer& x = a->transfers[i];
    const StateTransfer& y = b->transfers[i];
    EXPECT_TRUE(x.src == y.src && x.dst == y.dst && x.kind == y.kind && x.tensor == y.tensor &&
                x.begin == y.begin && x.length == y.length);
  }
}

TEST(PlanReshard, RefusesLayoutsOfDifferentModelsOrRankCounts) {
  const ModelSpec model = GptTiny();
  ModelSpec wider = model;
  wider.hidden_size = 128;
  wider.head_dim = 32;
  const std::vector<StateMap> a = Maps(model, TinyPlan(model, 1, LayerStrategy{.dp = 2}), 2);
  const std::vector<StateMap> b = Maps(wider, TinyPlan(wider, 1, LayerStrategy{.dp = 2}), 2);
  Result<ReshardPlan> plan = PlanReshard(a, b);
  EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("elements in one layout"));

  const std::vector<StateMap> one = Maps(model, TinyPlan(model, 1, LayerStrategy{}), 1);
  EXPECT_EQ(PlanReshard(a, one).status().code(), StatusCode::kInvalidArgument);
}

TEST(TrainerStateLayout, RefusesARankOutsideTheJobAndAPlanThatDoesNotFit) {
  const ModelSpec model = GptTiny();
  const Plan plan = TinyPlan(model, 1, LayerStrategy{.dp = 2});
  EXPECT_EQ(TrainerStateLayout(model, plan, {}, 2, 2).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainerStateLayout(model, plan, {}, 4, 0).status().code(),
            StatusCode::kFailedPrecondition);
}

// ---- Over MPI ---------------------------------------------------------------

bool MpirunOnPath() { return RunShell("command -v mpirun").exit_code == 0; }

CliRun RunChecks(const std::string& check) {
  return RunShell(std::string("timeout 120 mpirun --oversubscribe --allow-run-as-root -np 2 ") +
                  ORRERY_EXEC_RESHARD_CHECKS + " " + check);
}

#define SKIP_WITHOUT_MPIRUN()                                                      \
  do {                                                                             \
    if (!MpirunOnPath()) GTEST_SKIP() << "mpirun is not on PATH: no MPI launcher"; \
  } while (false)

TEST(ReshardOverMpi, DataToTensorParallelAfterThreeStepsTrainsAsEitherPlanAlone) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks("dp2-tp2");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(ReshardOverMpi, PipelineToDataParallelAfterThreeStepsTrainsAsEitherPlanAlone) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks("pp2-dp2");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(ReshardOverMpi, ZeroThreeToSequenceParallelMovesShardedMoments) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks("zero3-tpsp");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

TEST(ReshardOverMpi, TensorParallelToZeroOneGathersTheSplitMatrices) {
  SKIP_WITHOUT_MPIRUN();
  CliRun run = RunChecks("tp2-zero1");
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
}

}  // namespace
}  // namespace orrery::exec
