// TaskGraph: what every rank of a training iteration does, as tasks on
// streams with dependencies — the input of the replay (sim/replay.h) and
// the output of the training-graph builder (sim/training_graph.h). In
// ASTRA-sim / Chakra terms it is the execution trace of every rank; in
// SimGrid's, the activities the ranks' actors would run.
//
// Lanes. A lane is a set of ranks that run the same tasks at the same
// moments: the tp ranks of one tensor-parallel group of one pipeline stage
// of one data-parallel replica. Megatron-style tensor parallelism gives
// each of them identical shapes and the in-path collectives synchronise
// them, so in this model they cannot drift apart; the replay runs them as
// one lane (one clock, one memory counter) while every one of their
// collectives and transfers is a flow over the links of all of them. A plan
// without tensor parallelism has one rank per lane. Every rank belongs to
// exactly one lane.
//
// Streams. Each lane has kNumStreams streams (CUDA streams): compute (the
// layer passes, the collectives in their path — TP/SP, CP, EP — and the
// optimizer step), data-parallel communication (gradient reduce-scatter or
// all-reduce buckets, ZeRO parameter all-gathers), pipeline sends, and
// tensor-parallel communication when it overlaps the GEMMs. A stream runs its tasks one at a time in the order they were added to it
// (program order).
//
// Tasks. A compute task occupies one lane's stream for a fixed duration
// (slowed by the replay's overlap factor while the lane's data-parallel
// stream is busy). A communication task occupies the given stream of each
// of its lanes — it starts only when it is at the head of every one of them,
// as an NCCL collective starts when every member has launched it — and runs
// as one coflow (sim/collective_flows.h) until its flow completes. A task
// also waits for its dependencies (AddDependency): the pipeline receive is
// a dependency of the next stage's forward on the sender's transfer task.
//
// Memory. A task may allocate bytes on its lanes when it starts and free
// bytes when it ends (activations saved by a forward and freed by its
// backward; the gathered parameters of ZeRO-3); a lane starts at its
// static memory (model states and context); the replay tracks each lane's
// current and peak bytes.
//
// Building. Add lanes, then tasks in each stream's program order, then
// dependencies; Finalize() freezes the graph (compressed successor lists)
// and checks it. Ids are dense indices.
//
// Thread-safety: immutable after Finalize(); concurrent replays may read it.
#ifndef ORRERY_SIM_TASK_GRAPH_H_
#define ORRERY_SIM_TASK_GRAPH_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "sim/collective_flows.h"

