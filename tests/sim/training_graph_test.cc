// The training-iteration task graph: lanes, the tasks of each stream of
// each lane by formula, interleaved and ZeRO-3 graphs, the plans the
// builder rejects, and replays with free communication against an
// independent recurrence over the StageCostTable and against the memory
// model's closed form.
#include "sim/training_graph.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "sim/collective_flows.h"
#include "sim/network_builder.h"
#include "workload/pipeline_schedule.h"
#include "sim/replay.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::sim {
namespace {

using workload::PipelinePass;
using workload::StageSchedule;

using workload::LayerStrategy;
using workload::PipelineSchedule;
using workload::Plan;

// gpt-1.7b (24 layers, hidden 2304) on DGX A100 nodes, with everything the
// builder needs.
struct World {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
  std::unique_ptr<topology::Topology> topology;
  std::unique_ptr<TopologyNetwork> network;
  std::unique_ptr<costmodel::CollectiveModel> collectives;
  std::unique_ptr<CollectiveFlows> flows;
  std::unique_ptr<costmodel::ComputeModel> compute;

  explicit World(int nodes) {
    Result<workload::ModelSpec> m = workload::ModelPreset("gpt-1.7b");
    Result<topology::ClusterSpec> c = topology::ResolveCluster("dgx-a100-80gb", nodes);
    EXPECT_TRUE(m.ok() && c.ok());
    model = *m;
    cluster = *c;
    Result<topology::Topology> t = topology::Topology::Build(cluster);
    EXPECT_TRUE(t.ok()) << t.status().message();
    topology = std::make_unique<topology::Topology>(std::move(t).value());
    network = std::make_unique<TopologyNetwork>(topology.get());
    Result<costmodel::CollectiveModel> cm = costmodel::CollectiveModel::Create(cluster);
    EXPECT_TRUE(cm.ok()) << cm.status().message();
    collectives = std::make_unique<costmodel::CollectiveModel>(std::move(cm).value());
    flows = std::make_unique<CollectiveFlows>(network.get(), collectives.get());
    Result<costmodel::ComputeModel> cp = costmodel::ComputeModel::Create(
        cluster.PrimaryNodeType().device, topology::Precision::kBf16);
    EXPECT_TRUE(cp.ok()) << cp.status().message();
    compute = std::make_unique<costmodel::ComputeModel>(std::move(cp).value());
  }

