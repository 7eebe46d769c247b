#include "topology/cluster_spec.h"

#include <set>
#include <string>

namespace orrery::topology {

std::string_view PrecisionName(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kTf32:
      return "tf32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
    case Precision::kFp8:
      return "fp8";
  }
  ORRERY_CHECK(false) << "unknown Precision " << static_cast<int>(p);
  return "";
}

Result<Precision> ParsePrecision(std::string_view name) {
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kBf16, Precision::kFp16,
                      Precision::kFp8}) {
    if (PrecisionName(p) == name) return p;
  }
  return InvalidArgumentError("unknown precision '" + std::string(name) +
                              "' (expected fp32, tf32, bf16, fp16 or fp8)");
}

int BytesPerElement(Precision p) {
  switch (p) {
    case Precision::kFp32:
    case Precision::kTf32:
      return 4;
    case Precision::kBf16:
    case Precision::kFp16:
      return 2;
    case Precision::kFp8:
      return 1;
  }
  ORRERY_CHECK(false) << "unknown Precision " << static_cast<int>(p);
  return 0;
}

std::optional<FlopRate> DeviceType::Peak(Precision p) const {
  auto it = peak.find(p);
  if (it == peak.end()) return std::nullopt;
  return it->second;
}

std::string_view FabricKindName(FabricKind kind) {
  switch (kind) {
    case FabricKind::kNvSwitch:
      return "nvswitch";
    case FabricKind::kNvLinkMesh:
      return "nvlink-mesh";
    case FabricKind::kPcie:
      return "pcie";
    case FabricKind::kSharedMemory:
      return "shared-memory";
  }
  ORRERY_CHECK(false) << "unknown FabricKind " << static_cast<int>(kind);
  return "";
}

Result<FabricKind> ParseFabricKind(std::string_view name) {
  for (FabricKind k : {FabricKind::kNvSwitch, FabricKind::kNvLinkMesh, FabricKind::kPcie,
                       FabricKind::kSharedMemory}) {
    if (FabricKindName(k) == name) return k;
  }
  return InvalidArgumentError("unknown fabric kind '" + std::string(name) +
                              "' (expected nvswitch, nvlink-mesh, pcie or shared-memory)");
}

bool IntraNodeFabric::IsNvLink() const {
  return kind == FabricKind::kNvSwitch || kind == FabricKind::kNvLinkMesh;
}

Bandwidth NodeType::NicBandwidthPerDevice(int device) const {
  ORRERY_CHECK(device >= 0 && device < devices_per_node)
      << "device " << device << " out of range [0, " << devices_per_node << ")";
  Bandwidth total = Bandwidth::Zero();
  for (const Nic& nic : nics) {
    for (int d : nic.devices) {
      if (d == device) {
        total = total + nic.bandwidth / static_cast<double>(nic.devices.size());
        break;
      }
    }
  }
  return total;
}

Bandwidth NodeType::NicBandwidthPerNode() const {
  Bandwidth total = Bandwidth::Zero();
  for (const Nic& nic : nics) total = total + nic.bandwidth;
  return total;
}

int ClusterSpec::TotalNodes() const {
  int n = 0;
  for (const NodeType& t : node_types) n += t.count;
  return n;
}

int ClusterSpec::TotalDevices() const {
  int n = 0;
  for (const NodeType& t : node_types) n += t.count * t.devices_per_node;
  return n;
}

const NodeType& ClusterSpec::PrimaryNodeType() const {
  ORRERY_CHECK(!node_types.empty()) << "cluster '" << name << "' has no node types";
  return node_types.front();
}

Result<ClusterSpec> ClusterSpec::WithNodes(int nodes) const {
  if (nodes < 1) {
    return InvalidArgumentError("cluster '" + name + "': the number of nodes must be >= 1, got " +
                                std::to_string(nodes));
  }
  if (node_types.size() != 1) {
    return InvalidArgumentError("cluster '" + name + "' has " +
                                std::to_string(node_types.size()) +
                                " node types; scaling it to a node count is ambiguous (edit "
                                "each node type's count in its JSON instead)");
  }
  ClusterSpec scaled = *this;
  scaled.node_types[0].count = nodes;
  return scaled;
}

