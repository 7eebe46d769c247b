// Topology: the graph a ClusterSpec expands to — every device, switch, NIC
// and directed link with its bandwidth and latency — and the routes flows
// take through it.
//
// Vertices, in this order of ids:
//   - devices, by global rank: node types in spec order, nodes of a type in
//     order, devices of a node in local order (one node type: rank = node
//     index × devices_per_node + local index);
//   - per node, one fabric vertex: the NVSwitch system as one logical
//     switch (nvswitch), the PCIe host bridge (pcie), or the memory bus
//     (shared-memory); NVLink-mesh nodes have none;
//   - per node, its NICs (NIC k of a node is rail k);
//   - network switches, tier by tier from the leaves up.
// Network switches. Tier 0 (leaf) has one group per `nodes_per_switch`
// consecutive nodes; a group has one leaf per rail when the network is
// rail_optimized (NIC k of every node of the group attaches to leaf k),
// else one leaf that every NIC of the group attaches to. Each tier above
// has W switches per group, one per *plane*: W = the most NICs a node has,
// capped by the uplink ports of a full leaf at NIC rate (nodes_per_switch ×
// NICs per node on the leaf / oversubscription, at least 1), so that one
// plane's trunk carries at least one NIC's rate. A leaf has one uplink to each plane switch of its parent group, and a
// plane-p switch of tier t (t >= 1) has one uplink to the plane-p switch of
// its parent group. The group of a tier-t switch is the one containing the
// first node below it; the last tier is one group spanning the cluster.
//
// Links are directed (a full-duplex cable is two links, same capacity):
//   - fabric: device <-> NVSwitch / host bridge / memory bus at the
//     fabric's bandwidth_per_device; NVLink mesh: one link per ordered pair
//     of devices at bandwidth_per_device / (devices_per_node - 1) (a full
//     mesh: the spec does not list pairs);
//   - device <-> NIC for every device a NIC serves, at the NIC's bandwidth
//     (devices sharing a NIC share its NIC <-> leaf link: with k of them
//     sending, max-min sharing gives each 1/k);
//   - NIC <-> leaf at the NIC's bandwidth;
//   - switch <-> switch between tiers. Uplink capacity of a tier = its
//     downlink capacity / oversubscription, where the downlink capacity is
//     that of a full switch: a leaf's attached NIC bandwidth scaled from the
//     nodes present to nodes_per_switch, an upper switch's incoming trunks
//     scaled from the child groups present to nodes_per_switch(t) /
//     nodes_per_switch(t-1). A leaf's uplink capacity is split evenly over
//     its W plane trunks. The last tier has no uplinks (its oversubscription
//     is unused).
// Latency: a link into a switch (NVSwitch, host bridge, memory bus, network
// switch) carries that switch's hop latency (the fabric's, or the tier's);
// an NVLink-mesh link carries the fabric's; links into a device or a NIC
// carry none. A path's latency is the sum over its links, so a route pays
// each switch it crosses once.
//
// Routing (Route): intra-node, over the fabric (device -> switch -> device,
// or the direct mesh link). Inter-node: device -> NIC -> leaf -> up to the
// lowest tier whose group holds both nodes -> down -> leaf -> NIC ->
// device. Choices are deterministic ECMP on EcmpHash(src, dst, salt): the
// source NIC among those serving the source device (preferring a rail the
// destination device also has a NIC on), and the plane W used above the
// leaves. docs/topology-graph.md has the worked example.
//
// Thread-safety: immutable once built; concurrent reads are safe.
#ifndef ORRERY_TOPOLOGY_TOPOLOGY_GRAPH_H_
#define ORRERY_TOPOLOGY_TOPOLOGY_GRAPH_H_

#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/strong_id.h"
#include "core/units.h"
#include "topology/cluster_spec.h"

namespace orrery::topology {

// Index of a vertex in its Topology.
using VertexId = StrongId<struct VertexIdTag>;

// Index of a directed link in its Topology (consecutive from 0).
using LinkId = StrongId<struct LinkIdTag>;

enum class VertexKind {
  kDevice,
  kNvSwitch,        // one logical NVSwitch system per node
  kPcieHostBridge,  // PCIe root of a pcie-fabric node
  kMemoryBus,       // shared memory of a CPU node
  kNic,
  kNetworkSwitch,   // leaf, spine, ... (Vertex::tier says which)
};
// "device", "nvswitch", "pcie-host-bridge", "memory-bus", "nic", "network-switch".
std::string_view VertexKindName(VertexKind kind);

enum class LinkKind {
  kFabric,     // device <-> intra-node switch, or device -> device (NVLink mesh)
  kDeviceNic,  // device <-> NIC
  kNicLeaf,    // NIC <-> leaf switch
  kTier,       // network switch <-> network switch
};

struct Vertex {
  VertexKind kind = VertexKind::kDevice;
  // "node3/dev5", "node3/nvswitch", "node3/pcie", "node3/memory",
  // "node3/nic2", "leaf0.rail2" (rail-optimized) or "leaf0", "spine0.plane3"
  // (tier name from the spec, group index, rail or plane).
  std::string name;
  std::optional<int> node;   // global node index, for node-local vertices
  std::optional<int> rank;   // devices: global rank
  std::optional<int> local;  // devices: local index; NICs: rail (NIC index)
  std::optional<int> tier;   // network switches: tier index, 0 = leaf
  std::optional<int> group;  // network switches: group within the tier
  // Network switches: the rail of a rail-optimized leaf; the plane of an
  // upper-tier switch; absent for a leaf that is not rail-optimized.
  std::optional<int> lane;
};

struct Link {
  LinkKind kind = LinkKind::kFabric;
  VertexId from;
  VertexId to;
  Bandwidth bandwidth;  // capacity, one direction
  Duration latency;
  std::string name;     // "<from name>-><to name>", e.g. "node3/nic2->leaf0.rail2"
};

class Topology {
 public:
  // Expands a spec: validates it (ValidateClusterSpec) and builds the graph.
  static Result<Topology> Build(const ClusterSpec& spec);

