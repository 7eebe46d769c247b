#include "topology/cluster_spec_json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "topology/presets.h"

namespace orrery::topology {

namespace {

// Counts (nodes, devices, NICs) are ints; JSON integers are int64.
constexpr int64_t kMaxCount = 1 << 24;

Result<int> CountField(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(int64_t v, r.PositiveInt(key));
  if (v > kMaxCount) {
    return r.FieldError(key, "expected a count of at most " + std::to_string(kMaxCount) +
                                 ", got " + std::to_string(v));
  }
  return static_cast<int>(v);
}

Result<double> NonNegativeRequired(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(double v, r.Number(key));
  if (!(v >= 0.0) || !std::isfinite(v)) {
    return r.FieldError(key, "expected a number >= 0, got " + JsonSnippet(v));
  }
  return v;
}

Result<double> PositiveFinite(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(double v, r.PositiveNumber(key));
  if (!std::isfinite(v)) return r.FieldError(key, "expected a finite number");
  return v;
}

Result<std::vector<std::string>> StringArray(const JsonReader& r, std::string_view key) {
  std::vector<std::string> out;
  if (!r.Has(key)) return out;
  const Json& v = r.json().at(std::string(key));
  if (!v.is_array()) return r.FieldError(key, "expected an array of strings, got " + JsonSnippet(v));
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      return r.FieldError(std::string(key) + "[" + std::to_string(i) + "]",
                          "expected a string, got " + JsonSnippet(v[i]));
    }
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

Result<DeviceType> ParseDeviceObject(const JsonReader& r) {
  DeviceType d;
  ORRERY_ASSIGN_OR_RETURN(d.name, r.String("name"));
  if (d.name.empty()) return r.FieldError("name", "expected a non-empty device name");
  ORRERY_ASSIGN_OR_RETURN(d.model, r.String("model", ""));
  ORRERY_ASSIGN_OR_RETURN(JsonReader peak, r.Object("peak_tflops"));
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kBf16, Precision::kFp16,
                      Precision::kFp8}) {
    const std::string key(PrecisionName(p));
    if (!peak.Has(key)) continue;
    ORRERY_ASSIGN_OR_RETURN(double tflops, PositiveFinite(peak, key));
    d.peak[p] = TFlops(tflops);
  }
  ORRERY_RETURN_IF_ERROR(peak.RejectUnknownFields());
  if (d.peak.empty()) {
    return r.FieldError("peak_tflops",
                        "expected at least one of fp32, tf32, bf16, fp16, fp8 (dense TFLOP/s)");
  }
  ORRERY_ASSIGN_OR_RETURN(double gib, PositiveFinite(r, "memory_gib"));
  d.memory = GiBf(gib);
  ORRERY_ASSIGN_OR_RETURN(double gbps, PositiveFinite(r, "memory_bandwidth_GBps"));
  d.memory_bandwidth = GBps(gbps);
  ORRERY_ASSIGN_OR_RETURN(d.pci_device_ids, StringArray(r, "pci_device_ids"));
  ORRERY_ASSIGN_OR_RETURN(d.source, r.String("source", ""));
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return d;
}

Result<DeviceType> ParseDevice(const JsonReader& node) {
  if (!node.Has("device")) {
    return node.FieldError("device", "missing (expected a device preset name or an object)");
  }
  const Json& v = node.json().at("device");
  if (v.is_string()) {
    Result<DeviceType> preset = DevicePreset(v.get<std::string>());
    if (!preset.ok()) return node.FieldError("device", preset.status().message());
    return preset;
  }
  if (v.is_object()) return ParseDeviceObject(JsonReader(v, node.source(), node.FieldPath("device")));
  return node.FieldError("device",
                         "expected a device preset name or an object, got " + JsonSnippet(v));
}

