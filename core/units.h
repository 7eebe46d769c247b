// Physical quantities as types: time, bytes, floating-point operations, and
// the rates between them.
//
// This header is the one place that knows 1e9 and 2^30. Values are built only
// by the named factories (`GiB(80)`, `GBps(450)`, `TFlops(989)`) and read
// only by named conversions (`ToSeconds()`, `ToGiB()`), as absl::Duration is,
// so no API carries a raw double whose unit lives in a comment.
//
// Prefixes: memory sizes use binary prefixes (KiB, MiB, GiB, TiB); bandwidth,
// FLOPs and FLOP rates use decimal ones (GB/s as nccl-tests and datasheets
// write them). Network line rates are in bits (`Gbps(400)` = 50 GB/s).
//
// Representation:
//   Duration   — signed 64-bit count of picoseconds (exact ordering for the
//                simulator; ±106 days of range). Conversions from double round
//                to the nearest picosecond.
//   Bytes      — signed 64-bit count of bytes.
//   Flops      — double (training runs exceed 2^63 FLOPs).
//   Bandwidth  — double bytes per second.
//   FlopRate   — double FLOPs per second.
// The only conversions between them are the operators at the end of this
// file: Bytes / Bandwidth → Duration, Flops / FlopRate → Duration, and their
// inverses.
//
// Thread-safety: value types, safe to copy and share.
#ifndef ORRERY_CORE_UNITS_H_
#define ORRERY_CORE_UNITS_H_

#include <cmath>
#include <compare>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

namespace orrery {

namespace units_internal {
// Rounds to the nearest integer, saturating at the int64 range.
int64_t RoundToInt64(double value);
}  // namespace units_internal

// ---------------------------------------------------------------------------
// Duration: a span of time, exact to the picosecond.
class Duration {
 public:
  constexpr Duration() = default;

  static constexpr Duration FromPicos(int64_t ps) { return Duration(ps); }
  static constexpr Duration Zero() { return Duration(0); }
  static constexpr Duration Max() {
    return Duration(std::numeric_limits<int64_t>::max());
  }

  constexpr int64_t picos() const { return ps_; }
  double ToSeconds() const { return static_cast<double>(ps_) * 1e-12; }
  double ToMillis() const { return static_cast<double>(ps_) * 1e-9; }
  double ToMicros() const { return static_cast<double>(ps_) * 1e-6; }
  double ToNanos() const { return static_cast<double>(ps_) * 1e-3; }

  constexpr auto operator<=>(const Duration&) const = default;
  constexpr Duration operator+(Duration o) const { return Duration(ps_ + o.ps_); }
  constexpr Duration operator-(Duration o) const { return Duration(ps_ - o.ps_); }
  constexpr Duration operator-() const { return Duration(-ps_); }
  Duration& operator+=(Duration o) { ps_ += o.ps_; return *this; }
  Duration& operator-=(Duration o) { ps_ -= o.ps_; return *this; }
  template <std::integral I>
  constexpr Duration operator*(I k) const { return Duration(ps_ * static_cast<int64_t>(k)); }
  // Scaling by a real factor rounds to the nearest picosecond.
  template <std::floating_point F>
  Duration operator*(F k) const { return Scaled(static_cast<double>(k)); }
  template <std::floating_point F>
  Duration operator/(F k) const { return Divided(static_cast<double>(k)); }
  template <std::integral I>
  Duration operator/(I k) const { return Divided(static_cast<double>(k)); }
  // Ratio of two durations.
  double operator/(Duration o) const {
    return static_cast<double>(ps_) / static_cast<double>(o.ps_);
  }

 private:
  explicit constexpr Duration(int64_t ps) : ps_(ps) {}
  Duration Scaled(double k) const;
  Duration Divided(double k) const;
  int64_t ps_ = 0;
};

template <typename K>
  requires std::is_arithmetic_v<K>
inline Duration operator*(K k, Duration d) { return d * k; }

Duration Seconds(double s);
Duration Millis(double ms);
Duration Micros(double us);
Duration Nanos(double ns);
inline constexpr Duration Picos(int64_t ps) { return Duration::FromPicos(ps); }

// "1.25 ms", "830 us", "12.0 s": three significant digits, unit chosen by size.
std::string FormatDuration(Duration d);

// ---------------------------------------------------------------------------
// Bytes: an amount of memory or data, exact to the byte.
class Bytes {
 public:
  constexpr Bytes() = default;
  explicit constexpr Bytes(int64_t count) : count_(count) {}
  static constexpr Bytes Zero() { return Bytes(0); }

