// NVLink connectivity read through NVML, the NVIDIA driver's management
// library, loaded at run time with dlopen("libnvidia-ml.so.1"): Orrery has no
// build-time dependency on the driver, and a machine without one simply has
// nothing to read.
//
// For every GPU: its name and PCI identity, and for each of its NVLinks
// (up to NVML_NVLINK_MAX_LINKS = 18) whether the link is active and what is
// at its far end — another GPU (counted in `links`) or an NVSwitch (counted
// in `switch_links`). Bandwidth is not read here: it is links × the per-link
// rate of the GPU's NVLink generation (topology/discovery.h).
//
// Thread-safety: NVML is initialised and shut down within each call; calls
// may run concurrently (NVML reference-counts nvmlInit).
#ifndef ORRERY_TOPOLOGY_NVML_READER_H_
#define ORRERY_TOPOLOGY_NVML_READER_H_

#include <string>
#include <vector>

#include "core/status.h"
#include "topology/node_inventory.h"

namespace orrery::topology {

struct NvmlReading {
  std::vector<FoundGpu> gpus;  // label "nvml<i>", model, PCI bus id and ids
  NvLinkInventory nvlink;      // links and switch_links; no bandwidths
};

// Reads the GPUs and their NVLinks. Unavailable (with the reason) when the
// library cannot be loaded, lacks a needed symbol, or nvmlInit fails (no
// driver, no device).
Result<NvmlReading> ReadNvml(const std::string& library = "libnvidia-ml.so.1");

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_NVML_READER_H_
