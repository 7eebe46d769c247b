// "anneal": simulated annealing over layer-wise plans, as FlexFlow's MCMC
// search (Jia et al., "Beyond Data and Model Parallelism for Deep Neural
// Networks", MLSys 2019, §5.2: Metropolis–Hastings over strategies, a
// proposal changing one operator's configuration, accepted with
// probability min(1, exp(−β·(cost' − cost)))).
//
// State: a pipeline shape and one strategy per layer (search/space.h).
// Start: the best uniform plan of a short exhaustive pass (even stages,
// default device order, 1F1B and interleaved; at most a quarter of the
// time limit), or else the first random plan that fits.
// Moves, drawn from the current state:
//   layer (40%)     one layer's strategy, among those its stage admits;
//   stage (20%)     every layer of one stage to one new strategy (changes tp);
//   micro (15%)     the number of micro-batches (the micro-batch size);
//   schedule (10%)  1F1B / GPipe / interleaved with another vpp;
//   pipeline (15%)  another pp or stage partition, the layers carried over
//                   where their (tp, cp, ep, ZeRO, sp, recompute) still fit.
// Each step draws kProposals moves (a fixed number, not the thread count),
// scores them in parallel, and offers the fastest that fits to the
// Metropolis test on the relative change of iteration time,
//   Δ = (t' − t) / t,  accept when Δ <= 0 or u < exp(−Δ / T),
// with T cooling geometrically from kT0 to kT1 over the budget of
// request.max_samples evaluations (default 4,000). Every draw comes from one
// std::mt19937_64 seeded by request.seed, in a fixed order: the result is
// the same for a seed whatever the number of threads (unless the time
// limit cuts a run).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
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

using workload::LayerStrategy;
using workload::PipelineSchedule;

constexpr int64_t kDefaultSamples = 4000;
constexpr int kProposals = 8;
constexpr double kT0 = 0.05;     // a 5% slower plan is accepted with p = 1/e at the start
constexpr double kT1 = 0.0005;   // and almost never at the end
constexpr int kRandomStarts = 256;

struct State {
  PipelineShape shape;
  std::vector<LayerStrategy> layers;
};

