// The simulator and the analytical model on a calibrated cluster
// (IterationOptions::calibration, AnalyticalModel::Create(cluster,
// calibration)): a measured operator replaces the roofline's time in every
// layer that holds it, and a measured optimizer step replaces bytes /
// streaming bandwidth. The calibrations are built by hand, as
// costmodel::Calibrate would from a profile.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "costmodel/calibration.h"
#include "costmodel/compute.h"
#include "sim/analytical.h"
#include "sim/iteration.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/operators.h"
#include "workload/plan.h"

namespace orrery::sim {
namespace {

using workload::Plan;

struct Env {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
  const topology::DeviceType& device() const { return cluster.PrimaryNodeType().device; }
};

Env Load() {
  Result<workload::ModelSpec> m = workload::ModelPreset("gpt-tiny");
  Result<topology::ClusterSpec> c = topology::ResolveCluster("dgx-h100", 1);
  EXPECT_TRUE(m.ok()) << m.status().message();
  EXPECT_TRUE(c.ok()) << c.status().message();
  return {*m, *c};
}

// A calibration of `device` holding only an optimizer measurement.
std::shared_ptr<const costmodel::Calibration> OptimizerCalibration(
    const topology::DeviceType& device, Duration per_parameter) {
  auto calibration = std::make_shared<costmodel::Calibration>();
  calibration->device = device.name;
  calibration->sources = {"prof/compute_profile.json"};
  calibration->optimizer_time_per_parameter = per_parameter;
  return calibration;
}

// gpt-tiny's QKV projection at micro-batch `mb` (tp 1).
workload::Operator Qkv(const workload::ModelSpec& model, int64_t mb) {
  Result<workload::LayerOperators> block = workload::ExpandLayer(
      model, workload::LayerKind::kDecoderBlock, mb, model.default_sequence_length, {});
  EXPECT_TRUE(block.ok()) << block.status().message();
  for (const workload::Operator& op : block->ops) {
    if (op.name == "attn.qkv") return op;
  }
  ADD_FAILURE() << "gpt-tiny's block has no attn.qkv";
  return {};
}

TEST(CalibratedSimulation, OptimizerStepIsHeldParametersTimesMeasuredTimePerParameter) {
  // One stage, free communication: the iteration is m·(F + B) and then the
  // optimizer step, parameters held × the measured time per parameter.
  Env s = Load();
  const Plan plan = Plan::Uniform(s.model, 1, {.tp = 1, .dp = 8}, 16, 2);
  IterationOptions options;
  options.free_communication = true;
  const Duration per_parameter = Duration::FromPicos(7'000);  // 7 ns
  options.calibration = OptimizerCalibration(s.device(), per_parameter);
  IterationTrace trace;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, options, &trace);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const StageReport& st = r->stages[0];
  const Duration passes = (st.forward + st.backward) * r->micro_batches;
  EXPECT_EQ(trace.graph.optimizer, per_parameter * st.parameters);
  EXPECT_EQ(r->iteration_time, passes + per_parameter * st.parameters);

  // Without the calibration: bytes / (memory bandwidth × efficiency).
  options.calibration = nullptr;
  Result<IterationReport> nominal = SimulateIteration(s.model, plan, s.cluster, options, &trace);
  ASSERT_TRUE(nominal.ok()) << nominal.status().message();
  const Bandwidth streaming = s.device().memory_bandwidth *
                              costmodel::DefaultComputeOptions(s.device()).bandwidth_efficiency;
  EXPECT_EQ(trace.graph.optimizer, Bytes(st.parameters * 12) / streaming);
  EXPECT_EQ(nominal->iteration_time, passes + Bytes(st.parameters * 12) / streaming);
}

TEST(CalibratedSimulation, CallersOptimizerTimeWinsOverTheCalibrations) {
  Env s = Load();
  const Plan plan = Plan::Uniform(s.model, 1, {.tp = 1, .dp = 8}, 16, 2);
  IterationOptions options;
  options.free_communication = true;
  options.calibration = OptimizerCalibration(s.device(), Duration::FromPicos(7'000));
  options.graph.optimizer_time_per_parameter = Duration::FromPicos(3'000);
  IterationTrace trace;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, options, &trace);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(trace.graph.optimizer, Duration::FromPicos(3'000) * r->stages[0].parameters);
}

TEST(CalibratedSimulation, AnalyticalModelTakesTheCalibratedOptimizerStepAsTheSimulator) {
  // ZeRO-1 over dp 8: each rank updates its eighth of every layer.
  Env s = Load();
  const Plan plan = Plan::Uniform(s.model, 1, {.tp = 1, .dp = 8, .zero_stage = 1}, 16, 2);
  IterationOptions options;
  const Duration per_parameter = Duration::FromPicos(9'000);
  options.calibration = OptimizerCalibration(s.device(), per_parameter);
  IterationTrace trace;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, options, &trace);
  ASSERT_TRUE(r.ok()) << r.status().message();
  Result<AnalyticalModel> model = AnalyticalModel::Create(s.cluster, options.calibration.get());
  ASSERT_TRUE(model.ok()) << model.status().message();
  ASSERT_TRUE(model->optimizer_time_per_parameter().has_value());
  Result<AnalyticalEstimate> estimate = model->Estimate(s.model, plan);
  ASSERT_TRUE(estimate.ok()) << estimate.status().message();
  EXPECT_EQ(estimate->optimizer, trace.graph.optimizer);
  // Σ_layers ⌊parameters / 8⌋ × t: within one parameter per layer of P/8.
  const int64_t parameters = r->stages[0].parameters;
  const int layers = s.model.num_layers + 2;
  EXPECT_LE(estimate->optimizer, per_parameter * (parameters / 8));
  EXPECT_GE(estimate->optimizer, per_parameter * (parameters / 8 - layers));

  // The nominal analytical model keeps bytes / bandwidth.
  Result<AnalyticalModel> nominal = AnalyticalModel::Create(s.cluster);
  ASSERT_TRUE(nominal.ok()) << nominal.status().message();
  EXPECT_FALSE(nominal->optimizer_time_per_parameter().has_value());
  Result<AnalyticalEstimate> plain = nominal->Estimate(s.model, plan);
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_NE(plain->optimizer, estimate->optimizer);
}

TEST(CalibratedSimulation, MeasuredGemmChangesEveryBlocksPassByTheMeasuredDifference) {
  // A profile measuring gpt-tiny's QKV GEMM at twice the roofline's forward
  // and three times its backward: each of the 4 blocks' passes grows by the
  // difference, the embedding and head do not change.
  Env s = Load();
  const Plan plan = Plan::Uniform(s.model, 1, {.tp = 1, .dp = 8}, 16, 2);
  const workload::Operator qkv = Qkv(s.model, 2);
  Result<costmodel::ComputeModel> roofline =
      costmodel::ComputeModel::Create(s.device(), topology::Precision::kBf16);
  ASSERT_TRUE(roofline.ok()) << roofline.status().message();
  const costmodel::ComputeEstimate nominal_qkv = roofline->Estimate(qkv);

  traces::ComputeProfile profile;
  profile.device = s.device().name;
  profile.precision = topology::Precision::kBf16;
  profile.source = "hand-built";
  traces::ComputeProfileEntry entry;
  entry.op_class = workload::OperatorClass::kGemm;
  entry.name = "attn.qkv";
  entry.gemm = qkv.gemm;
  entry.forward_flops = qkv.forward_flops;
  entry.forward = nominal_qkv.forward * 2;
  entry.backward = nominal_qkv.backward * 3;
  profile.entries.push_back(entry);
  auto calibration = std::make_shared<costmodel::Calibration>();
  calibration->device = s.device().name;
  calibration->sources = {"hand-built"};
  calibration->profiles.push_back(profile);

  IterationOptions options;
  options.free_communication = true;
  Result<IterationReport> nominal = SimulateIteration(s.model, plan, s.cluster, options);
  ASSERT_TRUE(nominal.ok()) << nominal.status().message();
  options.calibration = calibration;
  Result<IterationReport> measured = SimulateIteration(s.model, plan, s.cluster, options);
  ASSERT_TRUE(measured.ok()) << measured.status().message();

  const int blocks = s.model.num_layers;
  EXPECT_EQ(measured->stages[0].forward - nominal->stages[0].forward,
            nominal_qkv.forward * blocks);
  EXPECT_EQ(measured->stages[0].backward - nominal->stages[0].backward,
            nominal_qkv.backward * (2 * blocks));
  EXPECT_EQ(measured->iteration_time - nominal->iteration_time,
            (nominal_qkv.forward + nominal_qkv.backward * 2) * (blocks * measured->micro_batches));

  // The analytical model built from the same calibration agrees.
  Result<AnalyticalModel> model = AnalyticalModel::Create(s.cluster, calibration.get());
  ASSERT_TRUE(model.ok()) << model.status().message();
  AnalyticalOptions analytical;
  analytical.free_communication = true;
  Result<AnalyticalEstimate> estimate = model->Estimate(s.model, plan, analytical);
  ASSERT_TRUE(estimate.ok()) << estimate.status().message();
  EXPECT_EQ(estimate->iteration_time, measured->iteration_time);
}

TEST(CalibratedSimulation, CalibrationOfAnotherDeviceIsRejected) {
  Env s = Load();
  const Plan plan = Plan::Uniform(s.model, 1, {.tp = 1, .dp = 8}, 16, 2);
  IterationOptions options;
  auto calibration = std::make_shared<costmodel::Calibration>();
  calibration->device = "cpu-core";
  calibration->optimizer_time_per_parameter = Duration::FromPicos(1'000);
  options.calibration = calibration;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().message();
  EXPECT_FALSE(AnalyticalModel::Create(s.cluster, calibration.get()).ok());
}

}  // namespace
}  // namespace orrery::sim
