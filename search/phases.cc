// Phase-wise planning (search/phases.h, docs/phases.md).
#include "search/phases.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/text.h"
#include "core/units.h"
#include "costmodel/reshard_cost.h"
#include "search/search.h"
#include "search/space.h"
#include "topology/cluster_spec.h"
#include "topology/cluster_spec_json.h"
#include "topology/presets.h"
#include "workload/phases.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::search {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kSecondsPerDay = 86400.0;


// Decimal bytes, as bandwidths are decimal: "512 B", "3.2 GB", "15.1 TB".
std::string DecimalBytes(int64_t bytes) {
  const double n = static_cast<double>(bytes);
  const char* units[] = {"kB", "MB", "GB", "TB", "PB"};
  if (n < 1000) return std::to_string(bytes) + " B";
  double v = n / 1000;
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  return FixedText(v, v < 10 ? 2 : (v < 100 ? 1 : 0)) + " " + units[u];
}

// "15.6T", "800B", "1.05M": a token count with a decimal suffix.
std::string TokenCount(double tokens) {
  struct Suffix {
    double scale;
    const char* name;
  };
  for (const Suffix s : {Suffix{1e12, "T"}, Suffix{1e9, "B"}, Suffix{1e6, "M"}, Suffix{1e3, "K"}}) {
    if (tokens >= s.scale) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.4g%s", tokens / s.scale, s.name);
      return buf;
    }
  }
  return FixedText(tokens, 0);
}

// "1,234,567".
std::string Grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// "phases.json: phases[1] (128k)", for messages.
std::string PhaseLabel(const workload::PhaseSchedule& schedule, size_t index) {
  std::string s = schedule.source.empty() ? std::string("phases") : schedule.source + ": phases";
  return s + "[" + std::to_string(index) + "] (" + schedule.phases[index].name + ")";
}

// The first line of a message, with its first listed item when the line
// only announces a list ("the plan breaks 1 rule:").
std::string FirstLine(const std::string& text) {
  const size_t nl = text.find('\n');
  if (nl == std::string::npos) return text;
  std::string line = text.substr(0, nl);
  if (!line.empty() && line.back() == ':') {
    const size_t next = text.find('\n', nl + 1);
    std::string item = text.substr(nl + 1, next == std::string::npos ? std::string::npos
                                                                      : next - nl - 1);
    const size_t start = item.find_first_not_of(" -*");
    if (start != std::string::npos) line += " " + item.substr(start);
  }
  return line;
}

int DevicesOfPlan(const workload::Plan& plan) {
  if (plan.layers.empty()) return 0;
  const workload::LayerStrategy& l = plan.layers.front();
  return plan.pp * l.tp * l.cp * l.dp;
}

// The key candidates are deduplicated by: the plan's JSON text with the
// phase's shape (global batch, sequence length) left out.
std::string LayoutKey(const workload::Plan& plan) {
  workload::Plan p = plan;
  p.global_batch_size = 0;
  p.sequence_length = 0;
  return DumpJson(workload::PlanToJson(p));
}

std::string ClusterKey(const topology::ClusterSpec& cluster) {
  return DumpJson(topology::ClusterSpecToJson(cluster));
}

// True when `b` is `a` with another node count: the same machines.
bool SameMachines(const topology::ClusterSpec& a, const std::string& a_key,
                  const topology::ClusterSpec& b, const std::string& b_key) {
  if (a_key == b_key) return true;
  const Result<topology::ClusterSpec> scaled = a.WithNodes(b.TotalNodes());
  return scaled.ok() && ClusterKey(*scaled) == b_key;
}

// The default of PhasePlanningRequest::resolve_cluster: "cluster" a preset
// or a file (relative to the phases file's folder when it exists there),
// "nodes" applied to it or to the command's cluster.
Result<topology::ClusterSpec> DefaultResolve(const PhasePlanningRequest& request,
                                             const workload::TrainingPhase& phase) {
  if (phase.cluster.empty()) {
    if (!phase.nodes.has_value()) return request.cluster;
    return request.cluster.WithNodes(*phase.nodes);
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path given(phase.cluster);
  const fs::path folder = fs::path(request.schedule.source).parent_path();
  if (given.is_relative() && !folder.empty() && fs::is_regular_file(folder / given, ec)) {
    return topology::ResolveCluster((folder / given).string(), phase.nodes);
  }
  return topology::ResolveCluster(phase.cluster, phase.nodes);
}

costmodel::StateBytes StateBytesOf(const workload::Plan& plan) {
  return plan.precision == topology::Precision::kFp32 ? costmodel::StateBytes::Fp32Adam()
                                                      : costmodel::StateBytes::MixedPrecisionAdam();
}

// One phase's working set.
struct PhaseWork {
  topology::ClusterSpec cluster;
  std::string cluster_key;
  std::shared_ptr<const Evaluator> evaluator;
  std::shared_ptr<const SearchResult> search;
  double search_time_s = 0;
  SearchRequest request;  // the phase's search
  int shape_of = 0;       // the first phase of its (cluster, batch, sequence)
};

// A priced switch.
struct PricedSwitch {
  Status status;  // not OK: it could not be priced
  costmodel::ReshardTraffic traffic;
  costmodel::SwitchCost cost;
  double seconds = kInfinity;
};

}  // namespace

