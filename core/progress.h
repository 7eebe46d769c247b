// Progress of long work (a search, a sweep, a profile) as one line on
// stderr that rewrites itself:
//
//   search [galvatron]  1832/4096 plans  44%  12.3 s elapsed, ~15 s left
//
// The line is drawn only when stderr is a terminal and the process has not
// been made quiet (`--quiet`, SetQuiet(true)); otherwise every call is a
// no-op, so logs and CI output stay clean. Redraws are limited to ten a
// second. Finish() (or the destructor) clears the line.
//
// Thread-safety: Update() may be called from several threads at once.
#ifndef ORRERY_CORE_PROGRESS_H_
#define ORRERY_CORE_PROGRESS_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace orrery {

// Process-wide switch for progress lines and informational log lines.
void SetQuiet(bool quiet);
bool IsQuiet();

// Writes "orrery: <message>" to stderr unless quiet. For warnings that must
// be seen whatever the setting, use LogWarning.
void LogInfo(const std::string& message);
void LogWarning(const std::string& message);

class ProgressLine {
 public:
  // `label` starts the line; `unit` names what is counted ("plans").
  // REQUIRES: total >= 0 (0 means unknown: no percentage or estimate).
  ProgressLine(std::string label, int64_t total, std::string unit);
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  ~ProgressLine();

  // Records that `done` items are complete and redraws if due.
  void Update(int64_t done);
  // Clears the line; later updates are ignored.
  void Finish();

  bool enabled() const { return enabled_; }

 private:
  void Draw(int64_t done);

  const std::string label_;
  const int64_t total_;
  const std::string unit_;
  const bool enabled_;
  const std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_draw_;
  bool finished_ = false;
};

}  // namespace orrery

#endif  // ORRERY_CORE_PROGRESS_H_
