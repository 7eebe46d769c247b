#include "core/text.h"

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

}  // namespace orrery
