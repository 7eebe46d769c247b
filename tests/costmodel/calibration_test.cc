#include "costmodel/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "core/json.h"
#include "costmodel/calibration_json.h"
#include "topology/cluster_spec_json.h"
#include "topology/presets.h"
#include "traces/compute_profile.h"
#include "traces/measurements.h"
#include "traces/nccl_tests_log.h"
#include "workload/model_presets.h"
#include "workload/operators.h"

namespace orrery::costmodel {
namespace {

using topology::ClusterSpec;
using topology::Precision;
using traces::ComputeProfile;
using traces::ComputeProfileEntry;
using workload::GemmShape;
using workload::Operator;
using workload::OperatorClass;

const std::string kFixtures = std::string(ORRERY_FIXTURES_DIR);
const std::string kGalvatronComputation =
    kFixtures + "/galvatron/main_gpt_llama2-7b/computation_profiling_bf16_llama2-7b_all.json";
const std::string kDgxcLog =
    kFixtures + "/nccl_tests/nccl_allreduce_1node_8xH100_dgx_nvswitch_dgxc-benchmarking.log";
const std::string kTwoNodeLog =
    kFixtures + "/nccl_tests/nccl_allreduce_2node_16xH100_hgx_8xCX7_IB400G_nccl-tests-issue309.log";

ClusterSpec Cluster(const std::string& name) {
  Result<ClusterSpec> c = topology::ClusterPreset(name);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

Operator Gemm(int64_t m, int64_t n, int64_t k, int64_t batch = 1) {
  Operator op;
  op.name = "gemm";
  op.op_class = OperatorClass::kGemm;
  const double mnk = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) *
                     static_cast<double>(batch);
  op.forward_flops = Flop(2 * mnk);
  op.backward_flops = Flop(4 * mnk);
  op.forward_bytes = Bytes(2 * batch * (m * k + k * n + m * n));
  op.backward_bytes = op.forward_bytes * 2;
  op.gemm = GemmShape{m, n, k, batch};
  return op;
}

// A fused attention core as workload/ expands one: 4·s²·d·(b·heads)
// forward, 2.5× backward.
Operator Flash(int64_t s, int64_t d, int64_t batch_heads) {
  Operator op;
  op.name = "attn.flash";
  op.op_class = OperatorClass::kAttention;
  const double f = 2.0 * static_cast<double>(s * s * d * batch_heads);
  op.forward_flops = Flop(2 * f);
  op.backward_flops = Flop(5 * f);
  op.forward_bytes = Bytes(2 * 4 * s * d * batch_heads);
  op.backward_bytes = Bytes(2 * 9 * s * d * batch_heads);
  op.gemm = GemmShape{s, s, d, batch_heads};
  return op;
}

// A profile whose times are the roofline's under known efficiencies, as
// a backend labels it (not the cluster's device name).
ComputeProfile SyntheticProfile(const ClusterSpec& cluster, const ComputeOptions& truth) {
  const topology::DeviceType& device = cluster.PrimaryNodeType().device;
  Result<ComputeModel> model = ComputeModel::Create(device, Precision::kBf16, truth);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  ComputeProfile p;
  p.device = "NVIDIA A100-SXM4-80GB (cuBLAS 12.4)";
  p.precision = Precision::kBf16;
  p.source = "synthetic.json";
  for (const Operator& op : {Gemm(4096, 4096, 4096), Gemm(8192, 1024, 4096),
                             Gemm(2048, 11008, 4096), Gemm(16384, 4096, 1024)}) {
    const ComputeEstimate e = model->Roofline(op);
    EXPECT_EQ(e.forward_bound, ComputeBound::kCompute);
    ComputeProfileEntry entry;
    entry.op_class = OperatorClass::kGemm;
    entry.gemm = op.gemm;
    entry.forward_flops = op.forward_flops;
    entry.forward = e.forward;
    entry.backward = e.backward;
    p.entries.push_back(entry);
  }
  // Memory-bound even at the peak: a nonsense time that would pull the fit
  // if it were not excluded.
  ComputeProfileEntry skinny;
  skinny.op_class = OperatorClass::kGemm;
  skinny.gemm = GemmShape{8, 8192, 8192, 1};
  skinny.forward_flops = Flop(2.0 * 8 * 8192 * 8192);
  skinny.forward = Millis(5);
  p.entries.push_back(skinny);
  for (const Operator& op : {Flash(2048, 128, 32), Flash(4096, 128, 64)}) {
    const ComputeEstimate e = model->Roofline(op);
    ComputeProfileEntry entry;
    entry.op_class = OperatorClass::kAttention;
    entry.name = op.name;
    entry.gemm = op.gemm;
    entry.forward_flops = op.forward_flops;
    entry.forward = e.forward;
    entry.backward = e.backward;
    p.entries.push_back(entry);
  }
  for (int64_t elems : {int64_t{1} << 24, int64_t{1} << 27}) {
    Operator op;
    op.name = "mlp.act";
    op.op_class = OperatorClass::kElementwise;
    op.forward_flops = Flop(static_cast<double>(elems));
    op.backward_flops = Flop(2.0 * static_cast<double>(elems));
    op.forward_bytes = Bytes(4 * elems);
    op.backward_bytes = Bytes(6 * elems);
    const ComputeEstimate e = model->Roofline(op);
    EXPECT_EQ(e.forward_bound, ComputeBound::kMemory);
    ComputeProfileEntry entry;
    entry.op_class = OperatorClass::kElementwise;
    entry.name = "mlp.act." + std::to_string(elems);
    entry.forward_flops = op.forward_flops;
    entry.forward_bytes = op.forward_bytes;
    entry.backward_bytes = op.backward_bytes;
    entry.forward = e.forward;
    entry.backward = e.backward;
    p.entries.push_back(entry);
  }
  return p;
}

ComputeOptions Truth(const ClusterSpec& cluster) {
  ComputeOptions o = DefaultComputeOptions(cluster.PrimaryNodeType().device);
  o.gemm_max_efficiency = 0.62;
  o.attention_forward_efficiency = 0.55;
  o.attention_backward_efficiency = 0.41;
  o.bandwidth_efficiency = 0.71;
  return o;
}

const FitResidual* FindResidual(const Calibration& c, const std::string& prefix) {
  for (const FitResidual& r : c.residuals) {
    if (r.quantity.rfind(prefix, 0) == 0) return &r;
  }
  return nullptr;
}

TEST(Calibrate, RecoversTheEfficienciesThatGeneratedTheTimes) {
  const ClusterSpec cluster = Cluster("dgx-a100-80gb");
  const ComputeOptions truth = Truth(cluster);
  CalibrationRequest request;
  request.cluster = cluster;
  request.measurements.sources = {"synthetic.json"};
  request.measurements.compute_profiles.push_back(SyntheticProfile(cluster, truth));
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->device, "a100-sxm4-80gb");
  EXPECT_EQ(c->sources, request.measurements.sources);
  ASSERT_EQ(c->compute.count(Precision::kBf16), 1u);
  const ComputeOptions& fitted = c->compute.at(Precision::kBf16);
  EXPECT_NEAR(fitted.gemm_max_efficiency, 0.62, 1e-6);
  EXPECT_NEAR(fitted.attention_forward_efficiency, 0.55, 1e-6);
  EXPECT_NEAR(fitted.attention_backward_efficiency, 0.41, 1e-6);
  EXPECT_NEAR(fitted.bandwidth_efficiency, 0.71, 1e-6);
  // The figures not fitted stay the device's.
  EXPECT_EQ(fitted.multiprocessors, 108);
  EXPECT_EQ(fitted.generation, "ampere");

