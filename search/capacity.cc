// Capacity planning sweeps (search/capacity.h, docs/capacity.md).
#include "search/capacity.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/text.h"
#include "core/units.h"
#include "search/search.h"
#include "search/space.h"
#include "sim/analytical.h"
#include "sim/faults.h"
#include "sim/iteration.h"
#include "topology/cluster_spec.h"
#include "topology/cluster_spec_json.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"
#include "workload/operators.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::search {
namespace {

constexpr double kSecondsPerDay = 86400.0;
constexpr double kSecondsPerHour = 3600.0;


// A figure read from a spec, rounded to 9 significant digits so that
// 400 Gb/s reads as 400 and not 400.00000000000006 (units.h converts
// through binary fractions).
double Tidy(double v) {
  if (v == 0 || !std::isfinite(v)) return v;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return std::strtod(buf, nullptr);
}

// A list of positive numbers at `key` of `entry`; empty when absent.
Result<std::vector<double>> PositiveNumbers(const JsonReader& entry, std::string_view key,
                                            double minimum) {
  std::vector<double> out;
  if (!entry.Has(key)) return out;
  const Json& list = entry.json().at(std::string(key));
  if (!list.is_array() || list.empty()) {
    return entry.FieldError(key, "expected a non-empty list of numbers, got " +
                                     JsonSnippet(list));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& v = list[i];
    const std::string at = std::string(key) + "[" + std::to_string(i) + "]";
    if (!v.is_number()) return entry.FieldError(at, "expected a number, got " + JsonSnippet(v));
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < minimum || (minimum == 0 && x <= 0)) {
      return entry.FieldError(at, (minimum == 0 ? std::string("expected a number > 0")
                                                : "expected a number >= " + ShortNumberText(minimum)) +
                                      ", got " + JsonSnippet(v));
    }
    if (std::find(out.begin(), out.end(), x) != out.end()) {
      return entry.FieldError(at, "repeats the value " + ShortNumberText(x));
    }
    out.push_back(x);
  }
  return out;
}

Result<std::vector<int>> PositiveInts(const JsonReader& entry, std::string_view key) {
  const Json& list = entry.json().at(std::string(key));
  if (!list.is_array() || list.empty()) {
    return entry.FieldError(key, "expected a non-empty list of positive integers, got " +
                                     JsonSnippet(list));
  }
  std::vector<int> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& v = list[i];
    const std::string at = std::string(key) + "[" + std::to_string(i) + "]";
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > (1 << 24)) {
      return entry.FieldError(at, "expected an integer in [1, 16777216], got " +
                                      JsonSnippet(v));
    }
    const int x = static_cast<int>(v.get<int64_t>());
    if (std::find(out.begin(), out.end(), x) != out.end()) {
      return entry.FieldError(at, "repeats the value " + std::to_string(x));
    }
    out.push_back(x);
  }
  return out;
}

// The cluster "cluster" names: a preset, or a file (a path relative to the
// sweep file's directory when it exists there, else as given).
Result<topology::ClusterSpec> ResolveEntryCluster(const std::string& name,
                                                  const std::string& sweep_source) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path given(name);
  if (given.is_relative() && !sweep_source.empty()) {
    const fs::path beside = fs::path(sweep_source).parent_path() / given;
    if (!fs::path(sweep_source).parent_path().empty() && fs::is_regular_file(beside, ec)) {
      return topology::ResolveCluster(beside.string());
    }
  }
  return topology::ResolveCluster(name);
}

std::string DevicesWord(int devices) {
  return std::to_string(devices) + (devices == 1 ? " device" : " devices");
}

// The level of the slowest link a group of ranks crosses: -1 inside one
// node, else the index of the lowest tier whose switch holds every node of
// the group (the top tier when none below does). Rank r is device r, on
// node r / devices_per_node.
int TierLevel(const topology::ClusterSpec& cluster, const std::vector<int>& ranks) {
  if (ranks.size() < 2) return -1;
  const int per_node = cluster.PrimaryNodeType().devices_per_node;
  const int first = ranks.front() / per_node;
  bool one_node = true;
  for (int r : ranks) one_node = one_node && r / per_node == first;
  if (one_node) return -1;
  const std::vector<topology::NetworkTier>& tiers = cluster.network.tiers;
  for (size_t i = 0; i < tiers.size(); ++i) {
    if (!tiers[i].nodes_per_switch.has_value()) return static_cast<int>(i);
    const int per_switch = *tiers[i].nodes_per_switch;
    bool same = true;
    for (int r : ranks) same = same && (r / per_node) / per_switch == first / per_switch;
    if (same) return static_cast<int>(i);
  }
  return tiers.empty() ? -1 : static_cast<int>(tiers.size()) - 1;
}

std::string TierName(const topology::ClusterSpec& cluster, int level) {
  if (level < 0) {
    return "intra-node:" +
           std::string(topology::FabricKindName(cluster.PrimaryNodeType().fabric.kind));
  }
  return "network:" + cluster.network.tiers[static_cast<size_t>(level)].name;
}

// The group of `dim` at `layer` holding `rank`.
std::vector<int> GroupOf(const workload::Plan& plan, int layer, workload::ParallelDim dim,
                         int rank) {
  for (std::vector<int>& group : workload::RankGroups(plan, layer, dim)) {
    if (std::find(group.begin(), group.end(), rank) != group.end()) return group;
  }
  return {rank};
}

