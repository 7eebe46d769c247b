#include <gtest/gtest.h>

#include <omp.h>

#include <memory>
#include <optional>
#include <string>
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
using workload::Recompute;

// GPT 1.7B cut to 4 layers on one DGX A100 (8 GPUs), batch 16.
SearchRequest SmallRequest() {
  SearchRequest r;
  r.model = *workload::ModelPreset("gpt-1.7b");
  r.model.num_layers = 4;
  r.cluster = *topology::ClusterPreset("dgx-a100-80gb");
  r.cluster = *r.cluster.WithNodes(1);
  r.global_batch_size = 16;
  r.top_k = 3;
  return r;
}

SearchResult RunAlgorithm(const SearchRequest& r, const std::string& name) {
  Result<Evaluator> e = Evaluator::Create(r);
  EXPECT_TRUE(e.ok()) << e.status().message();
  Result<std::unique_ptr<SearchAlgorithm>> algo = MakeSearchAlgorithm(name);
  EXPECT_TRUE(algo.ok()) << algo.status().message();
  SearchResult result;
  const Status run = (*algo)->Run(*e, {}, &result);
  EXPECT_TRUE(run.ok()) << run.message();
  return result;
}

std::vector<std::string> Texts(const SearchResult& result) {
  std::vector<std::string> out;
  for (const Candidate& c : result.plans) out.push_back(DumpJson(workload::PlanToJson(c.plan)));
  return out;
}

void ExpectValidAndFitting(const SearchRequest& r, const SearchResult& result) {
  const Evaluator e = *Evaluator::Create(r);
  for (const Candidate& c : result.plans) {
    const Status valid = workload::ValidatePlan(c.plan, r.model, r.cluster);
    EXPECT_TRUE(valid.ok()) << PlanSummary(c.plan) << ": " << valid.message();
    EXPECT_TRUE(c.analytical.fits) << PlanSummary(c.plan);
    EXPECT_LE(c.analytical.peak_memory, e.memory_budget());
    if (c.simulated.has_value()) {
      EXPECT_TRUE(c.simulated->fits);
      EXPECT_LE(c.simulated->peak_memory, e.memory_budget());
    }
  }
}

TEST(Exhaustive, FindsTheBestUniformPlanByBruteForce) {
  SearchRequest r = SmallRequest();
  r.allow_uneven_stages = false;
  r.allow_interleaved = false;
  r.allow_context_parallel = false;
  r.allow_zero = false;
  r.memory_budget = GiB(4);  // tight enough that some plans do not fit
  const Evaluator e = *Evaluator::Create(r);
  // Every uniform plan, written out here from the plan rules.
  std::optional<Duration> best;
  int fitting = 0;
  int over = 0;
  for (int pp : {1, 2, 4}) {
    for (int tp : {1, 2, 4, 8}) {
      if (tp * pp > 8) continue;
      const int dp = 8 / tp / pp;
      for (int mbs : {1, 2, 4, 8, 16}) {
        if (16 % (mbs * dp) != 0) continue;
        for (bool sp : {false, true}) {
          if (sp && tp == 1) continue;
          for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
            for (PipelineSchedule sched : {PipelineSchedule::kOneFOneB, PipelineSchedule::kGpipe}) {
              for (const char* order : {"tp-cp-ep-dp-pp", "cp-dp-tp-ep-pp"}) {
                workload::Plan plan = workload::Plan::Uniform(
                    r.model, pp,
                    LayerStrategy{.tp = tp, .dp = dp, .sequence_parallel = sp, .recompute = rc},
                    16, mbs);
                plan.schedule = sched;
                plan.rank_order = *workload::ParseRankOrder(order);
                Result<Evaluation> score = e.Score(plan);
                ASSERT_TRUE(score.ok()) << score.status().message();
                if (!score->fits) {
                  ++over;
                  continue;
                }
                ++fitting;
                if (!best.has_value() || score->iteration_time < *best) {
                  best = score->iteration_time;
                }
              }
            }
          }
        }
      }
    }
  }
  ASSERT_TRUE(best.has_value());
  ASSERT_GT(over, 0);
  ASSERT_GT(fitting, 0);
  const SearchResult result = RunAlgorithm(r, "exhaustive");
  ASSERT_FALSE(result.plans.empty());
  EXPECT_EQ(result.plans.front().analytical.iteration_time, *best);
  EXPECT_LE(result.plans.size(), 12u);  // top_k × 4
  for (size_t k = 1; k < result.plans.size(); ++k) {
    EXPECT_LE(result.plans[k - 1].analytical.iteration_time,
              result.plans[k].analytical.iteration_time);
  }
  EXPECT_GT(result.pruned.at(PruneReason::kMemory), 0);
  EXPECT_GT(result.evaluated, 0);
  ExpectValidAndFitting(r, result);
}

