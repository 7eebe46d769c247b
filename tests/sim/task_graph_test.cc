// The pipeline task graph: GPipe and 1F1B replayed on the event engine, with
// free or flow-costed transfers between stages, and a whole iteration of a
// model under a plan.
#include "sim/task_graph.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/units.h"
#include "costmodel/collective.h"
#include "sim/chrome_timeline.h"
#include "sim/iteration.h"
#include "sim/network_builder.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::sim {
namespace {

using workload::PipelineSchedule;

PipelineSpec EqualStages(int p, int m, PipelineSchedule schedule, Duration tf, Duration tb) {
  PipelineSpec spec;
  spec.micro_batches = m;
  spec.schedule = schedule;
  for (int s = 0; s < p; ++s) spec.stages.push_back({.rank = s, .forward = tf, .backward = tb,
                                                     .gradient_sync = Duration::Zero(),
                                                     .optimizer = Duration::Zero()});
  return spec;
}

topology::Topology BuildTopology(const std::string& preset, int nodes) {
  Result<topology::ClusterSpec> spec = topology::ResolveCluster(preset, nodes);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  Result<topology::Topology> topo = topology::Topology::Build(*spec);
  EXPECT_TRUE(topo.ok()) << topo.status().ToString();
  return std::move(topo).value();
}

TEST(StageOrder, GpipeRunsAllForwardsThenAllBackwards) {
  const std::vector<PipelineOp> order = StageOrder(PipelineSchedule::kGpipe, 4, 1, 3);
  const std::vector<PipelineOp> expected = {{false, 0}, {false, 1}, {false, 2},
                                            {true, 0},  {true, 1},  {true, 2}};
  EXPECT_EQ(order, expected);
}

TEST(StageOrder, OneFOneBWarmsUpWithOneForwardPerLaterStage) {
  // p = 4, stage 1: warm-up p - s - 1 = 2 forwards, steady pairs, cool-down 2.
  const std::vector<PipelineOp> order = StageOrder(PipelineSchedule::kOneFOneB, 4, 1, 5);
  const std::vector<PipelineOp> expected = {{false, 0}, {false, 1}, {false, 2}, {true, 0},
                                            {false, 3}, {true, 1},  {false, 4}, {true, 2},
                                            {true, 3},  {true, 4}};
  EXPECT_EQ(order, expected);
  // The last stage alternates from the first micro-batch.
  const std::vector<PipelineOp> last = StageOrder(PipelineSchedule::kOneFOneB, 4, 3, 2);
  const std::vector<PipelineOp> alternating = {{false, 0}, {true, 0}, {false, 1}, {true, 1}};
  EXPECT_EQ(last, alternating);
}

TEST(StageOrder, OneFOneBWithFewerMicroBatchesThanStagesWarmsUpWithAll) {
  const std::vector<PipelineOp> order = StageOrder(PipelineSchedule::kOneFOneB, 8, 0, 2);
  const std::vector<PipelineOp> expected = {{false, 0}, {false, 1}, {true, 0}, {true, 1}};
  EXPECT_EQ(order, expected);
}

TEST(SimulatePipeline, FreeCommunicationTakesNarayananEquationOneExactly) {
  const Duration tf = Micros(3) + Picos(7);
  const Duration tb = Micros(6) + Picos(11);
  for (PipelineSchedule schedule : {PipelineSchedule::kGpipe, PipelineSchedule::kOneFOneB}) {
    for (int p : {1, 2, 3, 4, 8}) {
      for (int m : {1, 2, 4, 7, 16}) {
        Result<PipelineResult> r = SimulatePipeline(EqualStages(p, m, schedule, tf, tb), nullptr);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        EXPECT_EQ(r->iteration_time, (tf + tb) * (m + p - 1))
            << workload::PipelineScheduleName(schedule) << " p=" << p << " m=" << m;
        // The first stage idles for the bubble, (p - 1)(tf + tb), and nothing else.
        EXPECT_EQ(r->stages[0].bubble, (tf + tb) * (p - 1));
        EXPECT_EQ(r->stages[0].exposed_comm, Duration::Zero());
      }
    }
  }
}

// 1F1B on p = 2 stages with free communication, stage costs tf and tb,
// period T = tf + tb (worked out by hand from StageOrder):
//   stage 1: F(i) at tf + iT, B(i) at 2tf + iT;
//   stage 0: F(0) at 0, F(1) at tf, F(i ≥ 2) at iT, B(i) at 2tf + tb + iT.
TEST(SimulatePipeline, TheTimelineOfTwoStageOneFOneBMatchesTheClosedFormSchedule) {
  const Duration tf = Micros(1) + Picos(3);
  const Duration tb = Micros(2) + Picos(5);
  const Duration period = tf + tb;
  const int m = 5;
  const int p = 2;
  Timeline timeline;
  Result<PipelineResult> r =
      SimulatePipeline(EqualStages(p, m, PipelineSchedule::kOneFOneB, tf, tb), nullptr, &timeline);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(timeline.iteration_time, r->iteration_time);

  int compute = 0;
  std::vector<std::vector<std::pair<Duration, Duration>>> spans(p);
  for (const TimelineTask& t : timeline.tasks) {
    const bool forward = t.kind == TimelineTask::Kind::kForward;
    if (!forward && t.kind != TimelineTask::Kind::kBackward) continue;
    ++compute;
    const int i = t.micro_batch;
    Duration start;
    if (t.stage == 1) {
      start = forward ? tf + period * i : tf * 2 + period * i;
    } else if (forward) {
      start = i == 0 ? Duration::Zero() : i == 1 ? tf : period * i;
    } else {
      start = tf * 2 + tb + period * i;
    }
    EXPECT_EQ(t.start, start) << "stage " << t.stage << (forward ? " F" : " B") << i;
    EXPECT_EQ(t.end - t.start, forward ? tf : tb);
    EXPECT_EQ(t.rank, t.stage);
    spans[static_cast<size_t>(t.stage)].emplace_back(t.start, t.end);
  }
  EXPECT_EQ(compute, 2 * m * p);
  for (auto& stage : spans) {
    std::sort(stage.begin(), stage.end());
    for (size_t k = 1; k < stage.size(); ++k) EXPECT_LE(stage[k - 1].second, stage[k].first);
  }
  // Free communication: 2m instantaneous transfers, m each way.
  ASSERT_EQ(timeline.transfers.size(), static_cast<size_t>(2 * m));
  for (const TimelineTransfer& t : timeline.transfers) {
    EXPECT_EQ(t.start, t.end);
    EXPECT_EQ(t.to_stage, t.gradient ? t.from_stage - 1 : t.from_stage + 1);
  }

  // The Chrome trace holds one complete event per task and transfer.
  const Json trace = TimelineToChromeTrace(timeline);
  int complete = 0;
  for (const Json& e : trace["traceEvents"]) complete += e["ph"] == "X";
  EXPECT_EQ(complete, static_cast<int>(timeline.tasks.size() + timeline.transfers.size()));
}

TEST(SimulatePipeline, OneStageTakesMicroBatchesTimesForwardPlusBackward) {
  const Duration tf = Micros(5);
  const Duration tb = Micros(10) + Picos(1);
  Result<PipelineResult> r =
      SimulatePipeline(EqualStages(1, 6, PipelineSchedule::kOneFOneB, tf, tb), nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->iteration_time, (tf + tb) * 6);
  EXPECT_EQ(r->stages[0].busy, (tf + tb) * 6);
  EXPECT_EQ(r->stages[0].bubble, Duration::Zero());
}

TEST(SimulatePipeline, GradientSyncAndOptimizerFollowTheLastBackward) {
  PipelineSpec spec = EqualStages(2, 3, PipelineSchedule::kOneFOneB, Micros(2), Micros(4));
  spec.stages[0].gradient_sync = Micros(30);
  spec.stages[0].optimizer = Micros(5);
  spec.stages[1].gradient_sync = Micros(1);
  Result<PipelineResult> r = SimulatePipeline(spec, nullptr);
  ASSERT_TRUE(r.ok());
  // Stage 0's last backward ends at (m + p - 1)(tf + tb) = 24 us.
  EXPECT_EQ(r->stages[0].end, Micros(24) + Micros(30) + Micros(5));
  EXPECT_EQ(r->iteration_time, Micros(59));
  EXPECT_EQ(r->stages[0].exposed_comm, Micros(30));
  EXPECT_EQ(r->stages[0].busy, Micros(18) + Micros(5));
}

TEST(SimulatePipeline, BusyBubbleAndExposedCommunicationSumToTheIteration) {
  const topology::Topology topo = BuildTopology("dgx-h100", 2);
  const TopologyNetwork net(&topo);
  PipelineSpec spec = EqualStages(4, 8, PipelineSchedule::kOneFOneB, Micros(40), Micros(80));
  for (int s = 0; s < 4; ++s) spec.stages[static_cast<size_t>(s)].rank = 4 * s;  // crosses nodes
  spec.stages[2].forward = Micros(55);
  spec.stages[1].gradient_sync = Micros(100);
  spec.activation_bytes = MiB(32);
  spec.gradient_bytes = MiB(32);
  Result<PipelineResult> r = SimulatePipeline(spec, &net);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->flows, 2 * 3 * 8);
  for (const StageTimes& st : r->stages) {
    EXPECT_EQ(st.busy + st.bubble + st.exposed_comm, r->iteration_time);
    EXPECT_GT(st.exposed_comm, Duration::Zero());
  }
}

