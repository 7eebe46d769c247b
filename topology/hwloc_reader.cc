#include "topology/hwloc_reader.h"

#include <hwloc.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "core/file.h"

namespace orrery::topology {
namespace {

constexpr uint16_t kNvidiaVendorId = 0x10de;
constexpr uint16_t kPciClass3dController = 0x0302;
constexpr uint16_t kPciClassVga = 0x0300;

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

Result<TopologyPtr> NewTopology() {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) {
    return InternalError(std::string("hwloc_topology_init failed: ") + std::strerror(errno));
  }
  TopologyPtr topology(raw);
  // Keep every PCI device and bridge (the PCIe tree) and every OS device.
  hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_ALL);
  return topology;
}

std::string Info(hwloc_obj_t obj, const char* name) {
  const char* v = obj ? hwloc_obj_get_info_by_name(obj, name) : nullptr;
  return v ? std::string(v) : std::string();
}

std::string BusId(hwloc_obj_t pci) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04x:%02x:%02x.%01x", pci->attr->pcidev.domain,
                pci->attr->pcidev.bus, pci->attr->pcidev.dev, pci->attr->pcidev.func);
  return buf;
}

bool IsNvidiaGpu(hwloc_obj_t pci) {
  const auto& a = pci->attr->pcidev;
  return a.vendor_id == kNvidiaVendorId &&
         (a.class_id == kPciClass3dController || a.class_id == kPciClassVga);
}

bool IsNvSwitch(hwloc_obj_t pci) {
  return pci->subtype && std::strcmp(pci->subtype, "NVSwitch") == 0;
}

// The NUMA node of an I/O object: the single node of its CPU-side parent.
std::optional<int> NumaNodeOf(hwloc_obj_t obj) {
  hwloc_obj_t parent = obj;
  while (parent && parent->nodeset == nullptr) parent = parent->parent;
  if (!parent || hwloc_bitmap_weight(parent->nodeset) != 1) return std::nullopt;
  return hwloc_bitmap_first(parent->nodeset);
}

bool IsHostBridge(hwloc_obj_t obj) {
  return obj->type == HWLOC_OBJ_BRIDGE && obj->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST;
}

// nvidia-smi's path between two PCI devices, from where they meet in the
// tree: under a PCIe switch (PIX when each is at most one bridge below the
// meeting bridge, PXB otherwise), at a host bridge (PHB), between host
// bridges of one NUMA node (NODE), or across NUMA nodes (SYS).
PathKind PcieBetween(hwloc_obj_t a, hwloc_obj_t b) {
  if (a == b) return PathKind::kSelf;
  std::vector<hwloc_obj_t> up_a;
  for (hwloc_obj_t o = a->parent; o; o = o->parent) up_a.push_back(o);
  int hops_b = 0;
  hwloc_obj_t meet = nullptr;
  for (hwloc_obj_t o = b->parent; o; o = o->parent) {
    if (std::find(up_a.begin(), up_a.end(), o) != up_a.end()) {
      meet = o;
      break;
    }
    ++hops_b;
  }
  if (!meet) return PathKind::kSys;
  const int hops_a = static_cast<int>(std::find(up_a.begin(), up_a.end(), meet) - up_a.begin());
  if (meet->type == HWLOC_OBJ_BRIDGE) {
    if (IsHostBridge(meet)) return PathKind::kPhb;
    return std::max(hops_a, hops_b) <= 1 ? PathKind::kPix : PathKind::kPxb;
  }
  if (meet->type == HWLOC_OBJ_PCI_DEVICE || meet->type == HWLOC_OBJ_OS_DEVICE) {
    return PathKind::kPix;
  }
  if (meet->nodeset && hwloc_bitmap_weight(meet->nodeset) <= 1) return PathKind::kNode;
  return PathKind::kSys;
}

// The PCI device an object sits on (itself when it is one).
hwloc_obj_t PciOf(hwloc_obj_t obj) {
  while (obj && obj->type == HWLOC_OBJ_OS_DEVICE) obj = obj->parent;
  return obj && obj->type == HWLOC_OBJ_PCI_DEVICE ? obj : nullptr;
}

