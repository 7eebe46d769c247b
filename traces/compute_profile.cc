#include "traces/compute_profile.h"

#include <array>
#include <charconv>
#include <cmath>
#include <utility>

#include "core/file.h"
#include "core/json.h"

namespace orrery::traces {
namespace {

using workload::GemmShape;
using workload::OperatorClass;

constexpr std::array<OperatorClass, 6> kClasses = {
    OperatorClass::kGemm,        OperatorClass::kAttention, OperatorClass::kNorm,
    OperatorClass::kElementwise, OperatorClass::kEmbedding, OperatorClass::kLoss,
};
constexpr std::string_view kLayer = "layer";

double GemmFlopCount(const GemmShape& g) {
  return 2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k) *
         static_cast<double>(g.batch);
}

Result<GemmShape> ReadGemm(const JsonReader& entry) {
  ORRERY_ASSIGN_OR_RETURN(JsonReader g, entry.Object("gemm"));
  GemmShape shape;
  ORRERY_ASSIGN_OR_RETURN(shape.m, g.PositiveInt("m"));
  ORRERY_ASSIGN_OR_RETURN(shape.n, g.PositiveInt("n"));
  ORRERY_ASSIGN_OR_RETURN(shape.k, g.PositiveInt("k"));
  ORRERY_ASSIGN_OR_RETURN(shape.batch, g.PositiveInt("batch", 1));
  ORRERY_RETURN_IF_ERROR(g.RejectUnknownFields());
  return shape;
}

// A positive byte count (a JSON number, rounded to the nearest byte).
Result<std::optional<Bytes>> ReadBytes(const JsonReader& e, std::string_view key) {
  if (!e.Has(key)) return std::optional<Bytes>();
  ORRERY_ASSIGN_OR_RETURN(double v, e.PositiveNumber(key));
  if (!std::isfinite(v) || v >= 9.0e18) {
    return e.FieldError(key, "expected a finite number of bytes");
  }
  return std::optional<Bytes>(Bytes(static_cast<int64_t>(std::llround(v))));
}

// "covers": an array of non-empty, distinct operator names.
Result<std::vector<std::string>> ReadCovers(const JsonReader& e) {
  std::vector<std::string> out;
  if (!e.Has("covers")) return out;
  const Json& v = e.json().at("covers");
  if (!v.is_array() || v.empty()) {
    return e.FieldError("covers",
                        "expected a non-empty array of operator names, got " + JsonSnippet(v));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string key = "covers[" + std::to_string(i) + "]";
    if (!v[i].is_string() || v[i].get<std::string>().empty()) {
      return e.FieldError(key, "expected an operator name, got " + JsonSnippet(v[i]));
    }
    std::string name = v[i].get<std::string>();
    for (const std::string& seen : out) {
      if (seen == name) return e.FieldError(key, "\"" + name + "\" is listed twice");
    }
    out.push_back(std::move(name));
  }
  return out;
}

Result<OptimizerMeasurement> ReadOptimizer(const JsonReader& o) {
  OptimizerMeasurement m;
  ORRERY_ASSIGN_OR_RETURN(m.name, o.String("name", "adamw"));
  if (m.name.empty()) return o.FieldError("name", "expected a non-empty optimizer name");
  ORRERY_ASSIGN_OR_RETURN(m.parameters, o.PositiveInt("parameters"));
  ORRERY_ASSIGN_OR_RETURN(double us, o.PositiveNumber("step_us"));
  m.step = Micros(us);
  ORRERY_RETURN_IF_ERROR(o.RejectUnknownFields());
  return m;
}

Result<ComputeProfileEntry> ReadEntry(const JsonReader& e) {
  ComputeProfileEntry entry;
  ORRERY_ASSIGN_OR_RETURN(std::string op_class, e.String("op_class"));
  if (op_class != kLayer) {
    Result<OperatorClass> c = ParseOperatorClass(op_class);
    if (!c.ok()) return e.FieldError("op_class", c.status().message());
    entry.op_class = *c;
  }
  ORRERY_ASSIGN_OR_RETURN(entry.name, e.String("name", ""));
  if (e.Has("gemm")) {
    if (entry.IsLayer()) return e.FieldError("gemm", "a layer entry has no GEMM shape");
    ORRERY_ASSIGN_OR_RETURN(entry.gemm, ReadGemm(e));
  }
  if (e.Has("forward_flops")) {
    ORRERY_ASSIGN_OR_RETURN(double f, e.PositiveNumber("forward_flops"));
    entry.forward_flops = Flop(f);
  } else if (entry.gemm.has_value() && entry.op_class == OperatorClass::kGemm) {
    entry.forward_flops = Flop(GemmFlopCount(*entry.gemm));
  }
  if (entry.IsLayer()) {
    if (entry.name.empty()) return e.FieldError("name", "missing (a layer entry needs a name)");
    if (e.Has("micro_batch")) {
      ORRERY_ASSIGN_OR_RETURN(entry.micro_batch, e.PositiveInt("micro_batch"));
    }
    if (e.Has("sequence_length")) {
      ORRERY_ASSIGN_OR_RETURN(entry.sequence_length, e.PositiveInt("sequence_length"));
    }
  } else if (!entry.gemm.has_value() && entry.name.empty()) {
    return e.FieldError("gemm", "missing (an operator entry needs a 'gemm' shape or a 'name')");
  }
  ORRERY_ASSIGN_OR_RETURN(entry.forward_bytes, ReadBytes(e, "forward_bytes"));
  ORRERY_ASSIGN_OR_RETURN(entry.backward_bytes, ReadBytes(e, "backward_bytes"));
  ORRERY_ASSIGN_OR_RETURN(entry.covers, ReadCovers(e));
  if (!entry.covers.empty()) {
    if (entry.IsLayer()) return e.FieldError("covers", "a layer entry covers no operators");
    if (!entry.forward_flops.has_value()) {
      return e.FieldError("forward_flops",
                          "missing (an entry with 'covers' needs the covered operators' "
                          "forward FLOPs)");
    }
  }
  ORRERY_ASSIGN_OR_RETURN(double fwd, e.PositiveNumber("forward_us"));
  entry.forward = Micros(fwd);
  if (e.Has("backward_us")) {
    ORRERY_ASSIGN_OR_RETURN(double bwd, e.PositiveNumber("backward_us"));
    entry.backward = Micros(bwd);
  }
  ORRERY_RETURN_IF_ERROR(e.RejectUnknownFields());
  return entry;
}

// Parses the decimal integer at the start of `s`, advancing past it.
std::optional<int64_t> TakeInt(std::string_view& s) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || v <= 0) return std::nullopt;
  s.remove_prefix(static_cast<size_t>(ptr - s.data()));
  return v;
}

