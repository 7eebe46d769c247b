#include "sim/chrome_timeline.h"

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "traces/chrome_trace.h"

namespace orrery::sim {
namespace {

constexpr int kPid = 0;
constexpr int kFirstTransferTid = 1000;

std::string TaskName(const TimelineTask& task) {
  switch (task.kind) {
    case TimelineTask::Kind::kForward:
      return "F" + std::to_string(task.micro_batch);
    case TimelineTask::Kind::kBackward:
      return "B" + std::to_string(task.micro_batch);
    case TimelineTask::Kind::kGradientSync:
      return "gradient sync";
    case TimelineTask::Kind::kOptimizer:
      return "optimizer";
  }
  return "";
}

std::string TaskCategory(TimelineTask::Kind kind) {
  switch (kind) {
    case TimelineTask::Kind::kForward:
      return "forward";
    case TimelineTask::Kind::kBackward:
      return "backward";
    case TimelineTask::Kind::kGradientSync:
      return "gradient_sync";
    case TimelineTask::Kind::kOptimizer:
      return "optimizer";
  }
  return "";
}

}  // namespace

Json TimelineToChromeTrace(const Timeline& timeline) {
  traces::ChromeTrace trace;
  trace.SetProcessName(kPid, "pipeline (data-parallel replica 0)");
  for (const TimelineTask& task : timeline.tasks) {
    trace.SetThreadName(kPid, task.stage,
                        "stage " + std::to_string(task.stage) + " · rank " +
                            std::to_string(task.rank));
    Json args = Json::object();
    if (task.micro_batch >= 0) args["micro_batch"] = task.micro_batch;
    trace.AddComplete({.name = TaskName(task),
                       .category = TaskCategory(task.kind),
                       .pid = kPid,
                       .tid = task.stage,
                       .start = task.start,
                       .duration = task.end - task.start,
                       .args = std::move(args)});
  }

  // Transfers: per direction (gradient?, from, to), lanes filled first-fit
  // in order of start so that no two spans on one row overlap.
  using Direction = std::tuple<bool, int, int>;
  std::map<Direction, std::vector<Duration>> lane_ends;  // per lane, its last end
  std::vector<std::tuple<Direction, size_t, size_t>> placed;  // direction, lane, transfer
  for (size_t i = 0; i < timeline.transfers.size(); ++i) {
    const TimelineTransfer& t = timeline.transfers[i];
    std::vector<Duration>& ends = lane_ends[{t.gradient, t.from_stage, t.to_stage}];
    size_t lane = 0;
    while (lane < ends.size() && ends[lane] > t.start) ++lane;
    if (lane == ends.size()) ends.push_back(t.end);
    ends[lane] = t.end;
    placed.emplace_back(Direction{t.gradient, t.from_stage, t.to_stage}, lane, i);
  }
  std::map<std::pair<Direction, size_t>, int> tids;
  int next_tid = kFirstTransferTid;
  for (const auto& [direction, ends] : lane_ends) {
    for (size_t lane = 0; lane < ends.size(); ++lane) {
      const auto& [gradient, from, to] = direction;
      std::string name = std::string(gradient ? "gradients " : "activations ") +
                         std::to_string(from) + "→" + std::to_string(to);
      if (lane > 0) name += " #" + std::to_string(lane + 1);
      trace.SetThreadName(kPid, next_tid, name);
      tids[{direction, lane}] = next_tid++;
    }
  }
  for (const auto& [direction, lane, i] : placed) {
    const TimelineTransfer& t = timeline.transfers[i];
    trace.AddComplete(
        {.name = std::string(t.gradient ? "grad " : "act ") + std::to_string(t.micro_batch),
         .category = t.gradient ? "gradient_transfer" : "activation_transfer",
         .pid = kPid,
         .tid = tids.at({direction, lane}),
         .start = t.start,
         .duration = t.end - t.start,
         .args = Json{{"micro_batch", t.micro_batch},
                      {"bytes", t.bytes.count()},
                      {"from_stage", t.from_stage},
                      {"to_stage", t.to_stage},
                      {"from_rank", t.from_rank},
                      {"to_rank", t.to_rank}}});
  }
  return trace.ToJson();
}

}  // namespace orrery::sim
