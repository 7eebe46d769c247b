#include "traces/compute_profile.h"

#include <gtest/gtest.h>

#include <string>

#include "core/file.h"

namespace orrery::traces {
namespace {

using workload::OperatorClass;

const std::string kGalvatron = std::string(ORRERY_FIXTURES_DIR) +
                               "/galvatron/main_gpt_llama2-7b/"
                               "computation_profiling_bf16_llama2-7b_all.json";

constexpr std::string_view kProfile = R"({
  "device": "h100-sxm5-80gb",
  "precision": "bf16",
  "source": "a cuBLAS sweep",
  "entries": [
    {"op_class": "gemm", "gemm": {"m": 4096, "n": 4096, "k": 4096},
     "forward_us": 190.5, "backward_us": 385.0},
    {"op_class": "attention", "name": "attn.flash", "forward_flops": 1.5e12,
     "forward_us": 2100.0},
    {"op_class": "layer", "name": "decoder", "micro_batch": 2, "sequence_length": 4096,
     "forward_us": 9000, "backward_us": 18000}
  ]
})";

// The message of a failed parse of `text`.
std::string ErrorOf(std::string_view text) {
  Result<ComputeProfile> p = ParseComputeProfile(text, "bad.json");
  EXPECT_FALSE(p.ok());
  return p.ok() ? "" : p.status().message();
}

TEST(ComputeProfile, ReadsGemmNamedAndLayerEntries) {
  Result<ComputeProfile> p = ParseComputeProfile(kProfile, "profile.json");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->device, "h100-sxm5-80gb");
  EXPECT_EQ(p->precision, topology::Precision::kBf16);
  EXPECT_EQ(p->source, "a cuBLAS sweep");
  ASSERT_EQ(p->entries.size(), 3u);

  const ComputeProfileEntry& gemm = p->entries[0];
  EXPECT_EQ(gemm.op_class, OperatorClass::kGemm);
  ASSERT_TRUE(gemm.gemm.has_value());
  EXPECT_EQ(gemm.gemm->m, 4096);
  EXPECT_EQ(gemm.gemm->batch, 1);
  // Derived: 2·m·n·k.
  ASSERT_TRUE(gemm.forward_flops.has_value());
  EXPECT_DOUBLE_EQ(gemm.forward_flops->count(), 2.0 * 4096.0 * 4096.0 * 4096.0);
  EXPECT_EQ(gemm.forward, Micros(190.5));
  EXPECT_EQ(gemm.backward, Micros(385.0));

  const ComputeProfileEntry& attn = p->entries[1];
  EXPECT_EQ(attn.op_class, OperatorClass::kAttention);
  EXPECT_EQ(attn.name, "attn.flash");
  EXPECT_DOUBLE_EQ(attn.forward_flops->count(), 1.5e12);
  EXPECT_FALSE(attn.backward.has_value());  // not measured, not zero

  const ComputeProfileEntry& layer = p->entries[2];
  EXPECT_TRUE(layer.IsLayer());
  EXPECT_EQ(layer.micro_batch, 2);
  EXPECT_EQ(layer.sequence_length, 4096);
  EXPECT_EQ(layer.forward, Millis(9));
}

TEST(ComputeProfile, RoundTripsThroughItsJsonForm) {
  Result<ComputeProfile> p = ParseComputeProfile(kProfile, "profile.json");
  ASSERT_TRUE(p.ok());
  Result<ComputeProfile> again = ParseComputeProfile(ComputeProfileToJson(*p), "again.json");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_EQ(again->entries.size(), p->entries.size());
  for (size_t i = 0; i < p->entries.size(); ++i) {
    EXPECT_EQ(again->entries[i].op_class, p->entries[i].op_class) << i;
    EXPECT_EQ(again->entries[i].name, p->entries[i].name) << i;
    EXPECT_EQ(again->entries[i].forward, p->entries[i].forward) << i;
    EXPECT_EQ(again->entries[i].backward, p->entries[i].backward) << i;
    EXPECT_EQ(again->entries[i].forward_flops, p->entries[i].forward_flops) << i;
  }
}

