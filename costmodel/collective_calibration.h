// Calibration of the collective model from nccl-tests logs: α-β regimes
// fitted by least squares.
//
// A measured curve time(size) is not one straight line: NCCL switches
// protocol (LL → LL128 → Simple) and algorithm (ring → NVLS) as the size
// grows, and each has its own latency and bandwidth. The fit cuts the
// measured sizes into at most `max_regimes` contiguous ranges and fits each
// with the α-β model
//     time = α + size / (β / factor(op, n))
// (β the bus bandwidth in nccl-tests' convention), by weighted linear least
// squares (Eigen, weights 1/time, so every size counts by its relative
// error). The cut is chosen by dynamic programming to minimise the largest
// relative error of any point; the fewest regimes whose largest error is
// within `target_max_relative_error` win. Each regime is labelled with the
// (algorithm, protocol) the nominal model picks at its sizes.
//
// The measurement of a row is the lesser of its out-of-place and in-place
// times: both time the same operation, and nccl-tests' outliers are slow
// ones (a 68 µs first iteration beside 13 µs neighbours).
//
// Thread-safety: pure functions.
#ifndef ORRERY_COSTMODEL_COLLECTIVE_CALIBRATION_H_
#define ORRERY_COSTMODEL_COLLECTIVE_CALIBRATION_H_

#include <string>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/collective.h"
#include "traces/galvatron_profiles.h"
#include "traces/nccl_tests_log.h"

namespace orrery::costmodel {

struct CollectiveFitOptions {
  int max_regimes = 4;
  double target_max_relative_error = 0.05;
};

// Fits one table. `source` names it in the fit and in errors. `nominal`
// labels the regimes and must describe the measured machine.
// InvalidArgument when the table's collective is unknown, it has no rank
// lines, it has fewer than two rows, or a time is not positive.
Result<FittedCollective> FitCollective(const traces::NcclTestsTable& table,
                                       const std::string& source, const CollectiveModel& nominal,
                                       const CollectiveFitOptions& options = {});

// Fits every table of `log` and adds them to `calibration`.
Status CalibrateFromLog(const traces::NcclTestsLog& log, const CollectiveModel& nominal,
                        CollectiveCalibration& calibration,
                        const CollectiveFitOptions& options = {});

// Galvatron's tables (traces/galvatron_profiles.h) as fits. A table's
// groups sit on the cluster shape its file name states (else on `cluster`'s
// first node); a group of n ranks on G devices per node spans
// ceil(n / G) nodes when consecutive. Each (op, level) keeps the fit of its
// largest group.
//   * all-reduce bandwidth: one regime per group, latency from the nominal
//     model at that group (Galvatron measures bandwidth only), bus
//     bandwidth as measured;
//   * p2p bandwidth: send/recv between neighbouring stages, one regime,
//     latency nominal;
//   * sp_time: all-reduce and all-to-all α-β fitted over the sizes by
//     FitCollective's least squares.
// InvalidArgument naming the file when a group does not fit the cluster.
Status CalibrateFromGalvatron(const traces::GalvatronAllReduceBandwidth& table,
                              const CollectiveModel& nominal, CollectiveCalibration& calibration);
Status CalibrateFromGalvatron(const traces::GalvatronP2pBandwidth& table,
                              const CollectiveModel& nominal, CollectiveCalibration& calibration);
Status CalibrateFromGalvatron(const traces::GalvatronCollectiveTimes& table,
                              const CollectiveModel& nominal, CollectiveCalibration& calibration,
                              const CollectiveFitOptions& options = {});

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_COLLECTIVE_CALIBRATION_H_
