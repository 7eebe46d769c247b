#include "sim/engine.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/units.h"
#include "tests/sim/counting_allocator.h"

namespace orrery::sim {
namespace {

// Records (time in ps, payload) of every event it handles.
class Recorder : public EventHandler {
 public:
  explicit Recorder(Engine* engine) : engine_(engine) {}
  void OnEvent(EventId, uint64_t payload) override {
    trace.emplace_back(engine_->now().picos(), payload);
  }
  std::vector<std::pair<int64_t, uint64_t>> trace;

 private:
  Engine* engine_;
};

TEST(Engine, FiresEventsInTimeOrder) {
  Engine engine;
  Recorder recorder(&engine);
  engine.ScheduleAt(Micros(3), &recorder, 3);
  engine.ScheduleAt(Micros(1), &recorder, 1);
  engine.ScheduleAt(Micros(2), &recorder, 2);
  EXPECT_EQ(engine.Run(), 3);
  ASSERT_EQ(recorder.trace.size(), 3u);
  EXPECT_EQ(recorder.trace[0], std::make_pair(Micros(1).picos(), uint64_t{1}));
  EXPECT_EQ(recorder.trace[1], std::make_pair(Micros(2).picos(), uint64_t{2}));
  EXPECT_EQ(recorder.trace[2], std::make_pair(Micros(3).picos(), uint64_t{3}));
  EXPECT_EQ(engine.now(), Micros(3));
  EXPECT_EQ(engine.events_fired(), 3);
}

TEST(Engine, BreaksTiesByTheOrderEventsWereScheduled) {
  Engine engine;
  Recorder recorder(&engine);
  for (uint64_t i = 0; i < 100; ++i) engine.ScheduleAt(Nanos(5), &recorder, i);
  engine.ScheduleAt(Nanos(4), &recorder, 1000);
  engine.Run();
  ASSERT_EQ(recorder.trace.size(), 101u);
  EXPECT_EQ(recorder.trace[0].second, 1000u);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(recorder.trace[i + 1].second, i);
}

TEST(Engine, CancelledEventsNeverFire) {
  Engine engine;
  Recorder recorder(&engine);
  const EventId a = engine.ScheduleAt(Nanos(1), &recorder, 1);
  const EventId b = engine.ScheduleAt(Nanos(2), &recorder, 2);
  const EventId c = engine.ScheduleAt(Nanos(3), &recorder, 3);
  EXPECT_TRUE(engine.Cancel(b));
  EXPECT_FALSE(engine.Cancel(b)) << "a second cancel is a no-op";
  EXPECT_FALSE(engine.IsPending(b));
  EXPECT_TRUE(engine.IsPending(a));
  EXPECT_EQ(engine.pending(), 2u);
  engine.Run();
  ASSERT_EQ(recorder.trace.size(), 2u);
  EXPECT_EQ(recorder.trace[0].second, 1u);
  EXPECT_EQ(recorder.trace[1].second, 3u);
  EXPECT_FALSE(engine.Cancel(c)) << "a fired event cannot be cancelled";
  EXPECT_FALSE(engine.Cancel(EventId())) << "the null id names no event";
}

TEST(Engine, AStaleIdDoesNotTouchTheEventThatReusesItsSlot) {
  Engine engine;
  Recorder recorder(&engine);
  const EventId old_id = engine.ScheduleAt(Nanos(1), &recorder, 1);
  ASSERT_TRUE(engine.Cancel(old_id));
  const EventId new_id = engine.ScheduleAt(Nanos(2), &recorder, 2);  // reuses the slot
  EXPECT_FALSE(engine.Cancel(old_id));
  EXPECT_FALSE(engine.Reschedule(old_id, Nanos(9)));
  EXPECT_TRUE(engine.IsPending(new_id));
  EXPECT_EQ(engine.TimeOf(new_id), Nanos(2));
}

TEST(Engine, RescheduleMovesAnEventEarlierOrLater) {
  Engine engine;
  Recorder recorder(&engine);
  const EventId a = engine.ScheduleAt(Nanos(10), &recorder, 1);
  const EventId b = engine.ScheduleAt(Nanos(20), &recorder, 2);
  engine.ScheduleAt(Nanos(15), &recorder, 3);
  EXPECT_TRUE(engine.Reschedule(a, Nanos(30)));
  EXPECT_TRUE(engine.Reschedule(b, Nanos(5)));
  EXPECT_EQ(engine.TimeOf(a), Nanos(30));
  engine.Run();
  ASSERT_EQ(recorder.trace.size(), 3u);
  EXPECT_EQ(recorder.trace[0], std::make_pair(Nanos(5).picos(), uint64_t{2}));
  EXPECT_EQ(recorder.trace[1], std::make_pair(Nanos(15).picos(), uint64_t{3}));
  EXPECT_EQ(recorder.trace[2], std::make_pair(Nanos(30).picos(), uint64_t{1}));
}

TEST(Engine, ARescheduledEventFiresAfterThoseAlreadyAtItsNewTime) {
  Engine engine;
  Recorder recorder(&engine);
  const EventId first = engine.ScheduleAt(Nanos(7), &recorder, 1);
  engine.ScheduleAt(Nanos(7), &recorder, 2);
  ASSERT_TRUE(engine.Reschedule(first, Nanos(7)));
  engine.Run();
  ASSERT_EQ(recorder.trace.size(), 2u);
  EXPECT_EQ(recorder.trace[0].second, 2u);
  EXPECT_EQ(recorder.trace[1].second, 1u);
}

TEST(Engine, RunUntilStopsAtTheLimitAndAdvancesTime) {
  Engine engine;
  Recorder recorder(&engine);
  engine.ScheduleAt(Micros(1), &recorder, 1);
  engine.ScheduleAt(Micros(2), &recorder, 2);
  engine.ScheduleAt(Micros(3), &recorder, 3);
  EXPECT_EQ(engine.RunUntil(Micros(2)), 2) << "events at the limit fire";
  EXPECT_EQ(engine.now(), Micros(2));
  EXPECT_EQ(engine.RunUntil(Micros(2) + Picos(500)), 0);
  EXPECT_EQ(engine.now(), Micros(2) + Picos(500));
  EXPECT_EQ(engine.pending(), 1u);
}

// Stops the engine on its second event.
class Stopper : public EventHandler {
 public:
  explicit Stopper(Engine* engine) : engine_(engine) {}
  void OnEvent(EventId, uint64_t) override {
    if (++seen == 2) engine_->Stop();
  }
  int seen = 0;

