#include "topology/node_folding.h"

#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include "core/check.h"
#include "topology/cluster_spec.h"

namespace orrery::topology {
namespace {

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

std::string IndexList(const std::vector<int>& v) {
  std::string s;
  for (int i : v) s += (s.empty() ? "" : ",") + std::to_string(i);
  return s;
}

// The device as a person names it: the preset for a known device, the
// driver's name and PCI id for an unknown one.
std::string DeviceLabel(const DiscoveredNode& n) {
  if (n.device_known) return n.type.device.name;
  if (!n.unknown_device.empty() && !n.gpu_model.empty()) return n.unknown_device;
  return "an unnamed GPU";
}

std::string NicLabel(const DiscoveredNode& n, size_t i) {
  return i < n.nic_names.size() ? "NIC " + n.nic_names[i] : "NIC " + std::to_string(i);
}

std::string RateGbps(Bandwidth b) {
  return b > Bandwidth::Zero() ? Num(b.ToGbps()) + " Gb/s" : "an unknown rate";
}

std::string RateGBps(Bandwidth b) {
  return b > Bandwidth::Zero() ? Num(b.ToGBps()) + " GB/s per GPU" : "an unknown bandwidth";
}

Json OptionalBps(const std::optional<Bandwidth>& b) {
  return b ? Json(b->BytesPerSecond()) : Json(nullptr);
}

Result<std::optional<Bandwidth>> ReadOptionalBps(const JsonReader& r, const std::string& key) {
  if (r.Has(key) && r.json().at(key).is_null()) return std::optional<Bandwidth>();
  ORRERY_ASSIGN_OR_RETURN(double bps, r.Number(key));
  return std::optional<Bandwidth>(Bandwidth::FromBytesPerSecond(bps));
}

Result<std::vector<std::string>> ReadStrings(const JsonReader& r, const std::string& key) {
  if (!r.Has(key)) return r.FieldError(key, "missing (expected an array of strings)");
  const Json& v = r.json().at(key);
  std::vector<std::string> out;
  if (!v.is_array()) return r.FieldError(key, "expected an array of strings");
  for (const Json& e : v) {
    if (!e.is_string()) return r.FieldError(key, "expected an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

Json NodeTypeToWire(const NodeType& t) {
  Json j = Json::object();
  j["name"] = t.name;
  j["devices_per_node"] = t.devices_per_node;
  Json device = Json::object();
  device["name"] = t.device.name;
  device["model"] = t.device.model;
  Json peak = Json::object();
  for (const auto& [p, rate] : t.device.peak) {
    peak[std::string(PrecisionName(p))] = rate.FlopsPerSecond();
  }
  device["peak_flops_per_s"] = std::move(peak);
  device["memory_bytes"] = t.device.memory.count();
  device["memory_Bps"] = t.device.memory_bandwidth.BytesPerSecond();
  device["pci_device_ids"] = t.device.pci_device_ids;
  device["source"] = t.device.source;
  j["device"] = std::move(device);
  Json fabric = Json::object();
  fabric["kind"] = std::string(FabricKindName(t.fabric.kind));
  fabric["Bps_per_device"] = t.fabric.bandwidth_per_device.BytesPerSecond();
  fabric["latency_ps"] = t.fabric.latency.picos();
  j["fabric"] = std::move(fabric);
  Json nics = Json::array();
  for (const Nic& nic : t.nics) {
    Json n = Json::object();
    n["Bps"] = nic.bandwidth.BytesPerSecond();
    n["devices"] = nic.devices;
    nics.push_back(std::move(n));
  }
  j["nics"] = std::move(nics);
  return j;
}

Result<NodeType> NodeTypeFromWire(const JsonReader& r) {
  NodeType t;
  ORRERY_ASSIGN_OR_RETURN(t.name, r.String("name"));
  ORRERY_ASSIGN_OR_RETURN(int64_t devices, r.PositiveInt("devices_per_node"));
  t.devices_per_node = static_cast<int>(devices);
  ORRERY_ASSIGN_OR_RETURN(JsonReader device, r.Object("device"));
  ORRERY_ASSIGN_OR_RETURN(t.device.name, device.String("name"));
  ORRERY_ASSIGN_OR_RETURN(t.device.model, device.String("model"));
  ORRERY_ASSIGN_OR_RETURN(JsonReader peak, device.Object("peak_flops_per_s"));
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kBf16, Precision::kFp16,
                      Precision::kFp8}) {
    const std::string key(PrecisionName(p));
    if (!peak.Has(key)) continue;
    ORRERY_ASSIGN_OR_RETURN(double flops, peak.Number(key));
    t.device.peak[p] = FlopRate::FromFlopsPerSecond(flops);
  }
  ORRERY_RETURN_IF_ERROR(peak.RejectUnknownFields());
  ORRERY_ASSIGN_OR_RETURN(int64_t memory, device.Int("memory_bytes"));
  t.device.memory = Bytes(memory);
  ORRERY_ASSIGN_OR_RETURN(double memory_bps, device.Number("memory_Bps"));
  t.device.memory_bandwidth = Bandwidth::FromBytesPerSecond(memory_bps);
  ORRERY_ASSIGN_OR_RETURN(t.device.pci_device_ids, ReadStrings(device, "pci_device_ids"));
  ORRERY_ASSIGN_OR_RETURN(t.device.source, device.String("source"));
  ORRERY_RETURN_IF_ERROR(device.RejectUnknownFields());
  ORRERY_ASSIGN_OR_RETURN(JsonReader fabric, r.Object("fabric"));
  ORRERY_ASSIGN_OR_RETURN(std::string kind, fabric.String("kind"));
  Result<FabricKind> parsed = ParseFabricKind(kind);
  if (!parsed.ok()) return fabric.FieldError("kind", parsed.status().message());
  t.fabric.kind = *parsed;
  ORRERY_ASSIGN_OR_RETURN(double fabric_bps, fabric.Number("Bps_per_device"));
  t.fabric.bandwidth_per_device = Bandwidth::FromBytesPerSecond(fabric_bps);
  ORRERY_ASSIGN_OR_RETURN(int64_t latency_ps, fabric.Int("latency_ps"));
  t.fabric.latency = Duration::FromPicos(latency_ps);
  ORRERY_RETURN_IF_ERROR(fabric.RejectUnknownFields());
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> nics, r.ObjectArray("nics"));
  for (const JsonReader& n : nics) {
    Nic nic;
    ORRERY_ASSIGN_OR_RETURN(double bps, n.Number("Bps"));
    nic.bandwidth = Bandwidth::FromBytesPerSecond(bps);
    ORRERY_ASSIGN_OR_RETURN(std::vector<int64_t> devs, n.IntArray("devices"));
    for (int64_t d : devs) nic.devices.push_back(static_cast<int>(d));
    ORRERY_RETURN_IF_ERROR(n.RejectUnknownFields());
    t.nics.push_back(std::move(nic));
  }
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return t;
}

// "node gpu07" or "nodes gpu07, gpu08".
std::string Subject(const std::vector<DiscoveredNode>& members) {
  std::string s = members.size() == 1 ? "node " : "nodes ";
  for (size_t i = 0; i < members.size(); ++i) s += (i ? ", " : "") + members[i].name;
  return s;
}

}  // namespace

DiscoveredNode ToDiscoveredNode(const NodeDescription& d, std::string name) {
  DiscoveredNode n;
  n.name = std::move(name);
  n.source = d.inventory.source;
  n.type = d.spec.node_types.at(0);
  n.gpus = static_cast<int>(d.inventory.gpus.size());
  if (!d.inventory.gpus.empty()) {
    n.gpu_model = d.device_known ? n.type.device.model : d.inventory.gpus[0].model;
  }
  n.device_known = d.device_known;
  n.unknown_device = d.unknown_device;
  n.nvlink_per_gpu = d.nvlink_per_gpu;
  // DescribeNode makes one spec NIC per inventory NIC nearest some GPU, in order.
  for (const FoundNic& nic : d.inventory.nics) {
    if (!nic.nearest_gpus.empty()) n.nic_names.push_back(nic.name);
  }
  n.nic_bandwidth = d.nic_bandwidth;
  const Status complete = CheckComplete(d);
  if (!complete.ok()) n.incomplete = complete.message();
  return n;
}

Json DiscoveredNodeToJson(const DiscoveredNode& n) {
  Json j = Json::object();
  j["name"] = n.name;
  j["source"] = n.source;
  j["type"] = NodeTypeToWire(n.type);
  j["gpus"] = n.gpus;
  j["gpu_model"] = n.gpu_model;
  j["device_known"] = n.device_known;
  j["unknown_device"] = n.unknown_device;
  j["nvlink_Bps_per_gpu"] = OptionalBps(n.nvlink_per_gpu);
  j["nic_names"] = n.nic_names;
  j["nic_Bps"] = OptionalBps(n.nic_bandwidth);
  j["incomplete"] = n.incomplete;
  return j;
}

Result<DiscoveredNode> ParseDiscoveredNode(const Json& json, const std::string& source) {
  JsonReader r(json, source);
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  DiscoveredNode n;
  ORRERY_ASSIGN_OR_RETURN(n.name, r.String("name"));
  ORRERY_ASSIGN_OR_RETURN(n.source, r.String("source"));
  ORRERY_ASSIGN_OR_RETURN(JsonReader type, r.Object("type"));
  ORRERY_ASSIGN_OR_RETURN(n.type, NodeTypeFromWire(type));
  n.type.count = 1;
  ORRERY_ASSIGN_OR_RETURN(int64_t gpus, r.Int("gpus"));
  n.gpus = static_cast<int>(gpus);
  ORRERY_ASSIGN_OR_RETURN(n.gpu_model, r.String("gpu_model"));
  ORRERY_ASSIGN_OR_RETURN(n.device_known, r.Bool("device_known"));
  ORRERY_ASSIGN_OR_RETURN(n.unknown_device, r.String("unknown_device"));
  ORRERY_ASSIGN_OR_RETURN(n.nvlink_per_gpu, ReadOptionalBps(r, "nvlink_Bps_per_gpu"));
  ORRERY_ASSIGN_OR_RETURN(n.nic_names, ReadStrings(r, "nic_names"));
  ORRERY_ASSIGN_OR_RETURN(n.nic_bandwidth, ReadOptionalBps(r, "nic_Bps"));
  ORRERY_ASSIGN_OR_RETURN(n.incomplete, r.String("incomplete"));
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return n;
}

bool SameHardware(const NodeType& a, const NodeType& b) {
  return a.devices_per_node == b.devices_per_node && a.device == b.device &&
         a.fabric == b.fabric && a.nics == b.nics;
}

std::vector<std::string> NodeDifferences(const DiscoveredNode& node,
                                         const DiscoveredNode& reference,
                                         const std::string& others) {
  std::vector<std::string> out;
  const std::string where = " where " + others + " ";
  const NodeType& a = node.type;
  const NodeType& b = reference.type;
  if (node.gpus == 0 && reference.gpus == 0) {
    if (a.devices_per_node != b.devices_per_node) {
      out.push_back(std::to_string(a.devices_per_node) + " cores" + where +
                    std::to_string(b.devices_per_node));
    }
  } else if (node.gpus != reference.gpus) {
    out.push_back(std::to_string(node.gpus) + " GPUs" + where + std::to_string(reference.gpus));
    if (node.gpus == 0 || reference.gpus == 0) return out;  // a CPU node and a GPU node
  }
  if (!(a.device == b.device)) {
    const std::string mine = DeviceLabel(node), theirs = DeviceLabel(reference);
    if (mine != theirs) {
      out.push_back((node.gpus > 0 ? "GPU " : "device ") + mine + where + theirs);
    } else {
      out.push_back("other figures for " + mine + where + "the reference's");
    }
  }
  if (a.fabric.kind != b.fabric.kind) {
    out.push_back("fabric " + std::string(FabricKindName(a.fabric.kind)) + where +
                  std::string(FabricKindName(b.fabric.kind)));
  }
  if (a.fabric.bandwidth_per_device != b.fabric.bandwidth_per_device) {
    out.push_back(std::string(FabricKindName(a.fabric.kind)) + " at " +
                  RateGBps(a.fabric.bandwidth_per_device) + where +
                  RateGBps(b.fabric.bandwidth_per_device));
  }
  // Another fabric kind has another latency (a preset's): said once, above.
  if (a.fabric.kind == b.fabric.kind && a.fabric.latency != b.fabric.latency) {
    out.push_back("fabric latency " + Num(a.fabric.latency.ToMicros()) + " us" + where +
                  Num(b.fabric.latency.ToMicros()) + " us");
  }
  if (a.nics.size() != b.nics.size()) {
    out.push_back(std::to_string(a.nics.size()) + " NICs" + where +
                  std::to_string(b.nics.size()));
  } else {
    for (size_t i = 0; i < a.nics.size(); ++i) {
      if (a.nics[i].bandwidth != b.nics[i].bandwidth) {
        out.push_back(NicLabel(node, i) + " at " + RateGbps(a.nics[i].bandwidth) + where +
                      RateGbps(b.nics[i].bandwidth));
      }
      if (a.nics[i].devices != b.nics[i].devices) {
        out.push_back(NicLabel(node, i) + " serving devices " + IndexList(a.nics[i].devices) +
                      where + IndexList(b.nics[i].devices));
      }
    }
  }
  return out;
}

FoldedCluster FoldNodes(const std::vector<DiscoveredNode>& nodes, const Network& network,
                        const std::string& name, const std::string& description) {
  ORRERY_CHECK(!nodes.empty()) << "FoldNodes needs at least one node";
  FoldedCluster f;
  f.spec.name = name;
  f.spec.description = description;
  f.spec.network = network;
  std::map<std::string, size_t> first_rank;  // node name → the first rank that reported it
  for (size_t rank = 0; rank < nodes.size(); ++rank) {
    const DiscoveredNode& node = nodes[rank];
    auto [it, fresh] = first_rank.emplace(node.name, rank);
    if (!fresh) {
      f.warnings.push_back(node.name + " was reported by rank " + std::to_string(it->second) +
                           " and again by rank " + std::to_string(rank) +
                           ": counted once (one rank per node is assumed)");
      continue;
    }
    size_t k = 0;
    while (k < f.members.size() && !SameHardware(f.members[k].front().type, node.type)) ++k;
    if (k == f.members.size()) f.members.emplace_back();
    f.members[k].push_back(node);
  }
  std::set<std::string> names;
  for (size_t k = 0; k < f.members.size(); ++k) {
    NodeType t = f.members[k].front().type;
    t.count = static_cast<int>(f.members[k].size());
    if (t.name.empty()) t.name = "node";
    if (!names.insert(t.name).second) {
      t.name += "-" + std::to_string(k + 1);
      names.insert(t.name);
    }
    f.spec.node_types.push_back(std::move(t));
  }
  size_t ref = 0;
  for (size_t k = 1; k < f.members.size(); ++k) {
    if (f.members[k].size() > f.members[ref].size()) ref = k;
  }
  const std::vector<DiscoveredNode>& reference = f.members[ref];
  std::string others;
  if (reference.size() == 1) {
    others = "node " + reference.front().name + " has";
  } else if (f.members.size() == 2) {
    others = "the others have";
  } else {
    others = "the " + std::to_string(reference.size()) + " nodes of node type " +
             f.spec.node_types[ref].name + " have";
  }
  for (size_t k = 0; k < f.members.size(); ++k) {
    if (k == ref) continue;
    const std::vector<std::string> diff =
        NodeDifferences(f.members[k].front(), reference.front(), others);
    std::string line = Subject(f.members[k]) + ": ";
    for (size_t i = 0; i < diff.size(); ++i) line += (i ? "; " : "") + diff[i];
    f.differences.push_back(std::move(line));
  }
  return f;
}

}  // namespace orrery::topology
