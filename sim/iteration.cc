#include "sim/iteration.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "core/check.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "sim/network_builder.h"
#include "topology/topology_graph.h"
#include "workload/operators.h"

namespace orrery::sim {
namespace {

using costmodel::CollectiveOp;
using workload::LayerKind;
using workload::LayerStrategy;

// The collective group of `ranks` as the collective model sees it: how many
// nodes, how many ranks on each, consecutive or strided.
costmodel::RankGroup GroupOf(const std::vector<int>& ranks, const topology::Topology& topo) {
  std::set<int> nodes;
  for (int r : ranks) nodes.insert(topo.NodeOfRank(r));
  costmodel::RankGroup group;
  group.nodes = static_cast<int>(nodes.size());
  group.ranks_per_node = (static_cast<int>(ranks.size()) + group.nodes - 1) / group.nodes;
  std::vector<int> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (topo.NodeOfRank(sorted[i]) == topo.NodeOfRank(sorted[i - 1]) &&
        sorted[i] != sorted[i - 1] + 1) {
      group.placement = costmodel::RankGroup::Placement::kStrided;
    }
  }
  return group;
}

// The ranks holding `rank` that differ from it only in their dp and cp
// coordinates for layer `layer`: the gradient-reduction group.
std::vector<int> GradientGroup(const workload::Plan& plan, int layer, int rank) {
  const auto groups_of = [&](workload::ParallelDim dim) {
    return workload::RankGroups(plan, layer, dim);
  };
  const std::vector<std::vector<int>> cp_groups = groups_of(workload::ParallelDim::kCp);
  const std::vector<std::vector<int>> dp_groups = groups_of(workload::ParallelDim::kDp);
  std::vector<int> cp_members;
  for (const std::vector<int>& g : cp_groups) {
    if (std::find(g.begin(), g.end(), rank) != g.end()) cp_members = g;
  }
  std::set<int> members;
  for (int r : cp_members) {
    for (const std::vector<int>& g : dp_groups) {
      if (std::find(g.begin(), g.end(), r) != g.end()) members.insert(g.begin(), g.end());
    }
  }
  return std::vector<int>(members.begin(), members.end());
}

Result<Duration> CollectiveTime(const costmodel::CollectiveModel& model, CollectiveOp op,
                                Bytes size, const costmodel::RankGroup& group) {
  if (group.Size() <= 1 || size == Bytes::Zero()) return Duration::Zero();
  ORRERY_ASSIGN_OR_RETURN(costmodel::CollectiveEstimate e, model.Estimate(op, size, group));
  return e.time;
}

bool IsBlock(LayerKind kind) {
  return kind != LayerKind::kEmbedding && kind != LayerKind::kPatchEmbedding &&
         kind != LayerKind::kLmHead;
}

}  // namespace