TEST(SimulatePipeline, APointToPointTransferAddsLatencyPlusBytesOverBandwidthEachWay) {
  // p = 2, m = 1: F0, activations 0 → 1, F1, B1, gradient 1 → 0, B0.
  const topology::Topology topo = BuildTopology("dgx-h100", 2);
  const TopologyNetwork net(&topo);
  const Duration tf = Micros(100);
  const Duration tb = Micros(200);
  const Bytes size = MiB(48);
  for (const auto& [src, dst] : {std::pair{0, 1}, std::pair{3, 11}}) {
    PipelineSpec spec = EqualStages(2, 1, PipelineSchedule::kOneFOneB, tf, tb);
    spec.stages[0].rank = src;
    spec.stages[1].rank = dst;
    spec.activation_bytes = size;
    spec.gradient_bytes = size;
    // One transfer alone on its route: the hops' latencies plus the bytes at
    // the narrowest link, rounded up to the picosecond (sim/flow_model.h).
    auto one_way = [&](int a, int b) {
      Duration latency;
      int64_t rate = INT64_MAX;
      for (LinkId l : net.Route(a, b)) {
        latency += net.network().link(l).latency;
        rate = std::min(rate, net.network().link(l).capacity_bytes_per_s);
      }
      const __int128 picobytes = static_cast<__int128>(size.count()) * 1'000'000'000'000;
      return latency + Picos(static_cast<int64_t>((picobytes + rate - 1) / rate));
    };
    const Duration forward_way = one_way(src, dst);
    const Duration backward_way = one_way(dst, src);
    Result<PipelineResult> r = SimulatePipeline(spec, &net);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->iteration_time, (tf + tb) * 2 + forward_way + backward_way) << src << "→" << dst;
    EXPECT_EQ(r->stages[0].exposed_comm, backward_way);
    EXPECT_EQ(r->stages[1].exposed_comm, forward_way);
    // Stage 1 waits for F0, and from its B1 to the iteration's end (the
    // gradient's flight and B0).
    EXPECT_EQ(r->stages[1].bubble, tf + tb + backward_way);
    EXPECT_EQ(r->stages[0].bubble, tf + tb + forward_way);
  }
}

