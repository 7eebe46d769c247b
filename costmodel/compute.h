// ComputeModel: how long one operator takes, forward and backward, on one
// device type at one precision.
//
// Where a measured compute profile (traces/compute_profile.h) holds the
// operator, its time is returned as measured; where measurements of the same
// operator class bracket the operator's FLOPs, the achieved FLOP rate is
// interpolated log-log between the two nearest and the time is fitted;
// otherwise a roofline with an efficiency per operator class gives it
// (docs/compute.md derives every formula and cites every default):
//
//   time = max( FLOPs / (peak(class) · efficiency(op)),
//               bytes / (memory_bandwidth · bandwidth_efficiency) )
//
//   * GEMMs run on the tensor cores at the precision's peak with
//       efficiency = gemm_max · fill(W) · depth(k)
//     where W = ceil(m/tile_m)·ceil(n/tile_n)·batch / SMs is the number of
//     waves of output tiles, fill(W) = min(W, W/(W + 1/2)) the expected
//     occupancy under wave quantization (a last wave half full on average),
//     and depth(k) = k/(k + k_half) the main loop's share of a tile's time
//     against its fixed prologue and epilogue. gemm_max = 0.85, the middle
//     of "80–90% of peak" (FlashAttention-2 §1 on A100; FlashAttention-3 §1
//     on H100). The backward pass is two GEMMs, dX (m×k from m×n by n×k) and
//     dW (k×n from k×m by m×n), each half the backward FLOPs, each with its
//     own shape's efficiency.
//   * The fused attention kernel runs at a per-generation ceiling, forward
//     and backward separately, times fill(W) over 128-row query tiles:
//     Ampere FlashAttention-2 (73% forward, 63% backward; FA2 §4.1), Hopper
//     and later FlashAttention-3 (75% forward, FA3 §4.1; backward 75% ×
//     63/73 = 65%, FA2's backward/forward ratio, derived). Unfused QKᵀ and
//     A·V (attention operators that are a single batched GEMM) use the GEMM
//     curve.
//   * Norms, element-wise ops, embeddings and the loss run on the vector
//     units (compute term: FLOPs at the fp32 non-tensor peak, efficiency 1)
//     and are memory-bound in practice: their time is bytes over memory
//     bandwidth at bandwidth_efficiency (0.80, nominal). Every class also
//     takes the memory term, so a skinny GEMM is memory-bound.
//
// A profile entry that covers several operators (traces::ComputeProfileEntry::
// covers: the executor's fused "attn.core" measures attn.qk, attn.softmax and
// attn.av as one kernel) applies to a whole layer only: EstimateLayer times
// the covered operators together by the entry when every covered name is an
// operator of the layer and their forward FLOPs sum to the entry's
// forward_flops (to 1e-9, as any FLOP match here). Its forward (and backward,
// when measured; else the covered operators' roofline backward) replaces
// theirs; the group's provenance is measured, or roofline when the backward
// came from the roofline (the weaker of the two, as for one operator).
// Estimate of a single operator ignores covering entries (neither matched
// nor fitted on: their rate is that of several operators together).
//
// Ignored: kernel launch latency and host overhead, clock throttling under
// power limits, L2 cache reuse between operators, operator fusion beyond
// what workload/ expands, overlap of communication kernels with compute.
//
// Thread-safety: a ComputeModel is immutable after construction and
// AddProfile; const methods are safe to call concurrently.
#ifndef ORRERY_COSTMODEL_COMPUTE_H_
#define ORRERY_COSTMODEL_COMPUTE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "topology/cluster_spec.h"
#include "traces/compute_profile.h"
#include "workload/operators.h"

namespace orrery::costmodel {

// Where a compute estimate's time comes from, strongest first.
enum class ComputeProvenance {
  kMeasured,  // a profile entry of this very operator
  kFitted,    // interpolated between measured operators of the same class
  kRoofline,  // the roofline with the default (or given) efficiencies
};
std::string_view ComputeProvenanceName(ComputeProvenance p);  // "measured", "fitted", "roofline"

// Which roofline term sets a time.
enum class ComputeBound { kCompute, kMemory };
std::string_view ComputeBoundName(ComputeBound b);  // "compute", "memory"

struct ComputeEstimate {
  Duration forward;
  Duration backward;
  // The weaker of the forward's and the backward's provenance (a measured
  // forward with a roofline backward is roofline).
  ComputeProvenance provenance = ComputeProvenance::kRoofline;
  // The roofline term that sets each time (for measured and fitted times,
  // the term that would set the roofline's).
  ComputeBound forward_bound = ComputeBound::kCompute;
  ComputeBound backward_bound = ComputeBound::kCompute;
  // Forward: the efficiency the roofline applies against the tensor peak
  // (GEMM and attention operators; 0 for the vector classes). For
  // EstimateLayer, the layer's achieved forward FLOPs / time / tensor peak.
  double forward_efficiency = 0;
  // One line, e.g. "roofline: h100-sxm5-80gb bf16, gemm eff 0.82" or
  // "fitted: 2 gemm entries of sweep.json around 1.07 TFLOP".
  std::string detail;

