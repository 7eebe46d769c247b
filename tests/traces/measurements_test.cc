// Loading measurements for calibration (traces/measurements.h): files and
// directories by kind, the compute profile's covers / bytes / optimizer
// fields, and the compute profile of an execution trace.
#include "traces/measurements.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/file.h"
#include "traces/compute_profile.h"
#include "traces/execution_trace.h"

namespace orrery::traces {
namespace {

using workload::GemmShape;
using workload::OperatorClass;

const std::string kFixtures = ORRERY_FIXTURES_DIR;
const std::string kHardware = kFixtures + "/galvatron/hardware_configs";
const std::string kLlama = kFixtures + "/galvatron/main_gpt_llama2-7b";
const std::string kNcclLog =
    kFixtures + "/nccl_tests/nccl_allreduce_1node_8xH100_dgx_nvswitch_dgxc-benchmarking.log";

constexpr std::string_view kProfile = R"({
  "device": "cpu-test",
  "precision": "fp32",
  "entries": [
    {"op_class": "attention", "name": "attn.core", "forward_flops": 2.3e6,
     "covers": ["attn.qk", "attn.softmax", "attn.av"],
     "forward_bytes": 420000, "backward_bytes": 840000,
     "forward_us": 399.6, "backward_us": 461.9},
    {"op_class": "gemm", "gemm": {"m": 64, "n": 64, "k": 64}, "forward_bytes": 49152,
     "forward_us": 10}
  ],
  "optimizer": [{"name": "adamw", "parameters": 235520, "step_us": 1210.0},
                {"parameters": 471040, "step_us": 2400.5}]
})";

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

std::string ErrorOf(std::string_view text) {
  Result<ComputeProfile> p = ParseComputeProfile(text, "bad.json");
  EXPECT_FALSE(p.ok());
  return p.ok() ? "" : p.status().message();
}

// kProfile with `entry` as its only entry.
std::string WithEntry(const std::string& entry) {
  return R"({"device": "d", "precision": "fp32", "entries": [)" + entry + "]}";
}

TEST(ComputeProfileFields, ReadsCoversBytesAndOptimizerSteps) {
  Result<ComputeProfile> p = ParseComputeProfile(kProfile, "profile.json");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->entries.size(), 2u);
  const ComputeProfileEntry& core = p->entries[0];
  EXPECT_EQ(core.covers, (std::vector<std::string>{"attn.qk", "attn.softmax", "attn.av"}));
  EXPECT_EQ(core.forward_bytes, Bytes(420000));
  EXPECT_EQ(core.backward_bytes, Bytes(840000));
  EXPECT_TRUE(p->entries[1].covers.empty());
  EXPECT_EQ(p->entries[1].forward_bytes, Bytes(49152));
  EXPECT_FALSE(p->entries[1].backward_bytes.has_value());
  ASSERT_EQ(p->optimizer.size(), 2u);
  EXPECT_EQ(p->optimizer[0].name, "adamw");
  EXPECT_EQ(p->optimizer[0].parameters, 235520);
  EXPECT_EQ(p->optimizer[0].step, Micros(1210.0));
  EXPECT_EQ(p->optimizer[1].name, "adamw");  // the default
  EXPECT_EQ(p->optimizer[1].step, Micros(2400.5));
}

TEST(ComputeProfileFields, RoundTripThroughTheJsonForm) {
  Result<ComputeProfile> p = ParseComputeProfile(kProfile, "profile.json");
  ASSERT_TRUE(p.ok());
  Result<ComputeProfile> again = ParseComputeProfile(ComputeProfileToJson(*p), "again.json");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_EQ(again->entries.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(again->entries[i].covers, p->entries[i].covers) << i;
    EXPECT_EQ(again->entries[i].forward_bytes, p->entries[i].forward_bytes) << i;
    EXPECT_EQ(again->entries[i].backward_bytes, p->entries[i].backward_bytes) << i;
  }
  ASSERT_EQ(again->optimizer.size(), 2u);
  EXPECT_EQ(again->optimizer[1].parameters, 471040);
  EXPECT_EQ(again->optimizer[1].step, p->optimizer[1].step);
  // No optimizer: the field is not written.
  p->optimizer.clear();
  EXPECT_EQ(ComputeProfileToJson(*p).find("optimizer"), std::string::npos);
}