TEST(Exhaustive, TheAnswerDoesNotDependOnTheThreadCount) {
  const SearchRequest r = SmallRequest();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const SearchResult one = RunAlgorithm(r, "exhaustive");
  omp_set_num_threads(4);
  const SearchResult four = RunAlgorithm(r, "exhaustive");
  omp_set_num_threads(threads);
  EXPECT_EQ(Texts(one), Texts(four));
  EXPECT_EQ(one.evaluated, four.evaluated);
  EXPECT_EQ(one.pruned, four.pruned);
  EXPECT_GT(one.pruned.at(PruneReason::kDominated), 0);
}

TEST(Random, IsDeterministicForASeedAndReturnsValidPlans) {
  SearchRequest r = SmallRequest();
  r.max_samples = 300;
  r.seed = 11;
  const SearchResult a = RunAlgorithm(r, "random");
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const SearchResult b = RunAlgorithm(r, "random");
  omp_set_num_threads(threads);
  ASSERT_FALSE(a.plans.empty());
  EXPECT_EQ(Texts(a), Texts(b));
  EXPECT_EQ(a.evaluated, 300);
  ExpectValidAndFitting(r, a);
  r.seed = 12;
  EXPECT_NE(Texts(RunAlgorithm(r, "random")), Texts(a));
}

TEST(Anneal, IsDeterministicAndAtLeastAsGoodAsRandomWithTheSameBudget) {
  SearchRequest r = SmallRequest();
  r.max_samples = 240;
  r.seed = 5;
  r.memory_budget = GiB(20);
  const SearchResult random = RunAlgorithm(r, "random");
  const SearchResult anneal = RunAlgorithm(r, "anneal");
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const SearchResult again = RunAlgorithm(r, "anneal");
  omp_set_num_threads(threads);
  ASSERT_FALSE(random.plans.empty());
  ASSERT_FALSE(anneal.plans.empty());
  EXPECT_EQ(Texts(anneal), Texts(again));
  EXPECT_LE(anneal.plans.front().analytical.iteration_time,
            random.plans.front().analytical.iteration_time);
  // It starts from the best uniform plan with even stages and 1F1B or
  // interleaved, so it is never worse than that plan.
  SearchRequest uniform = r;
  uniform.allow_uneven_stages = false;
  const SearchResult sweep = RunAlgorithm(uniform, "exhaustive");
  ASSERT_FALSE(sweep.plans.empty());
  EXPECT_LE(anneal.plans.front().analytical.iteration_time,
            sweep.plans.front().analytical.iteration_time);
  ExpectValidAndFitting(r, anneal);
}

TEST(RunSearch, ReScoresTheBestWithTheSimulatorAndOrdersByIt) {
  SearchRequest r = SmallRequest();
  r.allow_uneven_stages = false;
  r.allow_context_parallel = false;
  Result<SearchResult> result = RunSearch(r, "exhaustive");
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(result->algorithm, "exhaustive");
  ASSERT_FALSE(result->plans.empty());
  EXPECT_LE(result->plans.size(), 3u);
  for (const Candidate& c : result->plans) ASSERT_TRUE(c.simulated.has_value());
  for (size_t k = 1; k < result->plans.size(); ++k) {
    EXPECT_LE(result->plans[k - 1].simulated->iteration_time,
              result->plans[k].simulated->iteration_time);
  }
  ExpectValidAndFitting(r, *result);
  EXPECT_GE(result->search_time_s, 0);
  EXPECT_FALSE(RunSearch(r, "no-such-algorithm").ok());
}

TEST(RunSearch, DropsPlansTheSimulatorFindsOverTheBudget) {
  // A budget between the memory model's peak and the simulator's would be
  // dropped; with a budget no plan meets, nothing is returned and every
  // candidate is counted as pruned for memory.
  SearchRequest r = SmallRequest();
  r.memory_budget = Bytes(1);
  Result<SearchResult> result = RunSearch(r, "exhaustive");
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_TRUE(result->plans.empty());
  EXPECT_GT(result->pruned.at(PruneReason::kMemory), 0);
}

}  // namespace
}  // namespace orrery::search
