// Text for the command line's tables: widths and padding of UTF-8 text
// (plan summaries hold "×", calibration residuals "α" and "σ"), counted in
// characters, so that columns line up; the number and time formats the
// reports share; CSV fields.
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

// The shortest of up to 10 significant digits, as printf's "%.10g":
// "400", "2.5", "1.23e+06". For CSV cells and flags written back.
std::string ShortNumberText(double v);

// An amount for a table, in three significant figures or so: "355",
// "4.1k", "1.05M".
std::string MoneyText(double amount);

// Milliseconds with three decimals: 0.0412 → "41.200 ms".
std::string MillisecondsText(double seconds);

// A span of time for people: "4.12 s", "41.2 s", "12.5 min", "7.3 h",
// "53.12 d" (seconds below 2 minutes, minutes below 2 hours, hours below
// 2 days).
std::string SpanText(double seconds);

// `s` as a CSV field (RFC 4180): quoted, with quotes doubled, when it
// holds a comma, a quote or a newline, or when `always_quote`.
std::string CsvField(const std::string& s, bool always_quote = false);

// Rows of cells as aligned columns: each line indented by `indent`
// spaces, every column but the last padded to its widest cell
// (TextWidth) plus two spaces, trailing spaces dropped; one line per row,
// each ending in a newline. Rows may have fewer cells than others.
std::string FormatColumns(const std::vector<std::vector<std::string>>& rows, size_t indent);

}  // namespace orrery

#endif  // ORRERY_CORE_TEXT_H_
