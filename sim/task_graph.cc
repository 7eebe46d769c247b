#include "sim/task_graph.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"

namespace orrery::sim {

std::string_view StreamKindName(StreamKind s) {
  switch (s) {
    case StreamKind::kCompute: return "compute";
    case StreamKind::kDataParallel: return "dp-comm";
    case StreamKind::kPipelineSend: return "pp-send";
    case StreamKind::kTensorParallel: return "tp-comm";
  }
  return "?";
}

std::string_view TaskLabelName(TaskLabel l) {
  switch (l) {
    case TaskLabel::kForward: return "forward";
    case TaskLabel::kBackward: return "backward";
    case TaskLabel::kRecompute: return "recompute";
    case TaskLabel::kOptimizer: return "optimizer";
    case TaskLabel::kTensorParallel: return "tp-comm";
    case TaskLabel::kContextParallel: return "cp-comm";
    case TaskLabel::kExpertParallel: return "ep-comm";
    case TaskLabel::kPipelineActivation: return "pp-activation";
    case TaskLabel::kPipelineGradient: return "pp-gradient";
    case TaskLabel::kGradientReduce: return "dp-grad-reduce";
    case TaskLabel::kParameterGather: return "dp-param-gather";
  }
  return "?";
}

bool IsCommunication(TaskLabel l) {
  switch (l) {
    case TaskLabel::kForward:
    case TaskLabel::kBackward:
    case TaskLabel::kRecompute:
    case TaskLabel::kOptimizer:
      return false;
    case TaskLabel::kTensorParallel:
    case TaskLabel::kContextParallel:
    case TaskLabel::kExpertParallel:
    case TaskLabel::kPipelineActivation:
    case TaskLabel::kPipelineGradient:
    case TaskLabel::kGradientReduce:
    case TaskLabel::kParameterGather:
      return true;
  }
  return false;
}

namespace {

size_t StreamIndex(LaneId lane, StreamKind stream) {
  return static_cast<size_t>(lane) * kNumStreams + static_cast<size_t>(stream);
}

// "task 17 (backward, micro-batch 3, lane 2 compute)", for error messages.
std::string DescribeTask(const TaskGraph& graph, TaskId id) {
  const Task& task = graph.task(id);
  std::string text = "task " + std::to_string(id) + " (" +
                     std::string(TaskLabelName(task.label));
  if (task.info.micro_batch >= 0) text += ", micro-batch " + std::to_string(task.info.micro_batch);
  if (task.info.bucket >= 0) text += ", bucket " + std::to_string(task.info.bucket);
  const std::span<const LaneId> lanes = graph.LanesOf(id);
  text += lanes.size() == 1 ? ", lane " : ", lanes ";
  for (size_t i = 0; i < lanes.size() && i < 4; ++i) {
    if (i > 0) text += ",";
    text += std::to_string(lanes[i]);
  }
  if (lanes.size() > 4) text += ",...";
  text += " " + std::string(StreamKindName(task.stream)) + ")";
  return text;
}

}  // namespace

LaneId TaskGraph::AddLane(Lane lane) {
  ORRERY_CHECK(!finalized_) << "AddLane on a finalized task graph";
  const LaneId id = static_cast<LaneId>(lanes_.size());
  if (lane.ranks.empty() && lane_error_.empty()) {
    lane_error_ = "lane " + std::to_string(id) + " has no ranks";
  }
  for (const int rank : lane.ranks) {
    if (rank < 0) {
      if (lane_error_.empty()) {
        lane_error_ = "lane " + std::to_string(id) + " has a negative rank " +
                      std::to_string(rank);
      }
      continue;
    }
    const size_t r = static_cast<size_t>(rank);
    if (r >= lane_of_rank_.size()) lane_of_rank_.resize(r + 1, -1);
    if (lane_of_rank_[r] >= 0) {
      if (lane_error_.empty()) {
        lane_error_ = "rank " + std::to_string(rank) + " is in lane " +
                      std::to_string(lane_of_rank_[r]) + " and in lane " + std::to_string(id);
      }
      continue;
    }
    lane_of_rank_[r] = id;
  }
  lanes_.push_back(std::move(lane));
  stream_order_.resize(lanes_.size() * kNumStreams);
  return id;
}

TaskId TaskGraph::AddCompute(LaneId lane, StreamKind stream, TaskLabel label, Duration duration,
                             TaskInfo info) {
  ORRERY_CHECK(!finalized_) << "AddCompute on a finalized task graph";
  ORRERY_CHECK(lane >= 0 && static_cast<size_t>(lane) < lanes_.size()) << "no lane " << lane;
  ORRERY_CHECK(duration >= Duration::Zero()) << "negative duration " << duration.picos() << " ps";
  ORRERY_CHECK(!IsCommunication(label)) << "AddCompute with label " << TaskLabelName(label);
  ORRERY_CHECK(tasks_.size() < static_cast<size_t>(INT32_MAX)) << "too many tasks";
  const TaskId id = static_cast<TaskId>(tasks_.size());
  Task task;
  task.label = label;
  task.stream = stream;
  task.communication = false;
  task.info = info;
  task.duration = duration;
  task.lanes_begin = static_cast<uint32_t>(task_lanes_.size());
  task.num_lanes = 1;
  task_lanes_.push_back(lane);
  tasks_.push_back(task);
  stream_order_[StreamIndex(lane, stream)].push_back(id);
  return id;
}

TaskId TaskGraph::AddCommunication(std::span<const LaneId> lanes, StreamKind stream,
                                   TaskLabel label, const CoflowSpec& coflow, TaskInfo info) {
  ORRERY_CHECK(!finalized_) << "AddCommunication on a finalized task graph";
  ORRERY_CHECK(!lanes.empty()) << "a communication task without lanes";
  ORRERY_CHECK(IsCommunication(label)) << "AddCommunication with label " << TaskLabelName(label);
  ORRERY_CHECK(tasks_.size() < static_cast<size_t>(INT32_MAX)) << "too many tasks";
  ORRERY_CHECK(task_lanes_.size() + lanes.size() <= UINT32_MAX) << "too many task lanes";
  const TaskId id = static_cast<TaskId>(tasks_.size());
  Task task;
  task.label = label;
  task.stream = stream;
  task.communication = true;
  task.info = info;
  task.coflow = coflow;
  task.lanes_begin = static_cast<uint32_t>(task_lanes_.size());
  task.num_lanes = static_cast<uint32_t>(lanes.size());
  for (const LaneId lane : lanes) {
    ORRERY_CHECK(lane >= 0 && static_cast<size_t>(lane) < lanes_.size()) << "no lane " << lane;
    task_lanes_.push_back(lane);
    stream_order_[StreamIndex(lane, stream)].push_back(id);
  }
  tasks_.push_back(task);
  return id;
}

void TaskGraph::AddDependency(TaskId before, TaskId after) {
  ORRERY_CHECK(!finalized_) << "AddDependency on a finalized task graph";
  ORRERY_CHECK(before >= 0 && static_cast<size_t>(before) < tasks_.size()) << "no task " << before;
  ORRERY_CHECK(after >= 0 && static_cast<size_t>(after) < tasks_.size()) << "no task " << after;
  ORRERY_CHECK(before != after) << "task " << before << " depends on itself";
  edges_.emplace_back(before, after);
}

void TaskGraph::SetMemory(TaskId task, Bytes alloc_at_start, Bytes free_at_end) {
  ORRERY_CHECK(!finalized_) << "SetMemory on a finalized task graph";
  ORRERY_CHECK(task >= 0 && static_cast<size_t>(task) < tasks_.size()) << "no task " << task;
  ORRERY_CHECK(alloc_at_start >= Bytes::Zero() && free_at_end >= Bytes::Zero())
      << "negative memory on task " << task;
  Task& t = tasks_[static_cast<size_t>(task)];
  t.alloc_at_start = alloc_at_start;
  t.free_at_end = free_at_end;
}

Status TaskGraph::Finalize() {
  if (finalized_) return Status::Ok();
  if (!lane_error_.empty()) return InvalidArgumentError("task graph: " + lane_error_);
  const size_t n = tasks_.size();

  // A communication task names each of its lanes once: mark each lane with
  // the last task seen on it.
  {
    std::vector<TaskId> seen(lanes_.size(), -1);
    for (size_t t = 0; t < n; ++t) {
      for (const LaneId lane : LanesOf(static_cast<TaskId>(t))) {
        if (seen[static_cast<size_t>(lane)] == static_cast<TaskId>(t)) {
          return InvalidArgumentError("task graph: " +
                                      DescribeTask(*this, static_cast<TaskId>(t)) +
                                      " names lane " + std::to_string(lane) + " twice");
        }
        seen[static_cast<size_t>(lane)] = static_cast<TaskId>(t);
      }
    }
  }

  // Successors in CSR form, in the order the dependencies were added.
  std::vector<uint32_t> succ_begin(n + 1, 0);
  std::vector<int32_t> num_deps(n, 0);
  for (const auto& [before, after] : edges_) {
    ++succ_begin[static_cast<size_t>(before) + 1];
    ++num_deps[static_cast<size_t>(after)];
  }
  for (size_t t = 0; t < n; ++t) succ_begin[t + 1] += succ_begin[t];
  std::vector<TaskId> succ(edges_.size());
  {
    std::vector<uint32_t> fill(succ_begin.begin(), succ_begin.end() - 1);
    for (const auto& [before, after] : edges_) succ[fill[static_cast<size_t>(before)]++] = after;
  }

  // Kahn's algorithm on dependencies + stream order: a task's in-degree is
  // its dependencies plus the streams in which another task precedes it.
  // stream_next[lanes_begin + j] is the task after it in one of its lanes'
  // streams (the j are not matched to lanes: only the multiset matters).
  std::vector<TaskId> stream_next(task_lanes_.size(), -1);
  std::vector<int32_t> indegree = num_deps;
  {
    std::vector<uint32_t> fill(n);
    for (size_t t = 0; t < n; ++t) fill[t] = tasks_[t].lanes_begin;
    for (const std::vector<TaskId>& order : stream_order_) {
      for (size_t i = 0; i + 1 < order.size(); ++i) {
        stream_next[fill[static_cast<size_t>(order[i])]++] = order[i + 1];
        ++indegree[static_cast<size_t>(order[i + 1])];
      }
    }
  }
  std::vector<TaskId> queue;
  queue.reserve(n);
  for (size_t t = 0; t < n; ++t) {
    if (indegree[t] == 0) queue.push_back(static_cast<TaskId>(t));
  }
  for (size_t head = 0; head < queue.size(); ++head) {
    const size_t t = static_cast<size_t>(queue[head]);
    for (uint32_t i = succ_begin[t]; i < succ_begin[t + 1]; ++i) {
      if (--indegree[static_cast<size_t>(succ[i])] == 0) queue.push_back(succ[i]);
    }
    const Task& task = tasks_[t];
    for (uint32_t i = task.lanes_begin; i < task.lanes_begin + task.num_lanes; ++i) {
      const TaskId next = stream_next[i];
      if (next >= 0 && --indegree[static_cast<size_t>(next)] == 0) queue.push_back(next);
    }
  }
  if (queue.size() < n) {
    // Every task left has a predecessor left (its in-degree is positive), so
    // walking back along predecessors left must close a cycle.
    std::vector<TaskId> pred(n, -1);
    for (const auto& [before, after] : edges_) {
      if (indegree[static_cast<size_t>(before)] > 0) pred[static_cast<size_t>(after)] = before;
    }
    for (const std::vector<TaskId>& order : stream_order_) {
      for (size_t i = 0; i + 1 < order.size(); ++i) {
        if (indegree[static_cast<size_t>(order[i])] > 0) {
          pred[static_cast<size_t>(order[i + 1])] = order[i];
        }
      }
    }
    TaskId at = 0;
    while (indegree[static_cast<size_t>(at)] == 0) ++at;
    std::vector<uint8_t> visited(n, 0);
    while (!visited[static_cast<size_t>(at)]) {
      visited[static_cast<size_t>(at)] = 1;
      at = pred[static_cast<size_t>(at)];
      ORRERY_CHECK(at >= 0) << "a task left by Kahn's algorithm without a predecessor left";
    }
    return FailedPreconditionError(
        "task graph: " + std::to_string(n - queue.size()) + " of " + std::to_string(n) +
        " tasks can never start: a cycle through dependencies and stream order passes " +
        DescribeTask(*this, at));
  }

  succ_begin_ = std::move(succ_begin);
  succ_ = std::move(succ);
  num_deps_ = std::move(num_deps);
  edges_.clear();
  edges_.shrink_to_fit();
  finalized_ = true;
  return Status::Ok();
}

std::span<const LaneId> TaskGraph::LanesOf(TaskId id) const {
  const Task& t = tasks_[static_cast<size_t>(id)];
  return std::span<const LaneId>(task_lanes_.data() + t.lanes_begin, t.num_lanes);
}

std::span<const TaskId> TaskGraph::StreamOrder(LaneId lane, StreamKind stream) const {
  return stream_order_[StreamIndex(lane, stream)];
}

std::span<const TaskId> TaskGraph::Successors(TaskId id) const {
  ORRERY_CHECK(finalized_) << "Successors before Finalize";
  const size_t t = static_cast<size_t>(id);
  return std::span<const TaskId>(succ_.data() + succ_begin_[t],
                                 succ_begin_[t + 1] - succ_begin_[t]);
}

LaneId TaskGraph::LaneOfRank(int rank) const {
  if (rank < 0 || static_cast<size_t>(rank) >= lane_of_rank_.size()) return -1;
  return lane_of_rank_[static_cast<size_t>(rank)];
}

}  // namespace orrery::sim
