// PipelineTaskGraph: one pipeline-parallel training iteration replayed on the
// event engine — every stage's forwards and backwards in the order of its
// schedule, the activations and gradients between stages as flows on the
// network, then the gradient synchronisation and the optimizer step.
//
// The graph. Stage s of p runs its operations one at a time (one compute
// stream per stage) in the order StageOrder gives:
//   * GPipe: F(0) … F(m−1), then B(0) … B(m−1);
//   * 1F1B (PipeDream-Flush, Narayanan et al., SC21 §2.2): a warm-up of
//     w = min(p − s − 1, m) forwards, then m − w pairs F(w+i), B(i), then a
//     cool-down of the last w backwards.
// F(i) on stage s > 0 waits for micro-batch i's activations from stage s − 1;
// B(i) on stage s < p − 1 waits for its gradient from stage s + 1. When F(i)
// ends on s < p − 1 the activations start towards s + 1 as one flow of
// `activation_bytes` along the network route between the two stages' ranks
// (sim/flow_model.h: per-hop latency, then max-min shared bandwidth); when
// B(i) ends on s > 0 the gradient starts towards s − 1 as a flow of
// `gradient_bytes`. Sends run on their own streams: they never hold up the
// sender's compute. A flow's completion releases the operation waiting on
// it. After a stage's last backward comes its gradient synchronisation
// (`gradient_sync`, a duration computed outside, e.g. the analytic
// data-parallel all-reduce) and then its optimizer step (`optimizer`). A
// stage ends when its optimizer step does; the iteration when the last stage
// does.
//
// Accounting, per stage, over [0, iteration time]:
//   busy          m·(forward + backward) + optimizer;
//   exposed_comm  time idle while a transfer it waits on is in flight (from
//                 the later of the idle start and the send, to the arrival),
//                 plus gradient_sync (not overlapped in this slice);
//   bubble        every other idle time (waiting for a neighbour's compute,
//                 and from the stage's end to the iteration's end);
// so busy + exposed_comm + bubble == iteration time, exactly.
//
// Closed forms (tests/sim/task_graph_test.cc): with free communication and
// equal stage costs tf, tb, both schedules take (m + p − 1)(tf + tb)
// (Narayanan et al., SC21, Eq. 1 with the bubble (p − 1)(tf + tb)).
//
// Determinism: integer time throughout, the engine's (time, sequence) order
// and the flow model's sorted solves; two runs of one spec are identical.
//
// Timeline: optionally, the replay records every operation and transfer
// with its start and end (sim/chrome_timeline.h turns it into a Chrome
// trace); off by default so that searches pay nothing for it.
//
// Thread-safety: SimulatePipeline is a pure function of its arguments (the
// network is only read).
#ifndef ORRERY_SIM_TASK_GRAPH_H_
#define ORRERY_SIM_TASK_GRAPH_H_

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "sim/network_builder.h"
#include "workload/plan.h"

namespace orrery::sim {

// The costs of one pipeline stage.
struct StageCosts {
  int rank = 0;            // the device that runs the stage (routes start here)
  Duration forward;        // one micro-batch through the stage, forward
  Duration backward;       // and backward
  Duration gradient_sync;  // after the last backward
  Duration optimizer;      // after gradient_sync
};

struct PipelineSpec {
  std::vector<StageCosts> stages;  // p >= 1 stages, in pipeline order
  int micro_batches = 1;           // m >= 1
  workload::PipelineSchedule schedule = workload::PipelineSchedule::kOneFOneB;
  Bytes activation_bytes;  // sent s → s+1 after each forward
  Bytes gradient_bytes;    // sent s+1 → s after each backward
};

// One operation of a stage's compute stream.
struct PipelineOp {
  bool backward = false;
  int micro_batch = 0;
  bool operator==(const PipelineOp&) const = default;
};

// The order of stage `stage`'s 2m operations under `schedule` (see above).
// REQUIRES: schedule is GPipe or 1F1B; 0 <= stage < stages; m >= 1.
std::vector<PipelineOp> StageOrder(workload::PipelineSchedule schedule, int stages, int stage,
                                   int micro_batches);

struct StageTimes {
  Duration busy;
  Duration bubble;
  Duration exposed_comm;
  Duration end;  // when the stage's optimizer step ends
};

struct PipelineResult {
  Duration iteration_time;          // max over stages of end
  std::vector<StageTimes> stages;   // one per stage
  int64_t events = 0;               // engine events fired
  int64_t flows = 0;                // flows started
};

// One span of a stage's compute stream.
struct TimelineTask {
  enum class Kind { kForward, kBackward, kGradientSync, kOptimizer };
  Kind kind = Kind::kForward;
  int stage = 0;
  int rank = 0;
  int micro_batch = -1;  // -1 for the gradient sync and the optimizer step
  Duration start;
  Duration end;
};

// One pipeline transfer (a flow, or instantaneous when communication is free).
struct TimelineTransfer {
  bool gradient = false;  // false: activations s → s+1; true: gradients s → s−1
  int from_stage = 0;
  int to_stage = 0;
  int from_rank = 0;
  int to_rank = 0;
  int micro_batch = 0;
  Bytes bytes;
  Duration start;  // when the sender's operation ended
  Duration end;    // when the flow completed
};

struct Timeline {
  std::vector<TimelineTask> tasks;          // in the order they end
  std::vector<TimelineTransfer> transfers;  // in order of their start
  Duration iteration_time;
};

// Replays `spec`. With `network` null, transfers are free (they arrive the
// instant they are sent); otherwise they are flows on it between the
// stages' ranks. InvalidArgument when the spec is empty, m < 1, a cost is
// negative, a rank is outside the network, or the schedule is interleaved
// (not in this slice). With `timeline` non-null it is cleared and filled
// with every task and transfer of the replay.
Result<PipelineResult> SimulatePipeline(const PipelineSpec& spec, const TopologyNetwork* network,
                                        Timeline* timeline = nullptr);

}  // namespace orrery::sim

#endif  // ORRERY_SIM_TASK_GRAPH_H_
