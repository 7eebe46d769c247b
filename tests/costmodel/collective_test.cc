#include "costmodel/collective.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "costmodel/collective_calibration.h"
#include "topology/presets.h"
#include "traces/nccl_tests_log.h"

namespace orrery::costmodel {
namespace {

using topology::ClusterSpec;

const std::string kDir = std::string(ORRERY_FIXTURES_DIR) + "/nccl_tests/";
const std::string kDgxc = kDir + "nccl_allreduce_1node_8xH100_dgx_nvswitch_dgxc-benchmarking.log";
const std::string kFive = kDir + "nccl_5colls_1node_8xH100_cnode3-002.log";
const std::string kTwoNode =
    kDir + "nccl_allreduce_2node_16xH100_hgx_8xCX7_IB400G_nccl-tests-issue309.log";

// An 8-GPU H100 node written in code: NVSwitch 450 GB/s per direction, one
// 400 Gb/s NIC per GPU, `nodes` nodes under one leaf.
ClusterSpec H100Nodes(int nodes) {
  ClusterSpec c;
  c.name = "test-h100";
  topology::NodeType nt;
  nt.name = "h100";
  nt.count = nodes;
  nt.devices_per_node = 8;
  nt.device.name = "h100-sxm5-80gb";
  nt.device.model = "NVIDIA H100 80GB HBM3";
  nt.fabric = {topology::FabricKind::kNvSwitch, GBps(450), Micros(0.5)};
  for (int d = 0; d < 8; ++d) nt.nics.push_back({Gbps(400), {d}});
  c.node_types.push_back(nt);
  c.network.rail_optimized = true;
  c.network.tiers.push_back({"leaf", 32, 1.0, Micros(1.0)});
  c.network.tiers.push_back({"spine", std::nullopt, 2.0, Micros(1.0)});
  return c;
}

traces::NcclTestsTable LoadTable(const std::string& path, size_t index) {
  Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(path);
  EXPECT_TRUE(log.ok()) << log.status().ToString();
  return log->tables.at(index);
}

double MeasuredBusBw(const traces::NcclTestsRow& r) {
  // The lesser time of out-of-place and in-place, as the calibration reads it.
  return std::max(r.out_of_place.busbw.ToGBps(), r.in_place.busbw.ToGBps());
}

struct Errors {
  double from_1mib = 0;    // largest |relative error| of busbw, sizes >= 1 MiB
  double from_256mib = 0;  // the same, sizes >= 256 MiB
};

// Prints predicted beside measured busbw and returns the largest relative
// errors.
Errors Compare(const std::string& title, const CollectiveModel& model,
               const traces::NcclTestsTable& table, const RankGroup& group) {
  std::printf("\n%s\n%14s %10s %10s %8s  %s\n", title.c_str(), "size (B)", "measured",
              "predicted", "error", "algorithm (busbw in GB/s)");
  Errors worst;
  for (const traces::NcclTestsRow& r : table.rows) {
    Result<CollectiveEstimate> e = model.Estimate(*table.collective, r.size, group);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    double measured = MeasuredBusBw(r);
    double predicted = e->busbw.ToGBps();
    double err = measured > 0 ? predicted / measured - 1.0 : 0.0;
    if (r.size >= MiB(1)) worst.from_1mib = std::max(worst.from_1mib, std::abs(err));
    if (r.size >= MiB(256)) worst.from_256mib = std::max(worst.from_256mib, std::abs(err));
    std::printf("%14lld %10.2f %10.2f %+7.1f%%  %s (%s)\n",
                static_cast<long long>(r.size.count()), measured, predicted, 100 * err,
                e->AlgorithmLabel().c_str(), std::string(EstimateSourceName(e->source)).c_str());
  }
  std::printf("largest |error|: %.1f%% for sizes >= 1 MiB, %.1f%% for sizes >= 256 MiB\n",
              100 * worst.from_1mib, 100 * worst.from_256mib);
  return worst;
}

TEST(RingAllReduce, MatchesItsClosedForm) {
  // 2(n-1)·α + 2(n-1)/n · S / bw with n = 8, α = 1 µs, S = 1 GB, bw = 100 GB/s:
  // 14 µs + 1.75 · 10 ms = 17.514 ms.
  EXPECT_EQ(RingAllReduceTime(GB(1), 8, Micros(1), GBps(100)), Micros(17514));
  EXPECT_EQ(RingAllReduceTime(GB(1), 1, Micros(1), GBps(100)), Duration::Zero());
  // Two ranks: 2·1/2 = the whole array crosses the link once.
  EXPECT_EQ(RingAllReduceTime(GB(1), 2, Micros(0), GBps(100)), Millis(10));
}

TEST(CollectiveModel, NcclRingSimpleAllReduceIsBaseLatencyPlusStepsPlusBusBandwidth) {
  Result<CollectiveModel> model = CollectiveModel::Create(H100Nodes(1));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto cands = model->NominalCandidates(CollectiveOp::kAllReduce, GiB(1), {1, 8});
  ASSERT_TRUE(cands.ok());
  const CollectiveEstimate* ring = nullptr;
  for (const CollectiveEstimate& e : *cands) {
    if (e.algorithm == CollectiveAlgorithm::kRing && e.protocol == CollectiveProtocol::kSimple) {
      ring = &e;
    }
  }
  ASSERT_NE(ring, nullptr);
  // NCCL: 8.4 µs base + 2(n-1) × 3.4 µs NVLink hops; bus bandwidth
  // 450 GB/s × 20.6/25 = 370.8 GB/s reached with 6 channels of 60 GB/s
  // (12 of 30 once duplicated) = 360 GB/s; the ring moves 2(n-1)/n of S.
  double expected_us = 8.4 + 14 * 3.4 + 1.75 * 1073741824.0 / 360e3;
  EXPECT_NEAR(ring->time.ToMicros(), expected_us, 1e-3);
  EXPECT_NEAR(ring->busbw.ToGBps(), 1073741824.0 / expected_us * 1e-3 * 1.75, 1e-6);
  // The same as the textbook formula with α = 3.4 µs, plus NCCL's base latency.
  EXPECT_NEAR((RingAllReduceTime(GiB(1), 8, Micros(3.4), GBps(360)) + Micros(8.4)).ToMicros(),
              expected_us, 1e-3);
}

TEST(CollectiveModel, ChoosesLowLatencyProtocolsForSmallSizesAndNvlsForLargeOnes) {
  Result<CollectiveModel> model = CollectiveModel::Create(H100Nodes(1));
  ASSERT_TRUE(model.ok());
  auto small = model->Estimate(CollectiveOp::kAllReduce, Bytes(8), {1, 8});
  auto large = model->Estimate(CollectiveOp::kAllReduce, GiB(16), {1, 8});
  ASSERT_TRUE(small.ok() && large.ok());
  EXPECT_EQ(small->protocol, CollectiveProtocol::kLl);
  EXPECT_EQ(large->algorithm, CollectiveAlgorithm::kNvls);
  EXPECT_EQ(small->source, EstimateSource::kNominal);
  // Latency floor of a ring LL all-reduce: 6.6 + 14 × 0.6 = 15 µs.
  EXPECT_NEAR(small->time.ToMicros(), 15.0, 0.01);
  // busbw and algbw follow nccl-tests.
  EXPECT_NEAR(large->busbw / large->algbw, 1.75, 1e-9);
  // Two nodes: NVLSTree is the hierarchical choice at large sizes.
  Result<CollectiveModel> two = CollectiveModel::Create(H100Nodes(2));
  auto big2 = two->Estimate(CollectiveOp::kAllReduce, GiB(16), {2, 8});
  ASSERT_TRUE(big2.ok());
  EXPECT_EQ(big2->algorithm, CollectiveAlgorithm::kNvlsTree);
}

TEST(CollectiveModel, OneRankPerNodeIsBoundByItsRailsNic) {
  Result<CollectiveModel> model = CollectiveModel::Create(H100Nodes(4));
  ASSERT_TRUE(model.ok());
  RankGroup dp{4, 1, RankGroup::Placement::kStrided};
  auto e = model->Estimate(CollectiveOp::kAllReduce, GiB(4), dp);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  // One 400 Gb/s NIC (NCCL counts 48 GB/s of its 50): busbw at most 48.
  EXPECT_LE(e->busbw.ToGBps(), 48.0);
  EXPECT_GT(e->busbw.ToGBps(), 30.0);
  // Send/recv inside a node runs at the NVLink path bandwidth.
  auto sr = model->Estimate(CollectiveOp::kSendRecv, GiB(4), {1, 8});
  ASSERT_TRUE(sr.ok());
  EXPECT_NEAR(sr->busbw.ToGBps(), 450 * 20.6 / 25, 1.0);
}

TEST(CollectiveModel, OversubscribedSpineSlowsGroupsThatLeaveTheLeaf) {
  Result<CollectiveModel> model = CollectiveModel::Create(H100Nodes(64));
  ASSERT_TRUE(model.ok());
  auto in_leaf = model->Estimate(CollectiveOp::kAllGather, GiB(8), {32, 8});
  auto across = model->Estimate(CollectiveOp::kAllGather, GiB(8), {64, 8});
  ASSERT_TRUE(in_leaf.ok() && across.ok());
  // Leaving a non-blocking leaf adds the spine's latency only.
  EXPECT_GE(across->time, in_leaf->time);
  // A 2:1 leaf halves the NICs' 8 × 48 GB/s to 192, below the 360 GB/s
  // NVLink ring: busbw drops to about 192/360 of the non-blocking figure.
  ClusterSpec c = H100Nodes(64);
  c.network.tiers[0].oversubscription = 2.0;
  Result<CollectiveModel> over = CollectiveModel::Create(c);
  auto slowed = over->Estimate(CollectiveOp::kAllGather, GiB(8), {64, 8});
  ASSERT_TRUE(slowed.ok());
  EXPECT_GT(slowed->busbw / across->busbw, 0.5);
  EXPECT_LT(slowed->busbw / across->busbw, 0.6);
  auto in_leaf_over = over->Estimate(CollectiveOp::kAllGather, GiB(8), {32, 8});
  EXPECT_EQ(in_leaf_over->busbw, in_leaf->busbw);
}

TEST(CollectiveModel, RejectsGroupsThatDoNotFitTheCluster) {
  Result<CollectiveModel> model = CollectiveModel::Create(H100Nodes(2));
  ASSERT_TRUE(model.ok());
  EXPECT_FALSE(model->Estimate(CollectiveOp::kAllReduce, MiB(1), {1, 9}).ok());
  EXPECT_FALSE(model->Estimate(CollectiveOp::kAllReduce, MiB(1), {3, 8}).ok());
  EXPECT_FALSE(model->Estimate(CollectiveOp::kAllReduce, Bytes(-1), {1, 8}).ok());
  EXPECT_FALSE(PackRanks(H100Nodes(2), 12).ok());
  EXPECT_FALSE(PackRanks(H100Nodes(2), 24).ok());
  Result<RankGroup> g = PackRanks(H100Nodes(2), 16);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->nodes, 2);
  EXPECT_EQ(g->ranks_per_node, 8);
  auto one = model->Estimate(CollectiveOp::kAllReduce, MiB(1), {1, 1});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->time, Duration::Zero());
}

