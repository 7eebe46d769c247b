#include "core/units.h"

#include <cstdio>

#include "core/check.h"

namespace orrery {

namespace units_internal {
int64_t RoundToInt64(double value) {
  ORRERY_CHECK(!std::isnan(value)) << "NaN converted to an exact quantity";
  constexpr double kMax = 9.2233720368547748e18;  // just below 2^63
  if (value >= kMax) return std::numeric_limits<int64_t>::max();
  if (value <= -kMax) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(std::llround(value));
}
}  // namespace units_internal

using units_internal::RoundToInt64;

Duration Duration::Scaled(double k) const {
  return Duration(RoundToInt64(static_cast<double>(ps_) * k));
}
Duration Duration::Divided(double k) const {
  ORRERY_CHECK(k != 0.0) << "Duration divided by zero";
  return Duration(RoundToInt64(static_cast<double>(ps_) / k));
}

Duration Seconds(double s) { return Duration::FromPicos(RoundToInt64(s * 1e12)); }
Duration Millis(double ms) { return Duration::FromPicos(RoundToInt64(ms * 1e9)); }
Duration Micros(double us) { return Duration::FromPicos(RoundToInt64(us * 1e6)); }
Duration Nanos(double ns) { return Duration::FromPicos(RoundToInt64(ns * 1e3)); }

namespace {
// Three significant digits: "1.25", "12.5", "125".
std::string ThreeDigits(double v) {
  char buf[32];
  double a = std::fabs(v);
  if (a >= 100.0 || a == 0.0) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else if (a >= 10.0) {
    std::snprintf(buf, sizeof(buf), "%.1f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f", v);
  }
  return buf;
}
}  // namespace

std::string FormatDuration(Duration d) {
  const double ps = static_cast<double>(d.picos());
  const double a = std::fabs(ps);
  if (a >= 1e12) return ThreeDigits(ps * 1e-12) + " s";
  if (a >= 1e9) return ThreeDigits(ps * 1e-9) + " ms";
  if (a >= 1e6) return ThreeDigits(ps * 1e-6) + " us";
  if (a >= 1e3) return ThreeDigits(ps * 1e-3) + " ns";
  return ThreeDigits(ps) + " ps";
}

Bytes Bytes::Scaled(double k) const {
  return Bytes(RoundToInt64(static_cast<double>(count_) * k));
}

Bytes GiBf(double n) { return Bytes(RoundToInt64(n * 1073741824.0)); }
Bytes GB(double n) { return Bytes(RoundToInt64(n * 1e9)); }
Bytes MB(double n) { return Bytes(RoundToInt64(n * 1e6)); }

std::string FormatBytes(Bytes b) {
  const double n = static_cast<double>(b.count());
  const double a = std::fabs(n);
  if (a >= 1099511627776.0) return ThreeDigits(n / 1099511627776.0) + " TiB";
  if (a >= 1073741824.0) return ThreeDigits(n / 1073741824.0) + " GiB";
  if (a >= 1048576.0) return ThreeDigits(n / 1048576.0) + " MiB";
  if (a >= 1024.0) return ThreeDigits(n / 1024.0) + " KiB";
  return std::to_string(b.count()) + " B";
}

Duration operator/(Bytes size, Bandwidth bw) {
  ORRERY_CHECK(bw.BytesPerSecond() > 0.0) << "transfer over a zero bandwidth";
  return Duration::FromPicos(
      RoundToInt64(static_cast<double>(size.count()) / bw.BytesPerSecond() * 1e12));
}

Duration operator/(Flops work, FlopRate rate) {
  ORRERY_CHECK(rate.FlopsPerSecond() > 0.0) << "work at a zero FLOP rate";
  return Duration::FromPicos(RoundToInt64(work.count() / rate.FlopsPerSecond() * 1e12));
}

Bandwidth operator/(Bytes size, Duration t) {
  ORRERY_CHECK(t.picos() > 0) << "bandwidth over a non-positive duration";
  return Bandwidth::FromBytesPerSecond(static_cast<double>(size.count()) / t.ToSeconds());
}

FlopRate operator/(Flops work, Duration t) {
  ORRERY_CHECK(t.picos() > 0) << "FLOP rate over a non-positive duration";
  return FlopRate::FromFlopsPerSecond(work.count() / t.ToSeconds());
}

Bytes operator*(Bandwidth bw, Duration t) {
  return Bytes(RoundToInt64(bw.BytesPerSecond() * t.ToSeconds()));
}

Flops operator*(FlopRate rate, Duration t) {
  return Flop(rate.FlopsPerSecond() * t.ToSeconds());
}

}  // namespace orrery
