#include "core/units.h"

#include <gtest/gtest.h>

namespace orrery {
namespace {

TEST(Units, BinaryPrefixesForMemoryDecimalForBandwidth) {
  EXPECT_EQ(GiB(1).count(), 1073741824);
  EXPECT_EQ(MiB(3).count(), 3 * 1048576);
  EXPECT_EQ(GB(1).count(), 1000000000);
  EXPECT_DOUBLE_EQ(GBps(450).BytesPerSecond(), 450e9);
  EXPECT_DOUBLE_EQ(Gbps(400).ToGBps(), 50.0);
  EXPECT_DOUBLE_EQ(TFlops(989.5).FlopsPerSecond(), 989.5e12);
}

TEST(Units, BytesOverBandwidthIsTime) {
  // 1 GB at 100 GB/s takes 10 ms.
  EXPECT_EQ(GB(1) / GBps(100), Millis(10));
  // 2 GiB at 450 GB/s: 2^31 / 450e9 s = 4.772185884 ms, exact to the picosecond.
  EXPECT_EQ((GiB(2) / GBps(450)).picos(), 4772185884);
}

TEST(Units, FlopsOverRateIsTime) {
  EXPECT_EQ(TFlop(3.2) / TFlops(989), Seconds(3.2 / 989));
  EXPECT_EQ(TFlop(1) / TFlops(1), Seconds(1));
}

TEST(Units, InversesRecoverRates) {
  EXPECT_DOUBLE_EQ((GB(10) / Seconds(2)).ToGBps(), 5.0);
  EXPECT_DOUBLE_EQ((TFlop(10) / Seconds(2)).ToTFlops(), 5.0);
  EXPECT_EQ(GBps(2) * Seconds(3), GB(6));
  EXPECT_DOUBLE_EQ((TFlops(2) * Seconds(3)).ToTFlop(), 6.0);
}

TEST(Units, DurationIsExactPicoseconds) {
  EXPECT_EQ(Micros(1).picos(), 1000000);
  EXPECT_EQ(Nanos(1.5).picos(), 1500);
  EXPECT_EQ(Seconds(1) + Millis(1), Micros(1001000));
  EXPECT_LT(Picos(1), Picos(2));
  EXPECT_DOUBLE_EQ(Millis(3) / Millis(2), 1.5);
  EXPECT_EQ(Millis(3) * 2, Millis(6));
  EXPECT_EQ(Millis(3) * 0.5, Micros(1500));
}

TEST(Units, DurationFromHugeDoubleSaturates) {
  EXPECT_EQ(Seconds(1e30), Duration::Max());
}

TEST(Units, FormatsWithThreeSignificantDigits) {
  EXPECT_EQ(FormatDuration(Millis(1.25)), "1.25 ms");
  EXPECT_EQ(FormatDuration(Micros(830)), "830 us");
  EXPECT_EQ(FormatDuration(Seconds(12)), "12.0 s");
  EXPECT_EQ(FormatBytes(GiBf(1.5)), "1.50 GiB");
  EXPECT_EQ(FormatBytes(KiB(512)), "512 KiB");
  EXPECT_EQ(FormatBytes(Bytes(17)), "17 B");
}

TEST(UnitsDeathTest, TransferOverZeroBandwidthIsABug) {
  EXPECT_DEATH((void)(GB(1) / Bandwidth::Zero()), "zero bandwidth");
}

}  // namespace
}  // namespace orrery
