#include "sim/network_builder.h"

#include <cmath>

#include "core/check.h"

namespace orrery::sim {

TopologyNetwork::TopologyNetwork(const topology::Topology* topology,
                                 std::span<const LinkDegradation> degraded)
    : topology_(topology) {
  ORRERY_CHECK(topology != nullptr);
  const size_t n = topology->num_links();
  // The divisor of each topology link (1: healthy).
  std::vector<double> divisor(n, 1.0);
  for (const LinkDegradation& d : degraded) {
    ORRERY_CHECK_LT(d.link.value(), n);
    ORRERY_CHECK(std::isfinite(d.factor) && d.factor >= 1.0) << "link degradation " << d.factor;
    divisor[d.link.value()] *= d.factor;
  }
  to_sim_.reserve(n);
  to_topology_.reserve(n);
  nominal_capacity_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const topology::LinkId id(static_cast<uint32_t>(i));
    const topology::Link& link = topology->link(id);
    const Bandwidth capacity = divisor[i] == 1.0 ? link.bandwidth : link.bandwidth / divisor[i];
    const LinkId sim_id = network_.AddLink(capacity, link.latency, link.name);
    to_sim_.push_back(sim_id);
    ORRERY_CHECK_EQ(sim_id.value(), to_topology_.size());
    to_topology_.push_back(id);
    nominal_capacity_.push_back(std::llround(link.bandwidth.BytesPerSecond()));
  }
}

int64_t TopologyNetwork::NominalCapacityBytesPerS(LinkId id) const {
  ORRERY_CHECK_LT(id.value(), nominal_capacity_.size());
  return nominal_capacity_[id.value()];
}

LinkId TopologyNetwork::ToSim(topology::LinkId id) const {
  ORRERY_CHECK_LT(id.value(), to_sim_.size());
  return to_sim_[id.value()];
}

topology::LinkId TopologyNetwork::ToTopology(LinkId id) const {
  ORRERY_CHECK_LT(id.value(), to_topology_.size());
  return to_topology_[id.value()];
}

std::vector<LinkId> TopologyNetwork::Route(int src, int dst) const {
  std::vector<LinkId> route;
  RouteInto(src, dst, &route);
  return route;
}

void TopologyNetwork::RouteInto(int src, int dst, std::vector<LinkId>* route,
                                std::vector<topology::LinkId>* scratch) const {
  std::vector<topology::LinkId> local;
  std::vector<topology::LinkId>* path = scratch != nullptr ? scratch : &local;
  topology_->RouteInto(src, dst, path);
  route->clear();
  for (const topology::LinkId id : *path) route->push_back(ToSim(id));
}

}  // namespace orrery::sim
