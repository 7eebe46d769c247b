// Speed of the event engine and of the flow model (docs/simulator.md).
//
//   BM_EngineEvents/N         events per second with N events pending, each
//                             rescheduling itself at a pseudo-random delay
//   BM_MaxMinSolve/F          one max-min solve of F flows on a leaf-spine
//                             network (every flow crosses the spine tier)
//   BM_FlowChurnShared/F      F concurrent flows over the spine tier (one
//                             connected component): each completion starts
//                             a new flow, so every event re-solves ~F flows
//   BM_FlowChurnIslands/F     F concurrent flows inside 8-link islands (as
//                             traffic inside NVLink domains): each event
//                             re-solves only its island
//   BM_LoneCoflows/K          coflows of a K-host ring (the union of its K
//                             edges' routes), started and completed one after
//                             another: every solve is the one-flow fast path;
//                             time per coflow (start, solve, end, solve)
//   BM_CoflowChurnShared/F    F concurrent coflows, each an 8-host ring across
//                             the spine with weights, on shared links: each
//                             completion starts a new one and re-solves the
//                             component with the full weighted max-min solver
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "core/units.h"
#include "sim/engine.h"
#include "sim/flow_model.h"
#include "sim/network.h"
#include "sim/sharing_solver.h"

namespace orrery::sim {
namespace {

// A 64-bit linear congruential generator (Knuth's MMIX constants): fixed,
// seeded, identical on every platform.
class Lcg {
 public:
  explicit Lcg(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return state_ >> 33;
  }

 private:
  uint64_t state_;
};

class SelfRescheduling : public EventHandler {
 public:
  explicit SelfRescheduling(Engine* engine) : engine_(engine) {}
  void OnEvent(EventId, uint64_t payload) override {
    engine_->ScheduleAfter(Picos(static_cast<int64_t>(1 + random_.Next() % 1000000)), this,
                           payload);
  }