class FixtureCalibration : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<ClusterSpec> preset = topology::ClusterPreset("dgx-h100");
    ASSERT_TRUE(preset.ok()) << preset.status().ToString();
    cluster_ = *preset;
    Result<ClusterSpec> two = topology::ResolveCluster("dgx-h100", 2);
    ASSERT_TRUE(two.ok()) << two.status().ToString();
    cluster2_ = *two;
    Result<CollectiveModel> nominal = CollectiveModel::Create(cluster_);
    ASSERT_TRUE(nominal.ok());
    Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(kDgxc);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(CalibrateFromLog(*log, *nominal, calibration_).ok());
  }
  ClusterSpec cluster_;
  ClusterSpec cluster2_;
  CollectiveCalibration calibration_;
};

TEST_F(FixtureCalibration, FitsTheSingleNodeAllReduceWithinTenPercentFromOneMiB) {
  const FittedCollective* fit = calibration_.Find(CollectiveOp::kAllReduce);
  ASSERT_NE(fit, nullptr);
  EXPECT_EQ(fit->ranks, 8);
  std::printf("fitted regimes of %s:\n", fit->source.c_str());
  for (const FittedRegime& r : fit->regimes) {
    std::printf("  %12lld..%-12lld B  alpha %7.2f us  busbw %7.2f GB/s  (%s/%s, %d points, "
                "max error %.1f%%)\n",
                static_cast<long long>(r.min_size.count()),
                static_cast<long long>(r.max_size.count()), r.latency.ToMicros(),
                r.busbw.ToGBps(), std::string(AlgorithmName(r.algorithm)).c_str(),
                std::string(ProtocolName(r.protocol)).c_str(), r.points,
                100 * r.max_relative_error);
  }
  Result<CollectiveModel> model = CollectiveModel::Create(cluster_, calibration_);
  ASSERT_TRUE(model.ok());
  double worst = Compare("8xH100 all_reduce (dgxc log), calibrated on itself", *model,
                         LoadTable(kDgxc, 0), {1, 8}).from_1mib;
  EXPECT_LT(worst, 0.10);
}

