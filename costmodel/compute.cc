#include "costmodel/compute.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <sstream>
#include <utility>

#include "core/check.h"
#include "core/text.h"

namespace orrery::costmodel {
namespace {

using workload::GemmShape;
using workload::Operator;
using workload::OperatorClass;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

double MnkBatch(const GemmShape& g) {
  return static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k) *
         static_cast<double>(g.batch);
}

bool UsesTensorCores(OperatorClass c) {
  return c == OperatorClass::kGemm || c == OperatorClass::kAttention;
}

// A fused attention kernel: its forward FLOPs cover both QKᵀ and A·V
// (4·m·n·k·batch, workload's flash expansion); an unfused QKᵀ or A·V is one
// batched GEMM (2·m·n·k·batch).
bool IsFusedAttention(const Operator& op) {
  return op.op_class == OperatorClass::kAttention && op.gemm.has_value() &&
         op.forward_flops.count() > 3.0 * MnkBatch(*op.gemm);
}

ComputeProvenance Weaker(ComputeProvenance a, ComputeProvenance b) {
  return static_cast<int>(a) >= static_cast<int>(b) ? a : b;
}

bool SameShape(const GemmShape& a, const GemmShape& b) {
  return a.m == b.m && a.n == b.n && a.k == b.k && a.batch == b.batch;
}

bool SameFlops(Flops a, Flops b) {
  return std::abs(a.count() - b.count()) <= 1e-9 * std::max(std::abs(a.count()), 1.0);
}

}  // namespace

std::string_view ComputeProvenanceName(ComputeProvenance p) {
  switch (p) {
    case ComputeProvenance::kMeasured: return "measured";
    case ComputeProvenance::kFitted: return "fitted";
    case ComputeProvenance::kRoofline: return "roofline";
  }
  return "?";
}

std::string_view ComputeBoundName(ComputeBound b) {
  return b == ComputeBound::kCompute ? "compute" : "memory";
}

ComputeOptions DefaultComputeOptions(const topology::DeviceType& device) {
  const std::string id = Lower(device.name + " " + device.model);
  ComputeOptions o;  // generic: the A100's figures (below)
  auto has = [&](std::string_view s) { return id.find(s) != std::string::npos; };
  if (has("h100") || has("h200") || has("gh200")) {
    // 132 SMs: NVIDIA H100 Tensor Core GPU Architecture whitepaper (SXM5).
    // 128×256 output tile: CUTLASS's Hopper warp-specialized GEMMs (nominal).
    // FlashAttention-3 (arXiv 2407.08608) §4.1: forward up to 740 TFLOP/s
    // = 75% of 989.5; backward: FA2's backward/forward ratio on A100 (63/73)
    // applied to 75%, derived.
    o.generation = "hopper";
    o.multiprocessors = 132;
    o.tile_m = 128;
    o.tile_n = 256;
    o.attention_forward_efficiency = 0.75;
    o.attention_backward_efficiency = 0.75 * 63.0 / 73.0;
  } else if (has("b200") || has("gb200")) {
    // 148 SMs: UNVERIFIED (nominal). 256×256 tile: a 2-SM tcgen05 MMA
    // (nominal). Attention: FlashAttention-3's Hopper figures, assumed.
    o.generation = "blackwell";
    o.multiprocessors = 148;
    o.tile_m = 256;
    o.tile_n = 256;
    o.attention_forward_efficiency = 0.75;
    o.attention_backward_efficiency = 0.75 * 63.0 / 73.0;
  } else if (has("l40s")) {
    // 142 SMs: NVIDIA L40S datasheet, 568 tensor cores at 4 per SM.
    // Attention: FlashAttention-2's A100 figures, assumed.
    o.generation = "ada";
    o.multiprocessors = 142;
  } else if (has("a100")) {
    o.generation = "ampere";
  }
  // Generic and Ampere: 108 SMs (NVIDIA A100 Tensor Core GPU Architecture
  // whitepaper); 128×128 tile (CUTLASS's Ampere default threadblock tile,
  // nominal); FlashAttention-2 (arXiv 2307.08691) §4.1 on A100: forward up
  // to 73% of peak, backward up to 63%. Every generation: GEMM ceiling 0.85,
  // the middle of "80–90% of peak" (FA2 §1, A100; FA3 §1, H100); k_half 64
  // and bandwidth efficiency 0.80 nominal.
  return o;
}

