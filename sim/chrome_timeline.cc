#include "sim/chrome_timeline.h"

#include <string>
#include <utility>

#include "core/check.h"
#include "traces/chrome_trace.h"

namespace orrery::sim {
namespace {

std::string TaskName(const Task& task) {
  std::string name;
  const int mb = task.info.micro_batch;
  switch (task.label) {
    case TaskLabel::kForward:
      name = "F" + std::to_string(mb);
      break;
    case TaskLabel::kBackward:
      name = "B" + std::to_string(mb);
      break;
    case TaskLabel::kRecompute:
      name = "R" + std::to_string(mb);
      break;
    case TaskLabel::kOptimizer:
      return "optimizer";
    default:
      name = std::string(TaskLabelName(task.label));
      if (mb >= 0) name += " mb" + std::to_string(mb);
      if (task.info.bucket >= 0) name += " bucket " + std::to_string(task.info.bucket);
      break;
  }
  if (task.info.chunk > 0) name += " c" + std::to_string(task.info.chunk);
  return name;
}

}  // namespace

Json TraceToChromeTrace(const IterationTrace& trace) {
  const TaskGraph& graph = trace.graph.graph;
  const ReplayResult& replay = trace.replay;
  ORRERY_CHECK(replay.spans.size() == graph.num_tasks()) << "the replay recorded no spans";
  const int per_node = trace.devices_per_node;
  traces::ChromeTrace out;
  for (size_t l = 0; l < graph.num_lanes(); ++l) {
    for (int rank : graph.lane(static_cast<LaneId>(l)).ranks) {
      const int node = rank / per_node;
      out.SetProcessName(node, "node " + std::to_string(node));
      for (int s = 0; s < kNumStreams; ++s) {
        out.SetThreadName(node, (rank % per_node) * kNumStreams + s,
                          "rank " + std::to_string(rank) + " · " +
                              std::string(StreamKindName(static_cast<StreamKind>(s))));
      }
    }
  }
  for (const TaskSpan& span : replay.spans) {
    const Duration length = span.end - span.start;
    if (length <= Duration::Zero()) continue;
    const Task& task = graph.task(span.task);
    Json args = Json::object();
    if (task.info.micro_batch >= 0) args["micro_batch"] = task.info.micro_batch;
    if (task.info.chunk > 0) args["chunk"] = task.info.chunk;
    if (task.communication) {
      args["edge_bytes"] = task.coflow.progress_bytes.count();
      args["uncontended_us"] = traces::ChromeTraceMicros(task.coflow.uncontended_time);
      if (task.coflow.uncontended_time > Duration::Zero()) {
        args["slowdown"] = length.ToSeconds() / task.coflow.uncontended_time.ToSeconds();
      }
      Json group = Json::array();
      for (LaneId lane : graph.LanesOf(span.task)) group.push_back(graph.lane(lane).ranks.front());
      args["lanes_first_ranks"] = std::move(group);
    }
    const std::string name = TaskName(task);
    const std::string category(TaskLabelName(task.label));
    for (LaneId lane : graph.LanesOf(span.task)) {
      for (int rank : graph.lane(lane).ranks) {
        out.AddComplete({.name = name,
                         .category = category,
                         .pid = rank / per_node,
                         .tid = (rank % per_node) * kNumStreams + static_cast<int>(task.stream),
                         .start = span.start,
                         .duration = length,
                         .args = args});
      }
    }
  }
  return out.ToJson();
}

}  // namespace orrery::sim
