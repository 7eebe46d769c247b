#include "workload/plan_json.h"

#include <algorithm>
#include <climits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "core/file.h"

namespace orrery::workload {

namespace {

// A layer strategy's fields as one JSON object states them.
struct LayerPatch {
  std::optional<int> tp, cp, dp, ep, zero_stage;
  std::optional<bool> sequence_parallel;
  std::optional<Recompute> recompute;

  void ApplyTo(LayerStrategy* l) const {
    if (tp) l->tp = *tp;
    if (cp) l->cp = *cp;
    if (dp) l->dp = *dp;
    if (ep) l->ep = *ep;
    if (zero_stage) l->zero_stage = *zero_stage;
    if (sequence_parallel) l->sequence_parallel = *sequence_parallel;
    if (recompute) l->recompute = *recompute;
  }
};

Result<int> NarrowInt(const JsonReader& r, std::string_view key, int64_t v) {
  if (v > INT_MAX) return r.FieldError(key, "expected at most " + std::to_string(INT_MAX) +
                                                ", got " + std::to_string(v));
  return static_cast<int>(v);
}

Result<std::optional<int>> OptionalPositive(const JsonReader& r, std::string_view key) {
  if (!r.Has(key)) return std::optional<int>();
  ORRERY_ASSIGN_OR_RETURN(int64_t v, r.PositiveInt(key));
  ORRERY_ASSIGN_OR_RETURN(int n, NarrowInt(r, key, v));
  return std::optional<int>(n);
}

Result<LayerPatch> ReadLayerPatch(const JsonReader& r) {
  LayerPatch p;
  ORRERY_ASSIGN_OR_RETURN(p.tp, OptionalPositive(r, "tp"));
  ORRERY_ASSIGN_OR_RETURN(p.cp, OptionalPositive(r, "cp"));
  ORRERY_ASSIGN_OR_RETURN(p.dp, OptionalPositive(r, "dp"));
  ORRERY_ASSIGN_OR_RETURN(p.ep, OptionalPositive(r, "ep"));
  if (r.Has("zero_stage")) {
    ORRERY_ASSIGN_OR_RETURN(int64_t z, r.Int("zero_stage"));
    if (z < 0 || z > 3) {
      return r.FieldError("zero_stage", "expected 0, 1, 2 or 3, got " + std::to_string(z));
    }
    p.zero_stage = static_cast<int>(z);
  }
  if (r.Has("sequence_parallel")) {
    ORRERY_ASSIGN_OR_RETURN(bool sp, r.Bool("sequence_parallel"));
    p.sequence_parallel = sp;
  }
  if (r.Has("recompute")) {
    ORRERY_ASSIGN_OR_RETURN(std::string name, r.String("recompute"));
    Result<Recompute> rc = ParseRecompute(name);
    if (!rc.ok()) return r.FieldError("recompute", rc.status().message());
    p.recompute = *rc;
  }
  return p;
}

// Parses "a-b" or "a" (or an integer) into an inclusive range inside
// [0, num_layers).
Result<std::pair<int, int>> ReadLayerRange(const JsonReader& r, int num_layers) {
  const std::string expected = "a layer index or an inclusive range \"first-last\" within 0-" +
                               std::to_string(num_layers - 1);
  if (!r.Has("layers")) return r.FieldError("layers", "missing (expected " + expected + ")");
  const Json& v = r.json().at("layers");
  int64_t first = -1;
  int64_t last = -1;
  if (v.is_number_integer()) {
    first = last = v.get<int64_t>();
  } else if (v.is_string()) {
    const std::string s = v.get<std::string>();
    const size_t dash = s.find('-');
    auto parse = [](const std::string& t, int64_t* out) {
      if (t.empty() || t.size() > 9) return false;
      for (char c : t) {
        if (c < '0' || c > '9') return false;
      }
      *out = std::stoll(t);
      return true;
    };
    bool ok = false;
    if (dash == std::string::npos) {
      ok = parse(s, &first);
      last = first;
    } else {
      ok = parse(s.substr(0, dash), &first) && parse(s.substr(dash + 1), &last);
    }
    if (!ok) return r.FieldError("layers", "expected " + expected + ", got " + JsonSnippet(v));
  } else {
    return r.FieldError("layers", "expected " + expected + ", got " + JsonSnippet(v));
  }
  if (first < 0 || last < first || last >= num_layers) {
    return r.FieldError("layers", "expected " + expected + ", got " + JsonSnippet(v));
  }
  return std::make_pair(static_cast<int>(first), static_cast<int>(last));
}

}  // namespace

Result<Plan> ParsePlanJson(const Json& json, std::string_view source) {
  JsonReader root(json, std::string(source));
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  Plan plan;

  ORRERY_ASSIGN_OR_RETURN(int64_t num_layers64, root.PositiveInt("num_layers"));
  ORRERY_ASSIGN_OR_RETURN(int num_layers, NarrowInt(root, "num_layers", num_layers64));
  ORRERY_ASSIGN_OR_RETURN(int64_t global, root.PositiveInt("global_batch_size"));
  ORRERY_ASSIGN_OR_RETURN(plan.global_batch_size, NarrowInt(root, "global_batch_size", global));
  ORRERY_ASSIGN_OR_RETURN(int64_t micro, root.PositiveInt("micro_batch_size", 1));
  ORRERY_ASSIGN_OR_RETURN(plan.micro_batch_size, NarrowInt(root, "micro_batch_size", micro));
  ORRERY_ASSIGN_OR_RETURN(int64_t seq, root.PositiveInt("sequence_length"));
  ORRERY_ASSIGN_OR_RETURN(plan.sequence_length, NarrowInt(root, "sequence_length", seq));

  ORRERY_ASSIGN_OR_RETURN(std::string precision, root.String("precision", "bf16"));
  Result<topology::Precision> p = topology::ParsePrecision(precision);
  if (!p.ok()) return root.FieldError("precision", p.status().message());
  plan.precision = *p;

  if (root.Has("pipeline")) {
    ORRERY_ASSIGN_OR_RETURN(JsonReader pipe, root.Object("pipeline"));
    ORRERY_ASSIGN_OR_RETURN(int64_t pp, pipe.PositiveInt("pp", 1));
    ORRERY_ASSIGN_OR_RETURN(plan.pp, NarrowInt(pipe, "pp", pp));
    ORRERY_ASSIGN_OR_RETURN(std::string schedule, pipe.String("schedule", "1f1b"));
    Result<PipelineSchedule> s = ParsePipelineSchedule(schedule);
    if (!s.ok()) return pipe.FieldError("schedule", s.status().message());
    plan.schedule = *s;
    ORRERY_ASSIGN_OR_RETURN(int64_t vpp, pipe.PositiveInt("vpp", 1));
    ORRERY_ASSIGN_OR_RETURN(plan.vpp, NarrowInt(pipe, "vpp", vpp));
    if (pipe.Has("stage_layers")) {
      ORRERY_ASSIGN_OR_RETURN(std::vector<int64_t> stages, pipe.IntArray("stage_layers"));
      for (size_t i = 0; i < stages.size(); ++i) {
        if (stages[i] < 1 || stages[i] > num_layers) {
          return pipe.FieldError("stage_layers[" + std::to_string(i) + "]",
                                 "expected a layer count from 1 to " +
                                     std::to_string(num_layers) + ", got " +
                                     std::to_string(stages[i]));
        }
        plan.stage_layers.push_back(static_cast<int>(stages[i]));
      }
    }
    ORRERY_RETURN_IF_ERROR(pipe.RejectUnknownFields());
  }

  if (root.Has("rank_order")) {
    ORRERY_ASSIGN_OR_RETURN(std::string order, root.String("rank_order"));
    Result<RankOrder> o = ParseRankOrder(order);
    if (!o.ok()) return root.FieldError("rank_order", o.status().message());
    plan.rank_order = *o;
  }

  LayerStrategy base;
  if (root.Has("layers")) {
    ORRERY_ASSIGN_OR_RETURN(JsonReader layers, root.Object("layers"));
    ORRERY_ASSIGN_OR_RETURN(LayerPatch patch, ReadLayerPatch(layers));
    patch.ApplyTo(&base);
    ORRERY_RETURN_IF_ERROR(layers.RejectUnknownFields());
  }
  plan.layers.assign(static_cast<size_t>(num_layers), base);

  if (root.Has("overrides")) {
    ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> overrides, root.ObjectArray("overrides"));
    for (const JsonReader& o : overrides) {
      ORRERY_ASSIGN_OR_RETURN(auto range, ReadLayerRange(o, num_layers));
      ORRERY_ASSIGN_OR_RETURN(LayerPatch patch, ReadLayerPatch(o));
      ORRERY_RETURN_IF_ERROR(o.RejectUnknownFields());
      for (int i = range.first; i <= range.second; ++i) {
        patch.ApplyTo(&plan.layers[static_cast<size_t>(i)]);
      }
    }
  }
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  return plan;
}