NodeInventory Collect(hwloc_topology_t t, const std::string& source) {
  NodeInventory node;
  node.source = source;
  hwloc_obj_t root = hwloc_get_root_obj(t);
  node.machine_model = Info(root, "DMIProductName");

  node.cpu.packages = std::max(0, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE));
  node.cpu.numa_nodes = std::max(0, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE));
  node.cpu.cores = std::max(0, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE));
  node.cpu.hardware_threads = std::max(0, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU));
  int64_t memory = 0;
  for (int i = 0; i < node.cpu.numa_nodes; ++i) {
    hwloc_obj_t numa = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    memory += static_cast<int64_t>(numa->attr->numanode.local_memory);
  }
  node.cpu.memory = Bytes(memory);
  if (hwloc_obj_t pkg = hwloc_get_obj_by_type(t, HWLOC_OBJ_PACKAGE, 0)) {
    node.cpu.model = Info(pkg, "CPUModel");
  }

  // GPUs and NVSwitches, in PCI order.
  std::vector<hwloc_obj_t> gpu_objs;
  std::map<hwloc_obj_t, int> gpu_index;
  std::vector<hwloc_obj_t> switch_objs;
  for (hwloc_obj_t pci = nullptr; (pci = hwloc_get_next_pcidev(t, pci)) != nullptr;) {
    if (IsNvSwitch(pci)) {
      switch_objs.push_back(pci);
      continue;
    }
    if (!IsNvidiaGpu(pci)) continue;
    FoundGpu gpu;
    gpu.pci_busid = BusId(pci);
    gpu.pci_vendor_id = pci->attr->pcidev.vendor_id;
    gpu.pci_device_id = pci->attr->pcidev.device_id;
    gpu.numa_node = NumaNodeOf(pci);
    if (pci->attr->pcidev.linkspeed > 0) {
      gpu.pcie_bandwidth = GBps(pci->attr->pcidev.linkspeed);  // hwloc: GB/s per direction
    }
    // Its OS devices name it: prefer NVML, then CUDA, then any.
    for (hwloc_obj_t os = pci->io_first_child; os; os = os->next_sibling) {
      if (os->type != HWLOC_OBJ_OS_DEVICE || !os->name) continue;
      const std::string name = os->name;
      const std::string model = Info(os, "GPUModel");
      if (!model.empty() && gpu.model.empty()) gpu.model = model;
      const bool preferred = name.starts_with("nvml") || name.starts_with("cuda");
      if (gpu.label.empty() || (preferred && !gpu.label.starts_with("nvml"))) gpu.label = name;
    }
    if (gpu.label.empty()) gpu.label = gpu.pci_busid;
    gpu_index[pci] = static_cast<int>(gpu_objs.size());
    gpu_objs.push_back(pci);
    node.gpus.push_back(std::move(gpu));
  }
  node.nvswitches = static_cast<int>(switch_objs.size());

  const size_t g = gpu_objs.size();
  if (g > 0) {
    node.gpu_paths.assign(g, std::vector<PathKind>(g, PathKind::kSelf));
    for (size_t a = 0; a < g; ++a) {
      for (size_t b = 0; b < g; ++b) node.gpu_paths[a][b] = PcieBetween(gpu_objs[a], gpu_objs[b]);
    }
  }

  // Network adapters: OpenFabrics OS devices (mlx5_0, hfi1_0, ...).
  std::vector<std::vector<PathKind>> nic_paths;
  for (hwloc_obj_t os = nullptr; (os = hwloc_get_next_osdev(t, os)) != nullptr;) {
    if (os->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS || !os->name) continue;
    FoundNic nic;
    nic.name = os->name;
    hwloc_obj_t pci = PciOf(os);
    if (pci) nic.pci_busid = BusId(pci);
    nic.numa_node = NumaNodeOf(os);
    std::vector<PathKind> paths;
    if (pci) {
      for (hwloc_obj_t gpu : gpu_objs) paths.push_back(PcieBetween(pci, gpu));
    }
    nic_paths.push_back(std::move(paths));
    node.nics.push_back(std::move(nic));
  }
  AssignNearestGpus(nic_paths, node.nics);

  // The NVLink bandwidth matrix, when the export carries one.
  unsigned nr = 1;
  hwloc_distances_s* dist = nullptr;
  if (g > 0 && hwloc_distances_get_by_name(t, "NVLinkBandwidth", &nr, &dist, 0) == 0 && nr >= 1) {
    const unsigned n = dist->nbobjs;
    enum class End { kGpu, kSwitch, kCpu, kOther };
    std::vector<End> ends(n, End::kOther);
    std::vector<int> index(n, -1);
    for (unsigned k = 0; k < n; ++k) {
      hwloc_obj_t obj = dist->objs[k];
      if (!obj) continue;
      hwloc_obj_t pci = PciOf(obj);
      if (pci && gpu_index.count(pci)) {
        ends[k] = End::kGpu;
        index[k] = gpu_index[pci];
      } else if (pci && IsNvSwitch(pci)) {
        ends[k] = End::kSwitch;
      } else if (obj->type == HWLOC_OBJ_PACKAGE || obj->type == HWLOC_OBJ_NUMANODE ||
                 obj->type == HWLOC_OBJ_MACHINE) {
        ends[k] = End::kCpu;
      }
    }
    NvLinkInventory& nv = node.nvlink;
    nv.bandwidth.assign(g, std::vector<Bandwidth>(g, Bandwidth::Zero()));
    nv.to_switches.assign(g, Bandwidth::Zero());
    nv.to_cpu.assign(g, Bandwidth::Zero());
    for (unsigned i = 0; i < n; ++i) {
      if (ends[i] != End::kGpu) continue;
      const int a = index[i];
      for (unsigned j = 0; j < n; ++j) {
        if (i == j) continue;
        const Bandwidth bw = MBps(static_cast<double>(dist->values[i * n + j]));
        switch (ends[j]) {
          case End::kGpu:
            if (index[j] != a) nv.bandwidth[a][index[j]] = bw;
            break;
          case End::kSwitch:
            nv.to_switches[a] = nv.to_switches[a] + bw;
            break;
          case End::kCpu:
            nv.to_cpu[a] = nv.to_cpu[a] + bw;
            break;
          case End::kOther:
            break;
        }
      }
    }
    hwloc_distances_release(t, dist);
  }
  return node;
}

}  // namespace

