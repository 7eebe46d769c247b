#include "costmodel/calibration_json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "topology/cluster_spec_json.h"

namespace orrery::costmodel {
namespace {

using topology::Precision;

double GBpsNumber(Bandwidth b) {
  return ExactDecimal(b, b.ToGBps(), [](double v) { return GBps(v); });
}
double MicrosNumber(Duration d) {
  return ExactDecimal(d, d.ToMicros(), [](double v) { return Micros(v); });
}
double NanosNumber(Duration d) {
  return ExactDecimal(d, d.ToNanos(), [](double v) { return Nanos(v); });
}

constexpr CollectiveAlgorithm kAlgorithms[] = {
    CollectiveAlgorithm::kRing, CollectiveAlgorithm::kTree, CollectiveAlgorithm::kNvls,
    CollectiveAlgorithm::kNvlsTree, CollectiveAlgorithm::kPointToPoint};
constexpr CollectiveProtocol kProtocols[] = {CollectiveProtocol::kLl, CollectiveProtocol::kLl128,
                                             CollectiveProtocol::kSimple};

Json ComputeOptionsToJson(const ComputeOptions& o) {
  Json j = Json::object();
  j["generation"] = o.generation;
  j["multiprocessors"] = o.multiprocessors;
  j["tile_m"] = o.tile_m;
  j["tile_n"] = o.tile_n;
  j["gemm_max_efficiency"] = o.gemm_max_efficiency;
  j["gemm_k_half"] = o.gemm_k_half;
  j["attention_forward_efficiency"] = o.attention_forward_efficiency;
  j["attention_backward_efficiency"] = o.attention_backward_efficiency;
  j["attention_tile_rows"] = o.attention_tile_rows;
  j["bandwidth_efficiency"] = o.bandwidth_efficiency;
  return j;
}

Result<int> PositiveIntField(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(int64_t v, r.PositiveInt(key));
  if (v > std::numeric_limits<int>::max()) return r.FieldError(key, "too large");
  return static_cast<int>(v);
}

Result<double> FractionField(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(double v, r.Number(key));
  if (!(v > 0 && v <= 1)) {
    return r.FieldError(key, "expected a fraction in (0, 1], got " + JsonSnippet(v));
  }
  return v;
}

Result<ComputeOptions> ParseComputeOptions(const JsonReader& r) {
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  ComputeOptions o;
  ORRERY_ASSIGN_OR_RETURN(o.generation, r.String("generation"));
  ORRERY_ASSIGN_OR_RETURN(o.multiprocessors, PositiveIntField(r, "multiprocessors"));
  ORRERY_ASSIGN_OR_RETURN(o.tile_m, PositiveIntField(r, "tile_m"));
  ORRERY_ASSIGN_OR_RETURN(o.tile_n, PositiveIntField(r, "tile_n"));
  ORRERY_ASSIGN_OR_RETURN(o.gemm_max_efficiency, FractionField(r, "gemm_max_efficiency"));
  ORRERY_ASSIGN_OR_RETURN(o.gemm_k_half, r.Number("gemm_k_half"));
  if (!(o.gemm_k_half >= 0)) {
    return r.FieldError("gemm_k_half", "expected a number >= 0, got " + JsonSnippet(o.gemm_k_half));
  }
  ORRERY_ASSIGN_OR_RETURN(o.attention_forward_efficiency,
                          FractionField(r, "attention_forward_efficiency"));
  ORRERY_ASSIGN_OR_RETURN(o.attention_backward_efficiency,
                          FractionField(r, "attention_backward_efficiency"));
  ORRERY_ASSIGN_OR_RETURN(o.attention_tile_rows, PositiveIntField(r, "attention_tile_rows"));
  ORRERY_ASSIGN_OR_RETURN(o.bandwidth_efficiency, FractionField(r, "bandwidth_efficiency"));
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return o;
}

// A compute profile inside the calibration, read by traces' own parser; its
// errors are re-addressed from the profile's root to `path`.
Result<traces::ComputeProfile> ParseProfile(const Json& json, const std::string& source,
                                            const std::string& path) {
  Result<traces::ComputeProfile> p = traces::ParseComputeProfile(DumpJson(json), source);
  if (p.ok()) return p;
  std::string message = p.status().message();
  const std::string field_prefix = source + ": field '";
  const std::string root_prefix = source + ": '";
  const std::string plain_prefix = source + ": ";
  if (message.rfind(field_prefix, 0) == 0) {
    message = field_prefix + path + "." + message.substr(field_prefix.size());
  } else if (message.rfind(root_prefix, 0) == 0) {
    message = root_prefix + path + "." + message.substr(root_prefix.size());
  } else if (message.rfind(plain_prefix, 0) == 0) {
    message = plain_prefix + "'" + path + "': " + message.substr(plain_prefix.size());
  } else {
    message = source + ": '" + path + "': " + message;
  }
  return Status(p.status().code(), message);
}

Result<FittedRegime> ParseRegime(const JsonReader& r) {
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  FittedRegime g;
  ORRERY_ASSIGN_OR_RETURN(int64_t min_bytes, r.PositiveInt("min_bytes"));
  ORRERY_ASSIGN_OR_RETURN(int64_t max_bytes, r.PositiveInt("max_bytes"));
  if (max_bytes < min_bytes) {
    return r.FieldError("max_bytes", "expected at least min_bytes (" + std::to_string(min_bytes) +
                                         "), got " + std::to_string(max_bytes));
  }
  g.min_size = Bytes(min_bytes);
  g.max_size = Bytes(max_bytes);
  ORRERY_ASSIGN_OR_RETURN(double latency_us, r.Number("latency_us"));
  if (!(latency_us >= 0)) {
    return r.FieldError("latency_us", "expected a number >= 0, got " + JsonSnippet(latency_us));
  }
  g.latency = Micros(latency_us);
  ORRERY_ASSIGN_OR_RETURN(double busbw, r.PositiveNumber("busbw_GBps"));
  g.busbw = GBps(busbw);
  ORRERY_ASSIGN_OR_RETURN(std::string algorithm, r.String("algorithm"));
  bool found = false;
  std::string names;
  for (CollectiveAlgorithm a : kAlgorithms) {
    names += (names.empty() ? "" : ", ") + std::string(AlgorithmName(a));
    if (algorithm == AlgorithmName(a)) {
      g.algorithm = a;
      found = true;
    }
  }
  if (!found) return r.FieldError("algorithm", "expected one of " + names + ", got " + algorithm);
  ORRERY_ASSIGN_OR_RETURN(std::string protocol, r.String("protocol"));
  found = false;
  names.clear();
  for (CollectiveProtocol p : kProtocols) {
    names += (names.empty() ? "" : ", ") + std::string(ProtocolName(p));
    if (protocol == ProtocolName(p)) {
      g.protocol = p;
      found = true;
    }
  }
  if (!found) return r.FieldError("protocol", "expected one of " + names + ", got " + protocol);
  ORRERY_ASSIGN_OR_RETURN(int64_t points, r.Int("points", 0));
  if (points < 0 || points > std::numeric_limits<int>::max()) {
    return r.FieldError("points", "expected an integer >= 0, got " + std::to_string(points));
  }
  g.points = static_cast<int>(points);
  ORRERY_ASSIGN_OR_RETURN(g.max_relative_error, r.NonNegativeNumber("max_relative_error", 0.0));
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return g;
}

Result<FittedCollective> ParseCollective(const JsonReader& r) {
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  FittedCollective fit;
  ORRERY_ASSIGN_OR_RETURN(std::string op, r.String("op"));
  Result<traces::CollectiveOp> parsed = traces::ParseCollectiveOp(op);
  if (!parsed.ok()) return r.FieldError("op", parsed.status().message());
  fit.op = *parsed;
  ORRERY_ASSIGN_OR_RETURN(fit.ranks, PositiveIntField(r, "ranks"));
  ORRERY_ASSIGN_OR_RETURN(fit.nodes, PositiveIntField(r, "nodes"));
  if (fit.ranks % fit.nodes != 0) {
    return r.FieldError("nodes", std::to_string(fit.ranks) + " ranks do not spread evenly over " +
                                     std::to_string(fit.nodes) + " nodes");
  }
  ORRERY_ASSIGN_OR_RETURN(fit.source, r.String("source", ""));
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> regimes, r.ObjectArray("regimes"));
  if (regimes.empty()) return r.FieldError("regimes", "expected at least one regime");
  for (const JsonReader& g : regimes) {
    ORRERY_ASSIGN_OR_RETURN(FittedRegime regime, ParseRegime(g));
    if (!fit.regimes.empty() && regime.min_size < fit.regimes.back().max_size) {
      return g.FieldError("min_bytes", "regimes must be ordered by size without overlap");
    }
    fit.regimes.push_back(regime);
  }
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return fit;
}

Result<FitResidual> ParseResidual(const JsonReader& r) {
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  FitResidual f;
  ORRERY_ASSIGN_OR_RETURN(f.quantity, r.String("quantity"));
  ORRERY_ASSIGN_OR_RETURN(f.source, r.String("source", ""));
  ORRERY_ASSIGN_OR_RETURN(int64_t points, r.Int("points"));
  if (points < 0 || points > std::numeric_limits<int>::max()) {
    return r.FieldError("points", "expected an integer >= 0, got " + std::to_string(points));
  }
  f.points = static_cast<int>(points);
  ORRERY_ASSIGN_OR_RETURN(f.rms_relative_error, r.NonNegativeNumber("rms_relative_error", 0.0));
  ORRERY_ASSIGN_OR_RETURN(f.max_relative_error, r.NonNegativeNumber("max_relative_error", 0.0));
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return f;
}

Result<std::vector<std::string>> StringArray(const JsonReader& r, std::string_view key) {
  std::vector<std::string> out;
  if (!r.Has(key)) return out;
  const Json& arr = r.json().at(std::string(key));
  if (!arr.is_array()) return r.FieldError(key, "expected an array of strings, got " + JsonSnippet(arr));
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) {
      return r.FieldError(std::string(key) + "[" + std::to_string(i) + "]",
                          "expected a string, got " + JsonSnippet(arr[i]));
    }
    out.push_back(arr[i].get<std::string>());
  }
  return out;
}

}  // namespace

