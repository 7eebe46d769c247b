// Reading a node with hwloc: from this machine, or from an XML export made by
// `lstopo --of xml` (or hwloc-gather-topology) on a machine the user only has
// a file from. hwloc itself loads the export (hwloc_topology_set_xml), with
// every PCI and OS device kept (HWLOC_TYPE_FILTER_KEEP_ALL).
//
// What is read:
//   - packages, NUMA nodes, cores, hardware threads, memory (sum of NUMA
//     nodes' local memory), the CPU model and the DMI product name;
//   - GPUs: PCI devices of class 0x0302 (3D controller) or 0x0300 (VGA) with
//     NVIDIA's vendor id 0x10de, named by the GPUModel of their CUDA / NVML /
//     OpenCL OS devices when the export has them;
//   - NVSwitch chips: PCI devices hwloc marks with subtype "NVSwitch";
//   - network adapters: OpenFabrics OS devices (mlx5_0, ...) and network OS
//     devices under a PCI device of class 0x02xx / 0x0207 (InfiniBand);
//   - the PCIe path between every two GPUs and from each NIC to each GPU
//     (nvidia-smi's PIX/PXB/PHB/NODE/SYS, derived from where the devices meet
//     in hwloc's tree);
//   - the NVLink bandwidth matrix hwloc exports as the distances structure
//     "NVLinkBandwidth": per-direction bandwidth in MB/s between GPUs, to
//     NVSwitches and to CPUs, 0 where there is no direct link (hwloc
//     documentation, "Topology Attributes: Distances", v2.9).
//
// Thread-safety: plain functions; each call owns its hwloc topology.
#ifndef ORRERY_TOPOLOGY_HWLOC_READER_H_
#define ORRERY_TOPOLOGY_HWLOC_READER_H_

#include <string>

#include "core/status.h"
#include "topology/node_inventory.h"

namespace orrery::topology {

// Reads an hwloc XML export. Errors name the file and say what is wrong: a
// missing or unreadable file (IoError), a file that is not an hwloc export, one cut short
// before </topology>, or XML hwloc rejects (InvalidArgument).
Result<NodeInventory> ReadHwlocXml(const std::string& path);

// Reads this machine. Fails only when hwloc cannot load the local topology.
Result<NodeInventory> ReadHwlocLocal();

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_HWLOC_READER_H_