Result<NodeInventory> ReadHwlocXml(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  if (text.find("<topology") == std::string::npos) {
    return InvalidArgumentError(path +
                                ": not an hwloc XML export (no <topology> element; make one "
                                "with `lstopo --of xml FILE`)");
  }
  std::string_view tail = text;
  while (!tail.empty() && std::isspace(static_cast<unsigned char>(tail.back()))) {
    tail.remove_suffix(1);
  }
  if (!tail.ends_with("</topology>")) {
    return InvalidArgumentError(path + ": truncated hwloc XML export: the file (" +
                                std::to_string(text.size()) +
                                " bytes) ends before its closing </topology>");
  }
  ORRERY_ASSIGN_OR_RETURN(TopologyPtr topology, NewTopology());
  if (hwloc_topology_set_xml(topology.get(), path.c_str()) != 0) {
    return InvalidArgumentError(path + ": hwloc could not read it as an XML export (" +
                                std::strerror(errno) + "): malformed XML or an unknown format");
  }
  if (hwloc_topology_load(topology.get()) != 0) {
    return InvalidArgumentError(path + ": hwloc could not build a topology from it (" +
                                std::strerror(errno) + ")");
  }
  return Collect(topology.get(), path);
}

Result<NodeInventory> ReadHwlocLocal() {
  ORRERY_ASSIGN_OR_RETURN(TopologyPtr topology, NewTopology());
  if (hwloc_topology_load(topology.get()) != 0) {
    return InternalError(std::string("hwloc could not read this machine's topology: ") +
                         std::strerror(errno));
  }
  return Collect(topology.get(), "this machine");
}

}  // namespace orrery::topology
