#include "workload/phases.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "workload/plan_json.h"

namespace orrery::workload {

Result<double> ParseTokenCount(std::string_view text) {
  std::string s(text);
  auto bad = [&] {
    return InvalidArgumentError("tokens: expected a positive count such as 15T, 300B or "
                                "15e12, got '" + std::string(text) + "'");
  };
  if (s.empty()) return bad();
  double scale = 1;
  switch (std::toupper(static_cast<unsigned char>(s.back()))) {
    case 'K':
      scale = 1e3;
      break;
    case 'M':
      scale = 1e6;
      break;
    case 'B':
    case 'G':
      scale = 1e9;
      break;
    case 'T':
      scale = 1e12;
      break;
    default:
      break;
  }
  if (scale != 1) s.pop_back();
  if (s.empty()) return bad();
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v) || !(v > 0)) return bad();
  return v * scale;
}

int64_t TrainingPhase::Steps() const {
  if (steps) return *steps;
  const int64_t per_step = TokensPerStep();
  if (!tokens || per_step <= 0) return 0;
  return static_cast<int64_t>(std::ceil(*tokens / static_cast<double>(per_step)));
}

double TrainingPhase::Tokens() const {
  if (tokens) return *tokens;
  return static_cast<double>(steps.value_or(0)) * static_cast<double>(TokensPerStep());
}

namespace {

// "phases[1] (128k)" for messages.
std::string PhaseLabel(int index, const std::string& name) {
  std::string s = "phases[" + std::to_string(index) + "]";
  if (!name.empty()) s += " (" + name + ")";
  return s;
}

Result<int> PositiveIntField(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(const int64_t v, r.PositiveInt(key));
  if (v > 1'000'000'000) return r.FieldError(key, "too large: " + std::to_string(v));
  return static_cast<int>(v);
}

Result<TrainingPhase> ParsePhase(const JsonReader& r, int index, const std::string& base_dir) {
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  TrainingPhase phase;
  ORRERY_ASSIGN_OR_RETURN(phase.name, r.String("name"));
  if (phase.name.empty()) return r.FieldError("name", "must not be empty");
  const std::string label = PhaseLabel(index, phase.name);
  auto in_phase = [&](Status s) { return s.WithContext(label); };

  const bool has_tokens = r.Has("tokens");
  const bool has_steps = r.Has("steps");
  if (has_tokens == has_steps) {
    return r.Error("give exactly one of 'tokens' (a count such as 800B) and 'steps'");
  }
  if (has_tokens) {
    const Json& t = r.json().at("tokens");
    if (t.is_string()) {
      Result<double> v = ParseTokenCount(t.get<std::string>());
      if (!v.ok()) return r.FieldError("tokens", v.status().message());
      phase.tokens = *v;
    } else {
      ORRERY_ASSIGN_OR_RETURN(const double v, r.PositiveNumber("tokens"));
      phase.tokens = v;
    }
  } else {
    ORRERY_ASSIGN_OR_RETURN(const int64_t v, r.PositiveInt("steps"));
    phase.steps = v;
  }
  ORRERY_ASSIGN_OR_RETURN(phase.sequence_length, PositiveIntField(r, "seq_len"));
  ORRERY_ASSIGN_OR_RETURN(phase.global_batch_size, PositiveIntField(r, "global_batch"));
  ORRERY_ASSIGN_OR_RETURN(phase.cluster, r.String("cluster", ""));
  if (r.Has("nodes")) {
    ORRERY_ASSIGN_OR_RETURN(const int nodes, PositiveIntField(r, "nodes"));
    phase.nodes = nodes;
  }
  if (r.Has("plan")) {
    const Json& p = r.json().at("plan");
    Result<Plan> plan = Status(InvalidArgumentError(""));
    if (p.is_string()) {
      std::filesystem::path path(p.get<std::string>());
      if (path.is_relative() && !base_dir.empty()) path = std::filesystem::path(base_dir) / path;
      plan = ReadPlanFile(path.string());
    } else if (p.is_object()) {
      plan = ParsePlanJson(p, r.source() + ": " + r.FieldPath("plan"));
    } else {
      return r.FieldError("plan", "expected a plan file's path or a plan object, got " +
                                      JsonSnippet(p));
    }
    if (!plan.ok()) return r.FieldError("plan", plan.status().message());
    if (plan->global_batch_size != phase.global_batch_size) {
      return r.FieldError("plan", "its global batch " + std::to_string(plan->global_batch_size) +
                                      " is not the phase's global_batch " +
                                      std::to_string(phase.global_batch_size));
    }
    if (plan->sequence_length != phase.sequence_length) {
      return r.FieldError("plan", "its sequence length " + std::to_string(plan->sequence_length) +
                                      " is not the phase's seq_len " +
                                      std::to_string(phase.sequence_length));
    }
    phase.plan = *std::move(plan);
  }
  if (Status s = r.RejectUnknownFields(); !s.ok()) return in_phase(s);
  return phase;
}

}  // namespace

Result<PhaseSchedule> ParsePhases(const Json& json, const std::string& source,
                                  const std::string& base_dir) {
  JsonReader root(json, source);
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  PhaseSchedule schedule;
  schedule.source = source;
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> entries, root.ObjectArray("phases"));
  if (entries.empty()) return root.FieldError("phases", "must list at least one phase");
  std::set<std::string> names;
  for (size_t i = 0; i < entries.size(); ++i) {
    ORRERY_ASSIGN_OR_RETURN(TrainingPhase phase,
                            ParsePhase(entries[i], static_cast<int>(i), base_dir));
    if (!names.insert(phase.name).second) {
      return entries[i].FieldError("name", "'" + phase.name + "' names an earlier phase too");
    }
    schedule.phases.push_back(std::move(phase));
  }
  if (root.Has("checkpoint")) {
    ORRERY_ASSIGN_OR_RETURN(const JsonReader c, root.Object("checkpoint"));
    CheckpointBandwidth bw;
    ORRERY_ASSIGN_OR_RETURN(bw.write_gb_per_s, c.PositiveNumber("write_gb_per_s"));
    ORRERY_ASSIGN_OR_RETURN(bw.read_gb_per_s, c.PositiveNumber("read_gb_per_s", bw.write_gb_per_s));
    ORRERY_RETURN_IF_ERROR(c.RejectUnknownFields());
    schedule.checkpoint = bw;
  }
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  return schedule;
}

