#include "workload/pipeline_schedule.h"

#include <algorithm>
#include <string>

#include "core/check.h"

namespace orrery::workload {


Status CheckStageSchedule(PipelineSchedule schedule, int p, int m, int vpp) {
  if (p < 1)
    return InvalidArgumentError("plan.pipeline.pp: expected >= 1, got " + std::to_string(p));
  if (m < 1) {
    return InvalidArgumentError("plan: expected at least one micro-batch, got " +
                                std::to_string(m));
  }
  if (vpp < 1) {
    return InvalidArgumentError("plan.pipeline.vpp: expected >= 1, got " + std::to_string(vpp));
  }
  if (schedule != PipelineSchedule::kInterleaved && vpp != 1) {
    return InvalidArgumentError("plan.pipeline.vpp: " + std::to_string(vpp) +
                                " model chunks need the interleaved schedule, not " +
                                std::string(PipelineScheduleName(schedule)));
  }
  if (schedule == PipelineSchedule::kInterleaved && m % p != 0) {
    // megatron/training/training.py and schedules.py: "number of
    // microbatches is not divisible by pipeline-model-parallel-size when
    // using interleaved schedule".
    return InvalidArgumentError("plan: the interleaved schedule needs the micro-batches (" +
                                std::to_string(m) + ") to be a multiple of pp (" +
                                std::to_string(p) + "), as Megatron-LM requires");
  }
  return Status::Ok();
}

namespace {

// Megatron-LM's warm-up forwards of the interleaved schedule at stage s.
int InterleavedWarmup(int p, int s, int m, int vpp) {
  const int total = m * vpp;
  if (m == p) return total;  // all forwards, then all backwards
  return std::min((p - s - 1) * 2 + (vpp - 1) * p, total);
}

PipelinePass InterleavedPass(bool backward, int k, int p, int vpp) {
  const int group = p * vpp;
  const int in_group = k % group;
  const int chunk = in_group / p;
  return {.backward = backward,
          .micro_batch = (k / group) * p + k % p,
          .chunk = backward ? vpp - 1 - chunk : chunk};
}

}  // namespace

std::vector<PipelinePass> StageSchedule(PipelineSchedule schedule, int p, int s, int m, int vpp) {
  ORRERY_CHECK(CheckStageSchedule(schedule, p, m, vpp).ok())
      << "schedule " << PipelineScheduleName(schedule) << " p " << p << " m " << m
      << " vpp " << vpp;
  ORRERY_CHECK(s >= 0 && s < p) << "stage " << s << " of " << p;
  std::vector<PipelinePass> order;
  order.reserve(2 * static_cast<size_t>(m) * static_cast<size_t>(vpp));
  switch (schedule) {
    case PipelineSchedule::kGpipe:
      for (int i = 0; i < m; ++i) order.push_back({false, i, 0});
      for (int i = 0; i < m; ++i) order.push_back({true, i, 0});
      break;
    case PipelineSchedule::kOneFOneB: {
      const int warmup = std::min(p - s - 1, m);
      for (int i = 0; i < warmup; ++i) order.push_back({false, i, 0});
      for (int i = 0; i < m - warmup; ++i) {
        order.push_back({false, warmup + i, 0});
        order.push_back({true, i, 0});
      }
      for (int i = m - warmup; i < m; ++i) order.push_back({true, i, 0});
      break;
    }
    case PipelineSchedule::kInterleaved: {
      const int total = m * vpp;
      const int warmup = InterleavedWarmup(p, s, m, vpp);
      for (int k = 0; k < warmup; ++k) order.push_back(InterleavedPass(false, k, p, vpp));
      for (int k = 0; k < total - warmup; ++k) {
        order.push_back(InterleavedPass(false, warmup + k, p, vpp));
        order.push_back(InterleavedPass(true, k, p, vpp));
      }
      for (int k = total - warmup; k < total; ++k) {
        order.push_back(InterleavedPass(true, k, p, vpp));
      }
      break;
    }
  }
  return order;
}

int ForwardsBeforeFirstBackward(PipelineSchedule schedule, int p, int s, int m, int vpp) {
  ORRERY_CHECK(CheckStageSchedule(schedule, p, m, vpp).ok());
  ORRERY_CHECK(s >= 0 && s < p);
  switch (schedule) {
    case PipelineSchedule::kGpipe:
      return m;
    case PipelineSchedule::kOneFOneB:
      return std::min(p - s, m);
    case PipelineSchedule::kInterleaved:
      return std::min(InterleavedWarmup(p, s, m, vpp) + 1, m * vpp);
  }
  return m;
}

std::vector<std::pair<int, int>> ChunkLayerRanges(const Plan& plan) {
  const int p = plan.pp;
  const int v = plan.schedule == PipelineSchedule::kInterleaved ? plan.vpp : 1;
  const std::vector<int> counts = plan.StageLayerCounts();
  std::vector<std::pair<int, int>> out(static_cast<size_t>(p * v));
  int first = 0;
  for (int c = 0; c < v; ++c) {
    for (int s = 0; s < p; ++s) {
      const int count = counts[static_cast<size_t>(s)] / v;
      out[static_cast<size_t>(s * v + c)] = {first, count};
      first += count;
    }
  }
  return out;
}

}  // namespace orrery::workload
