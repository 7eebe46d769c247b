// PresetCatalogue, kept in its own file so that discovery links without the
// presets where a caller brings its own catalogue (the tests do both).
#include "topology/discovery.h"
#include "topology/presets.h"

namespace orrery::topology {

DeviceCatalogue PresetCatalogue() {
  DeviceCatalogue catalogue;
  for (const std::string& name : DevicePresetNames()) {
    Result<DeviceType> device = DevicePreset(name);
    if (device.ok()) catalogue.devices.push_back(*std::move(device));
  }
  for (const std::string& name : ClusterPresetNames()) {
    if (name == "cpu-local") continue;  // read from this machine: not needed here
    Result<ClusterSpec> preset = ClusterPreset(name);
    if (!preset.ok() || preset->node_types.empty()) continue;
    const IntraNodeFabric& f = preset->node_types.front().fabric;
    catalogue.fabric_latency.emplace(f.kind, f.latency);
    if (!catalogue.network && !preset->network.tiers.empty()) catalogue.network = preset->network;
  }
  Result<ClusterSpec> cpu = ClusterPreset("cpu-local");
  if (cpu.ok()) catalogue.cpu_node = *std::move(cpu);
  return catalogue;
}

}  // namespace orrery::topology
