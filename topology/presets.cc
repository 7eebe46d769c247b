#include "topology/presets.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include <hwloc.h>

#include "topology/cluster_spec_json.h"

namespace orrery::topology {

namespace {

// ---------------------------------------------------------------------------
// Device types. Figures are dense (not 2:4-sparse) peak rates, from NVIDIA's
// spec tables as transcribed in ../shared/REFERENCES.md §1 (✔S there unless
// marked UNVERIFIED). Memory capacities are the datasheet's decimal "GB"
// figure taken as GiB: GiB(80) for "80 GB HBM3". It is the nominal capacity;
// the usable size nvidia-smi reports is smaller (an H100 reports 81559 MiB)
// and the memory model budgets against it with its own reserve. PCI device
// ids are from the pci.ids database (Debian pci.ids 2023.04.11 for A100 and
// H100; later pci.ids entries as printed by lspci for H200, B200, GB200 and
// L40S).

DeviceType MakeDevice(std::string name, std::string model, double fp32, double tf32,
                      double bf16, double fp16, double fp8, int64_t memory_gib,
                      double memory_gbps, std::string pci_id, std::string source) {
  DeviceType d;
  d.name = std::move(name);
  d.model = std::move(model);
  if (fp32 > 0) d.peak[Precision::kFp32] = TFlops(fp32);
  if (tf32 > 0) d.peak[Precision::kTf32] = TFlops(tf32);
  if (bf16 > 0) d.peak[Precision::kBf16] = TFlops(bf16);
  if (fp16 > 0) d.peak[Precision::kFp16] = TFlops(fp16);
  if (fp8 > 0) d.peak[Precision::kFp8] = TFlops(fp8);
  d.memory = GiB(memory_gib);
  d.memory_bandwidth = GBps(memory_gbps);
  d.pci_device_ids = {std::move(pci_id)};
  d.source = std::move(source);
  return d;
}

// No FP8 tensor cores on Ampere: fp8 = 0 leaves it absent.
DeviceType A100Sxm4_40GB() {
  // NVIDIA A100 datasheet: FP32 19.5, TF32 156, BF16/FP16 312 TFLOP/s dense;
  // 40 GB HBM2 at 1,555 GB/s. PCI 10de:20b0 "GA100 [A100 SXM4 40GB]".
  return MakeDevice("a100-sxm4-40gb", "NVIDIA A100-SXM4-40GB", 19.5, 156, 312, 312, 0, 40, 1555,
                    "0x20b0",
                    "NVIDIA A100 Tensor Core GPU datasheet (SXM4 40GB): dense TFLOP/s, 40 GB HBM2, "
                    "1,555 GB/s; REFERENCES.md §1");
}

DeviceType A100Sxm4_80GB() {
  // Same compute as the 40 GB part; 80 GB HBM2e at 2,039 GB/s.
  // PCI 10de:20b2 "GA100 [A100 SXM4 80GB]".
  return MakeDevice("a100-sxm4-80gb", "NVIDIA A100-SXM4-80GB", 19.5, 156, 312, 312, 0, 80, 2039,
                    "0x20b2",
                    "NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB): dense TFLOP/s, 80 GB "
                    "HBM2e, 2,039 GB/s; REFERENCES.md §1");
}

DeviceType H100Sxm5() {
  // NVIDIA H100 datasheet (SXM5): FP32 67, TF32 494.7 (989 sparse), BF16/FP16
  // 989.5 (1,979 sparse), FP8 1,979 (3,958 sparse); 80 GB HBM3 at 3.35 TB/s.
  // 989 TFLOP/s and 3.35 TB/s also in FlashAttention-3 (arXiv 2407.08608) §3.1.
  // PCI 10de:2330 "GH100 [H100 SXM5 80GB]".
  return MakeDevice("h100-sxm5-80gb", "NVIDIA H100 80GB HBM3", 67, 494.7, 989.5, 989.5, 1979, 80,
                    3350, "0x2330",
                    "NVIDIA H100 Tensor Core GPU datasheet (SXM5): dense TFLOP/s, 80 GB HBM3, "
                    "3.35 TB/s; FlashAttention-3 Table 1; REFERENCES.md §1");
}

DeviceType H200Sxm() {
  // NVIDIA H200 datasheet (SXM): compute as H100 SXM5; 141 GB HBM3e at
  // 4.8 TB/s. PCI 10de:2335 "GH100 [H200 SXM 141GB]".
  return MakeDevice("h200-sxm-141gb", "NVIDIA H200", 67, 494.7, 989.5, 989.5, 1979, 141, 4800,
                    "0x2335",
                    "NVIDIA H200 Tensor Core GPU datasheet (SXM): dense TFLOP/s, 141 GB HBM3e, "
                    "4.8 TB/s; REFERENCES.md §1");
}

DeviceType B200() {
  // NVIDIA HGX B200 spec table, per GPU (the 8-GPU figures ÷ 8): FP32 75,
  // TF32 ~1,100 (2.2 PF sparse: the "~" is NVIDIA's), BF16/FP16 2,250 (4.5 PF
  // sparse), FP8 4,500 (9 PF sparse); 180 GB HBM3e at 7.7 TB/s.
  // PCI 10de:2901 "GB100 [B200]".
  return MakeDevice("b200-sxm-180gb", "NVIDIA B200", 75, 1100, 2250, 2250, 4500, 180, 7700,
                    "0x2901",
                    "NVIDIA HGX B200 spec table per GPU: dense TFLOP/s (TF32 approximate), "
                    "180 GB HBM3e, 7.7 TB/s; REFERENCES.md §1");
}

DeviceType GB200() {
  // NVIDIA GB200 NVL72 spec table, per GPU: FP32 80, TF32 1,250 (2.5 PF
  // sparse), BF16/FP16 2,500 (5 PF sparse), FP8 5,000 (10 PF sparse); 186 GB
  // HBM3e at 8 TB/s (older material says 192 GB). PCI 10de:2941 is
  // UNVERIFIED (seen only in third-party lspci listings).
  return MakeDevice("gb200-186gb", "NVIDIA GB200", 80, 1250, 2500, 2500, 5000, 186, 8000,
                    "0x2941",
                    "NVIDIA GB200 NVL72 spec table per GPU: dense TFLOP/s, 186 GB HBM3e, "
                    "8 TB/s; REFERENCES.md §1; PCI id UNVERIFIED");
}

DeviceType L40S() {
  // NVIDIA L40S datasheet: FP32 91.6, TF32 183 (366 sparse), BF16/FP16 362
  // (733 sparse), FP8 733 (1,466 sparse); 48 GB GDDR6 at 864 GB/s.
  // PCI 10de:26b9 "AD102GL [L40S]".
  return MakeDevice("l40s-48gb", "NVIDIA L40S", 91.6, 183, 362, 362, 733, 48, 864, "0x26b9",
                    "NVIDIA L40S datasheet: dense TFLOP/s, 48 GB GDDR6, 864 GB/s; "
                    "REFERENCES.md §1");
}

struct DeviceEntry {
  const char* name;
  DeviceType (*make)();
};
constexpr DeviceEntry kDevices[] = {
    {"a100-sxm4-40gb", A100Sxm4_40GB}, {"a100-sxm4-80gb", A100Sxm4_80GB},
    {"h100-sxm5-80gb", H100Sxm5},      {"h200-sxm-141gb", H200Sxm},
    {"b200-sxm-180gb", B200},          {"gb200-186gb", GB200},
    {"l40s-48gb", L40S},
};

// ---------------------------------------------------------------------------
// Clusters: one node each.

// Nominal latencies, not datasheet figures: one hop through an NVSwitch or a
// PCIe switch, and through a network switch including the cable. The cost
// model's calibrated α terms (NCCL's own hwLat tables, REFERENCES.md §2)
// supersede them.
constexpr double kNvSwitchLatencyUs = 0.5;
constexpr double kPcieLatencyUs = 1.0;
constexpr double kSharedMemoryLatencyUs = 0.1;
constexpr double kSwitchHopLatencyUs = 1.0;

// The default network of the GPU presets: a two-tier, non-blocking,
// rail-optimized fat tree. A leaf switch per rail takes 32 nodes (64-port
// switches, half the ports down and half up, as NVIDIA's DGX SuperPOD
// scalable units of 32 nodes); the spine joins the leaves. An assumption
// for what-if planning, not a measured cluster.
Network FatTree() {
  Network n;
  n.rail_optimized = true;
  NetworkTier leaf;
  leaf.name = "leaf";
  leaf.nodes_per_switch = 32;
  leaf.oversubscription = 1.0;
  leaf.latency = Micros(kSwitchHopLatencyUs);
  NetworkTier spine;
  spine.name = "spine";
  spine.oversubscription = 1.0;
  spine.latency = Micros(kSwitchHopLatencyUs);
  n.tiers = {leaf, spine};
  return n;
}

std::vector<Nic> OneNicPer(int devices_per_nic, int devices_per_node, Bandwidth line_rate) {
  std::vector<Nic> nics;
  for (int k = 0; k < devices_per_node / devices_per_nic; ++k) {
    Nic nic;
    nic.bandwidth = line_rate;
    for (int d = 0; d < devices_per_nic; ++d) nic.devices.push_back(k * devices_per_nic + d);
    nics.push_back(std::move(nic));
  }
  return nics;
}

ClusterSpec GpuNode(std::string name, std::string description, DeviceType device,
                    int devices_per_node, FabricKind fabric, double fabric_gbps_per_dir,
                    double fabric_latency_us, int devices_per_nic, double nic_gbps) {
  NodeType t;
  t.name = name;
  t.count = 1;
  t.devices_per_node = devices_per_node;
  t.device = std::move(device);
  t.fabric.kind = fabric;
  t.fabric.bandwidth_per_device = GBps(fabric_gbps_per_dir);
  t.fabric.latency = Micros(fabric_latency_us);
  t.nics = OneNicPer(devices_per_nic, devices_per_node, Gbps(nic_gbps));
  ClusterSpec spec;
  spec.name = std::move(name);
  spec.description = std::move(description);
  spec.node_types = {std::move(t)};
  spec.network = FatTree();
  return spec;
}

// DGX A100: 8 A100 SXM4 on 6 gen-2 NVSwitches, NVLink3 12 links x 25 GB/s =
// 300 GB/s per direction (600 total); 8 single-port ConnectX-6 HDR
// 200 Gb/s, one per GPU (the storage NIC is left out). REFERENCES.md §1.
ClusterSpec DgxA100(bool large) {
  return GpuNode(large ? "dgx-a100-80gb" : "dgx-a100-40gb",
                 std::string("NVIDIA DGX A100: 8x A100 SXM4 ") + (large ? "80GB" : "40GB") +
                     ", NVSwitch 300 GB/s/dir per GPU, 8x HDR 200 Gb/s",
                 large ? A100Sxm4_80GB() : A100Sxm4_40GB(), 8, FabricKind::kNvSwitch, 300,
                 kNvSwitchLatencyUs, 1, 200);
}

// DGX H100: 8 H100 SXM5 on 4 gen-3 NVSwitches, NVLink4 18 x 25 GB/s =
// 450 GB/s per direction (900 total); 8 single-port ConnectX-7 400 Gb/s
// (carried by 4 OSFP ports), one per GPU; storage BlueField-3s left out.
ClusterSpec DgxH100() {
  return GpuNode("dgx-h100", "NVIDIA DGX H100: 8x H100 SXM5, NVSwitch 450 GB/s/dir per GPU, "
                             "8x ConnectX-7 400 Gb/s",
                 H100Sxm5(), 8, FabricKind::kNvSwitch, 450, kNvSwitchLatencyUs, 1, 400);
}

// DGX H200: as DGX H100 with H200 GPUs (NVLink4 900 GB/s total per GPU).
// Its compute NICs are assumed the DGX H100's 8x ConnectX-7 400 Gb/s:
// UNVERIFIED.
ClusterSpec DgxH200() {
  return GpuNode("dgx-h200", "NVIDIA DGX H200: 8x H200 SXM, NVSwitch 450 GB/s/dir per GPU, "
                             "8x ConnectX-7 400 Gb/s (NICs assumed as DGX H100)",
                 H200Sxm(), 8, FabricKind::kNvSwitch, 450, kNvSwitchLatencyUs, 1, 400);
}

// DGX B200: 8 B200, NVLink5 1.8 TB/s total per GPU (14.4 TB/s / 8) = 900
// GB/s per direction through NVSwitch (switch count UNVERIFIED). NICs
// assumed 8x ConnectX-7 400 Gb/s, one per GPU: UNVERIFIED.
ClusterSpec DgxB200() {
  return GpuNode("dgx-b200", "NVIDIA DGX B200: 8x B200, NVSwitch 900 GB/s/dir per GPU, "
                             "8x 400 Gb/s (NICs assumed)",
                 B200(), 8, FabricKind::kNvSwitch, 900, kNvSwitchLatencyUs, 1, 400);
}

// GB200 NVL72: one rack, 72 GPUs (and 36 Grace CPUs) in one NVLink domain:
// one node of 72 devices. NVLink5 18 links, 1.8 TB/s total = 900 GB/s per
// direction per GPU (130 TB/s aggregate). NICs assumed one 400 Gb/s
// ConnectX-7 per GPU, as 8 per 8 GPUs on B200: UNVERIFIED.
ClusterSpec Gb200Nvl72() {
  return GpuNode("gb200-nvl72", "NVIDIA GB200 NVL72: one 72-GPU NVLink domain, 900 GB/s/dir "
                                "per GPU, 72x 400 Gb/s (NICs assumed)",
                 GB200(), 72, FabricKind::kNvSwitch, 900, kNvSwitchLatencyUs, 1, 400);
}

// 8 L40S on PCIe Gen4 x16 (64 GB/s bidirectional = 32 GB/s per direction),
// no NVLink. NICs: 4x 400 Gb/s, one per 2 GPUs, after NVIDIA's Enterprise
// Reference Architecture "PCIe optimized 2-8-5" servers (2 CPUs, 8 GPUs, 5
// adapters, one of them north-south): UNVERIFIED.
ClusterSpec PcieL40s8() {
  return GpuNode("pcie-l40s-8", "8x L40S on PCIe Gen4 x16 (32 GB/s/dir), no NVLink, "
                                "4x 400 Gb/s (NICs assumed)",
                 L40S(), 8, FabricKind::kPcie, 32, kPcieLatencyUs, 2, 400);
}

// Reads "key : value" lines of /proc/cpuinfo; the first value of `key`.
std::string CpuInfoField(const std::string& cpuinfo, const std::string& key) {
  std::istringstream in(cpuinfo);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon);
    while (!k.empty() && (k.back() == ' ' || k.back() == '\t')) k.pop_back();
    if (k != key) continue;
    std::string v = line.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.erase(v.begin());
    return v;
  }
  return "";
}

