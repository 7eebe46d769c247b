// The evaluator, the helpers algorithms share, and RunSearch (search/search.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <omp.h>

#include "core/json.h"
#include "core/status.h"
#include "core/units.h"
#include "costmodel/memory.h"
#include "search/search.h"
#include "sim/analytical.h"
#include "sim/iteration.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::search {
namespace {

// The memory model's options as the simulator and the estimate use them.
costmodel::MemoryOptions MemoryOptionsOf(const SearchRequest& request) {
  costmodel::MemoryOptions memory = request.graph.memory;
  memory.flash_attention = request.graph.stage.flash_attention;
  return memory;
}

// True when a ValidatePlan message names a divisibility rule (docs/plan.md).
bool IsDivisibilityFailure(const Status& status) {
  const std::string& m = status.message();
  return m.find("divisible") != std::string::npos || m.find("divide") != std::string::npos ||
         m.find("× pp =") != std::string::npos;
}

Evaluation FromEstimate(const sim::AnalyticalEstimate& e, Bytes budget) {
  Evaluation out;
  out.iteration_time = e.iteration_time;
  out.tokens_per_s = e.tokens_per_s;
  out.peak_memory = e.peak_memory;
  out.fits = e.peak_memory <= budget;
  return out;
}

// The plan's JSON text: the last tie-break of every ordering.
std::string PlanKey(const workload::Plan& plan) { return DumpJson(workload::PlanToJson(plan)); }

}  // namespace

