// The task graph and its replay: closed forms of hand-built graphs (1F1B
// and GPipe pipelines, a collective waiting for its lanes, two coflows on
// one NIC, activation memory, overlap slowdown), the accounting identity
// and determinism on a random graph, and the errors (cycles, bad lanes).
#include "sim/replay.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/units.h"
#include "costmodel/collective.h"
#include "sim/collective_flows.h"
#include "sim/network_builder.h"
#include "sim/task_graph.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"

namespace orrery::sim {
namespace {

// ---------------------------------------------------------------------------
// Hand-built pipelines.

// One stage's compute order: GPipe F(0..m-1) B(0..m-1); 1F1B (PipeDream-
// Flush, Narayanan et al., SC21 §2.2) a warm-up of w = min(p - s - 1, m)
// forwards, m - w pairs F(w + i) B(i), then the last w backwards.
// Entries: micro-batch, negative (-1 - i) for B(i).
std::vector<int> StageOps(bool one_f_one_b, int p, int s, int m) {
  std::vector<int> ops;
  if (!one_f_one_b) {
    for (int i = 0; i < m; ++i) ops.push_back(i);
    for (int i = 0; i < m; ++i) ops.push_back(-1 - i);
    return ops;
  }
  const int w = std::min(p - s - 1, m);
  for (int i = 0; i < w; ++i) ops.push_back(i);
  for (int i = 0; i < m - w; ++i) {
    ops.push_back(w + i);
    ops.push_back(-1 - i);
  }
  for (int i = m - w; i < m; ++i) ops.push_back(-1 - i);
  return ops;
}

struct Pipeline {
  TaskGraph graph;
  std::vector<std::vector<TaskId>> forward;   // [stage][micro-batch]
  std::vector<std::vector<TaskId>> backward;  // [stage][micro-batch]
};

// p stages (lane s = rank s) × m micro-batches: forwards and backwards on
// each stage's compute stream in schedule order; after F(i) on s < p - 1 an
// activation send on s's pp-send stream that F(i) on s + 1 depends on; after
// B(i) on s > 0 a gradient send that B(i) on s - 1 depends on. Sends are
// empty coflows (footprint 0). A forward allocates `activation` on its stage,
// its backward frees it.
Pipeline BuildPipeline(bool one_f_one_b, int p, int m, Duration tf, Duration tb,
                       Bytes activation = Bytes::Zero(), Bytes static_memory = Bytes::Zero()) {
  Pipeline pipe;
  pipe.forward.assign(static_cast<size_t>(p), std::vector<TaskId>(static_cast<size_t>(m)));
  pipe.backward = pipe.forward;
  std::vector<std::vector<TaskId>> act_send = pipe.forward;
  std::vector<std::vector<TaskId>> grad_send = pipe.forward;
  for (int s = 0; s < p; ++s) {
    pipe.graph.AddLane(Lane{{s}, s, 0, static_memory});
  }
  for (int s = 0; s < p; ++s) {
    const size_t si = static_cast<size_t>(s);
    for (const int op : StageOps(one_f_one_b, p, s, m)) {
      const bool backward = op < 0;
      const int i = backward ? -1 - op : op;
      const size_t ii = static_cast<size_t>(i);
      const TaskInfo info{i, 0, -1};
      const TaskId task = pipe.graph.AddCompute(
          s, StreamKind::kCompute, backward ? TaskLabel::kBackward : TaskLabel::kForward,
          backward ? tb : tf, info);
      if (backward) {
        pipe.backward[si][ii] = task;
        pipe.graph.SetMemory(task, Bytes::Zero(), activation);
      } else {
        pipe.forward[si][ii] = task;
        pipe.graph.SetMemory(task, activation, Bytes::Zero());
      }
      const LaneId lanes[] = {s};
      if (!backward && s + 1 < p) {
        act_send[si][ii] = pipe.graph.AddCommunication(
            lanes, StreamKind::kPipelineSend, TaskLabel::kPipelineActivation, CoflowSpec{}, info);
        pipe.graph.AddDependency(task, act_send[si][ii]);
      }
      if (backward && s > 0) {
        grad_send[si][ii] = pipe.graph.AddCommunication(
            lanes, StreamKind::kPipelineSend, TaskLabel::kPipelineGradient, CoflowSpec{}, info);
        pipe.graph.AddDependency(task, grad_send[si][ii]);
      }
    }
  }
  for (size_t s = 0; s < static_cast<size_t>(p); ++s) {
    for (size_t i = 0; i < static_cast<size_t>(m); ++i) {
      if (s + 1 < static_cast<size_t>(p)) {
        pipe.graph.AddDependency(act_send[s][i], pipe.forward[s + 1][i]);
      }
      if (s > 0) pipe.graph.AddDependency(grad_send[s][i], pipe.backward[s - 1][i]);
    }
  }
  return pipe;
}

ReplayOptions FreeCommunication(bool record_spans = false) {
  ReplayOptions options;
  options.free_communication = true;
  options.record_spans = record_spans;
  return options;
}

void ExpectIdentity(const ReplayResult& result) {
  for (size_t l = 0; l < result.lanes.size(); ++l) {
    const LaneTimes& t = result.lanes[l];
    EXPECT_EQ(t.compute + t.recompute + t.exposed_comm + t.bubble, result.makespan) << "lane " << l;
    EXPECT_LE(t.comm_in_path, t.exposed_comm) << "lane " << l;
    EXPECT_GE(t.bubble, Duration::Zero()) << "lane " << l;
    EXPECT_LE(t.end, result.makespan) << "lane " << l;
  }
}

TEST(ReplayPipeline, OneFOneBAndGpipeTakeMPlusPMinusOneSlots) {
  const Duration tf = Micros(300);
  const Duration tb = Micros(700);
  for (const bool one_f_one_b : {true, false}) {
    for (const auto& [p, m] :
         {std::pair{4, 8}, std::pair{3, 2}, std::pair{1, 5}, std::pair{5, 1}}) {
      Pipeline pipe = BuildPipeline(one_f_one_b, p, m, tf, tb);
      ASSERT_TRUE(pipe.graph.Finalize().ok());
      Result<ReplayResult> result = Replay(pipe.graph, nullptr, nullptr, FreeCommunication());
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      SCOPED_TRACE(std::string(one_f_one_b ? "1f1b" : "gpipe") + " p=" + std::to_string(p) +
                   " m=" + std::to_string(m));
      // Narayanan et al., SC21, §2.2: (m + p - 1)(tf + tb), bubble (p - 1)(tf + tb).
      EXPECT_EQ(result->makespan, (tf + tb) * (m + p - 1));
      ASSERT_EQ(result->lanes.size(), static_cast<size_t>(p));
      for (int s = 0; s < p; ++s) {
        const LaneTimes& t = result->lanes[static_cast<size_t>(s)];
        EXPECT_EQ(t.compute, (tf + tb) * m);
        EXPECT_EQ(t.bubble, (tf + tb) * (p - 1)) << "stage " << s;
        EXPECT_EQ(t.exposed_comm, Duration::Zero());
        EXPECT_EQ(t.recompute, Duration::Zero());
      }
      // Stage 0 runs the last backward.
      EXPECT_EQ(result->lanes[0].end, result->makespan);
      ExpectIdentity(*result);
      EXPECT_TRUE(result->spans.empty());
      EXPECT_EQ(result->flows, 0);
    }
  }
}

TEST(ReplayPipeline, ActivationMemoryPeaksAtTheMicroBatchesInFlight) {
  const int p = 4;
  const int m = 8;
  const Bytes act = MiB(512);
  const Bytes base = GiB(10);
  for (const bool one_f_one_b : {true, false}) {
    Pipeline pipe = BuildPipeline(one_f_one_b, p, m, Micros(10), Micros(20), act, base);
    ASSERT_TRUE(pipe.graph.Finalize().ok());
    Result<ReplayResult> result = Replay(pipe.graph, nullptr, nullptr, FreeCommunication());
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    for (int s = 0; s < p; ++s) {
      // 1F1B: stage s holds min(p - s, m) micro-batches at once; GPipe all m.
      const int in_flight = one_f_one_b ? std::min(p - s, m) : m;
      EXPECT_EQ(result->lanes[static_cast<size_t>(s)].peak_memory, base + act * in_flight)
          << (one_f_one_b ? "1f1b" : "gpipe") << " stage " << s;
    }
  }
}

TEST(ReplayPipeline, SpansFollowTheScheduleOfStageZero) {
  const Duration tf = Micros(1);
  const Duration tb = Micros(2);
  Pipeline pipe = BuildPipeline(true, 2, 3, tf, tb);
  ASSERT_TRUE(pipe.graph.Finalize().ok());
  Result<ReplayResult> result =
      Replay(pipe.graph, nullptr, nullptr, FreeCommunication(/*record_spans=*/true));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->spans.size(), pipe.graph.num_tasks());
  // Stage 1 runs F0 [1,2] B0 [2,4] F1 [4,5] B1 [5,7] F2 [7,8] B2 [8,10];
  // stage 0 F0 [0,1] F1 [1,2], then B0 waits for stage 1's B0: [4,6], F2
  // [6,7], B1 [7,9], B2 [10,12] = (m + p - 1)(tf + tb).
  const auto span = [&](TaskId t) { return result->spans[static_cast<size_t>(t)]; };
  EXPECT_EQ(span(pipe.forward[0][0]).start, Micros(0));
  EXPECT_EQ(span(pipe.forward[0][1]).end, Micros(2));
  EXPECT_EQ(span(pipe.backward[0][0]).start, Micros(4));
  EXPECT_EQ(span(pipe.forward[0][2]).start, Micros(6));
  EXPECT_EQ(span(pipe.backward[0][1]).start, Micros(7));
  EXPECT_EQ(span(pipe.backward[0][2]).start, Micros(10));
  EXPECT_EQ(span(pipe.backward[0][2]).end, Micros(12));
  EXPECT_EQ(result->makespan, Micros(12));
  for (size_t t = 0; t < result->spans.size(); ++t) EXPECT_EQ(result->spans[t].task, TaskId(t));
}

// ---------------------------------------------------------------------------
// Streams and collectives without a network.

TEST(ReplayCollective, ACommunicationTaskWaitsForEveryLaneToReachIt) {
  TaskGraph graph;
  const LaneId a = graph.AddLane(Lane{{0}, 0, 0, Bytes::Zero()});
  const LaneId b = graph.AddLane(Lane{{1}, 0, 1, Bytes::Zero()});
  const TaskId fa = graph.AddCompute(a, StreamKind::kCompute, TaskLabel::kForward, Micros(2));
  const TaskId fb = graph.AddCompute(b, StreamKind::kCompute, TaskLabel::kForward, Micros(5));
  const LaneId both[] = {a, b};
  const TaskId tp = graph.AddCommunication(both, StreamKind::kCompute,
                                           TaskLabel::kTensorParallel, CoflowSpec{});
  const TaskId ga = graph.AddCompute(a, StreamKind::kCompute, TaskLabel::kRecompute, Micros(1));
  const TaskId gb = graph.AddCompute(b, StreamKind::kCompute, TaskLabel::kOptimizer, Micros(3));
  ASSERT_TRUE(graph.Finalize().ok());
  Result<ReplayResult> result = Replay(graph, nullptr, nullptr, FreeCommunication(true));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const auto& spans = result->spans;
  EXPECT_EQ(spans[static_cast<size_t>(fa)].end, Micros(2));
  EXPECT_EQ(spans[static_cast<size_t>(fb)].end, Micros(5));
  EXPECT_EQ(spans[static_cast<size_t>(tp)].start, Micros(5));
  EXPECT_EQ(spans[static_cast<size_t>(tp)].end, Micros(5));
  EXPECT_EQ(spans[static_cast<size_t>(ga)].start, Micros(5));
  EXPECT_EQ(spans[static_cast<size_t>(gb)].end, Micros(8));
  EXPECT_EQ(result->makespan, Micros(8));
  // Lane a: 2 us forward, waits 3 us for its partner (bubble), 1 us
  // recompute, 2 us to the end (bubble).
  const LaneTimes& ta = result->lanes[static_cast<size_t>(a)];
  EXPECT_EQ(ta.compute, Micros(2));
  EXPECT_EQ(ta.recompute, Micros(1));
  EXPECT_EQ(ta.bubble, Micros(5));
  EXPECT_EQ(ta.end, Micros(6));
  // Lane b: the optimizer counts as compute.
  const LaneTimes& tb = result->lanes[static_cast<size_t>(b)];
  EXPECT_EQ(tb.compute, Micros(8));
  EXPECT_EQ(tb.bubble, Duration::Zero());
  ExpectIdentity(*result);
}

TEST(ReplayCollective, ZeroTimeComputeTasksAndEmptyStreamsReplay) {
  TaskGraph graph;
  const LaneId a = graph.AddLane(Lane{{0}, 0, 0, GiB(1)});
  graph.AddLane(Lane{{1}, 1, 0, GiB(2)});  // no tasks
  const TaskId x = graph.AddCompute(a, StreamKind::kCompute, TaskLabel::kForward, Duration::Zero());
  const TaskId y = graph.AddCompute(a, StreamKind::kCompute, TaskLabel::kBackward, Micros(3));
  graph.AddDependency(x, y);
  ASSERT_TRUE(graph.Finalize().ok());
  Result<ReplayResult> result = Replay(graph, nullptr, nullptr, FreeCommunication());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->makespan, Micros(3));
  EXPECT_EQ(result->lanes[1].bubble, Micros(3));
  EXPECT_EQ(result->lanes[1].end, Duration::Zero());
  EXPECT_EQ(result->lanes[1].peak_memory, GiB(2));
  EXPECT_EQ(result->lanes[0].peak_memory, GiB(1));
  ExpectIdentity(*result);
}