Result<IntraNodeFabric> ParseFabric(const JsonReader& node) {
  ORRERY_ASSIGN_OR_RETURN(JsonReader r, node.Object("fabric"));
  IntraNodeFabric f;
  ORRERY_ASSIGN_OR_RETURN(std::string kind, r.String("kind"));
  Result<FabricKind> parsed = ParseFabricKind(kind);
  if (!parsed.ok()) return r.FieldError("kind", parsed.status().message());
  f.kind = *parsed;
  ORRERY_ASSIGN_OR_RETURN(double gbps, PositiveFinite(r, "GBps_per_device"));
  f.bandwidth_per_device = GBps(gbps);
  ORRERY_ASSIGN_OR_RETURN(double us, NonNegativeRequired(r, "latency_us"));
  f.latency = Micros(us);
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return f;
}

Result<std::vector<Nic>> ParseNics(const JsonReader& node, int devices_per_node) {
  std::vector<Nic> nics;
  if (!node.Has("nics")) return nics;
  const Json& v = node.json().at("nics");
  if (v.is_object()) {
    JsonReader r(v, node.source(), node.FieldPath("nics"));
    ORRERY_ASSIGN_OR_RETURN(int count, CountField(r, "count"));
    ORRERY_ASSIGN_OR_RETURN(double gbps, PositiveFinite(r, "Gbps"));
    int per_nic = 0;
    if (r.Has("devices_per_nic")) {
      ORRERY_ASSIGN_OR_RETURN(per_nic, CountField(r, "devices_per_nic"));
    } else {
      if (devices_per_node % count != 0) {
        return r.FieldError("count", std::to_string(count) + " NICs do not divide " +
                                         std::to_string(devices_per_node) +
                                         " devices evenly; give devices_per_nic or an explicit "
                                         "array of NICs");
      }
      per_nic = devices_per_node / count;
    }
    if (devices_per_node % per_nic != 0) {
      return r.FieldError("devices_per_nic",
                          "expected a divisor of devices_per_node (" +
                              std::to_string(devices_per_node) + "), got " +
                              std::to_string(per_nic));
    }
    if (static_cast<int64_t>(count) * per_nic != devices_per_node) {
      return r.FieldError("count", "expected count x devices_per_nic = devices_per_node (" +
                                       std::to_string(devices_per_node) + "), got " +
                                       std::to_string(count) + " x " + std::to_string(per_nic) +
                                       "; use an explicit array of NICs for other layouts");
    }
    ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
    for (int k = 0; k < count; ++k) {
      Nic nic;
      nic.bandwidth = Gbps(gbps);
      for (int d = 0; d < per_nic; ++d) nic.devices.push_back(k * per_nic + d);
      nics.push_back(std::move(nic));
    }
    return nics;
  }
  if (!v.is_array()) {
    return node.FieldError("nics", "expected an object {count, Gbps, devices_per_nic} or an "
                                   "array of {Gbps, devices}, got " + JsonSnippet(v));
  }
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> entries, node.ObjectArray("nics"));
  for (const JsonReader& r : entries) {
    Nic nic;
    ORRERY_ASSIGN_OR_RETURN(double gbps, PositiveFinite(r, "Gbps"));
    nic.bandwidth = Gbps(gbps);
    ORRERY_ASSIGN_OR_RETURN(std::vector<int64_t> devices, r.IntArray("devices"));
    if (devices.empty()) return r.FieldError("devices", "expected at least one device index");
    for (size_t i = 0; i < devices.size(); ++i) {
      if (devices[i] < 0 || devices[i] >= devices_per_node) {
        return r.FieldError("devices[" + std::to_string(i) + "]",
                            "expected a device index in [0, " + std::to_string(devices_per_node) +
                                "), got " + std::to_string(devices[i]));
      }
      nic.devices.push_back(static_cast<int>(devices[i]));
    }
    ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
    nics.push_back(std::move(nic));
  }
  return nics;
}

Result<NodeType> ParseNodeType(const JsonReader& r) {
  NodeType t;
  ORRERY_ASSIGN_OR_RETURN(t.name, r.String("name", ""));
  ORRERY_ASSIGN_OR_RETURN(t.count, CountField(r, "count"));
  ORRERY_ASSIGN_OR_RETURN(t.devices_per_node, CountField(r, "devices_per_node"));
  ORRERY_ASSIGN_OR_RETURN(t.device, ParseDevice(r));
  ORRERY_ASSIGN_OR_RETURN(t.fabric, ParseFabric(r));
  ORRERY_ASSIGN_OR_RETURN(t.nics, ParseNics(r, t.devices_per_node));
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return t;
}

