// Stragglers and faults (sim/faults.h): parsing and writing the command
// line's forms, resolving link names on a preset cluster, and what a slow
// device or a degraded link does to a simulated iteration.
#include "sim/faults.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sim/iteration.h"
#include "sim/network_builder.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::sim {
namespace {

using ::testing::HasSubstr;
using workload::Plan;

topology::ClusterSpec Cluster(const std::string& name, int nodes) {
  Result<topology::ClusterSpec> c = topology::ResolveCluster(name, nodes);
  EXPECT_TRUE(c.ok()) << c.status().message();
  return *c;
}

topology::Topology Build(const topology::ClusterSpec& spec) {
  Result<topology::Topology> t = topology::Topology::Build(spec);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return std::move(t).value();
}

workload::ModelSpec Model(const std::string& name) {
  Result<workload::ModelSpec> m = workload::ModelPreset(name);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return *m;
}

IterationReport Simulate(const workload::ModelSpec& model, const Plan& plan,
                         const topology::ClusterSpec& cluster, const Faults& faults,
                         IterationTrace* trace = nullptr) {
  IterationOptions options;
  options.faults = faults;
  Result<IterationReport> r = SimulateIteration(model, plan, cluster, options, trace);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : IterationReport{};
}

// --- Parsing and text ------------------------------------------------------

TEST(ParseSlowDevice, ReadsRankAndFactor) {
  Result<SlowDevice> s = ParseSlowDevice("3:1.5");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(*s, (SlowDevice{3, 1.5}));
  Result<SlowDevice> one = ParseSlowDevice("0:1");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, (SlowDevice{0, 1.0}));
}

TEST(ParseSlowDevice, RejectsBadTextQuotingIt) {
  for (const char* text : {"3", "-1:2", "a:2", ":2", "1.5:2", "0:0.5", "0:", "0:2x", "0:inf",
                           "0:nan", "0:-3", "0:1001"}) {
    Result<SlowDevice> s = ParseSlowDevice(text);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(s.status().message(), HasSubstr("\"" + std::string(text) + "\"")) << text;
  }
}

TEST(ParseDegradedLink, SplitsAtTheLastColon) {
  Result<DegradedLink> d = ParseDegradedLink("node3/nic2->leaf0.rail2:4");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(*d, (DegradedLink{"node3/nic2->leaf0.rail2", 4.0}));
  Result<DegradedLink> colon = ParseDegradedLink("a:b:2.5");
  ASSERT_TRUE(colon.ok());
  EXPECT_EQ(*colon, (DegradedLink{"a:b", 2.5}));
  for (const char* text : {"node0/nic0", ":2", "node0/nic0:0.9", "node0/nic0:fast"}) {
    Result<DegradedLink> bad = ParseDegradedLink(text);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_THAT(bad.status().message(), HasSubstr("\"" + std::string(text) + "\"")) << text;
  }
}

TEST(FaultText, IsTheShortestFormThatReadsBack) {
  EXPECT_EQ(SlowDeviceText({0, 1.5}), "0:1.5");
  EXPECT_EQ(SlowDeviceText({12, 2.0}), "12:2");
  EXPECT_EQ(DegradedLinkText({"node3/nic2", 4.0}), "node3/nic2:4");
  EXPECT_EQ(DegradedLinkText({"node0/nic0->leaf0.rail0", 1.25}), "node0/nic0->leaf0.rail0:1.25");
  const SlowDevice odd{7, 1.0 + 1.0 / 3.0};
  Result<SlowDevice> back = ParseSlowDevice(SlowDeviceText(odd));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, odd);
  const DegradedLink link{"x:y", 1.1};
  Result<DegradedLink> link_back = ParseDegradedLink(DegradedLinkText(link));
  ASSERT_TRUE(link_back.ok());
  EXPECT_EQ(*link_back, link);
}

// --- Resolving names -------------------------------------------------------

TEST(ResolveDegradedLink, ALinkNameIsThatDirectedLink) {
  const topology::Topology topo = Build(Cluster("dgx-h100", 2));
  Result<std::vector<topology::LinkId>> links =
      ResolveDegradedLink(topo, {"node1/nic2->leaf0.rail2", 2.0});
  ASSERT_TRUE(links.ok()) << links.status().message();
  ASSERT_EQ(links->size(), 1u);
  EXPECT_EQ(topo.link(links->front()).name, "node1/nic2->leaf0.rail2");
}

