#include "topology/nvml_reader.h"

#include <dlfcn.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

namespace orrery::topology {
namespace {

// The few NVML declarations used here, as nvml.h (CUDA 12, NVML API v11+)
// defines them; only these layouts and entry points are relied on.
using NvmlReturn = int;  // nvmlReturn_t; NVML_SUCCESS = 0
constexpr NvmlReturn kNvmlSuccess = 0;
using NvmlDevice = struct NvmlDeviceOpaque*;    // nvmlDevice_t
constexpr unsigned kNvmlNvLinkMaxLinks = 18;    // NVML_NVLINK_MAX_LINKS
constexpr int kNvmlFeatureEnabled = 1;          // NVML_FEATURE_ENABLED
constexpr int kNvmlNvLinkDeviceTypeGpu = 0;     // NVML_NVLINK_DEVICE_TYPE_GPU
constexpr int kNvmlNvLinkDeviceTypeIbmNpu = 1;  // NVML_NVLINK_DEVICE_TYPE_IBMNPU (a CPU)
constexpr int kNvmlNvLinkDeviceTypeSwitch = 2;  // NVML_NVLINK_DEVICE_TYPE_SWITCH
struct NvmlPciInfo {                            // nvmlPciInfo_t
  char bus_id_legacy[16];
  unsigned domain;
  unsigned bus;
  unsigned device;
  unsigned pci_device_id;  // device id << 16 | vendor id
  unsigned pci_subsystem_id;
  char bus_id[32];
};

struct Library {
  void* handle = nullptr;
  ~Library() {
    if (handle) dlclose(handle);
  }
  template <typename F>
  F Symbol(const char* name) const {
    return reinterpret_cast<F>(dlsym(handle, name));
  }
};

// "00000000:34:00.0" → "0000:34:00.0", as hwloc writes bus ids.
std::string ShortBusId(const char* id) {
  std::string s(id);
  const size_t colon = s.find(':');
  if (colon != std::string::npos && colon > 4) s = s.substr(colon - 4);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Result<NvmlReading> ReadNvml(const std::string& library) {
  Library lib;
  lib.handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib.handle) {
    const char* why = dlerror();
    return UnavailableError("NVML: cannot load " + library + " (" + (why ? why : "not found") +
                            "); no NVIDIA driver here");
  }
  auto init = lib.Symbol<NvmlReturn (*)()>("nvmlInit_v2");
  auto shutdown = lib.Symbol<NvmlReturn (*)()>("nvmlShutdown");
  auto count_fn = lib.Symbol<NvmlReturn (*)(unsigned*)>("nvmlDeviceGetCount_v2");
  auto handle_fn =
      lib.Symbol<NvmlReturn (*)(unsigned, NvmlDevice*)>("nvmlDeviceGetHandleByIndex_v2");
  auto name_fn = lib.Symbol<NvmlReturn (*)(NvmlDevice, char*, unsigned)>("nvmlDeviceGetName");
  auto pci_fn = lib.Symbol<NvmlReturn (*)(NvmlDevice, NvmlPciInfo*)>("nvmlDeviceGetPciInfo_v3");
  auto state_fn =
      lib.Symbol<NvmlReturn (*)(NvmlDevice, unsigned, int*)>("nvmlDeviceGetNvLinkState");
  auto remote_pci_fn = lib.Symbol<NvmlReturn (*)(NvmlDevice, unsigned, NvmlPciInfo*)>(
      "nvmlDeviceGetNvLinkRemotePciInfo_v2");
  auto remote_type_fn =
      lib.Symbol<NvmlReturn (*)(NvmlDevice, unsigned, int*)>("nvmlDeviceGetNvLinkRemoteDeviceType");
  if (!init || !shutdown || !count_fn || !handle_fn || !name_fn || !pci_fn || !state_fn ||
      !remote_pci_fn) {
    return UnavailableError("NVML: " + library + " lacks the NVLink entry points (driver too old)");
  }
  if (NvmlReturn r = init(); r != kNvmlSuccess) {
    return UnavailableError("NVML: nvmlInit failed with code " + std::to_string(r) +
                            " (no driver loaded or no GPU)");
  }
  struct Shutdown {
    NvmlReturn (*fn)();
    ~Shutdown() { fn(); }
  } shutdown_on_exit{shutdown};

  unsigned count = 0;
  if (count_fn(&count) != kNvmlSuccess) return UnavailableError("NVML: cannot count GPUs");
  NvmlReading reading;
  std::vector<NvmlDevice> devices(count);
  std::map<std::string, int> by_busid;
  for (unsigned i = 0; i < count; ++i) {
    if (handle_fn(i, &devices[i]) != kNvmlSuccess) {
      return UnavailableError("NVML: cannot open GPU " + std::to_string(i));
    }
    FoundGpu gpu;
    gpu.label = "nvml" + std::to_string(i);
    char name[96] = {};
    if (name_fn(devices[i], name, sizeof(name)) == kNvmlSuccess) gpu.model = name;
    NvmlPciInfo pci{};
    if (pci_fn(devices[i], &pci) == kNvmlSuccess) {
      gpu.pci_busid = ShortBusId(pci.bus_id);
      gpu.pci_vendor_id = static_cast<uint16_t>(pci.pci_device_id & 0xffff);
      gpu.pci_device_id = static_cast<uint16_t>(pci.pci_device_id >> 16);
      by_busid[gpu.pci_busid] = static_cast<int>(i);
    }
    reading.gpus.push_back(std::move(gpu));
  }
  NvLinkInventory& nv = reading.nvlink;
  nv.links.assign(count, std::vector<int>(count, 0));
  nv.switch_links.assign(count, 0);
  for (unsigned i = 0; i < count; ++i) {
    for (unsigned link = 0; link < kNvmlNvLinkMaxLinks; ++link) {
      int active = 0;
      if (state_fn(devices[i], link, &active) != kNvmlSuccess || active != kNvmlFeatureEnabled) {
        continue;
      }
      int type = -1;
      if (remote_type_fn && remote_type_fn(devices[i], link, &type) == kNvmlSuccess &&
          (type == kNvmlNvLinkDeviceTypeSwitch || type == kNvmlNvLinkDeviceTypeIbmNpu)) {
        if (type == kNvmlNvLinkDeviceTypeSwitch) ++nv.switch_links[i];
        continue;
      }
      NvmlPciInfo remote{};
      if (remote_pci_fn(devices[i], link, &remote) != kNvmlSuccess) continue;
      auto peer = by_busid.find(ShortBusId(remote.bus_id));
      if (peer != by_busid.end() && peer->second != static_cast<int>(i)) {
        ++nv.links[i][peer->second];
      } else if (type != kNvmlNvLinkDeviceTypeGpu) {
        ++nv.switch_links[i];  // not a GPU of this node: an NVSwitch
      }
    }
  }
  return reading;
}

}  // namespace orrery::topology