TEST(SimulatePipeline, TwoRunsOfTheSameSpecAreIdentical) {
  const topology::Topology topo = BuildTopology("dgx-h100", 4);
  const TopologyNetwork net(&topo);
  PipelineSpec spec = EqualStages(4, 12, PipelineSchedule::kGpipe, Micros(33), Micros(71));
  for (int s = 0; s < 4; ++s) spec.stages[static_cast<size_t>(s)].rank = 8 * s + s;
  spec.activation_bytes = MiB(20);
  spec.gradient_bytes = MiB(20);
  Result<PipelineResult> a = SimulatePipeline(spec, &net);
  Result<PipelineResult> b = SimulatePipeline(spec, &net);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->iteration_time, b->iteration_time);
  EXPECT_EQ(a->events, b->events);
  for (size_t s = 0; s < 4; ++s) {
    EXPECT_EQ(a->stages[s].busy, b->stages[s].busy);
    EXPECT_EQ(a->stages[s].bubble, b->stages[s].bubble);
    EXPECT_EQ(a->stages[s].exposed_comm, b->stages[s].exposed_comm);
  }
}

TEST(SimulatePipeline, RejectsTheInterleavedScheduleAndEmptySpecs) {
  EXPECT_FALSE(SimulatePipeline(PipelineSpec{}, nullptr).ok());
  EXPECT_FALSE(SimulatePipeline(EqualStages(2, 0, PipelineSchedule::kGpipe, Micros(1), Micros(1)),
                                nullptr)
                   .ok());
  EXPECT_FALSE(SimulatePipeline(
                   EqualStages(2, 4, PipelineSchedule::kInterleaved, Micros(1), Micros(1)), nullptr)
                   .ok());
}

