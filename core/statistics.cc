#include "core/statistics.h"

#include <algorithm>

namespace orrery {

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

Duration Median(std::vector<Duration> values) {
  if (values.empty()) return Duration();
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  if (values.size() % 2 == 1) return values[mid];
  return Duration::FromPicos((values[mid - 1].picos() + values[mid].picos()) / 2);
}

}  // namespace orrery