// A uniform draw in [0, n) (modulo: the same on every standard library).
size_t Pick(std::mt19937_64* rng, size_t n) { return static_cast<size_t>((*rng)() % n); }
double Uniform01(std::mt19937_64* rng) {
  return static_cast<double>((*rng)() >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

class Annealer {
 public:
  Annealer(const Space& space, std::mt19937_64* rng) : space_(space), rng_(rng) {
    shapes_ = space.AllShapes();
  }

  const std::vector<LayerStrategy>& Candidates(const PipelineShape& shape) {
    auto [it, inserted] = candidates_.try_emplace({shape.pp, shape.micro_batches});
    if (inserted) it->second = space_.LayerCandidates(shape);
    return it->second;
  }

  const std::vector<PipelineShape>& shapes() const { return shapes_; }

  // A random state, or nullopt when its shape admits no strategy.
  std::optional<State> RandomState() {
    if (shapes_.empty()) return std::nullopt;
    State s;
    s.shape = shapes_[Pick(rng_, shapes_.size())];
    s.layers = space_.RandomLayers(s.shape, Candidates(s.shape), rng_);
    if (s.layers.empty()) return std::nullopt;
    return s;
  }

  // A neighbour of `cur`, or nullopt when the drawn move has no option.
  std::optional<State> Propose(const State& cur) {
    const double u = Uniform01(rng_);
    if (u < 0.40) return MoveLayer(cur);
    if (u < 0.60) return MoveStage(cur);
    if (u < 0.75) return MoveMicroBatches(cur);
    if (u < 0.85) return MoveSchedule(cur);
    return MovePipeline(cur);
  }

 private:
  // [first, last) layers of stage `s`.
  std::pair<int, int> StageRange(const PipelineShape& shape, int s) const {
    const std::vector<int> counts = space_.StageLayerCounts(shape);
    int first = 0;
    for (int k = 0; k < s; ++k) first += counts[static_cast<size_t>(k)];
    return {first, first + counts[static_cast<size_t>(s)]};
  }
  int StageOfLayer(const PipelineShape& shape, int layer) const {
    const std::vector<int> counts = space_.StageLayerCounts(shape);
    int end = 0;
    for (size_t s = 0; s < counts.size(); ++s) {
      end += counts[s];
      if (layer < end) return static_cast<int>(s);
    }
    return static_cast<int>(counts.size()) - 1;
  }

  std::optional<State> MoveLayer(const State& cur) {
    const int layer = static_cast<int>(Pick(rng_, cur.layers.size()));
    const auto [first, last] = StageRange(cur.shape, StageOfLayer(cur.shape, layer));
    std::optional<LayerStrategy> ref;
    for (int l = first; l < last; ++l) {
      if (l != layer) {
        ref = cur.layers[static_cast<size_t>(l)];
        break;
      }
    }
    std::vector<LayerStrategy> options;
    for (const LayerStrategy& c : Candidates(cur.shape)) {
      if (c == cur.layers[static_cast<size_t>(layer)]) continue;
      if (ref.has_value() && !Space::SameStageCompatible(cur.shape.rank_order, *ref, c)) continue;
      options.push_back(c);
    }
    if (options.empty()) return std::nullopt;
    State next = cur;
    next.layers[static_cast<size_t>(layer)] = options[Pick(rng_, options.size())];
    return next;
  }

  std::optional<State> MoveStage(const State& cur) {
    const int stage = static_cast<int>(Pick(rng_, static_cast<size_t>(cur.shape.pp)));
    const std::vector<LayerStrategy>& options = Candidates(cur.shape);
    if (options.empty()) return std::nullopt;
    const LayerStrategy s = options[Pick(rng_, options.size())];
    const auto [first, last] = StageRange(cur.shape, stage);
    State next = cur;
    for (int l = first; l < last; ++l) next.layers[static_cast<size_t>(l)] = s;
    if (next.layers == cur.layers) return std::nullopt;
    return next;
  }

  std::optional<State> MoveMicroBatches(const State& cur) {
    std::vector<int> options;
    for (int m : space_.MicroBatchCounts(cur.shape.pp)) {
      if (m == cur.shape.micro_batches) continue;
      if (cur.shape.schedule == PipelineSchedule::kInterleaved && m % cur.shape.pp != 0) continue;
      PipelineShape shape = cur.shape;
      shape.micro_batches = m;
      const bool all = std::all_of(cur.layers.begin(), cur.layers.end(), [&](const auto& l) {
        return space_.Compatible(shape, l);
      });
      if (all) options.push_back(m);
    }
    if (options.empty()) return std::nullopt;
    State next = cur;
    next.shape.micro_batches = options[Pick(rng_, options.size())];
    return next;
  }

  std::optional<State> MoveSchedule(const State& cur) {
    std::vector<std::pair<PipelineSchedule, int>> options;
    for (const auto& sv : space_.Schedules(cur.shape.pp, cur.shape.stage_layers)) {
      if (sv.first == cur.shape.schedule && sv.second == cur.shape.vpp) continue;
      if (sv.first == PipelineSchedule::kInterleaved &&
          cur.shape.micro_batches % cur.shape.pp != 0) {
        continue;
      }
      options.push_back(sv);
    }
    if (options.empty()) return std::nullopt;
    State next = cur;
    std::tie(next.shape.schedule, next.shape.vpp) = options[Pick(rng_, options.size())];
    return next;
  }

  // `old` carried to `shape`: the candidate with its tp, cp, ep, ZeRO, sp
  // and recomputation (dp follows from the stage's devices), if any.
  std::optional<LayerStrategy> Carry(const LayerStrategy& old,
                                     const std::vector<LayerStrategy>& options) const {
    for (const LayerStrategy& c : options) {
      if (c.tp == old.tp && c.cp == old.cp && c.ep == old.ep && c.zero_stage == old.zero_stage &&
          c.sequence_parallel == old.sequence_parallel && c.recompute == old.recompute) {
        return c;
      }
    }
    return std::nullopt;
  }

  std::optional<State> MovePipeline(const State& cur) {
    std::vector<size_t> options;
    for (size_t k = 0; k < shapes_.size(); ++k) {
      const PipelineShape& s = shapes_[k];
      if (s.pp == cur.shape.pp && s.stage_layers == cur.shape.stage_layers) continue;
      if (s.rank_order != cur.shape.rank_order || s.schedule != cur.shape.schedule) continue;
      options.push_back(k);
    }
    if (options.empty()) return std::nullopt;
    State next;
    next.shape = shapes_[options[Pick(rng_, options.size())]];
    const std::vector<LayerStrategy>& cands = Candidates(next.shape);
    if (cands.empty()) return std::nullopt;
    next.layers.resize(cur.layers.size());
    for (int s = 0; s < next.shape.pp; ++s) {
      const auto [first, last] = StageRange(next.shape, s);
      std::optional<LayerStrategy> head = Carry(cur.layers[static_cast<size_t>(first)], cands);
      if (!head.has_value()) head = cands[Pick(rng_, cands.size())];
      next.layers[static_cast<size_t>(first)] = *head;
      for (int l = first + 1; l < last; ++l) {
        std::optional<LayerStrategy> c = Carry(cur.layers[static_cast<size_t>(l)], cands);
        if (!c.has_value() || !Space::SameStageCompatible(next.shape.rank_order, *head, *c)) {
          c = head;
        }
        next.layers[static_cast<size_t>(l)] = *c;
      }
    }
    return next;
  }

  const Space& space_;
  std::mt19937_64* rng_;
  std::vector<PipelineShape> shapes_;
  std::map<std::pair<int, int>, std::vector<LayerStrategy>> candidates_;
};

class AnnealSearch : public SearchAlgorithm {
 public:
  std::string_view name() const override { return "anneal"; }

  Status Run(const Evaluator& evaluator, const ProgressFn& progress,
             SearchResult* result) override {
    const auto start = std::chrono::steady_clock::now();
    const SearchRequest& request = evaluator.request();
    ORRERY_ASSIGN_OR_RETURN(const Space space, Space::Create(request));
    const size_t limit = static_cast<size_t>(CandidateLimit(request));
    const int64_t budget = request.max_samples > 0 ? request.max_samples : kDefaultSamples;
    const auto out_of_time = [&] {
      return request.time_limit_s.has_value() && SecondsSince(start) > *request.time_limit_s;
    };

    // The start: the best uniform plan of a short sweep.
    UniformSweepOptions sweep;
    sweep.uneven_stages = false;
    sweep.all_rank_orders = false;
    sweep.gpipe = false;
    if (request.time_limit_s.has_value()) sweep.time_limit_s = *request.time_limit_s / 4;
    ORRERY_RETURN_IF_ERROR(SweepUniformPlans(evaluator, space, sweep, progress, result));
    result->stopped_by_time_limit = false;
    std::vector<Candidate> pool = std::move(result->plans);
    result->plans.clear();

    std::mt19937_64 rng(request.seed);
    Annealer annealer(space, &rng);
    std::optional<State> cur;
    Duration cur_time;
    if (!pool.empty()) {
      cur = State{ShapeOfPlan(pool.front().plan), pool.front().plan.layers};
      cur_time = pool.front().analytical.iteration_time;
    } else {
      for (int k = 0; k < kRandomStarts && !cur.has_value(); ++k) {
        std::optional<State> s = annealer.RandomState();
        if (!s.has_value()) continue;
        Result<workload::Plan> plan = space.BuildPlan(s->shape, s->layers);
        if (!plan.ok()) continue;
        const Evaluator::Outcome o = evaluator.Evaluate(*plan, /*validate=*/false);
        ++result->evaluated;
        if (o.pruned.has_value()) {
          ++result->pruned[*o.pruned];
          continue;
        }
        cur = std::move(s);
        cur_time = o.evaluation.iteration_time;
        pool.push_back(Candidate{std::move(*plan), o.evaluation, std::nullopt});
      }
    }
    if (!cur.has_value()) {
      result->plans = std::move(pool);
      return Status::Ok();
    }

    const int64_t steps = std::max<int64_t>(1, budget / kProposals);
    for (int64_t step = 0; step < steps; ++step) {
      if (out_of_time()) {
        result->stopped_by_time_limit = true;
        break;
      }
      // Draw the proposals in order, then score them in parallel.
      std::vector<State> proposals;
      std::vector<workload::Plan> plans;
      for (int k = 0; k < kProposals; ++k) {
        std::optional<State> s = annealer.Propose(*cur);
        if (!s.has_value()) continue;
        Result<workload::Plan> plan = space.BuildPlan(s->shape, s->layers);
        if (!plan.ok()) {
          ++result->pruned[PruneReason::kInvalid];
          continue;
        }
        proposals.push_back(std::move(*s));
        plans.push_back(std::move(*plan));
      }
      std::vector<Evaluator::Outcome> outcomes(plans.size());
#pragma omp parallel for schedule(dynamic)
      for (int64_t k = 0; k < static_cast<int64_t>(plans.size()); ++k) {
        outcomes[static_cast<size_t>(k)] =
            evaluator.Evaluate(plans[static_cast<size_t>(k)], /*validate=*/false);
      }
      std::optional<size_t> chosen;
      for (size_t k = 0; k < plans.size(); ++k) {
        ++result->evaluated;
        if (outcomes[k].pruned.has_value()) {
          ++result->pruned[*outcomes[k].pruned];
          continue;
        }
        if (!chosen.has_value() ||
            outcomes[k].evaluation.iteration_time < outcomes[*chosen].evaluation.iteration_time) {
          chosen = k;
        }
        pool.push_back(Candidate{plans[k], outcomes[k].evaluation, std::nullopt});
      }
      if (pool.size() > 4 * limit) SortAndTruncate(&pool, limit);
      const double u = Uniform01(&rng);  // drawn every step: the sequence stays fixed
      if (chosen.has_value()) {
        const Duration t = outcomes[*chosen].evaluation.iteration_time;
        const double delta = (t.ToSeconds() - cur_time.ToSeconds()) / cur_time.ToSeconds();
        const double temperature =
            kT0 * std::pow(kT1 / kT0, static_cast<double>(step) / static_cast<double>(steps));
        if (delta <= 0 || u < std::exp(-delta / temperature)) {
          cur = std::move(proposals[*chosen]);
          cur_time = t;
        }
      }
      if (progress && step % 16 == 0) {
        progress(static_cast<double>(step) / static_cast<double>(steps), "annealing");
      }
    }
    SortAndTruncate(&pool, limit);
    result->plans = std::move(pool);
    return Status::Ok();
  }
};

}  // namespace

ORRERY_REGISTER_SEARCH_ALGORITHM(AnnealSearch, "anneal");

}  // namespace orrery::search