struct Scenario {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
  workload::Plan plan;
};

Scenario Gpt1p7bOnTwoNodes(int pp, int tp, int dp) {
  Result<workload::ModelSpec> model = workload::ModelPreset("gpt-1.7b");
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  Result<topology::ClusterSpec> cluster = topology::ResolveCluster("dgx-h100", 2);
  EXPECT_TRUE(cluster.ok()) << cluster.status().ToString();
  workload::Plan plan = workload::Plan::Uniform(*model, pp, {.tp = tp, .dp = dp},
                                                /*global_batch_size=*/64, /*micro_batch_size=*/2);
  plan.sequence_length = 2048;
  return {*model, *cluster, plan};
}

TEST(SimulateIteration, ReportsThroughputConsistentWithTheIterationTime) {
  Scenario s = Gpt1p7bOnTwoNodes(/*pp=*/4, /*tp=*/2, /*dp=*/2);
  Result<IterationReport> r = SimulateIteration(s.model, s.plan, s.cluster);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->stages.size(), 4u);
  EXPECT_EQ(r->devices, 16);
  EXPECT_EQ(r->micro_batches, 16);
  EXPECT_EQ(r->p2p_bytes, Bytes(2 * 2048 * 2304 * 2));
  const double seconds = r->iteration_time.ToSeconds();
  EXPECT_DOUBLE_EQ(r->tokens_per_s, 64.0 * 2048 / seconds);
  EXPECT_GT(r->mfu, 0.05);
  EXPECT_LT(r->mfu, 1.0);
  for (const StageReport& st : r->stages) {
    EXPECT_GT(st.forward, Duration::Zero());
    EXPECT_GT(st.backward, st.forward);
    EXPECT_GT(st.tp_comm, Duration::Zero());
    EXPECT_GT(st.gradient_sync, Duration::Zero());
    EXPECT_GT(st.optimizer, Duration::Zero());
    EXPECT_EQ(st.times.busy + st.times.bubble + st.times.exposed_comm, r->iteration_time);
  }
  // Stage ranks of replica 0 under tp-cp-ep-dp-pp: stride tp × dp = 4.
  EXPECT_EQ(r->stages[1].rank, 4);
  EXPECT_EQ(r->stages[3].rank, 12);
}

TEST(SimulateIteration, FreeCommunicationIsFasterAndHasNoExposedCommunication) {
  Scenario s = Gpt1p7bOnTwoNodes(4, 2, 2);
  Result<IterationReport> costed = SimulateIteration(s.model, s.plan, s.cluster);
  Result<IterationReport> free =
      SimulateIteration(s.model, s.plan, s.cluster, {.free_communication = true});
  ASSERT_TRUE(costed.ok() && free.ok());
  EXPECT_LT(free->iteration_time, costed->iteration_time);
  EXPECT_EQ(free->flows, 0);
  for (const StageReport& st : free->stages) {
    EXPECT_EQ(st.times.exposed_comm, Duration::Zero());
    EXPECT_EQ(st.tp_comm, Duration::Zero());
  }
}