  Result<TrainingGraph> Build(const Plan& plan, const TrainingGraphOptions& options = {}) {
    return BuildTrainingGraph(model, plan, cluster, *compute, flows.get(), options);
  }
};

// Tasks of `lane`'s `stream` with `label`.
int Count(const TaskGraph& g, LaneId lane, StreamKind stream, TaskLabel label) {
  int n = 0;
  for (const TaskId t : g.StreamOrder(lane, stream)) n += g.task(t).label == label ? 1 : 0;
  return n;
}

int StreamSize(const TaskGraph& g, LaneId lane, StreamKind stream) {
  return static_cast<int>(g.StreamOrder(lane, stream).size());
}

TEST(TrainingGraph, OneLanePerTensorParallelGroupOfEachStage) {
  World world(1);
  // 8 GPUs: pp 2 × tp 2 × dp 2; Megatron's order tp-cp-ep-dp-pp puts tp
  // innermost: stage 0 holds ranks 0-3, lanes {0,1} and {2,3}.
  const Plan plan = Plan::Uniform(world.model, 2, {.tp = 2, .dp = 2}, 8, 1);
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_TRUE(built.ok()) << built.status().message();
  const TaskGraph& g = built->graph;
  EXPECT_TRUE(g.finalized());
  ASSERT_EQ(g.num_lanes(), 4u);  // devices / tp
  ASSERT_EQ(built->lanes_of_stage.size(), 2u);
  std::set<int> ranks;
  for (int s = 0; s < 2; ++s) {
    ASSERT_EQ(built->lanes_of_stage[static_cast<size_t>(s)].size(), 2u);
    for (int replica = 0; replica < 2; ++replica) {
      const Lane& lane =
          g.lane(built->lanes_of_stage[static_cast<size_t>(s)][static_cast<size_t>(replica)]);
      EXPECT_EQ(lane.stage, s);
      EXPECT_EQ(lane.replica, replica);
      const std::vector<int> expected = {4 * s + 2 * replica, 4 * s + 2 * replica + 1};
      EXPECT_EQ(lane.ranks, expected);
      ranks.insert(lane.ranks.begin(), lane.ranks.end());
    }
  }
  EXPECT_EQ(ranks.size(), 8u);
}

TEST(TrainingGraph, TaskCountsPerLaneFollowTheScheduleLayersAndBuckets) {
  World world(1);
  const Plan plan = Plan::Uniform(world.model, 2, {.tp = 2, .dp = 2}, 8, 1);
  const int m = plan.NumMicroBatches();
  ASSERT_EQ(m, 4);
  for (const int64_t bucket : {int64_t{1}, int64_t{1'000'000'000'000}}) {
    TrainingGraphOptions options;
    options.bucket_parameters = bucket;
    Result<TrainingGraph> built = world.Build(plan, options);
    ASSERT_TRUE(built.ok()) << built.status().message();
    const TaskGraph& g = built->graph;
    for (int s = 0; s < 2; ++s) {
      for (const LaneId lane : built->lanes_of_stage[static_cast<size_t>(s)]) {
        // 13 layers per stage (12 blocks + the embedding or the head).
        // Without SP the blocks all-reduce twice forward and backward: one
        // tp task per pass; the vocabulary-parallel embedding all-reduces
        // forward only, the head backward only.
        EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kForward), 13 * m);
        EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kBackward), 13 * m);
        EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kRecompute), 0);
        EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kTensorParallel), 25 * m);
        EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kOptimizer), 1);
        EXPECT_EQ(StreamSize(g, lane, StreamKind::kCompute), 51 * m + 1);
        // One bucket per layer, or one per chunk; all-reduce without ZeRO.
        EXPECT_EQ(StreamSize(g, lane, StreamKind::kDataParallel), bucket == 1 ? 13 : 1);
        EXPECT_EQ(Count(g, lane, StreamKind::kDataParallel, TaskLabel::kGradientReduce),
                  bucket == 1 ? 13 : 1);
        // Stage 0 sends activations, stage 1 gradients.
        EXPECT_EQ(Count(g, lane, StreamKind::kPipelineSend,
                        s == 0 ? TaskLabel::kPipelineActivation : TaskLabel::kPipelineGradient),
                  m);
        EXPECT_EQ(StreamSize(g, lane, StreamKind::kPipelineSend), m);
      }
    }
    // Each gradient reduction spans the two data-parallel replicas of its
    // stage, and waits for the backward of the last micro-batch.
    for (const TaskId t : g.StreamOrder(0, StreamKind::kDataParallel)) {
      const std::span<const LaneId> lanes = g.LanesOf(t);
      EXPECT_EQ(std::vector<LaneId>(lanes.begin(), lanes.end()), built->lanes_of_stage[0]);
      EXPECT_EQ(g.NumDependencies(t), 2);
      EXPECT_GT(g.task(t).coflow.progress_bytes, Bytes::Zero());
    }
  }
}

TEST(TrainingGraph, ComputeTasksInScheduleOrderWithActivationsAllocatedAndFreed) {
  World world(1);
  Plan plan = Plan::Uniform(world.model, 4, {.tp = 2, .dp = 1}, 4, 1);
  plan.layers.assign(plan.layers.size(),
                     {.tp = 2, .dp = 1, .recompute = workload::Recompute::kFull});
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_TRUE(built.ok()) << built.status().message();
  const TaskGraph& g = built->graph;
  for (int s = 0; s < 4; ++s) {
    const LaneId lane = built->lanes_of_stage[static_cast<size_t>(s)][0];
    const std::vector<PipelinePass> schedule = StageSchedule(plan.schedule, 4, s, 4, 1);
    std::vector<PipelinePass> seen;
    Bytes allocated, freed;
    for (const TaskId t : g.StreamOrder(lane, StreamKind::kCompute)) {
      const Task& task = g.task(t);
      allocated += task.alloc_at_start;
      freed += task.free_at_end;
      if (task.label != TaskLabel::kForward && task.label != TaskLabel::kBackward) continue;
      const PipelinePass pass{task.label == TaskLabel::kBackward, task.info.micro_batch,
                              task.info.chunk};
      if (seen.empty() || !(seen.back() == pass)) seen.push_back(pass);
    }
    EXPECT_EQ(seen, schedule) << "stage " << s;
    EXPECT_EQ(allocated, freed) << "stage " << s;
    EXPECT_GT(allocated, Bytes::Zero());
    // Full recomputation: one recompute task per block per backward.
    const int blocks = 6;
    EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kRecompute), blocks * 4);
  }
}

