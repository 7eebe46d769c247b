// Node folding: from the nodes of a cluster, each discovered alone (one MPI
// rank per node under `orrery discover`), to one ClusterSpec.
//
// Nodes whose hardware is the same — the same device type and count, the
// same intra-node fabric (kind, bandwidth, latency) and the same NICs (line
// rate and the devices each serves, in order) — fold into one node type with
// a count. A node that differs becomes a node type of its own, and what
// differs is said in a person's words against the most common node type
// ("node gpu07: 7 GPUs where the other 15 nodes have 8"). Names, NIC names and
// the machine's DMI name do not make nodes differ.
//
// A DiscoveredNode is what one rank sends to the rank that folds; its JSON
// form (DiscoveredNodeToJson / ParseDiscoveredNode) is that message. Unlike
// the cluster spec's JSON it carries incomplete nodes (an unknown device, an
// unknown NIC rate), so that they can be reported rather than lost.
//
// No MPI here: the transport is the caller's (`orrery discover` gathers with exec/mpi_world.h).
//
// Thread-safety: plain functions and values.
#ifndef ORRERY_TOPOLOGY_NODE_FOLDING_H_
#define ORRERY_TOPOLOGY_NODE_FOLDING_H_

#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/units.h"
#include "topology/cluster_spec.h"
#include "topology/discovery.h"

namespace orrery::topology {

// One node as its rank discovered it.
struct DiscoveredNode {
  // Who the node is: its host name (live discovery), or "rank R" when the
  // rank described a file. Nodes of one name are one node.
  std::string name;
  std::string source;  // "this machine", or the file(s) read
  NodeType type;       // count 1; the name is the node's DMI name or "node"
  int gpus = 0;
  std::string gpu_model;  // the driver's name of the GPU; empty for CPU nodes
  bool device_known = true;
  std::string unknown_device;  // "Tesla V100-SXM3-32GB-H (PCI 10de:1db8)"
  // Per GPU and direction: zero without NVLink, nullopt when unknown.
  std::optional<Bandwidth> nvlink_per_gpu;
  // The names of type.nics, in order ("mlx5_0"); may be empty.
  std::vector<std::string> nic_names;
  // Per adapter, when every rail NIC has the same known rate.
  std::optional<Bandwidth> nic_bandwidth;
  // Why the node's spec is not usable yet (CheckComplete's message); empty
  // when it is.
  std::string incomplete;

  bool operator==(const DiscoveredNode&) const = default;
};

// The node of `description`, named `name`.
DiscoveredNode ToDiscoveredNode(const NodeDescription& description, std::string name);

// The message one rank sends; ParseDiscoveredNode(DiscoveredNodeToJson(n))
// gives back n exactly. `source` names the message in errors ("rank 3").
Json DiscoveredNodeToJson(const DiscoveredNode& node);
Result<DiscoveredNode> ParseDiscoveredNode(const Json& json, const std::string& source);

struct FoldedCluster {
  // One node type per distinct node, in order of first appearance, each with
  // the count of its nodes; names made distinct ("node", "node-2"). The
  // network is the one given to FoldNodes. Not validated.
  ClusterSpec spec;
  // Parallel to spec.node_types: the nodes of each type, in input order
  // (the first is the type's representative).
  std::vector<std::vector<DiscoveredNode>> members;
  // For each node type that is not the reference (the type with the most
  // nodes, the first on a tie): what differs from the reference.
  std::vector<std::string> differences;
  // Nodes reported more than once (one rank per node is assumed).
  std::vector<std::string> warnings;
};

// Folds `nodes` (one per rank, in rank order) into one cluster. Nodes of the
// same name after the first are dropped with a warning. The spec is named
// `name` and described by `description`.
// REQUIRES: nodes is non-empty.
FoldedCluster FoldNodes(const std::vector<DiscoveredNode>& nodes, const Network& network,
                        const std::string& name = "discovered",
                        const std::string& description = "");

// What differs between `node` and `reference`, one phrase per difference, each
// ending with " where " + `others` + the reference's figure:
//   {"7 GPUs where the other 15 nodes have 8",
//    "NIC mlx5_2 at 200 Gb/s where the other 15 nodes have 400"}.
// Empty when the two fold together. `others` is the subject of the
// reference ("the other 15 nodes have", "node gpu01 has").
std::vector<std::string> NodeDifferences(const DiscoveredNode& node,
                                         const DiscoveredNode& reference,
                                         const std::string& others);

// True when `a` and `b` fold into one node type.
bool SameHardware(const NodeType& a, const NodeType& b);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_NODE_FOLDING_H_
