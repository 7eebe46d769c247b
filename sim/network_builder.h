// TopologyNetwork: the simulator's Network built from a topology::Topology,
// with the mapping between the two sets of link ids, so a transfer from
// rank a to rank b becomes a flow along Topology::Route(a, b).
//
// Every directed link of the Topology becomes one sim::Link with the same
// capacity, latency and name (a full-duplex cable is two links in both).
// Links are added in topology order, so today sim id == topology id; callers
// should still go through ToSim / Route rather than rely on it.
//
// Degraded links (sim/faults.h): a topology link given with a factor f
// becomes a sim link of capacity bandwidth / f (the factors of a link named
// more than once multiply); NominalCapacityBytesPerS keeps what it would
// carry healthy, for the collective model's rate caps
// (sim/collective_flows.h).
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

#include <cstdint>
#include <span>
#include <vector>

#include "sim/network.h"
#include "topology/topology_graph.h"

namespace orrery::sim {

// A topology link whose capacity the network divides by `factor`.
struct LinkDegradation {
  topology::LinkId link;
  double factor = 1.0;  // >= 1
};

class TopologyNetwork {
 public:
  // Builds the network of `topology`, which must outlive this object, with
  // the capacities of `degraded` divided by their factors.
  // REQUIRES: each link of the topology; each factor finite and >= 1.
  explicit TopologyNetwork(const topology::Topology* topology,
                           std::span<const LinkDegradation> degraded = {});
  TopologyNetwork(const TopologyNetwork&) = delete;
  TopologyNetwork& operator=(const TopologyNetwork&) = delete;

  const Network& network() const { return network_; }
  const topology::Topology& topology() const { return *topology_; }

  // The sim link of a topology link, and back.
  // REQUIRES: the id names a link of the topology / of network().
  LinkId ToSim(topology::LinkId id) const;
  topology::LinkId ToTopology(LinkId id) const;

  // The capacity of sim link `id` before any degradation, in integer bytes
  // per second rounded as Network::AddLink rounds; equal to
  // network().link(id).capacity_bytes_per_s for a healthy link.
  // REQUIRES: id names a link of network().
  int64_t NominalCapacityBytesPerS(LinkId id) const;

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
  std::vector<int64_t> nominal_capacity_;        // by sim link id
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_NETWORK_BUILDER_H_