TEST_F(FixtureCalibration, PredictsTheOtherSingleNodeAllReduceWithoutRefitting) {
  Result<CollectiveModel> model = CollectiveModel::Create(cluster_, calibration_);
  ASSERT_TRUE(model.ok());
  double worst = Compare("8xH100 all_reduce (cnode3 log), calibrated on the dgxc log", *model,
                         LoadTable(kFive, 0), {1, 8}).from_1mib;
  // Measured: at most 4.1% (the fit's 463 GB/s plateau against cnode3's
  // 482 GB/s at 16 GiB).
  EXPECT_LT(worst, 0.06);
}

TEST_F(FixtureCalibration, PredictsTheTwoNodeAllReduceFromThePresetAndTheSingleNodeFit) {
  Result<CollectiveModel> nominal = CollectiveModel::Create(cluster2_);
  Result<CollectiveModel> calibrated = CollectiveModel::Create(cluster2_, calibration_);
  ASSERT_TRUE(nominal.ok() && calibrated.ok());
  traces::NcclTestsTable table = LoadTable(kTwoNode, 0);
  ASSERT_EQ(table.RankCount(), 16);
  Errors nominal_err = Compare("2 x 8 H100 all_reduce (issue 309), nominal dgx-h100 preset",
                               *nominal, table, {2, 8});
  Errors calibrated_err =
      Compare("2 x 8 H100 all_reduce (issue 309), single-node fit + preset NICs", *calibrated,
              table, {2, 8});
  // Bounds as measured: the nominal model overestimates the 8-64 MiB range
  // by up to 49% and large sizes by 9-21%; the calibrated one is within 8%
  // from 256 MiB but still 58% high at 1 MiB, where the real two-node run
  // pays more network latency than NCCL's model charges.
  EXPECT_LT(nominal_err.from_1mib, 0.55);
  EXPECT_LT(nominal_err.from_256mib, 0.25);
  EXPECT_LT(calibrated_err.from_1mib, 0.65);
  EXPECT_LT(calibrated_err.from_256mib, 0.10);
  EXPECT_LT(calibrated_err.from_256mib, nominal_err.from_256mib);
}