Result<NetworkTier> ParseTier(const JsonReader& r) {
  NetworkTier tier;
  ORRERY_ASSIGN_OR_RETURN(tier.name, r.String("name"));
  if (tier.name.empty()) return r.FieldError("name", "expected a non-empty tier name");
  if (r.Has("nodes_per_switch")) {
    ORRERY_ASSIGN_OR_RETURN(tier.nodes_per_switch, CountField(r, "nodes_per_switch"));
  }
  ORRERY_ASSIGN_OR_RETURN(tier.oversubscription, r.Number("oversubscription", 1.0));
  if (!(tier.oversubscription >= 1.0) || !std::isfinite(tier.oversubscription)) {
    return r.FieldError("oversubscription", "expected a ratio >= 1 (1 is non-blocking), got " +
                                                 JsonSnippet(tier.oversubscription));
  }
  ORRERY_ASSIGN_OR_RETURN(double us, NonNegativeRequired(r, "latency_us"));
  tier.latency = Micros(us);
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return tier;
}

Result<Network> ParseNetwork(const JsonReader& root) {
  Network network;
  if (!root.Has("network")) return network;
  ORRERY_ASSIGN_OR_RETURN(JsonReader r, root.Object("network"));
  ORRERY_ASSIGN_OR_RETURN(network.rail_optimized, r.Bool("rail_optimized", false));
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> tiers, r.ObjectArray("tiers"));
  for (const JsonReader& t : tiers) {
    ORRERY_ASSIGN_OR_RETURN(NetworkTier tier, ParseTier(t));
    network.tiers.push_back(std::move(tier));
  }
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return network;
}

// A quantity as the JSON number that reads back as it exactly
// (core/json.h ExactDecimal), integral values as JSON integers.
template <typename Q, typename From>
Json ExactNumber(const Q& quantity, double approx, From from) {
  return IntegralOrDouble(ExactDecimal(quantity, approx, from));
}

Json GBpsJson(Bandwidth b) { return ExactNumber(b, b.ToGBps(), [](double v) { return GBps(v); }); }
Json GbpsJson(Bandwidth b) { return ExactNumber(b, b.ToGbps(), [](double v) { return Gbps(v); }); }
Json MicrosJson(Duration d) {
  return ExactNumber(d, d.ToMicros(), [](double v) { return Micros(v); });
}

// True when `nics` is what the compact form {count, Gbps, devices_per_nic}
// expands to: equal NICs, NIC k serving the k-th block of devices.
bool IsCompact(const std::vector<Nic>& nics, int devices_per_node) {
  if (nics.empty()) return false;
  const size_t per_nic = nics[0].devices.size();
  if (per_nic == 0 || nics.size() * per_nic != static_cast<size_t>(devices_per_node)) {
    return false;
  }
  for (size_t k = 0; k < nics.size(); ++k) {
    if (nics[k].bandwidth != nics[0].bandwidth || nics[k].devices.size() != per_nic) return false;
    for (size_t d = 0; d < per_nic; ++d) {
      if (nics[k].devices[d] != static_cast<int>(k * per_nic + d)) return false;
    }
  }
  return true;
}

Json NicsToJson(const NodeType& t) {
  if (IsCompact(t.nics, t.devices_per_node)) {
    Json j = Json::object();
    j["count"] = t.nics.size();
    j["Gbps"] = GbpsJson(t.nics[0].bandwidth);
    j["devices_per_nic"] = t.nics[0].devices.size();
    return j;
  }
  Json arr = Json::array();
  for (const Nic& nic : t.nics) {
    Json j = Json::object();
    j["Gbps"] = GbpsJson(nic.bandwidth);
    j["devices"] = nic.devices;
    arr.push_back(std::move(j));
  }
  return arr;
}

}  // namespace