Result<std::vector<int>> ChooseSchedule(
    const std::vector<std::vector<double>>& phase_seconds,
    const std::function<double(int phase, int from, int to)>& switch_seconds,
    const std::vector<bool>& keeping_moves_state) {
  const size_t phases = phase_seconds.size();
  if (phases == 0) return InvalidArgumentError("phases: expected at least one phase");
  auto finite = [](double v) { return std::isfinite(v) && v >= 0; };
  for (size_t p = 0; p < phases; ++p) {
    if (std::none_of(phase_seconds[p].begin(), phase_seconds[p].end(), finite)) {
      return FailedPreconditionError("phase " + std::to_string(p) +
                                     ": no candidate plan runs in it");
    }
  }
  // dist[p][c]: the least time to finish phase p on candidate c; from[p][c]
  // the candidate of phase p - 1 on that path.
  std::vector<std::vector<double>> dist(phases);
  std::vector<std::vector<int>> from(phases);
  dist[0].assign(phase_seconds[0].size(), kInfinity);
  from[0].assign(phase_seconds[0].size(), -1);
  for (size_t c = 0; c < phase_seconds[0].size(); ++c) {
    if (finite(phase_seconds[0][c])) dist[0][c] = phase_seconds[0][c];
  }
  for (size_t p = 1; p < phases; ++p) {
    const std::vector<double>& prev = dist[p - 1];
    const bool keep_moves = p < keeping_moves_state.size() && keeping_moves_state[p];
    // Predecessors cheapest first (ties: lower index): once one costs as
    // much as the best found, no later one can do better.
    std::vector<int> order;
    for (size_t a = 0; a < prev.size(); ++a) {
      if (std::isfinite(prev[a])) order.push_back(static_cast<int>(a));
    }
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) {
      return prev[static_cast<size_t>(x)] < prev[static_cast<size_t>(y)];
    });
    const size_t n = phase_seconds[p].size();
    dist[p].assign(n, kInfinity);
    from[p].assign(n, -1);
    for (size_t b = 0; b < n; ++b) {
      if (!finite(phase_seconds[p][b])) continue;
      double best = kInfinity;
      int best_from = -1;
      // Keeping the previous candidate first: it wins ties.
      if (b < prev.size() && std::isfinite(prev[b])) {
        const double stay = keep_moves ? switch_seconds(static_cast<int>(p), static_cast<int>(b),
                                                        static_cast<int>(b))
                                       : 0.0;
        if (finite(stay)) {
          best = prev[b] + stay;
          best_from = static_cast<int>(b);
        }
      }
      for (const int a : order) {
        if (prev[static_cast<size_t>(a)] >= best) break;
        if (static_cast<size_t>(a) == b) continue;
        const double s = switch_seconds(static_cast<int>(p), a, static_cast<int>(b));
        if (!finite(s)) continue;
        if (prev[static_cast<size_t>(a)] + s < best) {
          best = prev[static_cast<size_t>(a)] + s;
          best_from = a;
        }
      }
      if (best_from >= 0) {
        dist[p][b] = best + phase_seconds[p][b];
        from[p][b] = best_from;
      }
    }
    if (std::none_of(dist[p].begin(), dist[p].end(), [](double v) { return std::isfinite(v); })) {
      return FailedPreconditionError("phase " + std::to_string(p) +
                                     ": no candidate plan can be switched to from the previous "
                                     "phase's");
    }
  }
  std::vector<int> chosen(phases, -1);
  int last = -1;
  for (size_t c = 0; c < dist[phases - 1].size(); ++c) {
    if (!std::isfinite(dist[phases - 1][c])) continue;
    if (last < 0 || dist[phases - 1][c] < dist[phases - 1][static_cast<size_t>(last)]) {
      last = static_cast<int>(c);
    }
  }
  for (size_t p = phases; p-- > 0;) {
    chosen[p] = last;
    last = from[p][static_cast<size_t>(last)];
  }
  return chosen;
}

