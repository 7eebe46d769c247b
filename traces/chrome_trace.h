// ChromeTrace: a writer of the Chrome Trace Event format, the JSON document
// that Perfetto (https://ui.perfetto.dev) and chrome://tracing open:
//
//   {"traceEvents": [...], "displayTimeUnit": "ms"}
//
// Two kinds of event are written (Chrome Trace Event Format, "Complete
// Events" and "Metadata Events"):
//   * complete events, {"ph": "X", name, cat, pid, tid, ts, dur, args}: a
//     span on thread `tid` of process `pid`, with ts and dur in
//     microseconds as decimals derived from the exact picosecond Durations
//     (rounded to the nearest nanosecond, so three decimals);
//   * process_name / thread_name metadata events ({"ph": "M"}), which give
//     the viewer's rows their labels.
//
// Order is deterministic: the metadata events (sorted by pid, then tid) come
// first, then the complete events in the order they were added.
//
// Thread-safety: not thread-safe; distinct traces may be used from distinct
// threads.
#ifndef ORRERY_TRACES_CHROME_TRACE_H_
#define ORRERY_TRACES_CHROME_TRACE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/units.h"

namespace orrery::traces {

// One complete ("X") event.
struct ChromeTraceEvent {
  std::string name;
  std::string category;
  int pid = 0;
  int tid = 0;
  Duration start;     // from the trace's origin
  Duration duration;  // >= 0
  Json args = Json::object();  // shown in the viewer's detail pane
};

// `d` in microseconds, rounded to the nearest nanosecond (ties away from
// zero): 1'234'567 ps → 1.235.
double ChromeTraceMicros(Duration d);

class ChromeTrace {
 public:
  // Labels a process / a thread; the last call for an id wins.
  void SetProcessName(int pid, std::string name);
  void SetThreadName(int pid, int tid, std::string name);
  // REQUIRES: event.duration >= 0.
  void AddComplete(ChromeTraceEvent event);

  const std::vector<ChromeTraceEvent>& events() const { return events_; }

  // The whole document (see above).
  Json ToJson() const;

 private:
  std::map<int, std::string> process_names_;
  std::map<std::pair<int, int>, std::string> thread_names_;
  std::vector<ChromeTraceEvent> events_;
};

}  // namespace orrery::traces

#endif  // ORRERY_TRACES_CHROME_TRACE_H_