// The breakdown of the header from the estimate's bottleneck stage.
BoundBreakdown BreakdownOf(const sim::AnalyticalEstimate& e, const workload::Plan& plan,
                           const workload::ModelSpec& model,
                           const topology::ClusterSpec& cluster) {
  BoundBreakdown b;
  const sim::AnalyticalStage* stage = nullptr;
  for (const sim::AnalyticalStage& s : e.stages) {
    if (s.stage == e.bottleneck_stage) stage = &s;
  }
  if (stage == nullptr) {
    b.compute = e.iteration_time.ToSeconds();
    return b;
  }
  b.compute = stage->compute.ToSeconds();
  b.memory = stage->recompute.ToSeconds();
  b.bubble = stage->bubble.ToSeconds();
  b.path_comm = stage->comm_in_path.ToSeconds();
  b.p2p = stage->p2p_exposed.ToSeconds();
  b.dp = std::max(0.0, (stage->exposed_comm - stage->comm_in_path - stage->p2p_exposed)
                           .ToSeconds());

  // A layer of the stage, for its groups.
  const std::vector<int> bounds = plan.StageBoundaries();
  const int layer = std::clamp(bounds[static_cast<size_t>(std::clamp(
                                   e.bottleneck_stage, 0, static_cast<int>(bounds.size()) - 1))],
                               0, plan.num_layers() - 1);
  const workload::LayerStrategy& strategy = plan.layers[static_cast<size_t>(layer)];
  const int rank = stage->first_rank;
  auto level_of = [&](workload::ParallelDim dim) {
    return TierLevel(cluster, GroupOf(plan, layer, dim, rank));
  };
  using workload::ParallelDim;
  std::optional<int> path;
  if (strategy.tp > 1) path = std::max(path.value_or(-1), level_of(ParallelDim::kTp));
  if (strategy.cp > 1) path = std::max(path.value_or(-1), level_of(ParallelDim::kCp));
  if (strategy.ep > 1 && model.is_moe()) {
    path = std::max(path.value_or(-1), level_of(ParallelDim::kEp));
  }
  if (path.has_value()) b.path_tier = TierName(cluster, *path);
  std::optional<int> dp;
  if (strategy.dp > 1) dp = level_of(ParallelDim::kDp);
  if (strategy.cp > 1) dp = std::max(dp.value_or(-1), level_of(ParallelDim::kCp));
  if (dp.has_value()) b.dp_tier = TierName(cluster, *dp);
  if (plan.pp > 1) {
    const std::vector<int> pipe = GroupOf(plan, layer, ParallelDim::kPp, rank);
    const size_t s = static_cast<size_t>(std::clamp(e.bottleneck_stage, 0, plan.pp - 1));
    if (pipe.size() == static_cast<size_t>(plan.pp)) {
      const size_t other = s + 1 < pipe.size() ? s + 1 : s - 1;
      b.p2p_tier = TierName(cluster, TierLevel(cluster, {pipe[s], pipe[other]}));
    }
  }
  return b;
}

int DevicesOfPlan(const workload::Plan& plan) {
  if (plan.layers.empty()) return 0;
  const workload::LayerStrategy& l = plan.layers.front();
  return plan.pp * l.tp * l.cp * l.dp;
}

std::string CsvOptional(const std::optional<double>& v) {
  return v.has_value() ? ShortNumberText(*v) : "";
}

double GibOf(Bytes b) { return b.ToGiB(); }

// The breakdown as the outcome and the report write it (seconds; tiers).
Json BreakdownToJson(const BoundBreakdown& b) {
  Json j = Json::object();
  j["compute_s"] = b.compute;
  j["memory_s"] = b.memory;
  j["bubble_s"] = b.bubble;
  j["path_comm_s"] = b.path_comm;
  j["path_tier"] = b.path_tier;
  j["p2p_s"] = b.p2p;
  j["p2p_tier"] = b.p2p_tier;
  j["dp_s"] = b.dp;
  j["dp_tier"] = b.dp_tier;
  return j;
}

// A list of strings (possibly empty) at `key` of `r`, each parsed by
// `parse`; errors name the element.
template <typename T, typename Parse>
Result<std::vector<T>> ParseFaultList(const JsonReader& r, std::string_view key, Parse parse) {
  std::vector<T> out;
  if (!r.Has(key)) return out;
  const Json& list = r.json().at(std::string(key));
  if (!list.is_array()) return r.FieldError(key, "expected a list of strings, got " + JsonSnippet(list));
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string element = std::string(key) + "[" + std::to_string(i) + "]";
    if (!list[i].is_string()) {
      return r.FieldError(element, "expected a string, got " + JsonSnippet(list[i]));
    }
    Result<T> parsed = parse(list[i].get<std::string>());
    if (!parsed.ok()) return r.FieldError(element, parsed.status().message());
    out.push_back(*std::move(parsed));
  }
  return out;
}

Result<std::vector<FaultScenario>> ParseFaultScenarios(const JsonReader& root) {
  ORRERY_ASSIGN_OR_RETURN(const std::vector<JsonReader> entries, root.ObjectArray("faults"));
  std::vector<FaultScenario> scenarios;
  std::set<std::string> names;
  for (const JsonReader& f : entries) {
    FaultScenario scenario;
    ORRERY_ASSIGN_OR_RETURN(scenario.name, f.String("name"));
    if (scenario.name.empty()) return f.FieldError("name", "expected a non-empty name");
    for (const char c : scenario.name) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
        return f.FieldError("name", "'" + scenario.name +
                                        "': use letters, digits, '-', '_' and '.' (it names "
                                        "CSV columns)");
      }
    }
    if (!names.insert(scenario.name).second) {
      return f.FieldError("name", "repeats the name '" + scenario.name + "' of another scenario");
    }
    ORRERY_ASSIGN_OR_RETURN(scenario.faults.slow_devices,
                            ParseFaultList<sim::SlowDevice>(f, "slow_device", sim::ParseSlowDevice));
    ORRERY_ASSIGN_OR_RETURN(
        scenario.faults.degraded_links,
        ParseFaultList<sim::DegradedLink>(f, "degrade_link", sim::ParseDegradedLink));
    if (scenario.faults.empty()) {
      return f.Error("expected at least one fault: 'slow_device' (\"RANK:FACTOR\") or "
                     "'degrade_link' (\"LINK:FACTOR\")");
    }
    ORRERY_RETURN_IF_ERROR(f.RejectUnknownFields());
    scenarios.push_back(std::move(scenario));
  }
  return scenarios;
}

}  // namespace

