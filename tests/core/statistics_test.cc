#include "core/statistics.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/units.h"

namespace orrery {
namespace {

TEST(Median, TakesTheMiddleOrTheMeanOfTheTwoMiddleOnes) {
  EXPECT_EQ(Median(std::vector<double>{3, 1, 2}), 2);
  EXPECT_EQ(Median(std::vector<double>{4, 1, 3, 2}), 2.5);
  EXPECT_EQ(Median(std::vector<double>{7}), 7);
  EXPECT_EQ(Median(std::vector<double>{}), 0);
}

TEST(Median, OfDurationsIsExactInPicoseconds) {
  EXPECT_EQ(Median(std::vector<Duration>{Duration::FromPicos(5), Duration::FromPicos(1),
                                         Duration::FromPicos(3), Duration::FromPicos(2)}),
            Duration::FromPicos(2));  // (2 + 3) / 2, rounded down
  EXPECT_EQ(Median(std::vector<Duration>{Duration::FromPicos(9)}), Duration::FromPicos(9));
  EXPECT_EQ(Median(std::vector<Duration>{}), Duration());
}

}  // namespace
}  // namespace orrery