// "layertype_0_bsz8_seq2048" → ("layertype_0", 8, 2048).
struct GalvatronKey {
  std::string layer;
  int64_t micro_batch = 0;
  int64_t sequence_length = 0;
};
std::optional<GalvatronKey> ParseGalvatronKey(std::string_view key) {
  const size_t bsz = key.rfind("_bsz");
  if (bsz == std::string_view::npos) return std::nullopt;
  GalvatronKey out;
  out.layer = std::string(key.substr(0, bsz));
  std::string_view rest = key.substr(bsz + 4);
  std::optional<int64_t> b = TakeInt(rest);
  if (!b.has_value() || !rest.starts_with("_seq")) return std::nullopt;
  rest.remove_prefix(4);
  std::optional<int64_t> s = TakeInt(rest);
  if (!s.has_value() || !rest.empty()) return std::nullopt;
  out.micro_batch = *b;
  out.sequence_length = *s;
  return out;
}

}  // namespace

Result<OperatorClass> ParseOperatorClass(std::string_view name) {
  std::string known;
  for (OperatorClass c : kClasses) {
    if (workload::OperatorClassName(c) == name) return c;
    known += (known.empty() ? "" : ", ") + std::string(workload::OperatorClassName(c));
  }
  return InvalidArgumentError("unknown operator class \"" + std::string(name) +
                              "\" (expected one of " + known + ", " + std::string(kLayer) + ")");
}

Result<ComputeProfile> ParseComputeProfile(std::string_view text, std::string_view source) {
  ORRERY_ASSIGN_OR_RETURN(Json doc, ParseJson(text, source));
  JsonReader root(doc, std::string(source));
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  ComputeProfile profile;
  ORRERY_ASSIGN_OR_RETURN(profile.device, root.String("device"));
  if (profile.device.empty()) return root.FieldError("device", "expected a non-empty name");
  ORRERY_ASSIGN_OR_RETURN(std::string precision, root.String("precision"));
  Result<topology::Precision> p = topology::ParsePrecision(precision);
  if (!p.ok()) return root.FieldError("precision", p.status().message());
  profile.precision = *p;
  ORRERY_ASSIGN_OR_RETURN(profile.source, root.String("source", ""));
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> entries, root.ObjectArray("entries"));
  for (const JsonReader& e : entries) {
    ORRERY_ASSIGN_OR_RETURN(ComputeProfileEntry entry, ReadEntry(e));
    profile.entries.push_back(std::move(entry));
  }
  if (root.Has("optimizer")) {
    ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> steps, root.ObjectArray("optimizer"));
    for (const JsonReader& o : steps) {
      ORRERY_ASSIGN_OR_RETURN(OptimizerMeasurement m, ReadOptimizer(o));
      profile.optimizer.push_back(std::move(m));
    }
  }
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  return profile;
}