  constexpr int64_t count() const { return count_; }
  double ToKiB() const { return static_cast<double>(count_) / 1024.0; }
  double ToMiB() const { return static_cast<double>(count_) / (1024.0 * 1024.0); }
  double ToGiB() const {
    return static_cast<double>(count_) / (1024.0 * 1024.0 * 1024.0);
  }
  double ToGB() const { return static_cast<double>(count_) * 1e-9; }

  constexpr auto operator<=>(const Bytes&) const = default;
  constexpr Bytes operator+(Bytes o) const { return Bytes(count_ + o.count_); }
  constexpr Bytes operator-(Bytes o) const { return Bytes(count_ - o.count_); }
  Bytes& operator+=(Bytes o) { count_ += o.count_; return *this; }
  Bytes& operator-=(Bytes o) { count_ -= o.count_; return *this; }
  template <std::integral I>
  constexpr Bytes operator*(I k) const { return Bytes(count_ * static_cast<int64_t>(k)); }
  // Scaling by a real factor rounds to the nearest byte.
  template <std::floating_point F>
  Bytes operator*(F k) const { return Scaled(static_cast<double>(k)); }
  // Integer division, rounding down (a share of a buffer split n ways).
  constexpr Bytes operator/(int64_t k) const { return Bytes(count_ / k); }
  double operator/(Bytes o) const {
    return static_cast<double>(count_) / static_cast<double>(o.count_);
  }

 private:
  Bytes Scaled(double k) const;
  int64_t count_ = 0;
};

template <typename K>
  requires std::is_arithmetic_v<K>
inline Bytes operator*(K k, Bytes b) { return b * k; }

inline constexpr Bytes KiB(int64_t n) { return Bytes(n << 10); }
inline constexpr Bytes MiB(int64_t n) { return Bytes(n << 20); }
inline constexpr Bytes GiB(int64_t n) { return Bytes(n << 30); }
inline constexpr Bytes TiB(int64_t n) { return Bytes(n << 40); }
// Fractional sizes ("79.6 GiB"), rounded to the nearest byte.
Bytes GiBf(double n);
// Decimal sizes, for data volumes quoted in GB.
Bytes GB(double n);
Bytes MB(double n);

// "1.50 GiB", "512 KiB", "17 B": binary prefixes, three significant digits.
std::string FormatBytes(Bytes b);

// ---------------------------------------------------------------------------
// Flops: a count of floating-point operations (a multiply-add is 2).
class Flops {
 public:
  constexpr Flops() = default;
  static constexpr Flops Zero() { return Flops(0.0); }
  static constexpr Flops FromCount(double n) { return Flops(n); }

  constexpr double count() const { return n_; }
  double ToGFlop() const { return n_ * 1e-9; }
  double ToTFlop() const { return n_ * 1e-12; }

  constexpr auto operator<=>(const Flops&) const = default;
  constexpr Flops operator+(Flops o) const { return Flops(n_ + o.n_); }
  constexpr Flops operator-(Flops o) const { return Flops(n_ - o.n_); }
  Flops& operator+=(Flops o) { n_ += o.n_; return *this; }
  constexpr Flops operator*(double k) const { return Flops(n_ * k); }
  constexpr Flops operator/(double k) const { return Flops(n_ / k); }
  constexpr double operator/(Flops o) const { return n_ / o.n_; }