bool HasFlag(const std::string& flags, const std::string& flag) {
  std::istringstream in(flags);
  std::string f;
  while (in >> f) {
    if (f == flag) return true;
  }
  return false;
}

// This machine, read now: one device per CPU core.
Result<ClusterSpec> CpuLocal() {
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) return UnavailableError("cpu-local: hwloc_topology_init failed");
  if (hwloc_topology_load(topo) != 0) {
    hwloc_topology_destroy(topo);
    return UnavailableError("cpu-local: hwloc_topology_load failed");
  }
  const int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
  const int packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
  const hwloc_obj_t root = hwloc_get_root_obj(topo);
  const int64_t memory = root != nullptr ? static_cast<int64_t>(root->total_memory) : 0;
  hwloc_topology_destroy(topo);
  if (cores < 1) return UnavailableError("cpu-local: hwloc found no CPU cores");
  if (memory <= 0) return UnavailableError("cpu-local: hwloc found no memory");

  std::string cpuinfo;
  {
    std::ifstream in("/proc/cpuinfo");
    std::ostringstream text;
    text << in.rdbuf();
    cpuinfo = text.str();
  }
  // Clock: /proc/cpuinfo's "cpu MHz" (x86), else cpufreq's maximum, else a
  // nominal 2 GHz.
  double mhz = std::atof(CpuInfoField(cpuinfo, "cpu MHz").c_str());
  std::string clock_source = "/proc/cpuinfo cpu MHz";
  if (!(mhz > 0)) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
    double khz = 0;
    if (in >> khz && khz > 0) {
      mhz = khz / 1000.0;
      clock_source = "cpufreq cpuinfo_max_freq";
    } else {
      mhz = 2000.0;
      clock_source = "nominal 2 GHz (clock not readable)";
    }
  }
  // FP32 FLOPs per cycle per core from the ISA: two FMA pipes x vector lanes
  // x 2 (a multiply-add is 2 FLOPs): AVX-512 16 lanes -> 64, AVX2+FMA 8 lanes
  // -> 32, otherwise 8 (128-bit SIMD). A nominal upper bound (many parts have
  // one AVX-512 FMA pipe, and clocks drop under vector load), to be replaced
  // by calibration (`orrery profile`).
  const std::string flags = CpuInfoField(cpuinfo, "flags");
  int flops_per_cycle = 8;
  std::string isa = "no AVX2/FMA";
  if (HasFlag(flags, "avx512f")) {
    flops_per_cycle = 64;
    isa = "avx512f";
  } else if (HasFlag(flags, "avx2") && HasFlag(flags, "fma")) {
    flops_per_cycle = 32;
    isa = "avx2+fma";
  }
  std::string model = CpuInfoField(cpuinfo, "model name");
  if (model.empty()) model = "CPU core";

  // Memory bandwidth per core: nominal 10 GB/s (a typical single-core STREAM
  // figure on server parts), not measured here; calibration replaces it.
  constexpr double kNominalCoreMemoryGBps = 10.0;

  DeviceType d;
  d.name = "cpu-core";
  d.model = model;
  d.peak[Precision::kFp32] = GFlops(mhz * 1e-3 * flops_per_cycle);
  d.memory = Bytes(memory) / cores;
  d.memory_bandwidth = GBps(kNominalCoreMemoryGBps);
  d.source = "this machine: hwloc (cores, memory), " + clock_source + " x " +
             std::to_string(flops_per_cycle) + " FP32 FLOPs/cycle (" + isa +
             "): nominal upper bound, to be calibrated; memory bandwidth nominal 10 GB/s per core";

  NodeType t;
  t.name = "cpu-local";
  t.count = 1;
  t.devices_per_node = cores;
  t.device = std::move(d);
  t.fabric.kind = FabricKind::kSharedMemory;
  t.fabric.bandwidth_per_device = GBps(kNominalCoreMemoryGBps);
  t.fabric.latency = Micros(kSharedMemoryLatencyUs);

  ClusterSpec spec;
  spec.name = "cpu-local";
  spec.description = "this machine: " + std::to_string(cores) + " cores in " +
                     std::to_string(packages) + " package(s), " + FormatBytes(Bytes(memory)) +
                     ", one device per core";
  spec.node_types = {std::move(t)};
  return spec;
}