TEST(ReplayCollective, AnEmptyGraphTakesNoTime) {
  TaskGraph graph;
  graph.AddLane(Lane{{0}, 0, 0, Bytes::Zero()});
  ASSERT_TRUE(graph.Finalize().ok());
  Result<ReplayResult> result = Replay(graph, nullptr, nullptr, FreeCommunication());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->makespan, Duration::Zero());
  EXPECT_EQ(result->lanes[0].bubble, Duration::Zero());
}

// ---------------------------------------------------------------------------
// With a network: two nodes of pcie-l40s-8, where devices 0 and 1 share
// NIC 0 (400 Gb/s) and devices 8 and 9 NIC 0 of node 1.

class TwoL40sNodes {
 public:
  TwoL40sNodes()
      : spec_(topology::ResolveCluster("pcie-l40s-8", 2).value()),
        topology_(topology::Topology::Build(spec_).value()),
        network_(&topology_),
        model_(costmodel::CollectiveModel::Create(spec_).value()),
        flows_(&network_, &model_) {}

  const TopologyNetwork* network() const { return &network_; }
  CollectiveFlows* flows() { return &flows_; }

  // The coflow of a transfer of `size` from rank `from` to rank `to`.
  CoflowSpec Transfer(int from, int to, Bytes size) {
    const int src[] = {from};
    const int dst[] = {to};
    Result<FootprintId> id = flows_.RegisterTransfer(src, dst);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return flows_.Transfer(*id, size);
  }

