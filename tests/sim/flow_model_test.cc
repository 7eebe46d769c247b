#include "sim/flow_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "core/units.h"
#include "sim/engine.h"
#include "sim/network.h"
#include "sim/sharing_solver.h"
#include "tests/sim/counting_allocator.h"

namespace orrery::sim {
namespace {

// Records the completion time of every flow by tag.
class Completions : public FlowObserver {
 public:
  explicit Completions(const Engine* engine) : engine_(engine) {}
  void OnFlowCompleted(FlowId, uint64_t tag) override { time[tag] = engine_->now(); }
  std::map<uint64_t, SimTime> time;

 private:
  const Engine* engine_;
};

std::vector<LinkId> Route(std::initializer_list<LinkId> links) { return links; }

TEST(FlowModel, AFlowAloneGetsTheWholeLink) {
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  const FlowId flow = model.StartFlow(Route({link}), GB(1), &done, 7);
  model.SolveNow();
  EXPECT_EQ(model.Rate(flow), GBps(100));
  engine.Run();
  // 1 GB at 100 GB/s: 10 ms.
  EXPECT_EQ(done.time.at(7), Millis(10));
  EXPECT_FALSE(model.IsActive(flow));
  EXPECT_EQ(model.active_flows(), 0u);
}

TEST(FlowModel, TwoEqualFlowsShareALinkEqually) {
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  const FlowId a = model.StartFlow(Route({link}), GB(1), &done, 1);
  const FlowId b = model.StartFlow(Route({link}), GB(1), &done, 2);
  model.SolveNow();
  EXPECT_EQ(model.Rate(a), GBps(50));
  EXPECT_EQ(model.Rate(b), GBps(50));
  engine.Run();
  // Each moves 1 GB at 50 GB/s: both end at 20 ms.
  EXPECT_EQ(done.time.at(1), Millis(20));
  EXPECT_EQ(done.time.at(2), Millis(20));
  EXPECT_EQ(model.stats().solves, 2) << "one solve for both starts, one for both ends";
}

TEST(FlowModel, SharesTheClassicThreeLinkExampleMaxMinFairly) {
  // The example of sharing_solver_test.cc: L0 = 10, L1 = 8, L2 = 12 GB/s;
  // f0 crosses all three, f1 L0 and L2, f2 and f3 L1, f4 L2. By hand:
  // f0 = f2 = f3 = 8/3 GB/s (L1 saturates first), f1 = f4 = 14/3 GB/s (L2
  // next), in integer B/s 2666666666 and 4666666667.
  Engine engine;
  Network network;
  const LinkId l0 = network.AddLink(GBps(10), Duration::Zero(), "L0");
  const LinkId l1 = network.AddLink(GBps(8), Duration::Zero(), "L1");
  const LinkId l2 = network.AddLink(GBps(12), Duration::Zero(), "L2");
  FlowModel model(&engine, &network);
  const std::vector<std::vector<LinkId>> routes = {{l0, l1, l2}, {l0, l2}, {l1}, {l1}, {l2}};
  std::vector<FlowId> flows;
  for (const auto& route : routes) flows.push_back(model.StartFlow(route, GB(1), nullptr));
  model.SolveNow();
  const std::vector<int64_t> expected = {2666666666, 4666666667, 2666666666, 2666666666,
                                         4666666667};
  for (size_t i = 0; i < flows.size(); ++i) {
    EXPECT_EQ(model.RateBytesPerSecond(flows[i]), expected[i]) << "flow " << i;
  }
  EXPECT_EQ(model.stats().largest_component, 5);
}

TEST(FlowModel, AFinishingFlowFreesItsBandwidthForTheOther) {
  // A = 1 GB and B = 3 GB start together on 100 GB/s. Both run at 50 GB/s
  // until A ends at 1 GB / 50 GB/s = 20 ms; B has 2 GB left, now at
  // 100 GB/s: it ends at 20 + 20 = 40 ms = (1 GB + 3 GB) / 100 GB/s.
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  model.StartFlow(Route({link}), GB(1), &done, 1);
  const FlowId b = model.StartFlow(Route({link}), GB(3), &done, 2);
  engine.RunUntil(Millis(20));
  EXPECT_EQ(done.time.at(1), Millis(20));
  model.SolveNow();
  EXPECT_EQ(model.Rate(b), GBps(100));
  EXPECT_EQ(model.Remaining(b), GB(2));
  engine.Run();
  EXPECT_EQ(done.time.at(2), Millis(40));
}

TEST(FlowModel, AddsTheLatencyOfEveryHopOnceAtTheStart) {
  // Three hops of 1 us, 2 us and 0.5 us latency; the slowest is 50 GB/s.
  // 1 MB (10^6 B) takes 3.5 us + 10^6 / 50e9 s = 3.5 + 20 = 23.5 us.
  Engine engine;
  Network network;
  const LinkId a = network.AddLink(GBps(100), Micros(1));
  const LinkId b = network.AddLink(GBps(50), Micros(2));
  const LinkId c = network.AddLink(GBps(200), Nanos(500));
  FlowModel model(&engine, &network);
  Completions done(&engine);
  const FlowId flow = model.StartFlow(Route({a, b, c}), Bytes(1000000), &done, 0);
  engine.RunUntil(Micros(3));
  EXPECT_EQ(model.Rate(flow), Bandwidth::Zero()) << "no bandwidth during the latency";
  EXPECT_EQ(model.Remaining(flow), Bytes(1000000));
  engine.Run();
  EXPECT_EQ(done.time.at(0), Micros(23.5));
}

TEST(FlowModel, AFlowInItsLatencyTakesNoBandwidth) {
  // A: 1 GB on L (100 GB/s), from 0. B: 1 GB over a 5 ms hop then L. A runs
  // alone for 5 ms (0.5 GB), then both share L at 50 GB/s: A's last 0.5 GB
  // take 10 ms (A ends at 15 ms) while B moves 0.5 GB; B's last 0.5 GB run
  // at 100 GB/s for 5 ms: B ends at 20 ms, when L has moved 2 GB at 100 GB/s.
  Engine engine;
  Network network;
  const LinkId slow_hop = network.AddLink(TBps(10), Millis(5));
  const LinkId link = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  model.StartFlow(Route({link}), GB(1), &done, 1);
  model.StartFlow(Route({slow_hop, link}), GB(1), &done, 2);
  engine.Run();
  EXPECT_EQ(done.time.at(1), Millis(15));
  EXPECT_EQ(done.time.at(2), Millis(20));
}

TEST(FlowModel, AFlowThroughATwoToOneOversubscribedTierGetsItsShare) {
  // Four hosts with 100 GB/s links into a leaf whose uplink is 200 GB/s
  // (400 GB/s of hosts, 2:1 oversubscribed). Four flows up: each gets
  // 200 / 4 = 50 GB/s = 100 GB/s × 1/2. A fifth flow between two hosts of
  // the leaf shares host 0's link: host 0's 100 GB/s holds it and the
  // uplink-bound flow, 50 GB/s each.
  Engine engine;
  Network network;
  std::vector<LinkId> host;
  for (int i = 0; i < 4; ++i) host.push_back(network.AddLink(GBps(100), Micros(1)));
  const LinkId uplink = network.AddLink(GBps(200), Micros(1));
  const LinkId down1 = network.AddLink(GBps(100), Micros(1));
  FlowModel model(&engine, &network);
  std::vector<FlowId> up;
  for (int i = 0; i < 4; ++i) {
    up.push_back(model.StartFlow(Route({host[i], uplink}), GB(1), nullptr));
  }
  const FlowId local = model.StartFlow(Route({host[0], down1}), GB(1), nullptr);
  engine.RunUntil(Micros(2));
  for (const FlowId flow : up) EXPECT_EQ(model.Rate(flow), GBps(50));
  EXPECT_EQ(model.Rate(local), GBps(50));
}

TEST(FlowModel, AFlowOnADisjointLinkIsSolvedAloneAndLeavesOthersUntouched) {
  Engine engine;
  Network network;
  const LinkId l0 = network.AddLink(GBps(100), Duration::Zero());
  const LinkId l1 = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  model.StartFlow(Route({l0}), GB(1), &done, 1);
  model.StartFlow(Route({l0}), GB(1), &done, 2);
  engine.RunUntil(Millis(1));
  const FlowModelStats before = model.stats();
  model.StartFlow(Route({l1}), GB(1), &done, 3);
  engine.RunUntil(Millis(2));
  EXPECT_EQ(model.stats().solves - before.solves, 1);
  EXPECT_EQ(model.stats().flows_solved - before.flows_solved, 1) << "only the new flow";
  EXPECT_EQ(model.stats().rate_changes - before.rate_changes, 1);
  engine.Run();
  EXPECT_EQ(done.time.at(1), Millis(20));
  EXPECT_EQ(done.time.at(3), Millis(11));
}

TEST(FlowModel, ProcessorSharingOfManySizesMatchesItsClosedForm) {
  // n flows of sizes S_1 < ... < S_n start together on one link of C; under
  // equal sharing the k-th ends at T_k = T_{k-1} + (S_k - S_{k-1})(n-k+1)/C.
  // C = 84 GB/s is divisible by 1..8, so every rate is an exact integer and
  // the only rounding is each completion's < 1 ps: T_k is within k ps.
  constexpr int n = 8;
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(84), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  std::vector<int64_t> size(n);
  for (int k = 0; k < n; ++k) size[k] = (k + 1) * 1'000'000'000LL + 12345 * (k + 1);
  for (int k = n - 1; k >= 0; --k) model.StartFlow(Route({link}), Bytes(size[k]), &done, k);
  engine.Run();
  // Exact closed form in picoseconds as a rational: T_k·C = Σ ...; compare
  // T_k·C (in picobytes) against the accumulated work.
  __int128 t_times_c = 0;  // picoseconds × bytes/s = picobytes
  int64_t previous = 0;
  for (int k = 0; k < n; ++k) {
    t_times_c += static_cast<__int128>(size[k] - previous) * (n - k) * 1'000'000'000'000LL;
    previous = size[k];
    const int64_t expected_ps = static_cast<int64_t>(t_times_c / 84'000'000'000LL);
    const int64_t got_ps = done.time.at(k).picos();
    EXPECT_GE(got_ps, expected_ps) << "flow " << k;
    EXPECT_LE(got_ps, expected_ps + k + 1) << "flow " << k;
  }
}

// A coflow crossing L0 (12 GB/s) with weight 2 and L1 (100 GB/s) with
// weight 1, and a plain flow on L0. L0 fills at 2r + r = 12: both run at
// 4 GB/s. The coflow's 40 MB end at 10 ms; the plain flow has moved 40 MB
// of 160 MB and runs the last 120 MB alone at 12 GB/s: 10 more ms.
TEST(FlowModel, ACoflowLoadsEachLinkByItsWeight) {
  Engine engine;
  Network network;
  const LinkId l0 = network.AddLink(GBps(12), Duration::Zero());
  const LinkId l1 = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  const std::vector<LinkId> links = {l0, l1};
  const std::vector<uint32_t> weights = {2, 1};
  FlowSpec spec;
  spec.links = links;
  spec.weights = weights;
  spec.size = MB(40);
  const FlowId coflow = model.StartFlow(spec, &done, 1);
  const FlowId plain = model.StartFlow(Route({l0}), MB(160), &done, 2);
  model.SolveNow();
  EXPECT_EQ(model.Rate(coflow), GBps(4));
  EXPECT_EQ(model.Rate(plain), GBps(4));
  engine.Run();
  EXPECT_EQ(done.time.at(1), Millis(10));
  EXPECT_EQ(done.time.at(2), Millis(20));
}

// Alone on an idle 100 GB/s link with 2 us of latency, a flow capped at
// 30 GB/s moves 1 GB in 2 us + ⌈10^9 / (30·10^9) s⌉ = 2 us + 33333333334 ps.
TEST(FlowModel, ACapAloneOnAnIdleLinkSetsTheRate) {
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(100), Micros(2));
  FlowModel model(&engine, &network);
  Completions done(&engine);
  const std::vector<LinkId> links = {link};
  FlowSpec spec;
  spec.links = links;
  spec.size = GB(1);
  spec.rate_cap_bytes_per_s = 30'000'000'000;
  const FlowId flow = model.StartFlow(spec, &done, 1);
  engine.RunUntil(Micros(3));
  EXPECT_EQ(model.RateBytesPerSecond(flow), 30'000'000'000);
  engine.Run();
  EXPECT_EQ(done.time.at(1), SimTime::Zero() + Micros(2) + Picos(33'333'333'334));
  EXPECT_EQ(model.stats().lone_flows_solved, model.stats().flows_solved);
}

// The cap binds only below the share: two flows capped at 30 GB/s and one
// uncapped on 100 GB/s get 30, 30 and the remaining 40.
TEST(FlowModel, CappedFlowsLeaveTheRestToTheOthers) {
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  const std::vector<LinkId> links = {link};
  FlowSpec capped;
  capped.links = links;
  capped.size = GB(1);
  capped.rate_cap_bytes_per_s = 30'000'000'000;
  const FlowId a = model.StartFlow(capped, nullptr);
  const FlowId b = model.StartFlow(capped, nullptr);
  const FlowId c = model.StartFlow(links, GB(1), nullptr);
  model.SolveNow();
  EXPECT_EQ(model.Rate(a), GBps(30));
  EXPECT_EQ(model.Rate(b), GBps(30));
  EXPECT_EQ(model.Rate(c), GBps(40));
}

// FlowSpec::latency replaces the hops' latencies: 5 us instead of 1 + 1 us,
// then 1 MB at 50 GB/s (20 us). A latency of zero starts at once.
TEST(FlowModel, AGivenLatencyReplacesTheRoutesLatency) {
  Engine engine;
  Network network;
  const LinkId a = network.AddLink(GBps(100), Micros(1));
  const LinkId b = network.AddLink(GBps(50), Micros(1));
  FlowModel model(&engine, &network);
  Completions done(&engine);
  const std::vector<LinkId> links = {a, b};
  FlowSpec spec;
  spec.links = links;
  spec.size = MB(1);
  spec.latency = Micros(5);
  model.StartFlow(spec, &done, 1);
  engine.Run();
  EXPECT_EQ(done.time.at(1), Micros(25));
  spec.latency = Duration::Zero();
  const SimTime start = engine.now();
  model.StartFlow(spec, &done, 2);
  engine.Run();
  EXPECT_EQ(done.time.at(2), start + Micros(20));
}

// A coflow with no links completes after its latency alone.
TEST(FlowModel, ACoflowWithoutLinksTakesItsLatency) {
  Engine engine;
  Network network;
  FlowModel model(&engine, &network);
  Completions done(&engine);
  FlowSpec spec;
  spec.size = GB(1);
  spec.latency = Micros(7);
  model.StartFlow(spec, &done, 1);
  engine.Run();
  EXPECT_EQ(done.time.at(1), Micros(7));
}

// Counts the solver's calls and forwards them to max-min.
class CountingSolver : public SharingSolver {
 public:
  void Solve(const SharingProblem& problem, std::span<int64_t> rates) override {
    ++calls;
    inner_.Solve(problem, rates);
  }
  int calls = 0;

 private:
  MaxMinSolver inner_;
};

TEST(FlowModel, AFlowAloneOnItsLinksIsTimedWithoutTheSolver) {
  // 1000 coflows one after another on the same links: every start and end
  // finds a component of one flow (or none).
  Engine engine;
  Network network;
  const LinkId l0 = network.AddLink(GBps(100), Duration::Zero());
  const LinkId l1 = network.AddLink(GBps(60), Duration::Zero());
  CountingSolver solver;
  FlowModel model(&engine, &network, &solver);
  const std::vector<LinkId> links = {l0, l1};
  const std::vector<uint32_t> weights = {2, 1};
  class Sequence : public FlowObserver {
   public:
    void OnFlowCompleted(FlowId, uint64_t tag) override {
      if (tag + 1 < 1000) model->StartFlow(*spec, this, tag + 1);
    }
    FlowModel* model = nullptr;
    const FlowSpec* spec = nullptr;
  } sequence;
  FlowSpec spec;
  spec.links = links;
  spec.weights = weights;
  spec.size = MB(1);  // at min(100/2, 60/1) = 50 GB/s: 20 us
  sequence.model = &model;
  sequence.spec = &spec;
  model.StartFlow(spec, &sequence, 0);
  engine.Run();
  EXPECT_EQ(engine.now(), SimTime::Zero() + Micros(20) * 1000);
  EXPECT_EQ(solver.calls, 0);
  EXPECT_EQ(model.stats().lone_flows_solved, 1000);
  // A second flow on l1 makes a component of two: one solver call.
  model.StartFlow(spec, nullptr);
  model.StartFlow(std::vector<LinkId>{l1}, MB(1), nullptr);
  engine.Run();
  EXPECT_GE(solver.calls, 1);
}

TEST(FlowModel, ASolveThatChangesNoRateReschedulesNothing) {
  // A and B, capped at 10 GB/s, share a 100 GB/s link; C (capped too)
  // joins at 1 ms: the component of three is solved, but only C's rate is
  // new, so A and B keep their completion events (at 100 ms).
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(100), Duration::Zero());
  FlowModel model(&engine, &network);
  Completions done(&engine);
  const std::vector<LinkId> links = {link};
  FlowSpec spec;
  spec.links = links;
  spec.size = GB(1);
  spec.rate_cap_bytes_per_s = 10'000'000'000;
  model.StartFlow(spec, &done, 1);
  model.StartFlow(spec, &done, 2);
  engine.RunUntil(Millis(1));
  const FlowModelStats before = model.stats();
  model.StartFlow(spec, &done, 3);
  model.SolveNow();
  EXPECT_EQ(model.stats().flows_solved - before.flows_solved, 3);
  EXPECT_EQ(model.stats().rate_changes - before.rate_changes, 1) << "only C";
  engine.Run();
  EXPECT_EQ(done.time.at(1), Millis(100));
  EXPECT_EQ(done.time.at(2), Millis(100));
  EXPECT_EQ(done.time.at(3), Millis(101));
}

// Starts pseudo-random flows on a small network and records completions;
// checks, at every completion, that the lazily re-solved rates equal a
// solve of every active flow at once. With `coflows`, flows carry random
// weights and some a rate cap.
class RandomTraffic : public FlowObserver {
 public:
  RandomTraffic(Engine* engine, FlowModel* model, const Network* network, uint32_t seed,
                bool coflows = false)
      : engine_(engine), model_(model), network_(network), random_(seed), coflows_(coflows) {}

  void StartSome(int count) {
    for (int i = 0; i < count && started_ < 400; ++i) {
      // Links 3g, 3g+1, 3g+2 form group g; a route stays in one group, so
      // the network splits into several components.
      const uint32_t groups = static_cast<uint32_t>(network_->num_links() / 3);
      const uint32_t group = random_() % groups;
      Active entry;
      for (uint32_t l = 3 * group; l < 3 * group + 3; ++l) {
        if (random_() % 2 == 0) entry.route.push_back(LinkId(l));
      }
      if (entry.route.empty()) entry.route.push_back(LinkId(3 * group + random_() % 3));
      const Bytes size(static_cast<int64_t>(1 + random_() % 1000) * 1'000'000 + random_() % 997);
      FlowSpec spec;
      spec.links = entry.route;
      spec.size = size;
      if (coflows_) {
        for (size_t l = 0; l < entry.route.size(); ++l) {
          entry.weights.push_back(1 + static_cast<uint32_t>(random_() % 3));
        }
        spec.weights = entry.weights;
        if (random_() % 3 == 0) {
          entry.cap = static_cast<int64_t>(1 + random_() % 40) * 1'000'000'000;
        }
        spec.rate_cap_bytes_per_s = entry.cap;
      }
      entry.id = model_->StartFlow(spec, this, started_);
      active_[entry.id.index()] = entry;
      ++started_;
    }
  }

  void OnFlowCompleted(FlowId flow, uint64_t tag) override {
    trace.emplace_back(tag, engine_->now().picos());
    active_.erase(flow.index());
    active_at_completions += static_cast<int64_t>(active_.size());
    StartSome(static_cast<int>(random_() % 3));
    model_->SolveNow();
    CheckAgainstGlobalSolve();
  }

  void CheckAgainstGlobalSolve() {
    SharingProblem problem;
    for (uint32_t l = 0; l < network_->num_links(); ++l) {
      problem.AddConstraint(network_->link(LinkId(l)).capacity_bytes_per_s);
    }
    for (const auto& [index, entry] : active_) {
      problem.AddVariable(entry.cap > 0 ? entry.cap : SharingProblem::kUnbounded);
      for (size_t i = 0; i < entry.route.size(); ++i) {
        problem.AddUse(entry.route[i].value(), entry.weights.empty() ? 1 : entry.weights[i]);
      }
    }
    std::vector<int64_t> rates(problem.num_variables());
    solver_.Solve(problem, rates);
    size_t v = 0;
    for (const auto& [index, entry] : active_) {
      ASSERT_EQ(model_->RateBytesPerSecond(entry.id), rates[v++])
          << "flow slot " << index << " at " << engine_->now().picos() << " ps";
      ++checks;
    }
  }

  std::vector<std::pair<uint64_t, int64_t>> trace;
  int64_t checks = 0;
  int64_t active_at_completions = 0;  // what global solves would have cost

 private:
  struct Active {
    FlowId id;
    std::vector<LinkId> route;
    std::vector<uint32_t> weights;  // empty: all 1
    int64_t cap = 0;
  };
  Engine* engine_;
  FlowModel* model_;
  const Network* network_;
  std::mt19937 random_;
  bool coflows_;
  MaxMinSolver solver_;
  uint64_t started_ = 0;
  std::map<uint32_t, Active> active_;
};

Network SmallNetwork() {
  Network network;
  for (int i = 0; i < 12; ++i) {
    network.AddLink(GBps(25 * (1 + i % 4)), Duration::Zero());
  }
  return network;
}

TEST(FlowModel, LazyComponentSolvesEqualAGlobalSolveAtEveryCompletion) {
  Engine engine;
  const Network network = SmallNetwork();
  FlowModel model(&engine, &network);
  RandomTraffic traffic(&engine, &model, &network, 11);
  traffic.StartSome(40);
  engine.Run();
  EXPECT_EQ(traffic.trace.size(), 400u);
  EXPECT_GT(traffic.checks, 1000);
  // Routes stay in one of four link groups: the lazy solves touch about a
  // quarter of the flows a global solve at each completion would.
  EXPECT_LT(model.stats().flows_solved, traffic.active_at_completions / 2)
      << "solves were not limited to the changed components";
}

TEST(FlowModel, LazySolvesOfWeightedCappedCoflowsEqualAGlobalSolve) {
  Engine engine;
  const Network network = SmallNetwork();
  FlowModel model(&engine, &network);
  RandomTraffic traffic(&engine, &model, &network, 23, /*coflows=*/true);
  traffic.StartSome(40);
  engine.Run();
  EXPECT_EQ(traffic.trace.size(), 400u);
  EXPECT_GT(traffic.checks, 1000);
  EXPECT_GT(model.stats().lone_flows_solved, 0) << "the fast path was exercised";
  EXPECT_LT(model.stats().lone_flows_solved, model.stats().flows_solved);
}

std::vector<std::pair<uint64_t, int64_t>> RandomRun(uint32_t seed) {
  Engine engine;
  const Network network = SmallNetwork();
  FlowModel model(&engine, &network);
  RandomTraffic traffic(&engine, &model, &network, seed);
  traffic.StartSome(40);
  engine.Run();
  return traffic.trace;
}

TEST(FlowModel, TwoRunsOfTheSameInputsGiveTheSameCompletions) {
  const auto first = RandomRun(5);
  EXPECT_EQ(first, RandomRun(5));
  EXPECT_NE(first, RandomRun(6)) << "the completions depend on the input";
}

TEST(FlowModel, TakesAnotherSolverThroughTheInterface) {
  // With the bottleneck-share rule f1 of the classic example gets
  // min(10/2, 12/3) = 4 GB/s instead of max-min's 14/3.
  Engine engine;
  Network network;
  const LinkId l0 = network.AddLink(GBps(10), Duration::Zero());
  const LinkId l1 = network.AddLink(GBps(8), Duration::Zero());
  const LinkId l2 = network.AddLink(GBps(12), Duration::Zero());
  BottleneckShareSolver solver;
  FlowModel model(&engine, &network, &solver);
  model.StartFlow(Route({l0, l1, l2}), GB(1), nullptr);
  const FlowId f1 = model.StartFlow(Route({l0, l2}), GB(1), nullptr);
  model.StartFlow(Route({l1}), GB(1), nullptr);
  model.StartFlow(Route({l1}), GB(1), nullptr);
  model.StartFlow(Route({l2}), GB(1), nullptr);
  model.SolveNow();
  EXPECT_EQ(model.Rate(f1), GBps(4));
}

TEST(FlowModel, ZeroBytesOrAnEmptyRouteCompleteAfterTheLatencyAlone) {
  Engine engine;
  Network network;
  const LinkId link = network.AddLink(GBps(1), Micros(3));
  FlowModel model(&engine, &network);
  Completions done(&engine);
  model.StartFlow(Route({link}), Bytes::Zero(), &done, 1);
  model.StartFlow({}, GB(1), &done, 2);
  engine.Run();
  EXPECT_EQ(done.time.at(1), Micros(3));
  EXPECT_EQ(done.time.at(2), SimTime::Zero());
}

// Restarts a flow on the same route whenever one completes: a closed loop
// whose steady state must not allocate.
class ClosedLoop : public FlowObserver {
 public:
  ClosedLoop(FlowModel* model, std::vector<std::vector<LinkId>> routes)
      : model_(model), routes_(std::move(routes)) {}
  void Start() {
    for (uint64_t i = 0; i < routes_.size(); ++i) {
      model_->StartFlow(routes_[i], Bytes(1000000 + 1000 * static_cast<int64_t>(i)), this, i);
    }
  }
  void OnFlowCompleted(FlowId, uint64_t tag) override {
    ++completed;
    model_->StartFlow(routes_[tag], Bytes(1000000 + 1000 * static_cast<int64_t>(tag)), this, tag);
  }
  int64_t completed = 0;

 private:
  FlowModel* model_;
  std::vector<std::vector<LinkId>> routes_;
};

TEST(FlowModel, AllocatesNothingInTheSteadyState) {
  Engine engine;
  const Network network = SmallNetwork();
  FlowModel model(&engine, &network);
  std::vector<std::vector<LinkId>> routes;
  for (uint32_t i = 0; i < 30; ++i) {
    routes.push_back({LinkId(i % 12), LinkId((i * 5 + 1) % 12)});
    if (routes.back()[0] == routes.back()[1]) routes.back().pop_back();
  }
  ClosedLoop loop(&model, routes);
  loop.Start();
  engine.RunUntil(Millis(5));  // warm up
  const int64_t completed = loop.completed;
  const int64_t before = testing::AllocationCount();
  engine.RunUntil(Millis(50));
  const int64_t allocations = testing::AllocationCount() - before;
  EXPECT_EQ(allocations, 0);
  EXPECT_GT(loop.completed - completed, 1000);
}

}  // namespace
}  // namespace orrery::sim
