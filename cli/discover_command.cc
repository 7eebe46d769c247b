// `orrery discover`: describe this machine, or a machine known from an hwloc
// export and/or a saved `nvidia-smi topo -m`, as a cluster spec
// (topology/discovery.h does the work; this file parses options and prints).
// Under `mpirun`, one rank per node, every rank discovers its node and rank 0
// folds them into one spec (topology/node_folding.h, exec/mpi_world.h).
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "exec/mpi_world.h"
#include "topology/cluster_spec_json.h"
#include "topology/discovery.h"
#include "topology/node_folding.h"

namespace orrery::cli {
namespace {

namespace po = boost::program_options;
using topology::DiscoveredNode;
using topology::FabricKind;
using topology::FoundGpu;
using topology::FoundNic;
using topology::NodeDescription;
using topology::NodeInventory;
using topology::NodeType;

constexpr std::string_view kUsage =
    "orrery discover [--hwloc-xml FILE] [--nvidia-smi-topo FILE] [--device NAME]\n"
    "                [--nic-gbps G] [--out cluster.json] [--format text|json]";

constexpr std::string_view kDescription =
    "Describes one node as a cluster spec. Without files it reads this machine:\n"
    "hwloc (packages, NUMA nodes, cores, memory, the PCIe tree, GPUs, network\n"
    "adapters), NVLink through NVML (libnvidia-ml.so.1, loaded at run time) or else\n"
    "`nvidia-smi topo -m`, and InfiniBand ports and rates from /sys/class/infiniband.\n"
    "With --hwloc-xml (an `lstopo --of xml` export) and/or --nvidia-smi-topo (saved\n"
    "`nvidia-smi topo -m` output) it reads only those files.\n"
    "\n"
    "The GPU is matched to a known device by PCI id or name; a GPU Orrery does not\n"
    "know is reported as found, never given guessed figures. --device names the GPU\n"
    "when the source does not (`topo -m` never does), --nic-gbps the NICs' line rate\n"
    "when the source does not give it (only sysfs does). --out writes the spec only\n"
    "when it is complete; a malformed file is an error naming it, exit code 2, and\n"
    "nothing is written. --format json prints the spec plus a \"summary\" shaped as\n"
    "`orrery clusters --format json` prints it (null where a figure is unknown) with\n"
    "what was discovered under summary.discovered.\n"
    "\n"
    "Under mpirun (or srun), one rank per node, every rank discovers its node and\n"
    "rank 0 prints and writes one spec for the whole cluster: identical nodes fold\n"
    "into one node type with a count, and what makes a node differ is printed. In\n"
    "--hwloc-xml and --nvidia-smi-topo, %r stands for the MPI rank (node%r.xml), so\n"
    "that each rank can describe its own file. Ranks that report the same host are\n"
    "counted once.";

constexpr std::string_view kExamples =
    "  orrery discover\n"
    "  orrery discover --hwloc-xml "
    "../shared/fixtures/hwloc/hwloc_nvidia_dgx2h_16xV100_nvswitch.xml\n"
    "  orrery discover --hwloc-xml ../shared/fixtures/hwloc/hwloc_power8_4xP100_nvlink.xml "
    "--format json\n"
    "  orrery discover --nvidia-smi-topo "
    "../shared/fixtures/nvidia_smi_topo/topo_dgx_a100_8gpu_12xmlx5.txt \\\n"
    "      --device a100-sxm4-40gb --nic-gbps 200 --out dgx-a100.json\n"
    "  orrery discover --nvidia-smi-topo "
    "../shared/fixtures/nvidia_smi_topo/topo_8xRTX4090_pcie-only_1nic_nccl-tests-issue307.txt\n"
    "  orrery discover --out this-machine.json && orrery clusters --cluster this-machine.json\n"
    "  mpirun -np 16 --map-by ppr:1:node orrery discover --out cluster.json\n"
    "  mpirun -np 2 orrery discover --hwloc-xml node%r.xml\n";

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

std::string PciId(const FoundGpu& g) {
  if (!g.pci_device_id) return "";
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04x:%04x", g.pci_vendor_id.value_or(0), *g.pci_device_id);
  return buf;
}

Json OptionalNumber(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

// The summary of `orrery clusters --format json` (total_devices, total_nodes,
// node_types[]) with unknown figures as null, plus what was discovered.
Json Summary(const NodeDescription& d) {
  const NodeInventory& inv = d.inventory;
  const NodeType& t = d.spec.node_types.at(0);
  Json type = Json::object();
  type["name"] = t.name;
  type["count"] = t.count;
  type["devices_per_node"] = t.devices_per_node;
  type["gpus"] = static_cast<int>(inv.gpus.size());
  type["gpu_model"] = inv.gpus.empty() ? std::string()
                      : d.device_known ? t.device.model
                                       : inv.gpus[0].model;
  type["nics"] = d.rail_nics;
  type["nic_gbps"] =
      d.rail_nics == 0
          ? Json(0)
          : OptionalNumber(d.nic_bandwidth ? std::optional<double>(d.nic_bandwidth->ToGbps())
                                           : std::nullopt);
  type["nvlink_gbps"] = OptionalNumber(
      d.nvlink_per_gpu ? std::optional<double>(d.nvlink_per_gpu->ToGBps()) : std::nullopt);

  Json found = Json::object();
  found["source"] = inv.source;
  found["machine_model"] = inv.machine_model;
  Json cpu = Json::object();
  cpu["model"] = inv.cpu.model;
  cpu["packages"] = inv.cpu.packages;
  cpu["numa_nodes"] = inv.cpu.numa_nodes;
  cpu["cores"] = inv.cpu.cores;
  cpu["hardware_threads"] = inv.cpu.hardware_threads;
  cpu["memory_gib"] = inv.cpu.memory.ToGiB();
  found["cpu"] = std::move(cpu);
  found["device_known"] = d.device_known;
  if (!d.device_known) found["unknown_device"] = d.unknown_device;
  Json gpus = Json::array();
  for (const FoundGpu& g : inv.gpus) {
    Json j = Json::object();
    j["label"] = g.label;
    j["model"] = g.model;
    j["pci_busid"] = g.pci_busid;
    j["pci_id"] = PciId(g);
    j["numa_node"] = g.numa_node ? Json(*g.numa_node) : Json(nullptr);
    if (!g.cpu_affinity.empty()) j["cpu_affinity"] = g.cpu_affinity;
    gpus.push_back(std::move(j));
  }
  found["gpus"] = std::move(gpus);
  found["nvswitches"] = inv.nvswitches;
  found["pcie_switch_groups"] = topology::PcieSwitchGroups(inv);
  if (!inv.nvlink.links.empty()) found["nvlink_links"] = inv.nvlink.links;
  if (!inv.nvlink.bandwidth.empty()) {
    Json m = Json::array();
    for (const auto& row : inv.nvlink.bandwidth) {
      Json r = Json::array();
      for (const Bandwidth& b : row) r.push_back(b.ToGBps());
      m.push_back(std::move(r));
    }
    found["nvlink_GBps"] = std::move(m);
  }
  Json nics = Json::array();
  for (const FoundNic& n : inv.nics) {
    Json j = Json::object();
    j["name"] = n.name;
    j["nearest_gpus"] = n.nearest_gpus;
    j["path"] =
        n.nearest_path ? Json(std::string(topology::PathKindName(*n.nearest_path))) : Json(nullptr);
    j["gbps"] = n.rate ? Json(n.rate->ToGbps()) : Json(nullptr);
    if (!n.state.empty()) j["state"] = n.state;
    if (!n.link_layer.empty()) j["link_layer"] = n.link_layer;
    nics.push_back(std::move(j));
  }
  found["nics"] = std::move(nics);
  found["notes"] = d.notes;

  Json s = Json::object();
  s["total_devices"] = d.spec.TotalDevices();
  s["total_nodes"] = d.spec.TotalNodes();
  s["node_types"] = Json::array({std::move(type)});
  s["discovered"] = std::move(found);
  return s;
}

// "GPU0-1: node 3; GPU2-3: node 1" from runs of equal NUMA nodes.
std::string NumaRuns(const std::vector<FoundGpu>& gpus) {
  std::string s;
  size_t i = 0;
  while (i < gpus.size()) {
    size_t j = i;
    while (j + 1 < gpus.size() && gpus[j + 1].numa_node == gpus[i].numa_node) ++j;
    if (!s.empty()) s += "; ";
    s += "GPU" + std::to_string(i) + (j > i ? "-" + std::to_string(j) : "") + ": " +
         (gpus[i].numa_node ? "NUMA " + std::to_string(*gpus[i].numa_node) : "NUMA unknown");
    i = j + 1;
  }
  return s;
}

std::string Report(const NodeDescription& d) {
  const NodeInventory& inv = d.inventory;
  const NodeType& t = d.spec.node_types.at(0);
  std::ostringstream out;
  out << "node discovered from " << inv.source << "\n";
  if (!inv.machine_model.empty()) out << "  machine     " << inv.machine_model << "\n";
  if (inv.cpu.cores > 0) {
    out << "  CPUs        " << inv.cpu.packages << " package(s), " << inv.cpu.numa_nodes
        << " NUMA node(s), " << inv.cpu.cores << " cores (" << inv.cpu.hardware_threads
        << " threads), " << FormatBytes(inv.cpu.memory);
    if (!inv.cpu.model.empty()) out << "; " << inv.cpu.model;
    out << "\n";
  } else {
    out << "  CPUs        not in the source\n";
  }
  if (inv.gpus.empty()) {
    out << "  GPUs        no GPU found: this is a CPU node of " << t.devices_per_node << " cores ("
        << t.device.name << ")\n";
  } else {
    out << "  GPUs        " << inv.gpus.size();
    out << (!d.device_known && inv.gpus[0].model.empty() ? ", " : " x ");
    if (d.device_known) {
      out << t.device.name << " (" << t.device.model << ")\n";
    } else if (inv.gpus[0].model.empty()) {
      out << "not named by the source (--device NAME names them)\n";
    } else {
      out << d.unknown_device << ": not a device Orrery knows\n";
    }
    if (std::any_of(inv.gpus.begin(), inv.gpus.end(),
                    [](const FoundGpu& g) { return g.numa_node.has_value(); })) {
      out << "  GPU NUMA    " << NumaRuns(inv.gpus) << "\n";
    }
    std::vector<std::vector<int>> groups;
    for (std::vector<int>& g : topology::PcieSwitchGroups(inv)) {
      if (g.size() > 1) groups.push_back(std::move(g));
    }
    bool nv_paths = false;
    for (const auto& row : inv.gpu_paths) {
      nv_paths = nv_paths || std::count(row.begin(), row.end(), topology::PathKind::kNvLink) > 0;
    }
    if (!groups.empty()) {
      out << "  PCIe        " << groups.size() << " switch group(s):";
      for (const auto& g : groups) out << " {" << IndexList(g) << "}";
      out << "\n";
    } else if (nv_paths) {
      out << "  PCIe        not shown by the source (it lists NVLink between the GPUs)\n";
    } else if (!inv.gpu_paths.empty()) {
      out << "  PCIe        no two GPUs share a PCIe switch\n";
    }
    if (inv.nvswitches > 0) out << "  NVSwitches  " << inv.nvswitches << "\n";
    out << "  fabric      " << topology::FabricKindName(t.fabric.kind) << ", ";
    if (t.fabric.bandwidth_per_device > Bandwidth::Zero()) {
      out << Num(t.fabric.bandwidth_per_device.ToGBps()) << " GB/s per GPU per direction";
    } else {
      out << "bandwidth unknown";
    }
    if (d.nvlink_generation && t.fabric.IsNvLink()) {
      out << " (NVLink" << d.nvlink_generation->version << ", "
          << Num(d.nvlink_generation->per_link.ToGBps()) << " GB/s per link)";
    }
    out << "\n";
    if (!inv.nvlink.bandwidth.empty()) {
      std::vector<std::string> pairs;
      for (size_t i = 0; i < inv.nvlink.bandwidth.size(); ++i) {
        for (size_t j = i + 1; j < inv.nvlink.bandwidth.size(); ++j) {
          const Bandwidth bw = inv.nvlink.bandwidth[i][j];
          if (bw > Bandwidth::Zero()) {
            pairs.push_back("GPU" + std::to_string(i) + "-GPU" + std::to_string(j) + " " +
                            Num(bw.ToGBps()) + " GB/s");
          }
        }
      }
      if (!pairs.empty()) {
        out << "  NVLink      ";
        for (size_t k = 0; k < pairs.size(); ++k) out << (k ? ", " : "") << pairs[k];
        out << "\n";
      }
      const auto positive = [](Bandwidth b) { return b > Bandwidth::Zero(); };
      if (std::any_of(inv.nvlink.to_cpu.begin(), inv.nvlink.to_cpu.end(), positive)) {
        out << "  NVLink CPU  " << Num(inv.nvlink.to_cpu[0].ToGBps())
            << " GB/s per GPU to its CPU (GPU0)\n";
      }
    }
    if (!inv.nvlink.links.empty()) {
      std::map<int, int> counts;  // NV# → pairs
      for (size_t i = 0; i < inv.nvlink.links.size(); ++i) {
        for (size_t j = i + 1; j < inv.nvlink.links.size(); ++j) ++counts[inv.nvlink.links[i][j]];
      }
      out << "  NVLink      ";
      bool first = true;
      for (const auto& [links, pairs] : counts) {
        out << (first ? "" : ", ") << pairs << " pair(s) "
            << (links ? "NV" + std::to_string(links) : std::string("without"));
        first = false;
      }
      out << "\n";
    }
  }
  if (inv.nics.empty()) {
    out << "  NICs        none found\n";
  } else {
    out << "  NICs        " << inv.nics.size() << " adapter(s), " << d.rail_nics
        << " near GPUs (rails)";
    if (d.nic_bandwidth) {
      out << " at " << Num(d.nic_bandwidth->ToGbps()) << " Gb/s";
    } else if (d.rail_nics > 0) {
      out << ", line rate unknown";
    }
    out << "\n";
    std::vector<std::string> far;
    for (const FoundNic& n : inv.nics) {
      if (n.nearest_gpus.empty()) {
        far.push_back(n.name);
        continue;
      }
      out << "    " << n.name << " -> GPU " << IndexList(n.nearest_gpus) << " ("
          << topology::PathKindName(*n.nearest_path) << ")";
      if (n.rate) out << ", " << Num(n.rate->ToGbps()) << " Gb/s";
      if (!n.state.empty()) out << ", " << n.state;
      out << "\n";
    }
    if (!far.empty()) {
      out << "    no GPU nearby (storage or management):";
      for (const std::string& n : far) out << " " << n;
      out << "\n";
    }
  }
  if (!d.notes.empty()) {
    out << "notes\n";
    for (const std::string& n : d.notes) {
      if (!n.starts_with("no GPU found")) out << "  - " << n << "\n";  // said above
    }
  }
  return out.str();
}

// `path` with every "%r" replaced by `rank`.
std::string ExpandRank(std::string path, int rank) {
  const std::string r = std::to_string(rank);
  for (size_t at = path.find("%r"); at != std::string::npos; at = path.find("%r", at + r.size())) {
    path.replace(at, 2, r);
  }
  return path;
}

// One line on a node type: its devices, fabric and NICs.
std::string TypeLine(const DiscoveredNode& n) {
  const NodeType& t = n.type;
  std::ostringstream out;
  if (n.gpus == 0) {
    out << "CPU node of " << t.devices_per_node << " cores (" << t.device.name << ")";
  } else {
    out << n.gpus << " x ";
    if (n.device_known) {
      out << t.device.name << " (" << t.device.model << ")";
    } else if (n.gpu_model.empty()) {
      out << "GPUs not named by the source";
    } else {
      out << n.unknown_device << ", not a device Orrery knows";
    }
    out << "; " << topology::FabricKindName(t.fabric.kind) << ", ";
    if (t.fabric.bandwidth_per_device > Bandwidth::Zero()) {
      out << Num(t.fabric.bandwidth_per_device.ToGBps()) << " GB/s per GPU";
    } else {
      out << "bandwidth unknown";
    }
  }
  if (t.nics.empty()) {
    out << "; no NICs";
  } else {
    out << "; " << t.nics.size() << " NIC(s)";
    if (n.nic_bandwidth) {
      out << " at " << Num(n.nic_bandwidth->ToGbps()) << " Gb/s";
    } else {
      out << ", line rate unknown";
    }
  }
  return out.str();
}

std::string MemberName(const DiscoveredNode& n) {
  return n.source == "this machine" ? n.name : n.name + " (" + n.source + ")";
}

std::string ClusterReport(const topology::FoldedCluster& f, int ranks) {
  std::ostringstream out;
  out << "cluster discovered by " << ranks << " MPI ranks: " << f.spec.TotalNodes()
      << " node(s) of " << f.spec.node_types.size() << " type(s)\n";
  for (size_t k = 0; k < f.spec.node_types.size(); ++k) {
    const DiscoveredNode& rep = f.members[k].front();
    out << "  " << f.spec.node_types[k].name << " x " << f.spec.node_types[k].count << "  "
        << TypeLine(rep) << "\n";
    out << "    nodes: ";
    for (size_t i = 0; i < f.members[k].size(); ++i) {
      out << (i ? ", " : "") << MemberName(f.members[k][i]);
    }
    out << "\n";
    if (!rep.incomplete.empty()) out << "    " << rep.incomplete << "\n";
  }
  if (!f.differences.empty()) {
    out << "differences\n";
    for (const std::string& d : f.differences) out << "  - " << d << "\n";
  }
  if (!f.warnings.empty()) {
    out << "warnings\n";
    for (const std::string& w : f.warnings) out << "  - " << w << "\n";
  }
  return out.str();
}

Json ClusterSummary(const topology::FoldedCluster& f, int ranks) {
  Json types = Json::array();
  for (size_t k = 0; k < f.spec.node_types.size(); ++k) {
    const NodeType& t = f.spec.node_types[k];
    const DiscoveredNode& rep = f.members[k].front();
    Json type = Json::object();
    type["name"] = t.name;
    type["count"] = t.count;
    type["devices_per_node"] = t.devices_per_node;
    type["gpus"] = rep.gpus;
    type["gpu_model"] = rep.gpu_model;
    type["nics"] = static_cast<int>(t.nics.size());
    type["nic_gbps"] =
        t.nics.empty() ? Json(0)
        : rep.nic_bandwidth ? Json(rep.nic_bandwidth->ToGbps())
                            : Json(nullptr);
    type["nvlink_gbps"] = rep.nvlink_per_gpu ? Json(rep.nvlink_per_gpu->ToGBps()) : Json(nullptr);
    Json nodes = Json::array();
    for (const DiscoveredNode& n : f.members[k]) {
      Json j = Json::object();
      j["name"] = n.name;
      j["source"] = n.source;
      nodes.push_back(std::move(j));
    }
    type["nodes"] = std::move(nodes);
    if (!rep.incomplete.empty()) type["incomplete"] = rep.incomplete;
    types.push_back(std::move(type));
  }
  Json s = Json::object();
  s["total_devices"] = f.spec.TotalDevices();
  s["total_nodes"] = f.spec.TotalNodes();
  s["node_types"] = std::move(types);
  s["ranks"] = ranks;
  s["differences"] = f.differences;
  s["warnings"] = f.warnings;
  return s;
}

// Rank 0's part: folds the nodes every rank sent, prints and writes.
int FoldAndReport(const std::vector<std::string>& messages, const topology::Network& network,
                  const std::optional<std::string>& out_path, OutputFormat format,
                  CommandIo& io) {
  std::vector<DiscoveredNode> nodes;
  for (size_t r = 0; r < messages.size(); ++r) {
    const std::string source = "rank " + std::to_string(r);
    Result<Json> json = ParseJson(messages[r], source);
    if (!json.ok()) return ReportError("discover", json.status(), io);
    if (json->contains("error")) {
      return ReportError(
          "discover",
          InvalidArgumentError(source + " (" + json->value("host", std::string("?")) +
                               "): " + json->value("error", std::string())),
          io);
    }
    Result<DiscoveredNode> node = topology::ParseDiscoveredNode(*json, source);
    if (!node.ok()) return ReportError("discover", node.status(), io);
    nodes.push_back(*std::move(node));
  }
  const int ranks = static_cast<int>(messages.size());
  const topology::FoldedCluster folded = topology::FoldNodes(
      nodes, network, "discovered", "discovered by " + std::to_string(ranks) + " MPI ranks");
  if (format == OutputFormat::kJson) {
    Json doc = topology::ClusterSpecToJson(folded.spec);
    doc["summary"] = ClusterSummary(folded, ranks);
    io.out << DumpJson(doc);
  } else {
    io.out << ClusterReport(folded, ranks);
  }
  if (out_path) {
    for (const std::vector<DiscoveredNode>& members : folded.members) {
      if (!members.front().incomplete.empty()) {
        return ReportError("discover",
                           FailedPreconditionError(*out_path + " not written: node " +
                                                   members.front().name + ": " +
                                                   members.front().incomplete),
                           io);
      }
    }
    Status valid = topology::ValidateClusterSpec(folded.spec);
    if (!valid.ok()) {
      return ReportError("discover", valid.WithContext(*out_path + " not written"), io);
    }
    Status written =
        WriteFileAtomically(*out_path, DumpJson(topology::ClusterSpecToJson(folded.spec)));
    if (!written.ok()) return ReportError("discover", written, io);
    if (format == OutputFormat::kText) io.out << "wrote " << *out_path << "\n";
  }
  return kExitOk;
}

// Every rank's part under mpirun: discover this node, send it to rank 0;
// rank 0 folds, prints and writes. Ranks other than 0 print nothing and
// return 0 (rank 0 reports their errors).
int DiscoverAcrossNodes(const exec::MpiWorld& job, topology::DiscoveryInputs inputs,
                        const topology::DescribeOptions& describe,
                        const std::optional<std::string>& out_path, OutputFormat format,
                        CommandIo& io) {
  const bool from_files = inputs.hwloc_xml || inputs.nvidia_smi_topo;
  if (inputs.hwloc_xml) inputs.hwloc_xml = ExpandRank(*inputs.hwloc_xml, job.rank());
  if (inputs.nvidia_smi_topo) {
    inputs.nvidia_smi_topo = ExpandRank(*inputs.nvidia_smi_topo, job.rank());
  }
  const std::string host = job.host_name();
  // A rank describing a file describes that file's machine, not its host.
  const std::string name = from_files ? "rank " + std::to_string(job.rank()) : host;
  std::string message;
  topology::Network network;
  Result<NodeInventory> node = topology::DiscoverNode(inputs);
  Status failed = node.status();
  if (node.ok()) {
    Result<NodeDescription> d =
        topology::DescribeNode(*std::move(node), topology::PresetCatalogue(), describe);
    failed = d.status();
    if (d.ok()) {
      network = d->spec.network;
      message = DumpJson(topology::DiscoveredNodeToJson(topology::ToDiscoveredNode(*d, name)));
    }
  }
  if (!failed.ok()) {
    Json error = Json::object();
    error["host"] = host;
    error["error"] = failed.message();
    message = DumpJson(error);
  }
  const std::vector<std::string> messages = job.GatherToRoot(message);
  if (job.rank() != 0) return kExitOk;
  return FoldAndReport(messages, network, out_path, format, io);
}

}  // namespace

int RunDiscover(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()("hwloc-xml", po::value<std::string>(),
                        "an hwloc XML export (lstopo --of xml FILE)")(
      "nvidia-smi-topo", po::value<std::string>(), "saved output of `nvidia-smi topo -m`")(
      "device", po::value<std::string>(),
      "the GPUs' device preset, when the source does not name them (see `orrery clusters`)")(
      "nic-gbps", po::value<double>(), "the NICs' line rate in Gb/s, when the source lacks it")(
      "out", po::value<std::string>(), "write the cluster spec JSON here (only when complete)");
  AddFormatOption(options);
  po::variables_map vm;
  if (std::optional<int> exit =
          ParseOptions("discover", kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *exit;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError("discover", format.status(), io);

  topology::DiscoveryInputs inputs;
  if (vm.count("hwloc-xml")) inputs.hwloc_xml = vm["hwloc-xml"].as<std::string>();
  if (vm.count("nvidia-smi-topo")) inputs.nvidia_smi_topo = vm["nvidia-smi-topo"].as<std::string>();
  topology::DescribeOptions describe;
  if (vm.count("device")) describe.device = vm["device"].as<std::string>();
  if (vm.count("nic-gbps")) {
    const double g = vm["nic-gbps"].as<double>();
    if (!(g > 0)) {
      return ReportError("discover",
                         InvalidArgumentError("--nic-gbps: expected a positive line rate in "
                                              "Gb/s, got " +
                                              Num(g)),
                         io);
    }
    describe.nic_rate = Gbps(g);
  }

  // MPI only when a launcher started us: run by hand, `orrery discover`
  // never starts an MPI runtime.
  std::unique_ptr<exec::MpiWorld> job;
  if (exec::LaunchedByMpiLauncher()) {
    Result<std::unique_ptr<exec::MpiWorld>> joined = exec::MpiWorld::Join();
    if (!joined.ok()) return ReportError("discover", joined.status(), io);
    job = std::move(*joined);
  }
  if (job && job->size() > 1) {
    std::optional<std::string> out_path;
    if (vm.count("out")) out_path = vm["out"].as<std::string>();
    return DiscoverAcrossNodes(*job, std::move(inputs), describe, out_path, *format, io);
  }
  if (inputs.hwloc_xml) inputs.hwloc_xml = ExpandRank(*inputs.hwloc_xml, 0);
  if (inputs.nvidia_smi_topo) inputs.nvidia_smi_topo = ExpandRank(*inputs.nvidia_smi_topo, 0);

  Result<NodeInventory> node = topology::DiscoverNode(inputs);
  if (!node.ok()) return ReportError("discover", node.status(), io);
  Result<NodeDescription> d =
      topology::DescribeNode(*std::move(node), topology::PresetCatalogue(), describe);
  if (!d.ok()) return ReportError("discover", d.status(), io);

  if (*format == OutputFormat::kJson) {
    Json doc = topology::ClusterSpecToJson(d->spec);
    doc["summary"] = Summary(*d);
    io.out << DumpJson(doc);
  } else {
    io.out << Report(*d);
  }
  if (vm.count("out")) {
    const std::string path = vm["out"].as<std::string>();
    Status complete = topology::CheckComplete(*d);
    if (complete.ok()) complete = topology::ValidateClusterSpec(d->spec);
    if (!complete.ok()) {
      return ReportError("discover", complete.WithContext(path + " not written"), io);
    }
    Status written = WriteFileAtomically(path, DumpJson(topology::ClusterSpecToJson(d->spec)));
    if (!written.ok()) return ReportError("discover", written, io);
    if (*format == OutputFormat::kText) io.out << "wrote " << path << "\n";
  }
  return kExitOk;
}

}  // namespace orrery::cli