TEST(ResolveDegradedLink, AVertexNameIsEveryLinkIntoAndOutOfIt) {
  const topology::Topology topo = Build(Cluster("dgx-h100", 2));
  Result<std::vector<topology::LinkId>> links = ResolveDegradedLink(topo, {"node1/nic2", 2.0});
  ASSERT_TRUE(links.ok()) << links.status().message();
  // The NIC's cables: to and from its device, to and from its leaf.
  std::vector<std::string> names;
  for (const topology::LinkId id : *links) names.push_back(topo.link(id).name);
  EXPECT_THAT(names, ::testing::UnorderedElementsAre(
                         "node1/dev2->node1/nic2", "node1/nic2->node1/dev2",
                         "node1/nic2->leaf0.rail2", "leaf0.rail2->node1/nic2"));
  EXPECT_TRUE(std::is_sorted(links->begin(), links->end(),
                             [](auto a, auto b) { return a.value() < b.value(); }));
}

TEST(ResolveDegradedLink, AnUnknownNameIsNotFoundWithNamesLikeIt) {
  const topology::Topology topo = Build(Cluster("dgx-h100", 2));
  Result<std::vector<topology::LinkId>> vertex = ResolveDegradedLink(topo, {"node1/nic9", 2.0});
  ASSERT_FALSE(vertex.ok());
  EXPECT_EQ(vertex.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(vertex.status().message(), HasSubstr("\"node1/nic9\""));
  EXPECT_THAT(vertex.status().message(), HasSubstr("2 node(s), 16 devices"));
  EXPECT_THAT(vertex.status().message(), HasSubstr("names like it: node1/nic0, node1/nic1"));

  // No node 9: names of the same stem.
  Result<std::vector<topology::LinkId>> far = ResolveDegradedLink(topo, {"node9/nic0", 2.0});
  ASSERT_FALSE(far.ok());
  EXPECT_THAT(far.status().message(), HasSubstr("names like it: node0/dev0"));

  // A link between existing vertices that does not exist: the links that
  // begin alike.
  Result<std::vector<topology::LinkId>> rail =
      ResolveDegradedLink(topo, {"node0/nic0->leaf0.rail5", 2.0});
  ASSERT_FALSE(rail.ok());
  EXPECT_THAT(rail.status().message(), HasSubstr("names like it: node0/nic0->leaf0.rail0"));

  // A link of no known vertex lists links of its place, at most five.
  Result<std::vector<topology::LinkId>> link =
      ResolveDegradedLink(topo, {"node0/nic9->leaf0.rail9", 2.0});
  ASSERT_FALSE(link.ok());
  const std::string m = link.status().message();
  const size_t list = m.find("names like it: ");
  ASSERT_NE(list, std::string::npos) << m;
  EXPECT_EQ(std::count(m.begin() + static_cast<std::ptrdiff_t>(list), m.end(), ','), 4) << m;
  EXPECT_THAT(m.substr(list), HasSubstr("node0/"));
  EXPECT_THAT(m.substr(list), HasSubstr("->"));
}

TEST(CheckFaults, RanksMustBeTheClustersAndLinksMustResolve) {
  const topology::Topology topo = Build(Cluster("dgx-h100", 2));
  EXPECT_TRUE(CheckFaults({}, topo).ok());
  EXPECT_TRUE(CheckFaults({{{15, 2.0}}, {{"node0/nic0", 2.0}}}, topo).ok());
  const Status rank = CheckFaults({{{16, 2.0}}, {}}, topo);
  EXPECT_EQ(rank.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(rank.message(), HasSubstr("[0, 16)"));
  EXPECT_EQ(CheckFaults({{{0, 0.5}}, {}}, topo).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckFaults({{}, {{"node0/nic0", 1.0}, {"nope", 2.0}}}, topo).code(),
            StatusCode::kNotFound);
}

TEST(TopologyNetwork, DividesADegradedLinksCapacityAndKeepsItsNominal) {
  const topology::Topology topo = Build(Cluster("dgx-h100", 2));
  Result<std::vector<topology::LinkId>> nic = ResolveDegradedLink(topo, {"node0/nic0", 4.0});
  ASSERT_TRUE(nic.ok());
  std::vector<LinkDegradation> degraded;
  for (const topology::LinkId id : *nic) degraded.push_back({id, 4.0});
  degraded.push_back({nic->front(), 2.0});  // named twice: the factors multiply
  const TopologyNetwork healthy(&topo);
  const TopologyNetwork slow(&topo, degraded);
  for (size_t i = 0; i < topo.num_links(); ++i) {
    const LinkId id = slow.ToSim(topology::LinkId(static_cast<uint32_t>(i)));
    const int64_t nominal = healthy.network().link(id).capacity_bytes_per_s;
    EXPECT_EQ(slow.NominalCapacityBytesPerS(id), nominal);
    EXPECT_EQ(healthy.NominalCapacityBytesPerS(id), nominal);
    const bool is_nic = std::find(nic->begin(), nic->end(), slow.ToTopology(id)) != nic->end();
    const double divisor = !is_nic ? 1.0 : (slow.ToTopology(id) == nic->front() ? 8.0 : 4.0);
    EXPECT_NEAR(static_cast<double>(slow.network().link(id).capacity_bytes_per_s),
                static_cast<double>(nominal) / divisor, 1.0)
        << slow.network().link(id).name;
  }
}

// --- The simulated iteration -------------------------------------------------

TEST(SimulateIterationFaults, ASlowDeviceSlowsTheIterationByAtMostItsFactor) {
  const workload::ModelSpec model = Model("gpt-1.7b");
  const topology::ClusterSpec cluster = Cluster("dgx-h100", 1);
  const Plan plan = Plan::Uniform(model, 2, {.tp = 2, .dp = 2}, 16, 2);
  const IterationReport base = Simulate(model, plan, cluster, {});
  const IterationReport slow = Simulate(model, plan, cluster, {{{0, 2.0}}, {}});
  EXPECT_GT(slow.iteration_time, base.iteration_time);
  EXPECT_LE(slow.iteration_time, base.iteration_time * 2);
  // Rank 0's lane is its tp group {0, 1}: both go at its pace. It is stage
  // 0's, which the fill of the pipeline and the reduction wait for.
  EXPECT_EQ(slow.bound_stage, 0);
  EXPECT_EQ(slow.bound_ranks, (std::vector<int>{0, 1}));
  EXPECT_LT(slow.tokens_per_s, base.tokens_per_s);
}

TEST(SimulateIterationFaults, DataParallelReplicasWaitForTheSlowOne) {
  // dp 8 on one node: without faults every replica ends together; with
  // rank 5 at 1.5× every replica waits for it at the gradient reduction.
  const workload::ModelSpec model = Model("gpt-1.7b");
  const topology::ClusterSpec cluster = Cluster("dgx-h100", 1);
  const Plan plan = Plan::Uniform(model, 1, {.tp = 1, .dp = 8}, 16, 2);
  const IterationReport base = Simulate(model, plan, cluster, {});
  IterationTrace trace;
  const IterationReport slow = Simulate(model, plan, cluster, {{{5, 1.5}}, {}}, &trace);
  EXPECT_EQ(slow.bound_ranks, (std::vector<int>{5}));
  // The slow lane's compute is 1.5× a healthy lane's, and every lane ends
  // after the slow one has finished its backward passes: past the healthy
  // iteration by most of the extra compute.
  const LaneTimes& slow_lane = trace.replay.lanes[static_cast<size_t>(trace.graph.graph.LaneOfRank(5))];
  const LaneTimes& fast_lane = trace.replay.lanes[static_cast<size_t>(trace.graph.graph.LaneOfRank(0))];
  EXPECT_NEAR(slow_lane.compute / fast_lane.compute, 1.5, 0.01);
  const Duration extra = slow_lane.compute - fast_lane.compute;
  for (const LaneTimes& lane : trace.replay.lanes) {
    EXPECT_GT(lane.end, base.iteration_time + extra * 0.8);
  }
  EXPECT_LE(slow.iteration_time, base.iteration_time * 1.5);
}

TEST(SimulateIterationFaults, ADegradedNicSlowsAnInterNodeDataParallelPlan) {
  // tp 8 within each node, dp 2 across the two: the gradient all-reduce of
  // tp rank 0 crosses node0/nic0, and its lock-step coflow with the other
  // seven rails goes at that rail's pace.
  const workload::ModelSpec model = Model("gpt-1.7b");
  const topology::ClusterSpec cluster = Cluster("dgx-h100", 2);
  const Plan plan = Plan::Uniform(model, 1, {.tp = 8, .dp = 2}, 16, 2);
  const IterationReport base = Simulate(model, plan, cluster, {});
  const IterationReport degraded = Simulate(model, plan, cluster, {{}, {{"node0/nic0", 4.0}}});
  EXPECT_GT(degraded.iteration_time, base.iteration_time);
  EXPECT_GT(degraded.breakdown.exposed_comm, base.breakdown.exposed_comm);
}

TEST(SimulateIterationFaults, ADegradedNicDoesNotTouchASingleNodePlan) {
  const workload::ModelSpec model = Model("gpt-1.7b");
  const topology::ClusterSpec cluster = Cluster("dgx-h100", 1);
  const Plan plan = Plan::Uniform(model, 1, {.tp = 2, .dp = 4}, 16, 2);
  const IterationReport base = Simulate(model, plan, cluster, {});
  const IterationReport degraded = Simulate(model, plan, cluster, {{}, {{"node0/nic0", 4.0}}});
  EXPECT_EQ(degraded.iteration_time, base.iteration_time);
}

TEST(SimulateIterationFaults, ADegradedNvSwitchSlowsTensorParallelCollectives) {
  // The collective's rate cap comes from healthy links, so a degraded link
  // slows the coflow rather than being absorbed into it.
  const workload::ModelSpec model = Model("gpt-1.7b");
  const topology::ClusterSpec cluster = Cluster("dgx-h100", 1);
  const Plan plan = Plan::Uniform(model, 1, {.tp = 8, .dp = 1}, 8, 2);
  const IterationReport base = Simulate(model, plan, cluster, {});
  const IterationReport degraded =
      Simulate(model, plan, cluster, {{}, {{"node0/nvswitch", 4.0}}});
  EXPECT_GT(degraded.breakdown.exposed_comm, base.breakdown.exposed_comm * 2);
  EXPECT_GT(degraded.iteration_time, base.iteration_time);
}

TEST(SimulateIterationFaults, AFactorOfOneChangesNothing) {
  const workload::ModelSpec model = Model("gpt-1.7b");
  const topology::ClusterSpec cluster = Cluster("dgx-h100", 2);
  const Plan plan = Plan::Uniform(model, 2, {.tp = 2, .dp = 4}, 32, 2);
  const IterationReport base = Simulate(model, plan, cluster, {});
  const IterationReport same =
      Simulate(model, plan, cluster, {{{0, 1.0}, {9, 1.0}}, {{"node0/nic0", 1.0}}});
  EXPECT_EQ(same.iteration_time, base.iteration_time);
  EXPECT_EQ(same.breakdown.compute, base.breakdown.compute);
  EXPECT_EQ(same.breakdown.exposed_comm, base.breakdown.exposed_comm);
  EXPECT_EQ(same.events, base.events);
  EXPECT_EQ(same.flows, base.flows);
}

TEST(SimulateIterationFaults, BadFaultsAreErrorsNamingTheCluster) {
  const workload::ModelSpec model = Model("gpt-1.7b");
  const topology::ClusterSpec cluster = Cluster("dgx-h100", 1);
  const Plan plan = Plan::Uniform(model, 1, {.tp = 1, .dp = 8}, 16, 2);
  IterationOptions options;
  options.faults.slow_devices.push_back({8, 2.0});
  Result<IterationReport> rank = SimulateIteration(model, plan, cluster, options);
  ASSERT_FALSE(rank.ok());
  EXPECT_EQ(rank.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(rank.status().message(), HasSubstr("cluster dgx-h100"));
  options.faults = {{}, {{"node0/nic8", 2.0}}};
  Result<IterationReport> link = SimulateIteration(model, plan, cluster, options);
  ASSERT_FALSE(link.ok());
  EXPECT_EQ(link.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(link.status().message(), HasSubstr("cluster dgx-h100"));
  EXPECT_THAT(link.status().message(), HasSubstr("node0/nic"));
}

}  // namespace
}  // namespace orrery::sim
