// Invariant checks. A failed check is a bug in Orrery, not bad input: it
// prints the condition, the place and the message to stderr and aborts.
// Bad input is reported with Status (core/status.h) instead.
//
//   ORRERY_CHECK(n >= 1) << "ring of " << n << " ranks";
//   ORRERY_CHECK_EQ(a.size(), b.size());
//
// Checks are always on, in every build type.
#ifndef ORRERY_CORE_CHECK_H_
#define ORRERY_CORE_CHECK_H_

#include <sstream>

namespace orrery::check_internal {

// Collects the message of a failed check and aborts in its destructor.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  [[noreturn]] ~CheckFailure();

  template <typename T>
  CheckFailure& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

// Lets `ORRERY_CHECK(c) << ...` be a single expression of type void.
struct Voidify {
  void operator&(const CheckFailure&) {}
};

}  // namespace orrery::check_internal

#define ORRERY_CHECK(condition)                         \
  (condition) ? (void)0                                 \
              : ::orrery::check_internal::Voidify() &   \
                    ::orrery::check_internal::CheckFailure(__FILE__, __LINE__, #condition)

#define ORRERY_CHECK_OP_(a, op, b) \
  ORRERY_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define ORRERY_CHECK_EQ(a, b) ORRERY_CHECK_OP_(a, ==, b)
#define ORRERY_CHECK_NE(a, b) ORRERY_CHECK_OP_(a, !=, b)
#define ORRERY_CHECK_LT(a, b) ORRERY_CHECK_OP_(a, <, b)
#define ORRERY_CHECK_LE(a, b) ORRERY_CHECK_OP_(a, <=, b)
#define ORRERY_CHECK_GT(a, b) ORRERY_CHECK_OP_(a, >, b)
#define ORRERY_CHECK_GE(a, b) ORRERY_CHECK_OP_(a, >=, b)

#endif  // ORRERY_CORE_CHECK_H_