Result<Plan> ParsePlanJsonText(std::string_view text, std::string_view source) {
  ORRERY_ASSIGN_OR_RETURN(Json json, ParseJson(text, source));
  return ParsePlanJson(json, source);
}

Result<Plan> ReadPlanFile(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(Json json, ReadJsonFile(path));
  return ParsePlanJson(json, path);
}

namespace {

Json LayerToJson(const LayerStrategy& l) {
  Json j = Json::object();
  j["tp"] = l.tp;
  j["cp"] = l.cp;
  j["dp"] = l.dp;
  j["ep"] = l.ep;
  j["zero_stage"] = l.zero_stage;
  j["sequence_parallel"] = l.sequence_parallel;
  j["recompute"] = std::string(RecomputeName(l.recompute));
  return j;
}

// The fields of `l` that differ from `base`.
Json LayerDiffToJson(const LayerStrategy& l, const LayerStrategy& base) {
  Json full = LayerToJson(l);
  const Json base_json = LayerToJson(base);
  Json j = Json::object();
  for (auto it = full.begin(); it != full.end(); ++it) {
    if (base_json.at(it.key()) != it.value()) j[it.key()] = it.value();
  }
  return j;
}

}  // namespace

Json PlanToJson(const Plan& plan) {
  Json j = Json::object();
  j["num_layers"] = plan.num_layers();
  j["global_batch_size"] = plan.global_batch_size;
  j["micro_batch_size"] = plan.micro_batch_size;
  j["sequence_length"] = plan.sequence_length;
  j["precision"] = std::string(topology::PrecisionName(plan.precision));
  Json pipe = Json::object();
  pipe["pp"] = plan.pp;
  pipe["schedule"] = std::string(PipelineScheduleName(plan.schedule));
  pipe["vpp"] = plan.vpp;
  if (!plan.stage_layers.empty()) pipe["stage_layers"] = plan.stage_layers;
  j["pipeline"] = pipe;
  j["rank_order"] = RankOrderName(plan.rank_order);

  // The most common strategy (the earliest on ties) is the default.
  LayerStrategy base;
  int best = 0;
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const int n = static_cast<int>(
        std::count(plan.layers.begin(), plan.layers.end(), plan.layers[i]));
    if (n > best) {
      best = n;
      base = plan.layers[i];
    }
  }
  j["layers"] = LayerToJson(base);
  Json overrides = Json::array();
  size_t i = 0;
  while (i < plan.layers.size()) {
    size_t end = i;
    while (end + 1 < plan.layers.size() && plan.layers[end + 1] == plan.layers[i]) ++end;
    if (!(plan.layers[i] == base)) {
      Json o = Json::object();
      o["layers"] = LayerRangeName(static_cast<int>(i), static_cast<int>(end));
      const Json diff = LayerDiffToJson(plan.layers[i], base);
      for (auto it = diff.begin(); it != diff.end(); ++it) o[it.key()] = it.value();
      overrides.push_back(o);
    }
    i = end + 1;
  }
  if (!overrides.empty()) j["overrides"] = overrides;
  return j;
}

}  // namespace orrery::workload
