#include "sim/flow_model.h"

#include <algorithm>
#include <limits>

#include "core/check.h"

namespace orrery::sim {

namespace {

constexpr int64_t kPicobytesPerByte = 1'000'000'000'000;

uint64_t Payload(uint32_t slot, uint32_t generation) {
  return (static_cast<uint64_t>(generation) << 32) | slot;
}
uint32_t PayloadSlot(uint64_t payload) { return static_cast<uint32_t>(payload); }
uint32_t PayloadGeneration(uint64_t payload) { return static_cast<uint32_t>(payload >> 32); }

// Remaining picobytes of a flow at `now_ps`, not clamped.
__int128 RemainingAt(__int128 remaining, int64_t rate, int64_t updated_ps, int64_t now_ps) {
  return remaining - static_cast<__int128>(rate) * (now_ps - updated_ps);
}

}  // namespace

FlowModel::FlowModel(Engine* engine, const Network* network, SharingSolver* solver)
    : engine_(engine),
      network_(network),
      solver_(solver != nullptr ? solver : &default_solver_),
      prune_private_links_(dynamic_cast<MaxMinSolver*>(solver_) != nullptr ||
                           dynamic_cast<BottleneckShareSolver*>(solver_) != nullptr),
      prune_slack_links_(dynamic_cast<MaxMinSolver*>(solver_) != nullptr) {
  ORRERY_CHECK(engine_ != nullptr && network_ != nullptr) << "flow model without engine or network";
}

FlowModel::~FlowModel() {
  engine_->Cancel(solve_event_);
  for (Flow& flow : flows_) engine_->Cancel(flow.event);
}

FlowId FlowModel::StartFlow(std::span<const LinkId> route, Bytes size, FlowObserver* observer,
                            uint64_t tag) {
  FlowSpec spec;
  spec.links = route;
  spec.size = size;
  return StartFlow(spec, observer, tag);
}

FlowId FlowModel::StartFlow(const FlowSpec& spec, FlowObserver* observer, uint64_t tag) {
  ORRERY_CHECK(spec.size >= Bytes::Zero()) << "flow of " << spec.size.count() << " bytes";
  ORRERY_CHECK(spec.weights.empty() || spec.weights.size() == spec.links.size())
      << spec.weights.size() << " weights for " << spec.links.size() << " links";
  ORRERY_CHECK(spec.rate_cap_bytes_per_s >= 0) << "rate cap " << spec.rate_cap_bytes_per_s;
  ORRERY_CHECK(!spec.latency.has_value() || *spec.latency >= Duration::Zero())
      << "negative latency";
  GrowLinks();
  const uint32_t mark = NextEpoch();
  Duration latency = Duration::Zero();
  for (const LinkId link : spec.links) {
    ORRERY_CHECK(network_->Contains(link)) << "no link " << link.value();
    LinkState& state = links_[link.value()];
    ORRERY_CHECK(state.visit_epoch != mark) << "flow crosses link " << link.value() << " twice";
    state.visit_epoch = mark;
    if (!spec.latency.has_value()) latency += network_->link(link).latency;
  }
  if (spec.latency.has_value()) latency = *spec.latency;

  const uint32_t slot = AllocateFlow();
  Flow& flow = flows_[slot];
  flow.phase = Phase::kLatency;
  flow.route.clear();
  for (const LinkId link : spec.links) flow.route.push_back(link.value());
  if (spec.weights.empty()) {
    flow.weights.assign(spec.links.size(), 1);
  } else {
    flow.weights.assign(spec.weights.begin(), spec.weights.end());
    for (const uint32_t weight : flow.weights) ORRERY_CHECK(weight >= 1) << "weight " << weight;
  }
  flow.link_slot.assign(spec.links.size(), kNone);
  flow.bound_bytes_per_s =
      spec.rate_cap_bytes_per_s > 0 ? spec.rate_cap_bytes_per_s : SharingProblem::kUnbounded;
  flow.remaining_picobytes = static_cast<__int128>(spec.size.count()) * kPicobytesPerByte;
  flow.rate_bytes_per_s = 0;
  flow.updated_ps = engine_->now().picos();
  flow.observer = observer;
  flow.tag = tag;
  ++active_flows_;
  ++stats_.flows_started;
  const FlowId id(slot, flow.generation);
  const uint64_t payload = Payload(slot, flow.generation);

  if (spec.links.empty() || spec.size == Bytes::Zero()) {
    flow.event = engine_->ScheduleAfter(latency, &completion_, payload);
  } else if (latency > Duration::Zero()) {
    flow.event = engine_->ScheduleAfter(latency, &transfer_start_, payload);
  } else {
    EnterTransfer(slot);
  }
  return id;
}

bool FlowModel::IsActive(FlowId flow) const { return ActiveSlot(flow) != kNone; }

Bandwidth FlowModel::Rate(FlowId flow) const {
  return Bandwidth::FromBytesPerSecond(static_cast<double>(RateBytesPerSecond(flow)));
}

int64_t FlowModel::RateBytesPerSecond(FlowId flow) const {
  const uint32_t slot = ActiveSlot(flow);
  ORRERY_CHECK(slot != kNone) << "rate of an inactive flow";
  return flows_[slot].rate_bytes_per_s;
}

Bytes FlowModel::Remaining(FlowId flow) const {
  const uint32_t slot = ActiveSlot(flow);
  ORRERY_CHECK(slot != kNone) << "remaining bytes of an inactive flow";
  const Flow& f = flows_[slot];
  __int128 picobytes = f.remaining_picobytes;
  if (f.phase == Phase::kTransfer) {
    picobytes = RemainingAt(picobytes, f.rate_bytes_per_s, f.updated_ps, engine_->now().picos());
  }
  if (picobytes <= 0) return Bytes::Zero();
  return Bytes(static_cast<int64_t>((picobytes + kPicobytesPerByte - 1) / kPicobytesPerByte));
}

void FlowModel::SolveNow() {
  if (engine_->Cancel(solve_event_)) {
    solve_event_ = EventId();
    RunSolve();
  }
}

void FlowModel::TransferStart::OnEvent(EventId, uint64_t payload) {
  const uint32_t slot = PayloadSlot(payload);
  FlowModel::Flow& flow = model_->flows_[slot];
  ORRERY_CHECK(flow.generation == PayloadGeneration(payload) && flow.phase == Phase::kLatency);
  flow.event = EventId();
  model_->EnterTransfer(slot);
}

void FlowModel::Completion::OnEvent(EventId, uint64_t payload) {
  const uint32_t slot = PayloadSlot(payload);
  ORRERY_CHECK(model_->flows_[slot].generation == PayloadGeneration(payload) &&
               model_->flows_[slot].phase != Phase::kFree);
  model_->Complete(slot);
}

void FlowModel::Solve::OnEvent(EventId, uint64_t) {
  model_->solve_event_ = EventId();
  model_->RunSolve();
}

uint32_t FlowModel::ActiveSlot(FlowId flow) const {
  if (!flow.valid() || flow.slot_ >= flows_.size()) return kNone;
  const Flow& f = flows_[flow.slot_];
  if (f.generation != flow.generation_ || f.phase == Phase::kFree) return kNone;
  return flow.slot_;
}

uint32_t FlowModel::AllocateFlow() {
  if (free_head_ != kNone) {
    const uint32_t slot = free_head_;
    free_head_ = flows_[slot].next_free;
    flows_[slot].next_free = kNone;
    return slot;
  }
  ORRERY_CHECK(flows_.size() < kNone) << "more than 2^32-1 flows at once";
  flows_.emplace_back();
  return static_cast<uint32_t>(flows_.size() - 1);
}

void FlowModel::EnterTransfer(uint32_t slot) {
  Flow& flow = flows_[slot];
  flow.phase = Phase::kTransfer;
  flow.updated_ps = engine_->now().picos();
  flow.rate_bytes_per_s = 0;
  for (size_t i = 0; i < flow.route.size(); ++i) {
    LinkState& link = links_[flow.route[i]];
    flow.link_slot[i] = static_cast<uint32_t>(link.flows.size());
    link.flows.push_back(FlowOnLink{slot, static_cast<uint32_t>(i)});
    if (flow.bound_bytes_per_s == SharingProblem::kUnbounded) {
      ++link.unbounded_flows;
    } else {
      link.bounded_load += static_cast<__int128>(flow.weights[i]) * flow.bound_bytes_per_s;
    }
    MarkDirty(flow.route[i]);
  }
}

void FlowModel::LeaveLinks(uint32_t slot) {
  Flow& flow = flows_[slot];
  for (size_t i = 0; i < flow.route.size(); ++i) {
    const uint32_t link_index = flow.route[i];
    LinkState& link = links_[link_index];
    const uint32_t position = flow.link_slot[i];
    const FlowOnLink moved = link.flows.back();
    link.flows[position] = moved;
    link.flows.pop_back();
    if (moved.slot != slot) flows_[moved.slot].link_slot[moved.route_index] = position;
    if (flow.bound_bytes_per_s == SharingProblem::kUnbounded) {
      --link.unbounded_flows;
    } else {
      link.bounded_load -= static_cast<__int128>(flow.weights[i]) * flow.bound_bytes_per_s;
    }
    flow.link_slot[i] = kNone;
    MarkDirty(link_index);
  }
}

void FlowModel::Complete(uint32_t slot) {
  Flow& flow = flows_[slot];
  flow.event = EventId();
  if (flow.phase == Phase::kTransfer) {
    ORRERY_CHECK(RemainingAt(flow.remaining_picobytes, flow.rate_bytes_per_s, flow.updated_ps,
                             engine_->now().picos()) <= 0)
        << "flow completed with bytes left";
    LeaveLinks(slot);
  }
  FlowObserver* observer = flow.observer;
  const uint64_t tag = flow.tag;
  const FlowId id(slot, flow.generation);
  flow.phase = Phase::kFree;
  flow.remaining_picobytes = 0;
  flow.rate_bytes_per_s = 0;
  flow.observer = nullptr;
  if (++flow.generation == 0) flow.generation = 1;
  flow.next_free = free_head_;
  free_head_ = slot;
  --active_flows_;
  ++stats_.flows_completed;
  if (observer != nullptr) observer->OnFlowCompleted(id, tag);
}

void FlowModel::MarkDirty(uint32_t link) {
  LinkState& state = links_[link];
  if (state.dirty) return;
  state.dirty = true;
  dirty_links_.push_back(link);
  if (!engine_->IsPending(solve_event_)) {
    solve_event_ = engine_->ScheduleAfter(Duration::Zero(), &solve_, 0);
  }
}

uint32_t FlowModel::NextEpoch() {
  if (++epoch_ == 0) {  // wrapped: forget every mark
    for (LinkState& link : links_) link.visit_epoch = 0;
    for (Flow& flow : flows_) flow.visit_epoch = 0;
    epoch_ = 1;
  }
  return epoch_;
}

int64_t FlowModel::LoneRate(const Flow& flow) const {
  int64_t rate = flow.bound_bytes_per_s;
  for (size_t i = 0; i < flow.route.size(); ++i) {
    const int64_t capacity = links_[flow.route[i]].capacity_bytes_per_s;
    rate = std::min(rate, capacity / static_cast<int64_t>(flow.weights[i]));
  }
  return rate;
}

void FlowModel::RunSolve() {
  ++stats_.solves;
  const uint32_t epoch = NextEpoch();
  // The connected components of the flows on the dirty links, one at a
  // time, breadth first through the links that may bind (IsBinding); the
  // link list doubles as the queue. A component of one flow is timed on the
  // spot and set aside in lone_flows_.
  component_links_.clear();
  component_flows_.clear();
  lone_flows_.clear();
  const auto visit_flow = [&](uint32_t slot) {
    Flow& flow = flows_[slot];
    flow.visit_epoch = epoch;
    component_flows_.push_back(slot);
    for (const uint32_t next : flow.route) {
      LinkState& state = links_[next];
      if (state.visit_epoch == epoch || !IsBinding(state)) continue;
      state.visit_epoch = epoch;
      component_links_.push_back(next);
    }
  };
  for (const uint32_t dirty : dirty_links_) {
    links_[dirty].dirty = false;
    for (const FlowOnLink& seed : links_[dirty].flows) {
      if (flows_[seed.slot].visit_epoch == epoch) continue;
      const size_t links_begin = component_links_.size();
      const size_t flows_begin = component_flows_.size();
      visit_flow(seed.slot);
      for (size_t i = links_begin; i < component_links_.size(); ++i) {
        for (const FlowOnLink& entry : links_[component_links_[i]].flows) {
          if (flows_[entry.slot].visit_epoch != epoch) visit_flow(entry.slot);
        }
      }
      if (component_flows_.size() == flows_begin + 1) {
        const uint32_t slot = component_flows_.back();
        flows_[slot].solved_rate = LoneRate(flows_[slot]);
        lone_flows_.push_back(slot);
        component_flows_.pop_back();
        component_links_.resize(links_begin);
      }
    }
  }
  dirty_links_.clear();

  if (!component_flows_.empty()) {
    std::sort(component_flows_.begin(), component_flows_.end());
    // The constraints: every link of the components, or, when the solver
    // allows (see prune_private_links_), the links shared by two flows or
    // more and each flow's tightest private link.
    constraint_links_.clear();
    for (const uint32_t link : component_links_) {
      LinkState& state = links_[link];
      if (!prune_private_links_ || state.flows.size() > 1) {
        constraint_links_.push_back(link);
        state.constraint = 0;
      } else {
        state.constraint = kNone;
      }
    }
    if (prune_private_links_) {
      for (const uint32_t slot : component_flows_) {
        const Flow& flow = flows_[slot];
        uint32_t best = kNone;
        int64_t best_capacity = 0;
        uint32_t best_weight = 1;
        for (size_t i = 0; i < flow.route.size(); ++i) {
          const uint32_t link = flow.route[i];
          const LinkState& state = links_[link];
          if (state.visit_epoch != epoch || state.flows.size() != 1) continue;
          // C / w below the best's, exactly; ties to the lower LinkId.
          const __int128 lhs = static_cast<__int128>(state.capacity_bytes_per_s) * best_weight;
          const __int128 rhs = static_cast<__int128>(best_capacity) * flow.weights[i];
          if (best == kNone || lhs < rhs || (lhs == rhs && link < best)) {
            best = link;
            best_capacity = state.capacity_bytes_per_s;
            best_weight = flow.weights[i];
          }
        }
        if (best != kNone) {
          links_[best].constraint = 0;
          constraint_links_.push_back(best);
        }
      }
    }
    std::sort(constraint_links_.begin(), constraint_links_.end());
    problem_.Clear();
    for (const uint32_t link : constraint_links_) {
      links_[link].constraint = problem_.AddConstraint(links_[link].capacity_bytes_per_s);
    }
    for (const uint32_t slot : component_flows_) {
      const Flow& flow = flows_[slot];
      problem_.AddVariable(flow.bound_bytes_per_s);
      for (size_t i = 0; i < flow.route.size(); ++i) {
        const LinkState& state = links_[flow.route[i]];
        if (state.visit_epoch == epoch && state.constraint != kNone) {
          problem_.AddUse(state.constraint, flow.weights[i]);
        }
      }
    }
    rates_.resize(component_flows_.size());
    solver_->Solve(problem_, rates_);
    for (size_t i = 0; i < component_flows_.size(); ++i) {
      flows_[component_flows_[i]].solved_rate = rates_[i];
    }
  }
  const int64_t solved = static_cast<int64_t>(component_flows_.size());
  const int64_t lone = static_cast<int64_t>(lone_flows_.size());
  if (solved + lone == 0) return;
  stats_.flows_solved += solved + lone;
  stats_.lone_flows_solved += lone;
  stats_.largest_component = std::max(stats_.largest_component, solved > 0 ? solved : 1);

  // Apply in FlowId order, whatever the order of discovery.
  // (std::sort, unlike std::inplace_merge, allocates nothing.)
  if (lone > 0) {
    component_flows_.insert(component_flows_.end(), lone_flows_.begin(), lone_flows_.end());
    std::sort(component_flows_.begin(), component_flows_.end());
  }
  for (const uint32_t slot : component_flows_) {
    Flow& flow = flows_[slot];
    if (flow.solved_rate == flow.rate_bytes_per_s) continue;
    Advance(flow);
    flow.rate_bytes_per_s = flow.solved_rate;
    ++stats_.rate_changes;
    ScheduleCompletion(slot);
  }
}

void FlowModel::Advance(Flow& flow) {
  const int64_t now_ps = engine_->now().picos();
  flow.remaining_picobytes =
      RemainingAt(flow.remaining_picobytes, flow.rate_bytes_per_s, flow.updated_ps, now_ps);
  // A flow whose completion event is due now may have overshot by less
  // than one picosecond's worth of bytes (its time was rounded up).
  if (flow.remaining_picobytes < 0) flow.remaining_picobytes = 0;
  flow.updated_ps = now_ps;
}

void FlowModel::ScheduleCompletion(uint32_t slot) {
  Flow& flow = flows_[slot];
  const SimTime now = engine_->now();
  SimTime end;
  if (flow.remaining_picobytes == 0) {
    if (engine_->IsPending(flow.event)) return;  // already due now
    end = now;
  } else if (flow.rate_bytes_per_s == 0) {
    engine_->Cancel(flow.event);  // stalled until a later solve
    flow.event = EventId();
    return;
  } else {
    const __int128 rate = flow.rate_bytes_per_s;
    const __int128 picos = (flow.remaining_picobytes + rate - 1) / rate;
    const __int128 room = std::numeric_limits<int64_t>::max() - now.picos();
    // Beyond the range of SimTime the flow waits at the end of time; a
    // later rate change brings it back.
    end = picos > room ? SimTime::Max() : now + Duration::FromPicos(static_cast<int64_t>(picos));
  }
  if (!engine_->Reschedule(flow.event, end)) {
    flow.event = engine_->ScheduleAt(end, &completion_, Payload(slot, flow.generation));
  }
}

void FlowModel::GrowLinks() {
  const size_t old = links_.size();
  if (old >= network_->num_links()) return;
  links_.resize(network_->num_links());
  for (size_t l = old; l < links_.size(); ++l) {
    links_[l].capacity_bytes_per_s =
        network_->link(LinkId(static_cast<uint32_t>(l))).capacity_bytes_per_s;
  }
}

}  // namespace orrery::sim