  const FitResidual* gemm = FindResidual(*c, "gemm_max_efficiency bf16");
  ASSERT_NE(gemm, nullptr);
  EXPECT_EQ(gemm->points, 8);  // 4 shapes, forward and backward; the skinny one excluded
  EXPECT_NE(gemm->quantity.find("1 memory-bound"), std::string::npos) << gemm->quantity;
  EXPECT_LT(gemm->max_relative_error, 1e-6);
  const FitResidual* bw = FindResidual(*c, "bandwidth_efficiency bf16");
  ASSERT_NE(bw, nullptr);
  EXPECT_EQ(bw->points, 4);
  EXPECT_EQ(bw->source, "synthetic.json");

  // The profile is stored under the cluster's device, so the calibrated
  // model accepts it and times a measured operator as measured.
  ASSERT_EQ(c->profiles.size(), 1u);
  EXPECT_EQ(c->profiles[0].device, "a100-sxm4-80gb");
  Result<ComputeModel> model = CalibratedComputeModel(cluster.PrimaryNodeType().device,
                                                      Precision::kBf16, &*c);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_DOUBLE_EQ(model->options().gemm_max_efficiency, fitted.gemm_max_efficiency);
  // (Its backward was not measured: the roofline's, so the estimate as a
  // whole says roofline.)
  const ComputeEstimate skinny = model->Estimate(Gemm(8, 8192, 8192));
  EXPECT_EQ(skinny.forward, Millis(5));
  EXPECT_EQ(model->Estimate(Gemm(4096, 4096, 4096)).provenance, ComputeProvenance::kMeasured);
  // An override replaces the fitted figures.
  ComputeOptions override_options = truth;
  override_options.gemm_max_efficiency = 0.9;
  Result<ComputeModel> overridden = CalibratedComputeModel(
      cluster.PrimaryNodeType().device, Precision::kBf16, &*c, override_options);
  ASSERT_TRUE(overridden.ok());
  EXPECT_DOUBLE_EQ(overridden->options().gemm_max_efficiency, 0.9);
  // Another precision: the nominal figures, no tables.
  Result<ComputeModel> fp16 =
      CalibratedComputeModel(cluster.PrimaryNodeType().device, Precision::kFp16, &*c);
  ASSERT_TRUE(fp16.ok());
  EXPECT_DOUBLE_EQ(fp16->options().gemm_max_efficiency, 0.85);
  EXPECT_LT(fp16->Estimate(Gemm(8, 8192, 8192)).forward, Millis(1));
  EXPECT_EQ(fp16->Estimate(Gemm(4096, 4096, 4096)).provenance, ComputeProvenance::kRoofline);