Json CalibrationToJson(const Calibration& c) {
  Json j = Json::object();
  j["device"] = c.device;
  j["sources"] = c.sources;
  Json compute = Json::object();
  for (const auto& [precision, options] : c.compute) {
    compute[std::string(topology::PrecisionName(precision))] = ComputeOptionsToJson(options);
  }
  j["compute"] = std::move(compute);
  Json profiles = Json::array();
  for (const traces::ComputeProfile& p : c.profiles) {
    // ComputeProfileToJson's text is valid JSON by construction.
    profiles.push_back(Json::parse(traces::ComputeProfileToJson(p)));
  }
  j["profiles"] = std::move(profiles);
  if (c.optimizer_time_per_parameter.has_value()) {
    j["optimizer_ns_per_parameter"] = NanosNumber(*c.optimizer_time_per_parameter);
  }
  Json collectives = Json::array();
  for (const FittedCollective& fit : c.collectives.fits()) {
    Json f = Json::object();
    f["op"] = std::string(traces::CollectiveOpName(fit.op));
    f["ranks"] = fit.ranks;
    f["nodes"] = fit.nodes;
    f["source"] = fit.source;
    Json regimes = Json::array();
    for (const FittedRegime& g : fit.regimes) {
      Json r = Json::object();
      r["min_bytes"] = g.min_size.count();
      r["max_bytes"] = g.max_size.count();
      r["latency_us"] = MicrosNumber(g.latency);
      r["busbw_GBps"] = GBpsNumber(g.busbw);
      r["algorithm"] = std::string(AlgorithmName(g.algorithm));
      r["protocol"] = std::string(ProtocolName(g.protocol));
      r["points"] = g.points;
      r["max_relative_error"] = g.max_relative_error;
      regimes.push_back(std::move(r));
    }
    f["regimes"] = std::move(regimes);
    collectives.push_back(std::move(f));
  }
  j["collectives"] = std::move(collectives);
  if (c.overlap_slowdown.has_value()) j["overlap_slowdown"] = *c.overlap_slowdown;
  Json residuals = Json::array();
  for (const FitResidual& r : c.residuals) {
    Json f = Json::object();
    f["quantity"] = r.quantity;
    f["source"] = r.source;
    f["points"] = r.points;
    f["rms_relative_error"] = r.rms_relative_error;
    f["max_relative_error"] = r.max_relative_error;
    residuals.push_back(std::move(f));
  }
  j["residuals"] = std::move(residuals);
  return j;
}