double WaveFill(double waves) {
  ORRERY_CHECK(waves >= 0) << "waves " << waves;
  return std::min(waves, waves / (waves + 0.5));
}

double GemmEfficiency(const GemmShape& shape, const ComputeOptions& o) {
  ORRERY_CHECK(shape.m >= 1 && shape.n >= 1 && shape.k >= 1 && shape.batch >= 1)
      << "GEMM shape " << shape.m << "x" << shape.n << "x" << shape.k << " batch " << shape.batch;
  const double tiles = static_cast<double>(CeilDiv(shape.m, o.tile_m)) *
                       static_cast<double>(CeilDiv(shape.n, o.tile_n)) *
                       static_cast<double>(shape.batch);
  const double waves = tiles / static_cast<double>(o.multiprocessors);
  const double k = static_cast<double>(shape.k);
  return o.gemm_max_efficiency * WaveFill(waves) * (k / (k + o.gemm_k_half));
}

Result<ComputeModel> ComputeModel::Create(const topology::DeviceType& device,
                                          topology::Precision precision,
                                          std::optional<ComputeOptions> options) {
  const std::optional<FlopRate> peak = device.Peak(precision);
  if (!peak.has_value() || !(peak->FlopsPerSecond() > 0)) {
    return InvalidArgumentError("device " + device.name + " has no peak rate at " +
                                std::string(topology::PrecisionName(precision)));
  }
  if (!(device.memory_bandwidth.BytesPerSecond() > 0)) {
    return InvalidArgumentError("device " + device.name + " has no memory bandwidth");
  }
  ComputeOptions o = options.has_value() ? *options : DefaultComputeOptions(device);
  const std::pair<const char*, double> fractions[] = {
      {"gemm_max_efficiency", o.gemm_max_efficiency},
      {"attention_forward_efficiency", o.attention_forward_efficiency},
      {"attention_backward_efficiency", o.attention_backward_efficiency},
      {"bandwidth_efficiency", o.bandwidth_efficiency},
  };
  for (const auto& [name, v] : fractions) {
    if (!(v > 0 && v <= 1)) {
      return InvalidArgumentError(std::string("compute option ") + name + " = " + FixedText(v, 3) +
                                  ": expected a fraction in (0, 1]");
    }
  }
  if (o.multiprocessors < 1 || o.tile_m < 1 || o.tile_n < 1 || o.attention_tile_rows < 1 ||
      !(o.gemm_k_half >= 0)) {
    return InvalidArgumentError(
        "compute options: multiprocessors, tile_m, tile_n and attention_tile_rows must be >= 1 "
        "and gemm_k_half >= 0");
  }
  // Memory-bound classes run on the vector units: the fp32 (non-tensor)
  // peak where the device lists one.
  const FlopRate vector =
      device.Peak(topology::Precision::kFp32).value_or(*peak);
  return ComputeModel(device, precision, std::move(o), *peak, vector);
}

ComputeModel::ComputeModel(topology::DeviceType device, topology::Precision precision,
                           ComputeOptions options, FlopRate tensor_peak, FlopRate vector_peak)
    : device_(std::move(device)),
      precision_(precision),
      options_(std::move(options)),
      tensor_peak_(tensor_peak),
      vector_peak_(vector_peak) {}

Status ComputeModel::AddProfile(const traces::ComputeProfile& profile) {
  if (profile.device != device_.name) {
    return InvalidArgumentError(profile.source + ": profile measured on " + profile.device +
                                ", not on " + device_.name);
  }
  if (profile.precision != precision_) {
    return InvalidArgumentError(profile.source + ": profile measured at " +
                                std::string(topology::PrecisionName(profile.precision)) +
                                ", not at " + std::string(topology::PrecisionName(precision_)));
  }
  for (const traces::ComputeProfileEntry& e : profile.entries) {
    entries_.push_back(Entry{e, profile.source});
  }
  return Status::Ok();
}