  const std::vector<CalibrationChange> changes = DescribeChanges(cluster, nullptr, *c);
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes[0].quantity, "gemm_max_efficiency bf16");
  EXPECT_EQ(changes[0].before, "0.850");
  EXPECT_EQ(changes[0].after, "0.620");
  EXPECT_NE(changes[0].residual.find("over 8 points"), std::string::npos);
}

TEST(Calibrate, AnEfficiencyAboveOneIsClampedToOne) {
  const ClusterSpec cluster = Cluster("dgx-a100-80gb");
  ComputeProfile p;
  p.device = "gpu";
  p.precision = Precision::kBf16;
  p.source = "fast.json";
  ComputeProfileEntry e;
  e.op_class = OperatorClass::kGemm;
  e.gemm = GemmShape{8192, 8192, 8192, 1};
  e.forward_flops = Flop(2.0 * 8192.0 * 8192.0 * 8192.0);
  e.forward = Micros(100);  // 11 PFLOP/s: faster than the device's peak
  p.entries.push_back(e);
  CalibrationRequest request;
  request.cluster = cluster;
  request.measurements.compute_profiles.push_back(p);
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->compute.at(Precision::kBf16).gemm_max_efficiency, 1.0);
}

TEST(Calibrate, AProfileAtAPrecisionTheDeviceLacksIsAnErrorNamingTheFile) {
  const ClusterSpec cluster = Cluster("dgx-a100-80gb");  // no fp8 peak
  ComputeProfile p = SyntheticProfile(cluster, Truth(cluster));
  p.precision = Precision::kFp8;
  p.source = "fp8_sweep.json";
  CalibrationRequest request;
  request.cluster = cluster;
  request.measurements.compute_profiles.push_back(p);
  Result<Calibration> c = Calibrate(request);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("fp8_sweep.json"), std::string::npos)
      << c.status().message();
  EXPECT_NE(c.status().message().find("fp8"), std::string::npos);
}

TEST(Calibrate, NothingToCalibrateIsAnError) {
  CalibrationRequest request;
  request.cluster = Cluster("dgx-a100-80gb");
  Result<Calibration> c = Calibrate(request);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("nothing to calibrate"), std::string::npos);
}

TEST(Calibrate, OptimizerTimePerParameterIsTotalStepOverTotalParameters) {
  ComputeProfile p;
  p.device = "cpu";
  p.precision = Precision::kFp32;
  p.source = "opt.json";
  p.optimizer = {{"adamw", 1000000, Millis(5)}, {"adamw", 3000000, Millis(17)}};
  CalibrationRequest request;
  request.cluster = Cluster("dgx-a100-80gb");
  request.measurements.compute_profiles.push_back(p);
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->optimizer_time_per_parameter.has_value());
  // 22 ms over 4e6 parameters = 5.5 ns.
  EXPECT_EQ(*c->optimizer_time_per_parameter, Picos(5500));
  EXPECT_TRUE(c->compute.empty());
  EXPECT_TRUE(c->profiles.empty());  // no operator entries to keep
  const FitResidual* r = FindResidual(*c, "optimizer");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->points, 2);
  // 5.5 vs 5 ns: +10%; 16.5 vs 17 ms: -2.9%.
  EXPECT_NEAR(r->max_relative_error, 0.1, 1e-9);
  EXPECT_NEAR(r->rms_relative_error, std::sqrt((0.01 + std::pow(0.5 / 17, 2)) / 2), 1e-9);
  const std::vector<CalibrationChange> changes =
      DescribeChanges(request.cluster, nullptr, *c);
  ASSERT_EQ(changes.size(), 1u);
  // Nominal: 12 bytes at 2039 GB/s × 0.80.
  EXPECT_EQ(changes[0].before, "0.0074 ns");
  EXPECT_EQ(changes[0].after, "5.5000 ns");
}

