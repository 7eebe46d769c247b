#include "costmodel/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>
#include <utility>

#include "core/statistics.h"
#include "core/text.h"
#include "workload/operators.h"

namespace orrery::costmodel {
namespace {

using topology::Precision;
using traces::ComputeProfile;
using traces::ComputeProfileEntry;
using workload::GemmShape;
using workload::OperatorClass;

std::string Percent(double v) { return FixedText(100.0 * v, 1) + "%"; }

std::string PrecisionStr(Precision p) { return std::string(topology::PrecisionName(p)); }

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

double MnkBatch(const GemmShape& g) {
  return static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k) *
         static_cast<double>(g.batch);
}

// Relative errors (model − measured) / measured of the points of one fit.
class ResidualAccumulator {
 public:
  void Add(Duration model, Duration measured) { Add(model / measured - 1.0); }
  void Add(double relative_error) {
    sum_squares_ += relative_error * relative_error;
    max_ = std::max(max_, std::abs(relative_error));
    ++points_;
  }
  int points() const { return points_; }
  FitResidual Make(std::string quantity, std::string source) const {
    FitResidual r;
    r.quantity = std::move(quantity);
    r.source = std::move(source);
    r.points = points_;
    r.rms_relative_error = points_ > 0 ? std::sqrt(sum_squares_ / points_) : 0.0;
    r.max_relative_error = max_;
    return r;
  }

 private:
  double sum_squares_ = 0;
  double max_ = 0;
  int points_ = 0;
};

// The distinct sources of a fit's points, in the order first seen.
class SourceList {
 public:
  void Add(const std::string& s) {
    if (std::find(list_.begin(), list_.end(), s) == list_.end()) list_.push_back(s);
  }
  std::string Join() const {
    std::string out;
    for (const std::string& s : list_) out += (out.empty() ? "" : ", ") + s;
    return out;
  }