ComputeEstimate ComputeModel::Roofline(const Operator& op) const {
  const ComputeOptions& o = options_;
  ComputeEstimate est;
  est.provenance = ComputeProvenance::kRoofline;
  const Bandwidth bw = device_.memory_bandwidth * o.bandwidth_efficiency;
  Duration fwd_compute, bwd_compute;
  if (UsesTensorCores(op.op_class) && IsFusedAttention(op)) {
    const GemmShape& g = *op.gemm;
    const double tiles = static_cast<double>(CeilDiv(g.m, o.attention_tile_rows)) *
                         static_cast<double>(g.batch);
    const double fill = WaveFill(tiles / static_cast<double>(o.multiprocessors));
    est.forward_efficiency = o.attention_forward_efficiency * fill;
    fwd_compute = op.forward_flops / (tensor_peak_ * est.forward_efficiency);
    bwd_compute = op.backward_flops / (tensor_peak_ * (o.attention_backward_efficiency * fill));
  } else if (UsesTensorCores(op.op_class)) {
    if (op.gemm.has_value()) {
      const GemmShape& g = *op.gemm;
      est.forward_efficiency = GemmEfficiency(g, o);
      // dX = dY·Wᵀ: (m×n)·(n×k); dW = Xᵀ·dY: (k×m)·(m×n).
      const double dx = GemmEfficiency(GemmShape{g.m, g.k, g.n, g.batch}, o);
      const double dw = GemmEfficiency(GemmShape{g.k, g.n, g.m, g.batch}, o);
      const Flops half = op.backward_flops / 2.0;
      bwd_compute = half / (tensor_peak_ * dx) + half / (tensor_peak_ * dw);
    } else {
      est.forward_efficiency = o.gemm_max_efficiency;
      bwd_compute = op.backward_flops / (tensor_peak_ * o.gemm_max_efficiency);
    }
    fwd_compute = op.forward_flops / (tensor_peak_ * est.forward_efficiency);
  } else {
    fwd_compute = op.forward_flops / vector_peak_;
    bwd_compute = op.backward_flops / vector_peak_;
  }
  const Duration fwd_memory = op.forward_bytes / bw;
  const Duration bwd_memory = op.backward_bytes / bw;
  est.forward_bound = fwd_compute >= fwd_memory ? ComputeBound::kCompute : ComputeBound::kMemory;
  est.backward_bound = bwd_compute >= bwd_memory ? ComputeBound::kCompute : ComputeBound::kMemory;
  est.forward = std::max(fwd_compute, fwd_memory);
  est.backward = std::max(bwd_compute, bwd_memory);
  est.detail = "roofline: " + device_.name + " " +
               std::string(topology::PrecisionName(precision_)) + ", " +
               std::string(workload::OperatorClassName(op.op_class)) +
               (UsesTensorCores(op.op_class)
                    ? " eff " + FixedText(est.forward_efficiency, 3)
                    : " at " + FixedText(o.bandwidth_efficiency, 2) + " of memory bandwidth");
  return est;
}