TEST(Calibrate, RepeatedProfilerRunsAreMergedByTheirMedian) {
  // Three runs of the same two operators; the third also measured one the
  // others did not. The merged profile takes each direction's median.
  const Operator gemm = Gemm(512, 512, 512);
  auto run = [&](const std::string& source, double fwd_us, double bwd_us) {
    ComputeProfile p;
    p.device = "cpu";
    p.precision = Precision::kFp32;
    p.source = source;
    ComputeProfileEntry e;
    e.op_class = OperatorClass::kGemm;
    e.name = "mlp.fc1";
    e.gemm = gemm.gemm;
    e.forward_flops = gemm.forward_flops;
    e.forward = Micros(fwd_us);
    e.backward = Micros(bwd_us);
    p.entries.push_back(e);
    ComputeProfileEntry norm;
    norm.op_class = OperatorClass::kNorm;
    norm.name = "attn.norm";
    norm.forward_flops = Flop(1e6);
    norm.forward = Micros(fwd_us / 10);
    p.entries.push_back(norm);
    return p;
  };
  CalibrationRequest request;
  request.cluster = Cluster("dgx-a100-80gb");
  request.measurements.compute_profiles = {run("run1", 100, 210), run("run2", 130, 200),
                                           run("run3", 90, 400)};
  ComputeProfileEntry once;
  once.op_class = OperatorClass::kElementwise;
  once.name = "mlp.act";
  once.forward_flops = Flop(2e6);
  once.forward = Micros(7);
  request.measurements.compute_profiles[2].entries.push_back(once);
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->profiles.size(), 1u);
  const ComputeProfile& merged = c->profiles[0];
  EXPECT_EQ(merged.source, "run1, run2, run3");
  ASSERT_EQ(merged.entries.size(), 3u);
  EXPECT_EQ(merged.entries[0].name, "mlp.fc1");
  EXPECT_EQ(merged.entries[0].forward, Micros(100));
  ASSERT_TRUE(merged.entries[0].backward.has_value());
  EXPECT_EQ(*merged.entries[0].backward, Micros(210));
  EXPECT_EQ(merged.entries[1].name, "attn.norm");
  EXPECT_EQ(merged.entries[1].forward, Micros(10));
  EXPECT_FALSE(merged.entries[1].backward.has_value());
  EXPECT_EQ(merged.entries[2].name, "mlp.act");
  EXPECT_EQ(merged.entries[2].forward, Micros(7));
  // The spread: the runs around their medians; the largest is 400 vs 210.
  const FitResidual* r = FindResidual(*c, "profile repeats fp32");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->points, 9);  // 3 gemm forward, 3 backward, 3 norm forward
  EXPECT_NEAR(r->max_relative_error, 400.0 / 210.0 - 1.0, 1e-9);
}

TEST(Calibrate, OverlapSlowdownIsTheCoefficientMinusOne) {
  CalibrationRequest request;
  request.cluster = Cluster("dgx-a100-80gb");
  request.measurements.overlap_coefficient = 1.1256;
  request.measurements.overlap_source = "overlap_coefficient.json";
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->overlap_slowdown.has_value());
  EXPECT_NEAR(*c->overlap_slowdown, 0.1256, 1e-12);
  request.measurements.overlap_coefficient = 0.9;
  EXPECT_FALSE(Calibrate(request).ok());
}

TEST(Calibrate, GalvatronLayerTimingsNeedTheModel) {
  Result<ComputeProfile> p = traces::ImportGalvatronComputationProfile(
      kGalvatronComputation, "galvatron", Precision::kBf16);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  CalibrationRequest request;
  request.cluster = Cluster("dgx-a100-80gb");
  request.measurements.compute_profiles.push_back(*p);
  Result<Calibration> c = Calibrate(request);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(kGalvatronComputation), std::string::npos)
      << c.status().message();
}

