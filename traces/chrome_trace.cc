#include "traces/chrome_trace.h"

#include "core/check.h"

namespace orrery::traces {

double ChromeTraceMicros(Duration d) {
  const int64_t ps = d.picos();
  // Nearest nanosecond, ties away from zero.
  const int64_t ns = ps >= 0 ? (ps + 500) / 1000 : -((-ps + 500) / 1000);
  // ns / 1000 is exact in a double up to 2^53 ns (about 104 days); the
  // division yields the double nearest the decimal with three places.
  return static_cast<double>(ns) / 1000.0;
}

void ChromeTrace::SetProcessName(int pid, std::string name) {
  process_names_[pid] = std::move(name);
}

void ChromeTrace::SetThreadName(int pid, int tid, std::string name) {
  thread_names_[{pid, tid}] = std::move(name);
}

void ChromeTrace::AddComplete(ChromeTraceEvent event) {
  ORRERY_CHECK(event.duration >= Duration::Zero());
  events_.push_back(std::move(event));
}

Json ChromeTrace::ToJson() const {
  Json events = Json::array();
  for (const auto& [pid, name] : process_names_) {
    events.push_back(Json{{"name", "process_name"},
                          {"ph", "M"},
                          {"pid", pid},
                          {"tid", 0},
                          {"args", Json{{"name", name}}}});
  }
  for (const auto& [ids, name] : thread_names_) {
    events.push_back(Json{{"name", "thread_name"},
                          {"ph", "M"},
                          {"pid", ids.first},
                          {"tid", ids.second},
                          {"args", Json{{"name", name}}}});
  }
  for (const ChromeTraceEvent& e : events_) {
    Json event{{"name", e.name},
               {"cat", e.category},
               {"ph", "X"},
               {"pid", e.pid},
               {"tid", e.tid},
               {"ts", ChromeTraceMicros(e.start)},
               {"dur", ChromeTraceMicros(e.duration)}};
    if (!e.args.empty()) event["args"] = e.args;
    events.push_back(std::move(event));
  }
  return Json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
}

}  // namespace orrery::traces
