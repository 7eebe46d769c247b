#include "sim/engine.h"

#include "core/check.h"

namespace orrery::sim {

EventId Engine::ScheduleAt(SimTime time, EventHandler* handler, uint64_t payload) {
  ORRERY_CHECK(handler != nullptr) << "event without a handler";
  ORRERY_CHECK(time >= now_) << "event scheduled in the past: at " << time.picos()
                             << " ps, now " << now_.picos() << " ps";
  const uint32_t slot = AllocateSlot();
  Slot& s = slots_[slot];
  s.handler = handler;
  s.payload = payload;
  heap_.push_back(HeapEntry{time.picos(), next_sequence_++, slot});
  s.heap_index = static_cast<uint32_t>(heap_.size() - 1);
  SiftUp(s.heap_index);
  return EventId(slot, s.generation);
}

EventId Engine::ScheduleAfter(Duration delay, EventHandler* handler, uint64_t payload) {
  ORRERY_CHECK(delay >= Duration::Zero()) << "negative delay " << delay.picos() << " ps";
  return ScheduleAt(now_ + delay, handler, payload);
}

bool Engine::Cancel(EventId id) {
  const uint32_t slot = PendingSlot(id);
  if (slot == kNone) return false;
  RemoveAt(slots_[slot].heap_index);
  FreeSlot(slot);
  return true;
}

bool Engine::Reschedule(EventId id, SimTime time) {
  const uint32_t slot = PendingSlot(id);
  if (slot == kNone) return false;
  ORRERY_CHECK(time >= now_) << "event rescheduled into the past: at " << time.picos()
                             << " ps, now " << now_.picos() << " ps";
  const uint32_t index = slots_[slot].heap_index;
  HeapEntry entry = heap_[index];
  entry.time_ps = time.picos();
  entry.sequence = next_sequence_++;
  Place(index, entry);
  SiftUp(index);
  SiftDown(slots_[slot].heap_index);
  return true;
}

bool Engine::IsPending(EventId id) const { return PendingSlot(id) != kNone; }

std::optional<SimTime> Engine::TimeOf(EventId id) const {
  const uint32_t slot = PendingSlot(id);
  if (slot == kNone) return std::nullopt;
  return SimTime::FromPicos(heap_[slots_[slot].heap_index].time_ps);
}

bool Engine::Step() {
  if (heap_.empty()) return false;
  const HeapEntry top = heap_[0];
  RemoveAt(0);
  Slot& s = slots_[top.slot];
  EventHandler* handler = s.handler;
  const uint64_t payload = s.payload;
  const EventId id(top.slot, s.generation);
  FreeSlot(top.slot);
  now_ = SimTime::FromPicos(top.time_ps);
  ++events_fired_;
  handler->OnEvent(id, payload);
  return true;
}

int64_t Engine::Run() {
  stop_requested_ = false;
  int64_t fired = 0;
  while (!stop_requested_ && Step()) ++fired;
  return fired;
}

int64_t Engine::RunUntil(SimTime limit) {
  stop_requested_ = false;
  int64_t fired = 0;
  while (!stop_requested_ && !heap_.empty() && heap_[0].time_ps <= limit.picos()) {
    Step();
    ++fired;
  }
  if (!stop_requested_ && limit > now_) now_ = limit;
  return fired;
}

void Engine::Reserve(size_t events) {
  heap_.reserve(events);
  if (slots_.size() >= events) return;
  slots_.reserve(events);
  // Thread the new slots onto the free list in index order.
  while (slots_.size() < events) {
    slots_.push_back(Slot{});
    const uint32_t slot = static_cast<uint32_t>(slots_.size() - 1);
    slots_[slot].next_free = free_head_;
    free_head_ = slot;
  }
}

uint32_t Engine::PendingSlot(EventId id) const {
  if (!id.valid() || id.slot_ >= slots_.size()) return kNone;
  const Slot& s = slots_[id.slot_];
  if (s.generation != id.generation_ || s.heap_index == kNone) return kNone;
  return id.slot_;
}

uint32_t Engine::AllocateSlot() {
  if (free_head_ != kNone) {
    const uint32_t slot = free_head_;
    free_head_ = slots_[slot].next_free;
    slots_[slot].next_free = kNone;
    return slot;
  }
  ORRERY_CHECK(slots_.size() < kNone) << "more than 2^32-1 pending events";
  slots_.push_back(Slot{});
  return static_cast<uint32_t>(slots_.size() - 1);
}

void Engine::FreeSlot(uint32_t slot) {
  Slot& s = slots_[slot];
  s.handler = nullptr;
  s.heap_index = kNone;
  if (++s.generation == 0) s.generation = 1;  // 0 marks "no event"
  s.next_free = free_head_;
  free_head_ = slot;
}

void Engine::Place(uint32_t index, const HeapEntry& entry) {
  heap_[index] = entry;
  slots_[entry.slot].heap_index = index;
}

void Engine::SiftUp(uint32_t index) {
  const HeapEntry entry = heap_[index];
  while (index > 0) {
    const uint32_t parent = (index - 1) / 2;
    if (!Before(entry, heap_[parent])) break;
    Place(index, heap_[parent]);
    index = parent;
  }
  Place(index, entry);
}

void Engine::SiftDown(uint32_t index) {
  const HeapEntry entry = heap_[index];
  const uint32_t size = static_cast<uint32_t>(heap_.size());
  while (true) {
    uint32_t child = 2 * index + 1;
    if (child >= size) break;
    if (child + 1 < size && Before(heap_[child + 1], heap_[child])) ++child;
    if (!Before(heap_[child], entry)) break;
    Place(index, heap_[child]);
    index = child;
  }
  Place(index, entry);
}

void Engine::RemoveAt(uint32_t index) {
  const uint32_t last = static_cast<uint32_t>(heap_.size() - 1);
  if (index == last) {
    heap_.pop_back();
    return;
  }
  const uint32_t moved = heap_[last].slot;
  Place(index, heap_[last]);
  heap_.pop_back();
  SiftUp(index);
  SiftDown(slots_[moved].heap_index);
}

}  // namespace orrery::sim