Result<Sweep> ParseSweep(const Json& json, const std::string& source) {
  JsonReader root(json, source);
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  Sweep sweep;
  sweep.source = source;
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> entries, root.ObjectArray("clusters"));
  if (entries.empty()) return root.FieldError("clusters", "expected at least one cluster");
  std::set<std::string> names;
  for (const JsonReader& e : entries) {
    SweepEntry entry;
    ORRERY_ASSIGN_OR_RETURN(entry.name, e.String("name"));
    if (entry.name.empty()) return e.FieldError("name", "expected a non-empty name");
    if (!names.insert(entry.name).second) {
      return e.FieldError("name", "repeats the name '" + entry.name + "' of another cluster");
    }
    ORRERY_ASSIGN_OR_RETURN(entry.cluster_source, e.String("cluster"));
    Result<topology::ClusterSpec> base = ResolveEntryCluster(entry.cluster_source, source);
    if (!base.ok()) return e.FieldError("cluster", base.status().message());
    entry.base = std::move(*base);
    if (entry.base.node_types.size() != 1) {
      return e.FieldError("cluster", "expected a cluster of one node type, got " +
                                         std::to_string(entry.base.node_types.size()));
    }
    const int per_node = entry.base.PrimaryNodeType().devices_per_node;
    if (e.Has("nodes") == e.Has("devices")) {
      return e.Error("expected exactly one of 'nodes' and 'devices'");
    }
    if (e.Has("nodes")) {
      ORRERY_ASSIGN_OR_RETURN(entry.nodes, PositiveInts(e, "nodes"));
    } else {
      ORRERY_ASSIGN_OR_RETURN(const std::vector<int> devices, PositiveInts(e, "devices"));
      for (size_t i = 0; i < devices.size(); ++i) {
        if (devices[i] % per_node != 0) {
          return e.FieldError("devices[" + std::to_string(i) + "]",
                              "expected a multiple of the cluster's " +
                                  std::to_string(per_node) + " devices per node, got " +
                                  std::to_string(devices[i]));
        }
        entry.nodes.push_back(devices[i] / per_node);
      }
    }
    for (int n : entry.nodes) {
      if (static_cast<int64_t>(n) * per_node > (1 << 24)) {
        return e.FieldError(e.Has("nodes") ? "nodes" : "devices",
                            "more than 16777216 devices");
      }
    }
    ORRERY_ASSIGN_OR_RETURN(entry.nic_gbps, PositiveNumbers(e, "nic_gbps", 0));
    ORRERY_ASSIGN_OR_RETURN(entry.oversubscription, PositiveNumbers(e, "oversubscription", 1));
    ORRERY_ASSIGN_OR_RETURN(entry.memory_gib, PositiveNumbers(e, "memory_gib", 0));
    ORRERY_ASSIGN_OR_RETURN(entry.price_per_device_hour, e.Number("price_per_device_hour"));
    if (!(entry.price_per_device_hour >= 0) || !std::isfinite(entry.price_per_device_hour)) {
      return e.FieldError("price_per_device_hour", "expected a number >= 0 (USD), got " +
                                                       ShortNumberText(entry.price_per_device_hour));
    }
    ORRERY_RETURN_IF_ERROR(e.RejectUnknownFields());
    sweep.entries.push_back(std::move(entry));
  }
  if (root.Has("faults")) {
    ORRERY_ASSIGN_OR_RETURN(sweep.faults, ParseFaultScenarios(root));
  }
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  return sweep;
}

Result<Sweep> LoadSweepFile(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(const Json json, ReadJsonFile(path));
  return ParseSweep(json, path);
}

ClusterKnobs KnobsOf(const topology::ClusterSpec& base) {
  ClusterKnobs k;
  k.nodes = base.TotalNodes();
  const topology::NodeType& node = base.PrimaryNodeType();
  k.nic_gbps = node.nics.empty() ? 0 : Tidy(node.NicBandwidthPerDevice(0).ToGbps());
  k.oversubscription =
      base.network.tiers.empty() ? 1.0 : base.network.tiers.back().oversubscription;
  k.memory_gib = Tidy(GibOf(node.device.memory));
  return k;
}

Result<topology::ClusterSpec> MaterializeCluster(const topology::ClusterSpec& base,
                                                 const ClusterKnobs& knobs) {
  ORRERY_ASSIGN_OR_RETURN(topology::ClusterSpec spec, base.WithNodes(knobs.nodes));
  topology::NodeType& node = spec.node_types.front();
  if (!node.nics.empty()) {
    if (!(knobs.nic_gbps > 0) || !std::isfinite(knobs.nic_gbps)) {
      return InvalidArgumentError("NIC bandwidth: expected a number > 0 Gb/s, got " +
                                  ShortNumberText(knobs.nic_gbps));
    }
    // NICs serving each device: the same count for every device.
    std::vector<int> serving(static_cast<size_t>(node.devices_per_node), 0);
    for (const topology::Nic& nic : node.nics) {
      for (int d : nic.devices) {
        if (d >= 0 && d < node.devices_per_node) ++serving[static_cast<size_t>(d)];
      }
    }
    const int c = serving.front();
    for (int s : serving) {
      if (s != c || s == 0) {
        return InvalidArgumentError("cluster '" + base.name +
                                    "': its devices are served by different numbers of NICs; "
                                    "a NIC bandwidth per device cannot be set evenly");
      }
    }
    for (topology::Nic& nic : node.nics) {
      nic.bandwidth =
          Gbps(knobs.nic_gbps * static_cast<double>(nic.devices.size()) / static_cast<double>(c));
    }
  } else if (knobs.nic_gbps != 0) {
    return InvalidArgumentError("cluster '" + base.name + "' has no NICs to set to " +
                                ShortNumberText(knobs.nic_gbps) + " Gb/s");
  }
  if (!spec.network.tiers.empty()) {
    if (!(knobs.oversubscription >= 1) || !std::isfinite(knobs.oversubscription)) {
      return InvalidArgumentError("oversubscription: expected a number >= 1, got " +
                                  ShortNumberText(knobs.oversubscription));
    }
    spec.network.tiers.back().oversubscription = knobs.oversubscription;
  } else if (knobs.oversubscription != 1) {
    return InvalidArgumentError("cluster '" + base.name +
                                "' has no network tier to oversubscribe");
  }
  if (!(knobs.memory_gib > 0) || !std::isfinite(knobs.memory_gib)) {
    return InvalidArgumentError("memory: expected a number > 0 GiB, got " +
                                ShortNumberText(knobs.memory_gib));
  }
  node.device.memory = GiBf(knobs.memory_gib);
  ORRERY_RETURN_IF_ERROR(topology::ValidateClusterSpec(spec));
  return spec;
}

