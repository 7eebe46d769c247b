// `orrery clusters`: the cluster presets, or one cluster (a preset or a
// cluster JSON file) described in full, or (--links) every directed link of
// its topology by name: the names `orrery simulate --degrade-link` takes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/subcommands.h"
#include "core/json.h"
#include "core/text.h"
#include "topology/cluster_spec.h"
#include "topology/cluster_spec_json.h"
#include "topology/presets.h"
#include "topology/topology_graph.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;
using topology::ClusterSpec;
using topology::FabricKind;
using topology::NodeType;
using topology::Precision;

constexpr std::string_view kUsage =
    "orrery clusters [--cluster NAME|FILE] [--nodes N] [--links] [--format text|json]";

constexpr std::string_view kDescription =
    "Without --cluster, lists the built-in cluster presets: one node each, with\n"
    "datasheet figures (dense peak TFLOP/s, memory, NVLink/PCIe bandwidth per\n"
    "direction, NICs). With --cluster, describes one cluster: a preset name or the\n"
    "path of a cluster JSON file (docs/cluster-spec.md), scaled to --nodes nodes\n"
    "when given. --format json prints the cluster spec JSON (which `--cluster FILE`\n"
    "reads back) plus a \"summary\" object: total_devices, total_nodes, and per node\n"
    "type count, gpus, gpu_model, nics, nic_gbps (per adapter, Gb/s) and\n"
    "nvlink_gbps (per GPU and direction, GB/s; 0 without NVLink).\n"
    "\n"
    "--links lists every directed link of the cluster's topology graph\n"
    "(docs/topology-graph.md): its name (\"node1/nic0->leaf0.rail0\"), bandwidth\n"
    "(GB/s, one direction) and latency; in JSON an array of objects with name,\n"
    "from, to, kind, bandwidth_GBps and latency_s. A link's name, or a vertex's\n"
    "(the part before or after \"->\"), is what `orrery simulate --degrade-link`\n"
    "takes.\n"
    "\n"
    "'cpu-local' is this machine, read when asked for: one device per CPU core,\n"
    "with a nominal peak FLOP rate from the clock and the ISA.";

constexpr std::string_view kExamples =
    "  orrery clusters\n"
    "  orrery clusters --cluster dgx-h100 --nodes 16\n"
    "  orrery clusters --cluster gb200-nvl72 --format json\n"
    "  orrery clusters --cluster dgx-h100 --nodes 4 --format json > pod.json\n"
    "  orrery clusters --cluster pod.json\n"
    "  orrery clusters --cluster cpu-local\n"
    "  orrery clusters --cluster dgx-h100 --nodes 2 --links\n";

// A number for a table or a sentence: up to 4 significant digits, no
// trailing zeros ("989.5", "19.5", "3350").
std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  std::string s = buf;
  if (s.find('e') != std::string::npos) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    s = buf;
  }
  return s;
}

// A derived figure for the JSON report: rounded to 12 significant digits
// (989.5, not 989.4999999999999 from a unit conversion), and written as an
// integer when it is one (400, not 400.0).
Json JsonNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.12g", v);
  const double rounded = std::strtod(buf, nullptr);
  if (std::fabs(rounded) < 1e15 && rounded == std::floor(rounded)) {
    return static_cast<int64_t>(rounded);
  }
  return rounded;
}

bool IsGpuNode(const NodeType& t) { return t.fabric.kind != FabricKind::kSharedMemory; }

double NvLinkGBps(const NodeType& t) {
  return t.fabric.IsNvLink() ? t.fabric.bandwidth_per_device.ToGBps() : 0.0;
}

// The line rate of the node's fastest NIC, 0 without NICs.
double MaxNicGbps(const NodeType& t) {
  double best = 0.0;
  for (const topology::Nic& nic : t.nics) best = std::max(best, nic.bandwidth.ToGbps());
  return best;
}

// "8x 400 Gb/s", "4x 400 Gb/s (1 per 2 devices)", "-".
std::string NicSummary(const NodeType& t) {
  if (t.nics.empty()) return "-";
  std::string s = std::to_string(t.nics.size()) + "x " + Num(MaxNicGbps(t)) + " Gb/s";
  bool uniform = true;
  for (const topology::Nic& nic : t.nics) {
    uniform = uniform && nic.bandwidth == t.nics[0].bandwidth &&
              nic.devices.size() == t.nics[0].devices.size();
  }
  if (!uniform) return s + " (mixed)";
  if (t.nics[0].devices.size() > 1) {
    s += " (1 per " + std::to_string(t.nics[0].devices.size()) + " devices)";
  }
  return s;
}

std::string PeakCell(const NodeType& t, Precision p) {
  std::optional<FlopRate> peak = t.device.Peak(p);
  return peak.has_value() ? Num(peak->ToTFlops()) : "-";
}