struct ClusterEntry {
  const char* name;
  Result<ClusterSpec> (*make)();
};
const ClusterEntry kClusters[] = {
    {"dgx-a100-40gb", [] { return Result<ClusterSpec>(DgxA100(false)); }},
    {"dgx-a100-80gb", [] { return Result<ClusterSpec>(DgxA100(true)); }},
    {"dgx-h100", [] { return Result<ClusterSpec>(DgxH100()); }},
    {"dgx-h200", [] { return Result<ClusterSpec>(DgxH200()); }},
    {"dgx-b200", [] { return Result<ClusterSpec>(DgxB200()); }},
    {"gb200-nvl72", [] { return Result<ClusterSpec>(Gb200Nvl72()); }},
    {"pcie-l40s-8", [] { return Result<ClusterSpec>(PcieL40s8()); }},
    {"cpu-local", CpuLocal},
};

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

std::vector<std::string> DevicePresetNames() {
  std::vector<std::string> names;
  for (const DeviceEntry& e : kDevices) names.emplace_back(e.name);
  return names;
}

Result<DeviceType> DevicePreset(const std::string& name) {
  for (const DeviceEntry& e : kDevices) {
    if (e.name == name) return e.make();
  }
  return NotFoundError("unknown device preset '" + name +
                       "' (known device presets: " + JoinNames(DevicePresetNames()) + ")");
}

