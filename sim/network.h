// Network: the links of a simulated cluster, as resources a flow consumes.
//
// A link is a one-directional resource with a capacity (a Bandwidth, decimal
// bytes per second as datasheets write it) and a latency (the time a byte
// takes to cross it, paid once per flow: see sim/flow_model.h). A duplex
// cable is two links. Routes are lists of LinkIds; the network does not
// route — the Topology (topology/) chooses the path and the simulator
// translates it into links.
//
// Exactness: the flow model shares capacity in integer bytes per second, so
// AddLink rounds the capacity to the nearest byte per second once, here;
// capacity_bytes_per_s() is that integer.
//
// In SimGrid's vocabulary a link is a *resource* (a constraint of the
// sharing system); a flow on it is an *action*.
//
// Thread-safety: immutable once built; concurrent reads are safe.
#ifndef ORRERY_SIM_NETWORK_H_
#define ORRERY_SIM_NETWORK_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/strong_id.h"
#include "core/units.h"

namespace orrery::sim {

// Index of a link in its Network.
using LinkId = StrongId<struct LinkIdTag>;

struct Link {
  std::string name;  // for reports and messages; may be empty
  Bandwidth capacity;
  Duration latency;
  int64_t capacity_bytes_per_s = 0;  // capacity rounded to an integer
};

class Network {
 public:
  // Adds a link and returns its id (ids are consecutive from 0).
  // REQUIRES: capacity >= 1 byte/s and finite; latency >= 0.
  LinkId AddLink(Bandwidth capacity, Duration latency, std::string name = "");

  size_t num_links() const { return links_.size(); }
  // REQUIRES: id names a link of this network.
  const Link& link(LinkId id) const;
  bool Contains(LinkId id) const { return id.value() < links_.size(); }

 private:
  std::vector<Link> links_;
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_NETWORK_H_