TEST(SimulateIteration, OneStageWithoutCommunicationIsMicroBatchesTimesTheStagePlusOptimizer) {
  Scenario s = Gpt1p7bOnTwoNodes(/*pp=*/1, /*tp=*/1, /*dp=*/16);
  s.plan.global_batch_size = 128;
  Result<IterationReport> r =
      SimulateIteration(s.model, s.plan, s.cluster, {.free_communication = true});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const StageReport& st = r->stages[0];
  EXPECT_EQ(r->micro_batches, 4);
  EXPECT_EQ(r->iteration_time, (st.forward + st.backward) * 4 + st.optimizer);
}

TEST(SimulateIteration, BothSchedulesTakeAtLeastMicroBatchesTimesTheSlowestStage) {
  Scenario s = Gpt1p7bOnTwoNodes(4, 2, 2);
  Result<IterationReport> one = SimulateIteration(s.model, s.plan, s.cluster,
                                                  {.free_communication = true});
  s.plan.schedule = PipelineSchedule::kGpipe;
  Result<IterationReport> gpipe = SimulateIteration(s.model, s.plan, s.cluster,
                                                    {.free_communication = true});
  ASSERT_TRUE(one.ok() && gpipe.ok());
  // Unequal stages (embedding, head) change the bubble's shape, not the
  // work: both are at least m × the slowest stage.
  Duration slowest;
  for (const StageReport& st : one->stages) slowest = std::max(slowest, st.forward + st.backward);
  EXPECT_GE(one->iteration_time, slowest * 16);
  EXPECT_GE(gpipe->iteration_time, slowest * 16);
}

TEST(SimulateIteration, GradientSyncAndOptimizerFollowTheirStatedFormulas) {
  Scenario s = Gpt1p7bOnTwoNodes(4, 2, 2);
  Result<IterationReport> r = SimulateIteration(s.model, s.plan, s.cluster);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Result<costmodel::CollectiveModel> collectives = costmodel::CollectiveModel::Create(s.cluster);
  ASSERT_TRUE(collectives.ok());
  // Replica 0's dp group of stage 0 is ranks {0, 2}: one node, every other device.
  const costmodel::RankGroup group{.nodes = 1, .ranks_per_node = 2,
                                   .placement = costmodel::RankGroup::Placement::kStrided};
  const StageReport& st = r->stages[0];
  Result<costmodel::CollectiveEstimate> all_reduce = collectives->Estimate(
      costmodel::CollectiveOp::kAllReduce, Bytes(2 * st.parameters), group);
  ASSERT_TRUE(all_reduce.ok());
  EXPECT_EQ(st.gradient_sync, all_reduce->time);
  // 12 bytes per parameter at 80% of the device's memory bandwidth.
  const topology::DeviceType& device = s.cluster.PrimaryNodeType().device;
  EXPECT_EQ(st.optimizer, Bytes(12 * st.parameters) / (device.memory_bandwidth * 0.80));
}

TEST(SimulateIteration, TwoRunsGiveTheSameReport) {
  Scenario s = Gpt1p7bOnTwoNodes(4, 2, 2);
  Result<IterationReport> a = SimulateIteration(s.model, s.plan, s.cluster);
  Result<IterationReport> b = SimulateIteration(s.model, s.plan, s.cluster);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->iteration_time, b->iteration_time);
  EXPECT_EQ(a->events, b->events);
  for (size_t i = 0; i < a->stages.size(); ++i) {
    EXPECT_EQ(a->stages[i].times.bubble, b->stages[i].times.bubble);
    EXPECT_EQ(a->stages[i].times.exposed_comm, b->stages[i].times.exposed_comm);
  }
}

TEST(SimulateIteration, RejectsTheInterleavedScheduleAndInvalidPlans) {
  Scenario s = Gpt1p7bOnTwoNodes(4, 2, 2);
  s.plan.schedule = PipelineSchedule::kInterleaved;
  s.plan.vpp = 2;
  Result<IterationReport> interleaved = SimulateIteration(s.model, s.plan, s.cluster);
  ASSERT_FALSE(interleaved.ok());
  EXPECT_NE(interleaved.status().message().find("interleaved"), std::string::npos);
  Scenario t = Gpt1p7bOnTwoNodes(4, 2, 8);  // 64 devices on a 16-device cluster
  EXPECT_FALSE(SimulateIteration(t.model, t.plan, t.cluster).ok());
}

}  // namespace
}  // namespace orrery::sim