std::vector<std::string> ClusterPresetNames() {
  std::vector<std::string> names;
  for (const ClusterEntry& e : kClusters) names.emplace_back(e.name);
  return names;
}

Result<ClusterSpec> ClusterPreset(const std::string& name) {
  for (const ClusterEntry& e : kClusters) {
    if (e.name == name) return e.make();
  }
  return NotFoundError("unknown cluster preset '" + name +
                       "' (known presets: " + JoinNames(ClusterPresetNames()) + ")");
}

Result<ClusterSpec> ResolveCluster(const std::string& name_or_path, std::optional<int> nodes) {
  ClusterSpec spec;
  bool is_preset = false;
  for (const std::string& n : ClusterPresetNames()) is_preset = is_preset || n == name_or_path;
  if (is_preset) {
    ORRERY_ASSIGN_OR_RETURN(spec, ClusterPreset(name_or_path));
  } else {
    std::error_code ec;
    const bool looks_like_path = name_or_path.find('/') != std::string::npos ||
                                 name_or_path.ends_with(".json") ||
                                 std::filesystem::exists(name_or_path, ec);
    if (!looks_like_path) {
      return NotFoundError("unknown cluster preset '" + name_or_path + "' (known presets: " +
                           JoinNames(ClusterPresetNames()) +
                           "; or give the path of a cluster JSON file)");
    }
    ORRERY_ASSIGN_OR_RETURN(spec, LoadClusterSpecFile(name_or_path));
  }
  if (nodes.has_value()) {
    ORRERY_ASSIGN_OR_RETURN(spec, spec.WithNodes(*nodes));
    Status valid = ValidateClusterSpec(spec);
    if (!valid.ok()) {
      return valid.WithContext(name_or_path + " scaled to " + std::to_string(*nodes) + " nodes");
    }
  }
  return spec;
}

}  // namespace orrery::topology
