#include "sim/iteration.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "sim/collective_flows.h"
#include "sim/network_builder.h"
#include "topology/topology_graph.h"
#include "workload/operators.h"

namespace orrery::sim {
namespace {

workload::RecomputeAccounting AccountingOf(const workload::Plan& plan) {
  // The hardware FLOPs count the recomputation of the plan's first layer
  // (uniform plans; a mixed plan is approximated by its first layer).
  switch (plan.layers.front().recompute) {
    case workload::Recompute::kNone:
      return workload::RecomputeAccounting::kNone;
    case workload::Recompute::kSelective:
      return workload::RecomputeAccounting::kSelective;
    case workload::Recompute::kFull:
      return workload::RecomputeAccounting::kFull;
  }
  return workload::RecomputeAccounting::kNone;
}

}  // namespace

Result<IterationReport> SimulateIteration(const workload::ModelSpec& model,
                                          const workload::Plan& plan,
                                          const topology::ClusterSpec& cluster,
                                          const IterationOptions& options,
                                          IterationTrace* trace) {
  ORRERY_RETURN_IF_ERROR(workload::ValidatePlan(plan, model, cluster));
  const topology::DeviceType& device = cluster.PrimaryNodeType().device;
  // With a calibration: its measured tables and refitted figures (options.compute,
  // when given, replaces the figures), its fitted collectives and its optimizer
  // step; without: the nominal models (CalibratedComputeModel of nullptr).
  const costmodel::Calibration* calibration = options.calibration.get();
  ORRERY_ASSIGN_OR_RETURN(
      costmodel::ComputeModel compute,
      costmodel::CalibratedComputeModel(device, plan.precision, calibration, options.compute));
  ORRERY_ASSIGN_OR_RETURN(costmodel::CollectiveModel collectives,
                          costmodel::CalibratedCollectiveModel(cluster, calibration));
  TrainingGraphOptions graph_options = options.graph;
  if (calibration != nullptr && !graph_options.optimizer_time_per_parameter.has_value()) {
    graph_options.optimizer_time_per_parameter = calibration->optimizer_time_per_parameter;
  }
  ORRERY_ASSIGN_OR_RETURN(topology::Topology topo, topology::Topology::Build(cluster));
  // Faults (sim/faults.h): degraded links divide their sim links' capacity
  // here; slow devices slow their lanes in the replay below.
  ORRERY_RETURN_IF_ERROR(
      CheckFaults(options.faults, topo).WithContext("cluster " + cluster.name));
  std::vector<LinkDegradation> degraded;
  for (const DegradedLink& d : options.faults.degraded_links) {
    ORRERY_ASSIGN_OR_RETURN(const std::vector<topology::LinkId> links,
                            ResolveDegradedLink(topo, d));
    for (const topology::LinkId link : links) degraded.push_back({link, d.factor});
  }
  const TopologyNetwork network(&topo, degraded);
  CollectiveFlows flows(&network, &collectives);

  ORRERY_ASSIGN_OR_RETURN(TrainingGraph built,
                          BuildTrainingGraph(model, plan, cluster, compute, &flows, graph_options));
  ReplayOptions replay_options;
  replay_options.free_communication = options.free_communication;
  replay_options.overlap_slowdown = options.overlap_slowdown;
  replay_options.record_spans = trace != nullptr;
  // A slow rank slows its whole lane: the lane is its tensor-parallel group
  // (sim/task_graph.h), whose per-layer collectives make every member wait
  // for the slowest, so the group runs at the slow rank's pace.
  // Faults on one rank multiply; a lane goes at its slowest rank's pace.
  if (!options.faults.slow_devices.empty()) {
    replay_options.compute_factor.assign(built.graph.num_lanes(), 1.0);
    std::map<int, double> rank_factor;
    for (const SlowDevice& s : options.faults.slow_devices) {
      if (built.graph.LaneOfRank(s.rank) < 0) {
        return InvalidArgumentError("slow device \"" + SlowDeviceText(s) + "\": rank " +
                                    std::to_string(s.rank) + " is not one of the plan's ranks");
      }
      auto [it, inserted] = rank_factor.emplace(s.rank, s.factor);
      if (!inserted) it->second *= s.factor;
    }
    for (const auto& [rank, factor] : rank_factor) {
      double& f = replay_options.compute_factor[static_cast<size_t>(built.graph.LaneOfRank(rank))];
      f = std::max(f, factor);
    }
  }
  ORRERY_ASSIGN_OR_RETURN(ReplayResult replay,
                          Replay(built.graph, options.free_communication ? nullptr : &flows,
                                 options.free_communication ? nullptr : &network,
                                 replay_options));

  IterationReport report;
  report.iteration_time = replay.makespan;
  report.schedule = plan.schedule;
  report.vpp = built.costs.vpp;
  report.micro_batches = plan.NumMicroBatches();
  const workload::LayerStrategy& first = plan.layers.front();
  report.devices = plan.pp * first.tp * first.cp * first.dp;
  report.p2p_bytes = built.costs.p2p_bytes;
  report.lanes = static_cast<int64_t>(built.graph.num_lanes());
  report.tasks = static_cast<int64_t>(built.graph.num_tasks());
  report.events = replay.events;
  report.flows = replay.flows;
  report.memory_capacity = built.memory.capacity;
  report.usable_memory = built.memory.Usable();

  Duration latest = Duration::FromPicos(-1);
  for (int s = 0; s < plan.pp; ++s) {
    StageReport stage;
    stage.stage = s;
    const std::vector<LaneId>& lanes = built.lanes_of_stage[static_cast<size_t>(s)];
    ORRERY_CHECK(!lanes.empty());
    stage.rank = built.graph.lane(lanes.front()).ranks.front();
    for (int c = 0; c < built.costs.vpp; ++c) {
      const ChunkCost& chunk = built.costs.chunk(s, c);
      stage.parameters += chunk.Parameters();
      stage.forward += chunk.Forward();
      stage.backward += chunk.Backward();
      for (const LayerCost& l : chunk.layers) {
        if (l.kind != workload::LayerKind::kEmbedding &&
            l.kind != workload::LayerKind::kPatchEmbedding &&
            l.kind != workload::LayerKind::kLmHead) {
          ++stage.layers;
        }
        stage.recompute += l.recompute;
        stage.path_comm += l.ForwardComm() + l.BackwardComm();
      }
    }
    stage.first_layer = ChunkLayerRanges(plan)[static_cast<size_t>(s * built.costs.vpp)].first;
    bool have = false;
    size_t stage_bound = 0;  // the index in `lanes` of the stage's lane that ends last
    for (size_t i = 0; i < lanes.size(); ++i) {
      const LaneTimes& t = replay.lanes[static_cast<size_t>(lanes[i])];
      if (!have || t.end > stage.times.end) {
        stage.times = t;
        stage_bound = i;
      }
      have = true;
      stage.peak_memory = std::max(stage.peak_memory, t.peak_memory);
    }
    stage.estimated_memory = built.memory.stages[static_cast<size_t>(s)].Total();
    report.peak_memory = std::max(report.peak_memory, stage.peak_memory);
    if (stage.times.end > latest) {
      latest = stage.times.end;
      report.bound_stage = s;
      report.bound_replica = static_cast<int>(stage_bound);
      report.bound_ranks = built.graph.lane(lanes[stage_bound]).ranks;
      report.breakdown = stage.times;
    }
    report.stages.push_back(std::move(stage));
  }
  report.fits_memory = report.peak_memory <= report.usable_memory;

  const double seconds = replay.makespan.ToSeconds();
  ORRERY_CHECK(seconds > 0);
  const double samples = static_cast<double>(plan.global_batch_size);
  report.samples_per_s = samples / seconds;
  report.tokens_per_s = samples * static_cast<double>(plan.sequence_length) / seconds;
  const workload::FlopsPerToken per_token =
      workload::TrainingFlopsPerToken(model, plan.sequence_length, AccountingOf(plan));
  const double per_device = report.tokens_per_s / static_cast<double>(report.devices);
  report.model_flops_per_device =
      FlopRate::FromFlopsPerSecond(per_token.model.count() * per_device);
  report.hardware_flops_per_device =
      FlopRate::FromFlopsPerSecond(per_token.hardware.count() * per_device);
  report.peak_per_device = compute.tensor_peak();
  report.mfu = report.model_flops_per_device / report.peak_per_device;

  if (trace != nullptr) {
    trace->devices_per_node = cluster.PrimaryNodeType().devices_per_node;
    trace->graph = std::move(built);
    trace->replay = std::move(replay);
  }
  return report;
}

}  // namespace orrery::sim
