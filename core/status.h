// Status and Result<T>: how a fallible call reports bad input.
//
// Every call that can fail on input a person wrote (a spec file, a trace, a
// plan that does not fit its cluster) or on the outside world (a file, MPI,
// CUDA, NCCL) returns a Status or a Result<T>, never throws and never exits.
// The CLI turns the final Status into one message and exit code 2.
//
// A message names where the problem is and what was expected:
//   "cluster.json: field 'node.devices_per_node': expected a positive integer, got -8"
// Context is added on the way up with Status::WithContext().
//
//   Result<ClusterSpec> spec = LoadClusterSpec(path);
//   if (!spec.ok()) return spec.status();
//   ORRERY_ASSIGN_OR_RETURN(ModelSpec model, LoadModel(name));
//   ORRERY_RETURN_IF_ERROR(plan.Validate(model, cluster));
//
// Thread-safety: value types.
#ifndef ORRERY_CORE_STATUS_H_
#define ORRERY_CORE_STATUS_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "core/check.h"

namespace orrery {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // input that is malformed or out of range
  kNotFound,            // a file, preset or key that does not exist
  kFailedPrecondition,  // valid input that does not fit (a plan vs its cluster)
  kUnimplemented,       // a feature not built yet
  kIoError,             // reading or writing a file
  kUnavailable,         // a device, driver or library not present here
  kInternal,            // an outside library failed (MPI, CUDA, NCCL)
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message);

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns this status with "context: " put before its message; OK stays OK.
  Status WithContext(std::string_view context) const;

  // "invalid argument: <message>", or "OK".
  std::string ToString() const;

  bool operator==(const Status&) const = default;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status FailedPreconditionError(std::string message);
Status UnimplementedError(std::string message);
Status IoError(std::string message);
Status UnavailableError(std::string message);
Status InternalError(std::string message);

// A value of type T, or the Status saying why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : value_(std::move(status)) {  // NOLINT
    ORRERY_CHECK(!std::get<Status>(value_).ok()) << "Result built from an OK status";
  }

  bool ok() const { return std::holds_alternative<T>(value_); }
  // OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(value_); }

  // REQUIRES: ok().
  const T& value() const& {
    CheckOk();
    return std::get<T>(value_);
  }
  T& value() & {
    CheckOk();
    return std::get<T>(value_);
  }
  T&& value() && {
    CheckOk();
    return std::get<T>(std::move(value_));
  }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  void CheckOk() const {
    ORRERY_CHECK(ok()) << "value() of a failed Result: " << std::get<Status>(value_).ToString();
  }
  std::variant<T, Status> value_;
};

namespace status_internal {
inline Status AsStatus(const Status& s) { return s; }
template <typename T>
Status AsStatus(const Result<T>& r) {
  return r.status();
}
}  // namespace status_internal

}  // namespace orrery

#define ORRERY_STATUS_CONCAT_INNER_(a, b) a##b
#define ORRERY_STATUS_CONCAT_(a, b) ORRERY_STATUS_CONCAT_INNER_(a, b)

// Returns the Status of `expr` (a Status or a Result) from the enclosing
// function when it is not OK.
#define ORRERY_RETURN_IF_ERROR(expr)                                        \
  do {                                                                      \
    ::orrery::Status orrery_status_ = ::orrery::status_internal::AsStatus(expr); \
    if (!orrery_status_.ok()) return orrery_status_;                        \
  } while (false)

// Evaluates `rexpr` (a Result<T>); on error returns its Status, otherwise
// moves the value into `lhs` (a declaration or an lvalue).
#define ORRERY_ASSIGN_OR_RETURN(lhs, rexpr)                                      \
  ORRERY_ASSIGN_OR_RETURN_IMPL_(ORRERY_STATUS_CONCAT_(orrery_result_, __LINE__), \
                                lhs, rexpr)
#define ORRERY_ASSIGN_OR_RETURN_IMPL_(result, lhs, rexpr) \
  auto result = (rexpr);                                  \
  if (!result.ok()) return result.status();               \
  lhs = std::move(result).value()

#endif  // ORRERY_CORE_STATUS_H_