  Duration Total() const { return forward + backward; }
};

// The efficiencies and device figures of the roofline. DefaultComputeOptions
// fills them per device generation; every field may be overridden.
struct ComputeOptions {
  // Streaming multiprocessors (or compute units) that GEMM tiles spread over.
  int multiprocessors = 108;
  // Output tile of a GEMM kernel (the wave-quantization grain).
  int tile_m = 128;
  int tile_n = 128;
  // Ceiling of a GEMM's efficiency with many waves and a long k.
  double gemm_max_efficiency = 0.85;
  // k at which the main loop is half of a tile's time.
  double gemm_k_half = 64;
  // Fused-attention ceilings, forward and backward, against the tensor peak.
  double attention_forward_efficiency = 0.73;
  double attention_backward_efficiency = 0.63;
  // Query rows per fused-attention tile.
  int attention_tile_rows = 128;
  // Achieved fraction of the memory bandwidth by streaming kernels.
  double bandwidth_efficiency = 0.80;
  // Which generation's figures these are ("ampere", "hopper", ... or
  // "generic"), for details and docs.
  std::string generation = "generic";
};

// The defaults for `device`, chosen by its preset name or model string
// (A100 → Ampere, H100/H200 → Hopper, B200/GB200 → Blackwell, L40S → Ada;
// anything else → generic, which takes the A100's figures).
ComputeOptions DefaultComputeOptions(const topology::DeviceType& device);

// The expected occupancy of `waves` (tiles / multiprocessors) under wave
// quantization: min(W, W/(W + 1/2)). Smooth and non-decreasing in W, 1/2 at
// W = 1/2, tending to 1. REQUIRES: waves >= 0.
double WaveFill(double waves);

// The roofline efficiency of one GEMM of `shape` (m×k by k×n, batch times).
// REQUIRES: every dimension >= 1.
double GemmEfficiency(const workload::GemmShape& shape, const ComputeOptions& options);

class ComputeModel {
 public:
  // A model of `device` at `precision` with `options` (nullopt: the
  // device's defaults). InvalidArgument when the device has no peak at
  // `precision`, no memory bandwidth, or an option is out of range
  // (efficiencies in (0, 1], tiles and multiprocessors >= 1).
  static Result<ComputeModel> Create(const topology::DeviceType& device,
                                     topology::Precision precision,
                                     std::optional<ComputeOptions> options = std::nullopt);

  // Adds a profile's entries. InvalidArgument when the profile was measured
  // on another device (by name) or at another precision: its times say
  // nothing about this one.
  Status AddProfile(const traces::ComputeProfile& profile);

  // The time of `op` (one micro-batch on one rank): measured, fitted, else
  // roofline.
  ComputeEstimate Estimate(const workload::Operator& op) const;
  // The roofline alone, ignoring profiles.
  ComputeEstimate Roofline(const workload::Operator& op) const;
  // The sum over a layer's operators; provenance the weakest among them.
  ComputeEstimate EstimateLayer(const workload::LayerOperators& layer) const;

  // A whole-layer measurement named `name` at this micro-batch and sequence
  // length, if a profile holds one (an entry that omits micro_batch or
  // sequence_length matches any). Provenance measured; the backward is the
  // measured one, or zero with "forward only" in the detail when the entry
  // has none.
  std::optional<ComputeEstimate> MeasuredLayer(std::string_view name, int64_t micro_batch,
                                               int64_t sequence_length) const;

  const topology::DeviceType& device() const { return device_; }
  topology::Precision precision() const { return precision_; }
  const ComputeOptions& options() const { return options_; }
  // The tensor-core peak at the model's precision, and the vector peak that
  // memory-bound classes run on (fp32 when the device lists it).
  FlopRate tensor_peak() const { return tensor_peak_; }
  FlopRate vector_peak() const { return vector_peak_; }

 private:
  struct Entry {
    traces::ComputeProfileEntry measured;
    std::string source;
  };
  ComputeModel(topology::DeviceType device, topology::Precision precision,
               ComputeOptions options, FlopRate tensor_peak, FlopRate vector_peak);

  // Measured (exact) or fitted time of one direction; nullopt when no
  // entry matches or brackets the operator.
  struct Lookup {
    Duration time;
    ComputeProvenance provenance = ComputeProvenance::kMeasured;
    std::string detail;
  };
  std::optional<Lookup> Find(const workload::Operator& op, bool backward) const;

  topology::DeviceType device_;
  topology::Precision precision_;
  ComputeOptions options_;
  FlopRate tensor_peak_;
  FlopRate vector_peak_;
  std::vector<Entry> entries_;
};

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_COMPUTE_H_
