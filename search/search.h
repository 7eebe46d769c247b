// The search: which plan trains a model fastest on a cluster within memory.
//
// Pieces (DESIGN.md "Search"):
//   * the request (SearchRequest): model, cluster, global batch, sequence
//     length, memory budget, what the space may contain, limits;
//   * the space (search/space.h): pipeline degrees and stage partitions,
//     micro-batch sizes, schedules, per-layer strategies (tp, dp vs ZeRO-1/2/3,
//     sp, cp, ep, recomputation), device orders — with the divisibility and
//     head constraints applied while enumerating;
//   * the evaluator (Evaluator, below): scores a plan with the analytical
//     fast path (sim/analytical.h) and the memory model, and re-scores the
//     best with the event simulator (sim/iteration.h); thread-safe;
//   * algorithms (SearchAlgorithm): galvatron (decision-tree pruning + a
//     dynamic program over layers under the memory budget, optimising the
//     pipeline's real objective), exhaustive (every uniform plan, as
//     Calculon), random and anneal (simulated annealing over layer-wise
//     plans, as FlexFlow's MCMC). Each is one class registered with
//     ORRERY_REGISTER_SEARCH_ALGORITHM; docs/search.md shows how to add one.
//
// Every algorithm returns its best plans by the evaluator's analytical
// score; RunSearch then re-scores the top K with the event simulator, drops
// any whose simulated peak memory exceeds the budget, and orders them by
// simulated iteration time (ties: analytical time, then the plan's JSON
// text), so the answer is the same for the same inputs whatever the number
// of threads.
//
// Thread-safety: Evaluator's const methods may be called concurrently;
// algorithms parallelise with OpenMP and must reduce their results in a
// deterministic order.
#ifndef ORRERY_SEARCH_SEARCH_H_
#define ORRERY_SEARCH_SEARCH_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "sim/analytical.h"
#include "sim/faults.h"
#include "sim/iteration.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::search {

// Why a candidate was not kept; the keys of SearchResult::pruned.
enum class PruneReason {
  kMemory,        // over the memory budget
  kDivisibility,  // a degree does not divide heads, layers, batch or devices
  kDominated,     // another candidate is at least as fast and as small
  kInvalid,       // ValidatePlan rejects it for another reason
  kUnsupported,   // the simulator does not model the layout
};
std::string_view PruneReasonName(PruneReason r);  // "memory", "divisibility", ...

struct SearchRequest {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
  int global_batch_size = 0;
  int sequence_length = 0;  // 0: the model's default
  // Usable bytes per device; nullopt: the device's capacity less the memory
  // model's reserve (costmodel::MemoryOptions::reserve).
  std::optional<Bytes> memory_budget;
  topology::Precision precision = topology::Precision::kBf16;
  // What the space may contain.
  bool allow_interleaved = true;
  bool allow_uneven_stages = true;
  bool allow_zero = true;
  bool allow_context_parallel = true;
  std::vector<int> micro_batch_sizes;  // empty: powers of two that divide the batch
  // Limits. time_limit: the algorithm stops and returns what it has
  // (RunSearch still re-scores). seed: for random and anneal.
  int top_k = 5;
  std::optional<double> time_limit_s;
  uint64_t seed = 1;
  // Plans random and anneal evaluate; 0: the algorithm's default.
  int64_t max_samples = 0;
  sim::TrainingGraphOptions graph;  // the simulator's and estimate's options
  // The cluster's calibration (nullptr: nominal cost models) and the
  // overlap slowdown σ both the estimate and the simulation apply.
  std::shared_ptr<const costmodel::Calibration> calibration;
  double overlap_slowdown = 0.0;
  // Whether RunSearch re-scores the best top_k with the event simulator.
  // false: the algorithm's best by analytical score are the answer (the
  // first top_k that fit the budget), with no simulation — what capacity
  // sweeps use (search/capacity.h), since simulating a plan on 16,384
  // devices takes minutes where the search takes seconds.
  bool rescore_with_simulator = true;
  // Known faults of the cluster (sim/faults.h), e.g. what a run measured
  // (`orrery tune`, `execute --replan`). The analytical score sees the
  // slow devices (AnalyticalOptions::slow_devices), the event re-scoring
  // sees every fault. Galvatron's stage-partition DP scales each stage by
  // its slowest rank's factor, so a slow stage gets fewer layers.
  sim::Faults faults;
};

struct Evaluation {
  Duration iteration_time;
  double tokens_per_s = 0;
  Bytes peak_memory;  // worst device
  bool fits = false;  // peak_memory <= the budget
};

// Scores plans for one request. Create builds the analytical model once.
class Evaluator {
 public:
  static Result<Evaluator> Create(const SearchRequest& request);

  // The analytical score of `plan`, after ValidatePlan (a rejected plan is
  // FailedPrecondition). Thread-safe.
  Result<Evaluation> Score(const workload::Plan& plan) const;
  // The same without ValidatePlan (REQUIRES: it passes). Thread-safe.
  Result<Evaluation> ScoreValidated(const workload::Plan& plan) const;
  // The event simulation's score. Thread-safe.
  Result<Evaluation> Simulate(const workload::Plan& plan) const;