Result<ComputeProfile> LoadComputeProfile(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseComputeProfile(text, path);
}

std::string ComputeProfileToJson(const ComputeProfile& profile) {
  Json doc = Json::object();
  doc["device"] = profile.device;
  doc["precision"] = std::string(topology::PrecisionName(profile.precision));
  if (!profile.source.empty()) doc["source"] = profile.source;
  Json entries = Json::array();
  for (const ComputeProfileEntry& e : profile.entries) {
    Json j = Json::object();
    j["op_class"] = e.IsLayer() ? std::string(kLayer)
                                : std::string(workload::OperatorClassName(*e.op_class));
    if (!e.name.empty()) j["name"] = e.name;
    if (e.gemm.has_value()) {
      j["gemm"] = {{"m", e.gemm->m}, {"n", e.gemm->n}, {"k", e.gemm->k},
                   {"batch", e.gemm->batch}};
    }
    const bool derived = e.gemm.has_value() && e.op_class == OperatorClass::kGemm &&
                         e.forward_flops.has_value() &&
                         e.forward_flops->count() == GemmFlopCount(*e.gemm);
    if (e.forward_flops.has_value() && !derived) j["forward_flops"] = e.forward_flops->count();
    if (e.micro_batch.has_value()) j["micro_batch"] = *e.micro_batch;
    if (e.sequence_length.has_value()) j["sequence_length"] = *e.sequence_length;
    if (!e.covers.empty()) j["covers"] = e.covers;
    if (e.forward_bytes.has_value()) j["forward_bytes"] = e.forward_bytes->count();
    if (e.backward_bytes.has_value()) j["backward_bytes"] = e.backward_bytes->count();
    j["forward_us"] = e.forward.ToMicros();
    if (e.backward.has_value()) j["backward_us"] = e.backward->ToMicros();
    entries.push_back(std::move(j));
  }
  doc["entries"] = std::move(entries);
  if (!profile.optimizer.empty()) {
    Json steps = Json::array();
    for (const OptimizerMeasurement& m : profile.optimizer) {
      steps.push_back({{"name", m.name}, {"parameters", m.parameters},
                       {"step_us", m.step.ToMicros()}});
    }
    doc["optimizer"] = std::move(steps);
  }
  return DumpJson(doc);
}

Result<ComputeProfile> ImportGalvatronComputationProfile(const std::string& path,
                                                         std::string device,
                                                         topology::Precision precision) {
  ORRERY_ASSIGN_OR_RETURN(Json doc, ReadJsonFile(path));
  if (!doc.is_object()) {
    return InvalidArgumentError(path + ": expected an object of \"<key>\": milliseconds, got " +
                                JsonSnippet(doc));
  }
  ComputeProfile profile;
  profile.device = std::move(device);
  profile.precision = precision;
  profile.source = path + " (Galvatron computation profile; forward ms per layer per sample)";
  for (const auto& [key, value] : doc.items()) {
    if (!key.starts_with("layertype_")) continue;
    std::optional<GalvatronKey> parsed = ParseGalvatronKey(key);
    if (!parsed.has_value()) {
      return InvalidArgumentError(path + ": field '" + key +
                                  "': expected a key of the form layertype_<i>_bsz<b>_seq<s>");
    }
    if (!value.is_number() || !(value.get<double>() > 0.0)) {
      return InvalidArgumentError(path + ": field '" + key +
                                  "': expected a positive number (ms), got " + JsonSnippet(value));
    }
    ComputeProfileEntry entry;
    entry.name = parsed->layer;
    entry.micro_batch = parsed->micro_batch;
    entry.sequence_length = parsed->sequence_length;
    entry.forward = Millis(value.get<double>() * static_cast<double>(parsed->micro_batch));
    profile.entries.push_back(std::move(entry));
  }
  if (profile.entries.empty()) {
    return InvalidArgumentError(path + ": no \"layertype_<i>_bsz<b>_seq<s>\" keys");
  }
  return profile;
}

}  // namespace orrery::traces