Result<Calibration> ParseCalibration(const Json& json, const std::string& source) {
  JsonReader root(json, source, "calibration");
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  Calibration c;
  ORRERY_ASSIGN_OR_RETURN(c.device, root.String("device"));
  if (c.device.empty()) return root.FieldError("device", "expected a non-empty device name");
  ORRERY_ASSIGN_OR_RETURN(c.sources, StringArray(root, "sources"));
  if (root.Has("compute")) {
    ORRERY_ASSIGN_OR_RETURN(JsonReader compute, root.Object("compute"));
    ORRERY_RETURN_IF_ERROR(compute.ExpectObject());
    for (auto it = json.at("compute").begin(); it != json.at("compute").end(); ++it) {
      Result<Precision> p = topology::ParsePrecision(it.key());
      if (!p.ok()) return compute.FieldError(it.key(), p.status().message());
      ORRERY_ASSIGN_OR_RETURN(JsonReader options, compute.Object(it.key()));
      ORRERY_ASSIGN_OR_RETURN(c.compute[*p], ParseComputeOptions(options));
    }
  }
  if (root.Has("profiles")) {
    const Json& profiles = json.at("profiles");
    if (!profiles.is_array()) {
      return root.FieldError("profiles", "expected an array of compute profiles, got " +
                                             JsonSnippet(profiles));
    }
    for (size_t i = 0; i < profiles.size(); ++i) {
      const std::string path = root.FieldPath("profiles[" + std::to_string(i) + "]");
      ORRERY_ASSIGN_OR_RETURN(traces::ComputeProfile p, ParseProfile(profiles[i], source, path));
      if (p.device != c.device) {
        return InvalidArgumentError(source + ": field '" + path + ".device': expected " +
                                    c.device + " (the calibration's device), got " + p.device);
      }
      c.profiles.push_back(std::move(p));
    }
  }
  if (root.Has("optimizer_ns_per_parameter")) {
    ORRERY_ASSIGN_OR_RETURN(double ns, root.PositiveNumber("optimizer_ns_per_parameter"));
    c.optimizer_time_per_parameter = Nanos(ns);
  }
  if (root.Has("collectives")) {
    ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> fits, root.ObjectArray("collectives"));
    for (const JsonReader& f : fits) {
      ORRERY_ASSIGN_OR_RETURN(FittedCollective fit, ParseCollective(f));
      c.collectives.Add(std::move(fit));
    }
  }
  if (root.Has("overlap_slowdown")) {
    ORRERY_ASSIGN_OR_RETURN(double sigma, root.NonNegativeNumber("overlap_slowdown", 0.0));
    c.overlap_slowdown = sigma;
  }
  if (root.Has("residuals")) {
    ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> residuals, root.ObjectArray("residuals"));
    for (const JsonReader& r : residuals) {
      ORRERY_ASSIGN_OR_RETURN(FitResidual residual, ParseResidual(r));
      c.residuals.push_back(std::move(residual));
    }
  }
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  return c;
}

Result<CalibratedCluster> LoadCalibratedCluster(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(Json json, ReadJsonFile(path));
  CalibratedCluster out;
  ORRERY_ASSIGN_OR_RETURN(out.cluster, topology::ParseClusterSpec(json, path));
  if (json.contains("calibration")) {
    ORRERY_ASSIGN_OR_RETURN(Calibration c, ParseCalibration(json.at("calibration"), path));
    const std::string& device = out.cluster.PrimaryNodeType().device.name;
    if (c.device != device) {
      return InvalidArgumentError(path + ": field 'calibration.device': expected " + device +
                                  " (the cluster's device), got " + c.device);
    }
    out.calibration = std::move(c);
  }
  return out;
}

Json CalibratedClusterToJson(const topology::ClusterSpec& cluster,
                             const Calibration& calibration) {
  Json j = topology::ClusterSpecToJson(cluster);
  j["calibration"] = CalibrationToJson(calibration);
  return j;
}

}  // namespace orrery::costmodel
