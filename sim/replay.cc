#include "sim/replay.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <vector>

#include "core/check.h"
#include "sim/engine.h"
#include "sim/flow_model.h"

namespace orrery::sim {
namespace {

// The engine payload of the event that starts the ready tasks of an
// instant; every other payload of the run's events is the TaskId of a
// compute task that ends.
constexpr uint64_t kStartReady = ~uint64_t{0};
constexpr int64_t kNotYet = -1;

size_t StreamIndex(LaneId lane, StreamKind stream) {
  return static_cast<size_t>(lane) * kNumStreams + static_cast<size_t>(stream);
}

std::string DescribeTask(const TaskGraph& graph, TaskId id) {
  const Task& task = graph.task(id);
  std::string text = "task " + std::to_string(id) + " (" + std::string(TaskLabelName(task.label));
  if (task.info.micro_batch >= 0) text += ", micro-batch " + std::to_string(task.info.micro_batch);
  if (task.info.bucket >= 0) text += ", bucket " + std::to_string(task.info.bucket);
  text += ", " + std::string(StreamKindName(task.stream)) + ")";
  return text;
}

// The state of one replay. The engine calls it when a compute task ends
// (payload: the task) and at each instant where tasks became ready
// (kStartReady); the flow model when a communication task's coflow
// completes (tag: the task).
//
// Per task the run keeps one counter, `waiting_`: the dependencies not yet
// ended plus the lanes at whose stream head the task is not yet; it is
// ready when the counter reaches zero. Per (lane, stream) a cursor into
// the stream's order names its head. Ready tasks wait in a min-heap of
// TaskIds until the instant's start pass, which starts them in increasing
// id; a communication task that ends at once (free, or an empty coflow)
// releases its successors into the same pass.
class ReplayRun final : public EventHandler, public FlowObserver {
 public:
  ReplayRun(const TaskGraph& graph, const CollectiveFlows* flows, const TopologyNetwork* network,
            const ReplayOptions& options)
      : graph_(graph), flows_(flows), options_(options),
        lanes_(graph.num_lanes()),
        cursor_(graph.num_lanes() * kNumStreams, 0),
        waiting_(graph.num_tasks()),
        last_dep_(graph.num_tasks(), -1),
        start_ps_(graph.num_tasks(), kNotYet),
        end_ps_(graph.num_tasks(), kNotYet) {
    if (!options.free_communication) flow_model_.emplace(&engine_, &network->network());
    for (size_t l = 0; l < lanes_.size(); ++l) {
      lanes_[l].memory = graph.lane(static_cast<LaneId>(l)).static_memory;
      lanes_[l].times.peak_memory = lanes_[l].memory;
    }
    for (size_t t = 0; t < waiting_.size(); ++t) {
      waiting_[t] = graph.NumDependencies(static_cast<TaskId>(t)) +
                    static_cast<int32_t>(graph.task(static_cast<TaskId>(t)).num_lanes);
    }
    std::vector<TaskId> storage;
    storage.reserve(graph.num_lanes() * kNumStreams + 16);
    ready_ = ReadyQueue(std::greater<TaskId>(), std::move(storage));
    engine_.Reserve(graph.num_lanes() * kNumStreams + 16);
  }

  Result<ReplayResult> Run() {
    for (size_t l = 0; l < lanes_.size(); ++l) {
      for (int s = 0; s < kNumStreams; ++s) {
        const std::span<const TaskId> order =
            graph_.StreamOrder(static_cast<LaneId>(l), static_cast<StreamKind>(s));
        if (!order.empty()) Release(order.front());
      }
    }
    // Tasks without lanes cannot exist (AddCommunication requires one), so
    // every task is released through its lanes' streams.
    engine_.Run();
    if (ended_ < graph_.num_tasks()) return Deadlock();

    ReplayResult result;
    for (const LaneState& lane : lanes_) {
      result.makespan = std::max(result.makespan, lane.times.end);
    }
    result.lanes.reserve(lanes_.size());
    for (LaneState& lane : lanes_) {
      // After the compute stream's last task, the lane's data-parallel
      // communication still running (ZeRO's parameter all-gather after the
      // optimizer step) is exposed; the rest is bubble.
      const Duration tail_comm = std::max(Duration::Zero(), lane.dp_end - lane.idle_since);
      lane.times.exposed_comm += tail_comm;
      lane.times.bubble += result.makespan - lane.idle_since - tail_comm;
      result.lanes.push_back(lane.times);
    }
    if (options_.record_spans) {
      result.spans.resize(graph_.num_tasks());
      for (size_t t = 0; t < result.spans.size(); ++t) {
        result.spans[t] = TaskSpan{static_cast<TaskId>(t), Duration::FromPicos(start_ps_[t]),
                                   Duration::FromPicos(end_ps_[t])};
      }
    }
    result.events = engine_.events_fired();
    if (flow_model_.has_value()) {
      result.flows = flow_model_->stats().flows_started;
      result.solves = flow_model_->stats().solves;
    }
    return result;
  }

