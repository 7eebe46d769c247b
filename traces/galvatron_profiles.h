// Galvatron's hardware and memory profiles, read as written by its profiler
// (PKU-DAIR/Hetu-Galvatron, galvatron/profile_hardware and
// galvatron/core/profiler; real files in ../shared/fixtures/galvatron).
// The computation profile is read by traces/compute_profile.h
// (ImportGalvatronComputationProfile).
//
//   allreduce_bandwidth_<N>nodes_<G>gpus_per_node.json
//       {"allreduce_size_<n>_consec_<0|1>": busbw GB/s, ...}
//       all-reduce bus bandwidth (nccl-tests' convention, decimal GB/s) of
//       groups of n ranks, consecutive (1) or strided (0): nccl-tests'
//       "Avg bus bandwidth" over its size sweep (--start_mb 16 to --end_mb
//       512 MiB by default), read as the bandwidth term alone. Consecutive
//       groups are ranks [i·n, (i+1)·n); strided ones i, i+W/n, i+2W/n, ...
//       of the W = N·G ranks (HardwareProfiler.generate_allreduce_groups,
//       galvatron/core/profiler/hardware_profiler.py).
//   p2p_bandwidth_<N>nodes_<G>gpus_per_node.json
//       {"pp_size_<n>": GB/s, ...}: sendrecv_perf's bus bandwidth (= its
//       algbw) between neighbouring stages of an n-stage pipeline over the
//       N×G devices, stages strided: i, i+W/n, ... (generate_p2p_groups).
//   sp_time_<N>nodes_<G>gpus_per_node.json
//       {"allreduce_size_<n>_<S>MB_time": ms, "all2all_size_<n>_<S>MB_time": ms}:
//       time of one all-reduce / all-to-all of S MiB over n consecutive
//       ranks (nccl-tests' out-of-place time; S = bytes // 2^20).
//   overlap_coefficient.json
//       {"overlap_coe": c}: compute overlapped with communication lasts c
//       times as long (c = 1 + σ).
//   memory_profiling_<precision>_<model>[_seqlen<S>]_all.json
//       {"<pp>_<tp>_<dp>[_c][_vtp][_sp]": {"layernum[<L>]_bsz<b>_seq<s>_rank<r>_ms": MiB,
//                                      "..._act": MiB, "..._act_peak": MiB}}:
//       per strategy, model-state memory ("ms"), activation memory and its
//       peak per rank for a model of L layers (save_profiled_memory,
//       galvatron/core/profiler/utils.py; MiB = 2^20 bytes). The groups
//       "layertype_<i>[_sp]" and "other_memory_*" are Galvatron's own
//       summaries derived from these and are skipped.
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_TRACES_GALVATRON_PROFILES_H_
#define ORRERY_TRACES_GALVATRON_PROFILES_H_

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "traces/collective_op.h"

namespace orrery::traces {

// The cluster shape a hardware profile's file name states
// ("..._2nodes_8gpus_per_node.json"); nullopt when the name has none.
struct GalvatronClusterShape {
  int nodes = 1;
  int gpus_per_node = 1;
};

struct GalvatronAllReduceBandwidth {
  std::string source;
  std::optional<GalvatronClusterShape> shape;
  struct Entry {
    int ranks = 0;
    bool consecutive = true;
    Bandwidth busbw;
  };
  std::vector<Entry> entries;
};

struct GalvatronP2pBandwidth {
  std::string source;
  std::optional<GalvatronClusterShape> shape;
  struct Entry {
    int pp = 0;  // pipeline stages over the profiled devices
    Bandwidth bandwidth;
  };
  std::vector<Entry> entries;
};

struct GalvatronCollectiveTimes {
  std::string source;
  std::optional<GalvatronClusterShape> shape;
  struct Entry {
    CollectiveOp op = CollectiveOp::kAllReduce;  // all-reduce or all-to-all
    int ranks = 0;
    Bytes size;  // S MiB
    Duration time;
  };
  std::vector<Entry> entries;
};

struct GalvatronMemoryProfile {
  std::string source;
  struct Entry {
    std::string strategy;  // the group key, "1_2_4_vtp_sp"
    int pp = 1, tp = 1, dp = 1;
    bool vocab_tp = false, sequence_parallel = false;
    bool checkpoint = false;  // "_c": activation checkpointing ("1_1_8_c_sp")
    int layers = 0;
    int micro_batch = 0;  // the key's "bsz": Galvatron's global_train_batch_size when profiled
    int sequence_length = 0;
    int rank = 0;
    Bytes model_states;
    Bytes activation;
    Bytes activation_peak;
  };
  std::vector<Entry> entries;
};

// Each reads the file at `path`. InvalidArgument naming the file and the
// key when a key does not have the documented form or a value is not a
// positive number; NotFound when the file cannot be read.
Result<GalvatronAllReduceBandwidth> LoadGalvatronAllReduceBandwidth(const std::string& path);
Result<GalvatronP2pBandwidth> LoadGalvatronP2pBandwidth(const std::string& path);
Result<GalvatronCollectiveTimes> LoadGalvatronCollectiveTimes(const std::string& path);
// c of overlap_coefficient.json; InvalidArgument when c < 1.
Result<double> LoadGalvatronOverlapCoefficient(const std::string& path);
Result<GalvatronMemoryProfile> LoadGalvatronMemoryProfile(const std::string& path);

// "..._<N>nodes_<G>gpus_per_node..." in a file name; nullopt otherwise.
std::optional<GalvatronClusterShape> GalvatronShapeFromFileName(const std::string& path);

}  // namespace orrery::traces

#endif  // ORRERY_TRACES_GALVATRON_PROFILES_H_