 private:
  std::vector<std::string> list_;
};

// One point of an efficiency fit: the efficiency the measurement implies
// (time = work / (rate · e) solved for e) and how to time it back at a
// given e.
struct EfficiencyPoint {
  double implied = 0;     // e that reproduces the measurement exactly
  Duration at_unit;       // the compute term at e = 1
  Duration memory;        // the memory term (zero when unknown)
  Duration measured;
  std::string source;
};

// Least squares in log time of time_i = at_unit_i / e over the points:
// log e = mean(log implied_i), i.e. e is the geometric mean of the implied
// efficiencies; clamped to (0, 1] (a roofline efficiency above 1 would put
// the device above its peak).
double GeometricMean(const std::vector<EfficiencyPoint>& points) {
  double sum = 0;
  for (const EfficiencyPoint& p : points) sum += std::log(p.implied);
  return std::exp(sum / static_cast<double>(points.size()));
}

double ClampEfficiency(double e) { return std::min(1.0, std::max(e, 1e-6)); }

FitResidual EfficiencyResidual(const std::vector<EfficiencyPoint>& points, double e,
                               std::string quantity) {
  ResidualAccumulator acc;
  SourceList sources;
  for (const EfficiencyPoint& p : points) {
    acc.Add(std::max(p.at_unit / e, p.memory), p.measured);
    sources.Add(p.source);
  }
  return acc.Make(std::move(quantity), sources.Join());
}

// Bytes a GEMM of `g` moves forward (A and B read, C written once), as
// workload/operators.h counts them, when the entry does not say.
Bytes GemmBytes(const GemmShape& g, int element_bytes) {
  return Bytes(element_bytes * g.batch * (g.m * g.k + g.k * g.n + g.m * g.n));
}

// A fused attention kernel's backward FLOPs are 2.5× its forward (dQ, dK,
// dV, dP and the recomputed scores; FlashAttention-2 §4.1, as
// workload/operators.h counts them); an unfused or unknown core's are 2×
// (the GEMM convention).
bool IsFusedAttentionEntry(const ComputeProfileEntry& e) {
  if (e.gemm.has_value() && e.forward_flops.has_value()) {
    return e.forward_flops->count() > 3.0 * MnkBatch(*e.gemm);
  }
  return e.name.find("flash") != std::string::npos;
}

bool IsStreamingClass(OperatorClass c) {
  return c == OperatorClass::kNorm || c == OperatorClass::kElementwise ||
         c == OperatorClass::kEmbedding || c == OperatorClass::kLoss;
}

// Every operator entry of one precision, with the file it came from.
struct SourcedEntry {
  const ComputeProfileEntry* entry;
  std::string source;
};

struct PrecisionFit {
  ComputeOptions options;
  bool fitted = false;
};

// bandwidth_efficiency from the streaming classes' bytes.
void FitBandwidth(const topology::DeviceType& device, const std::vector<SourcedEntry>& entries,
                  Precision precision, PrecisionFit& fit, std::vector<FitResidual>& residuals) {
  std::vector<EfficiencyPoint> pts;
  for (const SourcedEntry& s : entries) {
    const ComputeProfileEntry& e = *s.entry;
    if (!IsStreamingClass(*e.op_class)) continue;
    auto add = [&](std::optional<Bytes> bytes, std::optional<Duration> time) {
      if (!bytes.has_value() || !time.has_value() || *bytes <= Bytes(0)) return;
      EfficiencyPoint p;
      p.at_unit = *bytes / device.memory_bandwidth;
      p.implied = p.at_unit / *time;
      p.measured = *time;
      p.source = s.source;
      pts.push_back(p);
    };
    add(e.forward_bytes, e.forward);
    add(e.backward_bytes, e.backward);
  }
  if (pts.empty()) return;
  const double eff = ClampEfficiency(GeometricMean(pts));
  fit.options.bandwidth_efficiency = eff;
  fit.fitted = true;
  residuals.push_back(
      EfficiencyResidual(pts, eff, "bandwidth_efficiency " + PrecisionStr(precision)));
}

// gemm_max_efficiency against GemmEfficiency's shape curve.
void FitGemm(const topology::DeviceType& device, FlopRate peak,
             const std::vector<SourcedEntry>& entries, Precision precision, PrecisionFit& fit,
             std::vector<FitResidual>& residuals) {
  ComputeOptions curve_options = fit.options;
  curve_options.gemm_max_efficiency = 1.0;
  const Bandwidth bw = device.memory_bandwidth * fit.options.bandwidth_efficiency;
  const int element_bytes = topology::BytesPerElement(precision);
  std::vector<EfficiencyPoint> pts;
  int memory_bound = 0;
  for (const SourcedEntry& s : entries) {
    const ComputeProfileEntry& e = *s.entry;
    const bool unfused_attention = *e.op_class == OperatorClass::kAttention &&
                                   e.gemm.has_value() && !IsFusedAttentionEntry(e);
    if (*e.op_class != OperatorClass::kGemm && !unfused_attention) continue;
    if (!e.forward_flops.has_value() || !(e.forward_flops->count() > 0)) continue;
    const Flops fwd = *e.forward_flops;
    // Forward: one GEMM of the entry's shape; backward: dX (m×n by n×k) and
    // dW (k×m by m×n), each half of 2× the forward FLOPs (ComputeModel::Roofline).
    Duration fwd_unit, bwd_unit;
    if (e.gemm.has_value()) {
      const GemmShape& g = *e.gemm;
      fwd_unit = fwd / (peak * GemmEfficiency(g, curve_options));
      const Flops half = fwd;  // (2 × forward) / 2
      bwd_unit = half / (peak * GemmEfficiency(GemmShape{g.m, g.k, g.n, g.batch}, curve_options)) +
                 half / (peak * GemmEfficiency(GemmShape{g.k, g.n, g.m, g.batch}, curve_options));
    } else {
      fwd_unit = fwd / peak;
      bwd_unit = (fwd * 2.0) / peak;
    }
    std::optional<Bytes> fwd_bytes = e.forward_bytes;
    if (!fwd_bytes.has_value() && e.gemm.has_value()) fwd_bytes = GemmBytes(*e.gemm, element_bytes);
    std::optional<Bytes> bwd_bytes = e.backward_bytes;
    if (!bwd_bytes.has_value() && fwd_bytes.has_value()) bwd_bytes = *fwd_bytes * 2;
    auto add = [&](Duration unit, std::optional<Bytes> bytes, std::optional<Duration> time) {
      if (!time.has_value()) return;
      const Duration memory = bytes.has_value() ? *bytes / bw : Duration::Zero();
      // Memory-bound even at the device's peak: the time says nothing
      // about the GEMM ceiling.
      if (memory >= unit) {
        ++memory_bound;
        return;
      }
      EfficiencyPoint p;
      p.at_unit = unit;
      p.memory = memory;
      p.implied = unit / *time;
      p.measured = *time;
      p.source = s.source;
      pts.push_back(p);
    };
    add(fwd_unit, fwd_bytes, e.forward);
    add(bwd_unit, bwd_bytes, e.backward);
  }
  if (pts.empty()) return;
  const double eff = ClampEfficiency(GeometricMean(pts));
  fit.options.gemm_max_efficiency = eff;
  fit.fitted = true;
  std::string quantity = "gemm_max_efficiency " + PrecisionStr(precision);
  if (memory_bound > 0) {
    quantity += " (" + std::to_string(memory_bound) + " memory-bound points excluded)";
  }
  residuals.push_back(EfficiencyResidual(pts, eff, std::move(quantity)));
}

// The fused-attention ceilings, forward and backward.
void FitAttention(const topology::DeviceType& device, FlopRate peak,
                  const std::vector<SourcedEntry>& entries, Precision precision,
                  PrecisionFit& fit, std::vector<FitResidual>& residuals) {
  const Bandwidth bw = device.memory_bandwidth * fit.options.bandwidth_efficiency;
  std::vector<EfficiencyPoint> fwd_pts, bwd_pts;
  for (const SourcedEntry& s : entries) {
    const ComputeProfileEntry& e = *s.entry;
    if (*e.op_class != OperatorClass::kAttention || !e.forward_flops.has_value() ||
        !(e.forward_flops->count() > 0)) {
      continue;
    }
    // Unfused QKᵀ and A·V with a shape are GEMMs (FitGemm).
    if (e.gemm.has_value() && !IsFusedAttentionEntry(e)) continue;
    // The roofline's wave fill over 128-row query tiles, where the shape is
    // known (ComputeModel::Roofline); 1 otherwise.
    double fill = 1.0;
    if (e.gemm.has_value()) {
      const double tiles =
          static_cast<double>(CeilDiv(e.gemm->m, fit.options.attention_tile_rows)) *
          static_cast<double>(e.gemm->batch);
      fill = WaveFill(tiles / static_cast<double>(fit.options.multiprocessors));
    }
    const Flops fwd = *e.forward_flops;
    const Flops bwd = fwd * (IsFusedAttentionEntry(e) ? 2.5 : 2.0);
    auto add = [&](std::vector<EfficiencyPoint>& pts, Flops work, std::optional<Bytes> bytes,
                   std::optional<Duration> time) {
      if (!time.has_value()) return;
      EfficiencyPoint p;
      p.at_unit = work / (peak * fill);
      p.memory = bytes.has_value() ? *bytes / bw : Duration::Zero();
      if (p.memory >= p.at_unit) return;  // memory-bound even at peak
      p.implied = p.at_unit / *time;
      p.measured = *time;
      p.source = s.source;
      pts.push_back(p);
    };
    add(fwd_pts, fwd, e.forward_bytes, e.forward);
    add(bwd_pts, bwd, e.backward_bytes, e.backward);
  }
  if (!fwd_pts.empty()) {
    const double eff = ClampEfficiency(GeometricMean(fwd_pts));
    fit.options.attention_forward_efficiency = eff;
    fit.fitted = true;
    residuals.push_back(EfficiencyResidual(
        fwd_pts, eff, "attention_forward_efficiency " + PrecisionStr(precision)));
  }
  if (!bwd_pts.empty()) {
    const double eff = ClampEfficiency(GeometricMean(bwd_pts));
    fit.options.attention_backward_efficiency = eff;
    fit.fitted = true;
    residuals.push_back(EfficiencyResidual(
        bwd_pts, eff, "attention_backward_efficiency " + PrecisionStr(precision)));
  }
}

// The layer kind a whole-layer entry measured: Galvatron's "layertype_<i>"
// is the i-th distinct block kind of the model (its layer types, in model
// order); an Orrery entry may name the kind itself ("decoder-block").
Result<workload::LayerKind> LayerKindOfEntry(const workload::ModelSpec& model,
                                             const std::string& name,
                                             const std::string& source) {
  std::vector<workload::LayerKind> blocks;
  for (workload::LayerKind k : workload::ModelLayers(model)) {
    if (k == workload::LayerKind::kEmbedding || k == workload::LayerKind::kPatchEmbedding ||
        k == workload::LayerKind::kLmHead) {
      continue;
    }
    if (std::find(blocks.begin(), blocks.end(), k) == blocks.end()) blocks.push_back(k);
  }
  for (workload::LayerKind k : blocks) {
    if (name == workload::LayerKindName(k)) return k;
  }
  constexpr std::string_view kPrefix = "layertype_";
  if (name.rfind(kPrefix, 0) == 0) {
    const std::string digits = name.substr(kPrefix.size());
    if (!digits.empty() && digits.size() < 6 &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      const size_t i = static_cast<size_t>(std::stoi(digits));
      if (i < blocks.size()) return blocks[i];
    }
  }
  return InvalidArgumentError(source + ": layer entry '" + name + "' names no block of model " +
                              model.name + " (" + std::to_string(blocks.size()) +
                              " block kinds: layertype_0 .. layertype_" +
                              std::to_string(blocks.size() - 1) + ", or a kind name)");
}

struct LayerPoint {
  workload::LayerOperators ops;
  Duration measured;
  std::string source;
};

// The roofline forward time of a layer under `options`.
Result<Duration> RooflineForward(const topology::DeviceType& device, Precision precision,
                                 const ComputeOptions& options, const workload::LayerOperators& l) {
  ORRERY_ASSIGN_OR_RETURN(ComputeModel model, ComputeModel::Create(device, precision, options));
  Duration sum;
  for (const workload::Operator& op : l.ops) sum += model.Roofline(op).forward;
  return sum;
}

// One scale k on the tensor-core ceilings (gemm_max and both attention
// efficiencies) so that the roofline of the model's layer matches the
// measured layer times: log-least-squares, k = geometric mean of
// roofline / measured. The memory-bound operators of the layer do not move
// with k, so the fit is repeated until k settles (or a ceiling reaches 1).
//
// Galvatron measures the forward pass only; its own cost model takes the
// backward as bct_fct_coe = 2 times the forward (Hetu-Galvatron's search
// engine, ProfileHardwareArgs.bct_fct_coe = 2), which the fitted roofline
// reproduces by itself (backward FLOPs are twice the forward's): only the
// forward is fitted.
Status FitLayerScale(const topology::DeviceType& device, Precision precision,
                     const workload::ModelSpec& model, const std::vector<LayerPoint>& points,
                     PrecisionFit& fit, std::vector<FitResidual>& residuals) {
  double total = 1.0;
  for (int iteration = 0; iteration < 20; ++iteration) {
    double sum = 0;
    for (const LayerPoint& p : points) {
      ORRERY_ASSIGN_OR_RETURN(Duration roofline,
                              RooflineForward(device, precision, fit.options, p.ops));
      sum += std::log(roofline / p.measured);
    }
    const double k = std::exp(sum / static_cast<double>(points.size()));
    ComputeOptions& o = fit.options;
    const double before = o.gemm_max_efficiency;
    o.gemm_max_efficiency = ClampEfficiency(o.gemm_max_efficiency * k);
    o.attention_forward_efficiency = ClampEfficiency(o.attention_forward_efficiency * k);
    o.attention_backward_efficiency = ClampEfficiency(o.attention_backward_efficiency * k);
    total *= o.gemm_max_efficiency / before;
    if (std::abs(std::log(k)) < 1e-9 || o.gemm_max_efficiency >= 1.0) break;
  }
  fit.fitted = true;
  ResidualAccumulator acc;
  SourceList sources;
  for (const LayerPoint& p : points) {
    ORRERY_ASSIGN_OR_RETURN(Duration roofline,
                            RooflineForward(device, precision, fit.options, p.ops));
    acc.Add(roofline, p.measured);
    sources.Add(p.source);
  }
  residuals.push_back(acc.Make("layer scale " + model.name + " " + PrecisionStr(precision) +
                                   " (x" + FixedText(total, 4) + ")",
                               sources.Join()));
  return Status::Ok();
}

// A bandwidth and a latency as the JSON form writes them (GB/s, µs), so
// that a calibration reads back from its file exactly.
Bandwidth SnapGBps(Bandwidth b) { return GBps(b.ToGBps()); }
Duration SnapMicros(Duration d) { return Micros(d.ToMicros()); }

// Relative error of a fitted collective over the rows of the table it came
// from: time = latency + size / (busbw / factor).
Duration FittedTime(const FittedCollective& fit, Bytes size) {
  const FittedRegime& r = fit.RegimeFor(size);
  const Bandwidth algbw = r.busbw / traces::BusBandwidthFactor(fit.op, fit.ranks);
  return r.latency + size / algbw;
}

std::string CollectiveLabel(const FittedCollective& fit) {
  return std::string(traces::CollectiveOpName(fit.op)) + " " + std::to_string(fit.nodes) + "x" +
         std::to_string(fit.ranks / std::max(fit.nodes, 1));
}

// The residual of a fit from its regimes alone (each regime's points and
// largest error; the rms is bounded by the largest error and taken as it).
FitResidual RegimeResidual(const FittedCollective& fit) {
  FitResidual r;
  r.quantity = CollectiveLabel(fit);
  r.source = fit.source;
  for (const FittedRegime& g : fit.regimes) {
    r.points += g.points;
    r.max_relative_error = std::max(r.max_relative_error, g.max_relative_error);
  }
  r.rms_relative_error = r.max_relative_error;
  return r;
}

Status CheckFitsCluster(const FittedCollective& fit, const CollectiveModel& nominal) {
  const RankGroup group{fit.nodes, fit.ranks / std::max(fit.nodes, 1),
                        RankGroup::Placement::kConsecutive};
  Result<CollectiveEstimate> e = nominal.Estimate(fit.op, Bytes(8), group);
  if (!e.ok()) {
    return InvalidArgumentError(fit.source + ": " + std::string(traces::CollectiveOpName(fit.op)) +
                                " measured on " + std::to_string(fit.ranks) + " ranks over " +
                                std::to_string(fit.nodes) + " nodes does not fit cluster " +
                                nominal.cluster().name + ": " + e.status().message());
  }
  return Status::Ok();
}

// Adds `fits` (in order) to `calibration` with their bandwidths and
// latencies snapped to the JSON's units.
void AddSnapped(const CollectiveCalibration& fits, CollectiveCalibration& calibration) {
  for (FittedCollective fit : fits.fits()) {
    for (FittedRegime& r : fit.regimes) {
      r.busbw = SnapGBps(r.busbw);
      r.latency = SnapMicros(r.latency);
    }
    calibration.Add(std::move(fit));
  }
}

Status CalibrateCollectives(const CalibrationRequest& request, Calibration& out) {
  const traces::Measurements& m = request.measurements;
  if (m.nccl_logs.empty() && m.allreduce_bandwidth.empty() && m.p2p_bandwidth.empty() &&
      m.collective_times.empty()) {
    return Status::Ok();
  }
  ORRERY_ASSIGN_OR_RETURN(CollectiveModel nominal, CollectiveModel::Create(request.cluster));
  for (const traces::NamedNcclTestsLog& named : m.nccl_logs) {
    CollectiveCalibration local;
    ORRERY_RETURN_IF_ERROR(
        CalibrateFromLog(named.log, nominal, local, request.collective_fit).WithContext(named.source));
    for (size_t i = 0; i < named.log.tables.size(); ++i) {
      std::string source = named.log.source;
      if (named.log.tables.size() > 1) source += " (table " + std::to_string(i + 1) + ")";
      for (const FittedCollective& fit : local.fits()) {
        if (fit.source != source) continue;
        ORRERY_RETURN_IF_ERROR(CheckFitsCluster(fit, nominal));
        ResidualAccumulator acc;
        for (const traces::NcclTestsRow& row : named.log.tables[i].rows) {
          const Duration t = std::min(row.out_of_place.time, row.in_place.time);
          if (t > Duration::Zero()) acc.Add(FittedTime(fit, row.size), t);
        }
        out.residuals.push_back(acc.Make(CollectiveLabel(fit), fit.source));
      }
    }
    AddSnapped(local, out.collectives);
  }
  auto add_galvatron = [&](const CollectiveCalibration& local) -> Status {
    for (const FittedCollective& fit : local.fits()) {
      ORRERY_RETURN_IF_ERROR(CheckFitsCluster(fit, nominal));
      out.residuals.push_back(RegimeResidual(fit));
    }
    AddSnapped(local, out.collectives);
    return Status::Ok();
  };
  for (const traces::GalvatronAllReduceBandwidth& t : m.allreduce_bandwidth) {
    CollectiveCalibration local;
    ORRERY_RETURN_IF_ERROR(CalibrateFromGalvatron(t, nominal, local));
    ORRERY_RETURN_IF_ERROR(add_galvatron(local));
  }
  for (const traces::GalvatronP2pBandwidth& t : m.p2p_bandwidth) {
    CollectiveCalibration local;
    ORRERY_RETURN_IF_ERROR(CalibrateFromGalvatron(t, nominal, local));
    ORRERY_RETURN_IF_ERROR(add_galvatron(local));
  }
  for (const traces::GalvatronCollectiveTimes& t : m.collective_times) {
    CollectiveCalibration local;
    ORRERY_RETURN_IF_ERROR(CalibrateFromGalvatron(t, nominal, local, request.collective_fit));
    // sp_time measures times: the residual is over them.
    for (const FittedCollective& fit : local.fits()) {
      ORRERY_RETURN_IF_ERROR(CheckFitsCluster(fit, nominal));
      ResidualAccumulator acc;
      for (const auto& e : t.entries) {
        if (e.op == fit.op && e.ranks == fit.ranks && e.time > Duration::Zero()) {
          acc.Add(FittedTime(fit, e.size), e.time);
        }
      }
      out.residuals.push_back(acc.points() > 0 ? acc.Make(CollectiveLabel(fit), fit.source)
                                               : RegimeResidual(fit));
    }
    AddSnapped(local, out.collectives);
  }
  return Status::Ok();
}

// What identifies a measured operator or layer: everything but its times.
std::string EntryIdentity(const ComputeProfileEntry& e) {
  std::ostringstream key;
  key << (e.op_class.has_value() ? workload::OperatorClassName(*e.op_class) : "layer") << '|'
      << e.name << '|';
  if (e.gemm.has_value()) {
    key << e.gemm->m << 'x' << e.gemm->n << 'x' << e.gemm->k << 'x' << e.gemm->batch;
  }
  key << '|' << (e.forward_flops.has_value() ? e.forward_flops->count() : -1.0) << '|'
      << e.micro_batch.value_or(-1) << '|' << e.sequence_length.value_or(-1) << '|'
      << (e.forward_bytes.has_value() ? e.forward_bytes->count() : -1) << '|'
      << (e.backward_bytes.has_value() ? e.backward_bytes->count() : -1) << '|';
  for (const std::string& c : e.covers) key << c << ',';
  return key.str();
}

// Repeated profiler runs: profiles of one precision that measure the same
// operators (the same identity, EntryIdentity) are merged into one profile
// whose every entry takes the median of its runs, forward and backward
// separately — robust to one run taken while the machine was busy, which
// the first-found entry (ComputeModel's lookup) is not. Entries measured
// once pass through; optimizer measurements are pooled (their fit is a
// least squares over all of them). Adds a "profile repeats <precision>"
// residual: the spread of the runs around their medians.
void MergeRepeatedProfiles(std::vector<ComputeProfile>& profiles,
                           std::vector<FitResidual>& residuals) {
  std::map<Precision, std::vector<size_t>> by_precision;
  for (size_t i = 0; i < profiles.size(); ++i) {
    by_precision[profiles[i].precision].push_back(i);
  }
  std::vector<ComputeProfile> merged_profiles;
  for (const auto& [precision, indices] : by_precision) {
    if (indices.size() == 1) {
      merged_profiles.push_back(std::move(profiles[indices.front()]));
      continue;
    }
    // Entries in the order first seen; their runs' times.
    struct Runs {
      ComputeProfileEntry entry;
      std::vector<Duration> forward, backward;
    };
    std::vector<Runs> runs;
    std::map<std::string, size_t> index_of;
    ComputeProfile merged;
    merged.device = profiles[indices.front()].device;
    merged.precision = precision;
    SourceList sources;
    for (size_t i : indices) {
      ComputeProfile& p = profiles[i];
      sources.Add(p.source);
      for (traces::OptimizerMeasurement& o : p.optimizer) merged.optimizer.push_back(o);
      for (const ComputeProfileEntry& e : p.entries) {
        auto [it, inserted] = index_of.emplace(EntryIdentity(e), runs.size());
        if (inserted) runs.push_back(Runs{e, {}, {}});
        Runs& r = runs[it->second];
        r.forward.push_back(e.forward);
        if (e.backward.has_value()) r.backward.push_back(*e.backward);
      }
    }
    merged.source = sources.Join();
    ResidualAccumulator spread;
    for (Runs& r : runs) {
      r.entry.forward = Median(r.forward);
      for (Duration t : r.forward) {
        if (r.forward.size() > 1) spread.Add(t, r.entry.forward);
      }
      if (!r.backward.empty()) {
        r.entry.backward = Median(r.backward);
        for (Duration t : r.backward) {
          if (r.backward.size() > 1) spread.Add(t, *r.entry.backward);
        }
      }
      merged.entries.push_back(std::move(r.entry));
    }
    if (spread.points() > 0) {
      residuals.push_back(spread.Make("profile repeats " + std::string(PrecisionStr(precision)) +
                                          " (runs around their median)",
                                      merged.source));
    }
    merged_profiles.push_back(std::move(merged));
  }
  profiles = std::move(merged_profiles);
}

Status CalibrateCompute(const CalibrationRequest& request, Calibration& out) {
  const topology::DeviceType& device = request.cluster.PrimaryNodeType().device;
  // Profiles re-labelled to the cluster's device, grouped by precision.
  std::map<Precision, std::vector<size_t>> by_precision;
  for (const ComputeProfile& measured : request.measurements.compute_profiles) {
    if (measured.entries.empty()) continue;
    ComputeProfile p = measured;
    p.device = device.name;
    // Galvatron's files do not record their precision (the loader's
    // choice); their layer timings are taken at request.layer_precision.
    if (std::all_of(p.entries.begin(), p.entries.end(),
                    [](const ComputeProfileEntry& e) { return e.IsLayer(); })) {
      p.precision = request.layer_precision;
    }
    const std::optional<FlopRate> peak = device.Peak(p.precision);
    if (!peak.has_value() || !(peak->FlopsPerSecond() > 0)) {
      return InvalidArgumentError(p.source + ": profile at " + PrecisionStr(p.precision) +
                                  ", a precision device " + device.name + " has no peak for");
    }
    out.profiles.push_back(std::move(p));
  }
  MergeRepeatedProfiles(out.profiles, out.residuals);
  for (size_t i = 0; i < out.profiles.size(); ++i) {
    by_precision[out.profiles[i].precision].push_back(i);
  }
  for (const auto& [precision, indices] : by_precision) {
    const FlopRate peak = *device.Peak(precision);
    std::vector<SourcedEntry> ops;
    std::vector<std::pair<const ComputeProfileEntry*, std::string>> layers;
    for (size_t i : indices) {
      const ComputeProfile& p = out.profiles[i];
      for (const ComputeProfileEntry& e : p.entries) {
        if (e.IsLayer()) {
          layers.emplace_back(&e, p.source);
        } else {
          ops.push_back(SourcedEntry{&e, p.source});
        }
      }
    }
    PrecisionFit fit;
    fit.options = DefaultComputeOptions(device);
    FitBandwidth(device, ops, precision, fit, out.residuals);
    FitGemm(device, peak, ops, precision, fit, out.residuals);
    FitAttention(device, peak, ops, precision, fit, out.residuals);
    if (!layers.empty()) {
      if (request.model == nullptr) {
        return InvalidArgumentError(layers.front().second +
                                    ": whole-layer timings need the model they were measured on");
      }
      std::vector<LayerPoint> points;
      for (const auto& [e, source] : layers) {
        // Galvatron's "layertype_other" times the embedding and the head
        // together (the layers outside the repeated blocks): not a block of
        // the model, and dominated by memory-bound lookups and the loss, so
        // it says little about the tensor-core ceilings.
        if (e->name == "layertype_other") continue;
        if (!e->micro_batch.has_value() || !e->sequence_length.has_value()) {
          return InvalidArgumentError(source + ": layer entry '" + e->name +
                                      "' needs micro_batch and sequence_length to be fitted");
        }
        ORRERY_ASSIGN_OR_RETURN(workload::LayerKind kind,
                                LayerKindOfEntry(*request.model, e->name, source));
        // Expanded as the simulator does (sim/stage_costs.h: no tensor
        // parallelism here, FlashAttention on by default).
        workload::ExpansionOptions expansion;
        expansion.activation_bytes = topology::BytesPerElement(precision);
        expansion.flash_attention = true;
        Result<workload::LayerOperators> ops_of_layer = workload::ExpandLayer(
            *request.model, kind, *e->micro_batch, *e->sequence_length, {}, expansion);
        if (!ops_of_layer.ok()) return ops_of_layer.status().WithContext(source);
        points.push_back(LayerPoint{std::move(*ops_of_layer), e->forward, source});
      }
      if (!points.empty()) {
        ORRERY_RETURN_IF_ERROR(
            FitLayerScale(device, precision, *request.model, points, fit, out.residuals));
      }
    }
    if (fit.fitted) out.compute[precision] = fit.options;
  }
  return Status::Ok();
}

// Time per parameter = Σ step / Σ parameters: least squares through the
// origin weighted by 1/parameters (each step's time per parameter counts by
// its size).
void CalibrateOptimizer(const CalibrationRequest& request, Calibration& out) {
  double steps_ps = 0, parameters = 0;
  SourceList sources;
  for (const ComputeProfile& p : request.measurements.compute_profiles) {
    for (const traces::OptimizerMeasurement& o : p.optimizer) {
      if (o.parameters <= 0 || o.step <= Duration::Zero()) continue;
      steps_ps += static_cast<double>(o.step.picos());
      parameters += static_cast<double>(o.parameters);
      sources.Add(p.source);
    }
  }
  if (parameters <= 0) return;
  // Duration is exact to the picosecond, so the time per parameter is
  // rounded to one: coarse for a GPU's fused optimizer (a few ps per
  // parameter), exact enough for a CPU's (thousands).
  const Duration per = Duration::FromPicos(
      static_cast<int64_t>(std::llround(steps_ps / parameters)));
  out.optimizer_time_per_parameter = per;
  ResidualAccumulator acc;
  for (const ComputeProfile& p : request.measurements.compute_profiles) {
    for (const traces::OptimizerMeasurement& o : p.optimizer) {
      if (o.parameters <= 0 || o.step <= Duration::Zero()) continue;
      acc.Add(per * o.parameters, o.step);
    }
  }
  out.residuals.push_back(acc.Make("optimizer", sources.Join()));
}

std::string ResidualText(const Calibration& c, std::string_view prefix) {
  for (const FitResidual& r : c.residuals) {
    if (r.quantity.rfind(prefix, 0) == 0) {
      return "rms " + Percent(r.rms_relative_error) + ", max " + Percent(r.max_relative_error) +
             " over " + std::to_string(r.points) + " points";
    }
  }
  return "";
}

std::string FormatBandwidth(Bandwidth b) { return FixedText(b.ToGBps(), 2) + " GB/s"; }

// The nominal optimizer time per parameter the simulator uses without a
// measurement: 12 bytes (fp32 master weights and Adam's two moments, read
// and written: sim/training_graph.h's optimizer_bytes_per_parameter) at the
// device's memory bandwidth × bandwidth_efficiency.
double NominalOptimizerNanos(const topology::DeviceType& device, const Calibration* c) {
  double eff = DefaultComputeOptions(device).bandwidth_efficiency;
  if (c != nullptr && !c->compute.empty()) eff = c->compute.begin()->second.bandwidth_efficiency;
  return 12.0 / (device.memory_bandwidth * eff).BytesPerSecond() * 1e9;
}

}  // namespace

