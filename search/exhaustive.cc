// "exhaustive": every uniform plan (every layer alike) of the space, as
// Calculon's brute force (Isaev et al., SC23): pipeline degree, stage
// partition, schedule and vpp, device order, micro-batch size and one layer
// strategy (tp, cp, dp, ep, ZeRO, sp, recomputation), each scored by the
// analytical model in parallel.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <omp.h>

#include "core/status.h"
#include "search/search.h"
#include "search/space.h"
#include "workload/plan.h"

namespace orrery::search {
namespace {

using workload::LayerStrategy;
using workload::ParallelDim;
using workload::PipelineSchedule;

// One unit of work: a layout whose recomputation variants (none, selective,
// full) are scored in that order.
struct Group {
  PipelineShape shape;
  std::vector<LayerStrategy> variants;  // by increasing recomputation
};

// What one group yields.
struct GroupOutcome {
  std::vector<Candidate> plans;
  int64_t evaluated = 0;
  std::map<PruneReason, int64_t> pruned;
  bool skipped = false;  // not run: the time limit had passed
};

// True when the tp-outer order lays out the same groups as the default
// for `s` (tp alone in its stage, or no tp at all).
bool OrderIsRedundant(const workload::RankOrder& order, const LayerStrategy& s, int per_stage) {
  if (order == workload::DefaultRankOrder()) return false;
  return s.tp == 1 || s.tp == per_stage;
}

std::vector<Group> EnumerateGroups(const Space& space, const UniformSweepOptions& options) {
  std::vector<Group> groups;
  for (int pp : space.PipelineDegrees()) {
    const int per_stage = space.devices() / pp;
    const std::vector<LayerStrategy> candidates = space.LayerCandidates(pp);
    std::vector<std::vector<int>> partitions = space.StagePartitions(pp);
    if (!options.uneven_stages) partitions.resize(1);
    std::vector<workload::RankOrder> orders = space.RankOrders();
    if (!options.all_rank_orders) orders.resize(1);
    for (const std::vector<int>& partition : partitions) {
      for (const auto& [schedule, vpp] : space.Schedules(pp, partition)) {
        if (schedule == PipelineSchedule::kGpipe && !options.gpipe) continue;
        for (const workload::RankOrder& order : orders) {
          for (int mbs : space.MicroBatchSizes()) {
            // Candidates come ordered with recomputation innermost.
            for (size_t i = 0; i < candidates.size();) {
              size_t j = i;
              Group g;
              while (j < candidates.size()) {
                LayerStrategy a = candidates[i];
                LayerStrategy b = candidates[j];
                a.recompute = b.recompute;
                if (!(a == b)) break;
                g.variants.push_back(candidates[j]);
                ++j;
              }
              const LayerStrategy& s = candidates[i];
              i = j;
              if (OrderIsRedundant(order, s, per_stage)) continue;
              const int64_t samples = static_cast<int64_t>(mbs) * s.dp;
              if (space.global_batch_size() % samples != 0) continue;
              const int m = static_cast<int>(space.global_batch_size() / samples);
              if (schedule == PipelineSchedule::kInterleaved && m % pp != 0) continue;
              g.shape.pp = pp;
              g.shape.stage_layers = partition;
              g.shape.schedule = schedule;
              g.shape.vpp = vpp;
              g.shape.micro_batches = m;
              g.shape.rank_order = order;
              groups.push_back(std::move(g));
            }
          }
        }
      }
    }
  }
  return groups;
}

GroupOutcome RunGroup(const Evaluator& evaluator, const Space& space, const Group& group) {
  GroupOutcome out;
  bool lighter_fits = false;
  for (const LayerStrategy& s : group.variants) {
    if (lighter_fits) {
      ++out.pruned[PruneReason::kDominated];
      continue;
    }
    Result<workload::Plan> plan = space.UniformPlan(group.shape, s);
    if (!plan.ok()) {
      ++out.pruned[PruneReason::kDivisibility];
      continue;
    }
    // The space builds only plans ValidatePlan accepts (tests/search/
    // space_test.cc); validating each would cost more than scoring it.
    const Evaluator::Outcome o = evaluator.Evaluate(*plan, /*validate=*/false);
    ++out.evaluated;
    if (o.pruned.has_value()) {
      ++out.pruned[*o.pruned];
      continue;
    }
    lighter_fits = true;
    out.plans.push_back(Candidate{std::move(*plan), o.evaluation, std::nullopt});
  }
  return out;
}

class ExhaustiveSearch : public SearchAlgorithm {
 public:
  std::string_view name() const override { return "exhaustive"; }
  Status Run(const Evaluator& evaluator, const ProgressFn& progress,
             SearchResult* result) override {
    ORRERY_ASSIGN_OR_RETURN(const Space space, Space::Create(evaluator.request()));
    UniformSweepOptions options;
    options.time_limit_s = evaluator.request().time_limit_s;
    return SweepUniformPlans(evaluator, space, options, progress, result);
  }
};

}  // namespace

Status SweepUniformPlans(const Evaluator& evaluator, const Space& space,
                         const UniformSweepOptions& options, const ProgressFn& progress,
                         SearchResult* result) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Group> groups = EnumerateGroups(space, options);
  const int64_t n = static_cast<int64_t>(groups.size());
  std::vector<GroupOutcome> outcomes(groups.size());
  std::atomic<int64_t> done{0};
  std::atomic<bool> out_of_time{false};
#pragma omp parallel for schedule(dynamic)
  for (int64_t k = 0; k < n; ++k) {
    GroupOutcome& out = outcomes[static_cast<size_t>(k)];
    if (out_of_time.load(std::memory_order_relaxed)) {
      out.skipped = true;
      continue;
    }
    out = RunGroup(evaluator, space, groups[static_cast<size_t>(k)]);
    const int64_t finished = done.fetch_add(1, std::memory_order_relaxed) + 1;
    if (omp_get_thread_num() == 0) {
      if (options.time_limit_s.has_value() && SecondsSince(start) > *options.time_limit_s) {
        out_of_time.store(true, std::memory_order_relaxed);
      }
      if (progress) {
        progress(static_cast<double>(finished) / static_cast<double>(std::max<int64_t>(1, n)),
                 "uniform layouts");
      }
    }
  }
  // Reduce in group order.
  std::vector<Candidate> plans = std::move(result->plans);
  const size_t limit = static_cast<size_t>(CandidateLimit(evaluator.request()));
  for (GroupOutcome& out : outcomes) {
    if (out.skipped) {
      result->stopped_by_time_limit = true;
      continue;
    }
    result->evaluated += out.evaluated;
    for (const auto& [reason, count] : out.pruned) result->pruned[reason] += count;
    for (Candidate& c : out.plans) plans.push_back(std::move(c));
    if (plans.size() > 8 * limit) SortAndTruncate(&plans, limit);
  }
  SortAndTruncate(&plans, limit);
  result->plans = std::move(plans);
  return Status::Ok();
}

ORRERY_REGISTER_SEARCH_ALGORITHM(ExhaustiveSearch, "exhaustive");

}  // namespace orrery::search
