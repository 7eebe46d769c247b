// Pipeline schedules: the order in which one pipeline stage runs the
// forward and backward passes of the micro-batches of one training
// iteration, per model chunk — the program order of a stage's compute
// stream in the training graph (sim/training_graph.h).
//
// Stage s of p stages, m micro-batches, vpp model chunks per stage:
//   * GPipe (Huang et al., 2019): F(0) … F(m−1), then B(0) … B(m−1).
//   * 1F1B (PipeDream-Flush; Narayanan et al., SC21 §2.2): a warm-up of
//     w = min(p − s − 1, m) forwards, then m − w pairs F(w + i), B(i), then a
//     cool-down of the last w backwards. At most min(p − s, m) micro-batches
//     are in flight.
//   * Interleaved 1F1B (Narayanan et al., SC21 §2.2.2), exactly as
//     Megatron-LM orders it (megatron/core/pipeline_parallel/schedules.py,
//     forward_backward_pipelining_with_interleaving, get_model_chunk_id and
//     get_microbatch_id_in_model_chunk). The stage runs vpp model chunks,
//     chunk c being virtual stage c·p + s; a stage runs T = m·vpp forward
//     passes and T backward passes. Forward pass k (k = 0 … T−1) is of
//       chunk       (k mod p·vpp) / p
//       micro-batch (k / (p·vpp))·p + k mod p
//     (groups of p micro-batches, chunk after chunk); backward pass k is of
//     chunk vpp − 1 − (k mod p·vpp) / p and the same micro-batch formula
//     (Megatron pops each chunk's oldest saved input: first in, first out).
//     Warm-up: w = min((p − s − 1)·2 + (vpp − 1)·p, T) forwards, or all T
//     when m = p ("run all forward passes and then all backward passes if
//     number of microbatches is just the number of pipeline stages");
//     steady state: T − w pairs F(w + i), B(i); cool-down: the remaining
//     w backwards. Megatron-LM requires m to be a multiple of p (its
//     get_forward_backward_func asserts it); CheckStageSchedule reports the
//     others.
//
// The number of forwards before the first backward is min(w + 1, T) (the
// peak of micro-batches in flight, costmodel::InFlightMicroBatches) except
// in Megatron's m = p special case, where it is T on every stage.
//
// Thread-safety: pure functions.
#ifndef ORRERY_WORKLOAD_PIPELINE_SCHEDULE_H_
#define ORRERY_WORKLOAD_PIPELINE_SCHEDULE_H_

#include <utility>
#include <vector>

#include "core/status.h"
#include "workload/plan.h"

namespace orrery::workload {

// One pass of one micro-batch through one model chunk of a stage.
struct PipelinePass {
  bool backward = false;
  int micro_batch = 0;
  int chunk = 0;  // 0 unless interleaved

  bool operator==(const PipelinePass&) const = default;
};

// OK when `schedule` can order m micro-batches on p stages with vpp chunks:
// p, m, vpp >= 1; vpp == 1 unless interleaved; for interleaved, m a multiple
// of p (Megatron-LM's requirement). InvalidArgument otherwise, naming the
// plan field.
Status CheckStageSchedule(PipelineSchedule schedule, int p, int m, int vpp);

// The passes of stage `s` in program order: 2·m·vpp passes, each
// (micro-batch, chunk) forward exactly once and backward once after it.
// REQUIRES: 0 <= s < p; CheckStageSchedule(schedule, p, m, vpp) is OK.
std::vector<PipelinePass> StageSchedule(PipelineSchedule schedule, int p, int s, int m,
                                        int vpp);

// Forward passes of stage `s` before its first backward (all 2·m·vpp / 2
// when the schedule has no backward before its last forward).
// REQUIRES: as StageSchedule.
int ForwardsBeforeFirstBackward(PipelineSchedule schedule, int p, int s, int m, int vpp);

// The transformer layers [first, first + count) of each (stage, chunk):
// stage s's plan.StageLayerCounts()[s] layers split into vpp equal chunks
// (vpp = 1 unless interleaved), chunk c of stage s being virtual stage
// c·pp + s in model order (Megatron-LM's interleaved assignment). Returns
// pairs indexed stage·vpp + chunk. REQUIRES: a valid plan.
std::vector<std::pair<int, int>> ChunkLayerRanges(const Plan& plan);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_PIPELINE_SCHEDULE_H_
