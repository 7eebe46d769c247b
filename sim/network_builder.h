// TopologyNetwork: the simulator's Network built from a topology::Topology,
// with the mapping between the two sets of link ids, so a transfer from
// rank a to rank b becomes a flow along Topology::Route(a, b).
//
// Every directed link of the Topology becomes one sim::Link with the same
// capacity, latency and name (a full-duplex cable is two links in both).
// Links are added in topology order, so today sim id == topology id; callers
// should still go through ToSim / Route rather than rely on it.
//
// Usage:
//   ORRERY_ASSIGN_OR_RETURN(topology::Topology topo, topology::Topology::Build(spec));
//   sim::TopologyNetwork net(&topo);
//   sim::FlowModel flows(&engine, &net.network());
//   net.RouteInto(src, dst, &route);
//   flows.StartFlow(route, MiB(64), &observer, tag);
//
// Thread-safety: immutable once built; concurrent reads are safe.
#ifndef ORRERY_SIM_NETWORK_BUILDER_H_
#define ORRERY_SIM_NETWORK_BUILDER_H_

#include <vector>

#include "sim/network.h"
#include "topology/topology_graph.h"

namespace orrery::sim {

class TopologyNetwork {
 public:
  // Builds the network of `topology`, which must outlive this object.
  explicit TopologyNetwork(const topology::Topology* topology);
  TopologyNetwork(const TopologyNetwork&) = delete;
  TopologyNetwork& operator=(const TopologyNetwork&) = delete;

  const Network& network() const { return network_; }
  const topology::Topology& topology() const { return *topology_; }

  // The sim link of a topology link, and back.
  // REQUIRES: the id names a link of the topology / of network().
  LinkId ToSim(topology::LinkId id) const;
  topology::LinkId ToTopology(LinkId id) const;

  // The sim links of Topology::Route(src, dst), in order; empty if src ==
  // dst. REQUIRES: both ranks in [0, topology().num_devices()).
  std::vector<LinkId> Route(int src, int dst) const;
  // As Route, into `*route` (cleared first). Allocates nothing once `*route`
  // has held a route as long, apart from the topology's own route vector,
  // which `scratch` (when not null) holds instead.
  void RouteInto(int src, int dst, std::vector<LinkId>* route,
                 std::vector<topology::LinkId>* scratch = nullptr) const;

 private:
  const topology::Topology* topology_;
  Network network_;
  std::vector<LinkId> to_sim_;                  // by topology link id
  std::vector<topology::LinkId> to_topology_;   // by sim link id
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_NETWORK_BUILDER_H_