 private:
  Engine* engine_;
};

TEST(Engine, StopEndsTheRunAfterTheCurrentEvent) {
  Engine engine;
  Stopper stopper(&engine);
  for (int i = 1; i <= 4; ++i) engine.ScheduleAt(Nanos(i), &stopper);
  EXPECT_EQ(engine.Run(), 2);
  EXPECT_EQ(engine.now(), Nanos(2));
  EXPECT_EQ(engine.Run(), 2);
  EXPECT_EQ(stopper.seen, 4);
}

TEST(EngineDeathTest, SchedulingInThePastIsABug) {
  Engine engine;
  Recorder recorder(&engine);
  engine.ScheduleAt(Micros(1), &recorder);
  engine.Run();
  EXPECT_DEATH(engine.ScheduleAt(Nanos(1), &recorder), "in the past");
}

// A single server with deterministic service: job k arrives at k·a and is
// served for s in arrival order. Each arrival and departure is an event.
class SingleServerQueue : public EventHandler {
 public:
  SingleServerQueue(Engine* engine, Duration service) : engine_(engine), service_(service) {}
  void OnEvent(EventId, uint64_t payload) override {
    if (payload == kArrival) {
      ++waiting_;
    } else {
      busy_ = false;
      last_departure = engine_->now();
      ++departed;
    }
    if (!busy_ && waiting_ > 0) {
      --waiting_;
      busy_ = true;
      engine_->ScheduleAfter(service_, this, kDeparture);
    }
  }
  static constexpr uint64_t kArrival = 0;
  static constexpr uint64_t kDeparture = 1;
  SimTime last_departure;
  int departed = 0;

 private:
  Engine* engine_;
  Duration service_;
  int waiting_ = 0;
  bool busy_ = false;
};

TEST(Engine, ADeterministicQueueMatchesItsClosedForm) {
  // n jobs every a, service s: if s >= a the server never idles after the
  // first arrival, so the last departure is n·s; if s < a it is (n-1)·a + s.
  const int n = 1000;
  const Duration a = Nanos(10);
  for (const Duration s : {Nanos(13), Nanos(7)}) {
    Engine engine;
    SingleServerQueue queue(&engine, s);
    for (int k = 0; k < n; ++k) engine.ScheduleAt(a * k, &queue, SingleServerQueue::kArrival);
    engine.Run();
    EXPECT_EQ(queue.departed, n);
    const SimTime expected = s >= a ? s * n : a * (n - 1) + s;
    EXPECT_EQ(queue.last_departure, expected) << "service " << s.picos() << " ps";
    EXPECT_EQ(engine.events_fired(), 2 * n);
  }
}

// Schedules `fanout` events at pseudo-random delays for every event it
// handles, up to a budget, and cancels or reschedules some: a stress of
// every engine operation from a seeded generator.
class RandomWorkload : public EventHandler {
 public:
  RandomWorkload(Engine* engine, uint32_t seed, int budget)
      : engine_(engine), random_(seed), budget_(budget) {}
  void OnEvent(EventId, uint64_t payload) override {
    trace.emplace_back(engine_->now().picos(), payload);
    for (int i = 0; i < 2 && budget_ > 0; ++i, --budget_) {
      const Duration delay = Picos(static_cast<int64_t>(random_() % 50));  // many ties
      ids_.push_back(engine_->ScheduleAfter(delay, this, next_payload_++));
    }
    if (!ids_.empty() && random_() % 4 == 0) {
      engine_->Cancel(ids_[random_() % ids_.size()]);
    }
    if (!ids_.empty() && random_() % 4 == 0) {
      engine_->Reschedule(ids_[random_() % ids_.size()],
                          engine_->now() + Picos(static_cast<int64_t>(random_() % 50)));
    }
  }
  std::vector<std::pair<int64_t, uint64_t>> trace;

