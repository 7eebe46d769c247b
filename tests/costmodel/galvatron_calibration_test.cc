// Calibrating the collective model from Galvatron's hardware profiles
// (../shared/fixtures/galvatron/hardware_configs, PKU-DAIR/Hetu-Galvatron
// galvatron/profile_hardware/hardware_configs): one fit per (op, topology
// level), the inter-node one timing groups that span nodes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "costmodel/collective.h"
#include "costmodel/collective_calibration.h"
#include "topology/presets.h"
#include "traces/galvatron_profiles.h"

namespace orrery::costmodel {
namespace {

using topology::ClusterSpec;

const std::string kDir = std::string(ORRERY_FIXTURES_DIR) + "/galvatron/hardware_configs/";
const std::string kAllReduce2 = kDir + "allreduce_bandwidth_2nodes_8gpus_per_node.json";
const std::string kP2p2 = kDir + "p2p_bandwidth_2nodes_8gpus_per_node.json";
const std::string kSpTime1 = kDir + "sp_time_1nodes_8gpus_per_node.json";

FittedCollective OneRegimeFit(CollectiveOp op, int ranks, int nodes, double busbw_gbps) {
  FittedCollective f;
  f.op = op;
  f.ranks = ranks;
  f.nodes = nodes;
  f.source = std::to_string(ranks) + "x" + std::to_string(nodes);
  FittedRegime r;
  r.min_size = MiB(1);
  r.max_size = GiB(1);
  r.latency = Micros(10);
  r.busbw = GBps(busbw_gbps);
  f.regimes.push_back(r);
  return f;
}

TEST(CollectiveCalibration, KeepsOneFitPerOpAndTopologyLevel) {
  CollectiveCalibration c;
  c.Add(OneRegimeFit(CollectiveOp::kAllReduce, 8, 1, 150));
  c.Add(OneRegimeFit(CollectiveOp::kAllReduce, 16, 2, 40));
  ASSERT_EQ(c.fits().size(), 2u);
  ASSERT_NE(c.Find(CollectiveOp::kAllReduce), nullptr);
  ASSERT_NE(c.FindInterNode(CollectiveOp::kAllReduce), nullptr);
  EXPECT_EQ(c.Find(CollectiveOp::kAllReduce)->nodes, 1);
  EXPECT_EQ(c.FindInterNode(CollectiveOp::kAllReduce)->ranks, 16);
  EXPECT_EQ(c.FindInterNode(CollectiveOp::kAllGather), nullptr);
  // The last added of a level wins; the other level stays.
  c.Add(OneRegimeFit(CollectiveOp::kAllReduce, 32, 4, 30));
  ASSERT_EQ(c.fits().size(), 2u);
  EXPECT_EQ(c.FindInterNode(CollectiveOp::kAllReduce)->ranks, 32);
  EXPECT_EQ(c.Find(CollectiveOp::kAllReduce)->ranks, 8);
}

class GalvatronCalibration : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<ClusterSpec> two = topology::ResolveCluster("dgx-a100-40gb", 2);
    ASSERT_TRUE(two.ok()) << two.status().ToString();
    cluster_ = *two;
    Result<CollectiveModel> nominal = CollectiveModel::Create(cluster_);
    ASSERT_TRUE(nominal.ok()) << nominal.status().ToString();
    nominal_ = std::make_unique<CollectiveModel>(*nominal);
    Result<traces::GalvatronCollectiveTimes> sp = traces::LoadGalvatronCollectiveTimes(kSpTime1);
    Result<traces::GalvatronAllReduceBandwidth> ar =
        traces::LoadGalvatronAllReduceBandwidth(kAllReduce2);
    Result<traces::GalvatronP2pBandwidth> p2p = traces::LoadGalvatronP2pBandwidth(kP2p2);
    ASSERT_TRUE(sp.ok() && ar.ok() && p2p.ok());
    // sp_time first: the all-reduce bandwidth table's one-node group then
    // replaces its one-node all-reduce fit.
    Status s = CalibrateFromGalvatron(*sp, *nominal_, calibration_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = CalibrateFromGalvatron(*ar, *nominal_, calibration_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = CalibrateFromGalvatron(*p2p, *nominal_, calibration_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  ClusterSpec cluster_;
  std::unique_ptr<CollectiveModel> nominal_;
  CollectiveCalibration calibration_;
};

TEST_F(GalvatronCalibration, KeepsTheLargestGroupOfEachLevel) {
  std::printf("fits from Galvatron's dgx-a100 profiles:\n");
  for (const FittedCollective& f : calibration_.fits()) {
    for (const FittedRegime& r : f.regimes) {
      std::printf("  %-10s %2d ranks %d node(s)  alpha %8.2f us  busbw %7.2f GB/s  %s/%s  (%s)\n",
                  std::string(traces::NcclTestsName(f.op)).c_str(), f.ranks, f.nodes,
                  r.latency.ToMicros(), r.busbw.ToGBps(),
                  std::string(AlgorithmName(r.algorithm)).c_str(),
                  std::string(ProtocolName(r.protocol)).c_str(), f.source.c_str());
    }
  }
  const FittedCollective* intra = calibration_.Find(CollectiveOp::kAllReduce);
  ASSERT_NE(intra, nullptr);
  EXPECT_EQ(intra->ranks, 8);
  EXPECT_EQ(intra->nodes, 1);
  ASSERT_EQ(intra->regimes.size(), 1u);
  EXPECT_NEAR(intra->regimes[0].busbw.ToGBps(), 155.658, 1e-9);
  EXPECT_NE(intra->source.find("allreduce_size_8_consec_1"), std::string::npos);

  const FittedCollective* inter = calibration_.FindInterNode(CollectiveOp::kAllReduce);
  ASSERT_NE(inter, nullptr);
  EXPECT_EQ(inter->ranks, 16);
  EXPECT_EQ(inter->nodes, 2);
  ASSERT_EQ(inter->regimes.size(), 1u);
  EXPECT_NEAR(inter->regimes[0].busbw.ToGBps(), 44.682, 1e-9);
  // The latency is the nominal model's at zero bytes on 2 x 8 ranks.
  Result<std::vector<CollectiveEstimate>> zero =
      nominal_->NominalCandidates(CollectiveOp::kAllReduce, Bytes(0), {2, 8});
  ASSERT_TRUE(zero.ok() && !zero->empty());
  EXPECT_EQ(inter->regimes[0].latency, zero->front().time);
  EXPECT_GT(inter->regimes[0].latency, Duration::Zero());

  // Every pipeline group of the 2-node p2p table spans both nodes.
  EXPECT_EQ(calibration_.Find(CollectiveOp::kSendRecv), nullptr);
  const FittedCollective* p2p = calibration_.FindInterNode(CollectiveOp::kSendRecv);
  ASSERT_NE(p2p, nullptr);
  EXPECT_EQ(p2p->ranks, 16);
  EXPECT_NEAR(p2p->regimes[0].busbw.ToGBps(), 8.13177, 1e-9);

  const FittedCollective* a2a = calibration_.Find(CollectiveOp::kAllToAll);
  ASSERT_NE(a2a, nullptr);
  EXPECT_EQ(a2a->ranks, 8);
  EXPECT_EQ(calibration_.FindInterNode(CollectiveOp::kAllToAll), nullptr);
}

TEST_F(GalvatronCalibration, TimesATwoNodeAllReduceFromTheInterNodeFit) {
  Result<CollectiveModel> model = CollectiveModel::Create(cluster_, calibration_);
  ASSERT_TRUE(model.ok());
  Result<CollectiveEstimate> e = model->Estimate(CollectiveOp::kAllReduce, GiB(1), {2, 8});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->source, EstimateSource::kFitted);
  EXPECT_NE(e->provenance.find("allreduce_size_16_consec_1"), std::string::npos)
      << e->provenance;
  EXPECT_NEAR(e->busbw.ToGBps() / 44.682, 1.0, 0.05);
  // time = α + S / (busbw / (2·15/16)).
  const double expected_s = 1073741824.0 / (44.682e9 / (2.0 * 15 / 16));
  EXPECT_NEAR(e->time.ToSeconds() / expected_s, 1.0, 0.05);
  Result<CollectiveEstimate> nominal = nominal_->Estimate(CollectiveOp::kAllReduce, GiB(1), {2, 8});
  ASSERT_TRUE(nominal.ok());
  std::printf("2 x 8 A100 all-reduce of 1 GiB: fitted %.2f ms (busbw %.2f GB/s), nominal %.2f ms "
              "(busbw %.2f GB/s, %s)\n",
              e->time.ToMillis(), e->busbw.ToGBps(), nominal->time.ToMillis(),
              nominal->busbw.ToGBps(), nominal->AlgorithmLabel().c_str());

  // A smaller group across nodes keeps the fitted bus bandwidth; its algbw
  // follows its own factor, 2·(2-1)/2 = 1 for 2 ranks.
  Result<CollectiveEstimate> pair = model->Estimate(CollectiveOp::kAllReduce, GiB(1), {2, 1});
  ASSERT_TRUE(pair.ok());
  EXPECT_EQ(pair->source, EstimateSource::kFitted);
  EXPECT_NEAR(pair->algbw.ToGBps() / 44.682, 1.0, 0.05);
  EXPECT_LT(pair->time, e->time);

  // A group on one node still takes the intra-node fit.
  Result<CollectiveEstimate> one = model->Estimate(CollectiveOp::kAllReduce, GiB(1), {1, 8});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->source, EstimateSource::kFitted);
  EXPECT_NEAR(one->busbw.ToGBps() / 155.658, 1.0, 0.05);

  // Send/recv across nodes: the p2p table's 8.13 GB/s (busbw = algbw).
  Result<CollectiveEstimate> p2p = model->Estimate(CollectiveOp::kSendRecv, MiB(256), {2, 1});
  ASSERT_TRUE(p2p.ok());
  EXPECT_EQ(p2p->source, EstimateSource::kFitted);
  EXPECT_NEAR(p2p->busbw.ToGBps() / 8.13177, 1.0, 0.05);
}

TEST_F(GalvatronCalibration, FitsTheSpTimeTablesWithinTenPercent) {
  Result<traces::GalvatronCollectiveTimes> sp = traces::LoadGalvatronCollectiveTimes(kSpTime1);
  ASSERT_TRUE(sp.ok());
  CollectiveCalibration only_sp;
  ASSERT_TRUE(CalibrateFromGalvatron(*sp, *nominal_, only_sp).ok());
  Result<CollectiveModel> model = CollectiveModel::Create(cluster_, only_sp);
  ASSERT_TRUE(model.ok());
  double worst = 0;
  for (const traces::GalvatronCollectiveTimes::Entry& m : sp->entries) {
    if (m.ranks != 8) continue;  // the fits keep the largest group
    Result<CollectiveEstimate> e = model->Estimate(m.op, m.size, {1, 8});
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->source, EstimateSource::kFitted);
    const double err = std::fabs(e->time / m.time - 1.0);
    std::printf("  %-10s %5lld MiB  measured %8.4f ms  fitted %8.4f ms  %+5.1f%%\n",
                std::string(traces::NcclTestsName(m.op)).c_str(),
                static_cast<long long>(m.size.count() >> 20), m.time.ToMillis(),
                e->time.ToMillis(), 100 * (e->time / m.time - 1.0));
    worst = std::max(worst, err);
  }
  std::printf("sp_time 8-rank all-reduce and all-to-all, 1-1024 MiB: largest time error %.1f%%\n",
              100 * worst);
  EXPECT_LT(worst, 0.10);
}

TEST_F(GalvatronCalibration, PlacesStridedGroupsAcrossNodes) {
  traces::GalvatronAllReduceBandwidth t;
  t.source = "strided.json";
  t.shape = traces::GalvatronClusterShape{2, 8};
  t.entries.push_back({8, false, GBps(20.7724)});  // ranks 0,2,..,14: 4 on each node
  CollectiveCalibration c;
  ASSERT_TRUE(CalibrateFromGalvatron(t, *nominal_, c).ok());
  ASSERT_EQ(c.Find(CollectiveOp::kAllReduce), nullptr);
  const FittedCollective* f = c.FindInterNode(CollectiveOp::kAllReduce);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->nodes, 2);
  EXPECT_EQ(f->ranks, 8);
  // Strided on one node: ranks 0,2,4,6 of an 8-GPU node stay intra-node.
  t.shape = traces::GalvatronClusterShape{1, 8};
  t.entries = {{4, false, GBps(155.815)}};
  CollectiveCalibration one;
  ASSERT_TRUE(CalibrateFromGalvatron(t, *nominal_, one).ok());
  ASSERT_NE(one.Find(CollectiveOp::kAllReduce), nullptr);
  EXPECT_EQ(one.Find(CollectiveOp::kAllReduce)->ranks, 4);
}

TEST_F(GalvatronCalibration, AGroupThatDoesNotFitTheClusterNamesTheFile) {
  Result<traces::GalvatronAllReduceBandwidth> ar =
      traces::LoadGalvatronAllReduceBandwidth(kAllReduce2);
  ASSERT_TRUE(ar.ok());
  Result<ClusterSpec> one_node = topology::ClusterPreset("dgx-a100-40gb");
  ASSERT_TRUE(one_node.ok());
  Result<CollectiveModel> small = CollectiveModel::Create(*one_node);
  ASSERT_TRUE(small.ok());
  CollectiveCalibration c;
  Status s = CalibrateFromGalvatron(*ar, *small, c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(kAllReduce2), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("allreduce_size_16_consec_1"), std::string::npos) << s.message();

  traces::GalvatronAllReduceBandwidth odd;
  odd.source = "odd.json";
  odd.entries.push_back({3, true, GBps(100)});  // no shape: one 8-GPU node
  s = CalibrateFromGalvatron(odd, *nominal_, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("odd.json (allreduce_size_3_consec_1)"), std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace orrery::costmodel