Result<IterationReport> SimulateIteration(const workload::ModelSpec& model,
                                          const workload::Plan& plan,
                                          const topology::ClusterSpec& cluster,
                                          const IterationOptions& options,
                                          Timeline* timeline) {
  ORRERY_RETURN_IF_ERROR(workload::ValidatePlan(plan, model, cluster));
  if (plan.schedule == workload::PipelineSchedule::kInterleaved) {
    return InvalidArgumentError(
        "plan.schedule: the interleaved schedule is not simulated yet (gpipe and 1f1b are)");
  }
  if (options.gradient_bytes_per_parameter < 0 || options.optimizer_bytes_per_parameter < 0) {
    return InvalidArgumentError("simulate options: bytes per parameter must be >= 0");
  }
  const topology::DeviceType& device = cluster.PrimaryNodeType().device;
  ORRERY_ASSIGN_OR_RETURN(costmodel::ComputeModel compute,
                          costmodel::ComputeModel::Create(device, plan.precision));
  ORRERY_ASSIGN_OR_RETURN(costmodel::CollectiveModel collectives,
                          costmodel::CollectiveModel::Create(cluster));
  ORRERY_ASSIGN_OR_RETURN(topology::Topology topo, topology::Topology::Build(cluster));
  const TopologyNetwork network(&topo);

  const std::vector<LayerKind> kinds = workload::ModelLayers(model);  // embedding, blocks, head
  ORRERY_CHECK(static_cast<int>(kinds.size()) == plan.num_layers() + 2);
  const std::vector<int> bounds = plan.StageBoundaries();
  const int64_t seq = plan.sequence_length;

  // The pipeline of replica 0: the pp group holding rank 0.
  std::vector<int> stage_ranks;
  for (const std::vector<int>& g : workload::RankGroups(plan, 0, workload::ParallelDim::kPp)) {
    if (std::find(g.begin(), g.end(), 0) != g.end()) stage_ranks = g;
  }
  ORRERY_CHECK(static_cast<int>(stage_ranks.size()) == plan.pp);

  IterationReport report;
  report.schedule = plan.schedule;
  report.micro_batches = plan.NumMicroBatches();
  const LayerStrategy& first = plan.layers.front();
  report.devices = plan.pp * first.tp * first.cp * first.dp;
  ORRERY_CHECK(report.devices >= 1);
  {
    const int64_t b = plan.MicroBatchSizeOfLayer(0);
    report.p2p_bytes = Bytes(b * (seq / first.cp) * model.hidden_size * 2);
  }

  PipelineSpec spec;
  spec.micro_batches = report.micro_batches;
  spec.schedule = plan.schedule;
  spec.activation_bytes = report.p2p_bytes;
  spec.gradient_bytes = report.p2p_bytes;
  const Bandwidth optimizer_bandwidth =
      device.memory_bandwidth * compute.options().bandwidth_efficiency;

  for (int s = 0; s < plan.pp; ++s) {
    StageReport stage;
    stage.rank = stage_ranks[static_cast<size_t>(s)];
    stage.first_layer = bounds[static_cast<size_t>(s)];
    stage.layers = bounds[static_cast<size_t>(s) + 1] - stage.first_layer;
    // Model layers of the stage: indices into `kinds` (block i is kinds[i + 1]).
    int from = stage.first_layer + 1;
    int to = stage.first_layer + stage.layers + 1;
    if (s == 0) from = 0;
    if (s == plan.pp - 1) to = static_cast<int>(kinds.size());
    for (int k = from; k < to; ++k) {
      const int layer = std::clamp(k - 1, 0, plan.num_layers() - 1);
      const LayerStrategy& st = plan.layers[static_cast<size_t>(layer)];
      const int64_t b = plan.MicroBatchSizeOfLayer(layer);
      workload::ExpansionOptions expansion;
      expansion.flash_attention = options.flash_attention;
      ORRERY_ASSIGN_OR_RETURN(
          workload::LayerOperators ops,
          workload::ExpandLayer(model, kinds[static_cast<size_t>(k)], b, seq,
                                {.tp = st.tp, .sequence_parallel = st.sequence_parallel,
                                 .cp = st.cp, .ep = st.ep},
                                expansion));
      const costmodel::ComputeEstimate e = compute.EstimateLayer(ops);
      Duration recompute;
      if (st.recompute == workload::Recompute::kFull && IsBlock(ops.kind)) {
        recompute = e.forward;
      } else if (st.recompute == workload::Recompute::kSelective) {
        for (const workload::Operator& op : ops.ops) {
          if (op.recomputed_selectively) recompute += compute.Estimate(op).forward;
        }
      }
      stage.forward += e.forward;
      stage.backward += e.backward + recompute;
      stage.parameters += ops.Parameters();

      if (IsBlock(ops.kind) && st.tp > 1 && !options.free_communication) {
        ORRERY_ASSIGN_OR_RETURN(costmodel::RankGroup tp_group, costmodel::PackRanks(cluster, st.tp));
        const Bytes size(b * (seq / st.cp) * model.hidden_size * 2);
        Duration one;  // one of Megatron's f/g operators
        if (st.sequence_parallel) {
          ORRERY_ASSIGN_OR_RETURN(Duration ag, CollectiveTime(collectives, CollectiveOp::kAllGather,
                                                               size, tp_group));
          ORRERY_ASSIGN_OR_RETURN(Duration rs, CollectiveTime(collectives,
                                                               CollectiveOp::kReduceScatter, size,
                                                               tp_group));
          one = ag + rs;
        } else {
          ORRERY_ASSIGN_OR_RETURN(Duration ar, CollectiveTime(collectives, CollectiveOp::kAllReduce,
                                                               size, tp_group));
          one = ar * 2;
        }
        stage.forward += one;
        stage.backward += one;
        stage.tp_comm += one * 2;
      }
    }

    const int anchor = std::min(stage.first_layer, plan.num_layers() - 1);
    const LayerStrategy& st = plan.layers[static_cast<size_t>(anchor)];
    const int replicas = st.dp * st.cp;
    if (!options.free_communication && replicas > 1) {
      const std::vector<int> group = GradientGroup(plan, anchor, stage.rank);
      const Bytes gradients(stage.parameters * options.gradient_bytes_per_parameter);
      ORRERY_ASSIGN_OR_RETURN(stage.gradient_sync,
                              CollectiveTime(collectives, CollectiveOp::kAllReduce, gradients,
                                             GroupOf(group, topo)));
    }
    const int64_t held = st.zero_stage >= 1 ? stage.parameters / replicas : stage.parameters;
    stage.optimizer = Bytes(held * options.optimizer_bytes_per_parameter) / optimizer_bandwidth;

    spec.stages.push_back({.rank = stage.rank,
                           .forward = stage.forward,
                           .backward = stage.backward,
                           .gradient_sync = stage.gradient_sync,
                           .optimizer = stage.optimizer});
    report.stages.push_back(stage);
  }

  ORRERY_ASSIGN_OR_RETURN(PipelineResult run,
                          SimulatePipeline(spec, options.free_communication ? nullptr : &network,
                                           timeline));
  report.iteration_time = run.iteration_time;
  report.events = run.events;
  report.flows = run.flows;
  for (size_t s = 0; s < report.stages.size(); ++s) report.stages[s].times = run.stages[s];

  const double seconds = run.iteration_time.ToSeconds();
  ORRERY_CHECK(seconds > 0);
  const double samples = static_cast<double>(plan.global_batch_size);
  report.samples_per_s = samples / seconds;
  report.tokens_per_s = samples * static_cast<double>(seq) / seconds;
  const workload::FlopsPerToken per_token =
      workload::TrainingFlopsPerToken(model, seq, workload::RecomputeAccounting::kNone);
  report.model_flops_per_device = FlopRate::FromFlopsPerSecond(
      per_token.model.count() * report.tokens_per_s / static_cast<double>(report.devices));
  report.peak_per_device = compute.tensor_peak();
  report.mfu = report.model_flops_per_device / report.peak_per_device;
  return report;
}

}  // namespace orrery::sim
