// The `galvatron` search against a brute-force enumeration of every
// layer-wise plan of spaces small enough to list (8 GPUs, 2-4 layers),
// scored by the same Evaluator: the same optimum, every plan valid and
// within the budget, the same answer twice.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/units.h"
#include "search/search.h"
#include "search/space.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::search {
namespace {

using workload::LayerStrategy;
using workload::PipelineSchedule;

// A small GPT: `layers` blocks of hidden 512 with `heads` heads (which
// bounds tp), vocabulary 8192, sequence 256.
workload::ModelSpec TinyGpt(int layers, int heads) {
  workload::ModelSpec m = workload::ModelPreset("gpt-1.7b").value();
  m.name = "tiny-gpt";
  m.num_layers = layers;
  m.hidden_size = 512;
  m.num_attention_heads = heads;
  m.num_kv_heads = heads;
  m.head_dim = 512 / heads;
  m.ffn_hidden_size = 2048;
  m.vocab_size = 8192;
  m.max_sequence_length = 256;
  m.default_sequence_length = 256;
  return m;
}

SearchRequest Request(int layers, int heads, bool zero) {
  SearchRequest r;
  r.model = TinyGpt(layers, heads);
  r.cluster = topology::ClusterPreset("dgx-a100-80gb").value();  // one node, 8 GPUs
  r.global_batch_size = 8;
  r.micro_batch_sizes = {1};
  r.allow_zero = zero;
  r.allow_context_parallel = false;
  r.top_k = 2;
  return r;
}

struct Best {
  std::optional<Evaluation> evaluation;
  std::optional<workload::Plan> plan;
  int64_t plans = 0;
};

// Compositions of `layers` into `parts` positive counts.
void Compositions(int layers, int parts, std::vector<int>* prefix,
                  std::vector<std::vector<int>>* out) {
  if (parts == 1) {
    prefix->push_back(layers);
    out->push_back(*prefix);
    prefix->pop_back();
    return;
  }
  for (int k = 1; k <= layers - parts + 1; ++k) {
    prefix->push_back(k);
    Compositions(layers - k, parts - 1, prefix, out);
    prefix->pop_back();
  }
}

// Every layer-wise plan of the request's space: pp, any stage partition,
// 1F1B / GPipe / interleaved v, every micro-batch count and device order,
// and per layer every strategy the space admits, layers of one stage
// sharing a layout. The fastest that the evaluator scores (it fits).
Best BruteForce(const Evaluator& evaluator) {
  const Space space = Space::Create(evaluator.request()).value();
  const int L = space.num_layers();
  Best best;
  for (int pp : space.PipelineDegrees()) {
    const std::vector<LayerStrategy> all = space.LayerCandidates(pp);
    std::vector<std::vector<int>> partitions;
    std::vector<int> prefix;
    Compositions(L, pp, &prefix, &partitions);
    for (const std::vector<int>& partition : partitions) {
      std::vector<std::pair<PipelineSchedule, int>> schedules = {
          {PipelineSchedule::kOneFOneB, 1}, {PipelineSchedule::kGpipe, 1}};
      for (int v = 2; v <= 8 && pp >= 2 && evaluator.request().allow_interleaved; ++v) {
        if (std::all_of(partition.begin(), partition.end(), [&](int c) { return c % v == 0; })) {
          schedules.emplace_back(PipelineSchedule::kInterleaved, v);
        }
      }
      for (const auto& [schedule, vpp] : schedules) {
        for (int m : space.MicroBatchCounts(pp)) {
          if (schedule == PipelineSchedule::kInterleaved && m % pp != 0) continue;
          for (const workload::RankOrder& order : space.RankOrders()) {
            PipelineShape shape;
            shape.pp = pp;
            shape.stage_layers = partition;
            shape.schedule = schedule;
            shape.vpp = vpp;
            shape.micro_batches = m;
            shape.rank_order = order;
            std::vector<LayerStrategy> compatible;
            for (const LayerStrategy& s : all) {
              if (space.Compatible(shape, s)) compatible.push_back(s);
            }
            std::vector<LayerStrategy> layers(static_cast<size_t>(L));
            // Layer by layer; a layer after the first of its stage must be
            // SameStageCompatible with that first one.
            std::vector<int> stage_first;
            for (int s = 0, at = 0; s < pp; at += partition[static_cast<size_t>(s)], ++s) {
              for (int k = 0; k < partition[static_cast<size_t>(s)]; ++k) {
                stage_first.push_back(at);
              }
            }
            std::function<void(int)> assign = [&](int l) {
              if (l == L) {
                const workload::Plan plan = space.BuildPlan(shape, layers).value();
                ++best.plans;
                const Evaluator::Outcome o = evaluator.Evaluate(plan);
                if (!o.scored()) return;
                if (!best.evaluation.has_value() ||
                    o.evaluation.iteration_time < best.evaluation->iteration_time) {
                  best.evaluation = o.evaluation;
                  best.plan = plan;
                }
                return;
              }
              const int first = stage_first[static_cast<size_t>(l)];
              for (const LayerStrategy& s : compatible) {
                if (first != l && !Space::SameStageCompatible(
                                      order, layers[static_cast<size_t>(first)], s)) {
                  continue;
                }
                layers[static_cast<size_t>(l)] = s;
                assign(l + 1);
              }
            };
            assign(0);
          }
        }
      }
    }
  }
  return best;
}

SearchResult RunGalvatron(const Evaluator& evaluator) {
  std::unique_ptr<SearchAlgorithm> algorithm = MakeSearchAlgorithm("galvatron").value();
  SearchResult result;
  const Status status = algorithm->Run(evaluator, {}, &result);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return result;
}

// Every returned plan validates, is scored as the evaluator scores it and
// fits the budget; best first.
void ExpectValidPlans(const Evaluator& evaluator, const SearchResult& result) {
  const SearchRequest& r = evaluator.request();
  ASSERT_FALSE(result.plans.empty());
  EXPECT_LE(result.plans.size(), static_cast<size_t>(r.top_k * 4));
  for (size_t i = 0; i < result.plans.size(); ++i) {
    const Candidate& c = result.plans[i];
    EXPECT_TRUE(workload::ValidatePlan(c.plan, r.model, r.cluster).ok())
        << workload::ValidatePlan(c.plan, r.model, r.cluster).ToString();
    const Evaluation again = evaluator.Score(c.plan).value();
    EXPECT_EQ(again.iteration_time, c.analytical.iteration_time);
    EXPECT_TRUE(again.fits);
    EXPECT_LE(again.peak_memory, evaluator.memory_budget());
    if (i > 0) {
      EXPECT_LE(result.plans[i - 1].analytical.iteration_time, c.analytical.iteration_time);
    }
  }
}

void ExpectSameOptimum(const SearchRequest& request) {
  const Evaluator evaluator = Evaluator::Create(request).value();
  const Best best = BruteForce(evaluator);
  ASSERT_TRUE(best.evaluation.has_value()) << "no plan fits";
  const SearchResult result = RunGalvatron(evaluator);
  ExpectValidPlans(evaluator, result);
  EXPECT_EQ(result.plans.front().analytical.iteration_time, best.evaluation->iteration_time)
      << "galvatron: " << PlanSummary(result.plans.front().plan) << " "
      << result.plans.front().analytical.iteration_time.ToMicros() << " us; brute force over "
      << best.plans << " plans: " << PlanSummary(*best.plan) << " "
      << best.evaluation->iteration_time.ToMicros() << " us";
}

TEST(Galvatron, FindsTheOptimumOfEveryLayerWisePlanOfFourLayers) {
  // One head: tp = 1, so the layers differ in recomputation, the stages
  // in their partition, schedule and micro-batches.
  ExpectSameOptimum(Request(/*layers=*/4, /*heads=*/1, /*zero=*/false));
}

TEST(Galvatron, FindsTheOptimumOfTwoLayersWithTensorParallelism) {
  ExpectSameOptimum(Request(/*layers=*/2, /*heads=*/2, /*zero=*/false));
}

TEST(Galvatron, FindsTheOptimumUnderABudgetThatExcludesTheUnconstrainedOne) {
  SearchRequest request = Request(/*layers=*/3, /*heads=*/1, /*zero=*/true);
  request.micro_batch_sizes = {2};
  request.global_batch_size = 16;
  request.allow_interleaved = false;
  // The best plan with all the memory, and then a budget just under its peak.
  const Evaluator roomy = Evaluator::Create(request).value();
  const SearchResult free = RunGalvatron(roomy);
  ASSERT_FALSE(free.plans.empty());
  request.memory_budget = free.plans.front().analytical.peak_memory - MiB(1);
  ExpectSameOptimum(request);
}

// With a slow device the optimum shifts (a slow stage should hold fewer
// layers); the stage-partition program sees the slowdown and still finds
// the brute force's optimum under it, which differs from the healthy one.
TEST(Galvatron, FindsTheOptimumWithASlowDevice) {
  SearchRequest request = Request(/*layers=*/4, /*heads=*/1, /*zero=*/false);
  request.global_batch_size = 32;
  const Evaluator healthy = Evaluator::Create(request).value();
  const workload::Plan healthy_best = RunGalvatron(healthy).plans.front().plan;
  request.faults.slow_devices = {{7, 2.0}};
  ExpectSameOptimum(request);
  const Evaluator slow = Evaluator::Create(request).value();
  const SearchResult result = RunGalvatron(slow);
  EXPECT_LT(result.plans.front().analytical.iteration_time,
            slow.Score(healthy_best)->iteration_time)
      << "healthy best " << PlanSummary(healthy_best) << ", with the slow device "
      << PlanSummary(result.plans.front().plan);
}

TEST(Galvatron, IsDeterministicWhateverTheThreadCountAndCountsWhatItPrunes) {
  const Evaluator evaluator = Evaluator::Create(Request(4, 2, true)).value();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const SearchResult a = RunGalvatron(evaluator);
  omp_set_num_threads(std::max(2, threads));
  const SearchResult b = RunGalvatron(evaluator);
  omp_set_num_threads(threads);
  ASSERT_EQ(a.plans.size(), b.plans.size());
  for (size_t i = 0; i < a.plans.size(); ++i) {
    EXPECT_EQ(DumpJson(workload::PlanToJson(a.plans[i].plan)),
              DumpJson(workload::PlanToJson(b.plans[i].plan)));
    EXPECT_EQ(a.plans[i].analytical.iteration_time, b.plans[i].analytical.iteration_time);
  }
  EXPECT_EQ(a.evaluated, b.evaluated);
  EXPECT_EQ(a.pruned, b.pruned);
  EXPECT_GT(a.evaluated, 0);
  // ZeRO stages never beat plain data parallelism on time, and are larger
  // than ZeRO-3 on memory: some strategies are dominated.
  EXPECT_GT(a.pruned.count(PruneReason::kDominated) ? a.pruned.at(PruneReason::kDominated) : 0,
            0);
  ExpectValidPlans(evaluator, a);
}

TEST(Galvatron, IsRegistered) {
  const std::vector<std::string> names = SearchAlgorithmNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "galvatron"), names.end());
}

}  // namespace
}  // namespace orrery::search