TEST(ComputeProfileFields, ErrorsNameTheField) {
  const std::string core = R"("op_class": "attention", "name": "c", "forward_flops": 10, )";
  EXPECT_NE(ErrorOf(WithEntry("{" + core + R"("covers": "attn.qk", "forward_us": 1})"))
                .find("field 'entries[0].covers'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(WithEntry("{" + core + R"("covers": ["a", 3], "forward_us": 1})"))
                .find("field 'entries[0].covers[1]'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(WithEntry("{" + core + R"("covers": ["a", "a"], "forward_us": 1})"))
                .find("listed twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf(WithEntry(R"({"op_class": "attention", "name": "c", "covers": ["a"],
                                  "forward_us": 1})"))
                .find("field 'entries[0].forward_flops'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(WithEntry(R"({"op_class": "layer", "name": "l", "covers": ["a"],
                                  "forward_us": 1})"))
                .find("field 'entries[0].covers'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(WithEntry("{" + core + R"("forward_bytes": -4, "forward_us": 1})"))
                .find("field 'entries[0].forward_bytes'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(WithEntry("{" + core + R"("backward_bytes": "8", "forward_us": 1})"))
                .find("field 'entries[0].backward_bytes'"),
            std::string::npos);
  const std::string base = R"({"device": "d", "precision": "fp32", "entries": [], )";
  EXPECT_NE(ErrorOf(base + R"("optimizer": [{"parameters": 10}]})")
                .find("field 'optimizer[0].step_us'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + R"("optimizer": [{"parameters": 0, "step_us": 3}]})")
                .find("field 'optimizer[0].parameters'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + R"("optimizer": [{"parameters": 5, "step_us": 3, "lr": 1}]})")
                .find("lr"),
            std::string::npos);
}

TEST(LoadMeasurements, ReadsEveryGalvatronHardwareTableOfADirectoryAndSkipsTheNotes) {
  Result<Measurements> m = LoadMeasurements({kHardware});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->allreduce_bandwidth.size(), 3u);
  EXPECT_EQ(m->p2p_bandwidth.size(), 3u);
  EXPECT_EQ(m->collective_times.size(), 1u);
  ASSERT_TRUE(m->overlap_coefficient.has_value());
  EXPECT_NEAR(*m->overlap_coefficient, 1.125552573612729, 1e-12);
  EXPECT_EQ(m->overlap_source, kHardware + "/overlap_coefficient.json");
  EXPECT_EQ(m->sources.size(), 8u);
  EXPECT_TRUE(std::is_sorted(m->sources.begin(), m->sources.end()));
  ASSERT_EQ(m->skipped.size(), 8u);  // the .source.txt beside each file
  for (const std::string& s : m->skipped) EXPECT_TRUE(s.ends_with(".source.txt")) << s;
  EXPECT_TRUE(m->compute_profiles.empty());
  EXPECT_TRUE(m->nccl_logs.empty());
}

TEST(LoadMeasurements, ImportsGalvatronsComputationProfileUnderTheNamedDevice) {
  MeasurementLoadOptions options;
  options.galvatron_device = "a100-sxm4-80gb";
  options.galvatron_precision = topology::Precision::kBf16;
  Result<Measurements> m =
      LoadMeasurements({kLlama + "/computation_profiling_bf16_llama2-7b_all.json"}, options);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->compute_profiles.size(), 1u);
  EXPECT_EQ(m->compute_profiles[0].device, "a100-sxm4-80gb");
  EXPECT_FALSE(m->compute_profiles[0].entries.empty());
  EXPECT_TRUE(m->compute_profiles[0].entries[0].IsLayer());

  // Without a device the file cannot be placed: an error naming it.
  Result<Measurements> none =
      LoadMeasurements({kLlama + "/computation_profiling_bf16_llama2-7b_all.json"});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("computation_profiling_bf16_llama2-7b_all.json"),
            std::string::npos);
}

TEST(LoadMeasurements, ReadsAnNcclTestsLogAndAWrittenProfileNamedDirectly) {
  const std::string profile = TempPath("measurements_profile.json");
  ASSERT_TRUE(WriteFileAtomically(profile, std::string(kProfile)).ok());
  Result<Measurements> m = LoadMeasurements({kNcclLog, profile});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->nccl_logs.size(), 1u);
  EXPECT_EQ(m->nccl_logs[0].source, kNcclLog);
  ASSERT_FALSE(m->nccl_logs[0].log.tables.empty());
  EXPECT_EQ(m->nccl_logs[0].log.tables[0].collective, CollectiveOp::kAllReduce);
  ASSERT_EQ(m->compute_profiles.size(), 1u);
  EXPECT_EQ(m->compute_profiles[0].optimizer.size(), 2u);
  EXPECT_EQ(m->sources, (std::vector<std::string>{kNcclLog, profile}));
  EXPECT_TRUE(m->skipped.empty());
}

TEST(LoadMeasurements, AFileOfNoKnownKindNamedDirectlyIsAnErrorNamingIt) {
  const std::string config =
      kLlama + "/galvatron_config_llama2-7b_1nodes_8gpus_per_node_36GB_bf16.json";
  Result<Measurements> m = LoadMeasurements({config});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find(config), std::string::npos) << m.status().message();

  const std::string notes = kNcclLog + ".source.txt";  // quotes "# nThread" mid-line
  Result<Measurements> n = LoadMeasurements({notes});
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find(notes), std::string::npos);

  Result<Measurements> missing = LoadMeasurements({kFixtures + "/no_such_file.json"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("no_such_file.json"), std::string::npos);
}

TEST(LoadMeasurements, AMalformedProfileIsAnErrorNamingTheFileAndField) {
  const std::string bad = TempPath("measurements_bad_profile.json");
  ASSERT_TRUE(WriteFileAtomically(bad, WithEntry(R"({"op_class": "gemm", "name": "g",
                                                     "forward_us": -1})"))
                  .ok());
  Result<Measurements> m = LoadMeasurements({bad});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find(bad + ": field 'entries[0].forward_us'"),
            std::string::npos)
      << m.status().message();
}