 private:
  topology::ClusterSpec spec_;
  topology::Topology topology_;
  TopologyNetwork network_;
  costmodel::CollectiveModel model_;
  CollectiveFlows flows_;
};

// One lane per rank of `ranks` (lane i = ranks[i]).
TaskGraph LanesOfRanks(std::initializer_list<int> ranks) {
  TaskGraph graph;
  for (const int r : ranks) graph.AddLane(Lane{{r}, 0, 0, Bytes::Zero()});
  return graph;
}

TEST(ReplayNetwork, TwoTransfersOnOneNicEachGetHalfOfIt) {
  TwoL40sNodes cluster;
  const Bytes size = GB(1);
  const CoflowSpec a = cluster.Transfer(0, 8, size);
  const CoflowSpec b = cluster.Transfer(1, 9, size);
  ASSERT_EQ(a.progress_bytes, size);

  // Alone: the coflow's uncontended time.
  {
    TaskGraph graph = LanesOfRanks({0, 8});
    const LaneId pair[] = {0, 1};
    graph.AddCommunication(pair, StreamKind::kPipelineSend, TaskLabel::kPipelineActivation, a);
    ASSERT_TRUE(graph.Finalize().ok());
    Result<ReplayResult> alone = Replay(graph, cluster.flows(), cluster.network());
    ASSERT_TRUE(alone.ok()) << alone.status().ToString();
    EXPECT_NEAR(static_cast<double>(alone->makespan.picos()),
                static_cast<double>(a.uncontended_time.picos()), 1.0);
    EXPECT_EQ(alone->flows, 1);
  }
  // Together: both cross NIC 0 of each node, 50 GB/s, 25 GB/s each.
  TaskGraph graph = LanesOfRanks({0, 1, 8, 9});
  const LaneId first[] = {0, 2};
  const LaneId second[] = {1, 3};
  graph.AddCommunication(first, StreamKind::kPipelineSend, TaskLabel::kPipelineActivation, a);
  graph.AddCommunication(second, StreamKind::kPipelineSend, TaskLabel::kPipelineActivation, b);
  ASSERT_TRUE(graph.Finalize().ok());
  ReplayOptions spans;
  spans.record_spans = true;
  Result<ReplayResult> both = Replay(graph, cluster.flows(), cluster.network(), spans);
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  EXPECT_EQ(both->flows, 2);
  EXPECT_EQ(both->spans[0].end, a.latency + size / GBps(25));
  EXPECT_EQ(both->spans[1].end, b.latency + size / GBps(25));
  EXPECT_EQ(both->makespan, a.latency + size / GBps(25));
  // Nothing on the compute streams: all bubble.
  ExpectIdentity(*both);
  for (const LaneTimes& t : both->lanes) EXPECT_EQ(t.bubble, both->makespan);
}

