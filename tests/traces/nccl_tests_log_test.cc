#include "traces/collective_op.h"
#include "traces/nccl_tests_log.h"

#include <gtest/gtest.h>

#include <string>

namespace orrery::traces {
namespace {

const std::string kDir = std::string(ORRERY_FIXTURES_DIR) + "/nccl_tests/";
const std::string kDgxc = kDir + "nccl_allreduce_1node_8xH100_dgx_nvswitch_dgxc-benchmarking.log";
const std::string kFive = kDir + "nccl_5colls_1node_8xH100_cnode3-002.log";
const std::string kTwoNode =
    kDir + "nccl_allreduce_2node_16xH100_hgx_8xCX7_IB400G_nccl-tests-issue309.log";

TEST(NcclTestsLog, ReadsEveryRowOfTheSingleNodeAllReduceLog) {
  Result<NcclTestsLog> log = LoadNcclTestsLog(kDgxc);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_EQ(log->tables.size(), 1u);
  const NcclTestsTable& t = log->tables[0];
  // No "Collective test starting" line: all-reduce is read from busbw/algbw = 2·7/8.
  EXPECT_EQ(t.collective, CollectiveOp::kAllReduce);
  EXPECT_EQ(t.collective_evidence, "busbw/algbw ratio");
  EXPECT_EQ(t.nthread, 1);
  EXPECT_EQ(t.ngpus, 1);
  EXPECT_EQ(t.min_bytes, Bytes(8));
  EXPECT_EQ(t.max_bytes, GiB(16));
  EXPECT_EQ(t.iters, 20);
  EXPECT_EQ(t.warmup_iters, 5);
  EXPECT_EQ(t.settings.at("step"), "2(factor)");
  EXPECT_EQ(t.settings.at("direction"), "H2D");
  ASSERT_EQ(t.RankCount(), 8);
  EXPECT_EQ(t.NodeCount(), 1);
  EXPECT_EQ(t.ranks[3].rank, 3);
  EXPECT_EQ(t.ranks[3].group, 0);
  EXPECT_EQ(t.ranks[3].pid, 1006017);
  EXPECT_EQ(t.ranks[3].host, "pool0-01806");
  EXPECT_EQ(t.ranks[3].device, 3);
  EXPECT_EQ(t.ranks[3].bus_id, "0000:66:00");
  EXPECT_EQ(t.ranks[3].device_name, "NVIDIA H100 80GB HBM3");
  // 8 B to 16 GiB by factors of 2: 32 rows.
  ASSERT_EQ(t.rows.size(), 32u);
  const NcclTestsRow& first = t.rows.front();
  EXPECT_EQ(first.size, Bytes(8));
  EXPECT_EQ(first.count, 2);
  EXPECT_EQ(first.type, "float");
  EXPECT_EQ(first.redop, "sum");
  EXPECT_EQ(first.root, -1);
  EXPECT_EQ(first.out_of_place.time, Micros(13.67));
  EXPECT_EQ(first.in_place.time, Micros(13.03));
  EXPECT_EQ(first.out_of_place.wrong, 0);
  EXPECT_EQ(first.line, 16);
  const NcclTestsRow& last = t.rows.back();
  EXPECT_EQ(last.size, GiB(16));
  EXPECT_EQ(last.count, 4294967296);
  EXPECT_EQ(last.out_of_place.time, Micros(62648));
  EXPECT_DOUBLE_EQ(last.out_of_place.algbw.ToGBps(), 274.23);
  EXPECT_DOUBLE_EQ(last.out_of_place.busbw.ToGBps(), 479.90);
  EXPECT_DOUBLE_EQ(last.in_place.busbw.ToGBps(), 479.99);
  ASSERT_TRUE(t.avg_busbw_gbps.has_value());
  EXPECT_DOUBLE_EQ(*t.avg_busbw_gbps, 159.151);
  EXPECT_EQ(t.out_of_bounds, "0 OK");
}

TEST(NcclTestsLog, SplitsAFiveCollectiveLogIntoOneTablePerCollective) {
  Result<NcclTestsLog> log = LoadNcclTestsLog(kFive);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_EQ(log->tables.size(), 5u);
  const CollectiveOp expected[] = {CollectiveOp::kAllReduce, CollectiveOp::kAllGather,
                                   CollectiveOp::kReduceScatter, CollectiveOp::kAllToAll,
                                   CollectiveOp::kSendRecv};
  const double first_busbw[] = {321.10, 237.85, 262.55, 235.28, 79.48};
  const double last_busbw[] = {482.27, 361.86, 364.76, 348.03, 367.25};
  const double avg[] = {437.957, 328.618, 330.721, 313.838, 279.874};
  for (int i = 0; i < 5; ++i) {
    const NcclTestsTable& t = log->tables[i];
    SCOPED_TRACE(std::string(NcclTestsName(expected[i])));
    EXPECT_EQ(t.collective, expected[i]);
    EXPECT_EQ(t.collective_evidence, "log header");
    EXPECT_EQ(t.nccl_tests_version, "2.17.8");
    EXPECT_EQ(t.nccl_version, "22902");
    EXPECT_EQ(t.RankCount(), 8);
    EXPECT_EQ(t.min_bytes, MiB(32));
    EXPECT_EQ(t.max_bytes, GiB(64));
    ASSERT_EQ(t.rows.size(), 10u);
    EXPECT_EQ(t.rows.front().size, MiB(32));
    EXPECT_EQ(t.rows.back().size, GiB(16));
    EXPECT_EQ(t.rows.front().type, "double");
    EXPECT_DOUBLE_EQ(t.rows.front().out_of_place.busbw.ToGBps(), first_busbw[i]);
    EXPECT_DOUBLE_EQ(t.rows.back().out_of_place.busbw.ToGBps(), last_busbw[i]);
    EXPECT_DOUBLE_EQ(t.avg_busbw_gbps.value_or(0), avg[i]);
  }
  // all_gather's count is per rank: 32 MiB / 8 ranks / 8 B.
  EXPECT_EQ(log->tables[1].rows.front().count, 524288);
  EXPECT_EQ(log->tables[1].rows.front().redop, "none");
  // In-place all-to-all and send/recv are not checked: "#wrong" is N/A.
  EXPECT_FALSE(log->tables[3].rows.front().in_place.wrong.has_value());
  EXPECT_EQ(log->tables[3].rows.front().out_of_place.wrong, 0);
  EXPECT_EQ(log->tables[4].rows.back().out_of_place.time, Micros(46779.2));
}

TEST(NcclTestsLog, SkipsMpiNoiseInTheTwoNodeLogAndReadsSixteenRanks) {
  Result<NcclTestsLog> log = LoadNcclTestsLog(kTwoNode);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_EQ(log->tables.size(), 1u);
  const NcclTestsTable& t = log->tables[0];
  EXPECT_EQ(t.collective, CollectiveOp::kAllReduce);
  EXPECT_EQ(t.collective_evidence, "command line");  // all_reduce_perf_mpi
  EXPECT_EQ(t.nccl_version, "2.26.2+cuda12.8");
  ASSERT_EQ(t.RankCount(), 16);
  EXPECT_EQ(t.NodeCount(), 2);
  EXPECT_EQ(t.ranks[8].host, "bm-h100-02");
  EXPECT_EQ(t.ranks[8].device, 0);
  EXPECT_EQ(t.ranks[15].pid, 26640);
  ASSERT_EQ(t.rows.size(), 32u);
  EXPECT_EQ(t.rows.front().size, Bytes(8));
  EXPECT_EQ(t.rows.front().out_of_place.time, Micros(68.52));
  EXPECT_EQ(t.rows.front().in_place.time, Micros(24.70));
  EXPECT_EQ(t.rows.back().size, GiB(16));
  EXPECT_EQ(t.rows.back().out_of_place.time, Micros(68652));
  EXPECT_DOUBLE_EQ(t.rows.back().out_of_place.busbw.ToGBps(), 469.21);
  EXPECT_DOUBLE_EQ(t.avg_busbw_gbps.value_or(0), 139.56);
}

TEST(NcclTestsLog, EveryFixtureRowSatisfiesNcclTestsBandwidthDefinitions) {
  for (const std::string& path : {kDgxc, kFive, kTwoNode}) {
    Result<NcclTestsLog> log = LoadNcclTestsLog(path);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    for (const NcclTestsTable& t : log->tables) {
      ASSERT_TRUE(t.collective.has_value());
      double factor = BusBandwidthFactor(*t.collective, t.RankCount());
      for (const NcclTestsRow& r : t.rows) {
        double algbw = (r.size / r.out_of_place.time).ToGBps();
        // Printed with two decimals; time with four significant digits.
        EXPECT_NEAR(r.out_of_place.algbw.ToGBps(), algbw, 0.005 + 1e-3 * algbw)
            << path << ":" << r.line;
        EXPECT_NEAR(r.out_of_place.busbw.ToGBps(), algbw * factor, 0.005 + 1e-3 * algbw * factor)
            << path << ":" << r.line;
      }
    }
  }
}

TEST(NcclTestsLog, AMalformedRowNamesTheFileAndTheLine) {
  std::string text =
      "#       size         count      type   redop    root     time   algbw   busbw #wrong "
      "    time   algbw   busbw #wrong\n"
      "           8             2     float     sum      -1    13.67    0.00    0.00      0 "
      "   13.03    0.00    0.00      0\n"
      "          16             4     float     sum      -1    fast    0.00    0.00      0 "
      "   13.07    0.00    0.00      0\n";
  Result<NcclTestsLog> log = ParseNcclTestsLog(text, "bad.log");
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(log.status().message().find("bad.log:3:"), std::string::npos)
      << log.status().message();
  EXPECT_NE(log.status().message().find("'fast'"), std::string::npos);

  Result<NcclTestsLog> short_row = ParseNcclTestsLog(
      "#  size count type redop root time\n  8 2 float sum -1 13.67\n", "short.log");
  ASSERT_FALSE(short_row.ok());
  EXPECT_NE(short_row.status().message().find("short.log:2:"), std::string::npos);
}

TEST(NcclTestsLog, ATextWithoutATableIsAnError) {
  Result<NcclTestsLog> log = ParseNcclTestsLog("hello\n# nThread 1\n", "empty.log");
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("empty.log: no nccl-tests table"), std::string::npos);
}

TEST(NcclTestsLog, OldRowsWithoutRootAndTheCallersHintAreAccepted) {
  std::string text =
      "#  Rank  0 Pid  1 on a device  0 [0x19] Tesla V100\n"
      "#  Rank  1 Pid  2 on a device  1 [0x1a] Tesla V100\n"
      "#       size         count      type   redop     time   algbw   busbw  error     time"
      "   algbw   busbw  error\n"
      "     1048576        131072     float    none    20.00   52.43   26.21      0    20.00"
      "   52.43   26.21      0\n";
  Result<NcclTestsLog> log = ParseNcclTestsLog(text, "old.log", CollectiveOp::kAllGather);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const NcclTestsTable& t = log->tables[0];
  EXPECT_FALSE(t.ranks[0].group.has_value());
  EXPECT_EQ(t.ranks[1].device_name, "Tesla V100");
  EXPECT_EQ(t.collective, CollectiveOp::kAllGather);
  EXPECT_EQ(t.collective_evidence, "caller");
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_FALSE(t.rows[0].root.has_value());
}

TEST(CollectiveOp, BusBandwidthFactorsAreNcclTests) {
  EXPECT_DOUBLE_EQ(BusBandwidthFactor(CollectiveOp::kAllReduce, 8), 1.75);
  EXPECT_DOUBLE_EQ(BusBandwidthFactor(CollectiveOp::kAllGather, 8), 0.875);
  EXPECT_DOUBLE_EQ(BusBandwidthFactor(CollectiveOp::kAllToAll, 16), 15.0 / 16.0);
  EXPECT_DOUBLE_EQ(BusBandwidthFactor(CollectiveOp::kBroadcast, 8), 1.0);
  EXPECT_DOUBLE_EQ(BusBandwidthFactor(CollectiveOp::kSendRecv, 8), 1.0);
  EXPECT_EQ(ParseCollectiveOp("all_reduce_perf_mpi").value(), CollectiveOp::kAllReduce);
  EXPECT_EQ(ParseCollectiveOp("reducescatter").value(), CollectiveOp::kReduceScatter);
  EXPECT_FALSE(ParseCollectiveOp("allreduse").ok());
}

// nccl-tests' "time" column: 7 wide, 2 decimals below 100 µs, 1 below
// 10 ms, none above (as its printed rows show).
TEST(NcclTestsTime, PrintsTwoOneOrNoDecimalsAsTheTimeGrows) {
  EXPECT_EQ(NcclTestsTime(13.456), "  13.46");
  EXPECT_EQ(NcclTestsTime(190.24), "  190.2");
  EXPECT_EQ(NcclTestsTime(14014.4), "  14014");
}

// nccl-tests' size flags: binary K, M and G suffixes.
TEST(ParseNcclTestsSize, TakesBinarySuffixesAndNamesTheOptionOnBadInput) {
  EXPECT_EQ(*ParseNcclTestsSize("--max-bytes", "8"), 8);
  EXPECT_EQ(*ParseNcclTestsSize("--max-bytes", "64K"), 65536);
  EXPECT_EQ(*ParseNcclTestsSize("--max-bytes", "1G"), int64_t{1} << 30);
  Result<int64_t> bad = ParseNcclTestsSize("--max-bytes", "1T");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "--max-bytes: expected a size like 8, 64K, 16M or 1G, got '1T'");
}

}  // namespace
}  // namespace orrery::traces