Result<Sensitivities> ParseSensitivities(std::string_view text) {
  Sensitivities which{false, false, false};
  if (text == "none") return which;
  std::string_view rest = text;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    if (item == "nic") {
      which.nic_x2 = true;
    } else if (item == "memory") {
      which.memory_x2 = true;
    } else if (item == "devices") {
      which.devices_x2 = true;
    } else {
      return InvalidArgumentError("sensitivity: expected a list of nic, memory, devices, or "
                                  "none; got '" + std::string(text) + "'");
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return which;
}

Result<CapacityWork> PlanCapacityWork(const Sweep& sweep, const Sensitivities& which) {
  CapacityWork work;
  std::map<std::string, int> job_of_key;
  auto label_of = [&](const SweepEntry& entry, const ClusterKnobs& k) {
    const int devices = k.nodes * entry.base.PrimaryNodeType().devices_per_node;
    std::string label = entry.name + " " + DevicesWord(devices) + " " + ShortNumberText(k.nic_gbps) + " Gb/s";
    if (!entry.oversubscription.empty()) label += " oversubscription " + ShortNumberText(k.oversubscription);
    if (!entry.memory_gib.empty()) label += " " + ShortNumberText(k.memory_gib) + " GiB";
    return label;
  };
  auto job_for = [&](int e, const ClusterKnobs& k, const std::string& variant,
                     bool is_point) -> Result<int> {
    const SweepEntry& entry = sweep.entries[static_cast<size_t>(e)];
    Result<topology::ClusterSpec> spec = MaterializeCluster(entry.base, k);
    if (!spec.ok()) {
      return InvalidArgumentError(sweep.source + ": cluster '" + entry.name + "' (" +
                                  label_of(entry, k) + variant + "): " + spec.status().message());
    }
    std::string key = DumpJson(topology::ClusterSpecToJson(*spec));
    const auto it = job_of_key.find(key);
    if (it != job_of_key.end()) {
      work.jobs[static_cast<size_t>(it->second)].is_point |= is_point;
      return it->second;
    }
    CapacityJob job;
    job.key = key;
    job.cluster = std::move(*spec);
    job.entry = e;
    job.knobs = k;
    job.label = label_of(entry, k) + variant;
    job.is_point = is_point;
    const int index = static_cast<int>(work.jobs.size());
    work.jobs.push_back(std::move(job));
    job_of_key.emplace(std::move(key), index);
    return index;
  };
  for (size_t e = 0; e < sweep.entries.size(); ++e) {
    const SweepEntry& entry = sweep.entries[e];
    const ClusterKnobs own = KnobsOf(entry.base);
    const std::vector<double> nics =
        entry.nic_gbps.empty() ? std::vector<double>{own.nic_gbps} : entry.nic_gbps;
    const std::vector<double> overs = entry.oversubscription.empty()
                                          ? std::vector<double>{own.oversubscription}
                                          : entry.oversubscription;
    const std::vector<double> memories =
        entry.memory_gib.empty() ? std::vector<double>{own.memory_gib} : entry.memory_gib;
    for (int nodes : entry.nodes) {
      for (double nic : nics) {
        for (double over : overs) {
          for (double memory : memories) {
            CapacityPoint p;
            p.entry = static_cast<int>(e);
            p.knobs = ClusterKnobs{nodes, nic, over, memory};
            work.points.push_back(p);
          }
        }
      }
    }
  }
  // The points' own searches first, then the variants, so a variant equal
  // to a point is that point's job.
  work.uses.resize(work.points.size());
  for (size_t i = 0; i < work.points.size(); ++i) {
    ORRERY_ASSIGN_OR_RETURN(work.uses[i].point,
                            job_for(work.points[i].entry, work.points[i].knobs, "", true));
  }
  for (size_t i = 0; i < work.points.size(); ++i) {
    const CapacityPoint& p = work.points[i];
    ClusterKnobs nic = p.knobs;
    nic.nic_gbps *= 2;
    ClusterKnobs memory = p.knobs;
    memory.memory_gib *= 2;
    ClusterKnobs devices = p.knobs;
    devices.nodes *= 2;
    if (which.nic_x2) {
      ORRERY_ASSIGN_OR_RETURN(work.uses[i].nic_x2, job_for(p.entry, nic, " [nic x2]", false));
    }
    if (which.memory_x2) {
      ORRERY_ASSIGN_OR_RETURN(work.uses[i].memory_x2,
                              job_for(p.entry, memory, " [memory x2]", false));
    }
    if (which.devices_x2) {
      ORRERY_ASSIGN_OR_RETURN(work.uses[i].devices_x2,
                              job_for(p.entry, devices, " [devices x2]", false));
    }
  }
  return work;
}

Status CheckSweepFaults(const Sweep& sweep, const CapacityWork& work) {
  if (sweep.faults.empty()) return Status::Ok();
  for (const CapacityJob& job : work.jobs) {
    if (!job.is_point) continue;
    ORRERY_ASSIGN_OR_RETURN(const topology::Topology topo, topology::Topology::Build(job.cluster));
    for (size_t i = 0; i < sweep.faults.size(); ++i) {
      const Status s = sim::CheckFaults(sweep.faults[i].faults, topo);
      if (!s.ok()) {
        return InvalidArgumentError(sweep.source + ": field 'faults[" + std::to_string(i) +
                                    "]' (" + sweep.faults[i].name + ") on " + job.label + ": " +
                                    std::string(s.message()));
      }
    }
  }
  return Status::Ok();
}

std::vector<int> JobsOfRank(const CapacityWork& work, int rank, int ranks) {
  std::vector<int> order(work.jobs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return work.jobs[static_cast<size_t>(a)].cluster.TotalDevices() >
           work.jobs[static_cast<size_t>(b)].cluster.TotalDevices();
  });
  std::vector<int> mine;
  for (size_t k = 0; k < order.size(); ++k) {
    if (static_cast<int>(k % static_cast<size_t>(std::max(1, ranks))) == rank) {
      mine.push_back(order[k]);
    }
  }
  return mine;
}