TEST(TrainingGraph, InterleavedScheduleSendsAcrossVirtualStages) {
  World world(1);
  Plan plan = Plan::Uniform(world.model, 2, {.tp = 1, .dp = 4}, 16, 1);
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  const int m = plan.NumMicroBatches();
  ASSERT_EQ(m, 4);
  TrainingGraphOptions options;
  options.bucket_parameters = int64_t{1} << 50;  // one bucket per chunk
  Result<TrainingGraph> built = world.Build(plan, options);
  ASSERT_TRUE(built.ok()) << built.status().message();
  const TaskGraph& g = built->graph;
  ASSERT_EQ(g.num_lanes(), 8u);
  for (int s = 0; s < 2; ++s) {
    const LaneId lane = built->lanes_of_stage[static_cast<size_t>(s)][0];
    // 24 layers: virtual stages of 6 blocks; the embedding on virtual
    // stage 0 (stage 0), the head on virtual stage 3 (stage 1).
    EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kForward), 13 * m);
    EXPECT_EQ(Count(g, lane, StreamKind::kCompute, TaskLabel::kTensorParallel), 0);
    // Virtual stages 0 → 1 → 2 → 3 live on stages 0, 1, 0, 1. Stage 0
    // sends activations of both chunks (0 → 1, 2 → 3) and gradients of
    // chunk 1 (2 → 1); stage 1 activations of chunk 0 (1 → 2, wrapping to
    // stage 0) and gradients of both (1 → 0, 3 → 2).
    EXPECT_EQ(Count(g, lane, StreamKind::kPipelineSend, TaskLabel::kPipelineActivation),
              s == 0 ? 2 * m : m);
    EXPECT_EQ(Count(g, lane, StreamKind::kPipelineSend, TaskLabel::kPipelineGradient),
              s == 0 ? m : 2 * m);
    // One gradient bucket per chunk.
    EXPECT_EQ(Count(g, lane, StreamKind::kDataParallel, TaskLabel::kGradientReduce), 2);
  }
  // The wrap: stage 1's chunk-0 forward sends to stage 0's chunk-1 forward.
  const LaneId last = built->lanes_of_stage[1][0];
  bool wrapped = false;
  for (const TaskId t : g.StreamOrder(last, StreamKind::kPipelineSend)) {
    const Task& send = g.task(t);
    if (send.label != TaskLabel::kPipelineActivation || send.info.chunk != 0) continue;
    for (const TaskId next : g.Successors(t)) {
      const Task& receiver = g.task(next);
      if (g.LanesOf(next)[0] == built->lanes_of_stage[0][0] && receiver.info.chunk == 1 &&
          receiver.info.micro_batch == send.info.micro_batch) {
        wrapped = true;
      }
    }
  }
  EXPECT_TRUE(wrapped);
}

TEST(TrainingGraph, ZeroThreeGathersEveryLayerPassAndReduceScattersEveryBackward) {
  World world(1);
  Plan plan = Plan::Uniform(world.model, 2, {.tp = 2, .dp = 2, .zero_stage = 3}, 8, 1);
  const int m = plan.NumMicroBatches();
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_TRUE(built.ok()) << built.status().message();
  const TaskGraph& g = built->graph;
  for (int s = 0; s < 2; ++s) {
    const LaneId lane = built->lanes_of_stage[static_cast<size_t>(s)][0];
    // 13 layers (the embedding and the head are ZeRO-3 too), forward and
    // backward of every micro-batch.
    EXPECT_EQ(Count(g, lane, StreamKind::kDataParallel, TaskLabel::kParameterGather), 2 * 13 * m);
    EXPECT_EQ(Count(g, lane, StreamKind::kDataParallel, TaskLabel::kGradientReduce), 13 * m);
    // A forward waits on its layer's gather.
    for (const TaskId t : g.StreamOrder(lane, StreamKind::kDataParallel)) {
      if (g.task(t).label != TaskLabel::kParameterGather) continue;
      ASSERT_FALSE(g.Successors(t).empty());
      EXPECT_GT(g.task(t).alloc_at_start, Bytes::Zero());
      break;
    }
  }
}

