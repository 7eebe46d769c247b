// FlowModel: transfers of bytes along routes of links, sharing each link's
// bandwidth with the other transfers on it, driven by the event engine.
//
// Vocabulary (SimGrid's kernel split, simgrid/simgrid src/kernel):
//   resource — a Link of the Network (capacity, latency);
//   action   — a flow: the consumption of the links of one route by one
//              transfer of `size` bytes, at a rate the sharing solver sets;
//   activity — what a rank waits on; here the FlowObserver told when its
//              flow completes (the task graph above builds activities).
//
// A flow's life. StartFlow at time t0 with links L (distinct), weights w_l
// (default 1), size S bytes and an optional rate cap b:
//   1. latency phase: the flow waits λ without consuming bandwidth; λ is
//      FlowSpec::latency when given, else Σ_{l∈L} latency_l, the per-hop
//      latencies of a route added once;
//   2. transfer phase, from t0 + λ: the flow progresses at a rate r(t) and
//      consumes w_l·r(t) of every link l of L; the SharingSolver (weighted,
//      bounded max-min fair by default, see sim/sharing_solver.h) sets r,
//      never above b, and r changes only when a flow enters or leaves the
//      transfer phase somewhere in its connected component;
//   3. completion at the first T with ∫_{t0+λ}^{T} r(t) dt = S; the observer
//      is called at T, after the flow has left its links.
// With constant rate r the completion is t0 + λ + S / r; alone on idle
// links r = min(b, min_l ⌊C_l / w_l⌋). A flow of zero bytes, or with no
// links, completes at t0 + λ without entering the sharing.
//
// Coflows. A plain transfer is a flow along its route with weights 1. A
// coflow (SimGrid's parallel task, ptask_L07: one action consuming several
// resources in fixed proportions) is one flow over the union of several
// edges' routes: a ring collective whose n edges move in lock-step
// progresses at one rate and loads each link by the number of its edges
// crossing it (sim/collective_flows.h builds them).
//
// Exact bookkeeping. Rates are integers in bytes per second (the solver
// rounds each fair level down; Network rounds capacities to the nearest
// B/s). A flow's remaining work W is kept as an integer in picobytes
// (10⁻¹² byte, 128 bits): Δ picoseconds at r B/s consume exactly r·Δ
// picobytes, so advancing a flow through any number of rate changes adds no
// error. The completion event is placed at now + ⌈W / r⌉ ps: the one
// rounding, up by less than one picosecond, is made once per rate change
// and never fed back into W (a re-solve before completion recomputes W
// exactly; at completion W is set to zero).
//
// Lazy re-solve. Max-min allocations decompose over connected components of
// the bipartite graph links ↔ flows in transfer, so a flow entering or
// leaving can change rates only in its component. Each start or end marks
// the links of its flow dirty and, once per instant, schedules a solve
// event at the current time; the solve gathers the components reachable
// from the dirty links (breadth first, one component at a time), solves
// only those flows, and advances and reschedules only the flows whose rate
// changed (a solve that leaves every rate as it was touches no event). Many
// flows starting at one instant (the phases of a collective) cost one
// solve. A component of one flow — a coflow alone on its links, the common
// case of a training iteration's millions of collectives — is timed without
// a SharingProblem: its rate is min(b, min_l ⌊C_l / w_l⌋), which every
// SharingSolver gives a lone variable. The solve event runs at the same
// simulated time as the starts, so no time passes at stale rates.
// Components are solved with their links sorted by LinkId and their flows
// by FlowId, and rates are applied in FlowId order, so rates and the order
// of rescheduled events depend only on the set of flows, never on the order
// of discovery.
//
// Steady state: flow slots, link and weight lists, per-link flow lists and
// the solver's scratch are reused, so starting and completing flows of no
// more links than those seen before allocates nothing (checked in
// tests/sim/flow_model_test.cc). Starting or ending a flow of k links costs
// O(k) besides the solve (no scan of other flows' link lists).
//
// Thread-safety: not thread-safe; shares the engine's thread.
#ifndef ORRERY_SIM_FLOW_MODEL_H_
#define ORRERY_SIM_FLOW_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/units.h"
#include "sim/engine.h"
#include "sim/network.h"
#include "sim/sharing_solver.h"

namespace orrery::sim {

// Names one flow of a FlowModel. A default-constructed FlowId names none.
class FlowId {
 public:
  constexpr FlowId() = default;
  constexpr bool valid() const { return generation_ != 0; }
  // Slot index, stable for the flow's life (for tables and traces).
  constexpr uint32_t index() const { return slot_; }
  friend constexpr bool operator==(FlowId, FlowId) = default;