std::string ClassifyBound(const BoundBreakdown& b, double iteration_s, double share) {
  std::map<std::string, double> by_label;
  auto add = [&](const std::string& label, double seconds) {
    if (seconds > 0) by_label[label.empty() ? "communication" : label] += seconds;
  };
  add("memory capacity", b.memory);
  add("pipeline bubble", b.bubble);
  add(b.path_tier, b.path_comm);
  add(b.p2p_tier, b.p2p);
  add(b.dp_tier, b.dp);
  std::string best;
  double most = 0;
  for (const auto& [label, seconds] : by_label) {
    if (seconds > most) {
      most = seconds;
      best = label;
    }
  }
  if (best.empty() || most < share * iteration_s) return "compute";
  return best;
}

Result<CapacityOutcome> RunCapacityJob(const CapacitySettings& settings,
                                       const topology::ClusterSpec& cluster,
                                       const ProgressFn& progress, bool with_faults) {
  const auto start = std::chrono::steady_clock::now();
  SearchRequest request;
  request.model = settings.model;
  request.cluster = cluster;
  request.global_batch_size = settings.global_batch_size;
  request.sequence_length = settings.sequence_length > 0 ? settings.sequence_length
                                                         : settings.model.default_sequence_length;
  request.precision = topology::Precision::kBf16;
  request.top_k = 1;
  request.time_limit_s = settings.time_limit_s;
  request.rescore_with_simulator = settings.simulate_best;
  ORRERY_ASSIGN_OR_RETURN(const SearchResult result,
                          RunSearch(request, settings.algorithm, progress));
  CapacityOutcome out;
  out.evaluated = result.evaluated;
  if (result.plans.empty()) {
    out.bound = "memory capacity";
    out.search_time_s = SecondsSince(start);
    return out;
  }
  const Candidate& best = result.plans.front();
  const Evaluation& e = best.simulated.has_value() ? *best.simulated : best.analytical;
  out.found = true;
  out.plan = workload::PlanToJson(best.plan);
  out.summary = PlanSummary(best.plan);
  out.devices_used = DevicesOfPlan(best.plan);
  out.iteration_time = e.iteration_time;
  out.peak_memory = e.peak_memory;
  out.simulated = best.simulated.has_value();

  // The breakdown of the analytical estimate, whichever scored the plan.
  ORRERY_ASSIGN_OR_RETURN(const sim::AnalyticalModel model, sim::AnalyticalModel::Create(cluster));
  sim::AnalyticalOptions options;
  options.graph = request.graph;
  options.overlap_slowdown = request.overlap_slowdown;
  ORRERY_ASSIGN_OR_RETURN(const sim::AnalyticalEstimate estimate,
                          model.EstimateValidated(settings.model, best.plan, options));
  out.breakdown = BreakdownOf(estimate, best.plan, settings.model, cluster);
  out.bound = ClassifyBound(out.breakdown, estimate.iteration_time.ToSeconds(),
                            settings.bound_share);

  // Fault scenarios: the plan event-simulated healthy (unless the search
  // already did) and under each, so that the slowdown compares like with
  // like.
  if (with_faults && !settings.faults.empty()) {
    sim::IterationOptions sim_options;
    sim_options.graph = request.graph;
    sim_options.overlap_slowdown = request.overlap_slowdown;
    Duration healthy = best.simulated.has_value() ? best.simulated->iteration_time : Duration();
    if (!best.simulated.has_value()) {
      if (progress) progress(-1, "simulating the best plan, healthy");
      ORRERY_ASSIGN_OR_RETURN(
          const sim::IterationReport report,
          sim::SimulateIteration(settings.model, best.plan, cluster, sim_options));
      healthy = report.iteration_time;
    }
    for (const FaultScenario& scenario : settings.faults) {
      if (progress) progress(-1, "simulating the best plan under fault '" + scenario.name + "'");
      sim_options.faults = scenario.faults;
      Result<sim::IterationReport> report =
          sim::SimulateIteration(settings.model, best.plan, cluster, sim_options);
      if (!report.ok()) return report.status().WithContext("fault '" + scenario.name + "'");
      out.faults.push_back({scenario.name, healthy, report->iteration_time});
    }
  }
  out.search_time_s = SecondsSince(start);
  return out;
}

