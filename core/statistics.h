// Order statistics of measurements: the median that every timed report
// (the executor's steps, profile repeats, calibration runs) gives.
//
// Thread-safety: pure functions.
#ifndef ORRERY_CORE_STATISTICS_H_
#define ORRERY_CORE_STATISTICS_H_

#include <vector>

#include "core/units.h"

namespace orrery {

// The middle value of `values`, the mean of the two middle ones for an
// even count; 0 (a zero Duration) for none.
double Median(std::vector<double> values);
Duration Median(std::vector<Duration> values);

}  // namespace orrery

#endif  // ORRERY_CORE_STATISTICS_H_