  void OnEvent(EventId, uint64_t payload) override {
    if (payload == kStartReady) {
      StartReady();
    } else {
      End(static_cast<TaskId>(payload));
    }
  }

  void OnFlowCompleted(FlowId, uint64_t tag) override { End(static_cast<TaskId>(tag)); }

 private:
  struct LaneState {
    Duration idle_since;  // end of the compute stream's last task
    Bytes memory;
    bool dp_comm_running = false;
    Duration dp_end;      // end of the data-parallel stream's last task
    LaneTimes times;
  };
  using ReadyQueue = std::priority_queue<TaskId, std::vector<TaskId>, std::greater<TaskId>>;

  // One of `t`'s conditions is met; when the last is, `t` joins the ready
  // tasks of this instant.
  void Release(TaskId t) {
    if (--waiting_[static_cast<size_t>(t)] != 0) return;
    ready_.push(t);
    if (!starting_ && !start_scheduled_) {
      engine_.ScheduleAt(engine_.now(), this, kStartReady);
      start_scheduled_ = true;
    }
  }

  void StartReady() {
    start_scheduled_ = false;
    starting_ = true;
    while (!ready_.empty()) {
      const TaskId t = ready_.top();
      ready_.pop();
      Start(t);
    }
    starting_ = false;
  }

  void Start(TaskId id) {
    const size_t t = static_cast<size_t>(id);
    const Task& task = graph_.task(id);
    const Duration now = engine_.now();
    start_ps_[t] = now.picos();
    const std::span<const LaneId> lanes = graph_.LanesOf(id);
    for (const LaneId l : lanes) {
      LaneState& lane = lanes_[static_cast<size_t>(l)];
      lane.memory += task.alloc_at_start;
      lane.times.peak_memory = std::max(lane.times.peak_memory, lane.memory);
      if (task.stream == StreamKind::kCompute) ChargeIdle(lane, id, now);
    }
    if (!task.communication) {
      Duration length = task.duration;
      if (options_.overlap_slowdown != 0.0 &&
          lanes_[static_cast<size_t>(lanes.front())].dp_comm_running) {
        length = task.duration * (1.0 + options_.overlap_slowdown);
      }
      if (!options_.compute_factor.empty()) {
        const double factor = options_.compute_factor[static_cast<size_t>(lanes.front())];
        if (factor != 1.0) length = length * factor;
      }
      engine_.ScheduleAfter(length, this, static_cast<uint64_t>(id));
      return;
    }
    if (task.stream == StreamKind::kDataParallel) {
      for (const LaneId l : lanes) lanes_[static_cast<size_t>(l)].dp_comm_running = true;
    }
    if (!flow_model_.has_value() ||
        (task.coflow.progress_bytes == Bytes::Zero() && task.coflow.latency == Duration::Zero())) {
      End(id);
      return;
    }
    flow_model_->StartFlow(flows_->Spec(task.coflow), this, static_cast<uint64_t>(id));
  }

  // The compute stream of `lane` was idle from idle_since to `now`, when
  // task `id` starts on it: exposed communication for the part covered by
  // the communication task that `id` waited on last, bubble for the rest.
  void ChargeIdle(LaneState& lane, TaskId id, Duration now) {
    const Duration idle = now - lane.idle_since;
    if (idle == Duration::Zero()) return;
    Duration exposed;
    const TaskId dep = last_dep_[static_cast<size_t>(id)];
    if (dep >= 0 && graph_.task(dep).communication) {
      const Duration from =
          std::max(lane.idle_since, Duration::FromPicos(start_ps_[static_cast<size_t>(dep)]));
      const Duration to = Duration::FromPicos(end_ps_[static_cast<size_t>(dep)]);
      if (to > from) exposed = to - from;
    }
    lane.times.exposed_comm += exposed;
    lane.times.bubble += idle - exposed;
  }

  void End(TaskId id) {
    const size_t t = static_cast<size_t>(id);
    const Task& task = graph_.task(id);
    const Duration now = engine_.now();
    end_ps_[t] = now.picos();
    ++ended_;
    for (const LaneId l : graph_.LanesOf(id)) {
      LaneState& lane = lanes_[static_cast<size_t>(l)];
      lane.memory -= task.free_at_end;
      lane.times.end = now;
      if (task.stream == StreamKind::kCompute) {
        const Duration busy = now - Duration::FromPicos(start_ps_[t]);
        if (task.communication) {
          lane.times.comm_in_path += busy;
          lane.times.exposed_comm += busy;
        } else if (task.label == TaskLabel::kRecompute) {
          lane.times.recompute += busy;
        } else {
          lane.times.compute += busy;
        }
        lane.idle_since = now;
      } else if (task.stream == StreamKind::kDataParallel && task.communication) {
        lane.dp_comm_running = false;
        lane.dp_end = now;
      }
      const size_t stream = StreamIndex(l, task.stream);
      const std::span<const TaskId> order = graph_.StreamOrder(l, task.stream);
      const uint32_t next = ++cursor_[stream];
      if (next < order.size()) Release(order[next]);
    }
    for (const TaskId succ : graph_.Successors(id)) {
      last_dep_[static_cast<size_t>(succ)] = id;
      Release(succ);
    }
  }

