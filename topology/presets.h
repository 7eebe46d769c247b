// Built-in device types and clusters, each with datasheet figures and a
// comment citing the source (see ../shared/REFERENCES.md §1).
//
// Cluster presets: dgx-a100-40gb, dgx-a100-80gb, dgx-h100, dgx-h200,
// dgx-b200, gb200-nvl72, pcie-l40s-8, and cpu-local (this machine's cores,
// read when asked for). A preset is one node; scale it with
// ClusterSpec::WithNodes or ResolveCluster's `nodes`.
#ifndef ORRERY_TOPOLOGY_PRESETS_H_
#define ORRERY_TOPOLOGY_PRESETS_H_

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "topology/cluster_spec.h"

namespace orrery::topology {

std::vector<std::string> DevicePresetNames();
Result<DeviceType> DevicePreset(const std::string& name);

std::vector<std::string> ClusterPresetNames();
// One node of the named preset. NotFound names the known presets.
Result<ClusterSpec> ClusterPreset(const std::string& name);

// A preset name or the path of a cluster JSON file, scaled to `nodes` when
// given.
Result<ClusterSpec> ResolveCluster(const std::string& name_or_path,
                                   std::optional<int> nodes = std::nullopt);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_PRESETS_H_