 private:
  Engine* engine_;
  Lcg random_{1};
};

void BM_EngineEvents(benchmark::State& state) {
  Engine engine;
  SelfRescheduling handler(&engine);
  const int64_t pending = state.range(0);
  Lcg random(2);
  for (int64_t i = 0; i < pending; ++i) {
    engine.ScheduleAt(Picos(static_cast<int64_t>(random.Next() % 1000000)), &handler, 0);
  }
  for (auto _ : state) engine.Step();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EngineEvents)->Arg(1000)->Arg(100000)->Arg(1000000);

// A two-tier leaf-spine network: `hosts` host links up and down (100 GB/s),
// hosts/8 leaves each with 4 uplinks and 4 downlinks to the spine
// (2:1 oversubscribed: 8 × 100 GB/s under 4 × 100 GB/s).
struct LeafSpine {
  explicit LeafSpine(int hosts) : hosts(hosts) {
    for (int h = 0; h < hosts; ++h) host_up.push_back(network.AddLink(GBps(100), Nanos(500)));
    for (int h = 0; h < hosts; ++h) host_down.push_back(network.AddLink(GBps(100), Nanos(500)));
    for (int l = 0; l < hosts / 8 * 4; ++l) {
      leaf_up.push_back(network.AddLink(GBps(100), Micros(1)));
      leaf_down.push_back(network.AddLink(GBps(100), Micros(1)));
    }
  }
  // A route from host a to host b through the spine (or within the leaf).
  std::vector<LinkId> Route(int a, int b, int lane) const {
    if (a / 8 == b / 8) return {host_up[a], host_down[b]};
    return {host_up[a], leaf_up[a / 8 * 4 + lane % 4], leaf_down[b / 8 * 4 + lane % 4],
            host_down[b]};
  }
  int hosts;
  Network network;
  std::vector<LinkId> host_up, host_down, leaf_up, leaf_down;
};

void BM_MaxMinSolve(benchmark::State& state) {
  const int flows = static_cast<int>(state.range(0));
  LeafSpine fabric(512);
  Lcg random(3);
  SharingProblem problem;
  for (uint32_t l = 0; l < fabric.network.num_links(); ++l) {
    problem.AddConstraint(fabric.network.link(LinkId(l)).capacity_bytes_per_s);
  }
  for (int f = 0; f < flows; ++f) {
    const int a = static_cast<int>(random.Next() % 512);
    const int b = static_cast<int>((a + 8 + random.Next() % 496) % 512);
    problem.AddVariable();
    for (LinkId l : fabric.Route(a, b, f)) problem.AddUse(l.value());
  }
  MaxMinSolver solver;
  std::vector<int64_t> rates(problem.num_variables());
  for (auto _ : state) {
    solver.Solve(problem, rates);
    benchmark::DoNotOptimize(rates.data());
  }
  state.SetItemsProcessed(state.iterations() * flows);
  state.counters["flows"] = flows;
}
BENCHMARK(BM_MaxMinSolve)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

// Keeps `flows` flows in flight: each completion starts a replacement.
class Churn : public FlowObserver {
 public:
  Churn(FlowModel* model, const LeafSpine* fabric, bool islands)
      : model_(model), fabric_(fabric), islands_(islands) {}
  void StartOne(uint64_t tag) {
    const int a = static_cast<int>(random_.Next() % fabric_->hosts);
    int b;
    if (islands_) {
      b = a / 8 * 8 + static_cast<int>((a % 8 + 1 + random_.Next() % 7) % 8);
    } else {
      b = (a + 8 + static_cast<int>(random_.Next() % (fabric_->hosts - 8))) % fabric_->hosts;
    }
    const std::vector<LinkId> route = fabric_->Route(a, b, static_cast<int>(tag));
    model_->StartFlow(route, Bytes(static_cast<int64_t>(1 + random_.Next() % 64) << 20), this,
                      tag);
  }
  void OnFlowCompleted(FlowId, uint64_t tag) override {
    ++completed;
    StartOne(tag);
  }
  int64_t completed = 0;