TEST_F(FixtureCalibration, NominalModelReproducesTheShapeOfTheSingleNodeCurve) {
  Result<CollectiveModel> nominal = CollectiveModel::Create(cluster_);
  ASSERT_TRUE(nominal.ok());
  traces::NcclTestsTable table = LoadTable(kDgxc, 0);
  Errors err = Compare("8xH100 all_reduce (dgxc log), nominal dgx-h100 preset", *nominal, table,
                       {1, 8});
  // Measured: NCCL's model with the preset's 450 GB/s overestimates NVLS at
  // 256 MiB by 17.6%; the mid range (it charges no channel ramp-up) by more.
  EXPECT_LT(err.from_256mib, 0.20);
  // The latency plateau: 8 B takes 13.0-13.7 µs measured.
  auto tiny = nominal->Estimate(CollectiveOp::kAllReduce, Bytes(8), {1, 8});
  ASSERT_TRUE(tiny.ok());
  EXPECT_NEAR(tiny->time.ToMicros(), 13.3, 3.0);
}

TEST(CollectiveCalibration, FitsEveryCollectiveOfTheFiveCollectiveLog) {
  Result<ClusterSpec> cluster = topology::ClusterPreset("dgx-h100");
  ASSERT_TRUE(cluster.ok());
  Result<CollectiveModel> nominal = CollectiveModel::Create(*cluster);
  Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(kFive);
  ASSERT_TRUE(log.ok() && nominal.ok());
  CollectiveCalibration calibration;
  ASSERT_TRUE(CalibrateFromLog(*log, *nominal, calibration).ok());
  EXPECT_EQ(calibration.fits().size(), 5u);
  Result<CollectiveModel> model = CollectiveModel::Create(*cluster, calibration);
  ASSERT_TRUE(model.ok());
  for (const traces::NcclTestsTable& t : log->tables) {
    double worst = Compare(std::string(traces::NcclTestsName(*t.collective)) +
                               " (cnode3 log), calibrated on itself",
                           *model, t, {1, 8}).from_1mib;
    EXPECT_LT(worst, 0.10) << traces::NcclTestsName(*t.collective);
  }
}

TEST(CollectiveCalibration, ATableWithoutACollectiveOrRanksIsRejected) {
  Result<ClusterSpec> cluster = topology::ClusterPreset("dgx-h100");
  ASSERT_TRUE(cluster.ok());
  Result<CollectiveModel> nominal = CollectiveModel::Create(*cluster);
  ASSERT_TRUE(nominal.ok());
  traces::NcclTestsTable t = LoadTable(kDgxc, 0);
  t.collective.reset();
  EXPECT_FALSE(FitCollective(t, "x.log", *nominal).ok());
  t = LoadTable(kDgxc, 0);
  t.ranks.clear();
  Result<FittedCollective> f = FitCollective(t, "x.log", *nominal);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("x.log"), std::string::npos);
}

}  // namespace
}  // namespace orrery::costmodel