TEST(TrainingGraph, ZeroOneReduceScattersThenGathersAfterTheOptimizer) {
  World world(1);
  const Plan plan = Plan::Uniform(world.model, 2, {.tp = 2, .dp = 2, .zero_stage = 1}, 8, 1);
  TrainingGraphOptions options;
  options.bucket_parameters = 1;
  Result<TrainingGraph> built = world.Build(plan, options);
  ASSERT_TRUE(built.ok()) << built.status().message();
  const TaskGraph& g = built->graph;
  const LaneId lane = built->lanes_of_stage[0][0];
  EXPECT_EQ(Count(g, lane, StreamKind::kDataParallel, TaskLabel::kGradientReduce), 13);
  EXPECT_EQ(Count(g, lane, StreamKind::kDataParallel, TaskLabel::kParameterGather), 13);
  const std::span<const TaskId> dp = g.StreamOrder(lane, StreamKind::kDataParallel);
  EXPECT_EQ(g.task(dp.back()).label, TaskLabel::kParameterGather);
}

TEST(TrainingGraph, RejectsTensorParallelismThatChangesWithinAStage) {
  World world(1);
  Plan plan = Plan::Uniform(world.model, 2, {.tp = 2, .dp = 2}, 8, 1);
  plan.layers[3] = {.tp = 4, .dp = 1};  // stage 0 has 4 devices: tp 4 × dp 1 fits
  ASSERT_TRUE(workload::ValidatePlan(plan, world.model, world.cluster).ok());
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_FALSE(built.ok());
  EXPECT_EQ(built.status().code(), StatusCode::kUnimplemented) << built.status().message();
}

TEST(TrainingGraph, RejectsInterleavingWithMicroBatchesNotAMultipleOfStages) {
  World world(1);
  Plan plan = Plan::Uniform(world.model, 2, {.tp = 1, .dp = 4}, 12, 1);  // m = 3
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.status().message().find("multiple of pp"), std::string::npos)
      << built.status().message();
}

// ---------------------------------------------------------------------------
// Replays with free communication.

// The makespan of the graph's pipeline with free communication, computed
// from the StageCostTable alone: each pass of a stage starts when the
// stage's previous pass and the pass it receives from have ended; a stage
// ends with its optimizer step.
Duration Recurrence(const TrainingGraph& built, const Plan& plan) {
  const int p = plan.pp;
  const int m = plan.NumMicroBatches();
  const int vpp = plan.schedule == PipelineSchedule::kInterleaved ? plan.vpp : 1;
  const int virtual_stages = p * vpp;
  std::vector<std::vector<PipelinePass>> orders;
  for (int s = 0; s < p; ++s) orders.push_back(StageSchedule(plan.schedule, p, s, m, vpp));
  // end[backward][v][micro-batch], -1 while not run.
  std::vector<std::vector<std::vector<Duration>>> end(
      2, std::vector<std::vector<Duration>>(
             static_cast<size_t>(virtual_stages),
             std::vector<Duration>(static_cast<size_t>(m), Duration::FromPicos(-1))));
  std::vector<size_t> next(static_cast<size_t>(p), 0);
  std::vector<Duration> clock(static_cast<size_t>(p));
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < p; ++s) {
      size_t& i = next[static_cast<size_t>(s)];
      if (i == orders[static_cast<size_t>(s)].size()) continue;
      const PipelinePass& pass = orders[static_cast<size_t>(s)][i];
      const int v = pass.chunk * p + s;
      const auto mb = static_cast<size_t>(pass.micro_batch);
      Duration ready = clock[static_cast<size_t>(s)];
      if (pass.backward && v < virtual_stages - 1) {
        const Duration dep = end[1][static_cast<size_t>(v + 1)][mb];
        if (dep < Duration::Zero()) continue;
        ready = std::max(ready, dep);
      }
      if (!pass.backward && v > 0) {
        const Duration dep = end[0][static_cast<size_t>(v - 1)][mb];
        if (dep < Duration::Zero()) continue;
        ready = std::max(ready, dep);
      }
      Duration cost;
      for (const LayerCost& l : built.costs.chunk(s, pass.chunk).layers) {
        cost += pass.backward ? l.recompute + l.backward : l.forward;
      }
      clock[static_cast<size_t>(s)] = ready + cost;
      end[pass.backward ? 1 : 0][static_cast<size_t>(v)][mb] = ready + cost;
      ++i;
      progress = true;
    }
  }
  Duration makespan;
  for (int s = 0; s < p; ++s) {
    const LaneId lane = built.lanes_of_stage[static_cast<size_t>(s)][0];
    const TaskId optimizer = built.graph.StreamOrder(lane, StreamKind::kCompute).back();
    EXPECT_EQ(built.graph.task(optimizer).label, TaskLabel::kOptimizer);
    makespan =
        std::max(makespan, clock[static_cast<size_t>(s)] + built.graph.task(optimizer).duration);
  }
  return makespan;
}

