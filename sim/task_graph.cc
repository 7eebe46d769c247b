#include "sim/task_graph.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/check.h"
#include "sim/engine.h"
#include "sim/flow_model.h"

namespace orrery::sim {

std::vector<PipelineOp> StageOrder(workload::PipelineSchedule schedule, int stages, int stage,
                                   int micro_batches) {
  ORRERY_CHECK(stage >= 0 && stage < stages);
  ORRERY_CHECK(micro_batches >= 1);
  std::vector<PipelineOp> order;
  order.reserve(2 * static_cast<size_t>(micro_batches));
  if (schedule == workload::PipelineSchedule::kGpipe) {
    for (int i = 0; i < micro_batches; ++i) order.push_back({false, i});
    for (int i = 0; i < micro_batches; ++i) order.push_back({true, i});
    return order;
  }
  ORRERY_CHECK(schedule == workload::PipelineSchedule::kOneFOneB);
  const int warmup = std::min(stages - stage - 1, micro_batches);
  for (int i = 0; i < warmup; ++i) order.push_back({false, i});
  for (int i = 0; i < micro_batches - warmup; ++i) {
    order.push_back({false, warmup + i});
    order.push_back({true, i});
  }
  for (int i = micro_batches - warmup; i < micro_batches; ++i) order.push_back({true, i});
  return order;
}

namespace {

enum class Transfer : uint64_t { kActivation = 0, kGradient = 1 };

uint64_t Tag(Transfer kind, int stage, int micro_batch) {
  return (static_cast<uint64_t>(kind) << 62) | (static_cast<uint64_t>(stage) << 32) |
         static_cast<uint64_t>(micro_batch);
}

// The state of one replay; the engine calls it when a compute operation
// ends (payload: the stage), the flow model when a transfer arrives.
class PipelineRun final : public EventHandler, public FlowObserver {
 public:
  PipelineRun(const PipelineSpec& spec, const TopologyNetwork* network, Timeline* timeline)
      : spec_(spec), network_(network), timeline_(timeline),
        p_(static_cast<int>(spec.stages.size())), m_(spec.micro_batches),
        stages_(static_cast<size_t>(p_)) {
    if (network_ != nullptr) flows_.emplace(&engine_, &network_->network());
    for (int s = 0; s < p_; ++s) {
      Stage& stage = stages_[static_cast<size_t>(s)];
      stage.ops = StageOrder(spec.schedule, p_, s, m_);
      stage.activation_ready.assign(static_cast<size_t>(m_), false);
      stage.gradient_ready.assign(static_cast<size_t>(m_), false);
      stage.activation_sent.assign(static_cast<size_t>(m_), Duration::Zero());
      stage.gradient_sent.assign(static_cast<size_t>(m_), Duration::Zero());
    }
  }

  PipelineResult Run() {
    for (int s = 0; s < p_; ++s) TryStart(s);
    engine_.Run();
    PipelineResult result;
    for (const Stage& stage : stages_) {
      ORRERY_CHECK(stage.next == stage.ops.size());  // the graph has no deadlock
      result.iteration_time = std::max(result.iteration_time, stage.times.end);
    }
    for (Stage& stage : stages_) {
      stage.times.bubble += result.iteration_time - stage.times.end;
      result.stages.push_back(stage.times);
    }
    result.events = engine_.events_fired();
    result.flows = flows_.has_value() ? flows_->stats().flows_started : 0;
    if (timeline_ != nullptr) timeline_->iteration_time = result.iteration_time;
    return result;
  }

  // A compute operation of stage `payload` ends.
  void OnEvent(EventId, uint64_t payload) override {
    const int s = static_cast<int>(payload);
    Stage& stage = stages_[static_cast<size_t>(s)];
    const PipelineOp op = stage.ops[stage.next];
    stage.running = false;
    ++stage.next;
    stage.idle_since = engine_.now();
    const int rank = spec_.stages[static_cast<size_t>(s)].rank;
    if (timeline_ != nullptr) {
      timeline_->tasks.push_back({op.backward ? TimelineTask::Kind::kBackward
                                              : TimelineTask::Kind::kForward,
                                  s, rank, op.micro_batch, stage.op_start, engine_.now()});
    }
    if (!op.backward && s + 1 < p_) Send(Transfer::kActivation, s, s + 1, op.micro_batch);
    if (op.backward && s > 0) Send(Transfer::kGradient, s, s - 1, op.micro_batch);
    if (stage.next == stage.ops.size()) {
      const StageCosts& costs = spec_.stages[static_cast<size_t>(s)];
      stage.times.exposed_comm += costs.gradient_sync;
      stage.times.busy += costs.optimizer;
      stage.times.end = engine_.now() + costs.gradient_sync + costs.optimizer;
      if (timeline_ != nullptr) {
        const Duration synced = engine_.now() + costs.gradient_sync;
        timeline_->tasks.push_back(
            {TimelineTask::Kind::kGradientSync, s, rank, -1, engine_.now(), synced});
        timeline_->tasks.push_back(
            {TimelineTask::Kind::kOptimizer, s, rank, -1, synced, stage.times.end});
      }
      return;
    }
    TryStart(s);
  }

  void OnFlowCompleted(FlowId, uint64_t tag) override {
    const auto kind = static_cast<Transfer>(tag >> 62);
    const int stage = static_cast<int>((tag >> 32) & 0x3fffffffu);
    const int micro_batch = static_cast<int>(tag & 0xffffffffu);
    if (timeline_ != nullptr) {
      const auto it = pending_.find(tag);
      ORRERY_CHECK(it != pending_.end());
      timeline_->transfers[it->second].end = engine_.now();
      pending_.erase(it);
    }
    Arrive(kind, stage, micro_batch);
  }

