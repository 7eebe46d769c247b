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
// IterationOptions::faults). The analytical model, and so the search's
// ranking (search/search.h SearchRequest::faults), sees slow devices only
// (sim/analytical.h AnalyticalOptions::slow_devices): the stage holding a
// slow rank computes at its pace.
//
// Command-line form (`orrery simulate --slow-device RANK:FACTOR
// --degrade-link LINK:FACTOR`, sweep files' "faults"): the text after the
// last ':' is the factor, a number >= 1 (and at most kMaxFaultFactor, so
// that a slowed iteration's time still fits the simulator's integer
// picoseconds). Several faults on one rank or one link multiply; a lane
// with several slow ranks goes at the slowest one's pace.
//
// In the event simulation (sim/iteration.cc): a slow rank slows the lane
// it belongs to (sim/task_graph.h: a lane is a tensor-parallel group, run
// as one clock), so the whole tp group goes at the slow rank's pace — what
// happens on real hardware, where the group's all-reduces inside every
// layer make its fast ranks wait for the slow one. A degraded link's sim
// link has its capacity divided when the network is built
// (sim/network_builder.h); collectives keep the rate cap the cost model
// gives them on healthy links (sim/collective_flows.h), so a coflow
// crossing the degraded link slows down to what the link now carries.
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

// The largest factor a fault may have.
inline constexpr double kMaxFaultFactor = 1000.0;

// "RANK:FACTOR" and "LINK:FACTOR". InvalidArgument quoting the text when it
// has no ':', the rank is not an integer >= 0, the link name is empty, or
// the factor is not a finite number in [1, kMaxFaultFactor].
Result<SlowDevice> ParseSlowDevice(std::string_view text);
Result<DegradedLink> ParseDegradedLink(std::string_view text);

// "0:1.5", "node3/nic2:4": the forms the parsers read, the factor in the
// shortest text that reads back as the same double (FaultFactorText).
std::string SlowDeviceText(const SlowDevice& s);
std::string DegradedLinkText(const DegradedLink& d);
std::string FaultFactorText(double factor);  // "1.5", "2", "1.2000000000000002"

// The topology links `d` names (one for a link name; every link into and
// out of a vertex for a vertex name), in link id order. NotFound when none
// matches, naming the cluster by its size (the topology does not know its
// name: callers add it, as SimulateIteration does with
// Status::WithContext) and up to five names like it: those that begin as
// the text does without its trailing digits ("node3/nic" of "node3/nic9"),
// else share its place ("node3/" of "node3/nicX", "leaf0" of
// "leaf0.railX"), else its stem ("node" of "node99/nic0"); link names for
// a text with "->", vertex names otherwise. Linear in the topology's
// links.
Result<std::vector<topology::LinkId>> ResolveDegradedLink(const topology::Topology& topology,
                                                         const DegradedLink& d);

// Checks every fault against `topology`: ranks in [0, devices), factors
// in [1, kMaxFaultFactor], links that resolve. The first error
// (InvalidArgument, or ResolveDegradedLink's NotFound).
Status CheckFaults(const Faults& faults, const topology::Topology& topology);

}  // namespace orrery::sim

#endif  // ORRERY_SIM_FAULTS_H_
