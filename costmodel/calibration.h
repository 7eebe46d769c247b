// Calibration: the cost model of one cluster fitted to what was measured on
// it, with the residual of every fit.
//
// Measurements come in many forms (traces/measurements.h loads them all):
// Orrery's compute profiles (`orrery profile`) and execution traces
// (`orrery execute --trace-out`), nccl-tests logs, and Galvatron's profiler
// files. Calibrate turns them into what the cost model and the simulator
// consume:
//
//   * compute: the measured operator entries themselves (the compute
//     model's tables: an operator measured at its very shape is timed as
//     measured, one bracketed by measurements of its class is interpolated;
//     costmodel/compute.h), and the roofline's figures refitted per
//     precision so that operators nobody measured move with the ones that
//     were: the GEMM ceiling (gemm_max_efficiency, least squares in log
//     time over every GEMM entry against GemmEfficiency's shape curve), the
//     fused-attention ceilings, and the streaming bandwidth efficiency (norm,
//     element-wise, embedding and loss entries that carry their bytes).
//     Whole-layer timings (Galvatron's computation profile) need the model
//     they were measured on: with CalibrationRequest::model, one efficiency
//     scale is fitted so that the model's layer, expanded into operators and
//     timed by the roofline, matches every measured micro-batch size.
//   * the optimizer step: time per parameter held, from a profile's
//     optimizer measurements (replacing bytes / streaming bandwidth).
//   * collectives: α-β regimes per collective and per topology level
//     (inside one node; across nodes) from nccl-tests logs
//     (costmodel/collective_calibration.h) and from Galvatron's all-reduce,
//     point-to-point and sp_time tables.
//   * the overlap slowdown σ: compute that overlaps data-parallel
//     communication lasts (1 + σ) times longer; Galvatron's
//     overlap_coefficient is 1 + σ.
//
// A calibration is written into the cluster spec it describes, as its
// "calibration" member (docs/calibration-format.md documents every field), and is
// read back from there by every command that takes --cluster:
//
//   {"name": "cpu-local", "nodes": [...], "network": {...},
//    "calibration": {"device": "cpu-core", "sources": ["prof/compute_profile.json", ...],
//                    "compute": {"fp32": {"gemm_max_efficiency": 0.31, ...}},
//                    "profiles": [ ...traces/compute_profile.h documents... ],
//                    "optimizer_ns_per_parameter": 5.2,
//                    "collectives": [{"op": "all_reduce", "ranks": 2, "nodes": 1,
//                                     "source": "prof/all_reduce.log",
//                                     "regimes": [{"min_bytes": 8, "max_bytes": 4096,
//                                                  "latency_us": 1.4, "busbw_GBps": 0.8,
//                                                  "algorithm": "Ring", "protocol": "LL",
//                                                  "points": 10, "max_relative_error": 0.04}]}],
//                    "overlap_slowdown": 0.0,
//                    "residuals": [{"quantity": "gemm fp32", "source": "...", "points": 10,
//                                   "rms_relative_error": 0.03, "max_relative_error": 0.07}]}}
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_COSTMODEL_CALIBRATION_H_
#define ORRERY_COSTMODEL_CALIBRATION_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/collective.h"
#include "costmodel/collective_calibration.h"
#include "costmodel/compute.h"
#include "topology/cluster_spec.h"
#include "traces/compute_profile.h"
#include "traces/measurements.h"
#include "workload/model_spec.h"

namespace orrery::costmodel {

// How well one fitted quantity reproduces the points it was fitted to.
struct FitResidual {
  // What was fitted, e.g. "gemm_max_efficiency fp32", "all_reduce 1×2",
  // "optimizer", "layer scale llama2-7b".
  std::string quantity;
  std::string source;  // the file(s) the points come from
  int points = 0;
  // Of (model − measured) / measured over the points.
  double rms_relative_error = 0;
  double max_relative_error = 0;
};

struct Calibration {
  // DeviceType::name of the cluster's primary device: the device every
  // profile below is stored under (whatever label the measuring backend
  // gave it, e.g. "Intel(R) Xeon(R) ... (1 thread, Eigen 3.4.0)").
  std::string device;
  std::vector<std::string> sources;  // every input, in the order given

  // Compute: refitted roofline figures per precision (absent: the device's
  // defaults, DefaultComputeOptions) and the measured tables.
  std::map<topology::Precision, ComputeOptions> compute;
  std::vector<traces::ComputeProfile> profiles;  // device == `device`

  // The optimizer step per parameter a rank holds; nullopt: not measured
  // (the simulator's bytes / streaming bandwidth).
  std::optional<Duration> optimizer_time_per_parameter;

  CollectiveCalibration collectives;

  // σ; nullopt: not measured.
  std::optional<double> overlap_slowdown;

  std::vector<FitResidual> residuals;

  bool empty() const {
    return compute.empty() && profiles.empty() && !optimizer_time_per_parameter &&
           collectives.empty() && !overlap_slowdown;
  }
};

struct CalibrationRequest {
  // The cluster measured; its primary device names the calibration.
  topology::ClusterSpec cluster;
  traces::Measurements measurements;
  // The model whole-layer timings were measured on (Galvatron's
  // computation profile); nullptr: such timings are an error.
  const workload::ModelSpec* model = nullptr;
  // Galvatron's profiles do not say which precision they ran at; Orrery's
  // do. Used for Galvatron's layer timings.
  topology::Precision layer_precision = topology::Precision::kBf16;
  CollectiveFitOptions collective_fit;
};

// Fits everything the measurements allow. InvalidArgument naming the file
// when a measurement contradicts the cluster (a collective measured on more
// ranks than a node or the cluster holds, a profile at a precision the
// device lacks), when whole-layer timings come without a model, or when
// nothing at all can be fitted.
Result<Calibration> Calibrate(const CalibrationRequest& request);

// The compute model of `device` at `precision` with the calibration's
// figures and tables (nullptr: the nominal model, as
// ComputeModel::Create(device, precision)). `options`, when given,
// replaces the calibration's roofline figures (a command-line override).
// InvalidArgument when the calibration was made for another device.
Result<ComputeModel> CalibratedComputeModel(const topology::DeviceType& device,
                                            topology::Precision precision,
                                            const Calibration* calibration,
                                            std::optional<ComputeOptions> options = std::nullopt);

// The collective model of `cluster` with the calibration's fits (nullptr:
// the nominal model). InvalidArgument when the calibration was made for
// another device.
Result<CollectiveModel> CalibratedCollectiveModel(const topology::ClusterSpec& cluster,
                                                  const Calibration* calibration);

// One row of "what changed": a figure before (nominal or previous
// calibration) and after.
struct CalibrationChange {
  std::string quantity;  // "gemm_max_efficiency fp32", "all_reduce busbw at 1 MiB (2 ranks)", ...
  std::string before;    // formatted with its unit
  std::string after;
  std::string residual;  // "rms 3.1%, max 7.0% over 12 points", or ""
};
// The changes `after` makes to `before` (nullptr: the nominal model) on
// `cluster`, for the table `orrery calibrate` prints.
std::vector<CalibrationChange> DescribeChanges(const topology::ClusterSpec& cluster,
                                               const Calibration* before,
                                               const Calibration& after);

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_CALIBRATION_H_