Result<PhaseSchedule> LoadPhasesFile(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(const Json json, ReadJsonFile(path));
  return ParsePhases(json, path, std::filesystem::path(path).parent_path().string());
}

Json PhasesToJson(const PhaseSchedule& schedule) {
  Json phases = Json::array();
  for (const TrainingPhase& p : schedule.phases) {
    Json j = Json::object();
    j["name"] = p.name;
    if (p.tokens) j["tokens"] = IntegralOrDouble(*p.tokens);
    if (p.steps) j["steps"] = *p.steps;
    j["seq_len"] = p.sequence_length;
    j["global_batch"] = p.global_batch_size;
    if (!p.cluster.empty()) j["cluster"] = p.cluster;
    if (p.nodes) j["nodes"] = *p.nodes;
    if (p.plan) j["plan"] = PlanToJson(*p.plan);
    phases.push_back(std::move(j));
  }
  Json root = Json::object();
  root["phases"] = std::move(phases);
  if (schedule.checkpoint) {
    root["checkpoint"] = {{"write_gb_per_s", schedule.checkpoint->write_gb_per_s},
                          {"read_gb_per_s", schedule.checkpoint->read_gb_per_s}};
  }
  return root;
}

Plan RetargetPlan(const Plan& plan, int global_batch_size, int sequence_length) {
  Plan p = plan;
  p.global_batch_size = global_batch_size;
  p.sequence_length = sequence_length;
  const int dp = std::max(1, plan.MaxDataParallel());
  const int per_replica = global_batch_size / dp;
  if (per_replica <= 0) {
    p.micro_batch_size = 1;
    return p;
  }
  int micro = std::max(1, std::min(plan.micro_batch_size, per_replica));
  while (micro > 1 && per_replica % micro != 0) --micro;
  p.micro_batch_size = micro;
  return p;
}

}  // namespace orrery::workload
