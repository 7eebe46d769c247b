// Pipeline schedules: GPipe, 1F1B and Megatron-LM's interleaved 1F1B,
// written out by hand for small cases, checked for completeness, for
// freedom from deadlock across stages and against the memory model's
// micro-batches in flight.
#include "workload/pipeline_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "costmodel/memory.h"
#include "workload/plan.h"

namespace orrery::sim {
using workload::PipelinePass;
using workload::StageSchedule;
using workload::CheckStageSchedule;
using workload::ForwardsBeforeFirstBackward;
namespace {

using workload::PipelineSchedule;

PipelinePass F(int micro_batch, int chunk = 0) { return {false, micro_batch, chunk}; }
PipelinePass B(int micro_batch, int chunk = 0) { return {true, micro_batch, chunk}; }

TEST(StageSchedule, GpipeRunsAllForwardsThenAllBackwards) {
  EXPECT_EQ(StageSchedule(PipelineSchedule::kGpipe, 4, 1, 3, 1),
            (std::vector<PipelinePass>{F(0), F(1), F(2), B(0), B(1), B(2)}));
}

TEST(StageSchedule, OneFOneBWarmsUpWithOneForwardPerLaterStage) {
  // p = 4, stage 1: warm-up p - s - 1 = 2 forwards, steady pairs, cool-down 2.
  EXPECT_EQ(
      StageSchedule(PipelineSchedule::kOneFOneB, 4, 1, 5, 1),
      (std::vector<PipelinePass>{F(0), F(1), F(2), B(0), F(3), B(1), F(4), B(2), B(3), B(4)}));
  EXPECT_EQ(StageSchedule(PipelineSchedule::kOneFOneB, 4, 3, 2, 1),
            (std::vector<PipelinePass>{F(0), B(0), F(1), B(1)}));
  // Fewer micro-batches than the warm-up: all forwards first.
  EXPECT_EQ(StageSchedule(PipelineSchedule::kOneFOneB, 8, 0, 2, 1),
            (std::vector<PipelinePass>{F(0), F(1), B(0), B(1)}));
}

TEST(StageSchedule, InterleavedFollowsMegatronChunkAndMicroBatchOrder) {
  // p = 2, vpp = 2, m = 4 (written out from schedules.py by hand).
  // Stage 0: warm-up (2-0-1)·2 + (2-1)·2 = 4 forwards; forwards run in
  // groups of p = 2 micro-batches per chunk; backwards start at the last
  // chunk.
  // clang-format off
  EXPECT_EQ(StageSchedule(PipelineSchedule::kInterleaved, 2, 0, 4, 2),
            (std::vector<PipelinePass>{F(0, 0), F(1, 0), F(0, 1), F(1, 1),  // warm-up
                                       F(2, 0), B(0, 1), F(3, 0), B(1, 1),  // steady
                                       F(2, 1), B(0, 0), F(3, 1), B(1, 0),
                                       B(2, 1), B(3, 1), B(2, 0), B(3, 0)}));  // cool-down
  // clang-format on
  // Stage 1: warm-up (vpp-1)·p = 2.
  EXPECT_EQ(StageSchedule(PipelineSchedule::kInterleaved, 2, 1, 4, 2),
            (std::vector<PipelinePass>{F(0, 0), F(1, 0), F(0, 1), B(0, 1), F(1, 1), B(1, 1),
                                       F(2, 0), B(0, 0), F(3, 0), B(1, 0), F(2, 1), B(2, 1),
                                       F(3, 1), B(3, 1), B(2, 0), B(3, 0)}));
}

TEST(StageSchedule, InterleavedWithAsManyMicroBatchesAsStagesRunsAllForwardsFirst) {
  // Megatron-LM: "Run all forward passes and then all backward passes if
  // number of microbatches is just the number of pipeline stages."
  const std::vector<PipelinePass> expected = {F(0, 0), F(1, 0), F(0, 1), F(1, 1),
                                              B(0, 1), B(1, 1), B(0, 0), B(1, 0)};
  EXPECT_EQ(StageSchedule(PipelineSchedule::kInterleaved, 2, 0, 2, 2), expected);
  EXPECT_EQ(StageSchedule(PipelineSchedule::kInterleaved, 2, 1, 2, 2), expected);
  EXPECT_EQ(ForwardsBeforeFirstBackward(PipelineSchedule::kInterleaved, 2, 1, 2, 2), 4);
}

TEST(CheckStageSchedule, RejectsInterleavingWhenMicroBatchesAreNotAMultipleOfStages) {
  EXPECT_TRUE(CheckStageSchedule(PipelineSchedule::kInterleaved, 4, 8, 2).ok());
  const Status s = CheckStageSchedule(PipelineSchedule::kInterleaved, 4, 6, 2);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("multiple of pp"), std::string::npos) << s.message();
  EXPECT_FALSE(CheckStageSchedule(PipelineSchedule::kOneFOneB, 4, 8, 2).ok());
  EXPECT_FALSE(CheckStageSchedule(PipelineSchedule::kGpipe, 4, 0, 1).ok());
  EXPECT_TRUE(CheckStageSchedule(PipelineSchedule::kOneFOneB, 4, 3, 1).ok());
}

struct Case {
  PipelineSchedule schedule;
  int p, m, vpp;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int p : {1, 2, 3, 4, 8}) {
    for (int m : {1, 2, 3, 5, 8, 16}) {
      cases.push_back({PipelineSchedule::kGpipe, p, m, 1});
      cases.push_back({PipelineSchedule::kOneFOneB, p, m, 1});
    }
    for (int vpp : {1, 2, 3, 4}) {
      for (int k : {1, 2, 3, 5}) cases.push_back({PipelineSchedule::kInterleaved, p, k * p, vpp});
    }
  }
  return cases;
}

