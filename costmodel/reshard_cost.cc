#include "costmodel/reshard_cost.h"

#include <algorithm>

// Not built yet: the helper building issue #10's switch cost replaces this.
namespace orrery::costmodel {

int64_t ReshardTraffic::total_bytes() const {
  int64_t n = 0;
  for (const int64_t b : bytes_sent) n += b;
  return n;
}
int64_t ReshardTraffic::max_sent() const {
  int64_t n = 0;
  for (const int64_t b : bytes_sent) n = std::max(n, b);
  return n;
}
int64_t ReshardTraffic::max_received() const {
  int64_t n = 0;
  for (const int64_t b : bytes_received) n = std::max(n, b);
  return n;
}

Result<ReshardTraffic> ComputeReshardTraffic(const workload::ModelSpec&, const workload::Plan&,
                                             int, const workload::Plan&, int, int,
                                             const StateLayoutOptions&) {
  return UnimplementedError("switch cost: not built yet");
}

Result<SwitchCost> EstimateSwitchCost(const ReshardTraffic&, const topology::ClusterSpec&,
                                      const std::optional<StorageBandwidth>&) {
  return UnimplementedError("switch cost: not built yet");
}

}  // namespace orrery::costmodel
