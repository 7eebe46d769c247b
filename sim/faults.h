// Stragglers and faults (issue 9): one slow device or one degraded link,
// and what it costs the whole iteration.
//
//   * A slow device: every compute task (forward, backward, recompute, the
//     optimizer step) of rank `rank` takes `factor` times as long — a GPU
//     throttled by power or heat, a CPU core shared with another tenant.
//     Ranks that synchronize with it every layer (its tensor-, context-
//     and expert-parallel groups) wait for it; the data-parallel reduction
//     and the pipeline wait for its lane.
//   * A degraded link: its bandwidth is divided by `factor` — a cable
//     trained down (400 → 200 Gb/s is factor 2), a flapping port, a
//     congested uplink. `link` names a link of the cluster's topology
//     (topology::Topology, `orrery clusters --cluster C --links` lists
//     them): a link's name "node3/nic2->leaf0.rail2" (that direction
//     only), or a vertex's name "node3/nic2" (every link into and out of
//     it: both directions of its cables).
//
// Faults act on the event simulator (sim/iteration.h
// IterationOptions::faults): the analytical model and the search do not
// see them.
//
// Command-line form (`orrery simulate --slow-device RANK:FACTOR
// --degrade-link LINK:FACTOR`, sweep files' "faults"): the text after the
// last ':' is the factor, a number >= 1.
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_SIM_FAULTS_H_
#define ORRERY_SIM_FAULTS_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "topology/topology_graph.h"

namespace orrery::sim {

struct SlowDevice {
  int rank = 0;
  double factor = 1.0;  // >= 1: compute takes factor × as long
  bool operator==(const SlowDevice&) const = default;
};

struct DegradedLink {
  std::string link;     // a link name ("A->B") or a vertex name ("A")
  double factor = 1.0;  // >= 1: bandwidth / factor
  bool operator==(const DegradedLink&) const = default;
};

struct Faults {
  std::vector<SlowDevice> slow_devices;
  std::vector<DegradedLink> degraded_links;
  bool empty() const { return slow_devices.empty() && degraded_links.empty(); }
  bool operator==(const Faults&) const = default;
};

// "RANK:FACTOR" and "LINK:FACTOR". InvalidArgument quoting the text when it
// has no ':', the rank is not an integer >= 0, or the factor is not a
// finite number >= 1.
Result<SlowDevice> ParseSlowDevice(std::string_view text);
Result<DegradedLink> ParseDegradedLink(std::string_view text);

// "0:1.5", "node3/nic2:4": the forms the parsers read.
std::string SlowDeviceText(const SlowDevice& s);
std::string DegradedLinkText(const DegradedLink& d);

// The topology links `d` names (one for a link name; every link into and
// out of a vertex for a vertex name). NotFound naming the cluster and up
// to five names that share the text's node prefix when none matches.
Result<std::vector<topology::LinkId>> ResolveDegradedLink(const topology::Topology& topology,
                                                         const DegradedLink& d);

// Checks every fault against `topology`: ranks in [0, devices), links
// that resolve. The first error.
Status CheckFaults(const Faults& faults, const topology::Topology& topology);

}  // namespace orrery::sim

#endif  // ORRERY_SIM_FAULTS_H_