TEST(Calibrate, GalvatronLayerTimingsScaleTheTensorCoreCeilings) {
  Result<ComputeProfile> p = traces::ImportGalvatronComputationProfile(
      kGalvatronComputation, "galvatron", Precision::kBf16);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  Result<workload::ModelSpec> model = workload::ModelPreset("llama2-7b");
  ASSERT_TRUE(model.ok());
  const ClusterSpec cluster = Cluster("dgx-a100-80gb");
  CalibrationRequest request;
  request.cluster = cluster;
  request.model = &*model;
  request.measurements.compute_profiles.push_back(*p);
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->compute.count(Precision::kBf16), 1u);
  const ComputeOptions& o = c->compute.at(Precision::kBf16);
  EXPECT_GT(o.gemm_max_efficiency, 0.0);
  EXPECT_LE(o.gemm_max_efficiency, 1.0);
  EXPECT_LE(o.attention_forward_efficiency, 1.0);
  // The ratio to the defaults is the fitted scale k, the same on every
  // tensor-core ceiling.
  const double k = o.gemm_max_efficiency / 0.85;
  EXPECT_GT(k, 0.0);
  EXPECT_NEAR(o.attention_forward_efficiency, 0.73 * k, 1e-9);
  EXPECT_NEAR(o.attention_backward_efficiency, 0.63 * k, 1e-9);
  EXPECT_DOUBLE_EQ(o.bandwidth_efficiency, 0.80);
  const FitResidual* r = FindResidual(*c, "layer scale llama2-7b bf16");
  ASSERT_NE(r, nullptr);
  EXPECT_GE(r->points, 10);  // layertype_0 at every micro-batch; layertype_other skipped
  EXPECT_LT(r->rms_relative_error, 0.15);
  std::cout << "Galvatron llama2-7b on A100: k = " << k << ", gemm_max_efficiency "
            << o.gemm_max_efficiency << ", " << r->quantity << ": rms "
            << r->rms_relative_error << ", max " << r->max_relative_error << " over "
            << r->points << " points\n";
  // The fitted roofline reproduces a measured layer's forward to within the
  // residual.
  Result<workload::LayerOperators> layer = workload::ExpandLayer(
      *model, workload::LayerKind::kDecoderBlock, 4, 2048, {}, {.flash_attention = true});
  ASSERT_TRUE(layer.ok());
  Result<ComputeModel> fitted = ComputeModel::Create(cluster.PrimaryNodeType().device,
                                                     Precision::kBf16, o);
  ASSERT_TRUE(fitted.ok());
  Duration roofline;
  for (const Operator& op : layer->ops) roofline += fitted->Roofline(op).forward;
  Duration measured;
  for (const ComputeProfileEntry& e : p->entries) {
    if (e.name == "layertype_0" && e.micro_batch == 4) measured = e.forward;
  }
  ASSERT_GT(measured, Duration::Zero());
  EXPECT_NEAR(roofline / measured, 1.0, r->max_relative_error + 1e-9);
  // The layer entries are kept under the cluster's device.
  ASSERT_EQ(c->profiles.size(), 1u);
  EXPECT_EQ(c->profiles[0].device, "a100-sxm4-80gb");
}

TEST(Calibrate, NcclTestsLogsGiveCollectiveFitsWithResiduals) {
  Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(kDgxcLog);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const ClusterSpec cluster = Cluster("dgx-h100");
  CalibrationRequest request;
  request.cluster = cluster;
  request.measurements.nccl_logs.push_back({kDgxcLog, *log});
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->collectives.fits().size(), 1u);
  const FittedCollective& fit = c->collectives.fits()[0];
  EXPECT_EQ(fit.ranks, 8);
  const FitResidual* r = FindResidual(*c, "allreduce 1x8");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(static_cast<size_t>(r->points), log->tables[0].rows.size());
  double regime_max = 0;
  for (const FittedRegime& g : fit.regimes) regime_max = std::max(regime_max, g.max_relative_error);
  EXPECT_NEAR(r->max_relative_error, regime_max, 1e-3);
  Result<CollectiveModel> model = CalibratedCollectiveModel(cluster, &*c);
  ASSERT_TRUE(model.ok());
  Result<CollectiveEstimate> e =
      model->Estimate(CollectiveOp::kAllReduce, MiB(64), RankGroup{1, 8});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->source, EstimateSource::kFitted);
  const std::vector<CalibrationChange> changes = DescribeChanges(cluster, nullptr, *c);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_NE(changes[0].quantity.find("allreduce time at"), std::string::npos);
  EXPECT_NE(changes[1].quantity.find("allreduce busbw at"), std::string::npos);
  EXPECT_NE(changes[1].before, changes[1].after);
  for (const CalibrationChange& ch : changes) {
    std::cout << ch.quantity << ": " << ch.before << " -> " << ch.after << " (" << ch.residual
              << ")\n";
  }
}

TEST(Calibrate, ACollectiveMeasuredOnMoreNodesThanTheClusterHasIsAnError) {
  Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(kTwoNodeLog);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  CalibrationRequest request;
  request.cluster = Cluster("dgx-h100");  // one node
  request.measurements.nccl_logs.push_back({kTwoNodeLog, *log});
  Result<Calibration> c = Calibrate(request);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(kTwoNodeLog), std::string::npos) << c.status().message();
}