Result<PhasePlan> PlanPhases(const PhasePlanningRequest& request, const ProgressFn& progress) {
  const workload::PhaseSchedule& schedule = request.schedule;
  const size_t phases = schedule.phases.size();
  if (phases == 0) {
    return InvalidArgumentError((schedule.source.empty() ? std::string("phases")
                                                         : schedule.source) +
                                ": expected at least one phase");
  }
  auto report = [&](double fraction, const std::string& note) {
    if (progress) progress(fraction, note);
  };
  const bool simulate = request.base.rescore_with_simulator;
  PhasePlan out;
  out.simulated = simulate;

  // The clusters, and whether the machines change at each boundary.
  std::vector<PhaseWork> work(phases);
  std::vector<bool> machines_change(phases, false);
  for (size_t p = 0; p < phases; ++p) {
    const workload::TrainingPhase& phase = schedule.phases[p];
    Result<topology::ClusterSpec> cluster = request.resolve_cluster
                                                ? request.resolve_cluster(phase)
                                                : DefaultResolve(request, phase);
    if (!cluster.ok()) {
      const std::string field = phase.cluster.empty() ? "nodes" : "cluster";
      return cluster.status().WithContext(PhaseLabel(schedule, p) + ": field '" + field + "'");
    }
    work[p].cluster = std::move(*cluster);
    work[p].cluster_key = ClusterKey(work[p].cluster);
    if (p > 0) {
      machines_change[p] = !SameMachines(work[p - 1].cluster, work[p - 1].cluster_key,
                                         work[p].cluster, work[p].cluster_key);
      if (machines_change[p] && !schedule.checkpoint.has_value()) {
        return FailedPreconditionError(
            PhaseLabel(schedule, p) + ": field 'cluster': the phase runs on other machines (" +
            work[p].cluster.name + ") than the previous phase (" + work[p - 1].cluster.name +
            "), so the training state can only move through a checkpoint: give the file's "
            "'checkpoint' storage bandwidth");
      }
    }
  }

  // Step 1: the searches, one per distinct (cluster, batch, sequence).
  std::map<std::tuple<std::string, int, int>, size_t> first_of_shape;
  for (size_t p = 0; p < phases; ++p) {
    const workload::TrainingPhase& phase = schedule.phases[p];
    const auto shape =
        std::make_tuple(work[p].cluster_key, phase.global_batch_size, phase.sequence_length);
    if (const auto it = first_of_shape.find(shape); it != first_of_shape.end()) {
      work[p].evaluator = work[it->second].evaluator;
      work[p].search = work[it->second].search;
      work[p].request = work[it->second].request;
      work[p].shape_of = static_cast<int>(it->second);
      report((static_cast<double>(p) + 1) / static_cast<double>(phases),
             "phase " + std::to_string(p + 1) + "/" + std::to_string(phases) + " (" + phase.name +
                 "): same shape as " + schedule.phases[it->second].name + ", search reused");
      continue;
    }
    first_of_shape.emplace(shape, p);
    work[p].shape_of = static_cast<int>(p);
    SearchRequest search = request.base;
    search.model = request.model;
    search.cluster = work[p].cluster;
    search.global_batch_size = phase.global_batch_size;
    search.sequence_length = phase.sequence_length;
    if (work[p].cluster_key != ClusterKey(request.cluster) &&
        !SameMachines(request.cluster, ClusterKey(request.cluster), work[p].cluster,
                      work[p].cluster_key)) {
      // The command's calibration describes its cluster's machines only.
      search.calibration = nullptr;
      search.overlap_slowdown = 0.0;
    }
    work[p].request = search;
    const std::string label = "phase " + std::to_string(p + 1) + "/" + std::to_string(phases) +
                              " (" + phase.name + ")";
    report(static_cast<double>(p) / static_cast<double>(phases),
           label + ": searching " + std::to_string(work[p].cluster.TotalDevices()) +
               " devices, global batch " + std::to_string(phase.global_batch_size) + " × " +
               std::to_string(phase.sequence_length) + " tokens");
    Result<Evaluator> evaluator = Evaluator::Create(search);
    if (!evaluator.ok()) return evaluator.status().WithContext(PhaseLabel(schedule, p));
    work[p].evaluator = std::make_shared<const Evaluator>(std::move(*evaluator));
    const double base_fraction = static_cast<double>(p) / static_cast<double>(phases);
    const ProgressFn inner = [&](double fraction, std::string_view) {
      if (fraction >= 0 && progress) {
        progress(base_fraction + fraction / static_cast<double>(phases), "");
      }
    };
    const auto start = std::chrono::steady_clock::now();
    Result<SearchResult> result = RunSearch(search, request.algorithm, inner);
    if (!result.ok()) return result.status().WithContext(PhaseLabel(schedule, p));
    work[p].search_time_s = SecondsSince(start);
    work[p].search = std::make_shared<const SearchResult>(std::move(*result));
    std::string found = std::to_string(work[p].search->plans.size()) + " plans in " +
                        FixedText(work[p].search_time_s, 1) + " s";
    if (!work[p].search->plans.empty()) {
      found += ", best " + PlanSummary(work[p].search->plans.front().plan);
    }
    report((static_cast<double>(p) + 1) / static_cast<double>(phases), label + ": " + found);
  }

  // The candidates, deduplicated by layout, in order of first finding.
  std::map<std::string, int> index_of;
  for (size_t p = 0; p < phases; ++p) {
    for (const Candidate& c : work[p].search->plans) {
      const std::string key = LayoutKey(c.plan);
      if (index_of.count(key) > 0) continue;
      index_of.emplace(key, static_cast<int>(out.candidates.size()));
      out.candidates.push_back(c.plan);
      out.candidate_found_in.push_back(schedule.phases[p].name);
      out.candidate_from_single_search.push_back(false);
    }
  }
  for (size_t p = 0; p < phases; ++p) {
    if (work[p].search->plans.empty()) {
      return FailedPreconditionError(
          PhaseLabel(schedule, p) + ": no plan of " + request.model.name + " fits " +
          std::to_string(work[p].cluster.TotalDevices()) + " devices of " +
          work[p].cluster.name + " at global batch " +
          std::to_string(schedule.phases[p].global_batch_size) + " × " +
          std::to_string(schedule.phases[p].sequence_length) + " tokens");
    }
  }

  // Step 2: every candidate on every phase, on one scale. `ScoreOn`: one
  // plan, already re-targeted to phase p, by p's evaluator.
  auto score_on = [&](const workload::Plan& plan, size_t p, bool simulated) {
    PhaseScore score;
    const int devices = work[p].cluster.TotalDevices();
    if (DevicesOfPlan(plan) != devices) {
      score.why_not = "runs on " + std::to_string(DevicesOfPlan(plan)) +
                      " devices, the phase has " + std::to_string(devices);
      return score;
    }
    Result<Evaluation> e = work[p].evaluator->Score(plan);
    if (e.ok() && simulated && e->fits) e = work[p].evaluator->Simulate(plan);
    if (!e.ok()) {
      score.why_not = FirstLine(e.status().message());
      return score;
    }
    score.peak_memory = e->peak_memory;
    score.iteration_time = e->iteration_time;
    score.simulated = simulated;
    if (!e->fits) {
      score.why_not = "peak memory " + FixedText(e->peak_memory.ToGiB(), 1) +
                      " GiB over the budget " +
                      FixedText(work[p].evaluator->memory_budget().ToGiB(), 1) + " GiB";
      return score;
    }
    score.runs = true;
    score.phase_seconds =
        static_cast<double>(schedule.phases[p].Steps()) * e->iteration_time.ToSeconds();
    return score;
  };
  auto retarget = [&](const workload::Plan& plan, size_t p) {
    return workload::RetargetPlan(plan, schedule.phases[p].global_batch_size,
                                  schedule.phases[p].sequence_length);
  };
  // retargeted[c][p]: candidate c in phase p's shape. Scores candidates
  // [from, candidates.size()) on every phase.
  std::vector<std::vector<workload::Plan>> retargeted;
  auto score_candidates = [&](size_t from) {
    const size_t count = out.candidates.size();
    retargeted.resize(count, std::vector<workload::Plan>(phases));
    out.scores.resize(count, std::vector<PhaseScore>(phases));
    for (size_t c = from; c < count; ++c) {
      for (size_t p = 0; p < phases; ++p) retargeted[c][p] = retarget(out.candidates[c], p);
    }
    const int64_t pairs = static_cast<int64_t>((count - from) * phases);
#pragma omp parallel for schedule(dynamic)
    for (int64_t k = 0; k < pairs; ++k) {
      const size_t c = from + static_cast<size_t>(k) / phases;
      const size_t p = static_cast<size_t>(k) % phases;
      out.scores[c][p] = score_on(retargeted[c][p], p, simulate);
    }
  };
  report(-1, "scoring " + std::to_string(out.candidates.size()) + " candidate plans on " +
                 std::to_string(phases) + " phases" + (simulate ? " (event simulation)" : ""));
  score_candidates(0);

  // Step 5's search: a plan for the whole schedule, when every phase runs
  // on one cluster (a single plan cannot run on two device counts).
  bool one_cluster = request.single_plan_candidates > 0;
  for (size_t p = 1; p < phases && one_cluster; ++p) {
    one_cluster = work[p].cluster_key == work[0].cluster_key;
  }
  if (one_cluster) {
    const auto single_start = std::chrono::steady_clock::now();
    SinglePlanSearch single;
    single.plans_per_search = request.single_plan_candidates;
    // Each phase shape's plans, widened; phases of one shape share them.
    std::vector<workload::Plan> pool;
    std::vector<size_t> pool_found_in;
    std::map<std::string, bool> in_pool;
    for (size_t p = 0; p < phases; ++p) {
      if (work[p].shape_of != static_cast<int>(p)) continue;
      ++single.searches;
      const size_t want = static_cast<size_t>(request.single_plan_candidates);
      std::vector<Candidate> found;
      if (!simulate && work[p].search->plans.size() >= want) {
        found = work[p].search->plans;  // already as wide, on the same scale
        ++single.searches_reused;
      } else {
        // The algorithm itself, not RunSearch: it returns top_k × 4 plans
        // (search.h CandidateLimit) by the analytical score, and its work
        // grows with top_k (galvatron scores max(64, 16 × top_k) plans),
        // so top_k = ⌈want / 4⌉ gives `want` plans for a quarter of the
        // search RunSearch would need; RunSearch would keep only top_k.
        SearchRequest search = work[p].request;
        search.top_k = static_cast<int>((want + 3) / 4);
        search.rescore_with_simulator = false;
        report(-1, "single plan: searching " + schedule.phases[p].name + "'s shape for " +
                       std::to_string(want) + " plans to try on every phase");
        Result<std::unique_ptr<SearchAlgorithm>> algorithm =
            MakeSearchAlgorithm(request.algorithm);
        Result<Evaluator> evaluator =
            algorithm.ok() ? Evaluator::Create(search) : Result<Evaluator>(algorithm.status());
        SearchResult result;
        Status run = evaluator.ok() ? (*algorithm)->Run(*evaluator, {}, &result)
                                    : evaluator.status();
        if (!run.ok()) {
          return run.WithContext(PhaseLabel(schedule, p) + ": the search for a single plan");
        }
        found = std::move(result.plans);
      }
      size_t kept = 0;
      for (const Candidate& c : found) {
        if (kept >= want) break;
        if (!c.analytical.fits) continue;
        ++kept;
        const std::string key = LayoutKey(c.plan);
        if (index_of.count(key) > 0 || in_pool.count(key) > 0) continue;
        in_pool.emplace(key, true);
        pool.push_back(c.plan);
        pool_found_in.push_back(p);
      }
    }
    // Every plan on every phase, analytically (the searches' scale).
    single.plans_scored = static_cast<int>(pool.size());
    report(-1, "single plan: scoring " + std::to_string(pool.size()) + " plans on " +
                   std::to_string(phases) + " phases");
    // Phases of longer sequences, then smaller batches, first: where a
    // plan is likeliest not to fit or divide, so a plan stops at its first
    // phase it cannot run in. Evaluator::Evaluate checks the memory model
    // before the (at thousands of devices, costlier) analytical estimate;
    // its verdict is Score's.
    std::vector<size_t> order(phases);
    for (size_t p = 0; p < phases; ++p) order[p] = p;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const workload::TrainingPhase& x = schedule.phases[a];
      const workload::TrainingPhase& y = schedule.phases[b];
      if (x.sequence_length != y.sequence_length) return x.sequence_length > y.sequence_length;
      return x.global_batch_size < y.global_batch_size;
    });
    std::vector<double> total(pool.size(), 0.0);