TEST(TrainingGraphReplay, OneStageTakesEveryMicroBatchPlusTheOptimizerExactly) {
  World world(1);
  const Plan plan = Plan::Uniform(world.model, 1, {.tp = 4, .dp = 2}, 8, 2);  // m = 2
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_TRUE(built.ok()) << built.status().message();
  Result<ReplayResult> run = Replay(built->graph, nullptr, nullptr, {.free_communication = true});
  ASSERT_TRUE(run.ok()) << run.status().message();
  const ChunkCost& chunk = built->costs.chunk(0, 0);
  Duration f, b;
  for (const LayerCost& l : chunk.layers) {
    f += l.forward;
    b += l.recompute + l.backward;
  }
  // (m + p − 1)(F + B) with p = 1, then the optimizer step.
  EXPECT_EQ(run->makespan, (f + b) * plan.NumMicroBatches() + built->optimizer);
}

TEST(TrainingGraphReplay, FreeCommunicationPipelinesMatchTheRecurrenceOverStageCosts) {
  World world(2);
  struct Case {
    PipelineSchedule schedule;
    int pp, vpp, tp, dp, global;
  };
  for (const Case& c : {Case{PipelineSchedule::kGpipe, 4, 1, 2, 2, 16},
                        Case{PipelineSchedule::kOneFOneB, 4, 1, 2, 2, 16},
                        Case{PipelineSchedule::kOneFOneB, 2, 1, 8, 1, 3},
                        Case{PipelineSchedule::kInterleaved, 2, 2, 4, 2, 16},
                        Case{PipelineSchedule::kInterleaved, 4, 3, 2, 2, 8}}) {
    Plan plan = Plan::Uniform(world.model, c.pp, {.tp = c.tp, .dp = c.dp}, c.global, 1);
    plan.schedule = c.schedule;
    plan.vpp = c.vpp;
    Result<TrainingGraph> built = world.Build(plan);
    ASSERT_TRUE(built.ok()) << built.status().message();
    Result<ReplayResult> run = Replay(built->graph, nullptr, nullptr, {.free_communication = true});
    ASSERT_TRUE(run.ok()) << run.status().message();
    EXPECT_EQ(run->makespan, Recurrence(*built, plan))
        << workload::PipelineScheduleName(c.schedule) << " pp " << c.pp << " vpp " << c.vpp;
  }
}

