// Text for the command line's tables: widths and padding of UTF-8 text
// (plan summaries hold "×", calibration residuals "α" and "σ"), counted in
// characters, so that columns line up.
//
// Thread-safety: pure functions.
#ifndef ORRERY_CORE_TEXT_H_
#define ORRERY_CORE_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace orrery {

// Characters (code points) of UTF-8 text: bytes that do not continue a
// multi-byte sequence.
size_t TextWidth(std::string_view s);

// `s` followed by spaces up to `width` characters (unchanged when wider).
std::string PadText(std::string s, size_t width);

}  // namespace orrery

#endif  // ORRERY_CORE_TEXT_H_