#pragma omp parallel for schedule(dynamic)
    for (int64_t k = 0; k < static_cast<int64_t>(pool.size()); ++k) {
      const size_t c = static_cast<size_t>(k);
      for (const size_t p : order) {
        const workload::Plan plan = retarget(pool[c], p);
        const Evaluator::Outcome o =
            DevicesOfPlan(plan) == work[p].cluster.TotalDevices()
                ? work[p].evaluator->Evaluate(plan)
                : Evaluator::Outcome{Evaluation{}, PruneReason::kInvalid};
        if (!o.scored() || !o.evaluation.fits) {
          total[c] = kInfinity;
          break;
        }
        total[c] += static_cast<double>(schedule.phases[p].Steps()) *
                    o.evaluation.iteration_time.ToSeconds();
      }
    }
    std::vector<size_t> everywhere;
    for (size_t c = 0; c < pool.size(); ++c) {
      if (std::isfinite(total[c])) everywhere.push_back(c);
    }
    single.run_everywhere = static_cast<int>(everywhere.size());
    // Least total first; ties in the order found (the searches' order).
    std::stable_sort(everywhere.begin(), everywhere.end(),
                     [&](size_t a, size_t b) { return total[a] < total[b]; });
    if (!everywhere.empty()) {
      single.best_seconds = total[everywhere.front()];
      single.best_found_in = schedule.phases[pool_found_in[everywhere.front()]].name;
    }
    // What joins the candidates: on the analytical scale the best, when no
    // candidate already running everywhere is as fast (step 2's scores are
    // then on the same scale); on the simulator's, the best top_k by the
    // analytical total, for step 2 to simulate (as RunSearch re-scores a
    // search's best).
    size_t keep = simulate ? static_cast<size_t>(std::max(1, request.base.top_k)) : 1;
    if (!simulate && single.best_seconds.has_value()) {
      for (size_t c = 0; c < out.candidates.size(); ++c) {
        double t = 0;
        for (size_t p = 0; p < phases; ++p) {
          t += out.scores[c][p].runs ? out.scores[c][p].phase_seconds : kInfinity;
        }
        if (t <= *single.best_seconds) keep = 0;
      }
    }
    const size_t first_added = out.candidates.size();
    for (size_t i = 0; i < everywhere.size() && i < keep; ++i) {
      const size_t c = everywhere[i];
      index_of.emplace(LayoutKey(pool[c]), static_cast<int>(out.candidates.size()));
      out.candidates.push_back(pool[c]);
      out.candidate_found_in.push_back("single-plan search of " +
                                       schedule.phases[pool_found_in[c]].name);
      out.candidate_from_single_search.push_back(true);
      ++single.added;
    }
    if (out.candidates.size() > first_added) score_candidates(first_added);
    single.seconds = SecondsSince(single_start);
    out.single_search = single;
  }

  const size_t n = out.candidates.size();
  std::vector<std::vector<double>> seconds(phases, std::vector<double>(n, kInfinity));
  for (size_t c = 0; c < n; ++c) {
    for (size_t p = 0; p < phases; ++p) {
      if (out.scores[c][p].runs) seconds[p][c] = out.scores[c][p].phase_seconds;
    }
  }
  for (size_t p = 0; p < phases; ++p) {
    if (std::none_of(seconds[p].begin(), seconds[p].end(),
                     [](double v) { return std::isfinite(v); })) {
      return FailedPreconditionError(PhaseLabel(schedule, p) +
                                     ": none of its own search's plans fits when re-scored");
    }
  }

  // Step 3: switch costs, priced on demand and cached.
  std::optional<costmodel::StorageBandwidth> storage;
  if (schedule.checkpoint.has_value()) {
    storage = costmodel::StorageBandwidth{schedule.checkpoint->write_gb_per_s,
                                          schedule.checkpoint->read_gb_per_s};
  }
  std::map<std::tuple<int, int, int>, PricedSwitch> priced;
  Status switch_error;
  auto price = [&](int p, int a, int b) -> const PricedSwitch& {
    const auto key = std::make_tuple(p, a, b);
    if (const auto it = priced.find(key); it != priced.end()) return it->second;
    PricedSwitch s;
    const size_t pp = static_cast<size_t>(p);
    const workload::Plan& old_plan = retargeted[static_cast<size_t>(a)][pp - 1];
    const workload::Plan& new_plan = retargeted[static_cast<size_t>(b)][pp];
    costmodel::StateLayoutOptions options;
    options.bytes = StateBytesOf(new_plan);
    // The switch spans the larger of the two worlds (rank r is device r in
    // both): on the same machines, the larger cluster holds every rank.
    const topology::ClusterSpec& wider =
        work[pp].cluster.TotalDevices() >= work[pp - 1].cluster.TotalDevices()
            ? work[pp].cluster
            : work[pp - 1].cluster;
    Result<costmodel::ReshardTraffic> traffic = costmodel::ComputeReshardTraffic(
        request.model, old_plan, work[pp - 1].cluster.TotalDevices(), new_plan,
        work[pp].cluster.TotalDevices(), wider.PrimaryNodeType().devices_per_node, options);
    if (!traffic.ok()) {
      s.status = traffic.status();
    } else if (machines_change[pp]) {
      // Other machines: the old state written, the new one read
      // (reshard_cost.h's checkpoint arithmetic), never in memory.
      s.cost.in_memory = Duration::Zero();
      s.cost.checkpoint = Bytes(traffic->old_state_bytes) / GBps(storage->write_gb_per_s) +
                          Bytes(traffic->new_state_bytes) / GBps(storage->read_gb_per_s);
      s.cost.via_checkpoint = true;
      s.seconds = s.cost.time().ToSeconds();
      s.traffic = std::move(*traffic);
    } else {
      Result<costmodel::SwitchCost> cost = costmodel::EstimateSwitchCost(*traffic, wider, storage);
      if (!cost.ok()) {
        s.status = cost.status();
      } else {
        s.traffic = std::move(*traffic);
        s.cost = *cost;
        s.seconds = s.cost.time().ToSeconds();
      }
    }
    if (!s.status.ok() && switch_error.ok()) {
      switch_error = s.status.WithContext(
          PhaseLabel(schedule, pp) + ": the switch from " +
          PlanSummary(out.candidates[static_cast<size_t>(a)]) + " to " +
          PlanSummary(out.candidates[static_cast<size_t>(b)]));
    }
    ++out.switch_costs_computed;
    return priced.emplace(key, std::move(s)).first->second;
  };

  // Step 4.
  if (phases > 1) report(-1, "choosing the schedule: pricing the switches it needs");
  Result<std::vector<int>> chosen = ChooseSchedule(
      seconds, [&](int p, int a, int b) { return price(p, a, b).seconds; }, machines_change);
  if (!switch_error.ok()) return switch_error;
  if (!chosen.ok()) {
    return chosen.status().WithContext(schedule.source.empty() ? "phases" : schedule.source);
  }

  for (size_t p = 0; p < phases; ++p) {
    const workload::TrainingPhase& phase = schedule.phases[p];
    PlannedPhase planned;
    planned.name = phase.name;
    planned.steps = phase.Steps();
    planned.tokens = phase.Tokens();
    planned.global_batch_size = phase.global_batch_size;
    planned.sequence_length = phase.sequence_length;
    planned.cluster = work[p].cluster.name;
    planned.devices = work[p].cluster.TotalDevices();
    planned.machines_change = machines_change[p];
    planned.chosen = (*chosen)[p];
    // The phase's own best: the least time, the chosen candidate when it
    // ties (plans that re-target to the same plan score the same).
    planned.best = planned.chosen;
    for (size_t c = 0; c < n; ++c) {
      if (seconds[p][c] < seconds[p][static_cast<size_t>(planned.best)]) {
        planned.best = static_cast<int>(c);
      }
    }
    const PhaseScore& score = out.scores[static_cast<size_t>(planned.chosen)][p];
    planned.iteration_time = score.iteration_time;
    planned.seconds = score.phase_seconds;
    planned.search_time_s = work[p].search_time_s;
    const bool switched =
        p > 0 && ((*chosen)[p - 1] != planned.chosen || machines_change[p]);
    if (switched) {
      const PricedSwitch& s = price(static_cast<int>(p), (*chosen)[p - 1], planned.chosen);
      if (!switch_error.ok()) return switch_error;
      planned.switch_in = s.cost;
      planned.traffic_in = s.traffic;
      out.switch_seconds += s.seconds;
      ++out.switches;
    }
    if (planned.chosen != planned.best) {
      planned.best_saving_seconds =
          seconds[p][static_cast<size_t>(planned.chosen)] - seconds[p][static_cast<size_t>(planned.best)];
      const std::string best_summary = PlanSummary(out.candidates[static_cast<size_t>(planned.best)]);
      if (p > 0) {
        const PricedSwitch& s = price(static_cast<int>(p), (*chosen)[p - 1], planned.best);
        if (!switch_error.ok()) return switch_error;
        planned.best_switch_seconds = s.seconds;
      }
      const bool kept = p > 0 && (*chosen)[p - 1] == planned.chosen;
      std::string note = kept ? "keeps the previous phase's plan: " : "";
      note += "its own best (" + best_summary + ") is " + SpanText(planned.best_saving_seconds) +
              " faster over the phase";
      if (planned.best_switch_seconds.has_value()) {
        note += ", but switching to it costs " + SpanText(*planned.best_switch_seconds);
        if (*planned.best_switch_seconds <= planned.best_saving_seconds) {
          note += " (and switching away from it later costs more than it saves)";
        }
      } else {
        note += ", but the next phases are faster overall from this one";
      }
      planned.note = std::move(note);
    }
    out.total_seconds += planned.seconds;
    out.phases.push_back(std::move(planned));
  }
  out.total_seconds += out.switch_seconds;

  // Step 5: the best single plan, when the machines never change.
  if (std::none_of(machines_change.begin(), machines_change.end(), [](bool b) { return b; })) {
    for (size_t c = 0; c < n; ++c) {
      double total = 0;
      for (size_t p = 0; p < phases; ++p) total += seconds[p][c];
      if (!std::isfinite(total)) continue;
      if (!out.best_single.has_value() || total < *out.best_single_seconds) {
        out.best_single = static_cast<int>(c);
        out.best_single_seconds = total;
      }
    }
  }
  return out;
}

