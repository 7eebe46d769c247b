// Who sends what when a training run's state moves from one plan's layout
// to another's (issue #10): the rule the executor's re-sharding
// (exec/reshard.h PlanReshard) and the switch cost model
// (costmodel/reshard_cost.h ComputeReshardTraffic) both follow, written
// once here, below both, so that their per-rank bytes agree by
// construction (tests/exec/reshard_cost_test.cc checks that they do).
//
// For one element: its old holders H (the ranks holding it under the old
// plan, ascending) and its destinations D (the ranks that need it under
// the new plan and do not hold it, ascending; none is in H). Each
// destination d has a nearest holder h0(d): the first holder at or after
// d, cyclically (the h in H minimising (h − d) mod n). The destinations
// sharing h0 = H[i] form group i; ordered nearest to H[i] first (by
// (H[i] − d) mod n ascending), the j-th of them (j = 0, 1, …) gets
// H[(i + j) mod |H|]. So a destination alone with its nearest holder gets
// it — in Megatron's rank order tp is innermost, so that is usually a
// peer on the same node — and many destinations sharing one nearest
// holder are spread over all the replicas in turn, instead of piling on
// one (a whole pipeline stage moving from 128 data-parallel replicas to
// 3,072 new holders: 128.7 s on one sender against 1.0 s spread, for
// llama3-405b on 16,384 H100s, docs/switch-cost.md).
//
// Thread-safety: a pure function.
#ifndef ORRERY_WORKLOAD_RESHARD_SENDERS_H_
#define ORRERY_WORKLOAD_RESHARD_SENDERS_H_

#include <vector>

namespace orrery::workload {

// sources[k] = the sender of dests[k] under the rule above.
// REQUIRES: holders non-empty and ascending; dests ascending, none a holder.
void DealSenders(const std::vector<int>& holders, const std::vector<int>& dests,
                 std::vector<int>& sources);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_RESHARD_SENDERS_H_
