// TraceToChromeTrace: a simulated iteration (sim/iteration.h,
// IterationTrace: the task graph and every task's span) as a Chrome trace
// (traces/chrome_trace.h) that Perfetto (https://ui.perfetto.dev) and
// chrome://tracing open.
//
// Layout: one process per node ("node n"), one thread per rank and stream
// ("rank r · compute", "rank r · dp-comm", "rank r · pp-send"; tid =
// local device × 3 + stream). A task appears on every rank of each of its
// lanes (the tp ranks of a lane run it together):
//   * compute: "F3" / "B3" / "R3" (forward, backward, recompute of
//     micro-batch 3; "c1" appended for model chunk 1 of an interleaved
//     schedule), "optimizer"; category the task label;
//   * communication: "<kind> mb3" (tp-comm, cp-comm, ep-comm,
//     pp-activation, pp-gradient) or "<kind> bucket 2" (dp-grad-reduce,
//     dp-param-gather), category the label; args: bytes each ring edge (or pair)
//     carried, the uncontended time, the slowdown the sharing caused and
//     the group (the first rank of each lane).
// Spans are exact: ts and dur are the replay's picosecond times, in
// microseconds rounded to the nanosecond. Tasks of zero duration are left
// out. A trace of thousands of ranks is large (every task of every rank):
// open a small plan, or read the JSON report instead.
//
// Thread-safety: a pure function.
#ifndef ORRERY_SIM_CHROME_TIMELINE_H_
#define ORRERY_SIM_CHROME_TIMELINE_H_

#include "core/json.h"
#include "sim/iteration.h"

namespace orrery::sim {

// REQUIRES: `trace` was filled by SimulateIteration (spans recorded).
Json TraceToChromeTrace(const IterationTrace& trace);

}  // namespace orrery::sim

#endif  // ORRERY_SIM_CHROME_TIMELINE_H_
