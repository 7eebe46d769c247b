#include "core/text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace orrery {

size_t TextWidth(std::string_view s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

std::string PadText(std::string s, size_t width) {
  const size_t w = TextWidth(s);
  if (w < width) s.append(width - w, ' ');
  return s;
}

std::string FixedText(double v, int digits) {
  const int n = std::snprintf(nullptr, 0, "%.*f", digits, v);
  std::string out(static_cast<size_t>(std::max(n, 0)) + 1, '\0');
  std::snprintf(out.data(), out.size(), "%.*f", digits, v);
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

std::string FormatColumns(const std::vector<std::vector<std::string>>& rows, size_t indent) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], TextWidth(row[c]));
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line(indent, ' ');
    for (size_t c = 0; c < row.size(); ++c) {
      line += c + 1 == row.size() ? row[c] : PadText(row[c], widths[c] + 2);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string ShortNumberText(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

std::string MoneyText(double amount) {
  char buf[64];
  if (amount >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", amount / 1e6);
  } else if (amount >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", amount / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f", amount);
  }
  return buf;
}

std::string MillisecondsText(double seconds) { return FixedText(1e3 * seconds, 3) + " ms"; }

std::string SpanText(double seconds) {
  constexpr double kSecondsPerDay = 86400.0;
  const double a = std::fabs(seconds);
  if (a < 120) return FixedText(seconds, a < 10 ? 2 : 1) + " s";
  if (a < 2 * 3600) return FixedText(seconds / 60, 1) + " min";
  if (a < 2 * kSecondsPerDay) return FixedText(seconds / 3600, 1) + " h";
  return FixedText(seconds / kSecondsPerDay, 2) + " d";
}

std::string CsvField(const std::string& s, bool always_quote) {
  const bool needs = always_quote || s.find_first_of(",\"\n") != std::string::npos;
  if (!needs) return s;
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace orrery