Result<Calibration> Calibrate(const CalibrationRequest& request) {
  if (request.cluster.node_types.empty()) {
    return InvalidArgumentError("calibration: the cluster has no node type");
  }
  Calibration out;
  out.device = request.cluster.PrimaryNodeType().device.name;
  out.sources = request.measurements.sources;
  ORRERY_RETURN_IF_ERROR(CalibrateCompute(request, out));
  CalibrateOptimizer(request, out);
  ORRERY_RETURN_IF_ERROR(CalibrateCollectives(request, out));
  if (request.measurements.overlap_coefficient.has_value()) {
    const double c = *request.measurements.overlap_coefficient;
    if (!(c >= 1.0)) {
      return InvalidArgumentError(request.measurements.overlap_source +
                                  ": overlap coefficient " + FixedText(c, 4) + " is below 1");
    }
    out.overlap_slowdown = c - 1.0;
  }
  if (out.empty()) {
    return InvalidArgumentError(
        "calibration: nothing to calibrate in the measurements given (no operator, layer, "
        "optimizer, collective or overlap measurement)");
  }
  return out;
}

Result<ComputeModel> CalibratedComputeModel(const topology::DeviceType& device,
                                            topology::Precision precision,
                                            const Calibration* calibration,
                                            std::optional<ComputeOptions> options) {
  if (calibration == nullptr) return ComputeModel::Create(device, precision, std::move(options));
  if (calibration->device != device.name) {
    return InvalidArgumentError("calibration made for device " + calibration->device +
                                ", not for " + device.name);
  }
  if (!options.has_value()) {
    auto it = calibration->compute.find(precision);
    if (it != calibration->compute.end()) options = it->second;
  }
  ORRERY_ASSIGN_OR_RETURN(ComputeModel model,
                          ComputeModel::Create(device, precision, std::move(options)));
  for (const ComputeProfile& p : calibration->profiles) {
    if (p.precision != precision) continue;
    ORRERY_RETURN_IF_ERROR(model.AddProfile(p));
  }
  return model;
}

