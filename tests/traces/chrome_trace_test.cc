#include "traces/chrome_trace.h"

#include <gtest/gtest.h>

#include "core/json.h"

namespace orrery::traces {
namespace {

TEST(ChromeTraceMicrosTest, ConvertsPicosecondsToMicrosecondsExactToTheNanosecond) {
  EXPECT_EQ(ChromeTraceMicros(Duration::FromPicos(0)), 0.0);
  EXPECT_EQ(ChromeTraceMicros(Duration::FromPicos(1'000'000)), 1.0);
  EXPECT_EQ(ChromeTraceMicros(Duration::FromPicos(1'234'000)), 1.234);
  EXPECT_EQ(ChromeTraceMicros(Duration::FromPicos(1'234'567)), 1.235);  // nearest ns
  EXPECT_EQ(ChromeTraceMicros(Duration::FromPicos(1'234'499)), 1.234);
  // 1 h 2 min 3.456789123 s: every nanosecond survives.
  EXPECT_EQ(ChromeTraceMicros(Duration::FromPicos(3'723'456'789'123'000)), 3723456789.123);
}

TEST(ChromeTraceTest, AKnownPairOfEventsSerializesToTheExpectedJson) {
  ChromeTrace trace;
  trace.AddComplete({.name = "F0",
                     .category = "forward",
                     .pid = 0,
                     .tid = 1,
                     .start = Duration::FromPicos(0),
                     .duration = Duration::FromPicos(2'500'000),
                     .args = Json{{"micro_batch", 0}}});
  trace.AddComplete({.name = "B0",
                     .category = "backward",
                     .pid = 0,
                     .tid = 1,
                     .start = Duration::FromPicos(2'500'000),
                     .duration = Duration::FromPicos(5'000'001)});
  trace.SetThreadName(0, 1, "stage 1");
  trace.SetProcessName(0, "pipeline");
  const Json expected = Json::parse(R"({
    "traceEvents": [
      {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "pipeline"}},
      {"name": "thread_name", "ph": "M", "pid": 0, "tid": 1, "args": {"name": "stage 1"}},
      {"name": "F0", "cat": "forward", "ph": "X", "pid": 0, "tid": 1, "ts": 0.0, "dur": 2.5,
       "args": {"micro_batch": 0}},
      {"name": "B0", "cat": "backward", "ph": "X", "pid": 0, "tid": 1, "ts": 2.5, "dur": 5.0}
    ],
    "displayTimeUnit": "ms"
  })");
  EXPECT_EQ(trace.ToJson(), expected);
  EXPECT_EQ(DumpJson(trace.ToJson()), DumpJson(expected));
}

}  // namespace
}  // namespace orrery::traces
