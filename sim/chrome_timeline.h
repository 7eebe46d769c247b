// TimelineToChromeTrace: a recorded pipeline replay (sim/task_graph.h,
// Timeline) as a Chrome trace (traces/chrome_trace.h) that Perfetto
// (https://ui.perfetto.dev) and chrome://tracing open.
//
// Layout: one process, "pipeline (data-parallel replica 0)" (pid 0), with
//   * one thread per stage, tid s, "stage s · rank r": its forwards
//     ("F3": micro-batch 3, category "forward"), backwards ("B3",
//     "backward"), then "gradient sync" and "optimizer";
//   * the transfers below them, one row ("lane") per direction between two
//     neighbouring stages and as many lanes as transfers overlap there:
//     "activations s→s+1" and "gradients s+1→s" (tids from 1000 up), each
//     event named "act 3" / "grad 3" with its bytes, ranks and micro-batch.
// Spans are exact: ts and dur are the recorded picosecond times, in
// microseconds rounded to the nanosecond.
//
// Thread-safety: a pure function.
#ifndef ORRERY_SIM_CHROME_TIMELINE_H_
#define ORRERY_SIM_CHROME_TIMELINE_H_

#include "core/json.h"
#include "sim/task_graph.h"

namespace orrery::sim {

Json TimelineToChromeTrace(const Timeline& timeline);

}  // namespace orrery::sim

#endif  // ORRERY_SIM_CHROME_TIMELINE_H_
