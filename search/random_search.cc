// "random": random layer-wise plans — a pipeline shape drawn uniformly from
// the space's shapes, then per stage a strategy drawn uniformly from the
// candidates compatible with the shape and its stage (Space::RandomLayers)
// — for a budget of request.max_samples plans (default 2,000) or the time
// limit. The plans are generated sequentially from std::mt19937_64 seeded
// by request.seed and evaluated in parallel in blocks, so the result is the
// same whatever the number of threads (unless the time limit cuts a run).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <omp.h>

#include "core/status.h"
#include "search/search.h"
#include "search/space.h"
#include "workload/plan.h"

namespace orrery::search {
namespace {

constexpr int64_t kDefaultSamples = 2000;
constexpr int64_t kBlock = 256;

class RandomSearch : public SearchAlgorithm {
 public:
  std::string_view name() const override { return "random"; }

  Status Run(const Evaluator& evaluator, const ProgressFn& progress,
             SearchResult* result) override {
    const auto start = std::chrono::steady_clock::now();
    const SearchRequest& request = evaluator.request();
    ORRERY_ASSIGN_OR_RETURN(const Space space, Space::Create(request));
    const std::vector<PipelineShape> shapes = space.AllShapes();
    if (shapes.empty()) return Status::Ok();
    const int64_t budget = request.max_samples > 0 ? request.max_samples : kDefaultSamples;
    const size_t limit = static_cast<size_t>(CandidateLimit(request));
    std::mt19937_64 rng(request.seed);
    // Candidates depend on (pp, m) only.
    std::map<std::pair<int, int>, std::vector<workload::LayerStrategy>> candidates;
    std::vector<Candidate> best;
    for (int64_t generated = 0; generated < budget;) {
      if (request.time_limit_s.has_value() && SecondsSince(start) > *request.time_limit_s) {
        result->stopped_by_time_limit = true;
        break;
      }
      std::vector<workload::Plan> block;
      for (; generated < budget && static_cast<int64_t>(block.size()) < kBlock; ++generated) {
        const PipelineShape& shape = shapes[static_cast<size_t>(rng() % shapes.size())];
        auto [it, inserted] = candidates.try_emplace({shape.pp, shape.micro_batches});
        if (inserted) it->second = space.LayerCandidates(shape);
        std::vector<workload::LayerStrategy> layers = space.RandomLayers(shape, it->second, &rng);
        if (layers.empty()) {
          ++result->pruned[PruneReason::kDivisibility];
          continue;
        }
        Result<workload::Plan> plan = space.BuildPlan(shape, std::move(layers));
        if (!plan.ok()) {
          ++result->pruned[PruneReason::kInvalid];
          continue;
        }
        block.push_back(std::move(*plan));
      }
      std::vector<Evaluator::Outcome> outcomes(block.size());
#pragma omp parallel for schedule(dynamic)
      for (int64_t k = 0; k < static_cast<int64_t>(block.size()); ++k) {
        // Space::BuildPlan makes only plans ValidatePlan accepts
        // (tests/search/space_test.cc).
        outcomes[static_cast<size_t>(k)] =
            evaluator.Evaluate(block[static_cast<size_t>(k)], /*validate=*/false);
      }
      for (size_t k = 0; k < block.size(); ++k) {
        ++result->evaluated;
        if (outcomes[k].pruned.has_value()) {
          ++result->pruned[*outcomes[k].pruned];
          continue;
        }
        best.push_back(Candidate{std::move(block[k]), outcomes[k].evaluation, std::nullopt});
      }
      if (best.size() > 4 * limit) SortAndTruncate(&best, limit);
      if (progress) {
        progress(static_cast<double>(generated) / static_cast<double>(budget), "random plans");
      }
    }
    for (Candidate& c : result->plans) best.push_back(std::move(c));
    SortAndTruncate(&best, limit);
    result->plans = std::move(best);
    return Status::Ok();
  }
};

}  // namespace

ORRERY_REGISTER_SEARCH_ALGORITHM(RandomSearch, "random");

}  // namespace orrery::search