TEST(Calibrate, GalvatronProfilerFilesCalibrateEveryPartTheyMeasure) {
  const std::string hw = kFixtures + "/galvatron/hardware_configs/";
  Result<traces::Measurements> m = traces::LoadMeasurements(
      {hw + "allreduce_bandwidth_1nodes_8gpus_per_node.json",
       hw + "p2p_bandwidth_1nodes_8gpus_per_node.json", hw + "sp_time_1nodes_8gpus_per_node.json",
       hw + "overlap_coefficient.json", kGalvatronComputation},
      {.galvatron_device = "galvatron", .galvatron_precision = Precision::kBf16});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  Result<workload::ModelSpec> model = workload::ModelPreset("llama2-7b");
  ASSERT_TRUE(model.ok());
  const ClusterSpec cluster = Cluster("dgx-a100-80gb");
  CalibrationRequest request;
  request.cluster = cluster;
  request.model = &*model;
  request.measurements = *m;
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->sources.size(), 5u);
  EXPECT_FALSE(c->collectives.empty());
  EXPECT_NE(c->collectives.Find(CollectiveOp::kAllReduce), nullptr);
  ASSERT_TRUE(c->overlap_slowdown.has_value());
  EXPECT_GT(*c->overlap_slowdown, 0.0);
  EXPECT_EQ(c->compute.count(Precision::kBf16), 1u);
  // One residual per fit made: the layer scale, all-reduce from the
  // bandwidth table, send/recv, all-reduce and all-to-all from sp_time (whose
  // all-reduce, read last, replaces the bandwidth table's: one fit per op and
  // level).
  EXPECT_EQ(c->residuals.size(), 5u);
  EXPECT_EQ(c->collectives.fits().size(), 3u);
  EXPECT_NE(c->collectives.Find(CollectiveOp::kAllReduce)->source.find("sp_time"),
            std::string::npos);
  for (const FitResidual& r : c->residuals) {
    EXPECT_GT(r.points, 0) << r.quantity;
    std::cout << r.quantity << " (" << r.source << "): rms " << r.rms_relative_error << ", max "
              << r.max_relative_error << " over " << r.points << "\n";
  }
  const Json j = CalibrationToJson(*c);
  Result<Calibration> back = ParseCalibration(j, "cal.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(CalibrationToJson(*back), j);
  for (size_t i = 0; i < c->collectives.fits().size(); ++i) {
    for (size_t k = 0; k < c->collectives.fits()[i].regimes.size(); ++k) {
      EXPECT_EQ(c->collectives.fits()[i].regimes[k].busbw,
                back->collectives.fits()[i].regimes[k].busbw);
      EXPECT_EQ(c->collectives.fits()[i].regimes[k].latency,
                back->collectives.fits()[i].regimes[k].latency);
    }
  }
  Result<CollectiveModel> calibrated = CalibratedCollectiveModel(cluster, &*c);
  ASSERT_TRUE(calibrated.ok()) << calibrated.status().ToString();
}

TEST(CalibratedModels, ACalibrationOfAnotherDeviceIsRejected) {
  const ClusterSpec a100 = Cluster("dgx-a100-80gb");
  const ClusterSpec h100 = Cluster("dgx-h100");
  CalibrationRequest request;
  request.cluster = a100;
  request.measurements.overlap_coefficient = 1.2;
  Result<Calibration> c = Calibrate(request);
  ASSERT_TRUE(c.ok());
  Result<ComputeModel> compute =
      CalibratedComputeModel(h100.PrimaryNodeType().device, Precision::kBf16, &*c);
  ASSERT_FALSE(compute.ok());
  EXPECT_NE(compute.status().message().find("a100-sxm4-80gb"), std::string::npos);
  EXPECT_FALSE(CalibratedCollectiveModel(h100, &*c).ok());
  EXPECT_TRUE(CalibratedCollectiveModel(a100, &*c).ok());
  // Without a calibration: the nominal models.
  Result<ComputeModel> nominal =
      CalibratedComputeModel(h100.PrimaryNodeType().device, Precision::kBf16, nullptr);
  ASSERT_TRUE(nominal.ok());
  EXPECT_EQ(nominal->options().generation, "hopper");
}

