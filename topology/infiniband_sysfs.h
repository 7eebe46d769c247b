// InfiniBand (and RoCE) adapters as Linux shows them under
// /sys/class/infiniband: one directory per adapter (mlx5_0), one per port
// under ports/, each with
//   rate        "200 Gb/sec (4X HDR)"   the negotiated line rate
//   state       "4: ACTIVE"
//   phys_state  "5: LinkUp"
//   link_layer  "InfiniBand" or "Ethernet"
// and the adapter's PCI device behind the `device` link (its NUMA node in
// device/numa_node).
//
// Thread-safety: plain functions.
#ifndef ORRERY_TOPOLOGY_INFINIBAND_SYSFS_H_
#define ORRERY_TOPOLOGY_INFINIBAND_SYSFS_H_

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/units.h"

namespace orrery::topology {

struct InfinibandPort {
  std::string adapter;  // "mlx5_0"
  int port = 1;
  std::optional<Bandwidth> rate;  // per direction; nullopt when unreadable
  std::string rate_text;          // as sysfs writes it: "200 Gb/sec (4X HDR)"
  std::string state;              // "ACTIVE", "DOWN", "INIT"
  std::string physical_state;     // "LinkUp", "Disabled"
  std::string link_layer;         // "InfiniBand", "Ethernet"
  std::string pci_busid;          // "0000:0c:00.0"; empty when unknown
  std::optional<int> numa_node;   // nullopt when unknown or -1
};

// Reads every port of every adapter under `root` (normally
// /sys/class/infiniband), sorted by adapter name and port. A missing root
// is not an error: there are no adapters (an empty list). A port whose rate
// cannot be parsed is kept with rate nullopt.
Result<std::vector<InfinibandPort>> ReadInfinibandPorts(
    const std::string& root = "/sys/class/infiniband");

// "200 Gb/sec (4X HDR)" → Gbps(200); nullopt when the text has no rate.
std::optional<Bandwidth> ParseInfinibandRate(const std::string& text);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_INFINIBAND_SYSFS_H_