 private:
  friend class FlowModel;
  constexpr FlowId(uint32_t slot, uint32_t generation) : slot_(slot), generation_(generation) {}
  uint32_t slot_ = 0;
  uint32_t generation_ = 0;
};

// What StartFlow(FlowSpec) starts. A plain transfer is `links` = its route,
// no weights, no cap, the route's latency. A coflow — every edge of a ring
// collective moving in lock-step, or the tp parallel sends of a pipeline
// transfer — is one flow whose `links` are the union of its edges' routes:
// at rate r it consumes weights[i]·r of links[i] (weight: how many of its
// edges cross the link) and it completes when `size` bytes have progressed
// (for a ring: the bytes each edge carries). A ring proceeds at the pace of
// its slowest edge, which is what one shared rate expresses.
struct FlowSpec {
  std::span<const LinkId> links;      // distinct
  std::span<const uint32_t> weights;  // empty: all 1; else links.size() entries >= 1
  Bytes size;                         // >= 0
  // The latency phase; nullopt: Σ latency of `links` (a route's hops).
  std::optional<Duration> latency;
  // The flow's rate never exceeds this (0: no cap). A collective is capped
  // at the rate the collective cost model predicts without contention, so
  // that alone on idle links it takes the analytic time (up to the cap's
  // rounding to whole bytes per second; sim/collective_flows.h).
  int64_t rate_cap_bytes_per_s = 0;
};

// Told when a flow completes. Not owned by the flow model.
class FlowObserver {
 public:
  virtual ~FlowObserver() = default;
  // Called at the completion time (the engine's now()), after the flow has
  // released its links; `flow` is no longer active. May start new flows.
  virtual void OnFlowCompleted(FlowId flow, uint64_t tag) = 0;
};

// Counters of the work the flow model did.
struct FlowModelStats {
  int64_t flows_started = 0;
  int64_t flows_completed = 0;
  int64_t solves = 0;                 // solve events run
  int64_t flows_solved = 0;           // Σ flows whose rate a solve computed
  int64_t lone_flows_solved = 0;      // of which alone in their component (no solver call)
  int64_t rate_changes = 0;           // flows advanced and rescheduled
  int64_t largest_component = 0;      // most flows in one solve
};

class FlowModel {
 public:
  // `engine` and `network` must outlive the model. `solver` may be null (a
  // MaxMinSolver owned by the model is used); if given it must outlive the
  // model. Links added to the network later are usable.
  FlowModel(Engine* engine, const Network* network, SharingSolver* solver = nullptr);
  // Cancels the model's pending events (flows then never complete).
  ~FlowModel();
  FlowModel(const FlowModel&) = delete;
  FlowModel& operator=(const FlowModel&) = delete;

  // Starts a transfer of `size` bytes along `route` at engine->now();
  // `observer` (may be null) is told `tag` when it completes. The same as
  // StartFlow(FlowSpec{route, {}, size}).
  // REQUIRES: size >= 0; the links of `route` exist and are distinct.
  FlowId StartFlow(std::span<const LinkId> route, Bytes size, FlowObserver* observer,
                   uint64_t tag = 0);
  // The general form: a coflow (one action on several links, SimGrid's
  // ptask) — see FlowSpec.
  // REQUIRES: spec.size >= 0; its links exist and are distinct; weights
  // empty or one >= 1 per link; latency, if given, >= 0; rate cap >= 0.
  FlowId StartFlow(const FlowSpec& spec, FlowObserver* observer, uint64_t tag = 0);

  // True from StartFlow until the completion callback.
  bool IsActive(FlowId flow) const;
  // The flow's rate as of the last solve; zero in the latency phase.
  // REQUIRES: IsActive(flow).
  Bandwidth Rate(FlowId flow) const;
  // Exact integer rate in bytes per second (as Rate). REQUIRES: IsActive.
  int64_t RateBytesPerSecond(FlowId flow) const;
  // Bytes still to transfer at engine->now(), rounded up. REQUIRES: IsActive.
  Bytes Remaining(FlowId flow) const;

  // Runs a pending solve now instead of waiting for its event (rates read
  // right after StartFlow then reflect it). No-op if none is pending.
  void SolveNow();

  size_t active_flows() const { return active_flows_; }
  const FlowModelStats& stats() const { return stats_; }

 private:
  static constexpr uint32_t kNone = 0xffffffffu;
  enum class Phase : uint8_t { kFree, kLatency, kTransfer };