Result<ClusterSpec> ParseClusterSpec(const Json& json, const std::string& source) {
  JsonReader root(json, source);
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  ClusterSpec spec;
  ORRERY_ASSIGN_OR_RETURN(spec.name, root.String("name", ""));
  ORRERY_ASSIGN_OR_RETURN(spec.description, root.String("description", ""));
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> nodes, root.ObjectArray("nodes"));
  if (nodes.empty()) return root.FieldError("nodes", "expected at least one node type");
  for (const JsonReader& node : nodes) {
    ORRERY_ASSIGN_OR_RETURN(NodeType t, ParseNodeType(node));
    spec.node_types.push_back(std::move(t));
  }
  ORRERY_ASSIGN_OR_RETURN(spec.network, ParseNetwork(root));
  // `orrery clusters --format json` adds a derived "summary"; reading its
  // output back ignores it.
  if (root.Has("summary") && !json.at("summary").is_object()) {
    return root.FieldError("summary", "expected an object (it is ignored on reading)");
  }
  // `orrery calibrate` writes its calibration into the spec
  // (costmodel/calibration_json.h reads it); the spec alone ignores it.
  if (root.Has("calibration") && !json.at("calibration").is_object()) {
    return root.FieldError("calibration", "expected an object (read by the calibration)");
  }
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  Status valid = ValidateClusterSpec(spec);
  if (!valid.ok()) return valid.WithContext(source);
  return spec;
}

Result<ClusterSpec> LoadClusterSpecFile(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(Json json, ReadJsonFile(path));
  return ParseClusterSpec(json, path);
}

Json DeviceTypeToJson(const DeviceType& d) {
  Json j = Json::object();
  j["name"] = d.name;
  j["model"] = d.model;
  Json peak = Json::object();
  for (const auto& [p, rate] : d.peak) {
    peak[std::string(PrecisionName(p))] =
        ExactNumber(rate, rate.ToTFlops(), [](double v) { return TFlops(v); });
  }
  j["peak_tflops"] = std::move(peak);
  j["memory_gib"] = ExactNumber(d.memory, d.memory.ToGiB(), [](double v) { return GiBf(v); });
  j["memory_bandwidth_GBps"] = GBpsJson(d.memory_bandwidth);
  j["pci_device_ids"] = d.pci_device_ids;
  j["source"] = d.source;
  return j;
}

Json ClusterSpecToJson(const ClusterSpec& spec) {
  Json j = Json::object();
  j["name"] = spec.name;
  if (!spec.description.empty()) j["description"] = spec.description;
  Json nodes = Json::array();
  for (const NodeType& t : spec.node_types) {
    Json n = Json::object();
    if (!t.name.empty()) n["name"] = t.name;
    n["count"] = t.count;
    n["devices_per_node"] = t.devices_per_node;
    n["device"] = DeviceTypeToJson(t.device);
    Json fabric = Json::object();
    fabric["kind"] = std::string(FabricKindName(t.fabric.kind));
    fabric["GBps_per_device"] = GBpsJson(t.fabric.bandwidth_per_device);
    fabric["latency_us"] = MicrosJson(t.fabric.latency);
    n["fabric"] = std::move(fabric);
    if (!t.nics.empty()) n["nics"] = NicsToJson(t);
    nodes.push_back(std::move(n));
  }
  j["nodes"] = std::move(nodes);
  Json network = Json::object();
  network["rail_optimized"] = spec.network.rail_optimized;
  Json tiers = Json::array();
  for (const NetworkTier& tier : spec.network.tiers) {
    Json t = Json::object();
    t["name"] = tier.name;
    if (tier.nodes_per_switch.has_value()) t["nodes_per_switch"] = *tier.nodes_per_switch;
    t["oversubscription"] =
        ExactNumber(tier.oversubscription, tier.oversubscription, [](double v) { return v; });
    t["latency_us"] = MicrosJson(tier.latency);
    tiers.push_back(std::move(t));
  }
  network["tiers"] = std::move(tiers);
  j["network"] = std::move(network);
  return j;
}

}  // namespace orrery::topology