TEST(ReplayNetwork, AReceiverWaitingOnATransferCountsItAsExposedCommunication) {
  TwoL40sNodes cluster;
  const CoflowSpec send = cluster.Transfer(0, 8, MB(100));
  TaskGraph graph = LanesOfRanks({0, 8});
  const LaneId pair[] = {0, 1};
  const TaskId f0 = graph.AddCompute(0, StreamKind::kCompute, TaskLabel::kForward, Millis(1));
  const TaskId tx = graph.AddCommunication(pair, StreamKind::kPipelineSend,
                                           TaskLabel::kPipelineActivation, send);
  const TaskId f1 = graph.AddCompute(1, StreamKind::kCompute, TaskLabel::kForward, Millis(2));
  graph.AddDependency(f0, tx);
  graph.AddDependency(tx, f1);
  ASSERT_TRUE(graph.Finalize().ok());
  ReplayOptions options;
  options.record_spans = true;
  Result<ReplayResult> result = Replay(graph, cluster.flows(), cluster.network(), options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const Duration arrival = result->spans[static_cast<size_t>(tx)].end;
  EXPECT_NEAR(static_cast<double>((arrival - Millis(1)).picos()),
              static_cast<double>(send.uncontended_time.picos()), 1.0);
  EXPECT_EQ(result->spans[static_cast<size_t>(f1)].start, arrival);
  EXPECT_EQ(result->makespan, arrival + Millis(2));
  // Lane 8 idles 1 ms for stage 0's forward (bubble), then for the transfer.
  const LaneTimes& receiver = result->lanes[1];
  EXPECT_EQ(receiver.exposed_comm, arrival - Millis(1));
  EXPECT_EQ(receiver.bubble, Millis(1));
  EXPECT_EQ(receiver.comm_in_path, Duration::Zero());
  // Lane 0 is done after 1 ms of compute; the rest is bubble.
  EXPECT_EQ(result->lanes[0].bubble, result->makespan - Millis(1));
  ExpectIdentity(*result);
}

TEST(ReplayNetwork, ComputeOverlappingDataParallelCommunicationIsSlowedDown) {
  TwoL40sNodes cluster;
  const CoflowSpec reduce = cluster.Transfer(0, 8, GB(1));
  TaskGraph graph = LanesOfRanks({0, 8});
  const LaneId pair[] = {0, 1};
  // The reduction starts first (lower id), so the forward starts while it runs.
  const TaskId dp = graph.AddCommunication(pair, StreamKind::kDataParallel,
                                           TaskLabel::kGradientReduce, reduce);
  const TaskId f1 = graph.AddCompute(0, StreamKind::kCompute, TaskLabel::kForward, Millis(10));
  const TaskId f2 = graph.AddCompute(0, StreamKind::kCompute, TaskLabel::kOptimizer, Millis(10));
  graph.AddDependency(dp, f2);
  ASSERT_TRUE(graph.Finalize().ok());
  ReplayOptions options;
  options.record_spans = true;
  options.overlap_slowdown = 0.1;
  Result<ReplayResult> result = Replay(graph, cluster.flows(), cluster.network(), options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const Duration reduced = result->spans[static_cast<size_t>(dp)].end;
  ASSERT_GT(reduced, Millis(11));
  EXPECT_EQ(result->spans[static_cast<size_t>(f1)].end, Millis(11));  // 10 ms × 1.1
  EXPECT_EQ(result->spans[static_cast<size_t>(f2)].start, reduced);
  EXPECT_EQ(result->spans[static_cast<size_t>(f2)].end, reduced + Millis(10));  // not slowed
  const LaneTimes& t = result->lanes[0];
  EXPECT_EQ(t.compute, Millis(21));
  EXPECT_EQ(t.exposed_comm, reduced - Millis(11));
  EXPECT_EQ(t.bubble, Duration::Zero());
  ExpectIdentity(*result);

  // Without the slowdown the forward takes its duration.
  options.overlap_slowdown = 0.0;
  Result<ReplayResult> plain = Replay(graph, cluster.flows(), cluster.network(), options);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->spans[static_cast<size_t>(f1)].end, Millis(10));
}

TEST(ReplayNetwork, AnEmptyCoflowEndsAtOnceWithoutAFlow) {
  TwoL40sNodes cluster;
  CoflowSpec empty = cluster.Transfer(0, 8, Bytes::Zero());
  empty.latency = Duration::Zero();
  TaskGraph graph = LanesOfRanks({0, 8});
  const LaneId pair[] = {0, 1};
  const TaskId f0 = graph.AddCompute(0, StreamKind::kCompute, TaskLabel::kForward, Micros(4));
  const TaskId tx = graph.AddCommunication(pair, StreamKind::kPipelineSend,
                                           TaskLabel::kPipelineActivation, empty);
  const TaskId f1 = graph.AddCompute(1, StreamKind::kCompute, TaskLabel::kForward, Micros(4));
  graph.AddDependency(f0, tx);
  graph.AddDependency(tx, f1);
  ASSERT_TRUE(graph.Finalize().ok());
  Result<ReplayResult> result = Replay(graph, cluster.flows(), cluster.network());
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->makespan, Micros(8));
  EXPECT_EQ(result->flows, 0);
}

