#include "workload/reshard_senders.h"

#include <algorithm>
#include <cstddef>

namespace orrery::workload {

// Walking the destinations below holders[0] downwards, then the rest
// downwards from the top, visits every group whole and each in its order
// (group 0, the cyclic one, is the first walk and the start of the
// second), so no sort is needed.
void DealSenders(const std::vector<int>& holders, const std::vector<int>& dests,
                 std::vector<int>& sources) {
  sources.assign(dests.size(), 0);
  const size_t below = static_cast<size_t>(
      std::lower_bound(dests.begin(), dests.end(), holders.front()) - dests.begin());
  size_t group = holders.size();  // none yet
  size_t j = 0;
  auto deal = [&](size_t k) {
    size_t nearest = static_cast<size_t>(
        std::upper_bound(holders.begin(), holders.end(), dests[k]) - holders.begin());
    if (nearest == holders.size()) nearest = 0;
    if (nearest != group) {
      group = nearest;
      j = 0;
    }
    sources[k] = holders[(nearest + j) % holders.size()];
    ++j;
  };
  for (size_t k = below; k-- > 0;) deal(k);
  for (size_t k = dests.size(); k-- > below;) deal(k);
}

}  // namespace orrery::workload
