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
#include <vector>

namespace orrery {

// Characters (code points) of UTF-8 text: bytes that do not continue a
// multi-byte sequence.
size_t TextWidth(std::string_view s);

// `s` followed by spaces up to `width` characters (unchanged when wider).
std::string PadText(std::string s, size_t width);

// `v` with `digits` digits after the point, as printf's "%.*f".
std::string FixedText(double v, int digits);

// Rows of cells as aligned columns: each line indented by `indent`
// spaces, every column but the last padded to its widest cell
// (TextWidth) plus two spaces, trailing spaces dropped; one line per row,
// each ending in a newline. Rows may have fewer cells than others.
std::string FormatColumns(const std::vector<std::vector<std::string>>& rows, size_t indent);

}  // namespace orrery

#endif  // ORRERY_CORE_TEXT_H_
