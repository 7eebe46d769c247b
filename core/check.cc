#include "core/check.h"

#include <cstdio>
#include <cstdlib>

namespace orrery::check_internal {

CheckFailure::CheckFailure(const char* file, int line, const char* condition) {
  stream_ << file << ":" << line << ": check failed: " << condition << " ";
}

CheckFailure::~CheckFailure() {
  std::fprintf(stderr, "orrery: internal error (a bug): %s\n", stream_.str().c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace orrery::check_internal
