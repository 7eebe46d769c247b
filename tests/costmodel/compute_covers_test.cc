// Profile entries that cover several operators (the executor's fused
// attn.core for attn.qk + attn.softmax + attn.av) in ComputeModel::EstimateLayer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "costmodel/compute.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/operators.h"

namespace orrery::costmodel {
namespace {

using topology::Precision;
using workload::LayerKind;
using workload::LayerOperators;
using workload::Operator;
using workload::OperatorClass;

constexpr const char* kDevice = "h100-sxm5-80gb";
const std::vector<std::string> kCore = {"attn.qk", "attn.softmax", "attn.av"};

ComputeModel Model() {
  Result<topology::DeviceType> d = topology::DevicePreset(kDevice);
  EXPECT_TRUE(d.ok());
  Result<ComputeModel> m = ComputeModel::Create(*d, Precision::kBf16);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

// gpt-tiny's block at micro-batch 2, sequence 64: unfused attention.
LayerOperators Block() {
  Result<workload::ModelSpec> gpt = workload::ModelPreset("gpt-tiny");
  EXPECT_TRUE(gpt.ok());
  Result<LayerOperators> block =
      workload::ExpandLayer(*gpt, LayerKind::kDecoderBlock, 2, 64, workload::LayerLayout{});
  EXPECT_TRUE(block.ok()) << block.status().ToString();
  return *block;
}

bool Covered(const Operator& op) {
  return op.name == "attn.qk" || op.name == "attn.softmax" || op.name == "attn.av";
}

Flops CoreFlops(const LayerOperators& layer) {
  Flops f;
  for (const Operator& op : layer.ops) {
    if (Covered(op)) f += op.forward_flops;
  }
  return f;
}

// A profile holding one covering entry.
traces::ComputeProfile CoreProfile(Flops flops, std::optional<Duration> backward,
                                   std::vector<std::string> covers = kCore) {
  traces::ComputeProfileEntry e;
  e.op_class = OperatorClass::kAttention;
  e.name = "attn.core";
  e.covers = std::move(covers);
  e.forward_flops = flops;
  e.forward = Micros(100);
  e.backward = backward;
  traces::ComputeProfile p;
  p.device = kDevice;
  p.precision = Precision::kBf16;
  p.source = "core.json";
  p.entries.push_back(e);
  return p;
}

TEST(ComputeCovers, ACoveringEntryTimesItsOperatorsTogetherInALayer) {
  const LayerOperators block = Block();
  const ComputeModel roofline = Model();
  ComputeModel measured = Model();
  ASSERT_TRUE(measured.AddProfile(CoreProfile(CoreFlops(block), Micros(250))).ok());

  Duration covered_fwd, covered_bwd;
  int covered = 0;
  for (const Operator& op : block.ops) {
    if (!Covered(op)) continue;
    ++covered;
    covered_fwd += roofline.Estimate(op).forward;
    covered_bwd += roofline.Estimate(op).backward;
  }
  ASSERT_EQ(covered, 3);
  const ComputeEstimate base = roofline.EstimateLayer(block);
  const ComputeEstimate with = measured.EstimateLayer(block);
  // The three operators' roofline times give way to the entry's.
  EXPECT_EQ(with.forward, base.forward - covered_fwd + Micros(100));
  EXPECT_EQ(with.backward, base.backward - covered_bwd + Micros(250));
  EXPECT_NE(with.detail.find("attn.core covers attn.qk+attn.softmax+attn.av"), std::string::npos)
      << with.detail;
  EXPECT_NE(with.detail.find("3 measured"), std::string::npos) << with.detail;

  // The operators alone are not matched or fitted by a covering entry.
  for (const Operator& op : block.ops) {
    if (!Covered(op)) continue;
    EXPECT_EQ(measured.Estimate(op).forward, roofline.Estimate(op).forward) << op.name;
    EXPECT_EQ(measured.Estimate(op).provenance, ComputeProvenance::kRoofline) << op.name;
  }
}

TEST(ComputeCovers, ProvenanceIsMeasuredWithAMeasuredBackwardElseRoofline) {
  const LayerOperators block = Block();
  LayerOperators core;  // the three covered operators alone
  for (const Operator& op : block.ops) {
    if (Covered(op)) core.ops.push_back(op);
  }
  const ComputeModel roofline = Model();
  ComputeModel both = Model();
  ASSERT_TRUE(both.AddProfile(CoreProfile(CoreFlops(block), Micros(250))).ok());
  const ComputeEstimate e = both.EstimateLayer(core);
  EXPECT_EQ(e.forward, Micros(100));
  EXPECT_EQ(e.backward, Micros(250));
  EXPECT_EQ(e.provenance, ComputeProvenance::kMeasured);

  ComputeModel forward_only = Model();
  ASSERT_TRUE(forward_only.AddProfile(CoreProfile(CoreFlops(block), std::nullopt)).ok());
  const ComputeEstimate f = forward_only.EstimateLayer(core);
  EXPECT_EQ(f.forward, Micros(100));
  // Backward: the covered operators' roofline.
  EXPECT_EQ(f.backward, roofline.EstimateLayer(core).backward);
  EXPECT_EQ(f.provenance, ComputeProvenance::kRoofline);
  EXPECT_NE(f.detail.find("backward roofline"), std::string::npos) << f.detail;
}

TEST(ComputeCovers, AnEntryWhoseFlopsOrNamesDoNotMatchTheLayerIsNotUsed) {
  const LayerOperators block = Block();
  const ComputeEstimate base = Model().EstimateLayer(block);

  // Another micro-batch's core: its FLOPs differ.
  ComputeModel other_size = Model();
  ASSERT_TRUE(other_size.AddProfile(CoreProfile(CoreFlops(block) * 2.0, Micros(250))).ok());
  EXPECT_EQ(other_size.EstimateLayer(block).forward, base.forward);
  EXPECT_EQ(other_size.EstimateLayer(block).backward, base.backward);

  // A covered name the layer lacks (a fused core that includes its dropout).
  ComputeModel other_names = Model();
  ASSERT_TRUE(other_names
                  .AddProfile(CoreProfile(CoreFlops(block), Micros(250),
                                          {"attn.qk", "attn.softmax", "attn.av", "attn.drop"}))
                  .ok());
  EXPECT_EQ(other_names.EstimateLayer(block).forward, base.forward);

  // Two of the three only: their FLOPs do not add up to the entry's.
  ComputeModel partial = Model();
  ASSERT_TRUE(
      partial.AddProfile(CoreProfile(CoreFlops(block), Micros(250), {"attn.qk", "attn.av"})).ok());
  EXPECT_EQ(partial.EstimateLayer(block).forward, base.forward);
}

}  // namespace
}  // namespace orrery::costmodel