TEST(ComputeProfile, BadFilesGiveErrorsNamingTheField) {
  const std::string head = R"({"device": "h100-sxm5-80gb", "precision": "bf16", "entries": [)";
  EXPECT_NE(ErrorOf(head + R"({"op_class": "gemm", "gemm": {"m": 8, "n": 8, "k": 8},
                                "forward_us": -1}]})")
                .find("bad.json: field 'entries[0].forward_us': expected a positive number"),
            std::string::npos);
  EXPECT_NE(ErrorOf(head + R"({"op_class": "matmul", "name": "x", "forward_us": 1}]})")
                .find("field 'entries[0].op_class': unknown operator class \"matmul\""),
            std::string::npos);
  EXPECT_NE(ErrorOf(head + R"({"op_class": "gemm", "forward_us": 1}]})")
                .find("field 'entries[0].gemm': missing (an operator entry needs"),
            std::string::npos);
  EXPECT_NE(ErrorOf(head + R"({"op_class": "gemm", "gemm": {"m": 0, "n": 8, "k": 8},
                                "forward_us": 1}]})")
                .find("field 'entries[0].gemm.m': expected a positive integer"),
            std::string::npos);
  EXPECT_NE(ErrorOf(head + R"({"op_class": "layer", "forward_us": 1}]})")
                .find("field 'entries[0].name'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(head + R"({"op_class": "norm", "name": "ln", "forward_us": 1,
                                "fwd_us": 2}]})")
                .find("fwd_us"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"device": "h100-sxm5-80gb", "precision": "bf17", "entries": []})")
                .find("field 'precision'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"precision": "bf16", "entries": []})").find("field 'device'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"device": "x", "precision": "bf16"})").find("field 'entries'"),
            std::string::npos);
}

TEST(ComputeProfile, ImportsGalvatronsLayerTimesAsWholeLayerEntries) {
  Result<ComputeProfile> p =
      ImportGalvatronComputationProfile(kGalvatron, "a100-sxm4-80gb", topology::Precision::kBf16);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->device, "a100-sxm4-80gb");
  // layertype_0 and layertype_other at micro-batches 1..12; the 24
  // "layernum[...]" whole-model keys are skipped.
  ASSERT_EQ(p->entries.size(), 24u);
  int blocks = 0;
  for (const ComputeProfileEntry& e : p->entries) {
    EXPECT_TRUE(e.IsLayer());
    EXPECT_EQ(e.sequence_length, 2048);
    EXPECT_FALSE(e.backward.has_value());
    if (e.name == "layertype_0") ++blocks;
    if (e.name == "layertype_0" && e.micro_batch == 8) {
      // 3.9369729995727534 ms per sample, for 8 samples.
      EXPECT_EQ(e.forward, Millis(3.9369729995727534 * 8));
    }
  }
  EXPECT_EQ(blocks, 12);
  // Per-sample layer time × 2 layers + the rest ≈ Galvatron's own 2-layer
  // timing at micro-batch 1 (15.08 ms): the keys mean what we read them as.
  Duration one_block, other;
  for (const ComputeProfileEntry& e : p->entries) {
    if (e.micro_batch != 1) continue;
    (e.name == "layertype_0" ? one_block : other) = e.forward;
  }
  EXPECT_NEAR((one_block * 2 + other).ToMillis(), 15.0786208152771, 0.01);
}

TEST(ComputeProfile, GalvatronImportRejectsAMalformedKey) {
  const std::string path = ::testing::TempDir() + "galvatron_bad.json";
  {
    Result<ComputeProfile> missing =
        ImportGalvatronComputationProfile(path + ".absent", "x", topology::Precision::kBf16);
    EXPECT_FALSE(missing.ok());
  }
  ASSERT_TRUE(WriteFileAtomically(
                  path, R"({"layertype_0_bsz1_seq2048": 4.0, "layertype_0_bszX_seq2048": 4.0})")
                  .ok());
  Result<ComputeProfile> p =
      ImportGalvatronComputationProfile(path, "x", topology::Precision::kBf16);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("field 'layertype_0_bszX_seq2048'"), std::string::npos)
      << p.status().message();
}

}  // namespace
}  // namespace orrery::traces