 private:
  explicit constexpr Flops(double n) : n_(n) {}
  double n_ = 0.0;
};

inline constexpr Flops operator*(double k, Flops f) { return f * k; }
inline constexpr Flops Flop(double n) { return Flops::FromCount(n); }
inline constexpr Flops GFlop(double n) { return Flops::FromCount(n * 1e9); }
inline constexpr Flops TFlop(double n) { return Flops::FromCount(n * 1e12); }
inline constexpr Flops PFlop(double n) { return Flops::FromCount(n * 1e15); }

// ---------------------------------------------------------------------------
// Bandwidth: bytes per second, decimal prefixes.
class Bandwidth {
 public:
  constexpr Bandwidth() = default;
  static constexpr Bandwidth FromBytesPerSecond(double v) { return Bandwidth(v); }
  static constexpr Bandwidth Zero() { return Bandwidth(0.0); }

  constexpr double BytesPerSecond() const { return v_; }
  double ToGBps() const { return v_ * 1e-9; }
  // Line rate in gigabits per second, as NICs are sold.
  double ToGbps() const { return v_ * 8e-9; }

  constexpr auto operator<=>(const Bandwidth&) const = default;
  constexpr Bandwidth operator+(Bandwidth o) const { return Bandwidth(v_ + o.v_); }
  constexpr Bandwidth operator-(Bandwidth o) const { return Bandwidth(v_ - o.v_); }
  constexpr Bandwidth operator*(double k) const { return Bandwidth(v_ * k); }
  constexpr Bandwidth operator/(double k) const { return Bandwidth(v_ / k); }
  constexpr double operator/(Bandwidth o) const { return v_ / o.v_; }

 private:
  explicit constexpr Bandwidth(double v) : v_(v) {}
  double v_ = 0.0;
};

inline constexpr Bandwidth operator*(double k, Bandwidth b) { return b * k; }
inline constexpr Bandwidth GBps(double v) { return Bandwidth::FromBytesPerSecond(v * 1e9); }
inline constexpr Bandwidth MBps(double v) { return Bandwidth::FromBytesPerSecond(v * 1e6); }
inline constexpr Bandwidth TBps(double v) { return Bandwidth::FromBytesPerSecond(v * 1e12); }
// Network line rates: gigabits per second.
inline constexpr Bandwidth Gbps(double v) { return Bandwidth::FromBytesPerSecond(v * 1e9 / 8.0); }

// ---------------------------------------------------------------------------
// FlopRate: floating-point operations per second, decimal prefixes.
class FlopRate {
 public:
  constexpr FlopRate() = default;
  static constexpr FlopRate FromFlopsPerSecond(double v) { return FlopRate(v); }
  static constexpr FlopRate Zero() { return FlopRate(0.0); }

  constexpr double FlopsPerSecond() const { return v_; }
  double ToTFlops() const { return v_ * 1e-12; }
  double ToGFlops() const { return v_ * 1e-9; }

  constexpr auto operator<=>(const FlopRate&) const = default;
  constexpr FlopRate operator+(FlopRate o) const { return FlopRate(v_ + o.v_); }
  constexpr FlopRate operator*(double k) const { return FlopRate(v_ * k); }
  constexpr FlopRate operator/(double k) const { return FlopRate(v_ / k); }
  constexpr double operator/(FlopRate o) const { return v_ / o.v_; }

 private:
  explicit constexpr FlopRate(double v) : v_(v) {}
  double v_ = 0.0;
};

inline constexpr FlopRate operator*(double k, FlopRate r) { return r * k; }
inline constexpr FlopRate GFlops(double v) { return FlopRate::FromFlopsPerSecond(v * 1e9); }
inline constexpr FlopRate TFlops(double v) { return FlopRate::FromFlopsPerSecond(v * 1e12); }
inline constexpr FlopRate PFlops(double v) { return FlopRate::FromFlopsPerSecond(v * 1e15); }

// ---------------------------------------------------------------------------
// The conversions between quantities.
// REQUIRES: the divisor is positive.
Duration operator/(Bytes size, Bandwidth bw);
Duration operator/(Flops work, FlopRate rate);
Bandwidth operator/(Bytes size, Duration t);
FlopRate operator/(Flops work, Duration t);
Bytes operator*(Bandwidth bw, Duration t);
inline Bytes operator*(Duration t, Bandwidth bw) { return bw * t; }
Flops operator*(FlopRate rate, Duration t);
inline Flops operator*(Duration t, FlopRate rate) { return rate * t; }

}  // namespace orrery

#endif  // ORRERY_CORE_UNITS_H_