std::string PhasePlanToText(const PhasePlanningRequest& request, const PhasePlan& plan) {
  std::ostringstream out;
  out << "Phase-wise plan [" << request.algorithm << "] for " << request.model.name << " on "
      << request.cluster.name << " (" << request.cluster.TotalDevices() << " devices), "
      << plan.phases.size() << (plan.phases.size() == 1 ? " phase" : " phases") << ", scored by "
      << (plan.simulated ? "the event simulator" : "the analytical model") << "\n";
  if (request.schedule.checkpoint.has_value()) {
    out << "checkpoint storage: write " << FixedText(request.schedule.checkpoint->write_gb_per_s, 0)
        << " GB/s, read " << FixedText(request.schedule.checkpoint->read_gb_per_s, 0) << " GB/s\n";
  } else {
    out << "no checkpoint storage given: switches priced in memory only\n";
  }
  out << "\n";

  const std::vector<std::string> head = {"phase", "steps",     "tokens",   "batch × seq",
                                         "devices", "iteration", "phase time", "switch in",
                                         "plan"};
  std::vector<std::vector<std::string>> cells = {head};
  for (const PlannedPhase& p : plan.phases) {
    std::string in = "-";
    if (p.switch_in.has_value()) {
      in = SpanText(p.switch_in->time().ToSeconds()) +
           (p.switch_in->via_checkpoint ? " ckpt" : " mem");
    } else if (&p != &plan.phases.front()) {
      in = "kept";
    }
    cells.push_back({p.name, Grouped(p.steps), TokenCount(p.tokens),
                     std::to_string(p.global_batch_size) + " × " +
                         std::to_string(p.sequence_length),
                     std::to_string(p.devices), FormatDuration(p.iteration_time), SpanText(p.seconds),
                     in, PlanSummary(plan.candidates[static_cast<size_t>(p.chosen)])});
  }
  out << FormatColumns(cells, 2);

  // The candidates that matter, on the one scale: every phase's chosen
  // plan and own best, and the best single plan.
  std::vector<int> shown;
  auto show = [&](int c) {
    if (std::find(shown.begin(), shown.end(), c) == shown.end()) shown.push_back(c);
  };
  for (const PlannedPhase& p : plan.phases) show(p.chosen);
  for (const PlannedPhase& p : plan.phases) show(p.best);
  if (plan.best_single.has_value()) show(*plan.best_single);
  std::sort(shown.begin(), shown.end());
  if (!shown.empty() && !plan.scores.empty()) {
    out << "\n  plans compared (phase time; * chosen, - does not run; " << plan.candidates.size()
        << " candidates in all):\n";
    std::vector<std::string> chead = {"#", "found in"};
    for (const PlannedPhase& p : plan.phases) chead.push_back(p.name);
    chead.push_back("plan");
    std::vector<std::vector<std::string>> rows = {chead};
    for (const int c : shown) {
      const size_t uc = static_cast<size_t>(c);
      std::vector<std::string> row = {std::to_string(c + 1), plan.candidate_found_in[uc]};
      for (size_t p = 0; p < plan.phases.size(); ++p) {
        const PhaseScore& s = plan.scores[uc][p];
        row.push_back(s.runs ? SpanText(s.phase_seconds) + (plan.phases[p].chosen == c ? "*" : "")
                             : std::string("-"));
      }
      row.push_back(PlanSummary(plan.candidates[uc]));
      rows.push_back(std::move(row));
    }
    out << FormatColumns(rows, 4);
  }

  bool any_switch = false;
  for (size_t i = 0; i < plan.phases.size(); ++i) {
    const PlannedPhase& p = plan.phases[i];
    if (!p.switch_in.has_value() || !p.traffic_in.has_value()) continue;
    if (!any_switch) out << "\n  switches:\n";
    any_switch = true;
    const costmodel::ReshardTraffic& t = *p.traffic_in;
    const costmodel::SwitchCost& s = *p.switch_in;
    out << "    into " << p.name << ": " << DecimalBytes(std::max(t.max_sent(), t.max_received()))
        << " max per rank, " << DecimalBytes(t.total_bytes()) << " in all (state "
        << DecimalBytes(t.old_state_bytes) << " → " << DecimalBytes(t.new_state_bytes) << "); ";
    if (p.machines_change) {
      out << "other machines: through the checkpoint, " << SpanText(s.checkpoint->ToSeconds());
    } else {
      out << "in memory " << SpanText(s.in_memory.ToSeconds()) << ", checkpoint "
          << (s.checkpoint.has_value() ? SpanText(s.checkpoint->ToSeconds()) : std::string("-"))
          << " → " << (s.via_checkpoint ? "checkpoint" : "in memory");
    }
    out << "\n";
  }
  bool any_note = false;
  for (const PlannedPhase& p : plan.phases) {
    if (p.note.empty()) continue;
    if (!any_note) out << "\n  notes:\n";
    any_note = true;
    out << "    " << p.name << ": " << p.note << "\n";
  }

  out << "\n  total      " << FixedText(plan.total_seconds / kSecondsPerDay, 2) << " days: "
      << plan.phases.size() << (plan.phases.size() == 1 ? " phase, " : " phases, ")
      << plan.switches << (plan.switches == 1 ? " switch" : " switches") << " ("
      << SpanText(plan.switch_seconds) << ")\n";
  if (plan.best_single.has_value()) {
    const double single = *plan.best_single_seconds;
    const double saved = single - plan.total_seconds;
    const size_t b = static_cast<size_t>(*plan.best_single);
    out << "  one plan   " << FixedText(single / kSecondsPerDay, 2) << " days with "
        << PlanSummary(plan.candidates[b]) << " in every phase: the phase-wise plans save "
        << SpanText(saved) << " (" << FixedText(single > 0 ? 100 * saved / single : 0, 2)
        << "%)\n";
    const bool searched = b < plan.candidate_from_single_search.size() &&
                          plan.candidate_from_single_search[b];
    out << "             (plan " << b + 1 << ", found in "
        << (searched ? "the " + plan.candidate_found_in[b] + "'s shape, for the whole schedule"
                     : plan.candidate_found_in[b] + "'s own search")
        << ")\n";
  } else if (plan.single_search.has_value()) {
    out << "  one plan   none: no candidate and no plan of the single-plan search runs in "
           "every phase\n";
  } else {
    out << "  one plan   none: no candidate runs in every phase on the same machines\n";
  }
  double search_s = 0;
  for (const PlannedPhase& p : plan.phases) search_s += p.search_time_s;
  const size_t added =
      plan.single_search.has_value() ? static_cast<size_t>(plan.single_search->added) : 0;
  const size_t own = plan.candidates.size() - added;
  out << "  searched   " << own << " candidate plans from "
      << plan.phases.size() << (plan.phases.size() == 1 ? " phase" : " phases") << " in "
      << FixedText(search_s, 1) << " s; " << plan.switch_costs_computed << " switches priced\n";
  if (plan.single_search.has_value()) {
    const SinglePlanSearch& s = *plan.single_search;
    out << "  single     " << s.searches << (s.searches == 1 ? " shape" : " shapes")
        << " searched for " << s.plans_per_search << " plans each";
    if (s.searches_reused > 0) out << " (" << s.searches_reused << " reused)";
    out << "; " << s.plans_scored << " more plans scored on every phase, " << s.run_everywhere
        << " run in all";
    if (s.best_seconds.has_value()) {
      out << ", the best " << FixedText(*s.best_seconds / kSecondsPerDay, 2) << " days (from "
          << s.best_found_in << ")" << (s.added > 0 ? "" : ", no better than a candidate");
    }
    out << "; " << FixedText(s.seconds, 1) << " s\n";
  }
  return out.str();
}