Json Summary(const ClusterSpec& spec) {
  Json s = Json::object();
  s["total_devices"] = spec.TotalDevices();
  s["total_nodes"] = spec.TotalNodes();
  Json types = Json::array();
  for (const NodeType& t : spec.node_types) {
    Json j = Json::object();
    j["name"] = t.name;
    j["count"] = t.count;
    j["devices_per_node"] = t.devices_per_node;
    j["gpus"] = IsGpuNode(t) ? t.devices_per_node : 0;
    j["gpu_model"] = IsGpuNode(t) ? t.device.model : "";
    j["nics"] = t.nics.size();
    j["nic_gbps"] = JsonNumber(MaxNicGbps(t));
    j["nvlink_gbps"] = JsonNumber(NvLinkGBps(t));
    types.push_back(std::move(j));
  }
  s["node_types"] = std::move(types);
  return s;
}

std::string Describe(const ClusterSpec& spec) {
  std::ostringstream out;
  out << "cluster " << spec.name;
  if (!spec.description.empty()) out << ": " << spec.description;
  out << "\n" << spec.TotalNodes() << " node(s), " << spec.TotalDevices() << " device(s)\n";
  for (const NodeType& t : spec.node_types) {
    const topology::DeviceType& d = t.device;
    out << "\nnode type " << (t.name.empty() ? "(unnamed)" : t.name) << " x " << t.count << "\n";
    out << "  devices per node  " << t.devices_per_node << " x " << d.model << " (" << d.name
        << ")\n";
    out << "  peak (dense)      ";
    bool first = true;
    for (const auto& [p, rate] : d.peak) {
      out << (first ? "" : ", ") << topology::PrecisionName(p) << " " << Num(rate.ToTFlops());
      first = false;
    }
    out << " TFLOP/s\n";
    out << "  memory            " << FormatBytes(d.memory) << " at "
        << Num(d.memory_bandwidth.ToGBps()) << " GB/s\n";
    out << "  intra-node fabric " << topology::FabricKindName(t.fabric.kind) << ", "
        << Num(t.fabric.bandwidth_per_device.ToGBps()) << " GB/s per device per direction, "
        << FormatDuration(t.fabric.latency) << " per hop\n";
    out << "  NICs              " << NicSummary(t);
    if (!t.nics.empty()) {
      out << "; " << Num(t.NicBandwidthPerDevice(0).ToGBps()) << " GB/s per device (device 0)";
    }
    out << "\n";
    if (!d.source.empty()) out << "  source            " << d.source << "\n";
  }
  out << "\nnetwork";
  if (spec.network.tiers.empty()) {
    out << "            none (a single node)\n";
  } else {
    out << (spec.network.rail_optimized ? " (rail-optimized)\n" : "\n");
    for (const topology::NetworkTier& tier : spec.network.tiers) {
      out << "  " << PadText(tier.name, 17) << " "
          << (tier.nodes_per_switch.has_value()
                  ? std::to_string(*tier.nodes_per_switch) + " nodes per switch"
                  : std::string("top tier, spans every node"))
          << ", oversubscription " << Num(tier.oversubscription) << ":1, "
          << FormatDuration(tier.latency) << " per hop\n";
    }
  }
  return out.str();
}

std::string_view LinkKindName(topology::LinkKind kind) {
  switch (kind) {
    case topology::LinkKind::kFabric:
      return "fabric";
    case topology::LinkKind::kDeviceNic:
      return "device-nic";
    case topology::LinkKind::kNicLeaf:
      return "nic-leaf";
    case topology::LinkKind::kTier:
      return "tier";
  }
  return "?";
}

// Every directed link of `spec`'s topology, in link id order.
int ListLinks(const ClusterSpec& spec, OutputFormat format, CommandIo& io) {
  Result<topology::Topology> built = topology::Topology::Build(spec);
  if (!built.ok()) return ReportError("clusters", built.status(), io);
  const topology::Topology& topo = *built;
  if (format == OutputFormat::kJson) {
    Json list = Json::array();
    for (size_t i = 0; i < topo.num_links(); ++i) {
      const topology::Link& link = topo.link(topology::LinkId(static_cast<uint32_t>(i)));
      Json j = Json::object();
      j["name"] = link.name;
      j["from"] = topo.vertex(link.from).name;
      j["to"] = topo.vertex(link.to).name;
      j["kind"] = std::string(LinkKindName(link.kind));
      j["bandwidth_GBps"] = JsonNumber(link.bandwidth.ToGBps());
      j["latency_s"] = JsonNumber(link.latency.ToSeconds());
      list.push_back(std::move(j));
    }
    io.out << DumpJson(list);
    return kExitOk;
  }
  size_t width = 4;
  for (size_t i = 0; i < topo.num_links(); ++i) {
    width = std::max(width, topo.link(topology::LinkId(static_cast<uint32_t>(i))).name.size());
  }
  std::ostringstream out;
  out << topo.num_links() << " directed links of cluster " << spec.name << " ("
      << topo.num_nodes() << " node(s), " << topo.num_devices() << " devices)\n\n";
  out << PadText("link", width + 2) << PadText("kind", 12) << PadText("GB/s", 9) << "latency\n";
  for (size_t i = 0; i < topo.num_links(); ++i) {
    const topology::Link& link = topo.link(topology::LinkId(static_cast<uint32_t>(i)));
    out << PadText(link.name, width + 2) << PadText(std::string(LinkKindName(link.kind)), 12)
        << PadText(Num(link.bandwidth.ToGBps()), 9) << FormatDuration(link.latency) << "\n";
  }
  out << "\n`orrery simulate --degrade-link NAME:FACTOR` takes a link's name (that direction)\n"
         "or a vertex's, the part before or after \"->\" (every link into and out of it).\n";
  io.out << out.str();
  return kExitOk;
}