  Topology(Topology&&) noexcept;
  Topology& operator=(Topology&&) noexcept;
  ~Topology();

  size_t num_vertices() const { return vertices_.size(); }
  size_t num_links() const { return links_.size(); }
  int num_devices() const { return static_cast<int>(device_node_.size()); }
  int num_nodes() const { return static_cast<int>(node_first_rank_.size()); }
  // Vertices of one kind; network switches of one tier (0 = leaf).
  int CountVertices(VertexKind kind) const;
  int CountNetworkSwitches(int tier) const;
  int CountLinks(LinkKind kind) const;
  // Switches per group in tiers above the leaf (the planes, W); 0 when
  // there is no tier above the leaf.
  int planes() const { return planes_; }

  // REQUIRES: the id names a vertex / link of this topology.
  const Vertex& vertex(VertexId id) const;
  const Link& link(LinkId id) const;
  // The directed link from -> to, if there is one.
  std::optional<LinkId> FindLink(VertexId from, VertexId to) const;

  // REQUIRES: 0 <= rank < num_devices().
  VertexId DeviceVertex(int rank) const;
  int NodeOfRank(int rank) const;

  // The directed links a flow from device `src` to device `dst` crosses,
  // in order; empty when src == dst. Deterministic: the same pair gives the
  // same route on every call and every build of the same spec.
  // REQUIRES: both ranks in [0, num_devices()).
  std::vector<LinkId> Route(int src, int dst) const;
  // As Route, into `*route` (cleared first; reuses its capacity).
  void RouteInto(int src, int dst, std::vector<LinkId>* route) const;

  // Sum of the links' latencies (zero for an empty path).
  Duration PathLatency(std::span<const LinkId> path) const;
  // The smallest capacity on the path; nullopt for an empty path.
  std::optional<Bandwidth> PathBottleneck(std::span<const LinkId> path) const;

  // The ECMP hash: SplitMix64's finalizer (Steele, Lea, Flood 2014) of
  // (src << 32 | dst) XOR salt × 0x9E3779B97F4A7C15. Route uses salt 0 to
  // pick the source NIC and salt 1 to pick the plane (hash mod W).
  static uint64_t EcmpHash(int src, int dst, uint64_t salt);

 private:
  struct Graph;  // Boost.Graph adjacency, in topology_graph.cc
  Topology();

  VertexId AddVertex(Vertex v);
  LinkId AddLink(LinkKind kind, VertexId from, VertexId to, Bandwidth bandwidth,
                 Duration latency);
  // AddLink both ways; the latency of each direction is `into_to` toward
  // `to` and `into_from` toward `from`.
  void AddDuplex(LinkKind kind, VertexId a, VertexId b, Bandwidth bandwidth, Duration into_b,
                 Duration into_a);
  LinkId MustFindLink(VertexId from, VertexId to) const;

  std::vector<Vertex> vertices_;
  std::vector<Link> links_;
  std::unique_ptr<Graph> graph_;

  // Per rank: node and local index. Per node: first rank, fabric, fabric
  // vertex (absent for NVLink mesh), NIC vertices, devices served by each.
  std::vector<int> device_node_;
  std::vector<int> device_local_;
  std::vector<int> node_first_rank_;
  std::vector<FabricKind> node_fabric_;
  std::vector<std::optional<VertexId>> node_fabric_vertex_;
  std::vector<std::vector<VertexId>> node_nics_;
  std::vector<std::vector<std::vector<int>>> node_nic_devices_;
  // Per tier: the group of each node (parent chain), and per group its
  // switches (by rail or plane; one entry for a leaf not rail-optimized).
  std::vector<std::vector<int>> node_group_;
  std::vector<std::vector<std::vector<VertexId>>> tier_switches_;
  bool rail_optimized_ = false;
  int planes_ = 0;
};

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_TOPOLOGY_GRAPH_H_