 private:
  FlowModel* model_;
  const LeafSpine* fabric_;
  bool islands_;
  Lcg random_{4};
};

void FlowChurn(benchmark::State& state, bool islands) {
  const int flows = static_cast<int>(state.range(0));
  const LeafSpine fabric(islands ? flows / 32 * 8 : 512);  // 4 flows per host
  Engine engine;
  FlowModel model(&engine, &fabric.network);
  Churn churn(&model, &fabric, islands);
  for (int f = 0; f < flows; ++f) churn.StartOne(static_cast<uint64_t>(f));
  engine.RunUntil(Micros(100));  // past the start-up latency
  const int64_t completed = churn.completed;
  const FlowModelStats before = model.stats();
  for (auto _ : state) engine.Step();
  const int64_t solves = model.stats().solves - before.solves;
  state.SetItemsProcessed(state.iterations());
  state.counters["completions"] = static_cast<double>(churn.completed - completed);
  state.counters["flows_per_solve"] =
      solves > 0 ? static_cast<double>(model.stats().flows_solved - before.flows_solved) / solves
                 : 0.0;
  state.counters["completions_per_s"] = benchmark::Counter(
      static_cast<double>(churn.completed - completed), benchmark::Counter::kIsRate);
}

void BM_FlowChurnShared(benchmark::State& state) { FlowChurn(state, false); }
void BM_FlowChurnIslands(benchmark::State& state) { FlowChurn(state, true); }
BENCHMARK(BM_FlowChurnShared)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FlowChurnIslands)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

// A coflow's links and weights: the union of the routes of a ring of hosts
// ring[0] → ring[1] → … → ring[0], each link weighted by the edges crossing it.
struct RingFootprint {
  RingFootprint(const LeafSpine& fabric, const std::vector<int>& ring, int lane) {
    std::map<uint32_t, uint32_t> weight;
    for (size_t i = 0; i < ring.size(); ++i) {
      for (LinkId l : fabric.Route(ring[i], ring[(i + 1) % ring.size()], lane)) {
        ++weight[l.value()];
      }
    }
    for (const auto& [link, w] : weight) {
      links.push_back(LinkId(link));
      weights.push_back(w);
    }
  }
  FlowSpec Spec(Bytes size) const {
    FlowSpec spec;
    spec.links = links;
    spec.weights = weights;
    spec.size = size;
    spec.latency = Micros(10);
    spec.rate_cap_bytes_per_s = 40'000'000'000;
    return spec;
  }
  std::vector<LinkId> links;
  std::vector<uint32_t> weights;
};

void BM_LoneCoflows(benchmark::State& state) {
  const int hosts = static_cast<int>(state.range(0));
  const LeafSpine fabric(512);
  std::vector<int> ring;
  for (int h = 0; h < hosts; ++h) ring.push_back(h * (512 / hosts));
  const RingFootprint footprint(fabric, ring, 0);
  const FlowSpec spec = footprint.Spec(MiB(64));
  Engine engine;
  FlowModel model(&engine, &fabric.network);
  for (auto _ : state) {
    model.StartFlow(spec, nullptr);
    engine.Run();
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["links"] = static_cast<double>(footprint.links.size());
  state.counters["lone_share"] =
      model.stats().flows_solved > 0
          ? static_cast<double>(model.stats().lone_flows_solved) / model.stats().flows_solved
          : 0.0;
}
BENCHMARK(BM_LoneCoflows)->Arg(8)->Arg(64)->Arg(512)->Unit(benchmark::kMicrosecond);

// Keeps `coflows` 8-host ring coflows in flight over the spine.
class CoflowChurn : public FlowObserver {
 public:
  CoflowChurn(FlowModel* model, const LeafSpine* fabric) : model_(model), fabric_(fabric) {
    // A fixed pool of footprints to draw from.
    for (int f = 0; f < 256; ++f) {
      std::vector<int> ring;
      for (int i = 0; i < 8; ++i) ring.push_back(static_cast<int>(random_.Next() % 512));
      std::sort(ring.begin(), ring.end());
      ring.erase(std::unique(ring.begin(), ring.end()), ring.end());
      pool_.emplace_back(*fabric_, ring, f);
    }
  }
  void StartOne(uint64_t tag) {
    const RingFootprint& footprint = pool_[random_.Next() % pool_.size()];
    model_->StartFlow(footprint.Spec(Bytes(static_cast<int64_t>(1 + random_.Next() % 64) << 20)),
                      this, tag);
  }
  void OnFlowCompleted(FlowId, uint64_t tag) override {
    ++completed;
    StartOne(tag);
  }
  int64_t completed = 0;

 private:
  FlowModel* model_;
  const LeafSpine* fabric_;
  std::vector<RingFootprint> pool_;
  Lcg random_{5};
};

void BM_CoflowChurnShared(benchmark::State& state) {
  const int coflows = static_cast<int>(state.range(0));
  const LeafSpine fabric(512);
  Engine engine;
  FlowModel model(&engine, &fabric.network);
  CoflowChurn churn(&model, &fabric);
  for (int f = 0; f < coflows; ++f) churn.StartOne(static_cast<uint64_t>(f));
  engine.RunUntil(Micros(100));  // past the start-up latency
  const int64_t completed = churn.completed;
  const FlowModelStats before = model.stats();
  for (auto _ : state) engine.Step();
  const int64_t solves = model.stats().solves - before.solves;
  state.SetItemsProcessed(state.iterations());
  state.counters["completions"] = static_cast<double>(churn.completed - completed);
  state.counters["flows_per_solve"] =
      solves > 0 ? static_cast<double>(model.stats().flows_solved - before.flows_solved) / solves
                 : 0.0;
}
BENCHMARK(BM_CoflowChurnShared)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace orrery::sim