  // Internal: some task never started (or never ended); names the first
  // stuck task of each stuck lane.
  Status Deadlock() const {
    std::string text = "replay deadlocked at " + FormatDuration(engine_.now()) + ": " +
                       std::to_string(graph_.num_tasks() - ended_) + " of " +
                       std::to_string(graph_.num_tasks()) + " tasks never ended";
    int listed = 0;
    size_t stuck_lanes = 0;
    for (size_t l = 0; l < lanes_.size(); ++l) {
      TaskId first = -1;
      for (int s = 0; s < kNumStreams; ++s) {
        const std::span<const TaskId> order =
            graph_.StreamOrder(static_cast<LaneId>(l), static_cast<StreamKind>(s));
        const uint32_t c = cursor_[l * kNumStreams + static_cast<size_t>(s)];
        if (c < order.size() && (first < 0 || order[c] < first)) first = order[c];
      }
      if (first < 0) continue;
      ++stuck_lanes;
      if (listed == 8) continue;
      ++listed;
      text += "; lane " + std::to_string(l) + ": " + DescribeTask(graph_, first);
      const size_t t = static_cast<size_t>(first);
      if (start_ps_[t] != kNotYet) {
        text += " started at " + FormatDuration(Duration::FromPicos(start_ps_[t])) +
                " and never ended";
        continue;
      }
      int32_t at_head = 0;
      for (const LaneId m : graph_.LanesOf(first)) {
        const std::span<const TaskId> order = graph_.StreamOrder(m, graph_.task(first).stream);
        const uint32_t c = cursor_[StreamIndex(m, graph_.task(first).stream)];
        if (c < order.size() && order[c] == first) ++at_head;
      }
      const int32_t lanes_behind = static_cast<int32_t>(graph_.task(first).num_lanes) - at_head;
      text += " waits on " + std::to_string(waiting_[t] - lanes_behind) + " dependencies and " +
              std::to_string(lanes_behind) + " lanes' streams";
    }
    if (stuck_lanes > static_cast<size_t>(listed)) {
      text += "; and " + std::to_string(stuck_lanes - static_cast<size_t>(listed)) +
              " more lanes";
    }
    return InternalError(text);
  }

  const TaskGraph& graph_;
  const CollectiveFlows* flows_;
  const ReplayOptions& options_;
  Engine engine_;
  std::optional<FlowModel> flow_model_;  // after engine_: destroyed first
  std::vector<LaneState> lanes_;
  std::vector<uint32_t> cursor_;   // by lane * kNumStreams + stream
  std::vector<int32_t> waiting_;   // by task
  std::vector<TaskId> last_dep_;   // by task: the dependency that ended last, or -1
  std::vector<int64_t> start_ps_;  // by task, kNotYet until it starts
  std::vector<int64_t> end_ps_;    // by task, kNotYet until it ends
  ReadyQueue ready_;
  bool starting_ = false;         // inside StartReady
  bool start_scheduled_ = false;  // a kStartReady event is pending
  size_t ended_ = 0;
};

}  // namespace

Result<ReplayResult> Replay(const TaskGraph& graph, const CollectiveFlows* flows,
                            const TopologyNetwork* network, const ReplayOptions& options) {
  if (!graph.finalized()) return InvalidArgumentError("replay: the task graph is not finalized");
  if (!(options.overlap_slowdown >= 0.0) || !std::isfinite(options.overlap_slowdown)) {
    return InvalidArgumentError("replay: overlap_slowdown must be a finite fraction >= 0, got " +
                                std::to_string(options.overlap_slowdown));
  }
  if (!options.compute_factor.empty()) {
    if (options.compute_factor.size() != graph.num_lanes()) {
      return InvalidArgumentError("replay: " + std::to_string(options.compute_factor.size()) +
                                  " compute factors for " + std::to_string(graph.num_lanes()) +
                                  " lanes");
    }
    for (size_t l = 0; l < options.compute_factor.size(); ++l) {
      const double f = options.compute_factor[l];
      if (!std::isfinite(f) || !(f >= 1.0)) {
        return InvalidArgumentError("replay: compute factor of lane " + std::to_string(l) +
                                    " must be a finite number >= 1, got " + std::to_string(f));
      }
    }
  }
  if (!options.free_communication) {
    if (flows == nullptr || network == nullptr) {
      return InvalidArgumentError(
          "replay: communication tasks need the collective flows and the network (or "
          "free_communication)");
    }
    for (size_t t = 0; t < graph.num_tasks(); ++t) {
      const Task& task = graph.task(static_cast<TaskId>(t));
      if (task.communication && task.coflow.footprint >= flows->num_footprints()) {
        return InvalidArgumentError("replay: " + DescribeTask(graph, static_cast<TaskId>(t)) +
                                    " names footprint " + std::to_string(task.coflow.footprint) +
                                    " of " + std::to_string(flows->num_footprints()));
      }
    }
  }
  ReplayRun run(graph, flows, network, options);
  return run.Run();
}

}  // namespace orrery::sim
