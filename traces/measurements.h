// Measurements: every measured input calibration accepts, loaded from the
// files and directories a person names (`orrery calibrate --from PATH...`),
// each file recognised by its content and name:
//
//   * an Orrery compute profile (JSON with "entries"; `orrery profile`);
//   * an Orrery execution trace (JSON with "format":
//     "orrery-execution-trace"; `orrery execute --trace-out`), whose
//     compute operators become a compute profile (ComputeProfileFromTrace);
//   * an nccl-tests log (text with nccl-tests' header and table; `orrery
//     profile` writes them too);
//   * Galvatron's files by their names: computation_profiling_*.json,
//     memory_profiling_*.json, allreduce_bandwidth_*.json,
//     p2p_bandwidth_*.json, sp_time_*.json, overlap_coefficient.json;
//   * a directory: every file in it (not recursive), in name order; files
//     of none of these kinds are skipped with a note (a ".source.txt"
//     beside a fixture), whereas a named file of no known kind is an error.
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_TRACES_MEASUREMENTS_H_
#define ORRERY_TRACES_MEASUREMENTS_H_

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "topology/cluster_spec.h"
#include "traces/compute_profile.h"
#include "traces/execution_trace.h"
#include "traces/galvatron_profiles.h"
#include "traces/nccl_tests_log.h"

namespace orrery::traces {

struct NamedNcclTestsLog {
  std::string source;  // the path
  NcclTestsLog log;
};

struct Measurements {
  std::vector<std::string> sources;  // every file read, in order
  std::vector<std::string> skipped;  // files of a directory that were not measurements
  // Orrery profiles, profiles derived from execution traces, and
  // Galvatron's computation profiles (layer entries, device and precision
  // as LoadOptions say).
  std::vector<ComputeProfile> compute_profiles;
  std::vector<NamedNcclTestsLog> nccl_logs;
  std::vector<GalvatronAllReduceBandwidth> allreduce_bandwidth;
  std::vector<GalvatronP2pBandwidth> p2p_bandwidth;
  std::vector<GalvatronCollectiveTimes> collective_times;
  std::vector<GalvatronMemoryProfile> memory_profiles;
  std::optional<double> overlap_coefficient;  // Galvatron's c = 1 + σ
  std::string overlap_source;

  bool empty() const {
    return compute_profiles.empty() && nccl_logs.empty() && allreduce_bandwidth.empty() &&
           p2p_bandwidth.empty() && collective_times.empty() && memory_profiles.empty() &&
           !overlap_coefficient;
  }
};

struct MeasurementLoadOptions {
  // The device and precision Galvatron's computation profiles are recorded
  // under (their files say neither).
  std::string galvatron_device;
  topology::Precision galvatron_precision = topology::Precision::kBf16;
};

// Loads every path. NotFound for a path that does not exist; InvalidArgument
// naming the file for a file that fails to parse, and for a file named
// directly that is of no known kind; InvalidArgument when nothing was
// loaded.
Result<Measurements> LoadMeasurements(const std::vector<std::string>& paths,
                                      const MeasurementLoadOptions& options = {});

// The compute operators of a trace as a compute profile: per (name, GEMM
// shape or FLOPs, phase), the median of its timed (non-warm-up)
// occurrences over every rank; forward and backward of one operator in one
// entry. The device and precision are the trace's.
Result<ComputeProfile> ComputeProfileFromTrace(const ExecutionTrace& trace,
                                               const std::string& source);

}  // namespace orrery::traces

#endif  // ORRERY_TRACES_MEASUREMENTS_H_