TEST(TrainingGraphReplay, PeakMemoryOfEachStageIsTheMemoryModelsTotal) {
  World world(1);
  for (const PipelineSchedule schedule : {PipelineSchedule::kOneFOneB, PipelineSchedule::kGpipe}) {
    for (const workload::Recompute recompute :
         {workload::Recompute::kNone, workload::Recompute::kSelective,
          workload::Recompute::kFull}) {
      Plan plan = Plan::Uniform(world.model, 4, {.tp = 2, .dp = 1}, 6, 1);
      for (LayerStrategy& l : plan.layers) l.recompute = recompute;
      plan.schedule = schedule;
      Result<TrainingGraph> built = world.Build(plan);
      ASSERT_TRUE(built.ok()) << built.status().message();
      Result<ReplayResult> run =
          Replay(built->graph, nullptr, nullptr, {.free_communication = true});
      ASSERT_TRUE(run.ok()) << run.status().message();
      for (int s = 0; s < plan.pp; ++s) {
        const Bytes model_total = built->memory.stages[static_cast<size_t>(s)].Total();
        for (const LaneId lane : built->lanes_of_stage[static_cast<size_t>(s)]) {
          const Bytes peak = run->lanes[static_cast<size_t>(lane)].peak_memory;
          const bool last = s == plan.pp - 1;
          if (recompute == workload::Recompute::kNone || !last) {
            // The memory model counts exactly what the tasks allocate.
            EXPECT_EQ(peak, model_total) << workload::PipelineScheduleName(schedule) << " "
                                         << workload::RecomputeName(recompute) << " stage " << s;
          } else {
            // The last stage runs the head's backward, which frees the
            // head's activations, before its first block recomputes; the
            // memory model adds the largest recomputed block to all the
            // saved activations. So the replay's peak is lower by the
            // smaller of the two (zero with flash attention's selective
            // recomputation, which recomputes nothing it would have saved).
            const LayerCost& head = built->costs.chunk(s, 0).layers.back();
            ASSERT_EQ(head.kind, workload::LayerKind::kLmHead);
            const Bytes recomputed =
                built->memory.stages[static_cast<size_t>(s)].recompute_activations;
            EXPECT_EQ(peak, model_total - std::min(head.saved_activations, recomputed))
                << workload::RecomputeName(recompute);
          }
        }
      }
    }
  }
}

TEST(TrainingGraphReplay, ZeroThreeHoldsTheLayerInUseAndThePrefetchedOne) {
  World world(1);
  const Plan plan = Plan::Uniform(world.model, 4, {.tp = 1, .dp = 2, .zero_stage = 3}, 16, 1);
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_TRUE(built.ok()) << built.status().message();
  Result<ReplayResult> run = Replay(built->graph, nullptr, nullptr, {.free_communication = true});
  ASSERT_TRUE(run.ok()) << run.status().message();
  for (int s = 0; s < plan.pp; ++s) {
    const Bytes model_total = built->memory.stages[static_cast<size_t>(s)].Total();
    const Bytes peak =
        run->lanes[static_cast<size_t>(built->lanes_of_stage[static_cast<size_t>(s)][0])]
            .peak_memory;
    if (s < plan.pp - 1) {
      // At the activations' peak (the first backward of the stage's last
      // block) the block's gathered weights and the prefetched next block's
      // are held, as the memory model counts.
      EXPECT_EQ(peak, model_total) << "stage " << s;
    } else {
      // The last stage peaks at the head's backward: the head's weights
      // (tied to the embedding: only its norm) and one prefetched block.
      const LayerCost& block = built->costs.chunk(s, 0).layers.front();
      const LayerCost& head = built->costs.chunk(s, 0).layers.back();
      EXPECT_EQ(peak, model_total - Bytes((block.parameters - head.parameters) * 2));
    }
  }
}

TEST(TrainingGraph, BuildsSixteenNodesOfDataParallelPipelines) {
  // 128 GPUs, pp 4 × tp 8 × dp 4: 16 lanes, with tp, pp and dp traffic
  // over NVLink and InfiniBand footprints.
  World world(16);
  const Plan plan =
      Plan::Uniform(world.model, 4, {.tp = 8, .dp = 4, .sequence_parallel = true}, 64, 1);
  Result<TrainingGraph> built = world.Build(plan);
  ASSERT_TRUE(built.ok()) << built.status().message();
  EXPECT_EQ(built->graph.num_lanes(), 16u);
  // The path collectives of the graph and the stage costs agree: a block's
  // forward tp task takes what StageCosts says when alone on the network.
  const TaskGraph& g = built->graph;
  const LayerCost& block = built->costs.chunk(1, 0).layers.front();
  const LaneId lane = built->lanes_of_stage[1][0];
  for (const TaskId t : g.StreamOrder(lane, StreamKind::kCompute)) {
    if (g.task(t).label != TaskLabel::kTensorParallel) continue;
    EXPECT_EQ(g.task(t).coflow.uncontended_time, block.ForwardComm());
    break;
  }
}

}  // namespace
}  // namespace orrery::sim