  // For algorithms: the peak memory of `plan` by the memory model alone
  // (costmodel::EstimateMemory with the request's options), much cheaper
  // than Score, to prune before scoring. REQUIRES: ValidatePlan passes.
  // Thread-safe.
  Result<Bytes> PeakMemory(const workload::Plan& plan) const;

  // For algorithms: `plan` scored, or why it is pruned. With `validate`,
  // ValidatePlan first: a rejected plan is kDivisibility when a broken rule
  // is a divisibility rule, kInvalid otherwise. Then the memory model:
  // over the budget is kMemory (not scored; `evaluation` holds only
  // peak_memory). Then ScoreValidated: Unimplemented is kUnsupported, any
  // other error kInvalid. Thread-safe.
  struct Outcome {
    Evaluation evaluation;               // scored when `pruned` is empty
    std::optional<PruneReason> pruned;   // why not, otherwise
    bool scored() const { return !pruned.has_value(); }
  };
  Outcome Evaluate(const workload::Plan& plan, bool validate = true) const;

  const SearchRequest& request() const { return *request_; }
  const sim::AnalyticalModel& model() const { return *analytical_; }
  Bytes memory_budget() const { return budget_; }

 private:
  Evaluator() = default;
  std::shared_ptr<const SearchRequest> request_;
  std::shared_ptr<const sim::AnalyticalModel> analytical_;
  // The estimate's options, built once from the request (ScoreValidated
  // is the search's hot path).
  sim::AnalyticalOptions analytical_options_;
  Bytes budget_;
};

struct Candidate {
  workload::Plan plan;
  Evaluation analytical;
  std::optional<Evaluation> simulated;  // filled by RunSearch for the top K
};

struct SearchResult {
  std::string algorithm;
  std::vector<Candidate> plans;  // best first
  int64_t evaluated = 0;         // plans scored by the evaluator
  std::map<PruneReason, int64_t> pruned;
  double search_time_s = 0;      // wall time of the algorithm (not the re-scoring)
  double rescore_time_s = 0;     // wall time of the event simulations
  bool stopped_by_time_limit = false;
};

// Progress of a long search: called from the algorithm's thread now and
// then with a fraction done in [0, 1] (or negative when unknown) and a
// short note. May be empty.
using ProgressFn = std::function<void(double fraction, std::string_view note)>;

// Helpers for algorithms.
//
// The number of candidates an algorithm returns: request.top_k × 4, at
// least 1.
int CandidateLimit(const SearchRequest& request);
// Sorts `candidates` best first by analytical score — iteration time, then
// peak memory, then the plan's JSON text — and keeps the first `limit`, so
// the result does not depend on the order they were found in.
void SortAndTruncate(std::vector<Candidate>* candidates, size_t limit);
// Seconds since `start`, for time limits (wall clock, outside the model).
double SecondsSince(std::chrono::steady_clock::time_point start);

class SearchAlgorithm {
 public:
  virtual ~SearchAlgorithm() = default;
  virtual std::string_view name() const = 0;
  // Fills `result` with at most request.top_k × 4 candidates (the best by
  // analytical score, best first), the evaluated count and prune counts.
  virtual Status Run(const Evaluator& evaluator, const ProgressFn& progress,
                     SearchResult* result) = 0;
};

// Registration: one line per algorithm, in its .cc file:
//   ORRERY_REGISTER_SEARCH_ALGORITHM(GalvatronSearch, "galvatron");
using AlgorithmFactory = std::function<std::unique_ptr<SearchAlgorithm>()>;
bool RegisterSearchAlgorithm(std::string name, AlgorithmFactory factory);
// The registered names, sorted.
std::vector<std::string> SearchAlgorithmNames();
// NotFound naming the registered algorithms.
Result<std::unique_ptr<SearchAlgorithm>> MakeSearchAlgorithm(std::string_view name);

#define ORRERY_REGISTER_SEARCH_ALGORITHM(Class, name_literal)            \
  [[maybe_unused]] static const bool orrery_registered_##Class =         \
      ::orrery::search::RegisterSearchAlgorithm(                          \
          name_literal, [] { return std::unique_ptr<::orrery::search::SearchAlgorithm>( \
                                 new Class()); })

// Runs `algorithm` on `request`, then re-scores its best request.top_k
// plans with the event simulator (in parallel), drops those that do not
// fit by the simulator's accounting (counted as kMemory), and orders them
// as the header says. With request.rescore_with_simulator false it keeps
// the algorithm's first top_k plans that fit by the analytical score, in
// its order, unsimulated (rescore_time_s 0).
Result<SearchResult> RunSearch(const SearchRequest& request, std::string_view algorithm,
                               const ProgressFn& progress = {});

}  // namespace orrery::search

#endif  // ORRERY_SEARCH_SEARCH_H_
