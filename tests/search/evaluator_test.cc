#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/units.h"
#include "search/search.h"
#include "search/space.h"
#include "sim/analytical.h"
#include "sim/iteration.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::search {
namespace {

using workload::LayerStrategy;

SearchRequest SmallRequest() {
  SearchRequest r;
  r.model = *workload::ModelPreset("gpt-1.7b");
  r.model.num_layers = 4;
  r.cluster = *topology::ClusterPreset("dgx-a100-80gb");
  r.cluster = *r.cluster.WithNodes(1);
  r.global_batch_size = 16;
  return r;
}

workload::Plan TpPlan(const SearchRequest& r, int tp, int pp, int mbs) {
  workload::Plan plan = workload::Plan::Uniform(
      r.model, pp, LayerStrategy{.tp = tp, .dp = 8 / tp / pp}, r.global_batch_size, mbs);
  return plan;
}

TEST(Evaluator, DefaultBudgetIsTheDeviceCapacityLessTheReserve) {
  const SearchRequest r = SmallRequest();
  Result<Evaluator> e = Evaluator::Create(r);
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_EQ(e->memory_budget(), GiB(80) - r.graph.memory.reserve);
  SearchRequest given = r;
  given.memory_budget = GiB(12);
  EXPECT_EQ(Evaluator::Create(given)->memory_budget(), GiB(12));
  given.memory_budget = Bytes(0);
  EXPECT_FALSE(Evaluator::Create(given).ok());
}

TEST(Evaluator, ScoreIsTheAnalyticalEstimate) {
  const SearchRequest r = SmallRequest();
  const Evaluator e = *Evaluator::Create(r);
  const workload::Plan plan = TpPlan(r, 2, 2, 2);
  Result<Evaluation> score = e.Score(plan);
  ASSERT_TRUE(score.ok()) << score.status().message();
  Result<sim::AnalyticalModel> model = sim::AnalyticalModel::Create(r.cluster);
  Result<sim::AnalyticalEstimate> estimate = model->Estimate(r.model, plan, r.graph);
  ASSERT_TRUE(estimate.ok());
  EXPECT_EQ(score->iteration_time, estimate->iteration_time);
  EXPECT_EQ(score->peak_memory, estimate->peak_memory);
  EXPECT_DOUBLE_EQ(score->tokens_per_s, estimate->tokens_per_s);
  EXPECT_TRUE(score->fits);
  // The memory model alone gives the same peak.
  EXPECT_EQ(*e.PeakMemory(plan), estimate->peak_memory);
}

TEST(Evaluator, SimulateIsTheEventSimulation) {
  const SearchRequest r = SmallRequest();
  const Evaluator e = *Evaluator::Create(r);
  const workload::Plan plan = TpPlan(r, 4, 2, 1);
  Result<Evaluation> sim = e.Simulate(plan);
  ASSERT_TRUE(sim.ok()) << sim.status().message();
  sim::IterationOptions options;
  options.graph = r.graph;
  Result<sim::IterationReport> report = sim::SimulateIteration(r.model, plan, r.cluster, options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(sim->iteration_time, report->iteration_time);
  EXPECT_EQ(sim->peak_memory, report->peak_memory);
  EXPECT_EQ(sim->fits, report->peak_memory <= e.memory_budget());
}

// Faults the request knows reach both scores: the analytical one sees the
// slow device, the simulation every fault.
TEST(Evaluator, ScoresWithTheRequestsFaults) {
  SearchRequest r = SmallRequest();
  const workload::Plan plan = TpPlan(r, 2, 2, 2);
  const Evaluator healthy = *Evaluator::Create(r);
  r.faults.slow_devices = {{7, 1.5}};
  r.faults.degraded_links = {{"node0/nvswitch", 2.0}};
  const Evaluator faulted = *Evaluator::Create(r);

  sim::AnalyticalOptions options;
  options.graph = r.graph;
  options.slow_devices = r.faults.slow_devices;
  Result<sim::AnalyticalEstimate> estimate =
      sim::AnalyticalModel::Create(r.cluster)->Estimate(r.model, plan, options);
  ASSERT_TRUE(estimate.ok()) << estimate.status().message();
  EXPECT_EQ(faulted.Score(plan)->iteration_time, estimate->iteration_time);
  EXPECT_GT(faulted.Score(plan)->iteration_time, healthy.Score(plan)->iteration_time);

  sim::IterationOptions sim_options;
  sim_options.graph = r.graph;
  sim_options.faults = r.faults;
  Result<sim::IterationReport> report =
      sim::SimulateIteration(r.model, plan, r.cluster, sim_options);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(faulted.Simulate(plan)->iteration_time, report->iteration_time);
  EXPECT_GT(faulted.Simulate(plan)->iteration_time, healthy.Simulate(plan)->iteration_time);
}

TEST(Evaluator, ScoreRejectsAnInvalidPlan) {
  const SearchRequest r = SmallRequest();
  const Evaluator e = *Evaluator::Create(r);
  workload::Plan plan = TpPlan(r, 2, 2, 2);
  plan.layers[0].tp = 3;  // 3 × 1 × 2 × 2 != 8 devices; 24 heads / 3 fine
  Result<Evaluation> score = e.Score(plan);
  ASSERT_FALSE(score.ok());
  EXPECT_EQ(score.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(e.Evaluate(plan).pruned, PruneReason::kDivisibility);
}

TEST(Evaluator, EvaluatePrunesOverTheBudgetAsMemory) {
  SearchRequest r = SmallRequest();
  const workload::Plan plan = TpPlan(r, 1, 1, 2);
  const Bytes peak = *Evaluator::Create(r)->PeakMemory(plan);
  r.memory_budget = peak - Bytes(1);
  const Evaluator tight = *Evaluator::Create(r);
  const Evaluator::Outcome o = tight.Evaluate(plan);
  EXPECT_EQ(o.pruned, PruneReason::kMemory);
  EXPECT_EQ(o.evaluation.peak_memory, peak);
  r.memory_budget = peak;
  const Evaluator::Outcome fits = Evaluator::Create(r)->Evaluate(plan);
  EXPECT_TRUE(fits.scored());
  EXPECT_TRUE(fits.evaluation.fits);
}

TEST(Evaluator, EvaluateMarksTpDifferingWithinAStageUnsupported) {
  const SearchRequest r = SmallRequest();
  const Evaluator e = *Evaluator::Create(r);
  workload::Plan plan = TpPlan(r, 2, 1, 1);
  plan.layers[1] = LayerStrategy{.tp = 4, .dp = 2};
  plan.micro_batch_size = 1;  // 4 samples per micro-batch over dp 4 and dp 2
  EXPECT_EQ(e.Evaluate(plan).pruned, PruneReason::kUnsupported);
}

TEST(PruneReason, NamesAreTheJsonKeys) {
  EXPECT_EQ(PruneReasonName(PruneReason::kMemory), "memory");
  EXPECT_EQ(PruneReasonName(PruneReason::kDivisibility), "divisibility");
  EXPECT_EQ(PruneReasonName(PruneReason::kDominated), "dominated");
  EXPECT_EQ(PruneReasonName(PruneReason::kInvalid), "invalid");
  EXPECT_EQ(PruneReasonName(PruneReason::kUnsupported), "unsupported");
}

TEST(Registry, ListsTheAlgorithmsAndNamesThemWhenOneIsUnknown) {
  const std::vector<std::string> names = SearchAlgorithmNames();
  for (const char* n : {"anneal", "exhaustive", "random"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  Result<std::unique_ptr<SearchAlgorithm>> made = MakeSearchAlgorithm("exhaustive");
  ASSERT_TRUE(made.ok());
  EXPECT_EQ((*made)->name(), "exhaustive");
  Result<std::unique_ptr<SearchAlgorithm>> unknown = MakeSearchAlgorithm("genetic");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("exhaustive"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("'genetic'"), std::string::npos);
  // A second registration under a taken name is refused.
  EXPECT_FALSE(RegisterSearchAlgorithm("exhaustive", [] {
    return std::unique_ptr<SearchAlgorithm>();
  }));
}

}  // namespace
}  // namespace orrery::search