Json PhasePlanToJson(const PhasePlanningRequest& request, const PhasePlan& plan) {
  Json j = Json::object();
  j["model"] = request.model.name;
  j["cluster"] = request.cluster.name;
  j["devices"] = request.cluster.TotalDevices();
  j["algorithm"] = request.algorithm;
  j["scale"] = plan.simulated ? "simulated" : "analytical";
  if (request.schedule.checkpoint.has_value()) {
    j["checkpoint"] = {{"write_gb_per_s", request.schedule.checkpoint->write_gb_per_s},
                       {"read_gb_per_s", request.schedule.checkpoint->read_gb_per_s}};
  } else {
    j["checkpoint"] = nullptr;
  }
  Json phases = Json::array();
  for (const PlannedPhase& p : plan.phases) {
    const workload::TrainingPhase* phase = nullptr;
    for (const workload::TrainingPhase& q : request.schedule.phases) {
      if (q.name == p.name) phase = &q;
    }
    Json e = Json::object();
    e["name"] = p.name;
    e["steps"] = p.steps;
    e["tokens"] = p.tokens;
    e["global_batch"] = p.global_batch_size;
    e["seq_len"] = p.sequence_length;
    e["cluster"] = p.cluster;
    e["devices"] = p.devices;
    e["candidate"] = p.chosen;
    e["summary"] = PlanSummary(plan.candidates[static_cast<size_t>(p.chosen)]);
    const workload::Plan chosen =
        phase != nullptr ? workload::RetargetPlan(plan.candidates[static_cast<size_t>(p.chosen)],
                                                  phase->global_batch_size, phase->sequence_length)
                         : plan.candidates[static_cast<size_t>(p.chosen)];
    e["plan"] = workload::PlanToJson(chosen);
    e["iteration_time_s"] = p.iteration_time.ToSeconds();
    e["seconds"] = p.seconds;
    e["days"] = p.seconds / kSecondsPerDay;
    e["best_candidate"] = p.best;
    e["best_summary"] = PlanSummary(plan.candidates[static_cast<size_t>(p.best)]);
    e["best_seconds"] =
        plan.scores[static_cast<size_t>(p.best)][static_cast<size_t>(&p - plan.phases.data())]
            .phase_seconds;
    e["kept_previous"] = &p != plan.phases.data() && !p.switch_in.has_value();
    e["machines_change"] = p.machines_change;
    if (p.switch_in.has_value() && p.traffic_in.has_value()) {
      const costmodel::ReshardTraffic& t = *p.traffic_in;
      int64_t off_node = 0;
      for (const int64_t b : t.sent_off_node) off_node += b;
      Json s = Json::object();
      s["bytes_max_sent"] = t.max_sent();
      s["bytes_max_received"] = t.max_received();
      s["bytes_total"] = t.total_bytes();
      s["bytes_off_node"] = off_node;
      s["old_state_bytes"] = t.old_state_bytes;
      s["new_state_bytes"] = t.new_state_bytes;
      s["in_memory_s"] = p.machines_change ? Json(nullptr) : Json(p.switch_in->in_memory.ToSeconds());
      s["checkpoint_s"] = p.switch_in->checkpoint.has_value()
                              ? Json(p.switch_in->checkpoint->ToSeconds())
                              : Json(nullptr);
      s["via"] = p.switch_in->via_checkpoint ? "checkpoint" : "memory";
      s["seconds"] = p.switch_in->time().ToSeconds();
      e["switch_in"] = s;
    } else {
      e["switch_in"] = nullptr;
    }
    e["note"] = p.note.empty() ? Json(nullptr) : Json(p.note);
    e["best_saving_s"] = p.best_saving_seconds;
    e["best_switch_s"] =
        p.best_switch_seconds.has_value() ? Json(*p.best_switch_seconds) : Json(nullptr);
    e["search_time_s"] = p.search_time_s;
    phases.push_back(std::move(e));
  }
  j["phases"] = std::move(phases);
  Json candidates = Json::array();
  for (size_t c = 0; c < plan.candidates.size(); ++c) {
    Json e = Json::object();
    e["summary"] = PlanSummary(plan.candidates[c]);
    e["found_in"] = plan.candidate_found_in[c];
    e["single_plan_search"] =
        c < plan.candidate_from_single_search.size() && plan.candidate_from_single_search[c];
    Json scores = Json::array();
    for (const PhaseScore& s : plan.scores[c]) {
      Json x = Json::object();
      x["runs"] = s.runs;
      x["iteration_time_s"] = s.runs ? Json(s.iteration_time.ToSeconds()) : Json(nullptr);
      x["seconds"] = s.runs ? Json(s.phase_seconds) : Json(nullptr);
      x["why_not"] = s.runs ? Json(nullptr) : Json(s.why_not);
      scores.push_back(std::move(x));
    }
    e["scores"] = std::move(scores);
    candidates.push_back(std::move(e));
  }
  j["candidates"] = std::move(candidates);
  j["total_seconds"] = plan.total_seconds;
  j["total_days"] = plan.total_seconds / kSecondsPerDay;
  j["switch_seconds"] = plan.switch_seconds;
  j["switches"] = plan.switches;
  j["switch_costs_computed"] = plan.switch_costs_computed;
  if (plan.best_single.has_value()) {
    Json b = Json::object();
    b["candidate"] = *plan.best_single;
    const size_t c = static_cast<size_t>(*plan.best_single);
    b["summary"] = PlanSummary(plan.candidates[c]);
    b["found_in"] = plan.candidate_found_in[c];
    b["from_single_plan_search"] =
        c < plan.candidate_from_single_search.size() && plan.candidate_from_single_search[c];
    b["total_seconds"] = *plan.best_single_seconds;
    b["total_days"] = *plan.best_single_seconds / kSecondsPerDay;
    b["saving_seconds"] = *plan.best_single_seconds - plan.total_seconds;
    j["best_single"] = std::move(b);
  } else {
    j["best_single"] = nullptr;
  }
  if (plan.single_search.has_value()) {
    const SinglePlanSearch& s = *plan.single_search;
    Json x = Json::object();
    x["plans_per_search"] = s.plans_per_search;
    x["searches"] = s.searches;
    x["searches_reused"] = s.searches_reused;
    x["plans_scored"] = s.plans_scored;
    x["run_everywhere"] = s.run_everywhere;
    x["added"] = s.added;
    x["best_seconds"] = s.best_seconds.has_value() ? Json(*s.best_seconds) : Json(nullptr);
    x["best_found_in"] = s.best_found_in.empty() ? Json(nullptr) : Json(s.best_found_in);
    x["seconds"] = s.seconds;
    j["single_plan_search"] = std::move(x);
  } else {
    j["single_plan_search"] = nullptr;
  }
  return j;
}

workload::PhaseSchedule ScheduleWithPlans(const PhasePlanningRequest& request,
                                          const PhasePlan& plan) {
  workload::PhaseSchedule out = request.schedule;
  for (size_t p = 0; p < out.phases.size() && p < plan.phases.size(); ++p) {
    workload::TrainingPhase& phase = out.phases[p];
    phase.plan = workload::RetargetPlan(plan.candidates[static_cast<size_t>(plan.phases[p].chosen)],
                                        phase.global_batch_size, phase.sequence_length);
  }
  return out;
}

}  // namespace orrery::search