// A trace of two ranks, a warm-up iteration 0 and timed iterations 1 and 2:
// per rank and iteration, attn.core forward and backward, mlp.fc1 forward,
// and head.loss forward as two kernels per micro-batch.
ExecutionTrace SmallTrace() {
  ExecutionTrace t;
  t.model = "gpt-tiny";
  t.backend = "cpu";
  t.device = "cpu-test";
  t.world_size = 2;
  for (int i = 0; i < 3; ++i) {
    t.iterations.push_back(ExecutionIteration{i, i == 0, {Millis(1), Millis(1)}, 1.0});
  }
  const GemmShape core{64, 64, 16, 4};
  const GemmShape fc1{64, 256, 64, 1};
  double clock = 0;
  auto add = [&](int rank, int it, const std::string& name, ExecutionPhase phase,
                 std::optional<GemmShape> gemm, double us) {
    ExecutionOp op;
    op.rank = rank;
    op.iteration = it;
    op.name = name;
    op.phase = phase;
    op.layer = name.starts_with("head") ? std::optional<int>() : std::optional<int>(0);
    op.micro_batch = 0;
    op.start = Micros(clock);
    clock += us;
    op.end = Micros(clock);
    op.gemm = gemm;
    t.ops.push_back(op);
  };
  for (int rank = 0; rank < 2; ++rank) {
    for (int it = 0; it < 3; ++it) {
      const double slow = it == 0 ? 1000.0 : 0.0;  // warm-up: never counted
      add(rank, it, "attn.core", ExecutionPhase::kForward, core, 10.0 + rank + it + slow);
      add(rank, it, "attn.core", ExecutionPhase::kRecompute, core, 500.0);
      add(rank, it, "mlp.fc1", ExecutionPhase::kForward, fc1, 20.0 + slow);
      add(rank, it, "head.loss", ExecutionPhase::kForward, std::nullopt, 3.0 + slow);
      add(rank, it, "head.loss", ExecutionPhase::kForward, std::nullopt, 4.0);
      add(rank, it, "attn.core", ExecutionPhase::kBackward, core, 30.0 + slow);
    }
  }
  ExecutionOp comm;
  comm.kind = ExecutionOpKind::kCommunication;
  comm.iteration = 1;
  comm.name = "tp.allreduce";
  comm.phase = ExecutionPhase::kForward;
  comm.end = Micros(1);
  t.ops.push_back(comm);
  return t;
}

