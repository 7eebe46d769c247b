// `orrery discover`: describe this machine, or a machine known from an hwloc
// export and/or a saved `nvidia-smi topo -m`, as a cluster spec
// (topology/discovery.h does the work; this file parses options and prints).
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "topology/cluster_spec_json.h"
#include "topology/discovery.h"

namespace orrery::cli {
namespace {

namespace po = boost::program_options;
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
    "what was discovered under summary.discovered.";

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
    "  orrery discover --out this-machine.json && orrery clusters --cluster this-machine.json\n";

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