 private:
  Engine* engine_;
  std::mt19937 random_;
  int budget_;
  uint64_t next_payload_ = 1;
  std::vector<EventId> ids_;
};

std::vector<std::pair<int64_t, uint64_t>> RunRandomWorkload(uint32_t seed) {
  Engine engine;
  RandomWorkload workload(&engine, seed, 20000);
  engine.ScheduleAt(SimTime::Zero(), &workload, 0);
  engine.Run();
  return workload.trace;
}

TEST(Engine, TwoRunsOfTheSameInputsGiveTheSameTrace) {
  const auto first = RunRandomWorkload(42);
  const auto second = RunRandomWorkload(42);
  EXPECT_GT(first.size(), 10000u);
  EXPECT_EQ(first, second);
  for (size_t i = 1; i < first.size(); ++i) {
    ASSERT_LE(first[i - 1].first, first[i].first) << "time went backwards at event " << i;
  }
  EXPECT_NE(first, RunRandomWorkload(43)) << "the trace depends on the input";
}

// Reschedules itself every `period`: a steady state of one pending event
// plus `extra` timers cycling.
class Ticker : public EventHandler {
 public:
  Ticker(Engine* engine, Duration period) : engine_(engine), period_(period) {}
  void OnEvent(EventId, uint64_t payload) override {
    ++ticks;
    engine_->ScheduleAfter(period_ + Picos(static_cast<int64_t>(payload)), this, payload);
  }
  int64_t ticks = 0;

 private:
  Engine* engine_;
  Duration period_;
};

TEST(Engine, AllocatesNothingInTheSteadyState) {
  Engine engine;
  Ticker ticker(&engine, Nanos(1));
  for (uint64_t i = 0; i < 64; ++i) engine.ScheduleAt(SimTime::Zero(), &ticker, i);
  // A cancel-and-reschedule pattern on a second set of events as well.
  Recorder recorder(&engine);
  EventId moving = engine.ScheduleAt(Micros(1), &recorder, 0);
  engine.RunUntil(Nanos(100));  // warm up: pool and heap at their size
  const size_t slots = engine.slot_capacity();
  const size_t heap = engine.heap_capacity();
  const int64_t before = testing::AllocationCount();
  for (int i = 0; i < 1000; ++i) {
    engine.Reschedule(moving, engine.now() + Micros(1));
    engine.Cancel(moving);
    moving = engine.ScheduleAt(engine.now() + Micros(1), &recorder, 0);
    engine.RunUntil(engine.now() + Nanos(10));
  }
  const int64_t allocations = testing::AllocationCount() - before;
  EXPECT_EQ(allocations, 0);
  EXPECT_GT(ticker.ticks, 64 * 9000);
  EXPECT_EQ(engine.slot_capacity(), slots);
  EXPECT_EQ(engine.heap_capacity(), heap);
}

TEST(Engine, TheCountingAllocatorSeesAllocations) {
  // Guards the test above against a counter that never counts.
  // (An explicit call: a new-expression may be elided by the compiler.)
  const int64_t before = testing::AllocationCount();
  void* block = ::operator new(64);
  const int64_t after = testing::AllocationCount();
  ::operator delete(block);
  EXPECT_EQ(after - before, 1);
}

TEST(Engine, ReservePreGrowsThePool) {
  Engine engine;
  engine.Reserve(1000);
  const size_t slots = engine.slot_capacity();
  Recorder recorder(&engine);
  recorder.trace.reserve(1000);
  const int64_t before = testing::AllocationCount();
  for (int i = 0; i < 1000; ++i) engine.ScheduleAt(Nanos(1000 - i), &recorder, 0);
  engine.Run();
  EXPECT_EQ(testing::AllocationCount() - before, 0);
  EXPECT_EQ(engine.slot_capacity(), slots);
}

}  // namespace
}  // namespace orrery::sim
