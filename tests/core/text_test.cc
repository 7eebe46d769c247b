// core/text.h: widths count UTF-8 characters, padding and columns line up
// text holding "×", and FixedText is printf's "%.*f" without a length cap.
#include "core/text.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace orrery {
namespace {

TEST(TextWidth, CountsCharactersNotBytes) {
  EXPECT_EQ(TextWidth(""), 0u);
  EXPECT_EQ(TextWidth("tp2"), 3u);
  EXPECT_EQ(TextWidth("2048 × 8192"), 11u);  // "×" is 2 bytes
  EXPECT_EQ(TextWidth("ασ"), 2u);
}

TEST(PadText, PadsToCharactersAndNeverCuts) {
  EXPECT_EQ(PadText("a×", 4), "a×  ");
  EXPECT_EQ(PadText("abcdef", 3), "abcdef");
}

TEST(FixedText, IsPrintfFixedOfAnyLength) {
  EXPECT_EQ(FixedText(3.14159, 2), "3.14");
  EXPECT_EQ(FixedText(-0.5, 0), "-0");
  EXPECT_EQ(FixedText(2.5e-7, 3), "0.000");
  // Longer than any fixed buffer of 64 characters.
  const std::string big = FixedText(1e80, 1);
  EXPECT_EQ(big.size(), 83u);
  EXPECT_EQ(big.substr(big.size() - 2), ".0");
}

TEST(FormatColumns, AlignsEveryColumnButTheLastTwoSpacesApart) {
  const std::string out = FormatColumns({{"phase", "batch", "plan"},
                                         {"8k", "2048 × 8192", "tp8"},
                                         {"long-context", "1", ""}},
                                        2);
  EXPECT_EQ(out,
            "  phase         batch        plan\n"
            "  8k            2048 × 8192  tp8\n"
            "  long-context  1\n");  // trailing spaces dropped
  EXPECT_EQ(FormatColumns({}, 2), "");
}

TEST(ShortNumberText, GivesTheShortestOfTenSignificantDigits) {
  EXPECT_EQ(ShortNumberText(400), "400");
  EXPECT_EQ(ShortNumberText(2.5), "2.5");
  EXPECT_EQ(ShortNumberText(1.23e6), "1230000");
  EXPECT_EQ(ShortNumberText(1.5e12), "1.5e+12");
  EXPECT_EQ(ShortNumberText(1.0 / 3), "0.3333333333");
}

TEST(MoneyText, KeepsAboutThreeFigures) {
  EXPECT_EQ(MoneyText(355.4), "355");
  EXPECT_EQ(MoneyText(4123), "4.1k");
  EXPECT_EQ(MoneyText(1.054e6), "1.05M");
}

TEST(MillisecondsText, HasThreeDecimals) {
  EXPECT_EQ(MillisecondsText(0.0412), "41.200 ms");
  EXPECT_EQ(MillisecondsText(2), "2000.000 ms");
}

TEST(SpanText, ChangesUnitAtTwiceTheNextUnit) {
  EXPECT_EQ(SpanText(4.123), "4.12 s");
  EXPECT_EQ(SpanText(41.23), "41.2 s");
  EXPECT_EQ(SpanText(119), "119.0 s");
  EXPECT_EQ(SpanText(120), "2.0 min");
  EXPECT_EQ(SpanText(7199), "120.0 min");
  EXPECT_EQ(SpanText(7200), "2.0 h");
  EXPECT_EQ(SpanText(2 * 86400), "2.00 d");
  EXPECT_EQ(SpanText(53.126 * 86400), "53.13 d");
}

TEST(CsvField, QuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(CsvField("h100"), "h100");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvField("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(CsvField("plain", true), "\"plain\"");
}

}  // namespace
}  // namespace orrery
