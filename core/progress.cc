#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace orrery {

namespace {
std::atomic<bool> g_quiet{false};
}  // namespace

void SetQuiet(bool quiet) { g_quiet.store(quiet); }
bool IsQuiet() { return g_quiet.load(); }

void LogInfo(const std::string& message) {
  if (IsQuiet()) return;
  std::fprintf(stderr, "orrery: %s\n", message.c_str());
}

void LogWarning(const std::string& message) {
  std::fprintf(stderr, "orrery: warning: %s\n", message.c_str());
}

ProgressLine::ProgressLine(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      enabled_(!IsQuiet() && ::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - std::chrono::seconds(1)) {}

ProgressLine::~ProgressLine() { Finish(); }

void ProgressLine::Update(int64_t done) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && done != total_) return;
  last_draw_ = now;
  Draw(done);
}

void ProgressLine::Draw(int64_t done) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  char line[256];
  if (total_ > 0) {
    const double fraction = static_cast<double>(done) / static_cast<double>(total_);
    const double left = fraction > 0 ? elapsed * (1.0 - fraction) / fraction : 0.0;
    std::snprintf(line, sizeof(line), "%s  %lld/%lld %s  %3.0f%%  %.1f s elapsed, ~%.0f s left",
                  label_.c_str(), static_cast<long long>(done), static_cast<long long>(total_),
                  unit_.c_str(), 100.0 * fraction, elapsed, left);
  } else {
    std::snprintf(line, sizeof(line), "%s  %lld %s  %.1f s elapsed", label_.c_str(),
                  static_cast<long long>(done), unit_.c_str(), elapsed);
  }
  // \r returns to the line's start; \033[K clears what a longer line left.
  std::fprintf(stderr, "\r%s\033[K", line);
  std::fflush(stderr);
}

void ProgressLine::Finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

}  // namespace orrery
