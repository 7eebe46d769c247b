// ComputeProfile: measured forward and backward times of operators (or of
// whole layers) on one device type at one precision — the table the compute
// cost model prefers to its roofline.
//
// The file is JSON (docs/compute.md documents every field):
//
//   {
//     "device": "h100-sxm5-80gb",          // a device preset name, or any label
//     "precision": "bf16",
//     "source": "cuBLAS sweep on node a12, 2025-03-01",   // optional
//     "entries": [
//       {"op_class": "gemm", "gemm": {"m": 8192, "n": 8192, "k": 8192, "batch": 1},
//        "forward_us": 1402.5, "backward_us": 2830.0},
//       {"op_class": "attention", "name": "attn.flash", "forward_flops": 1.1e12,
//        "forward_us": 1650.0, "backward_us": 4600.0},
//       {"op_class": "layer", "name": "layertype_0", "micro_batch": 8,
//        "sequence_length": 2048, "forward_us": 31495.8},
//       {"op_class": "attention", "name": "attn.core", "forward_flops": 2.3e6,
//        "covers": ["attn.qk", "attn.softmax", "attn.av"],
//        "forward_bytes": 4.2e5, "backward_bytes": 8.4e5,
//        "forward_us": 399.6, "backward_us": 461.9}
//     ],
//     "optimizer": [{"name": "adamw", "parameters": 235520, "step_us": 1210.0}]
//   }
//
// An entry measures one operator class ("gemm", "attention", "norm",
// "elementwise", "embedding", "loss", as workload::OperatorClassName writes
// them) or, with op_class "layer", a whole layer measured as one unit (as
// Galvatron profiles its layers). An operator entry identifies its work by a
// GEMM shape (whose forward FLOPs are 2·m·n·k·batch for "gemm" unless
// forward_flops says otherwise) and/or by a name and forward_flops.
// backward_us is optional: absent means "not measured", not zero. Times are
// microseconds, FLOPs a plain count.
//
// Galvatron's computation_profiling_*.json (PKU-DAIR/Hetu-Galvatron, written
// by its profiler: "layertype_<i>_bsz<b>_seq<s>" → forward milliseconds per
// layer per sample, "layernum[...]_bsz<b>_seq<s>" → forward milliseconds of
// a whole model of that many layers) imports into this form as layer entries
// (forward only) with ImportGalvatronComputationProfile.
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_TRACES_COMPUTE_PROFILE_H_
#define ORRERY_TRACES_COMPUTE_PROFILE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "topology/cluster_spec.h"
#include "workload/operators.h"

namespace orrery::traces {

// "gemm", "attention", ... → the class; InvalidArgument naming the valid
// names otherwise.
Result<workload::OperatorClass> ParseOperatorClass(std::string_view name);

struct ComputeProfileEntry {
  // The operator class measured; nullopt for a whole-layer entry ("layer").
  std::optional<workload::OperatorClass> op_class;
  std::string name;  // "" when the entry is identified by its shape alone
  std::optional<workload::GemmShape> gemm;
  // Work of the forward pass: given, or derived (2·m·n·k·batch) for a GEMM
  // entry with a shape; nullopt when neither.
  std::optional<Flops> forward_flops;
  // Layer entries: the micro-batch and sequence length measured.
  std::optional<int64_t> micro_batch;
  std::optional<int64_t> sequence_length;
  // Bytes the operator moves (reads + writes) forward and backward, as
  // workload/operators.h counts them; written by `orrery profile` so that
  // calibration can fit the streaming bandwidth. nullopt: not given.
  std::optional<Bytes> forward_bytes;
  std::optional<Bytes> backward_bytes;
  // Operators of the cost model this one measurement covers, when the
  // measured kernel fuses several of them: the executor's "attn.core" is
  // {"attn.qk", "attn.softmax", "attn.av"}. Empty: the entry is the
  // operator `name` (or shape) alone. A covering entry matches a layer that
  // holds every covered operator with forward FLOPs summing to
  // forward_flops (ComputeModel::EstimateLayer), and its time replaces
  // theirs.
  std::vector<std::string> covers;
  Duration forward;
  std::optional<Duration> backward;  // nullopt: not measured

  bool IsLayer() const { return !op_class.has_value(); }
};

// One measured optimizer step: `parameters` elements updated in `step`.
struct OptimizerMeasurement {
  std::string name = "adamw";
  int64_t parameters = 0;
  Duration step;
};

struct ComputeProfile {
  std::string device;  // DeviceType::name the entries were measured on
  topology::Precision precision = topology::Precision::kBf16;
  std::string source;  // where the measurements come from
  std::vector<ComputeProfileEntry> entries;
  std::vector<OptimizerMeasurement> optimizer;  // JSON "optimizer": [{"name", "parameters", "step_us"}]
};

// Reads a profile from parsed JSON; `source` names the document in errors,
// which name the field ("profile.json: field 'entries[2].forward_us':
// expected a positive number, got -1"). Unknown fields are errors. An operator
// entry needs a "gemm" shape or a "name"; a layer entry needs a "name".
Result<ComputeProfile> ParseComputeProfile(std::string_view text, std::string_view source);
Result<ComputeProfile> LoadComputeProfile(const std::string& path);

// The JSON form of `profile` (round-trips through ParseComputeProfile; derived
// GEMM FLOPs are not written).
std::string ComputeProfileToJson(const ComputeProfile& profile);

// Imports Galvatron's computation profile. Each "layertype_<i>_bsz<b>_seq<s>"
// key becomes a layer entry named "layertype_<i>" with micro_batch b,
// sequence_length s and forward = value (ms per sample) × b, i.e. the time of
// one layer for the whole micro-batch; "layertype_other" likewise (the layers
// outside the repeated blocks: embedding and head). "layernum[...]" keys
// (whole-model timings used by Galvatron to separate the two) are skipped.
// The file does not say which GPU produced it: the caller names the device
// and precision. InvalidArgument naming the key when a key of the layertype
// form is malformed or its value is not a positive number.
Result<ComputeProfile> ImportGalvatronComputationProfile(const std::string& path,
                                                         std::string device,
                                                         topology::Precision precision);

}  // namespace orrery::traces

#endif  // ORRERY_TRACES_COMPUTE_PROFILE_H_
