// Built-in device types and clusters, each with datasheet figures and a
// comment citing the source (see ../shared/REFERENCES.md §1).
//
// Device presets: a100-sxm4-40gb, a100-sxm4-80gb, h100-sxm5-80gb,
// h200-sxm-141gb, b200-sxm-180gb, gb200-186gb, l40s-48gb.
// Cluster presets: dgx-a100-40gb, dgx-a100-80gb, dgx-h100, dgx-h200,
// dgx-b200, gb200-nvl72, pcie-l40s-8, and cpu-local (this machine's cores,
// read when asked for, through hwloc and /proc/cpuinfo). A preset is one
// node; scale it with ClusterSpec::WithNodes or ResolveCluster's `nodes`.
// GPU presets share a two-tier non-blocking rail-optimized fat tree (leaf
// switches of 32 nodes, a spine); cpu-local has no NICs and no network.
// presets.cc says, figure by figure, where each comes from and which are
// assumptions (UNVERIFIED); docs/cluster-spec.md tabulates them.
//
// Thread-safety: the functions are thread-safe (cpu-local reads the
// machine on each call).
#ifndef ORRERY_TOPOLOGY_PRESETS_H_
#define ORRERY_TOPOLOGY_PRESETS_H_

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "topology/cluster_spec.h"

namespace orrery::topology {

// The device preset names, in a fixed order.
std::vector<std::string> DevicePresetNames();
// The named device type. NotFound names the known device presets.
Result<DeviceType> DevicePreset(const std::string& name);

// The cluster preset names, in the order `orrery clusters` lists them.
std::vector<std::string> ClusterPresetNames();
// One node of the named preset. NotFound names the known presets;
// Unavailable when cpu-local cannot read this machine (hwloc failed).
Result<ClusterSpec> ClusterPreset(const std::string& name);

// A preset name, or the path of a cluster JSON file (a name with a '/', a
// ".json" suffix, or an existing file), scaled to `nodes` when given and
// then validated (a one-node preset without NICs cannot be scaled). An
// unknown name is NotFound naming the presets.
Result<ClusterSpec> ResolveCluster(const std::string& name_or_path,
                                   std::optional<int> nodes = std::nullopt);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_PRESETS_H_
