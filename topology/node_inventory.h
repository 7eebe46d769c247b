// NodeInventory: what discovery found in one node, before it becomes a
// ClusterSpec.
//
// Each reader (hwloc, `nvidia-smi topo -m`, NVML, /sys/class/infiniband)
// fills the parts it can see; facts a reader cannot see stay empty or
// nullopt, never a made-up default, so the report can say "unknown". GPUs
// and NICs are indexed in the order the source lists them (GPU0, GPU1, ...).
//
// Paths between two PCI devices use nvidia-smi's vocabulary (its `topo -m`
// legend): PIX = through at most one PCIe switch, PXB = through several PCIe
// bridges without the host bridge, PHB = through a PCIe host bridge, NODE =
// between host bridges of one NUMA node, SYS = across the SMP interconnect
// between NUMA nodes, NV = a bonded set of NVLinks.
//
// Thread-safety: plain values.
#ifndef ORRERY_TOPOLOGY_NODE_INVENTORY_H_
#define ORRERY_TOPOLOGY_NODE_INVENTORY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/units.h"

namespace orrery::topology {

// How two devices of a node reach each other, best first.
enum class PathKind { kSelf, kNvLink, kPix, kPxb, kPhb, kNode, kSys };

// "X", "NV", "PIX", "PXB", "PHB", "NODE", "SYS".
std::string_view PathKindName(PathKind kind);

// The CPU side of a node. Counts are 0 where the source says nothing.
struct CpuInventory {
  std::string model;  // "Intel(R) Xeon(R) Platinum 8174 CPU @ 3.10GHz"; empty if unknown
  int packages = 0;
  int numa_nodes = 0;
  int cores = 0;
  int hardware_threads = 0;  // hwloc's PUs
  Bytes memory;              // sum over NUMA nodes; zero if unknown
};

struct FoundGpu {
  std::string label;      // as the source names it: "GPU0", "nvml0", "cuda0"
  std::string model;      // "Tesla V100-SXM3-32GB-H"; empty when the source does not say
  std::string pci_busid;  // "0000:34:00.0"; empty when unknown
  std::optional<uint16_t> pci_vendor_id;  // 0x10de for NVIDIA
  std::optional<uint16_t> pci_device_id;  // 0x1db8
  std::optional<int> numa_node;
  std::string cpu_affinity;  // "0-35,72-107" (nvidia-smi); empty when unknown
  // The PCIe link of the device, per direction; nullopt when unknown.
  std::optional<Bandwidth> pcie_bandwidth;
};

struct FoundNic {
  std::string name;        // "mlx5_0", or "NIC0" resolved through the NIC legend
  std::string link_layer;  // "InfiniBand", "Ethernet"; empty when unknown
  std::string pci_busid;   // empty when unknown
  std::optional<int> numa_node;
  // The GPUs on the NIC's best PCIe path (its rail), and that path. Empty
  // when every GPU is across the system (SYS): a storage or management NIC.
  std::vector<int> nearest_gpus;
  std::optional<PathKind> nearest_path;
  std::optional<Bandwidth> rate;  // per direction, from sysfs; nullopt when unknown
  std::string state;              // "ACTIVE", "DOWN"; empty when unknown
};

// NVLink between the GPUs of a node.
struct NvLinkInventory {
  // links[i][j]: NVLinks bonded between GPU i and GPU j (nvidia-smi's NV#,
  // or NVML's count); empty when the source does not count links.
  std::vector<std::vector<int>> links;
  // bandwidth[i][j]: per-direction bandwidth of the direct GPU i ↔ GPU j
  // links (hwloc's NVLinkBandwidth); empty when the source gives none.
  std::vector<std::vector<Bandwidth>> bandwidth;
  // Per GPU: per-direction bandwidth into NVSwitches, and into the CPU
  // (POWER8/9 NVLink to the host); empty when the source gives none.
  std::vector<Bandwidth> to_switches;
  std::vector<Bandwidth> to_cpu;
  // Per GPU: NVLinks into NVSwitches (NVML); empty when not counted.
  std::vector<int> switch_links;

  bool Empty() const {
    return links.empty() && bandwidth.empty() && to_switches.empty() && switch_links.empty();
  }
};

struct NodeInventory {
  std::string source;         // the file(s) read, or "this machine"
  std::string machine_model;  // DMI product name ("NVIDIA DGX-2H"); empty if unknown
  CpuInventory cpu;
  std::vector<FoundGpu> gpus;
  int nvswitches = 0;  // NVSwitch chips seen as PCI devices
  NvLinkInventory nvlink;
  // gpu_paths[i][j]: the path between GPU i and GPU j; empty when unknown.
  std::vector<std::vector<PathKind>> gpu_paths;
  std::vector<FoundNic> nics;
  // What a reader could not see or chose to skip, in a person's words
  // ("NVML: libnvidia-ml.so.1 not found; NVLink not read").
  std::vector<std::string> notes;
};

// Groups of GPUs that share a PCIe switch: the connected components of the
// PIX/PXB relation of `gpu_paths`, each sorted, in order of their first GPU.
// Empty when gpu_paths is.
std::vector<std::vector<int>> PcieSwitchGroups(const NodeInventory& node);

// For each NIC without nearest_gpus, fills them from `nic_paths` (one row of
// paths to the GPUs per NIC): the GPUs at the best path when that path is
// better than SYS.
void AssignNearestGpus(const std::vector<std::vector<PathKind>>& nic_paths,
                       std::vector<FoundNic>& nics);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_NODE_INVENTORY_H_