Result<CollectiveModel> CalibratedCollectiveModel(const topology::ClusterSpec& cluster,
                                                  const Calibration* calibration) {
  if (calibration == nullptr) return CollectiveModel::Create(cluster);
  if (cluster.node_types.empty()) {
    return InvalidArgumentError("cluster " + cluster.name + " has no node type");
  }
  const std::string& device = cluster.PrimaryNodeType().device.name;
  if (calibration->device != device) {
    return InvalidArgumentError("calibration made for device " + calibration->device +
                                ", not for " + device);
  }
  return CollectiveModel::Create(cluster, calibration->collectives);
}

std::vector<CalibrationChange> DescribeChanges(const topology::ClusterSpec& cluster,
                                               const Calibration* before,
                                               const Calibration& after) {
  std::vector<CalibrationChange> rows;
  if (cluster.node_types.empty()) return rows;
  const topology::DeviceType& device = cluster.PrimaryNodeType().device;
  const ComputeOptions nominal = DefaultComputeOptions(device);
  for (const auto& [precision, fitted] : after.compute) {
    ComputeOptions old = nominal;
    if (before != nullptr) {
      auto it = before->compute.find(precision);
      if (it != before->compute.end()) old = it->second;
    }
    const std::string p = PrecisionStr(precision);
    const std::pair<const char*, std::pair<double, double>> figures[] = {
        {"gemm_max_efficiency", {old.gemm_max_efficiency, fitted.gemm_max_efficiency}},
        {"attention_forward_efficiency",
         {old.attention_forward_efficiency, fitted.attention_forward_efficiency}},
        {"attention_backward_efficiency",
         {old.attention_backward_efficiency, fitted.attention_backward_efficiency}},
        {"bandwidth_efficiency", {old.bandwidth_efficiency, fitted.bandwidth_efficiency}},
    };
    for (const auto& [name, values] : figures) {
      const std::string quantity = std::string(name) + " " + p;
      std::string residual = ResidualText(after, quantity);
      if (residual.empty() && values.first == values.second) continue;
      rows.push_back({quantity, FixedText(values.first, 3), FixedText(values.second, 3), residual});
    }
    for (const FitResidual& r : after.residuals) {
      if (r.quantity.rfind("layer scale ", 0) == 0 && r.quantity.find(" " + p + " ") != std::string::npos) {
        const size_t x = r.quantity.find("(x");
        const std::string scale =
            x == std::string::npos ? "" : r.quantity.substr(x + 2, r.quantity.size() - x - 3);
        rows.push_back({r.quantity.substr(0, x == std::string::npos ? r.quantity.size() : x - 1),
                        "1", scale,
                        "rms " + Percent(r.rms_relative_error) + ", max " +
                            Percent(r.max_relative_error) + " over " + std::to_string(r.points) +
                            " points"});
      }
    }
  }
  if (after.optimizer_time_per_parameter.has_value()) {
    const double old = before != nullptr && before->optimizer_time_per_parameter.has_value()
                           ? before->optimizer_time_per_parameter->ToNanos()
                           : NominalOptimizerNanos(device, before);
    rows.push_back({"optimizer time per parameter", FixedText(old, 4) + " ns",
                    FixedText(after.optimizer_time_per_parameter->ToNanos(), 4) + " ns",
                    ResidualText(after, "optimizer")});
  }
  Result<CollectiveModel> old_model = CalibratedCollectiveModel(cluster, before);
  Result<CollectiveModel> new_model = CalibratedCollectiveModel(cluster, &after);
  if (!old_model.ok() && before != nullptr) old_model = CollectiveModel::Create(cluster);
  for (const FittedCollective& fit : after.collectives.fits()) {
    if (fit.regimes.empty()) continue;
    const RankGroup group{fit.nodes, fit.ranks / std::max(fit.nodes, 1),
                          RankGroup::Placement::kConsecutive};
    const std::string label = std::string(traces::CollectiveOpName(fit.op));
    const std::string where = " (" + std::to_string(fit.nodes) + "x" +
                              std::to_string(group.ranks_per_node) + " ranks)";
    const std::string residual = ResidualText(after, CollectiveLabel(fit));
    // The smallest measured size shows the latency, the largest the bus
    // bandwidth.
    const Bytes small = fit.regimes.front().min_size;
    const Bytes large = fit.regimes.back().max_size;
    auto estimate = [&](const Result<CollectiveModel>& m,
                        Bytes size) -> std::optional<CollectiveEstimate> {
      if (!m.ok()) return std::nullopt;
      Result<CollectiveEstimate> e = m->Estimate(fit.op, size, group);
      if (!e.ok()) return std::nullopt;
      return *e;
    };
    const auto old_small = estimate(old_model, small);
    const auto new_small = estimate(new_model, small);
    const auto old_large = estimate(old_model, large);
    const auto new_large = estimate(new_model, large);
    rows.push_back({label + " time at " + FormatBytes(small) + where,
                    old_small ? FormatDuration(old_small->time) : "n/a",
                    new_small ? FormatDuration(new_small->time) : "n/a", residual});
    rows.push_back({label + " busbw at " + FormatBytes(large) + where,
                    old_large ? FormatBandwidth(old_large->busbw) : "n/a",
                    new_large ? FormatBandwidth(new_large->busbw) : "n/a", residual});
  }
  if (after.overlap_slowdown.has_value()) {
    const double old = before != nullptr ? before->overlap_slowdown.value_or(0.0) : 0.0;
    rows.push_back({"overlap slowdown", FixedText(old, 3), FixedText(*after.overlap_slowdown, 3), ""});
  }
  return rows;
}

}  // namespace orrery::costmodel
