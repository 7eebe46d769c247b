#include "topology/discovery.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "core/file.h"
#include "topology/hwloc_reader.h"
#include "topology/infiniband_sysfs.h"
#include "topology/nvidia_smi_topo.h"
#include "topology/nvml_reader.h"

namespace orrery::topology {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Hex4(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04x", v);
  return buf;
}

std::string FormatGBps(Bandwidth bw) {
  std::ostringstream out;
  out << bw.ToGBps();
  return out.str();
}

// The output of a command, or nullopt when it cannot run or fails.
std::optional<std::string> RunCommand(const std::string& command) {
  FILE* pipe = popen((command + " 2>/dev/null").c_str(), "r");
  if (!pipe) return std::nullopt;
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int rc = pclose(pipe);
  if (rc != 0) return std::nullopt;
  return out;
}

// True when `command` names an executable on PATH (or is a path to one).
bool OnPath(const std::string& command) {
  if (command.find('/') != std::string::npos) return access(command.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + command).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// Folds a `nvidia-smi topo -m` inventory into one read from hwloc: NVLink
// counts, GPU affinity and, when hwloc saw no adapters, the NICs.
Status MergeSmiTopo(NodeInventory smi, NodeInventory& node) {
  if (smi.gpus.size() != node.gpus.size()) {
    return InvalidArgumentError(
        smi.source + ": lists " + std::to_string(smi.gpus.size()) + " GPUs but " + node.source +
        " has " + std::to_string(node.gpus.size()) + "; they do not describe the same machine");
  }
  for (size_t i = 0; i < node.gpus.size(); ++i) {
    if (!node.gpus[i].numa_node) node.gpus[i].numa_node = smi.gpus[i].numa_node;
    if (node.gpus[i].cpu_affinity.empty()) node.gpus[i].cpu_affinity = smi.gpus[i].cpu_affinity;
  }
  if (node.nvlink.links.empty()) node.nvlink.links = std::move(smi.nvlink.links);
  if (node.gpu_paths.empty()) node.gpu_paths = std::move(smi.gpu_paths);
  if (node.nics.empty()) node.nics = std::move(smi.nics);
  node.source += " + " + smi.source;
  return Status::Ok();
}

// Live NVLink: NVML, else `nvidia-smi topo -m`.
void AddLiveNvLink(const DiscoveryInputs& inputs, NodeInventory& node) {
  Result<NvmlReading> nvml = ReadNvml(inputs.nvml_library);
  if (nvml.ok()) {
    std::map<std::string, int> by_busid;
    for (size_t i = 0; i < node.gpus.size(); ++i)
      by_busid[node.gpus[i].pci_busid] = static_cast<int>(i);
    const bool same = nvml->gpus.size() == node.gpus.size() &&
                      std::all_of(nvml->gpus.begin(), nvml->gpus.end(), [&](const FoundGpu& g) {
                        return by_busid.count(g.pci_busid) > 0;
                      });
    if (!same) {
      // hwloc and NVML disagree (GPUs hidden from one of them): trust NVML.
      node.notes.push_back("NVML lists " + std::to_string(nvml->gpus.size()) + " GPUs and hwloc " +
                           std::to_string(node.gpus.size()) + "; using NVML's list");
      node.gpus = nvml->gpus;
      node.gpu_paths.clear();
      node.nvlink = nvml->nvlink;
      return;
    }
    // Reorder NVML's counts into hwloc's GPU order.
    const size_t g = node.gpus.size();
    std::vector<int> to_node(g);
    for (size_t i = 0; i < g; ++i) {
      to_node[i] = by_busid[nvml->gpus[i].pci_busid];
      if (node.gpus[to_node[i]].model.empty()) node.gpus[to_node[i]].model = nvml->gpus[i].model;
    }
    node.nvlink.links.assign(g, std::vector<int>(g, 0));
    node.nvlink.switch_links.assign(g, 0);
    for (size_t i = 0; i < g; ++i) {
      node.nvlink.switch_links[to_node[i]] = nvml->nvlink.switch_links[i];
      for (size_t j = 0; j < g; ++j)
        node.nvlink.links[to_node[i]][to_node[j]] = nvml->nvlink.links[i][j];
    }
    return;
  }
  node.notes.push_back(nvml.status().message());
  if (!OnPath(inputs.nvidia_smi)) {
    node.notes.push_back("nvidia-smi: not on PATH; NVLink not read");
    return;
  }
  std::optional<std::string> text = RunCommand(inputs.nvidia_smi + " topo -m");
  if (!text) {
    node.notes.push_back("nvidia-smi topo -m: failed; NVLink not read");
    return;
  }
  Result<SmiTopoMatrix> matrix = ParseNvidiaSmiTopo(*text, "nvidia-smi topo -m");
  if (!matrix.ok()) {
    node.notes.push_back(matrix.status().message());
    return;
  }
  Status merged = MergeSmiTopo(SmiTopoToInventory(*matrix, "nvidia-smi topo -m"), node);
  if (!merged.ok()) node.notes.push_back(merged.message());
}

}  // namespace

std::optional<NvLinkGeneration> NvLinkGenerationOf(std::string_view device) {
  const std::string d = Lower(device);
  auto has = [&](std::string_view s) { return d.find(s) != std::string::npos; };
  // Blackwell: NVLink5, 18 links × 100 GB/s bidirectional = 50 GB/s per
  // direction per link (REFERENCES.md §1, ✔S).
  if (has("b200")) return NvLinkGeneration{5, 18, GBps(50)};
  // Hopper: NVLink4, 18 links × 25 GB/s per direction = 450 (REFERENCES.md §1).
  if (has("h100") || has("h200")) return NvLinkGeneration{4, 18, GBps(25)};
  // A100: NVLink3, 12 links × 25 GB/s per direction = 300 (REFERENCES.md §1).
  if (has("a100")) return NvLinkGeneration{3, 12, GBps(25)};
  // V100: NVLink2, 6 links, 300 GB/s total = 25 GB/s per direction per link
  // (NVIDIA Tesla V100 datasheet); the DGX-2H hwloc export in the fixtures
  // carries 25000 MB/s per GPU-to-NVSwitch link.
  if (has("v100")) return NvLinkGeneration{2, 6, GBps(25)};
  // P100: NVLink1, 4 links, 160 GB/s total = 20 GB/s per direction per link
  // (NVIDIA Tesla P100 whitepaper, 2016); the POWER8 hwloc export in the
  // fixtures carries 40000 MB/s for a pair of bonded links.
  if (has("p100")) return NvLinkGeneration{1, 4, GBps(20)};
  return std::nullopt;
}

void AddInfinibandPorts(const std::string& infiniband_root, NodeInventory& node) {
  Result<std::vector<InfinibandPort>> ports = ReadInfinibandPorts(infiniband_root);
  if (!ports.ok()) {
    node.notes.push_back(ports.status().message());
    return;
  }
  if (ports->empty()) {
    node.notes.push_back(infiniband_root + ": no InfiniBand or RoCE adapters");
    return;
  }
  for (const InfinibandPort& port : *ports) {
    auto nic = std::find_if(node.nics.begin(), node.nics.end(),
                            [&](const FoundNic& n) { return n.name == port.adapter; });
    if (nic == node.nics.end()) {
      FoundNic added;
      added.name = port.adapter;
      added.pci_busid = port.pci_busid;
      added.numa_node = port.numa_node;
      node.nics.push_back(std::move(added));
      nic = node.nics.end() - 1;
    }
    if (nic->link_layer.empty()) nic->link_layer = port.link_layer;
    if (!nic->numa_node) nic->numa_node = port.numa_node;
    const bool active = port.state == "ACTIVE";
    if (active && port.rate) {
      nic->rate = nic->rate && nic->state == "ACTIVE" ? *nic->rate + *port.rate : *port.rate;
    } else if (!nic->rate && port.rate) {
      nic->rate = port.rate;
    }
    if (nic->state.empty() || active) nic->state = port.state;
  }
}

Result<NodeInventory> DiscoverNode(const DiscoveryInputs& inputs) {
  if (inputs.hwloc_xml || inputs.nvidia_smi_topo) {
    std::optional<NodeInventory> node;
    if (inputs.hwloc_xml) {
      ORRERY_ASSIGN_OR_RETURN(node, ReadHwlocXml(*inputs.hwloc_xml));
    }
    if (inputs.nvidia_smi_topo) {
      const std::string& path = *inputs.nvidia_smi_topo;
      ORRERY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
      ORRERY_ASSIGN_OR_RETURN(SmiTopoMatrix matrix, ParseNvidiaSmiTopo(text, path));
      NodeInventory smi = SmiTopoToInventory(matrix, path);
      if (node) {
        ORRERY_RETURN_IF_ERROR(MergeSmiTopo(std::move(smi), *node));
      } else {
        node = std::move(smi);
      }
    }
    return std::move(*node);
  }
  ORRERY_ASSIGN_OR_RETURN(NodeInventory node, ReadHwlocLocal());
  AddLiveNvLink(inputs, node);
  AddInfinibandPorts(inputs.infiniband_root, node);
  return node;
}

std::optional<DeviceType> MatchDevice(const FoundGpu& gpu, const DeviceCatalogue& catalogue) {
  if (gpu.pci_device_id) {
    const std::string id = Hex4(*gpu.pci_device_id);
    for (const DeviceType& d : catalogue.devices) {
      for (const std::string& known : d.pci_device_ids) {
        std::string k = Lower(known);
        if (k.starts_with("0x")) k = k.substr(2);
        if (k == id) return d;
      }
    }
  }
  if (!gpu.model.empty()) {
    const std::string model = Lower(gpu.model);
    for (const DeviceType& d : catalogue.devices) {
      if ((!d.model.empty() && Lower(d.model) == model) || Lower(d.name) == model) return d;
    }
  }
  return std::nullopt;
}

namespace {

// "Tesla V100-SXM3-32GB-H (PCI 10de:1db8)", or what is known of it.
std::string DescribeGpu(const FoundGpu& gpu) {
  std::string s = gpu.model.empty() ? "a GPU the source does not name" : gpu.model;
  if (gpu.pci_device_id) {
    s += " (PCI " + Hex4(gpu.pci_vendor_id.value_or(0)) + ":" + Hex4(*gpu.pci_device_id) + ")";
  }
  return s;
}

// The fabric of a GPU node and its per-device bandwidth (nullopt: unknown).
struct FabricFinding {
  FabricKind kind = FabricKind::kPcie;
  std::optional<Bandwidth> per_device;
  std::string how;  // where the figure comes from
};

FabricFinding FindFabric(const NodeInventory& node, const std::optional<NvLinkGeneration>& gen) {
  const size_t g = node.gpus.size();
  const NvLinkInventory& nv = node.nvlink;
  FabricFinding f;
  // hwloc's NVLinkBandwidth matrix: bandwidths as measured by the export.
  if (!nv.bandwidth.empty()) {
    Bandwidth to_switch = nv.to_switches.empty() ? Bandwidth::Zero() : nv.to_switches[0];
    std::optional<Bandwidth> direct;
    bool all_switch = node.nvswitches > 0 && !nv.to_switches.empty();
    bool any_direct = false;
    for (size_t a = 0; a < g; ++a) {
      if (all_switch) {
        all_switch = nv.to_switches[a] > Bandwidth::Zero();
        to_switch = std::min(to_switch, nv.to_switches[a]);
      }
      Bandwidth sum = Bandwidth::Zero();
      for (size_t b = 0; b < g; ++b) sum = sum + nv.bandwidth[a][b];
      any_direct = any_direct || sum > Bandwidth::Zero();
      direct = direct ? std::min(*direct, sum) : sum;
    }
    if (all_switch) {
      return {FabricKind::kNvSwitch, to_switch,
              "hwloc NVLinkBandwidth: each GPU's links into the NVSwitches"};
    }
    if (any_direct) {
      return {FabricKind::kNvLinkMesh, direct,
              "hwloc NVLinkBandwidth: each GPU's direct links to other GPUs (least over GPUs)"};
    }
  }
  // Link counts (nvidia-smi's NV#, NVML): bandwidth = links × per-link rate.
  auto rate = [&](int links) -> std::optional<Bandwidth> {
    if (!gen) return std::nullopt;
    return gen->per_link * static_cast<double>(links);
  };
  const std::string per_link_how =
      gen ? "links × " + FormatGBps(gen->per_link) + " GB/s per link (NVLink" +
                std::to_string(gen->version) + ")"
          : "NVLink generation unknown: the per-link rate is not known";
  if (!nv.switch_links.empty() &&
      std::any_of(nv.switch_links.begin(), nv.switch_links.end(), [](int l) { return l > 0; })) {
    const int links = *std::min_element(nv.switch_links.begin(), nv.switch_links.end());
    return {FabricKind::kNvSwitch, rate(links),
            "NVML: " + std::to_string(links) + " links into NVSwitches, " + per_link_how};
  }
  if (!nv.links.empty()) {
    // nvidia-smi: NV# on every pair, more than a GPU can have: NVSwitch.
    bool every_pair = g > 1;
    int pair_links = 0;
    int least_sum = kMaxNvLinksPerGpu * static_cast<int>(g);
    for (size_t a = 0; a < g; ++a) {
      int sum = 0;
      for (size_t b = 0; b < g; ++b) {
        if (a == b) continue;
        sum += nv.links[a][b];
        if (nv.links[a][b] == 0) every_pair = false;
        if (pair_links == 0) pair_links = nv.links[a][b];
        if (nv.links[a][b] != pair_links) every_pair = false;
      }
      least_sum = std::min(least_sum, sum);
    }
    if (every_pair && pair_links * static_cast<int>(g - 1) > kMaxNvLinksPerGpu) {
      return {FabricKind::kNvSwitch, rate(pair_links),
              "nvidia-smi: NV" + std::to_string(pair_links) +
                  " between every pair, more links than a GPU has, so NVSwitch; " + per_link_how};
    }
    return {FabricKind::kNvLinkMesh, rate(least_sum),
            "NVLink links to other GPUs (least over GPUs: " + std::to_string(least_sum) + "), " +
                per_link_how};
  }
  f.kind = FabricKind::kPcie;
  std::optional<Bandwidth> pcie;
  for (const FoundGpu& gpu : node.gpus) {
    if (!gpu.pcie_bandwidth) {
      pcie.reset();
      break;
    }
    pcie = pcie ? std::min(*pcie, *gpu.pcie_bandwidth) : *gpu.pcie_bandwidth;
  }
  f.per_device = pcie;
  f.how = pcie ? "the GPUs' PCIe link speed (hwloc)" : "PCIe link speed not in the source";
  return f;
}

}  // namespace

Result<NodeDescription> DescribeNode(NodeInventory node, const DeviceCatalogue& catalogue,
                                     const DescribeOptions& options) {
  const std::optional<std::string>& device_name = options.device;
  NodeDescription d;
  d.notes = node.notes;
  ClusterSpec& spec = d.spec;
  spec.name = "discovered";
  spec.description = "discovered from " + node.source;
  NodeType type;
  type.name = node.machine_model.empty() ? "node" : node.machine_model;
  type.count = 1;

  if (node.gpus.empty()) {
    d.notes.push_back("no GPU found: a CPU node");
    if (catalogue.cpu_node && !catalogue.cpu_node->node_types.empty()) {
      type = catalogue.cpu_node->node_types.front();
      spec.network = catalogue.cpu_node->network;
    } else {
      type.device.name = "cpu-core";
      type.device.source = "not known: no CPU node in the catalogue";
      type.fabric.kind = FabricKind::kSharedMemory;
    }
    if (node.source != "this machine" && node.cpu.cores > 0) {
      type.devices_per_node = node.cpu.cores;  // the exported machine's cores
    }
    type.count = 1;
    d.nvlink_per_gpu = Bandwidth::Zero();
    spec.node_types.push_back(std::move(type));
    d.inventory = std::move(node);
    return d;
  }

  // The device type.
  const FoundGpu& first = node.gpus.front();
  for (const FoundGpu& gpu : node.gpus) {
    if (gpu.model != first.model || gpu.pci_device_id != first.pci_device_id) {
      d.notes.push_back("GPUs differ (" + DescribeGpu(first) + " and " + DescribeGpu(gpu) +
                        "); the node is described by the first");
      break;
    }
  }
  std::optional<DeviceType> device;
  if (device_name) {
    auto it = std::find_if(catalogue.devices.begin(), catalogue.devices.end(),
                           [&](const DeviceType& t) { return t.name == *device_name; });
    if (it == catalogue.devices.end()) {
      std::string names;
      for (const DeviceType& t : catalogue.devices) names += (names.empty() ? "" : ", ") + t.name;
      return NotFoundError("device '" + *device_name + "' is not a known device; known: " + names);
    }
    device = *it;
  } else {
    device = MatchDevice(first, catalogue);
  }
  if (device) {
    type.device = *device;
  } else {
    d.device_known = false;
    d.unknown_device = DescribeGpu(first);
    type.device.name = "unknown";
    type.device.model = first.model;
    if (first.pci_device_id) type.device.pci_device_ids = {"0x" + Hex4(*first.pci_device_id)};
    type.device.source = "not a device Orrery knows: no figures";
    d.notes.push_back(first.model.empty()
                          ? "the source does not name the GPUs: pass --device NAME"
                          : "GPU " + d.unknown_device +
                                " is not a device Orrery knows: its figures are not filled in");
  }
  type.devices_per_node = static_cast<int>(node.gpus.size());

  // The fabric.
  d.nvlink_generation =
      NvLinkGenerationOf(device ? device->name + " " + device->model : first.model);
  FabricFinding fabric = FindFabric(node, d.nvlink_generation);
  type.fabric.kind = fabric.kind;
  type.fabric.bandwidth_per_device = fabric.per_device.value_or(Bandwidth::Zero());
  if (auto lat = catalogue.fabric_latency.find(fabric.kind);
      lat != catalogue.fabric_latency.end()) {
    type.fabric.latency = lat->second;
  }
  if (fabric.kind == FabricKind::kPcie) {
    d.nvlink_per_gpu = Bandwidth::Zero();
  } else {
    d.nvlink_per_gpu = fabric.per_device;
  }
  d.notes.push_back(std::string(FabricKindName(fabric.kind)) +
                    (fabric.per_device ? ": " : " bandwidth unknown: ") + fabric.how);

  // Rails: NICs nearest some GPU.
  std::set<double> rates;
  bool rate_unknown = false;
  for (const FoundNic& nic : node.nics) {
    if (nic.nearest_gpus.empty()) continue;
    ++d.rail_nics;
    Nic spec_nic;
    spec_nic.devices = nic.nearest_gpus;
    const std::optional<Bandwidth> rate = options.nic_rate ? options.nic_rate : nic.rate;
    spec_nic.bandwidth = rate.value_or(Bandwidth::Zero());
    if (rate) {
      rates.insert(rate->BytesPerSecond());
    } else {
      rate_unknown = true;
    }
    type.nics.push_back(std::move(spec_nic));
  }
  // GPUs no NIC is nearest to use the least loaded rail.
  if (!type.nics.empty()) {
    std::vector<bool> served(type.devices_per_node, false);
    for (const Nic& nic : type.nics) {
      for (int dev : nic.devices) served[dev] = true;
    }
    std::vector<int> unserved;
    for (int dev = 0; dev < type.devices_per_node; ++dev) {
      if (served[dev]) continue;
      unserved.push_back(dev);
      auto least = std::min_element(
          type.nics.begin(), type.nics.end(),
          [](const Nic& a, const Nic& b) { return a.devices.size() < b.devices.size(); });
      least->devices.push_back(dev);
    }
    if (!unserved.empty()) {
      std::string list;
      for (int dev : unserved) list += (list.empty() ? "" : ", ") + std::to_string(dev);
      d.notes.push_back("GPUs " + list +
                        " have no NIC nearby; the spec routes them through the least "
                        "loaded rail");
    }
  }
  if (d.rail_nics > 0 && !rate_unknown && rates.size() == 1) {
    d.nic_bandwidth = Bandwidth::FromBytesPerSecond(*rates.begin());
  }
  if (d.rail_nics > 0 && rate_unknown) {
    d.notes.push_back(
        "NIC line rate unknown: the source does not give it (live discovery "
        "reads it from /sys/class/infiniband)");
  }
  if (catalogue.network) {
    spec.network = *catalogue.network;
    d.notes.push_back(
        "network between nodes: not visible from one node; the presets' nominal "
        "fat-tree is written so that the spec scales to several nodes");
  }
  spec.node_types.push_back(std::move(type));
  d.inventory = std::move(node);
  return d;
}

Status CheckComplete(const NodeDescription& d) {
  std::vector<std::string> missing;
  if (!d.device_known) {
    missing.push_back("the GPU " + d.unknown_device +
                      " is not a device Orrery knows (pass --device with a known device, or "
                      "write its figures in the spec)");
  }
  const NodeType& t = d.spec.node_types.at(0);
  if (t.fabric.bandwidth_per_device <= Bandwidth::Zero() &&
      t.fabric.kind != FabricKind::kSharedMemory) {
    missing.push_back(std::string("the ") + std::string(FabricKindName(t.fabric.kind)) +
                      " bandwidth is unknown (the NVLink generation or PCIe link speed is not "
                      "in the source; --device names the GPU)");
  }
  for (const Nic& nic : t.nics) {
    if (nic.bandwidth <= Bandwidth::Zero()) {
      missing.push_back("the NICs' line rate is unknown (pass --nic-gbps)");
      break;
    }
  }
  if (missing.empty()) return Status::Ok();
  std::string message = "the discovered spec is incomplete: ";
  for (size_t i = 0; i < missing.size(); ++i) message += (i ? "; " : "") + missing[i];
  return FailedPreconditionError(message);
}

}  // namespace orrery::topology