std::optional<ComputeModel::Lookup> ComputeModel::Find(const Operator& op, bool backward) const {
  // Exact: same class, and the entry's shape, name and FLOPs, where given,
  // equal the operator's.
  for (const Entry& entry : entries_) {
    const traces::ComputeProfileEntry& e = entry.measured;
    if (e.IsLayer() || *e.op_class != op.op_class || !e.covers.empty()) continue;
    if (backward && !e.backward.has_value()) continue;
    if (e.gemm.has_value() && (!op.gemm.has_value() || !SameShape(*e.gemm, *op.gemm))) continue;
    if (!e.name.empty() && e.name != op.name) continue;
    if (e.forward_flops.has_value() && !SameFlops(*e.forward_flops, op.forward_flops)) continue;
    return Lookup{backward ? *e.backward : e.forward, ComputeProvenance::kMeasured,
                  "measured: " + entry.source};
  }
  // Fitted: the achieved rate (forward FLOPs per second of this direction)
  // interpolated log-log in forward FLOPs between the nearest entries of the
  // class below and above; entries of equal FLOPs average their log rates.
  if (!(op.forward_flops.count() > 0)) return std::nullopt;
  std::map<double, std::pair<double, int>> points;  // log FLOPs → (Σ log rate, count)
  for (const Entry& entry : entries_) {
    const traces::ComputeProfileEntry& e = entry.measured;
    if (e.IsLayer() || *e.op_class != op.op_class || !e.forward_flops.has_value()) continue;
    if (backward && !e.backward.has_value()) continue;
    // A covering entry's rate is that of several operators together.
    if (!e.covers.empty()) continue;
    // Fused and unfused attention are different kernels.
    if (op.op_class == OperatorClass::kAttention && e.gemm.has_value() &&
        (e.forward_flops->count() > 3.0 * MnkBatch(*e.gemm)) != IsFusedAttention(op)) {
      continue;
    }
    const Duration t = backward ? *e.backward : e.forward;
    const double rate = e.forward_flops->count() / t.ToSeconds();
    auto& p = points[std::log(e.forward_flops->count())];
    p.first += std::log(rate);
    p.second += 1;
  }
  if (points.empty()) return std::nullopt;
  const double x = std::log(op.forward_flops.count());
  auto hi = points.lower_bound(x);
  if (hi == points.end() || (hi == points.begin() && hi->first > x)) return std::nullopt;
  auto lo = hi;
  if (hi->first > x) --lo;
  const double y_lo = lo->second.first / lo->second.second;
  const double y_hi = hi->second.first / hi->second.second;
  const double w = hi->first == lo->first ? 0.0 : (x - lo->first) / (hi->first - lo->first);
  const double rate = std::exp(y_lo + w * (y_hi - y_lo));
  Lookup fit;
  fit.time = op.forward_flops / FlopRate::FromFlopsPerSecond(rate);
  fit.provenance = ComputeProvenance::kFitted;
  fit.detail = "fitted: " + std::string(workload::OperatorClassName(op.op_class)) + " at " +
               FixedText(rate * 1e-12, 1) + " TFLOP/s between measured " +
               FixedText(std::exp(lo->first) * 1e-9, 3) + " and " +
               FixedText(std::exp(hi->first) * 1e-9, 3) + " GFLOP";
  return fit;
}

ComputeEstimate ComputeModel::Estimate(const Operator& op) const {
  ComputeEstimate est = Roofline(op);
  const std::optional<Lookup> fwd = Find(op, /*backward=*/false);
  const std::optional<Lookup> bwd = Find(op, /*backward=*/true);
  if (!fwd.has_value() && !bwd.has_value()) return est;
  ComputeProvenance fwd_p = ComputeProvenance::kRoofline;
  ComputeProvenance bwd_p = ComputeProvenance::kRoofline;
  std::string detail;
  if (fwd.has_value()) {
    est.forward = fwd->time;
    fwd_p = fwd->provenance;
    detail = "forward " + fwd->detail;
  } else {
    detail = "forward roofline";
  }
  if (bwd.has_value()) {
    est.backward = bwd->time;
    bwd_p = bwd->provenance;
    detail += "; backward " + bwd->detail;
  } else {
    detail += "; backward roofline";
  }
  est.provenance = Weaker(fwd_p, bwd_p);
  est.detail = std::move(detail);
  return est;
}