// ---------------------------------------------------------------------------
// A random graph: 8 lanes, compute and collectives on all streams, random
// dependencies from lower to higher ids (so no cycle), random memory.

TaskGraph RandomGraph(TwoL40sNodes* cluster, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<int> ranks = {0, 1, 2, 3, 8, 9, 10, 11};
  TaskGraph graph;
  for (size_t l = 0; l < ranks.size(); ++l) {
    graph.AddLane(Lane{{ranks[l]}, static_cast<int>(l % 4), static_cast<int>(l / 4), MiB(100)});
  }
  const TaskLabel compute_labels[] = {TaskLabel::kForward, TaskLabel::kBackward,
                                      TaskLabel::kRecompute, TaskLabel::kOptimizer};
  const TaskLabel comm_labels[] = {TaskLabel::kTensorParallel, TaskLabel::kPipelineActivation,
                                   TaskLabel::kGradientReduce, TaskLabel::kParameterGather};
  const int num_tasks = 600;
  for (int t = 0; t < num_tasks; ++t) {
    const StreamKind stream = static_cast<StreamKind>(rng() % kNumStreams);
    TaskId id;
    if (rng() % 3 != 0) {
      const LaneId lane = static_cast<LaneId>(rng() % ranks.size());
      const Duration length = Micros(1 + static_cast<int>(rng() % 50)) + Picos(rng() % 1000);
      id = graph.AddCompute(lane, StreamKind::kCompute, compute_labels[rng() % 4], length);
    } else {
      std::vector<LaneId> lanes(ranks.size());
      for (size_t l = 0; l < lanes.size(); ++l) lanes[l] = static_cast<LaneId>(l);
      std::shuffle(lanes.begin(), lanes.end(), rng);
      lanes.resize(1 + rng() % 3);
      std::vector<int> from;
      std::vector<int> to;
      for (size_t i = 0; i < lanes.size(); ++i) {
        from.push_back(ranks[static_cast<size_t>(lanes[i])]);
        to.push_back(lanes.size() == 1 ? (from.back() + 8) % 16
                                       : ranks[static_cast<size_t>(lanes[(i + 1) % lanes.size()])]);
      }
      Result<FootprintId> footprint = cluster->flows()->RegisterTransfer(from, to);
      EXPECT_TRUE(footprint.ok()) << footprint.status().ToString();
      const CoflowSpec coflow =
          cluster->flows()->Transfer(*footprint, MB(1 + static_cast<int>(rng() % 20)));
      id = graph.AddCommunication(lanes, stream, comm_labels[rng() % 4], coflow);
    }
    if (rng() % 2 == 0) graph.SetMemory(id, MiB(rng() % 64), MiB(rng() % 16));
    const int deps = static_cast<int>(rng() % 3);
    for (int d = 0; d < deps && id > 0; ++d) {
      graph.AddDependency(static_cast<TaskId>(rng() % static_cast<uint32_t>(id)), id);
    }
  }
  return graph;
}

