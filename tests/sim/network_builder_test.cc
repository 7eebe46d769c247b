// The simulator's network built from a Topology: flows started along
// Topology routes share the links as the cluster's wires would.
#include "sim/network_builder.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/units.h"
#include "sim/engine.h"
#include "sim/flow_model.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"

namespace orrery::sim {
namespace {

topology::Topology Build(const std::string& preset, int nodes,
                         double leaf_oversubscription = 1.0, int leaf_nodes = 32) {
  Result<topology::ClusterSpec> spec = topology::ResolveCluster(preset, nodes);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  spec->network.tiers[0].oversubscription = leaf_oversubscription;
  spec->network.tiers[0].nodes_per_switch = leaf_nodes;
  Result<topology::Topology> topology = topology::Topology::Build(*spec);
  EXPECT_TRUE(topology.ok()) << topology.status().ToString();
  return std::move(topology).value();
}

class Completions : public FlowObserver {
 public:
  explicit Completions(const Engine* engine) : engine_(engine) {}
  void OnFlowCompleted(FlowId, uint64_t tag) override { time[tag] = engine_->now(); }
  std::map<uint64_t, SimTime> time;

 private:
  const Engine* engine_;
};

TEST(TopologyNetwork, MirrorsEveryTopologyLink) {
  const topology::Topology topo = Build("dgx-h100", 4);
  const TopologyNetwork net(&topo);
  ASSERT_EQ(net.network().num_links(), topo.num_links());
  for (uint32_t i = 0; i < topo.num_links(); ++i) {
    const topology::LinkId id(i);
    const Link& link = net.network().link(net.ToSim(id));
    EXPECT_EQ(link.name, topo.link(id).name);
    EXPECT_EQ(link.capacity, topo.link(id).bandwidth);
    EXPECT_EQ(link.latency, topo.link(id).latency);
    EXPECT_EQ(net.ToTopology(net.ToSim(id)), id);
  }
  const std::vector<LinkId> route = net.Route(3, 11);
  const std::vector<topology::LinkId> path = topo.Route(3, 11);
  ASSERT_EQ(route.size(), path.size());
  for (size_t i = 0; i < route.size(); ++i) EXPECT_EQ(net.ToTopology(route[i]), path[i]);
}

TEST(TopologyNetwork, EightFlowsOnDistinctRailsEachGetTheFullNicRate) {
  const topology::Topology topo = Build("dgx-h100", 2);
  const TopologyNetwork net(&topo);
  Engine engine;
  FlowModel model(&engine, &net.network());
  Completions done(&engine);
  std::vector<FlowId> flows;
  std::vector<LinkId> route;
  for (int d = 0; d < 8; ++d) {
    net.RouteInto(d, 8 + d, &route);
    flows.push_back(model.StartFlow(route, GB(1), &done, d));
  }
  // Past the 1 us of latency (one leaf hop), into the transfer phase.
  engine.RunUntil(Micros(2));
  for (const FlowId flow : flows) EXPECT_EQ(model.Rate(flow), Gbps(400));
  engine.Run();
  // 1 GB at 50 GB/s after one leaf hop of 1 us.
  for (int d = 0; d < 8; ++d) EXPECT_EQ(done.time.at(d), Millis(20) + Micros(1)) << d;
}

TEST(TopologyNetwork, TwoFlowsSharingOneNicGetHalfEach) {
  // pcie-l40s-8: devices 0 and 1 share NIC 0 (400 Gb/s).
  const topology::Topology topo = Build("pcie-l40s-8", 2);
  const TopologyNetwork net(&topo);
  Engine engine;
  FlowModel model(&engine, &net.network());
  Completions done(&engine);
  const FlowId a = model.StartFlow(net.Route(0, 8), GB(1), &done, 0);
  const FlowId b = model.StartFlow(net.Route(1, 9), GB(1), &done, 1);
  // Past the 1 us of latency (one leaf hop), into the transfer phase.
  engine.RunUntil(Micros(2));
  EXPECT_EQ(model.Rate(a), GBps(25));
  EXPECT_EQ(model.Rate(b), GBps(25));
  engine.Run();
  EXPECT_EQ(done.time.at(0), Millis(40) + Micros(1));
  EXPECT_EQ(done.time.at(1), Millis(40) + Micros(1));
}

TEST(TopologyNetwork, TwoNicsBehindATwoToOneLeafShareOneNicOfUplink) {
  // Leaves of 2 nodes at 2:1: one uplink port (50 GB/s) per rail leaf, one
  // plane. Nodes 0 and 1 send on rail 3 to nodes 2 and 3.
  const topology::Topology topo = Build("dgx-h100", 4, /*leaf_oversubscription=*/2.0,
                                        /*leaf_nodes=*/2);
  ASSERT_EQ(topo.planes(), 1);
  const TopologyNetwork net(&topo);
  Engine engine;
  FlowModel model(&engine, &net.network());
  Completions done(&engine);
  const FlowId a = model.StartFlow(net.Route(3, 19), GB(1), &done, 0);
  const FlowId b = model.StartFlow(net.Route(11, 27), GB(1), &done, 1);
  // Past the 3 us of latency (leaf, spine, leaf), into the transfer phase.
  engine.RunUntil(Micros(4));
  EXPECT_EQ(model.Rate(a), GBps(25));
  EXPECT_EQ(model.Rate(b), GBps(25));
  engine.Run();
  EXPECT_EQ(done.time.at(0), Millis(40) + Micros(3));
  EXPECT_EQ(done.time.at(1), Millis(40) + Micros(3));
}

}  // namespace
}  // namespace orrery::sim