// Every field of a calibration, with figures no decimal reaches exactly
// in some unit (a fitted bandwidth, a latency in picoseconds).
Calibration FullCalibration() {
  const ClusterSpec cluster = Cluster("dgx-a100-80gb");
  CalibrationRequest request;
  request.cluster = cluster;
  request.measurements.sources = {"synthetic.json", "overlap_coefficient.json"};
  ComputeProfile p = SyntheticProfile(cluster, Truth(cluster));
  p.optimizer = {{"adamw", 235520, Micros(1210)}};
  p.entries[5].covers = {"attn.qk", "attn.softmax", "attn.av"};
  request.measurements.compute_profiles.push_back(p);
  request.measurements.overlap_coefficient = 1.0 + 1.0 / 3.0;
  Result<Calibration> c = Calibrate(request);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  FittedCollective fit;
  fit.op = CollectiveOp::kAllGather;
  fit.ranks = 8;
  fit.nodes = 1;
  fit.source = "ag.log";
  FittedRegime small;
  small.min_size = Bytes(8);
  small.max_size = KiB(64);
  small.latency = Picos(13'456'789);
  small.busbw = Bandwidth::FromBytesPerSecond(1.2345678901234567e10);
  small.algorithm = CollectiveAlgorithm::kRing;
  small.protocol = CollectiveProtocol::kLl;
  small.points = 14;
  small.max_relative_error = 0.0312;
  FittedRegime large = small;
  large.min_size = KiB(128);
  large.max_size = GiB(1);
  large.latency = Micros(40.25);
  large.busbw = GBps(187.3);
  large.protocol = CollectiveProtocol::kSimple;
  fit.regimes = {small, large};
  c->collectives.Add(fit);
  return *c;
}

void ExpectSameCalibration(const Calibration& a, const Calibration& b) {
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.sources, b.sources);
  ASSERT_EQ(a.compute.size(), b.compute.size());
  for (const auto& [p, o] : a.compute) {
    const ComputeOptions& q = b.compute.at(p);
    EXPECT_EQ(o.generation, q.generation);
    EXPECT_EQ(o.multiprocessors, q.multiprocessors);
    EXPECT_EQ(o.tile_m, q.tile_m);
    EXPECT_EQ(o.tile_n, q.tile_n);
    EXPECT_EQ(o.gemm_max_efficiency, q.gemm_max_efficiency);
    EXPECT_EQ(o.gemm_k_half, q.gemm_k_half);
    EXPECT_EQ(o.attention_forward_efficiency, q.attention_forward_efficiency);
    EXPECT_EQ(o.attention_backward_efficiency, q.attention_backward_efficiency);
    EXPECT_EQ(o.attention_tile_rows, q.attention_tile_rows);
    EXPECT_EQ(o.bandwidth_efficiency, q.bandwidth_efficiency);
  }
  ASSERT_EQ(a.profiles.size(), b.profiles.size());
  for (size_t i = 0; i < a.profiles.size(); ++i) {
    EXPECT_EQ(traces::ComputeProfileToJson(a.profiles[i]),
              traces::ComputeProfileToJson(b.profiles[i]));
  }
  EXPECT_EQ(a.optimizer_time_per_parameter, b.optimizer_time_per_parameter);
  EXPECT_EQ(a.overlap_slowdown, b.overlap_slowdown);
  ASSERT_EQ(a.collectives.fits().size(), b.collectives.fits().size());
  for (size_t i = 0; i < a.collectives.fits().size(); ++i) {
    const FittedCollective& x = a.collectives.fits()[i];
    const FittedCollective& y = b.collectives.fits()[i];
    EXPECT_EQ(x.op, y.op);
    EXPECT_EQ(x.ranks, y.ranks);
    EXPECT_EQ(x.nodes, y.nodes);
    EXPECT_EQ(x.source, y.source);
    ASSERT_EQ(x.regimes.size(), y.regimes.size());
    for (size_t j = 0; j < x.regimes.size(); ++j) {
      EXPECT_EQ(x.regimes[j].min_size, y.regimes[j].min_size);
      EXPECT_EQ(x.regimes[j].max_size, y.regimes[j].max_size);
      EXPECT_EQ(x.regimes[j].latency, y.regimes[j].latency);
      EXPECT_EQ(x.regimes[j].busbw, y.regimes[j].busbw);
      EXPECT_EQ(x.regimes[j].algorithm, y.regimes[j].algorithm);
      EXPECT_EQ(x.regimes[j].protocol, y.regimes[j].protocol);
      EXPECT_EQ(x.regimes[j].points, y.regimes[j].points);
      EXPECT_EQ(x.regimes[j].max_relative_error, y.regimes[j].max_relative_error);
    }
  }
  ASSERT_EQ(a.residuals.size(), b.residuals.size());
  for (size_t i = 0; i < a.residuals.size(); ++i) {
    EXPECT_EQ(a.residuals[i].quantity, b.residuals[i].quantity);
    EXPECT_EQ(a.residuals[i].source, b.residuals[i].source);
    EXPECT_EQ(a.residuals[i].points, b.residuals[i].points);
    EXPECT_EQ(a.residuals[i].rms_relative_error, b.residuals[i].rms_relative_error);
    EXPECT_EQ(a.residuals[i].max_relative_error, b.residuals[i].max_relative_error);
  }
}