Json CapacityOutcomeToJson(const CapacityOutcome& o) {
  Json j = Json::object();
  j["found"] = o.found;
  j["plan"] = o.plan;
  j["summary"] = o.summary;
  j["devices_used"] = o.devices_used;
  j["iteration_ps"] = o.iteration_time.picos();
  j["peak_memory_bytes"] = o.peak_memory.count();
  j["simulated"] = o.simulated;
  j["breakdown"] = BreakdownToJson(o.breakdown);
  j["bound"] = o.bound;
  j["search_time_s"] = o.search_time_s;
  j["evaluated"] = o.evaluated;
  Json faults = Json::array();
  for (const FaultOutcome& f : o.faults) {
    faults.push_back({{"name", f.name},
                      {"healthy_ps", f.healthy.picos()},
                      {"faulted_ps", f.faulted.picos()}});
  }
  j["faults"] = std::move(faults);
  return j;
}

Result<CapacityOutcome> CapacityOutcomeFromJson(const Json& json, std::string_view source) {
  JsonReader r(json, std::string(source));
  ORRERY_RETURN_IF_ERROR(r.ExpectObject());
  CapacityOutcome o;
  ORRERY_ASSIGN_OR_RETURN(o.found, r.Bool("found"));
  if (!r.Has("plan")) return r.FieldError("plan", "missing");
  o.plan = json.at("plan");
  ORRERY_ASSIGN_OR_RETURN(o.summary, r.String("summary"));
  ORRERY_ASSIGN_OR_RETURN(const int64_t used, r.Int("devices_used"));
  o.devices_used = static_cast<int>(used);
  ORRERY_ASSIGN_OR_RETURN(const int64_t ps, r.Int("iteration_ps"));
  o.iteration_time = Picos(ps);
  ORRERY_ASSIGN_OR_RETURN(const int64_t bytes, r.Int("peak_memory_bytes"));
  o.peak_memory = Bytes(bytes);
  ORRERY_ASSIGN_OR_RETURN(o.simulated, r.Bool("simulated"));
  ORRERY_ASSIGN_OR_RETURN(const JsonReader b, r.Object("breakdown"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.compute, b.Number("compute_s"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.memory, b.Number("memory_s"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.bubble, b.Number("bubble_s"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.path_comm, b.Number("path_comm_s"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.p2p, b.Number("p2p_s"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.dp, b.Number("dp_s"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.path_tier, b.String("path_tier"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.p2p_tier, b.String("p2p_tier"));
  ORRERY_ASSIGN_OR_RETURN(o.breakdown.dp_tier, b.String("dp_tier"));
  ORRERY_ASSIGN_OR_RETURN(o.bound, r.String("bound"));
  ORRERY_ASSIGN_OR_RETURN(o.search_time_s, r.Number("search_time_s"));
  ORRERY_ASSIGN_OR_RETURN(o.evaluated, r.Int("evaluated"));
  if (r.Has("faults")) {
    ORRERY_ASSIGN_OR_RETURN(const std::vector<JsonReader> faults, r.ObjectArray("faults"));
    for (const JsonReader& f : faults) {
      FaultOutcome fo;
      ORRERY_ASSIGN_OR_RETURN(fo.name, f.String("name"));
      ORRERY_ASSIGN_OR_RETURN(const int64_t healthy, f.Int("healthy_ps"));
      ORRERY_ASSIGN_OR_RETURN(const int64_t faulted, f.Int("faulted_ps"));
      fo.healthy = Picos(healthy);
      fo.faulted = Picos(faulted);
      o.faults.push_back(std::move(fo));
    }
  }
  return o;
}

CapacityFigures ComputeFigures(double tokens, int global_batch_size, int sequence_length,
                               Duration iteration_time, int devices,
                               double price_per_device_hour, Flops model_flops_per_token,
                               FlopRate peak_per_device) {
  CapacityFigures f;
  f.iteration_s = iteration_time.ToSeconds();
  f.tokens_per_s = static_cast<double>(global_batch_size) *
                   static_cast<double>(sequence_length) / f.iteration_s;
  f.seconds = tokens / f.tokens_per_s;
  f.days = f.seconds / kSecondsPerDay;
  f.device_hours = static_cast<double>(devices) * f.seconds / kSecondsPerHour;
  f.cost = f.device_hours * price_per_device_hour;
  f.mfu = model_flops_per_token.count() * f.tokens_per_s /
          (static_cast<double>(devices) * peak_per_device.FlopsPerSecond());
  return f;
}

Result<std::vector<CapacityRow>> AssembleRows(const CapacitySettings& settings,
                                              const Sweep& sweep, const CapacityWork& work,
                                              const std::vector<CapacityOutcome>& outcomes) {
  if (outcomes.size() != work.jobs.size()) {
    return InternalError("capacity: " + std::to_string(outcomes.size()) + " outcomes for " +
                         std::to_string(work.jobs.size()) + " searches");
  }
  const int seq = settings.sequence_length > 0 ? settings.sequence_length
                                               : settings.model.default_sequence_length;
  const Flops per_token =
      workload::TrainingFlopsPerToken(settings.model, seq, workload::RecomputeAccounting::kNone)
          .model;
  auto peak_of = [](const topology::ClusterSpec& c) {
    return c.PrimaryNodeType().device.Peak(topology::Precision::kBf16);
  };
  auto figures_of = [&](const CapacityOutcome& o, const topology::ClusterSpec& c,
                        double price) {
    const std::optional<FlopRate> peak = peak_of(c);
    CapacityFigures f = ComputeFigures(settings.tokens, settings.global_batch_size, seq,
                                       o.iteration_time, c.TotalDevices(), price, per_token,
                                       peak.value_or(FlopRate::FromFlopsPerSecond(1)));
    if (!peak.has_value()) f.mfu = 0;
    return f;
  };

  // For each point, the fastest outcome of the points of its entry with the
  // same other knobs and no more nodes (its own when tied).
  std::vector<int> chosen(work.points.size());
  for (size_t i = 0; i < work.points.size(); ++i) {
    const CapacityPoint& p = work.points[i];
    int best = work.uses[i].point;
    for (size_t k = 0; k < work.points.size(); ++k) {
      const CapacityPoint& q = work.points[k];
      if (k == i || q.entry != p.entry || q.knobs.nodes >= p.knobs.nodes ||
          q.knobs.nic_gbps != p.knobs.nic_gbps ||
          q.knobs.oversubscription != p.knobs.oversubscription ||
          q.knobs.memory_gib != p.knobs.memory_gib) {
        continue;
      }
      const CapacityOutcome& candidate = outcomes[static_cast<size_t>(work.uses[k].point)];
      const CapacityOutcome& current = outcomes[static_cast<size_t>(best)];
      if (!candidate.found) continue;
      if (!current.found || candidate.iteration_time < current.iteration_time ||
          (candidate.iteration_time == current.iteration_time &&
           candidate.devices_used < current.devices_used && best != work.uses[i].point)) {
        best = work.uses[k].point;
      }
    }
    chosen[i] = best;
  }

  std::vector<CapacityRow> rows;
  for (size_t i = 0; i < work.points.size(); ++i) {
    const CapacityPoint& p = work.points[i];
    const SweepEntry& entry = sweep.entries[static_cast<size_t>(p.entry)];
    const CapacityJob& own = work.jobs[static_cast<size_t>(work.uses[i].point)];
    const CapacityOutcome& o = outcomes[static_cast<size_t>(chosen[i])];
    CapacityRow row;
    row.name = entry.name;
    row.device = own.cluster.PrimaryNodeType().device.name;
    row.devices = own.cluster.TotalDevices();
    row.nodes = own.cluster.TotalNodes();
    row.knobs = p.knobs;
    row.price_per_device_hour = entry.price_per_device_hour;
    row.global_batch_size = settings.global_batch_size;
    row.sequence_length = seq;
    row.found = o.found;
    row.bound = o.found ? o.bound : "memory capacity";
    if (o.found) {
      row.devices_used = o.devices_used;
      row.plan = o.summary;
      row.plan_json = o.plan;
      row.simulated = o.simulated;
      row.figures = figures_of(o, own.cluster, entry.price_per_device_hour);
      row.peak_memory_gib = GibOf(o.peak_memory);
      row.breakdown = o.breakdown;
    }
    auto variant_days = [&](std::optional<int> job) -> std::optional<double> {
      if (!job.has_value()) return std::nullopt;
      const CapacityOutcome& v = outcomes[static_cast<size_t>(*job)];
      std::optional<double> days;
      if (v.found) {
        days = figures_of(v, work.jobs[static_cast<size_t>(*job)].cluster,
                          entry.price_per_device_hour)
                   .days;
      }
      // The point's plan runs no slower on the improved cluster.
      if (row.found) days = std::min(days.value_or(row.figures.days), row.figures.days);
      return days;
    };
    row.days_nic_x2 = variant_days(work.uses[i].nic_x2);
    row.days_memory_x2 = variant_days(work.uses[i].memory_x2);
    row.days_devices_x2 = variant_days(work.uses[i].devices_x2);
    for (const FaultScenario& scenario : settings.faults) {
      CapacityRow::Fault f;
      f.name = scenario.name;
      if (o.found) {
        for (const FaultOutcome& fo : o.faults) {
          if (fo.name != scenario.name) continue;
          f.slowdown = fo.slowdown();
          f.days = row.figures.days * fo.slowdown();
        }
        if (!f.slowdown.has_value()) {
          return InternalError("capacity: no result of fault '" + scenario.name + "' for " +
                               own.label);
        }
      }
      row.faults.push_back(std::move(f));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string_view CapacityCsvHeader() {
  return "name,device,devices,devices_used,nodes,nic_gbps,oversubscription,memory_gib,"
         "price_per_device_hour,global_batch,seq_len,plan,iteration_s,tokens_per_s,days,"
         "device_hours,cost,mfu,bound,peak_memory_gib,days_nic_x2,days_memory_x2,"
         "days_devices_x2";
}

std::string RowsToCsv(const std::vector<CapacityRow>& rows) {
  std::ostringstream out;
  out << CapacityCsvHeader();
  if (!rows.empty()) {
    for (const CapacityRow::Fault& f : rows.front().faults) {
      out << ",fault_" << f.name << "_slowdown,fault_" << f.name << "_days";
    }
  }
  out << "\n";
  for (const CapacityRow& r : rows) {
    auto num = [&](double v) { return r.found ? ShortNumberText(v) : std::string(); };
    out << CsvField(r.name, false) << "," << CsvField(r.device, false) << "," << r.devices << ","
        << (r.found ? std::to_string(r.devices_used) : "") << "," << r.nodes << ","
        << ShortNumberText(r.knobs.nic_gbps) << "," << ShortNumberText(r.knobs.oversubscription) << ","
        << ShortNumberText(r.knobs.memory_gib) << "," << ShortNumberText(r.price_per_device_hour) << ","
        << r.global_batch_size << "," << r.sequence_length << "," << CsvField(r.plan, true)
        << "," << num(r.figures.iteration_s) << "," << num(r.figures.tokens_per_s) << ","
        << num(r.figures.days) << "," << num(r.figures.device_hours) << ","
        << num(r.figures.cost) << "," << num(r.figures.mfu) << "," << CsvField(r.bound, false)
        << "," << num(r.peak_memory_gib) << "," << CsvOptional(r.days_nic_x2) << ","
        << CsvOptional(r.days_memory_x2) << "," << CsvOptional(r.days_devices_x2);
    for (const CapacityRow::Fault& f : r.faults) {
      out << "," << CsvOptional(f.slowdown) << "," << CsvOptional(f.days);
    }
    out << "\n";
  }
  return out.str();
}

Json RowsToJson(const CapacitySettings& settings, const std::vector<CapacityRow>& rows) {
  Json j = Json::object();
  j["model"] = settings.model.name;
  j["tokens"] = settings.tokens;
  j["global_batch"] = settings.global_batch_size;
  j["seq_len"] = settings.sequence_length > 0 ? settings.sequence_length
                                              : settings.model.default_sequence_length;
  j["algorithm"] = settings.algorithm;
  j["simulate_best"] = settings.simulate_best;
  j["bound_share"] = settings.bound_share;
  Json points = Json::array();
  auto opt = [](const std::optional<double>& v) { return v.has_value() ? Json(*v) : Json(nullptr); };
  for (const CapacityRow& r : rows) {
    Json p = Json::object();
    p["name"] = r.name;
    p["device"] = r.device;
    p["devices"] = r.devices;
    p["devices_used"] = r.found ? Json(r.devices_used) : Json(nullptr);
    p["nodes"] = r.nodes;
    p["nic_gbps"] = r.knobs.nic_gbps;
    p["oversubscription"] = r.knobs.oversubscription;
    p["memory_gib"] = r.knobs.memory_gib;
    p["price_per_device_hour"] = r.price_per_device_hour;
    p["global_batch"] = r.global_batch_size;
    p["seq_len"] = r.sequence_length;
    p["found"] = r.found;
    p["plan"] = r.found ? Json(r.plan) : Json(nullptr);
    p["simulated"] = r.simulated;
    auto num = [&](double v) { return r.found ? Json(v) : Json(nullptr); };
    p["iteration_s"] = num(r.figures.iteration_s);
    p["tokens_per_s"] = num(r.figures.tokens_per_s);
    p["days"] = num(r.figures.days);
    p["device_hours"] = num(r.figures.device_hours);
    p["cost"] = num(r.figures.cost);
    p["mfu"] = num(r.figures.mfu);
    p["bound"] = r.bound;
    p["peak_memory_gib"] = num(r.peak_memory_gib);
    p["days_nic_x2"] = opt(r.days_nic_x2);
    p["days_memory_x2"] = opt(r.days_memory_x2);
    p["days_devices_x2"] = opt(r.days_devices_x2);
    if (!r.faults.empty()) {
      Json faults = Json::array();
      for (const CapacityRow::Fault& f : r.faults) {
        faults.push_back({{"name", f.name}, {"slowdown", opt(f.slowdown)}, {"days", opt(f.days)}});
      }
      p["faults"] = std::move(faults);
    }
    if (r.found) {
      p["breakdown"] = BreakdownToJson(r.breakdown);
      p["plan_json"] = r.plan_json;
    }
    points.push_back(p);
  }
  j["points"] = points;
  return j;
}

std::string RowsToText(const CapacitySettings& settings, const std::vector<CapacityRow>& rows) {
  const int seq = settings.sequence_length > 0 ? settings.sequence_length
                                               : settings.model.default_sequence_length;
  std::ostringstream out;
  out << "Capacity of " << settings.model.name << " for " << ShortNumberText(settings.tokens)
      << " tokens: global batch " << settings.global_batch_size << " × " << seq
      << " tokens, bf16, " << settings.algorithm << " search, "
      << (settings.simulate_best ? "best plans event-simulated" : "analytical model") << "\n\n";
  std::vector<std::string> head = {"name",  "devices", "used",   "NIC Gb/s", "days",
                                   "cost $", "MFU",    "bound",  "NICx2 d",  "memx2 d",
                                   "devx2 d"};
  for (const FaultScenario& f : settings.faults) head.push_back(f.name);
  head.push_back("plan");
  std::vector<std::vector<std::string>> cells = {head};
  auto opt = [](const std::optional<double>& v) { return v.has_value() ? FixedText(*v, 1) : "-"; };
  for (const CapacityRow& r : rows) {
    std::vector<std::string> row = {
        r.name, std::to_string(r.devices), r.found ? std::to_string(r.devices_used) : "-",
        ShortNumberText(r.knobs.nic_gbps), r.found ? FixedText(r.figures.days, 1) : "-",
        r.found ? MoneyText(r.figures.cost) : "-", r.found ? FixedText(100 * r.figures.mfu, 1) + "%" : "-", r.bound,
        opt(r.days_nic_x2), opt(r.days_memory_x2), opt(r.days_devices_x2)};
    for (const CapacityRow::Fault& f : r.faults) {
      row.push_back(f.slowdown.has_value() ? "+" + FixedText(100 * (*f.slowdown - 1), 1) + "%" : "-");
    }
    row.push_back(r.found ? r.plan : "no plan fits");
    cells.push_back(std::move(row));
  }
  out << FormatColumns(cells, 2);
  out << "\n  days: to train the tokens; NICx2 / memx2 / devx2: the days with twice the NIC\n"
         "  bandwidth, memory per device or devices; used: the devices the plan runs on\n"
         "  (fewer when a smaller cluster's plan is faster; the rest idle, still paid)\n";
  for (const FaultScenario& f : settings.faults) {
    std::string what;
    for (const sim::SlowDevice& d : f.faults.slow_devices) {
      what += (what.empty() ? "" : ", ") + std::string("device ") + std::to_string(d.rank) +
              " at 1/" + sim::FaultFactorText(d.factor) + " speed";
    }
    for (const sim::DegradedLink& l : f.faults.degraded_links) {
      what += (what.empty() ? "" : ", ") + l.link + " at 1/" + sim::FaultFactorText(l.factor) +
              " bandwidth";
    }
    out << "  " << f.name << ": the iteration's slowdown with " << what
        << " (event simulator)\n";
  }
  return out.str();
}

}  // namespace orrery::search