std::string_view PruneReasonName(PruneReason r) {
  switch (r) {
    case PruneReason::kMemory:
      return "memory";
    case PruneReason::kDivisibility:
      return "divisibility";
    case PruneReason::kDominated:
      return "dominated";
    case PruneReason::kInvalid:
      return "invalid";
    case PruneReason::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

Result<Evaluator> Evaluator::Create(const SearchRequest& request) {
  if (request.cluster.node_types.empty()) {
    return InvalidArgumentError("search: the cluster has no nodes");
  }
  if (!(request.overlap_slowdown >= 0.0) || !std::isfinite(request.overlap_slowdown)) {
    return InvalidArgumentError("search: overlap slowdown: expected a finite value >= 0, got " +
                                std::to_string(request.overlap_slowdown));
  }
  // The calibrated models when the request carries a calibration (nullptr:
  // the nominal ones); the same calibration reaches the simulator through
  // IterationOptions in Simulate.
  ORRERY_ASSIGN_OR_RETURN(sim::AnalyticalModel model,
                          sim::AnalyticalModel::Create(request.cluster,
                                                       request.calibration.get()));
  Evaluator evaluator;
  auto req = std::make_shared<SearchRequest>(request);
  if (req->sequence_length <= 0) req->sequence_length = request.model.default_sequence_length;
  // The measured optimizer step, unless the request sets one: every
  // algorithm's own cost model (galvatron's) reads it from the request.
  if (request.calibration != nullptr && !req->graph.optimizer_time_per_parameter.has_value()) {
    req->graph.optimizer_time_per_parameter = request.calibration->optimizer_time_per_parameter;
  }
  if (request.memory_budget.has_value()) {
    if (*request.memory_budget <= Bytes(0)) {
      return InvalidArgumentError("search: memory budget: expected a positive size, got " +
                                  FormatBytes(*request.memory_budget));
    }
    evaluator.budget_ = *request.memory_budget;
  } else {
    Bytes capacity = request.cluster.node_types.front().device.memory;
    for (const topology::NodeType& node : request.cluster.node_types) {
      capacity = std::min(capacity, node.device.memory);
    }
    evaluator.budget_ = capacity - request.graph.memory.reserve;
  }
  evaluator.analytical_options_.graph = req->graph;
  evaluator.analytical_options_.overlap_slowdown = req->overlap_slowdown;
  evaluator.analytical_options_.slow_devices = req->faults.slow_devices;
  evaluator.request_ = std::move(req);
  evaluator.analytical_ = std::make_shared<const sim::AnalyticalModel>(std::move(model));
  return evaluator;
}

Result<Evaluation> Evaluator::Score(const workload::Plan& plan) const {
  ORRERY_RETURN_IF_ERROR(workload::ValidatePlan(plan, request_->model, request_->cluster));
  return ScoreValidated(plan);
}

Result<Evaluation> Evaluator::ScoreValidated(const workload::Plan& plan) const {
  ORRERY_ASSIGN_OR_RETURN(
      const sim::AnalyticalEstimate estimate,
      analytical_->EstimateValidated(request_->model, plan, analytical_options_));
  return FromEstimate(estimate, budget_);
}

Result<Evaluation> Evaluator::Simulate(const workload::Plan& plan) const {
  sim::IterationOptions options;
  options.graph = request_->graph;
  options.calibration = request_->calibration;
  options.overlap_slowdown = request_->overlap_slowdown;
  options.faults = request_->faults;
  ORRERY_ASSIGN_OR_RETURN(
      const sim::IterationReport report,
      sim::SimulateIteration(request_->model, plan, request_->cluster, options));
  Evaluation out;
  out.iteration_time = report.iteration_time;
  out.tokens_per_s = report.tokens_per_s;
  out.peak_memory = report.peak_memory;
  out.fits = report.peak_memory <= budget_;
  return out;
}

Result<Bytes> Evaluator::PeakMemory(const workload::Plan& plan) const {
  ORRERY_ASSIGN_OR_RETURN(const costmodel::MemoryEstimate memory,
                          costmodel::EstimateMemory(request_->model, plan, request_->cluster,
                                                    MemoryOptionsOf(*request_)));
  return memory.Peak().Total();
}

Evaluator::Outcome Evaluator::Evaluate(const workload::Plan& plan, bool validate) const {
  Outcome out;
  if (validate) {
    const Status valid = workload::ValidatePlan(plan, request_->model, request_->cluster);
    if (!valid.ok()) {
      out.pruned =
          IsDivisibilityFailure(valid) ? PruneReason::kDivisibility : PruneReason::kInvalid;
      return out;
    }
  }
  const Result<Bytes> peak = PeakMemory(plan);
  if (!peak.ok()) {
    out.pruned = PruneReason::kInvalid;
    return out;
  }
  if (*peak > budget_) {
    out.evaluation.peak_memory = *peak;
    out.pruned = PruneReason::kMemory;
    return out;
  }
  Result<Evaluation> score = ScoreValidated(plan);
  if (!score.ok()) {
    out.pruned = score.status().code() == StatusCode::kUnimplemented ? PruneReason::kUnsupported
                                                                      : PruneReason::kInvalid;
    return out;
  }
  out.evaluation = *score;
  if (!out.evaluation.fits) out.pruned = PruneReason::kMemory;
  return out;
}

int CandidateLimit(const SearchRequest& request) { return std::max(1, request.top_k * 4); }

void SortAndTruncate(std::vector<Candidate>* candidates, size_t limit) {
  std::vector<std::pair<std::string, Candidate>> keyed;
  keyed.reserve(candidates->size());
  for (Candidate& c : *candidates) {
    std::string key = PlanKey(c.plan);
    keyed.emplace_back(std::move(key), std::move(c));
  }
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    const Evaluation& x = a.second.analytical;
    const Evaluation& y = b.second.analytical;
    if (x.iteration_time != y.iteration_time) return x.iteration_time < y.iteration_time;
    if (x.peak_memory != y.peak_memory) return x.peak_memory < y.peak_memory;
    return a.first < b.first;
  });
  // Equal plans found twice are kept once.
  keyed.erase(std::unique(keyed.begin(), keyed.end(),
                          [](const auto& a, const auto& b) { return a.first == b.first; }),
              keyed.end());
  if (keyed.size() > limit) keyed.resize(limit);
  candidates->clear();
  for (auto& [key, c] : keyed) candidates->push_back(std::move(c));
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Result<SearchResult> RunSearch(const SearchRequest& request, std::string_view algorithm,
                               const ProgressFn& progress) {
  ORRERY_ASSIGN_OR_RETURN(std::unique_ptr<SearchAlgorithm> algo, MakeSearchAlgorithm(algorithm));
  ORRERY_ASSIGN_OR_RETURN(const Evaluator evaluator, Evaluator::Create(request));
  SearchResult result;
  result.algorithm = std::string(algo->name());
  const auto start = std::chrono::steady_clock::now();
  ORRERY_RETURN_IF_ERROR(algo->Run(evaluator, progress, &result));
  result.search_time_s = SecondsSince(start);

  const size_t want = static_cast<size_t>(std::max(1, request.top_k));
  if (!request.rescore_with_simulator) {
    // The algorithm's order (SortAndTruncate's), the first `want` that fit.
    std::vector<Candidate> candidates = std::move(result.plans);
    result.plans.clear();
    for (Candidate& c : candidates) {
      if (result.plans.size() >= want) break;
      if (!c.analytical.fits) {
        ++result.pruned[PruneReason::kMemory];
        continue;
      }
      result.plans.push_back(std::move(c));
    }
    return result;
  }

  // Re-score with the event simulator, top_k at a time, until top_k plans
  // fit by its accounting or the candidates run out.
  const auto rescore_start = std::chrono::steady_clock::now();
  std::vector<Candidate> candidates = std::move(result.plans);
  result.plans.clear();
  std::vector<Candidate> kept;
  size_t next = 0;
  while (kept.size() < want && next < candidates.size()) {
    const size_t batch = std::min(want - kept.size(), candidates.size() - next);
    std::vector<std::optional<Result<Evaluation>>> scores(batch);
    if (progress) progress(-1, "simulating the best " + std::to_string(batch) + " plans");
#pragma omp parallel for schedule(dynamic)
    for (int64_t k = 0; k < static_cast<int64_t>(batch); ++k) {
      scores[static_cast<size_t>(k)] =
          evaluator.Simulate(candidates[next + static_cast<size_t>(k)].plan);
    }
    for (size_t k = 0; k < batch; ++k) {
      Candidate& c = candidates[next + k];
      const Result<Evaluation>& score = *scores[k];
      if (!score.ok()) {
        const PruneReason reason = score.status().code() == StatusCode::kUnimplemented
                                       ? PruneReason::kUnsupported
                                       : PruneReason::kInvalid;
        ++result.pruned[reason];
        continue;
      }
      if (!score->fits) {
        ++result.pruned[PruneReason::kMemory];
        continue;
      }
      c.simulated = *score;
      kept.push_back(std::move(c));
    }
    next += batch;
  }
  std::vector<std::pair<std::string, Candidate>> keyed;
  for (Candidate& c : kept) {
    std::string key = PlanKey(c.plan);
    keyed.emplace_back(std::move(key), std::move(c));
  }
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    const Duration x = a.second.simulated->iteration_time;
    const Duration y = b.second.simulated->iteration_time;
    if (x != y) return x < y;
    if (a.second.analytical.iteration_time != b.second.analytical.iteration_time) {
      return a.second.analytical.iteration_time < b.second.analytical.iteration_time;
    }
    return a.first < b.first;
  });
  for (auto& [key, c] : keyed) result.plans.push_back(std::move(c));
  result.rescore_time_s = SecondsSince(rescore_start);
  return result;
}

}  // namespace orrery::search