namespace {

Status Violation(const std::string& where, const std::string& what) {
  return InvalidArgumentError(where + ": " + what);
}

Status ValidateDevice(const DeviceType& d, const std::string& where) {
  if (d.name.empty()) return Violation(where + ".name", "expected a non-empty device name");
  if (d.peak.empty()) {
    return Violation(where + ".peak_tflops", "expected at least one peak rate (fp32, tf32, bf16, "
                                             "fp16 or fp8)");
  }
  for (const auto& [p, rate] : d.peak) {
    if (!(rate > FlopRate::Zero())) {
      return Violation(where + ".peak_tflops." + std::string(PrecisionName(p)),
                       "expected a positive rate");
    }
  }
  if (d.memory <= Bytes::Zero()) {
    return Violation(where + ".memory_gib", "expected a positive memory capacity");
  }
  if (!(d.memory_bandwidth > Bandwidth::Zero())) {
    return Violation(where + ".memory_bandwidth_GBps", "expected a positive bandwidth");
  }
  return Status::Ok();
}

Status ValidateNodeType(const NodeType& t, const std::string& where, bool multi_node) {
  if (t.count < 1) {
    return Violation(where + ".count", "expected a positive node count, got " +
                                           std::to_string(t.count));
  }
  if (t.devices_per_node < 1) {
    return Violation(where + ".devices_per_node",
                     "expected a positive device count, got " + std::to_string(t.devices_per_node));
  }
  ORRERY_RETURN_IF_ERROR(ValidateDevice(t.device, where + ".device"));
  if (!(t.fabric.bandwidth_per_device > Bandwidth::Zero())) {
    return Violation(where + ".fabric.GBps_per_device", "expected a positive bandwidth");
  }
  if (t.fabric.latency < Duration::Zero()) {
    return Violation(where + ".fabric.latency_us", "expected a latency >= 0");
  }
  std::vector<int> served(static_cast<size_t>(t.devices_per_node), 0);
  for (size_t i = 0; i < t.nics.size(); ++i) {
    const Nic& nic = t.nics[i];
    const std::string nic_where = where + ".nics[" + std::to_string(i) + "]";
    if (!(nic.bandwidth > Bandwidth::Zero())) {
      return Violation(nic_where + ".Gbps", "expected a positive line rate");
    }
    if (nic.devices.empty()) {
      return Violation(nic_where + ".devices", "expected at least one device index");
    }
    std::set<int> seen;
    for (int d : nic.devices) {
      if (d < 0 || d >= t.devices_per_node) {
        return Violation(nic_where + ".devices",
                         "device " + std::to_string(d) + " out of range [0, " +
                             std::to_string(t.devices_per_node) + ")");
      }
      if (!seen.insert(d).second) {
        return Violation(nic_where + ".devices", "device " + std::to_string(d) + " listed twice");
      }
      ++served[static_cast<size_t>(d)];
    }
  }
  if (!t.nics.empty()) {
    for (int d = 0; d < t.devices_per_node; ++d) {
      if (served[static_cast<size_t>(d)] == 0) {
        return Violation(where + ".nics", "device " + std::to_string(d) +
                                              " is served by no NIC (every device of a node "
                                              "with NICs needs one)");
      }
    }
  } else if (multi_node) {
    return Violation(where + ".nics",
                     "a cluster of more than one node needs NICs on every node type");
  }
  return Status::Ok();
}

}  // namespace

Status ValidateClusterSpec(const ClusterSpec& spec) {
  if (spec.node_types.empty()) return Violation("nodes", "expected at least one node type");
  const bool multi_node = spec.TotalNodes() > 1 || spec.node_types.size() > 1;
  for (size_t i = 0; i < spec.node_types.size(); ++i) {
    ORRERY_RETURN_IF_ERROR(
        ValidateNodeType(spec.node_types[i], "nodes[" + std::to_string(i) + "]", multi_node));
  }
  const std::vector<NetworkTier>& tiers = spec.network.tiers;
  if (multi_node && tiers.empty()) {
    return Violation("network.tiers", "a cluster of " + std::to_string(spec.TotalNodes()) +
                                          " nodes needs at least one network tier");
  }
  std::set<std::string> names;
  int previous_span = 0;
  for (size_t i = 0; i < tiers.size(); ++i) {
    const NetworkTier& tier = tiers[i];
    const std::string where = "network.tiers[" + std::to_string(i) + "]";
    if (tier.name.empty()) return Violation(where + ".name", "expected a non-empty tier name");
    if (!names.insert(tier.name).second) {
      return Violation(where + ".name", "tier name '" + tier.name + "' used twice");
    }
    if (!(tier.oversubscription >= 1.0)) {
      return Violation(where + ".oversubscription",
                       "expected a ratio >= 1 (1 is non-blocking), got " +
                           std::to_string(tier.oversubscription));
    }
    if (tier.latency < Duration::Zero()) {
      return Violation(where + ".latency_us", "expected a latency >= 0");
    }
    const bool last = i + 1 == tiers.size();
    if (!tier.nodes_per_switch.has_value()) {
      if (!last) {
        return Violation(where + ".nodes_per_switch",
                         "only the top (last) tier may omit nodes_per_switch");
      }
      continue;
    }
    const int span = *tier.nodes_per_switch;
    if (span < 1) {
      return Violation(where + ".nodes_per_switch",
                       "expected a positive node count, got " + std::to_string(span));
    }
    if (span <= previous_span) {
      return Violation(where + ".nodes_per_switch",
                       "expected more nodes per switch than the tier below (" +
                           std::to_string(previous_span) + "), got " + std::to_string(span));
    }
    previous_span = span;
    if (last && span < spec.TotalNodes()) {
      return Violation(where + ".nodes_per_switch",
                       "the top tier spans " + std::to_string(span) + " nodes but the cluster has " +
                           std::to_string(spec.TotalNodes()) +
                           " (omit nodes_per_switch on the top tier, or add a tier above)");
    }
  }
  return Status::Ok();
}

}  // namespace orrery::topology