 private:
  struct Stage {
    std::vector<PipelineOp> ops;
    size_t next = 0;
    bool running = false;
    Duration op_start;  // of the running operation
    Duration idle_since;
    std::vector<bool> activation_ready;  // from stage s − 1, by micro-batch
    std::vector<bool> gradient_ready;    // from stage s + 1
    std::vector<Duration> activation_sent;
    std::vector<Duration> gradient_sent;
    StageTimes times;
  };

  void Send(Transfer kind, int from, int to, int micro_batch) {
    Stage& dest = stages_[static_cast<size_t>(to)];
    (kind == Transfer::kActivation ? dest.activation_sent
                                   : dest.gradient_sent)[static_cast<size_t>(micro_batch)] =
        engine_.now();
    const Bytes size =
        kind == Transfer::kActivation ? spec_.activation_bytes : spec_.gradient_bytes;
    if (timeline_ != nullptr) {
      if (flows_.has_value()) pending_[Tag(kind, to, micro_batch)] = timeline_->transfers.size();
      timeline_->transfers.push_back({kind == Transfer::kGradient, from, to,
                                      spec_.stages[static_cast<size_t>(from)].rank,
                                      spec_.stages[static_cast<size_t>(to)].rank, micro_batch,
                                      size, engine_.now(), engine_.now()});
    }
    if (!flows_.has_value()) {
      Arrive(kind, to, micro_batch);
      return;
    }
    network_->RouteInto(spec_.stages[static_cast<size_t>(from)].rank,
                        spec_.stages[static_cast<size_t>(to)].rank, &route_, &scratch_);
    flows_->StartFlow(route_, size, this, Tag(kind, to, micro_batch));
  }

  void Arrive(Transfer kind, int stage, int micro_batch) {
    Stage& dest = stages_[static_cast<size_t>(stage)];
    (kind == Transfer::kActivation ? dest.activation_ready
                                   : dest.gradient_ready)[static_cast<size_t>(micro_batch)] = true;
    TryStart(stage);
  }

  // Starts stage s's next operation if the stream is free and its input has
  // arrived, charging the idle time before it to bubble or exposed comm.
  void TryStart(int s) {
    Stage& stage = stages_[static_cast<size_t>(s)];
    if (stage.running || stage.next == stage.ops.size()) return;
    const PipelineOp op = stage.ops[stage.next];
    const size_t i = static_cast<size_t>(op.micro_batch);
    bool waits = false;
    Duration sent;
    if (!op.backward && s > 0) {
      if (!stage.activation_ready[i]) return;
      waits = true;
      sent = stage.activation_sent[i];
    } else if (op.backward && s + 1 < p_) {
      if (!stage.gradient_ready[i]) return;
      waits = true;
      sent = stage.gradient_sent[i];
    }
    const Duration now = engine_.now();
    const Duration idle = now - stage.idle_since;
    const Duration comm = waits ? now - std::max(stage.idle_since, sent) : Duration::Zero();
    stage.times.exposed_comm += comm;
    stage.times.bubble += idle - comm;
    const StageCosts& costs = spec_.stages[static_cast<size_t>(s)];
    const Duration length = op.backward ? costs.backward : costs.forward;
    stage.times.busy += length;
    stage.running = true;
    stage.op_start = now;
    engine_.ScheduleAfter(length, this, static_cast<uint64_t>(s));
  }

  const PipelineSpec& spec_;
  const TopologyNetwork* network_;
  Timeline* timeline_;  // null: not recorded
  std::map<uint64_t, size_t> pending_;  // flow tag → index in timeline_->transfers
  const int p_;
  const int m_;
  Engine engine_;
  std::optional<FlowModel> flows_;
  std::vector<Stage> stages_;
  std::vector<LinkId> route_;
  std::vector<topology::LinkId> scratch_;
};

}  // namespace

Result<PipelineResult> SimulatePipeline(const PipelineSpec& spec, const TopologyNetwork* network,
                                        Timeline* timeline) {
  if (spec.stages.empty()) return InvalidArgumentError("pipeline: no stages");
  if (spec.micro_batches < 1) {
    return InvalidArgumentError("pipeline: micro_batches must be >= 1, got " +
                                std::to_string(spec.micro_batches));
  }
  if (spec.schedule == workload::PipelineSchedule::kInterleaved) {
    return InvalidArgumentError(
        "pipeline: the interleaved schedule is not simulated yet (gpipe and 1f1b are)");
  }
  if (spec.activation_bytes < Bytes::Zero() || spec.gradient_bytes < Bytes::Zero()) {
    return InvalidArgumentError("pipeline: transfer sizes must be >= 0");
  }
  for (size_t s = 0; s < spec.stages.size(); ++s) {
    const StageCosts& c = spec.stages[s];
    if (c.forward < Duration::Zero() || c.backward < Duration::Zero() ||
        c.gradient_sync < Duration::Zero() || c.optimizer < Duration::Zero()) {
      return InvalidArgumentError("pipeline: stage " + std::to_string(s) +
                                  " has a negative cost");
    }
    if (network != nullptr && (c.rank < 0 || c.rank >= network->topology().num_devices())) {
      return InvalidArgumentError("pipeline: stage " + std::to_string(s) + " rank " +
                                  std::to_string(c.rank) + " is not a device of the topology (" +
                                  std::to_string(network->topology().num_devices()) +
                                  " devices)");
    }
  }
  if (timeline != nullptr) *timeline = Timeline();
  PipelineRun run(spec, network, timeline);
  return run.Run();
}

}  // namespace orrery::sim