int ListPresets(OutputFormat format, CommandIo& io) {
  std::vector<ClusterSpec> presets;
  for (const std::string& name : topology::ClusterPresetNames()) {
    Result<ClusterSpec> spec = topology::ClusterPreset(name);
    if (!spec.ok()) return ReportError("clusters", spec.status(), io);
    presets.push_back(*std::move(spec));
  }
  if (format == OutputFormat::kJson) {
    Json list = Json::array();
    for (const ClusterSpec& spec : presets) {
      const NodeType& t = spec.PrimaryNodeType();
      Json j = Json::object();
      j["name"] = spec.name;
      j["description"] = spec.description;
      j["devices_per_node"] = t.devices_per_node;
      j["device"] = t.device.name;
      j["device_model"] = t.device.model;
      j["memory_gib"] = JsonNumber(t.device.memory.ToGiB());
      std::optional<FlopRate> bf16 = t.device.Peak(Precision::kBf16);
      j["bf16_tflops"] = bf16.has_value() ? JsonNumber(bf16->ToTFlops()) : Json(nullptr);
      j["fabric"] = std::string(topology::FabricKindName(t.fabric.kind));
      j["intra_node_GBps"] = JsonNumber(t.fabric.bandwidth_per_device.ToGBps());
      j["nics"] = t.nics.size();
      j["nic_gbps"] = JsonNumber(MaxNicGbps(t));
      list.push_back(std::move(j));
    }
    Json doc = Json::object();
    doc["presets"] = std::move(list);
    io.out << DumpJson(doc);
    return kExitOk;
  }
  const std::vector<std::string> header = {"name",     "devices/node", "device",
                                           "memory",   "bf16 TFLOP/s", "intra-node GB/s/dir",
                                           "NICs"};
  std::vector<std::vector<std::string>> rows = {header};
  for (const ClusterSpec& spec : presets) {
    const NodeType& t = spec.PrimaryNodeType();
    rows.push_back({spec.name, std::to_string(t.devices_per_node), t.device.model,
                    FormatBytes(t.device.memory), PeakCell(t, Precision::kBf16),
                    Num(t.fabric.bandwidth_per_device.ToGBps()) + " " +
                        std::string(topology::FabricKindName(t.fabric.kind)),
                    NicSummary(t)});
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += c + 1 == row.size() ? row[c] : PadText(row[c], widths[c] + 2);
    }
    out << line << "\n";
  }
  out << "\nEach preset is one node; scale with --nodes. Peak rates are dense (not 2:4 "
         "sparse)\ndatasheet figures; 'orrery clusters --cluster NAME' shows each source.\n";
  io.out << out.str();
  return kExitOk;
}

}  // namespace

int RunClusters(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("cluster", po::value<std::string>(),
       "a cluster preset name, or the path of a cluster JSON file")
      ("nodes", po::value<int>(), "scale the cluster to N nodes (one node type only)")
      ("links", po::bool_switch(),
       "list every directed link of the cluster's topology (names for `simulate "
       "--degrade-link`)");
  AddFormatOption(options);
  po::positional_options_description positional;
  positional.add("cluster", 1);
  po::variables_map vm;
  if (std::optional<int> exit = ParseOptions("clusters", kUsage, kDescription, kExamples, options,
                                             args, vm, io, &positional)) {
    return *exit;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError("clusters", format.status(), io);

  std::optional<int> nodes;
  if (vm.count("nodes") != 0) {
    nodes = vm["nodes"].as<int>();
    if (*nodes < 1) {
      return ReportError("clusters",
                         InvalidArgumentError("--nodes: expected a positive integer, got " +
                                              std::to_string(*nodes)),
                         io);
    }
  }
  if (vm.count("cluster") == 0) {
    if (nodes.has_value()) {
      return ReportError("clusters",
                         InvalidArgumentError("--nodes needs --cluster (which cluster to scale)"),
                         io);
    }
    if (vm["links"].as<bool>()) {
      return ReportError("clusters",
                         InvalidArgumentError("--links needs --cluster (whose links to list)"),
                         io);
    }
    return ListPresets(*format, io);
  }

  Result<ClusterSpec> spec = topology::ResolveCluster(vm["cluster"].as<std::string>(), nodes);
  if (!spec.ok()) return ReportError("clusters", spec.status(), io);
  if (vm["links"].as<bool>()) return ListLinks(*spec, *format, io);
  if (*format == OutputFormat::kJson) {
    Json doc = topology::ClusterSpecToJson(*spec);
    doc["summary"] = Summary(*spec);
    io.out << DumpJson(doc);
  } else {
    io.out << Describe(*spec);
  }
  return kExitOk;
}

}  // namespace orrery::cli