  struct Flow {
    uint32_t generation = 1;
    Phase phase = Phase::kFree;
    std::vector<uint32_t> route;        // link indices
    std::vector<uint32_t> weights;      // parallel to route, >= 1
    std::vector<uint32_t> link_slot;    // position in each link's flow list
    int64_t bound_bytes_per_s = SharingProblem::kUnbounded;  // the rate cap
    __int128 remaining_picobytes = 0;
    int64_t rate_bytes_per_s = 0;
    int64_t updated_ps = 0;             // time remaining_picobytes refers to
    EventId event;                      // latency end or completion
    FlowObserver* observer = nullptr;
    uint64_t tag = 0;
    uint32_t next_free = kNone;
    uint32_t visit_epoch = 0;
    int64_t solved_rate = 0;            // the rate the solve under way computed
  };
  // A flow in transfer on a link, and which of its links this is.
  struct FlowOnLink {
    uint32_t slot;
    uint32_t route_index;               // flows_[slot].route[route_index] is the link
  };
  struct LinkState {
    std::vector<FlowOnLink> flows;      // flows in transfer on this link
    uint32_t visit_epoch = 0;
    uint32_t constraint = 0;            // index in the problem being solved, kNone: left out
    bool dirty = false;
    int64_t capacity_bytes_per_s = 0;   // the Network link's
    // Of the flows in transfer on the link: how many have no rate cap, and
    // Σ weight · cap over the others.
    uint32_t unbounded_flows = 0;
    __int128 bounded_load = 0;
  };

  // Engine callbacks, one per kind of event; the payload is a flow slot.
  class TransferStart final : public EventHandler {
   public:
    explicit TransferStart(FlowModel* model) : model_(model) {}
    void OnEvent(EventId id, uint64_t payload) override;
   private:
    FlowModel* model_;
  };
  class Completion final : public EventHandler {
   public:
    explicit Completion(FlowModel* model) : model_(model) {}
    void OnEvent(EventId id, uint64_t payload) override;
   private:
    FlowModel* model_;
  };
  class Solve final : public EventHandler {
   public:
    explicit Solve(FlowModel* model) : model_(model) {}
    void OnEvent(EventId id, uint64_t payload) override;
   private:
    FlowModel* model_;
  };

  // The slot of an active flow, or kNone.
  uint32_t ActiveSlot(FlowId flow) const;
  uint32_t AllocateFlow();
  void EnterTransfer(uint32_t slot);
  void LeaveLinks(uint32_t slot);
  void Complete(uint32_t slot);
  void MarkDirty(uint32_t link);
  // A fresh mark for visit_epoch (links and flows).
  uint32_t NextEpoch();
  void RunSolve();
  // min(cap, min_l ⌊C_l / w_l⌋): the rate of a flow alone on its links.
  int64_t LoneRate(const Flow& flow) const;
  // Brings remaining_picobytes to now at the current rate.
  void Advance(Flow& flow);
  void ScheduleCompletion(uint32_t slot);
  void GrowLinks();

  Engine* engine_;
  const Network* network_;
  MaxMinSolver default_solver_;
  SharingSolver* solver_;
  // A link of a component that only one flow crosses acts on that flow
  // alone, through its key C / w in the solver: of a flow's private links
  // only the tightest (least C / w, then least LinkId) can bind, the others
  // are left out of the problem. Exact for MaxMinSolver (the tightest
  // private link fires before the others, which then find
  // the flow frozen; the constraints kept keep their relative order) and
  // for BottleneckShareSolver (⌊C / w⌋ is monotone in C / w); a solver of
  // another kind is given every link.
  bool prune_private_links_;
  // A link on which every flow is capped and Σ w · cap <= C never binds:
  // under max-min it can fire only at the level where its flows' caps do,
  // freezing them at their caps, so the allocation is the same without it;
  // components are gathered through the other links only (IsBinding).
  // MaxMinSolver only (the bottleneck share of such a link can be below a
  // cap).
  bool prune_slack_links_;
  bool IsBinding(const LinkState& link) const {
    return !prune_slack_links_ || link.unbounded_flows > 0 ||
           link.bounded_load > link.capacity_bytes_per_s;
  }
  TransferStart transfer_start_{this};
  Completion completion_{this};
  Solve solve_{this};

  std::vector<Flow> flows_;
  uint32_t free_head_ = kNone;
  size_t active_flows_ = 0;
  std::vector<LinkState> links_;
  std::vector<uint32_t> dirty_links_;
  EventId solve_event_;

  // Scratch of RunSolve, kept to avoid allocating.
  uint32_t epoch_ = 0;
  std::vector<uint32_t> component_links_;
  std::vector<uint32_t> component_flows_;
  std::vector<uint32_t> lone_flows_;
  std::vector<uint32_t> constraint_links_;  // the links made constraints, by LinkId
  SharingProblem problem_;
  std::vector<int64_t> rates_;

  FlowModelStats stats_;
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_FLOW_MODEL_H_
