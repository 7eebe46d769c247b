// Engine: the discrete-event kernel of the simulator.
//
// An event is a (time, handler, payload) triple: at its simulated time the
// engine calls `handler->OnEvent(id, payload)`. Simulated time is a SimTime
// (core/units.h Duration: an exact count of picoseconds since the start of
// the run), so every comparison of times is an exact integer comparison.
//
// Order. Events fire in increasing (time, sequence) order, where the
// sequence number is a 64-bit counter taken when an event is scheduled or
// rescheduled. Events at the same time therefore fire in the order they
// were (re)scheduled, and a run with the same inputs fires the same events
// in the same order on every machine: the engine reads no clock, uses no
// floating point and iterates no unordered container.
//
// Storage. Pending events live in a pool of slots recycled through a free
// list; an indexed binary min-heap of (time, sequence, slot) entries orders
// them, and each slot records its position in the heap so an event can be
// cancelled or moved in O(log n). Handlers are a one-method interface and a
// 64-bit payload, not closures, so scheduling an event allocates nothing once
// the pool and the heap have grown to the largest number of events pending
// at once (Reserve() can pre-grow them). tests/sim/engine_test.cc checks
// that the steady state performs no allocation with a counting allocator.
//
// Identity. An EventId names a slot and the slot's generation; the
// generation changes when the event fires or is cancelled, so a stale id is
// recognised (Cancel and Reschedule return false) rather than touching a
// later event that reuses the slot. Generations are 32 bits: an id held
// across 2^32 reuses of one slot could alias; nothing in Orrery does that.
//
// In SimGrid's vocabulary (simgrid/simgrid, src/kernel) this is the
// "future event set" of the maestro: models (the flow model, compute) put
// their next state change here and the engine advances time to the earliest.
//
// Thread-safety: not thread-safe; one engine per simulation thread.
#ifndef ORRERY_SIM_ENGINE_H_
#define ORRERY_SIM_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/units.h"

namespace orrery::sim {

// Time since the start of a simulation, exact to the picosecond.
using SimTime = Duration;

// Names one scheduled event. A default-constructed EventId names none.
class EventId {
 public:
  constexpr EventId() = default;

  // True if this id was returned by Schedule*(); it may since have fired or
  // been cancelled (Engine::IsPending tells).
  constexpr bool valid() const { return generation_ != 0; }

  friend constexpr bool operator==(EventId, EventId) = default;

 private:
  friend class Engine;
  constexpr EventId(uint32_t slot, uint32_t generation)
      : slot_(slot), generation_(generation) {}
  uint32_t slot_ = 0;
  uint32_t generation_ = 0;
};

// What an event does when it fires. Implemented by the models driven by the
// engine; the engine does not own handlers.
class EventHandler {
 public:
  virtual ~EventHandler() = default;
  // Called once, at the event's time (Engine::now() equals it). `id` no
  // longer names a pending event when this runs. The handler may schedule,
  // cancel and reschedule other events.
  virtual void OnEvent(EventId id, uint64_t payload) = 0;
};

class Engine {
 public:
  Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // The current simulated time: the time of the event firing or last fired
  // (or the limit of the last RunUntil), zero before the first.
  SimTime now() const { return now_; }

  // Schedules `handler->OnEvent(id, payload)` at `time`.
  // REQUIRES: handler != nullptr; time >= now().
  EventId ScheduleAt(SimTime time, EventHandler* handler, uint64_t payload = 0);
  // Same, at now() + delay. REQUIRES: delay >= 0.
  EventId ScheduleAfter(Duration delay, EventHandler* handler, uint64_t payload = 0);

  // Removes a pending event. Returns false (and does nothing) if `id` is not
  // pending: never scheduled, already fired or already cancelled.
  bool Cancel(EventId id);

  // Moves a pending event to `time`. It takes a new sequence number, so
  // among events at `time` it fires after those already scheduled there, as
  // if cancelled and scheduled anew; its id stays valid. Returns false (and
  // does nothing) if `id` is not pending. REQUIRES: time >= now().
  bool Reschedule(EventId id, SimTime time);

  // True if `id` names an event that has neither fired nor been cancelled.
  bool IsPending(EventId id) const;
  // The time of a pending event; nullopt if `id` is not pending.
  std::optional<SimTime> TimeOf(EventId id) const;

  // Fires the earliest pending event. Returns false if there was none.
  bool Step();
  // Fires events until none is pending or Stop() is called from a handler.
  // Returns the number of events fired.
  int64_t Run();
  // Fires every event with time <= limit (unless Stop() is called), then
  // advances now() to `limit` if it is later. Returns the number fired.
  int64_t RunUntil(SimTime limit);
  // Makes the Run / RunUntil in progress return after the current event.
  void Stop() { stop_requested_ = true; }

  // Number of events pending.
  size_t pending() const { return heap_.size(); }
  // Number of events fired since construction.
  int64_t events_fired() const { return events_fired_; }

  // Grows the slot pool and the heap to hold `events` pending events
  // without allocating.
  void Reserve(size_t events);
  // Capacity of the slot pool and of the heap (for tests of the no-
  // allocation property).
  size_t slot_capacity() const { return slots_.capacity(); }
  size_t heap_capacity() const { return heap_.capacity(); }

 private:
  static constexpr uint32_t kNone = 0xffffffffu;

  struct Slot {
    EventHandler* handler = nullptr;
    uint64_t payload = 0;
    uint32_t generation = 1;
    uint32_t heap_index = kNone;  // kNone when the slot is free
    uint32_t next_free = kNone;
  };
  struct HeapEntry {
    int64_t time_ps;
    uint64_t sequence;
    uint32_t slot;
  };
  static bool Before(const HeapEntry& a, const HeapEntry& b) {
    return a.time_ps < b.time_ps || (a.time_ps == b.time_ps && a.sequence < b.sequence);
  }

  // The slot of a pending event, or kNone.
  uint32_t PendingSlot(EventId id) const;
  uint32_t AllocateSlot();
  void FreeSlot(uint32_t slot);
  void Place(uint32_t index, const HeapEntry& entry);
  void SiftUp(uint32_t index);
  void SiftDown(uint32_t index);
  // Removes the heap entry at `index`, keeping the heap ordered.
  void RemoveAt(uint32_t index);

  SimTime now_ = SimTime::Zero();
  uint64_t next_sequence_ = 0;
  int64_t events_fired_ = 0;
  bool stop_requested_ = false;
  std::vector<Slot> slots_;
  uint32_t free_head_ = kNone;
  std::vector<HeapEntry> heap_;
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_ENGINE_H_
