// `orrery collective`: nccl-tests' columns, JSON rows, bad input.
#include <gtest/gtest.h>

#include "tests/cli/cli_runner.h"

namespace orrery::testing {
namespace {

TEST(CollectiveCli, PrintsNcclTestsColumnsWithTheChosenAlgorithm) {
  CliRun run = RunOrrery(
      "collective --cluster dgx-h100 --op allreduce --ranks 8 --min-bytes 1M --max-bytes 64M "
      "--step-factor 8");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("algbw"), std::string::npos);
  EXPECT_NE(run.out.find("busbw"), std::string::npos);
  EXPECT_NE(run.out.find("     1048576 "), std::string::npos);
  EXPECT_NE(run.out.find("    67108864 "), std::string::npos);
  EXPECT_EQ(run.out.find("   134217728 "), std::string::npos);
}

TEST(CollectiveCli, JsonRowsCarryTheDocumentedKeys) {
  CliRun run = RunOrrery(
      "collective --cluster dgx-h100 --nodes 2 --op allgather --ranks 16 --min-bytes 1G "
      "--max-bytes 1G --format json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* key : {"\"rows\"", "\"size_bytes\": 1073741824", "\"time_us\"", "\"algbw_gbps\"",
                          "\"busbw_gbps\"", "\"algorithm\""}) {
    EXPECT_NE(run.out.find(key), std::string::npos) << key;
  }
}

TEST(CollectiveCli, UnknownOperationExitsTwoWithOneMessage) {
  CliRun run = RunOrrery("collective --cluster dgx-h100 --op allsum --ranks 8");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.out.empty());
  EXPECT_NE(run.err.find("allsum"), std::string::npos);
}

TEST(CollectiveCli, MoreRanksThanTheClusterHasIsRejected) {
  CliRun run = RunOrrery("collective --cluster dgx-h100 --nodes 1 --op allreduce --ranks 16");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.out.empty());
}

}  // namespace
}  // namespace orrery::testing
