// Topology discovery: from what a node shows (hwloc, NVML, `nvidia-smi topo
// -m`, /sys/class/infiniband) to the ClusterSpec of that node.
//
// Two steps, each usable alone:
//   1. DiscoverNode reads the sources into a NodeInventory — offline from an
//      hwloc XML export and/or a saved `nvidia-smi topo -m`, or live from this
//      machine (hwloc; NVLink through NVML when a driver is present, else
//      `nvidia-smi topo -m` when the command exists; InfiniBand ports from
//      sysfs).
//   2. DescribeNode turns the inventory into a one-node ClusterSpec:
//      - the device type is the known device (a preset) whose PCI device id
//        or model name matches; an unmatched GPU is reported as unknown with
//        its name and PCI id as found, never given guessed figures;
//      - the fabric is NVSwitch when the GPUs' NVLinks go into NVSwitches, an
//        NVLink mesh when they join GPUs directly, PCIe otherwise; its
//        per-device bandwidth is the sum of the GPU's NVLink bandwidth (from
//        hwloc's matrix, or links × the per-link rate of the NVLink
//        generation), or its PCIe link;
//      - NICs are the adapters nearest to some GPU (rails), with the sysfs
//        line rate when known.
//
// Thread-safety: plain functions.
#ifndef ORRERY_TOPOLOGY_DISCOVERY_H_
#define ORRERY_TOPOLOGY_DISCOVERY_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "topology/cluster_spec.h"
#include "topology/node_inventory.h"

namespace orrery::topology {

// An NVLink generation and its per-link, per-direction rate.
struct NvLinkGeneration {
  int version = 0;        // 1 (P100) ... 5 (B200)
  int links_per_gpu = 0;  // on the SXM parts
  Bandwidth per_link;     // per direction
};

// The generation of a GPU named by a preset name or a driver's model string
// ("h100-sxm5-80gb", "NVIDIA A100-SXM4-40GB", "Tesla V100-SXM3-32GB-H");
// nullopt for GPUs without NVLink or not in the table. Figures in the .cc,
// cited (REFERENCES.md §1).
std::optional<NvLinkGeneration> NvLinkGenerationOf(std::string_view device);

// A GPU has at most this many NVLinks (H100, B200 and GB200: 18 links;
// REFERENCES.md §1). nvidia-smi's NV# between every pair of n GPUs with
// # × (n-1) above it can only be NVSwitch: each pair shows all of a GPU's
// links because the switches are between them.
inline constexpr int kMaxNvLinksPerGpu = 18;

// The devices and CPU node discovery matches against.
struct DeviceCatalogue {
  std::vector<DeviceType> devices;
  // The spec of this machine as a CPU node, used when a live node has no GPU.
  std::optional<ClusterSpec> cpu_node;
  // One-hop latency of each fabric kind, which discovery cannot measure,
  // taken from the presets (the first preset of that kind); absent kinds
  // get zero.
  std::map<FabricKind, Duration> fabric_latency;
  // The network between nodes, which one node cannot see: the presets'
  // nominal fat-tree, so that the spec scales to several nodes.
  std::optional<Network> network;
};

// The built-in presets (topology/presets.h) and cpu-local.
DeviceCatalogue PresetCatalogue();

struct DiscoveryInputs {
  std::optional<std::string> hwloc_xml;        // offline: an hwloc export
  std::optional<std::string> nvidia_smi_topo;  // offline: saved `nvidia-smi topo -m`
  // Live sources, read when neither file is given.
  std::string infiniband_root = "/sys/class/infiniband";
  std::string nvml_library = "libnvidia-ml.so.1";
  std::string nvidia_smi = "nvidia-smi";  // the command; skipped when not on PATH
};

// Reads the node. With files, only the files are read (both: the hwloc
// export gives the machine, the matrix its NVLink counts and NIC affinity;
// they must list the same number of GPUs). Without, this machine is read.
// Errors name the file and what is wrong with it.
Result<NodeInventory> DiscoverNode(const DiscoveryInputs& inputs);

// Folds what sysfs says about InfiniBand adapters into `node`: rate, state
// and link layer of the NICs of the same name (a dual-port adapter's rate is
// the sum of its active ports), and adapters the node did not list.
void AddInfinibandPorts(const std::string& infiniband_root, NodeInventory& node);

// The node as a ClusterSpec, and what a person needs to know about it.
struct NodeDescription {
  NodeInventory inventory;
  ClusterSpec spec;  // one node type, count 1
  // True when the GPUs matched a known device (or there are none).
  bool device_known = true;
  // For an unknown device: "Tesla V100-SXM3-32GB-H (PCI 10de:1db8)".
  std::string unknown_device;
  std::optional<NvLinkGeneration> nvlink_generation;
  // Per-GPU NVLink bandwidth, per direction: zero when there is no NVLink,
  // nullopt when there is NVLink at an unknown rate.
  std::optional<Bandwidth> nvlink_per_gpu;
  int rail_nics = 0;  // NICs nearest some GPU
  // Per adapter, when every rail NIC has the same known rate.
  std::optional<Bandwidth> nic_bandwidth;
  // What could not be found or was assumed, in a person's words.
  std::vector<std::string> notes;
};

// What the person knows that the sources do not say.
struct DescribeOptions {
  // Names the GPUs' device type from the catalogue (for sources that do not
  // name them, like `nvidia-smi topo -m`).
  std::optional<std::string> device;
  // The line rate of the rail NICs, for sources that do not give it.
  std::optional<Bandwidth> nic_rate;
};

// Builds the spec of `node`. NotFound, listing the known names, when
// options.device is not in the catalogue. GPUs that no NIC is nearest to
// (they reach every NIC across the system) are served by the rail NIC with
// the fewest GPUs, so that every GPU has a way out of the node.
Result<NodeDescription> DescribeNode(NodeInventory node, const DeviceCatalogue& catalogue,
                                     const DescribeOptions& options = {});

// Why the spec cannot be used yet (an unknown device, an unknown fabric or
// NIC bandwidth), with what to pass to fill it in; OK when it can.
Status CheckComplete(const NodeDescription& description);

// The known device matching `gpu`: by PCI device id, then by model string
// (case-insensitive equality with a device's `model` or `name`).
std::optional<DeviceType> MatchDevice(const FoundGpu& gpu, const DeviceCatalogue& catalogue);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_DISCOVERY_H_
