// Reading and writing whole files. Writes are atomic: the contents go to a
// temporary file beside the target, which is renamed into place only when
// complete, so a failed run never leaves a partial output file.
//
// Thread-safety: the functions are thread-safe; writing one path from two
// threads at once leaves one of the two complete files.
#ifndef ORRERY_CORE_FILE_H_
#define ORRERY_CORE_FILE_H_

#include <string>
#include <string_view>

#include "core/status.h"

namespace orrery {

Result<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` through a temporary file and a rename.
// Creates no directories: the parent of `path` must exist.
Status WriteFileAtomically(const std::string& path, std::string_view contents);

}  // namespace orrery

#endif  // ORRERY_CORE_FILE_H_