TEST(ReplayRandomGraph, AccountsForEveryPicosecondOfEveryLane) {
  TwoL40sNodes cluster;
  TaskGraph graph = RandomGraph(&cluster, 7);
  ASSERT_TRUE(graph.Finalize().ok());
  ReplayOptions options;
  options.record_spans = true;
  options.overlap_slowdown = 0.07;
  Result<ReplayResult> result = Replay(graph, cluster.flows(), cluster.network(), options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_GT(result->makespan, Duration::Zero());
  EXPECT_GT(result->flows, 0);
  ExpectIdentity(*result);

  // The spans honour the semantics: dependencies, stream order, durations.
  const std::vector<TaskSpan>& spans = result->spans;
  Duration makespan;
  int slowed = 0;
  for (size_t t = 0; t < graph.num_tasks(); ++t) {
    const TaskId id = static_cast<TaskId>(t);
    makespan = std::max(makespan, spans[t].end);
    for (const TaskId succ : graph.Successors(id)) {
      EXPECT_GE(spans[static_cast<size_t>(succ)].start, spans[t].end) << t << " -> " << succ;
    }
    const Task& task = graph.task(id);
    if (!task.communication) {
      const Duration length = spans[t].end - spans[t].start;
      EXPECT_TRUE(length == task.duration || length == task.duration * 1.07) << t;
      if (length != task.duration) ++slowed;
    }
  }
  EXPECT_EQ(result->makespan, makespan);
  // The graph exercises every kind of time: slowed compute, exposed
  // communication of other streams, communication in the path, bubbles.
  EXPECT_GT(slowed, 0);
  int waited = 0;
  for (const LaneTimes& t : result->lanes) {
    EXPECT_GT(t.comm_in_path, Duration::Zero());
    EXPECT_GT(t.bubble, Duration::Zero());
    EXPECT_GT(t.recompute, Duration::Zero());
    if (t.exposed_comm > t.comm_in_path) ++waited;
  }
  EXPECT_GT(waited, 0);
  for (size_t l = 0; l < graph.num_lanes(); ++l) {
    Duration last_end;
    for (int s = 0; s < kNumStreams; ++s) {
      const std::span<const TaskId> order =
          graph.StreamOrder(static_cast<LaneId>(l), static_cast<StreamKind>(s));
      for (size_t i = 0; i < order.size(); ++i) {
        const TaskSpan& span = spans[static_cast<size_t>(order[i])];
        last_end = std::max(last_end, span.end);
        if (i > 0) {
          EXPECT_GE(span.start, spans[static_cast<size_t>(order[i - 1])].end);
        }
      }
    }
    EXPECT_EQ(result->lanes[l].end, last_end) << "lane " << l;
  }
}

TEST(ReplayRandomGraph, TwoReplaysAreIdentical) {
  TwoL40sNodes cluster;
  TaskGraph graph = RandomGraph(&cluster, 11);
  ASSERT_TRUE(graph.Finalize().ok());
  ReplayOptions options;
  options.record_spans = true;
  options.overlap_slowdown = 0.05;
  Result<ReplayResult> a = Replay(graph, cluster.flows(), cluster.network(), options);
  Result<ReplayResult> b = Replay(graph, cluster.flows(), cluster.network(), options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->makespan, b->makespan);
  EXPECT_EQ(a->events, b->events);
  EXPECT_EQ(a->flows, b->flows);
  EXPECT_EQ(a->solves, b->solves);
  ASSERT_EQ(a->lanes.size(), b->lanes.size());
  for (size_t l = 0; l < a->lanes.size(); ++l) {
    const LaneTimes& x = a->lanes[l];
    const LaneTimes& y = b->lanes[l];
    EXPECT_EQ(x.compute, y.compute);
    EXPECT_EQ(x.recompute, y.recompute);
    EXPECT_EQ(x.comm_in_path, y.comm_in_path);
    EXPECT_EQ(x.exposed_comm, y.exposed_comm);
    EXPECT_EQ(x.bubble, y.bubble);
    EXPECT_EQ(x.end, y.end);
    EXPECT_EQ(x.peak_memory, y.peak_memory);
  }
  ASSERT_EQ(a->spans.size(), b->spans.size());
  for (size_t t = 0; t < a->spans.size(); ++t) {
    EXPECT_EQ(a->spans[t].start, b->spans[t].start);
    EXPECT_EQ(a->spans[t].end, b->spans[t].end);
  }
}

// ---------------------------------------------------------------------------
// The task graph itself and the errors.

TEST(TaskGraph, KeepsStreamOrderSuccessorsAndLanesOfRanks) {
  TaskGraph graph;
  const LaneId a = graph.AddLane(Lane{{0, 1}, 0, 0, Bytes::Zero()});
  const LaneId b = graph.AddLane(Lane{{4, 5}, 1, 0, Bytes::Zero()});
  const TaskId f = graph.AddCompute(a, StreamKind::kCompute, TaskLabel::kForward, Micros(1));
  const LaneId both[] = {b, a};
  const TaskId c = graph.AddCommunication(both, StreamKind::kPipelineSend,
                                          TaskLabel::kPipelineActivation, CoflowSpec{});
  const TaskId g = graph.AddCompute(b, StreamKind::kCompute, TaskLabel::kForward, Micros(1));
  graph.AddDependency(f, c);
  graph.AddDependency(c, g);
  graph.AddDependency(f, g);
  ASSERT_TRUE(graph.Finalize().ok());
  EXPECT_TRUE(graph.finalized());
  EXPECT_EQ(graph.num_tasks(), 3u);
  EXPECT_EQ(graph.LanesOf(c).size(), 2u);
  EXPECT_EQ(graph.LanesOf(c)[0], b);
  EXPECT_EQ(graph.StreamOrder(a, StreamKind::kPipelineSend).size(), 1u);
  EXPECT_EQ(graph.StreamOrder(b, StreamKind::kCompute).front(), g);
  EXPECT_TRUE(graph.StreamOrder(a, StreamKind::kDataParallel).empty());
  ASSERT_EQ(graph.Successors(f).size(), 2u);
  EXPECT_EQ(graph.Successors(f)[0], c);
  EXPECT_EQ(graph.Successors(f)[1], g);
  EXPECT_TRUE(graph.Successors(g).empty());
  EXPECT_EQ(graph.NumDependencies(g), 2);
  EXPECT_EQ(graph.NumDependencies(f), 0);
  EXPECT_EQ(graph.LaneOfRank(1), a);
  EXPECT_EQ(graph.LaneOfRank(5), b);
  EXPECT_EQ(graph.LaneOfRank(2), -1);
  EXPECT_EQ(graph.LaneOfRank(99), -1);
  EXPECT_TRUE(graph.task(c).communication);
  EXPECT_EQ(StreamKindName(StreamKind::kDataParallel), "dp-comm");
  EXPECT_EQ(TaskLabelName(TaskLabel::kTensorParallel), "tp-comm");
  EXPECT_TRUE(IsCommunication(TaskLabel::kGradientReduce));
  EXPECT_FALSE(IsCommunication(TaskLabel::kOptimizer));
}

TEST(TaskGraph, RejectsACycleThroughDependencies) {
  TaskGraph graph;
  const LaneId a = graph.AddLane(Lane{{0}, 0, 0, Bytes::Zero()});
  const TaskId x = graph.AddCompute(a, StreamKind::kCompute, TaskLabel::kForward, Micros(1));
  const TaskId y = graph.AddCompute(a, StreamKind::kCompute, TaskLabel::kBackward, Micros(1));
  graph.AddDependency(y, x);  // x precedes y on the stream
  const Status status = graph.Finalize();
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();
  EXPECT_NE(status.message().find("cycle"), std::string::npos) << status.ToString();
  EXPECT_FALSE(graph.finalized());
}

TEST(TaskGraph, RejectsACycleThroughACollectiveOnTwoLanes) {
  // Lane 0 runs a then the collective; lane 1 the collective then b; a
  // waits for b: a → c (stream 0), c → b (stream 1), b → a (dependency).
  TaskGraph graph;
  const LaneId l0 = graph.AddLane(Lane{{0}, 0, 0, Bytes::Zero()});
  const LaneId l1 = graph.AddLane(Lane{{1}, 0, 1, Bytes::Zero()});
  const TaskId a = graph.AddCompute(l0, StreamKind::kCompute, TaskLabel::kForward, Micros(1));
  const TaskId unrelated =
      graph.AddCompute(l1, StreamKind::kDataParallel, TaskLabel::kForward, Micros(1));
  const LaneId both[] = {l0, l1};
  graph.AddCommunication(both, StreamKind::kCompute, TaskLabel::kContextParallel, CoflowSpec{});
  const TaskId b = graph.AddCompute(l1, StreamKind::kCompute, TaskLabel::kForward, Micros(1));
  graph.AddDependency(b, a);
  const Status status = graph.Finalize();
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();
  // The unrelated task can start; the message names one of the cycle's.
  EXPECT_NE(status.message().find("3 of 4 tasks"), std::string::npos) << status.ToString();
  EXPECT_EQ(status.message().find("task " + std::to_string(unrelated) + " "), std::string::npos)
      << status.ToString();
}

TEST(TaskGraph, RejectsARankInTwoLanesAndALaneNamedTwice) {
  {
    TaskGraph graph;
    graph.AddLane(Lane{{0, 1}, 0, 0, Bytes::Zero()});
    graph.AddLane(Lane{{1, 2}, 1, 0, Bytes::Zero()});
    const Status status = graph.Finalize();
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_NE(status.message().find("rank 1"), std::string::npos) << status.ToString();
  }
  {
    TaskGraph graph;
    graph.AddLane(Lane{{}, 0, 0, Bytes::Zero()});
    EXPECT_EQ(graph.Finalize().code(), StatusCode::kInvalidArgument);
  }
  {
    TaskGraph graph;
    const LaneId a = graph.AddLane(Lane{{0}, 0, 0, Bytes::Zero()});
    const LaneId twice[] = {a, a};
    graph.AddCommunication(twice, StreamKind::kCompute, TaskLabel::kTensorParallel, CoflowSpec{});
    EXPECT_EQ(graph.Finalize().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ReplayErrors, RejectsAnUnfinalizedGraphAndAMissingNetwork) {
  TaskGraph graph;
  const LaneId a = graph.AddLane(Lane{{0}, 0, 0, Bytes::Zero()});
  const LaneId lanes[] = {a};
  graph.AddCommunication(lanes, StreamKind::kCompute, TaskLabel::kTensorParallel, CoflowSpec{});
  EXPECT_EQ(Replay(graph, nullptr, nullptr, FreeCommunication()).status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(graph.Finalize().ok());
  // Communication needs the flows and the network unless it is free.
  EXPECT_EQ(Replay(graph, nullptr, nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Replay(graph, nullptr, nullptr, FreeCommunication()).ok());
  ReplayOptions negative = FreeCommunication();
  negative.overlap_slowdown = -0.5;
  EXPECT_EQ(Replay(graph, nullptr, nullptr, negative).status().code(),
            StatusCode::kInvalidArgument);
  // A footprint the collective flows do not know.
  TwoL40sNodes cluster;
  EXPECT_EQ(Replay(graph, cluster.flows(), cluster.network()).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace orrery::sim
