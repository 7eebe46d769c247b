// Replay: runs a TaskGraph (sim/task_graph.h) on the event engine, with
// every communication task a coflow on the flow model (sim/flow_model.h),
// and reports when each lane finished, where its time went and its peak
// memory.
//
// Semantics. A task is ready when all its dependencies have ended and it
// is at the head of its stream on each of its lanes (the tasks before it in
// those streams have ended). A ready compute task runs for its duration —
// times (1 + overlap_slowdown) when, at its start, a communication task is
// running on the lane's data-parallel stream (compute slowed by the
// gradient reduction it overlaps: SM and memory bandwidth taken by NCCL's
// kernels; calibratable), and times its lane's compute_factor (a slow
// device, sim/faults.h). A ready communication task starts its coflow
// (CollectiveFlows::Spec) and ends when the flow completes; a coflow of
// zero progress bytes and zero latency ends at once. With free
// communication every communication task ends the instant it starts.
// Ready tasks are started in increasing TaskId at each instant (in one
// start pass, after the events already due at that instant have fired; a
// task that ends at once releases its successors into the same pass), so a
// replay is deterministic: the same graph gives a bit-identical result.
//
// Accounting, per lane, on its compute stream, over [0, makespan]:
//   compute        Σ forward + backward + optimizer compute task durations
//                  as run (overlap slowdown included)
//   recompute      Σ recompute task durations, as run
//   comm_in_path   Σ communication task durations on the compute stream
//                  (TP/SP, CP, EP collectives: exposed by construction)
//   exposed_comm   idle time while waiting on a communication task of
//                  another stream (pipeline receive, DP reduction, ZeRO
//                  gather): from the later of the idle start and that
//                  task's start to its end, when it is the dependency
//                  that ended last; plus comm_in_path; plus, after the
//                  compute stream's last task, the time until the lane's
//                  last data-parallel task ends (ZeRO-1/2's parameter
//                  all-gather after the optimizer step)
//   bubble         every other idle time, including from the lane's last
//                  task to the makespan and waiting for the other lanes
//                  of a collective to reach it
// so compute + recompute + exposed_comm + bubble == makespan for every
// lane (comm_in_path is inside exposed_comm), exactly.
//
// Memory: a lane starts at Lane::static_memory; a task adds alloc_at_start
// when it starts and subtracts free_at_end when it ends; peak is the
// largest value reached.
//
// Thread-safety: Replay is a pure function of its arguments.
#ifndef ORRERY_SIM_REPLAY_H_
#define ORRERY_SIM_REPLAY_H_

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "sim/collective_flows.h"
#include "sim/network_builder.h"
#include "sim/task_graph.h"

namespace orrery::sim {

struct ReplayOptions {
  // Communication tasks take no time (no flows).
  bool free_communication = false;
  // Slowdown of compute that overlaps data-parallel communication, as a
  // fraction (0.05: 5% longer). 0 until calibrated.
  double overlap_slowdown = 0.0;
  // Record every task's start and end (ReplayResult::spans).
  bool record_spans = false;
  // By LaneId: how many times longer the lane's compute tasks take (a slow
  // device, sim/faults.h); each finite and >= 1. Empty: 1 for every lane.
  // A factor of 1 leaves the durations exactly as they are.
  std::vector<double> compute_factor{};
};

struct LaneTimes {
  Duration compute;
  Duration recompute;
  Duration comm_in_path;
  Duration exposed_comm;
  Duration bubble;
  Duration end;          // when the lane's last task (any stream) ended
  Bytes peak_memory;
};

struct TaskSpan {
  TaskId task = 0;
  Duration start;
  Duration end;
};

struct ReplayResult {
  Duration makespan;            // max over lanes of end
  std::vector<LaneTimes> lanes; // by LaneId
  std::vector<TaskSpan> spans;  // by TaskId when record_spans, else empty
  int64_t events = 0;           // engine events fired
  int64_t flows = 0;            // coflows started
  int64_t solves = 0;           // flow-model solves
};

// Replays `graph` (finalized). `flows` names the footprints of the graph's
// coflows and `network` their links; both may be null only with
// free_communication. InvalidArgument when the graph is not finalized, a
// network is missing or compute_factor is neither empty nor one finite
// factor >= 1 per lane; Internal if the replay deadlocks (a stream waits on a
// task that can never start) — a bug of the builder.
Result<ReplayResult> Replay(const TaskGraph& graph, const CollectiveFlows* flows,
                            const TopologyNetwork* network, const ReplayOptions& options = {});

}  // namespace orrery::sim

#endif  // ORRERY_SIM_REPLAY_H_