TEST(StageSchedule, EveryChunkOfEveryMicroBatchRunsForwardOnceThenBackwardOnce) {
  for (const Case& c : Cases()) {
    for (int s = 0; s < c.p; ++s) {
      const std::vector<PipelinePass> order = StageSchedule(c.schedule, c.p, s, c.m, c.vpp);
      ASSERT_EQ(order.size(), 2u * static_cast<size_t>(c.m * c.vpp));
      std::set<std::pair<int, int>> forwarded, backwarded;
      for (const PipelinePass& pass : order) {
        ASSERT_GE(pass.micro_batch, 0);
        ASSERT_LT(pass.micro_batch, c.m);
        ASSERT_GE(pass.chunk, 0);
        ASSERT_LT(pass.chunk, c.vpp);
        const std::pair<int, int> key{pass.micro_batch, pass.chunk};
        if (pass.backward) {
          EXPECT_TRUE(forwarded.contains(key)) << "backward before forward";
          EXPECT_TRUE(backwarded.insert(key).second) << "backward twice";
        } else {
          EXPECT_TRUE(forwarded.insert(key).second) << "forward twice";
        }
      }
      EXPECT_EQ(backwarded.size(), static_cast<size_t>(c.m * c.vpp));
    }
  }
}

TEST(StageSchedule, MicroBatchesInFlightPeakAtTheFirstBackwardAndMatchTheMemoryModel) {
  for (const Case& c : Cases()) {
    for (int s = 0; s < c.p; ++s) {
      const std::vector<PipelinePass> order = StageSchedule(c.schedule, c.p, s, c.m, c.vpp);
      int in_flight = 0, peak = 0, before_first_backward = 0;
      bool seen_backward = false;
      for (const PipelinePass& pass : order) {
        in_flight += pass.backward ? -1 : 1;
        peak = std::max(peak, in_flight);
        seen_backward = seen_backward || pass.backward;
        if (!seen_backward) ++before_first_backward;
      }
      EXPECT_EQ(peak, before_first_backward);
      EXPECT_EQ(before_first_backward, ForwardsBeforeFirstBackward(c.schedule, c.p, s, c.m, c.vpp));
      // Megatron's m = p interleaved case runs every forward first, which
      // costmodel::InFlightMicroBatches does not model (it assumes the
      // general warm-up); it holds everywhere else.
      if (c.schedule == PipelineSchedule::kInterleaved && c.m == c.p && c.p > 1) continue;
      EXPECT_EQ(before_first_backward,
                costmodel::InFlightMicroBatches(c.schedule, c.p, s, c.m, c.vpp))
          << workload::PipelineScheduleName(c.schedule) << " p " << c.p << " s " << s << " m "
          << c.m << " vpp " << c.vpp;
    }
  }
}

// Runs every stage's schedule against the pipeline's data dependencies
// (forward of virtual stage v after that of v − 1; backward of v after that
// of v + 1) and returns whether every pass ran: no deadlock.
bool RunsToCompletion(const Case& c) {
  const int virtual_stages = c.p * c.vpp;
  std::vector<std::vector<PipelinePass>> orders;
  for (int s = 0; s < c.p; ++s) orders.push_back(StageSchedule(c.schedule, c.p, s, c.m, c.vpp));
  std::vector<size_t> next(static_cast<size_t>(c.p), 0);
  // done[backward][v][micro-batch]
  std::vector<std::vector<std::vector<bool>>> done(
      2, std::vector<std::vector<bool>>(static_cast<size_t>(virtual_stages),
                                        std::vector<bool>(static_cast<size_t>(c.m), false)));
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < c.p; ++s) {
      size_t& i = next[static_cast<size_t>(s)];
      if (i == orders[static_cast<size_t>(s)].size()) continue;
      const PipelinePass& pass = orders[static_cast<size_t>(s)][i];
      const int v = pass.chunk * c.p + s;
      const auto mb = static_cast<size_t>(pass.micro_batch);
      const bool ready = pass.backward
                             ? (v == virtual_stages - 1 || done[1][static_cast<size_t>(v + 1)][mb])
                             : (v == 0 || done[0][static_cast<size_t>(v - 1)][mb]);
      if (!ready) continue;
      done[pass.backward ? 1 : 0][static_cast<size_t>(v)][mb] = true;
      ++i;
      progress = true;
    }
  }
  for (int s = 0; s < c.p; ++s) {
    if (next[static_cast<size_t>(s)] != orders[static_cast<size_t>(s)].size()) return false;
  }
  return true;
}

TEST(StageSchedule, EveryScheduleRunsWithoutDeadlockAcrossStages) {
  for (const Case& c : Cases()) {
    EXPECT_TRUE(RunsToCompletion(c)) << workload::PipelineScheduleName(c.schedule) << " p " << c.p
                                     << " m " << c.m << " vpp " << c.vpp;
  }
}

}  // namespace
}  // namespace orrery::sim