ComputeEstimate ComputeModel::EstimateLayer(const workload::LayerOperators& layer) const {
  ComputeEstimate sum;
  sum.provenance = ComputeProvenance::kMeasured;
  Duration fwd_compute, fwd_memory, bwd_compute, bwd_memory;
  std::map<ComputeProvenance, int> counts;
  auto add = [&](const ComputeEstimate& e, int operators) {
    sum.forward += e.forward;
    sum.backward += e.backward;
    sum.provenance = Weaker(sum.provenance, e.provenance);
    (e.forward_bound == ComputeBound::kCompute ? fwd_compute : fwd_memory) += e.forward;
    (e.backward_bound == ComputeBound::kCompute ? bwd_compute : bwd_memory) += e.backward;
    counts[e.provenance] += operators;
  };
  // Covering entries, in profile order: each that finds every operator it
  // covers in the layer (not claimed by an earlier one), with forward FLOPs
  // summing to its own, claims them.
  std::vector<bool> covered(layer.ops.size(), false);
  std::string covering_detail;
  for (const Entry& entry : entries_) {
    const traces::ComputeProfileEntry& e = entry.measured;
    if (e.IsLayer() || e.covers.empty() || !e.forward_flops.has_value()) continue;
    std::vector<size_t> group_ops;
    Flops flops;
    for (const std::string& name : e.covers) {
      for (size_t i = 0; i < layer.ops.size(); ++i) {
        if (!covered[i] && layer.ops[i].name == name &&
            std::find(group_ops.begin(), group_ops.end(), i) == group_ops.end()) {
          group_ops.push_back(i);
          flops += layer.ops[i].forward_flops;
          break;
        }
      }
    }
    if (group_ops.size() != e.covers.size() || !SameFlops(flops, *e.forward_flops)) continue;
    // The covered operators as one kernel: the entry's times; a backward
    // the entry lacks is the covered operators' roofline backward. Bounds:
    // the roofline term that dominates the covered operators' roofline.
    ComputeEstimate group;
    Duration roof_fwd_compute, roof_fwd_memory, roof_bwd_compute, roof_bwd_memory, roof_bwd;
    for (size_t i : group_ops) {
      covered[i] = true;
      const ComputeEstimate r = Roofline(layer.ops[i]);
      (r.forward_bound == ComputeBound::kCompute ? roof_fwd_compute : roof_fwd_memory) +=
          r.forward;
      (r.backward_bound == ComputeBound::kCompute ? roof_bwd_compute : roof_bwd_memory) +=
          r.backward;
      roof_bwd += r.backward;
    }
    group.forward = e.forward;
    group.backward = e.backward.value_or(roof_bwd);
    group.provenance =
        e.backward.has_value() ? ComputeProvenance::kMeasured : ComputeProvenance::kRoofline;
    group.forward_bound =
        roof_fwd_compute >= roof_fwd_memory ? ComputeBound::kCompute : ComputeBound::kMemory;
    group.backward_bound =
        roof_bwd_compute >= roof_bwd_memory ? ComputeBound::kCompute : ComputeBound::kMemory;
    add(group, static_cast<int>(group_ops.size()));
    covering_detail += "; " + (e.name.empty() ? std::string("an entry") : e.name) + " covers";
    for (size_t j = 0; j < e.covers.size(); ++j) {
      covering_detail += (j == 0 ? " " : "+") + e.covers[j];
    }
    covering_detail += " (" + entry.source + (e.backward.has_value() ? "" : ", backward roofline") +
                       ")";
  }
  for (size_t i = 0; i < layer.ops.size(); ++i) {
    if (!covered[i]) add(Estimate(layer.ops[i]), 1);
  }
  if (layer.ops.empty()) sum.provenance = ComputeProvenance::kRoofline;
  sum.forward_bound = fwd_compute >= fwd_memory ? ComputeBound::kCompute : ComputeBound::kMemory;
  sum.backward_bound = bwd_compute >= bwd_memory ? ComputeBound::kCompute : ComputeBound::kMemory;
  const Flops flops = layer.ForwardFlops();
  if (sum.forward > Duration::Zero()) {
    sum.forward_efficiency = (flops / sum.forward) / tensor_peak_;
  }
  sum.detail = std::to_string(layer.ops.size()) + " operators:";
  for (const auto& [p, n] : counts) {
    sum.detail += " " + std::to_string(n) + " " + std::string(ComputeProvenanceName(p));
  }
  sum.detail += covering_detail;
  return sum;
}

std::optional<ComputeEstimate> ComputeModel::MeasuredLayer(std::string_view name,
                                                           int64_t micro_batch,
                                                           int64_t sequence_length) const {
  for (const Entry& entry : entries_) {
    const traces::ComputeProfileEntry& e = entry.measured;
    if (!e.IsLayer() || e.name != name) continue;
    if (e.micro_batch.has_value() && *e.micro_batch != micro_batch) continue;
    if (e.sequence_length.has_value() && *e.sequence_length != sequence_length) continue;
    ComputeEstimate est;
    est.forward = e.forward;
    est.backward = e.backward.value_or(Duration::Zero());
    est.provenance = ComputeProvenance::kMeasured;
    est.detail = "measured layer: " + entry.source + (e.backward.has_value() ? "" : " (forward only)");
    return est;
  }
  return std::nullopt;
}

}  // namespace orrery::costmodel