namespace orrery::sim {

using LaneId = int32_t;
using TaskId = int32_t;

enum class StreamKind : uint8_t {
  kCompute = 0,
  kDataParallel = 1,
  kPipelineSend = 2,
  kTensorParallel = 3,  // TP collectives overlapped with compute (tp_comm_overlap)
};
inline constexpr int kNumStreams = 4;
// "compute", "dp-comm", "pp-send", "tp-comm"
std::string_view StreamKindName(StreamKind s);

// What a task is, for accounting and for the timeline.
enum class TaskLabel : uint8_t {
  kForward,             // a layer's (or chunk's) forward pass, compute
  kBackward,            // its backward pass, compute
  kRecompute,           // the forward recomputed before a backward
  kOptimizer,           // the optimizer step
  kTensorParallel,      // TP all-reduce, or SP all-gather / reduce-scatter
  kContextParallel,     // CP ring exchange of keys and values
  kExpertParallel,      // EP all-to-all (dispatch, combine)
  kPipelineActivation,  // pipeline send of activations, stage s → s+1
  kPipelineGradient,    // pipeline send of gradients, stage s → s−1
  kGradientReduce,      // DP all-reduce or ZeRO reduce-scatter of gradients
  kParameterGather,     // ZeRO all-gather of parameters
};
inline constexpr int kNumTaskLabels = 11;
std::string_view TaskLabelName(TaskLabel l);  // "forward", "tp-comm", "pp-activation", ...
bool IsCommunication(TaskLabel l);

struct Lane {
  std::vector<int> ranks;  // the devices of the lane (tp ranks), >= 1
  int stage = 0;           // pipeline stage
  int replica = 0;         // data-parallel (× context-parallel) index
  Bytes static_memory;     // held from the start: model states, context, buffers
};

// Where a task sits in the iteration, for the timeline and the reports.
struct TaskInfo {
  int32_t micro_batch = -1;  // -1: not a micro-batch's (optimizer, DP bucket)
  int16_t chunk = 0;         // model chunk (interleaved schedule)
  int16_t bucket = -1;       // DP bucket, ZeRO gather index
};

struct Task {
  TaskLabel label = TaskLabel::kForward;
  StreamKind stream = StreamKind::kCompute;
  bool communication = false;
  TaskInfo info;
  Duration duration;     // compute tasks
  CoflowSpec coflow;     // communication tasks
  Bytes alloc_at_start;  // on each of its lanes
  Bytes free_at_end;
  // Lanes whose `stream` the task occupies: lanes()[lanes_begin, +num_lanes).
  uint32_t lanes_begin = 0;
  uint32_t num_lanes = 0;
};

class TaskGraph {
 public:
  LaneId AddLane(Lane lane);
  // A compute task on `lane`'s `stream`, appended to that stream's order.
  // REQUIRES: not finalized; lane exists; duration >= 0; !IsCommunication(label).
  TaskId AddCompute(LaneId lane, StreamKind stream, TaskLabel label, Duration duration,
                    TaskInfo info = {});
  // A communication task on `stream` of each of `lanes` (distinct),
  // appended to each stream's order.
  // REQUIRES: not finalized; lanes exist, >= 1; IsCommunication(label).
  TaskId AddCommunication(std::span<const LaneId> lanes, StreamKind stream, TaskLabel label,
                          const CoflowSpec& coflow, TaskInfo info = {});
  // `after` cannot start before `before` has ended. REQUIRES: not finalized.
  void AddDependency(TaskId before, TaskId after);
  // Memory a task allocates on each of its lanes when it starts and frees
  // when it ends. REQUIRES: not finalized; bytes >= 0.
  void SetMemory(TaskId task, Bytes alloc_at_start, Bytes free_at_end);

  // Freezes the graph. InvalidArgument if a lane has no ranks or a negative
  // rank, a rank is in two lanes, or a communication task names a lane
  // twice; FailedPrecondition if a cycle through dependencies and stream
  // order makes some task unreachable (the message names a task on the
  // cycle). On error the graph stays unfinalized.
  Status Finalize();
  bool finalized() const { return finalized_; }

  size_t num_lanes() const { return lanes_.size(); }
  size_t num_tasks() const { return tasks_.size(); }
  const Lane& lane(LaneId id) const { return lanes_[static_cast<size_t>(id)]; }
  const Task& task(TaskId id) const { return tasks_[static_cast<size_t>(id)]; }
  std::span<const LaneId> LanesOf(TaskId id) const;
  // The tasks of `lane`'s `stream` in program order.
  std::span<const TaskId> StreamOrder(LaneId lane, StreamKind stream) const;
  // After Finalize(): the tasks that depend on `id`, and how many
  // dependencies each task has.
  std::span<const TaskId> Successors(TaskId id) const;
  int32_t NumDependencies(TaskId id) const { return num_deps_[static_cast<size_t>(id)]; }
  // The lane with rank `rank` among its ranks, or -1.
  LaneId LaneOfRank(int rank) const;

 private:
  bool finalized_ = false;
  std::vector<Lane> lanes_;
  std::vector<Task> tasks_;
  std::vector<LaneId> task_lanes_;                 // Task::lanes_begin indexes here
  std::vector<std::vector<TaskId>> stream_order_;  // by lane * kNumStreams + stream
  std::vector<std::pair<TaskId, TaskId>> edges_;   // (before, after) until Finalize
  std::vector<uint32_t> succ_begin_;               // CSR after Finalize (num_tasks + 1)
  std::vector<TaskId> succ_;
  std::vector<int32_t> num_deps_;
  std::vector<LaneId> lane_of_rank_;  // by rank, -1: none; kept by AddLane
  std::string lane_error_;            // the first bad lane AddLane saw; Finalize reports it
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_TASK_GRAPH_H_
