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
    : engine_(engine), network_(network), solver_(solver != nullptr ? solver : &default_solver_) {
  ORRERY_CHECK(engine_ != nullptr && network_ != nullptr) << "flow model without engine or network";
}

FlowModel::~FlowModel() {
  engine_->Cancel(solve_event_);
  for (Flow& flow : flows_) engine_->Cancel(flow.event);
}

FlowId FlowModel::StartFlow(std::span<const LinkId> route, Bytes size, FlowObserver* observer,
                            uint64_t tag) {
  ORRERY_CHECK(size >= Bytes::Zero()) << "flow of " << size.count() << " bytes";
  GrowLinks();
  Duration latency = Duration::Zero();
  for (size_t i = 0; i < route.size(); ++i) {
    latency += network_->link(route[i]).latency;
    for (size_t j = 0; j < i; ++j) {
      ORRERY_CHECK(route[j] != route[i]) << "route crosses link " << route[i].value() << " twice";
    }
  }
  const uint32_t slot = AllocateFlow();
  Flow& flow = flows_[slot];
  flow.phase = Phase::kLatency;
  flow.route.clear();
  for (LinkId link : route) flow.route.push_back(link.value());
  flow.link_slot.assign(route.size(), kNone);
  flow.remaining_picobytes = static_cast<__int128>(size.count()) * kPicobytesPerByte;
  flow.rate_bytes_per_s = 0;
  flow.updated_ps = engine_->now().picos();
  flow.observer = observer;
  flow.tag = tag;
  ++active_flows_;
  ++stats_.flows_started;
  const FlowId id(slot, flow.generation);
  const uint64_t payload = Payload(slot, flow.generation);

  if (route.empty() || size == Bytes::Zero()) {
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
    link.flows.push_back(slot);
    MarkDirty(flow.route[i]);
  }
}

void FlowModel::LeaveLinks(uint32_t slot) {
  Flow& flow = flows_[slot];
  for (size_t i = 0; i < flow.route.size(); ++i) {
    const uint32_t link_index = flow.route[i];
    LinkState& link = links_[link_index];
    const uint32_t position = flow.link_slot[i];
    const uint32_t moved = link.flows.back();
    link.flows[position] = moved;
    link.flows.pop_back();
    if (moved != slot) {
      Flow& other = flows_[moved];
      for (size_t j = 0; j < other.route.size(); ++j) {
        if (other.route[j] == link_index) {
          other.link_slot[j] = position;
          break;
        }
      }
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

void FlowModel::RunSolve() {
  ++stats_.solves;
  if (++epoch_ == 0) {  // wrapped: forget every mark
    for (LinkState& link : links_) link.visit_epoch = 0;
    for (Flow& flow : flows_) flow.visit_epoch = 0;
    epoch_ = 1;
  }
  // The connected components of the dirty links, breadth first; the link
  // list doubles as the queue.
  component_links_.clear();
  component_flows_.clear();
  for (uint32_t link : dirty_links_) {
    links_[link].dirty = false;
    if (links_[link].visit_epoch == epoch_) continue;
    links_[link].visit_epoch = epoch_;
    component_links_.push_back(link);
  }
  dirty_links_.clear();
  for (size_t i = 0; i < component_links_.size(); ++i) {
    const uint32_t link = component_links_[i];
    for (uint32_t slot : links_[link].flows) {
      Flow& flow = flows_[slot];
      if (flow.visit_epoch == epoch_) continue;
      flow.visit_epoch = epoch_;
      component_flows_.push_back(slot);
      for (uint32_t next : flow.route) {
        if (links_[next].visit_epoch == epoch_) continue;
        links_[next].visit_epoch = epoch_;
        component_links_.push_back(next);
      }
    }
  }
  if (component_flows_.empty()) return;

  std::sort(component_links_.begin(), component_links_.end());
  std::sort(component_flows_.begin(), component_flows_.end());
  problem_.Clear();
  for (uint32_t link : component_links_) {
    links_[link].constraint =
        problem_.AddConstraint(network_->link(LinkId(link)).capacity_bytes_per_s);
  }
  for (uint32_t slot : component_flows_) {
    problem_.AddVariable();
    for (uint32_t link : flows_[slot].route) problem_.AddUse(links_[link].constraint);
  }
  rates_.resize(component_flows_.size());
  solver_->Solve(problem_, rates_);

  const int64_t solved = static_cast<int64_t>(component_flows_.size());
  stats_.flows_solved += solved;
  stats_.largest_component = std::max(stats_.largest_component, solved);
  for (size_t i = 0; i < component_flows_.size(); ++i) {
    const uint32_t slot = component_flows_[i];
    Flow& flow = flows_[slot];
    if (rates_[i] == flow.rate_bytes_per_s) continue;
    Advance(flow);
    flow.rate_bytes_per_s = rates_[i];
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
  if (links_.size() < network_->num_links()) links_.resize(network_->num_links());
}

}  // namespace orrery::sim
