// ClusterSpec: the machines a plan runs on, as a person writes them.
//
// A cluster is one or more node types, each a count of identical nodes. A
// node holds `devices_per_node` accelerators of one DeviceType joined by an
// intra-node fabric (NVSwitch, an NVLink mesh, a PCIe tree, or the shared
// memory of a CPU node), and NICs bound to devices (rails). Nodes join
// through network tiers (leaf, spine, ...) with oversubscription and
// per-hop latency. A "node" is the fast-fabric domain: a GB200 NVL72 rack,
// whose 72 GPUs share one NVLink domain, is one node of 72 devices.
//
// The spec is small JSON (docs/cluster-spec.md documents every field):
//
//   {
//     "name": "my-h100-pod",
//     "nodes": [{
//       "count": 16, "devices_per_node": 8,
//       "device": "h100-sxm5-80gb",          // a device preset, or an object
//       "fabric": {"kind": "nvswitch", "GBps_per_device": 450, "latency_us": 0.5},
//       "nics": {"count": 8, "Gbps": 400, "devices_per_nic": 1}
//     }],
//     "network": {"rail_optimized": true,
//                 "tiers": [{"name": "leaf", "nodes_per_switch": 32, "oversubscription": 1,
//                            "latency_us": 1.0},
//                           {"name": "spine", "oversubscription": 1, "latency_us": 1.0}]}
//   }
//
// Bandwidths are per direction. Device figures are dense (not 2:4 sparse)
// peak rates from datasheets; presets (topology/presets.h) cite theirs.
//
// Thread-safety: plain values.
#ifndef ORRERY_TOPOLOGY_CLUSTER_SPEC_H_
#define ORRERY_TOPOLOGY_CLUSTER_SPEC_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"

namespace orrery::topology {

// Numeric precision of a computation. Peak rates are per precision.
enum class Precision { kFp32, kTf32, kBf16, kFp16, kFp8 };

// "fp32", "tf32", "bf16", "fp16", "fp8".
std::string_view PrecisionName(Precision p);
Result<Precision> ParsePrecision(std::string_view name);
// Bytes per element of a tensor stored in this precision (tf32 is stored as fp32).
int BytesPerElement(Precision p);

// One kind of accelerator (or, on CPU nodes, one CPU core).
struct DeviceType {
  std::string name;  // preset key, e.g. "h100-sxm5-80gb"
  std::string model;  // marketing name as drivers report it, e.g. "NVIDIA H100 80GB HBM3"
  // Dense peak rate per precision; a precision absent here is unsupported.
  std::map<Precision, FlopRate> peak;
  Bytes memory;                 // capacity per device
  Bandwidth memory_bandwidth;   // per device
  // PCI device ids ("0x2330") that identify this type during discovery.
  std::vector<std::string> pci_device_ids;
  std::string source;  // citation for the figures

  // The peak at `p`, or nullopt when the device does not support it.
  std::optional<FlopRate> Peak(Precision p) const;

  bool operator==(const DeviceType&) const = default;
};

enum class FabricKind {
  kNvSwitch,      // every device reaches every other at full per-device bandwidth
  kNvLinkMesh,    // direct NVLink links between pairs (bandwidth per device is split)
  kPcie,          // devices talk through PCIe switches and the host
  kSharedMemory,  // CPU cores of one node
};
std::string_view FabricKindName(FabricKind kind);  // "nvswitch", "nvlink-mesh", "pcie", "shared-memory"
Result<FabricKind> ParseFabricKind(std::string_view name);

struct IntraNodeFabric {
  FabricKind kind = FabricKind::kPcie;
  Bandwidth bandwidth_per_device;  // per direction, one device to the fabric
  Duration latency;                // one hop

  // True for NVSwitch and NVLink-mesh fabrics.
  bool IsNvLink() const;

  bool operator==(const IntraNodeFabric&) const = default;
};

// One network adapter of a node and the devices it serves (its rail).
struct Nic {
  Bandwidth bandwidth;       // per direction
  std::vector<int> devices;  // local device indices, each in [0, devices_per_node)

  bool operator==(const Nic&) const = default;
};

struct NodeType {
  std::string name;  // optional label ("" when unnamed)
  int count = 1;
  int devices_per_node = 1;
  DeviceType device;
  IntraNodeFabric fabric;
  std::vector<Nic> nics;

  // Sum of the bandwidths of the NICs that serve `device` (shared NICs
  // counted at their share: a NIC serving k devices gives each 1/k).
  // REQUIRES: 0 <= device < devices_per_node.
  Bandwidth NicBandwidthPerDevice(int device) const;
  // Sum of the bandwidths of all NICs of one node.
  Bandwidth NicBandwidthPerNode() const;

  bool operator==(const NodeType&) const = default;
};

// A level of switches between nodes, from the leaves up.
struct NetworkTier {
  std::string name;
  // Nodes under one switch of this tier; nullopt for the top tier, which
  // spans the whole cluster.
  std::optional<int> nodes_per_switch;
  // Bandwidth into the tier from below divided by bandwidth up from it;
  // 1 is non-blocking.
  double oversubscription = 1.0;
  Duration latency;  // one hop through a switch of this tier

  bool operator==(const NetworkTier&) const = default;
};

struct Network {
  // NIC k of every node attaches to the same leaf switch (rail k).
  bool rail_optimized = false;
  std::vector<NetworkTier> tiers;

  bool operator==(const Network&) const = default;
};

struct ClusterSpec {
  std::string name;
  std::string description;
  std::vector<NodeType> node_types;
  Network network;

  int TotalNodes() const;
  int TotalDevices() const;
  // REQUIRES: node_types is non-empty.
  const NodeType& PrimaryNodeType() const;

  // The same cluster with `nodes` nodes. Fails for clusters of several node
  // types (which type to scale is ambiguous) and for nodes < 1. The result
  // is not validated: a one-node preset without NICs scaled to two nodes
  // fails ValidateClusterSpec, as it should.
  Result<ClusterSpec> WithNodes(int nodes) const;

  bool operator==(const ClusterSpec&) const = default;
};

// Semantic checks of a spec built in code or read from JSON. The rules:
//   - at least one node type; count and devices_per_node >= 1;
//   - the device has a name, at least one peak rate, every rate > 0, and
//     memory and memory bandwidth > 0;
//   - fabric bandwidth > 0 and latency >= 0;
//   - each NIC has bandwidth > 0 and serves >= 1 device, its device indices
//     in [0, devices_per_node) without repeats; when a node type has NICs,
//     every one of its devices is served by at least one;
//   - a cluster of more than one node has NICs on every node type and at
//     least one network tier;
//   - tiers have distinct non-empty names, oversubscription >= 1, latency
//     >= 0; only the last may omit nodes_per_switch; the given
//     nodes_per_switch are >= 1 and strictly growing; when the last tier
//     gives one, it spans every node (nodes_per_switch >= TotalNodes()).
// Returns the first violation, InvalidArgument, naming the node type or
// tier ("nodes[0].nics[2]: device 9 out of range [0, 8)").
Status ValidateClusterSpec(const ClusterSpec& spec);

// Reading and writing the JSON form: topology/cluster_spec_json.h.

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_CLUSTER_SPEC_H_