TEST(ComputeProfileFromTrace, MediansOfTimedIterationsOverRanksPerOperator) {
  Result<ComputeProfile> p = ComputeProfileFromTrace(SmallTrace(), "trace.json");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->device, "cpu-test");
  EXPECT_EQ(p->precision, topology::Precision::kFp32);
  ASSERT_EQ(p->entries.size(), 3u);  // attn.core, head.loss, mlp.fc1; no communication
  const ComputeProfileEntry& core = p->entries[0];
  EXPECT_EQ(core.name, "attn.core");
  EXPECT_EQ(core.op_class, OperatorClass::kAttention);
  EXPECT_EQ(core.covers, (std::vector<std::string>{"attn.qk", "attn.softmax", "attn.av"}));
  // QKᵀ and A·V at 2·64·64·16·4 each, the softmax at 5 per score (64·64·4).
  EXPECT_DOUBLE_EQ(core.forward_flops->count(), 4.0 * 64 * 64 * 16 * 4 + 5.0 * 64 * 64 * 4);
  // Timed samples 10+r+i for r in {0,1}, i in {1,2}: 11, 12, 12, 13; the
  // recompute pass is not a forward sample.
  EXPECT_EQ(core.forward, Micros(12));
  ASSERT_TRUE(core.backward.has_value());
  EXPECT_EQ(*core.backward, Micros(30));

  const ComputeProfileEntry& loss = p->entries[1];
  EXPECT_EQ(loss.name, "head.loss");
  EXPECT_EQ(loss.op_class, OperatorClass::kLoss);
  EXPECT_EQ(loss.forward, Micros(7));  // its two kernels summed per micro-batch
  EXPECT_FALSE(loss.backward.has_value());
  EXPECT_FALSE(loss.forward_flops.has_value());

  const ComputeProfileEntry& fc1 = p->entries[2];
  EXPECT_EQ(fc1.op_class, OperatorClass::kGemm);
  ASSERT_TRUE(fc1.gemm.has_value());
  EXPECT_DOUBLE_EQ(fc1.forward_flops->count(), 2.0 * 64 * 256 * 64);
  EXPECT_EQ(fc1.forward, Micros(20));

  // The profile is a valid file.
  EXPECT_TRUE(ParseComputeProfile(ComputeProfileToJson(*p), "p.json").ok());
}

TEST(ComputeProfileFromTrace, AnExecutionTraceFileLoadsAsAComputeProfile) {
  const std::string path = TempPath("measurements_trace.json");
  ASSERT_TRUE(WriteFileAtomically(path, DumpJson(ExecutionTraceToJson(SmallTrace()))).ok());
  Result<Measurements> m = LoadMeasurements({path});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->compute_profiles.size(), 1u);
  EXPECT_EQ(m->compute_profiles[0].entries.size(), 3u);

  ExecutionTrace warmup_only = SmallTrace();
  for (ExecutionIteration& it : warmup_only.iterations) it.warmup = true;
  Result<ComputeProfile> none = ComputeProfileFromTrace(warmup_only, "w.json");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("w.json"), std::string::npos);
}

}  // namespace
}  // namespace orrery::traces
