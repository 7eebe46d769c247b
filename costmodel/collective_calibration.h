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

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_COLLECTIVE_CALIBRATION_H_