TEST(CalibrationJson, RoundTripsExactly) {
  const Calibration c = FullCalibration();
  ASSERT_FALSE(c.residuals.empty());
  ASSERT_TRUE(c.optimizer_time_per_parameter.has_value());
  const Json j = CalibrationToJson(c);
  // Through text, as a file holds it.
  Result<Json> reread = ParseJson(DumpJson(j), "cal.json");
  ASSERT_TRUE(reread.ok());
  Result<Calibration> back = ParseCalibration(*reread, "cal.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameCalibration(c, *back);
  EXPECT_EQ(CalibrationToJson(*back), j);
}

TEST(CalibrationJson, ACalibratedClusterFileReadsBackAsSpecAndCalibration) {
  const ClusterSpec cluster = Cluster("dgx-a100-80gb");
  const Calibration c = FullCalibration();
  const std::string path = ::testing::TempDir() + "/calibrated_cluster.json";
  {
    std::ofstream out(path);
    out << DumpJson(CalibratedClusterToJson(cluster, c));
  }
  Result<CalibratedCluster> loaded = LoadCalibratedCluster(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->cluster, cluster);
  ASSERT_TRUE(loaded->calibration.has_value());
  ExpectSameCalibration(c, *loaded->calibration);
  // The spec alone still loads it (the calibration is ignored there).
  Result<ClusterSpec> plain = topology::ResolveCluster(path);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(*plain, cluster);
  // A spec without a calibration has none.
  {
    std::ofstream out(path);
    out << DumpJson(topology::ClusterSpecToJson(cluster));
  }
  loaded = LoadCalibratedCluster(path);
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->calibration.has_value());
  std::remove(path.c_str());
}

TEST(CalibrationJson, ErrorsNameTheFileAndTheField) {
  const Json good = CalibrationToJson(FullCalibration());
  auto error = [](const Json& j) {
    Result<Calibration> c = ParseCalibration(j, "cal.json");
    EXPECT_FALSE(c.ok());
    return c.ok() ? std::string() : c.status().message();
  };
  Json j = good;
  j["collectives"][0]["regimes"][1]["busbw_GBps"] = -3;
  EXPECT_EQ(error(j).rfind("cal.json: field 'calibration.collectives[0].regimes[1].busbw_GBps'", 0),
            0u)
      << error(j);
  j = good;
  j["collectives"][0]["regimes"][0]["flavour"] = "x";
  EXPECT_NE(error(j).find("field 'calibration.collectives[0].regimes[0].flavour': unknown field"),
            std::string::npos)
      << error(j);
  j = good;
  j["bogus"] = 1;
  EXPECT_NE(error(j).find("field 'calibration.bogus': unknown field"), std::string::npos);
  j = good;
  j["compute"]["bf17"] = j["compute"]["bf16"];
  EXPECT_NE(error(j).find("field 'calibration.compute.bf17'"), std::string::npos) << error(j);
  j = good;
  j["compute"]["bf16"]["gemm_max_efficiency"] = 1.5;
  EXPECT_NE(error(j).find("field 'calibration.compute.bf16.gemm_max_efficiency'"),
            std::string::npos)
      << error(j);
  j = good;
  j["profiles"][0]["entries"][0]["forward_us"] = -1;
  EXPECT_NE(error(j).find("cal.json: field 'calibration.profiles[0].entries[0].forward_us'"),
            std::string::npos)
      << error(j);
  j = good;
  j["profiles"][0]["device"] = "h100-sxm5-80gb";
  EXPECT_NE(error(j).find("field 'calibration.profiles[0].device'"), std::string::npos)
      << error(j);
  j = good;
  j["collectives"][0]["op"] = "allsum";
  EXPECT_NE(error(j).find("field 'calibration.collectives[0].op'"), std::string::npos);
  j = good;
  j["optimizer_ns_per_parameter"] = "fast";
  EXPECT_NE(error(j).find("field 'calibration.optimizer_ns_per_parameter'"), std::string::npos);
}

TEST(CalibrationJson, ACalibrationOfAnotherDeviceInAClusterFileIsAnError) {
  const ClusterSpec h100 = Cluster("dgx-h100");
  const std::string path = ::testing::TempDir() + "/mismatched_cluster.json";
  {
    std::ofstream out(path);
    out << DumpJson(CalibratedClusterToJson(h100, FullCalibration()));
  }
  Result<CalibratedCluster> loaded = LoadCalibratedCluster(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find(path + ": field 'calibration.device'"),
            std::string::npos)
      << loaded.status().message();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace orrery::costmodel
