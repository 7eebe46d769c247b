#include "traces/galvatron_profiles.h"

#include <gtest/gtest.h>

#include <string>

#include "core/file.h"

namespace orrery::traces {
namespace {

const std::string kHardware = std::string(ORRERY_FIXTURES_DIR) + "/galvatron/hardware_configs/";
const std::string kModel = std::string(ORRERY_FIXTURES_DIR) + "/galvatron/main_gpt_llama2-7b/";

// Writes `contents` to a file named `name` in the test's temp dir.
std::string WriteTemp(const std::string& name, std::string_view contents) {
  const std::string path = ::testing::TempDir() + name;
  EXPECT_TRUE(WriteFileAtomically(path, contents).ok()) << path;
  return path;
}

// The error message of a failed load, "" (and a test failure) on success.
template <typename T>
std::string ErrorOf(const Result<T>& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.status().message();
}

TEST(GalvatronShape, ReadsNodesAndGpusFromTheFileName) {
  std::optional<GalvatronClusterShape> s =
      GalvatronShapeFromFileName("/x/y/allreduce_bandwidth_2nodes_8gpus_per_node.json");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->nodes, 2);
  EXPECT_EQ(s->gpus_per_node, 8);
  s = GalvatronShapeFromFileName("sp_time_1nodes_4gpus_per_node.json");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->nodes, 1);
  EXPECT_EQ(s->gpus_per_node, 4);
  EXPECT_FALSE(GalvatronShapeFromFileName("overlap_coefficient.json").has_value());
  EXPECT_FALSE(GalvatronShapeFromFileName("a_0nodes_8gpus_per_node.json").has_value());
  EXPECT_FALSE(GalvatronShapeFromFileName("/2nodes_8gpus_per_node/bandwidth.json").has_value());
}

TEST(GalvatronAllReduceBandwidth, ReadsTheOneNodeEightGpuTable) {
  Result<GalvatronAllReduceBandwidth> t =
      LoadGalvatronAllReduceBandwidth(kHardware + "allreduce_bandwidth_1nodes_8gpus_per_node.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE(t->shape.has_value());
  EXPECT_EQ(t->shape->nodes, 1);
  EXPECT_EQ(t->shape->gpus_per_node, 8);
  ASSERT_EQ(t->entries.size(), 5u);
  EXPECT_EQ(t->entries[0].ranks, 8);
  EXPECT_TRUE(t->entries[0].consecutive);
  EXPECT_DOUBLE_EQ(t->entries[0].busbw.ToGBps(), 154.203);
  // "allreduce_size_4_consec_0": 155.815, decimal GB/s.
  EXPECT_EQ(t->entries[2].ranks, 4);
  EXPECT_FALSE(t->entries[2].consecutive);
  EXPECT_DOUBLE_EQ(t->entries[2].busbw.BytesPerSecond(), 155.815e9);
}

TEST(GalvatronAllReduceBandwidth, ReadsTheTwoNodeTable) {
  Result<GalvatronAllReduceBandwidth> t =
      LoadGalvatronAllReduceBandwidth(kHardware + "allreduce_bandwidth_2nodes_8gpus_per_node.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->entries.size(), 7u);
  EXPECT_EQ(t->entries[0].ranks, 16);
  EXPECT_DOUBLE_EQ(t->entries[0].busbw.ToGBps(), 44.682);
  EXPECT_EQ(t->entries[6].ranks, 2);
  EXPECT_FALSE(t->entries[6].consecutive);
  EXPECT_DOUBLE_EQ(t->entries[6].busbw.ToGBps(), 8.13007);
}

TEST(GalvatronAllReduceBandwidth, MalformedKeysAndValuesNameTheFileAndTheKey) {
  std::string path =
      WriteTemp("ar_bad_key_1nodes_8gpus_per_node.json",
                R"({"allreduce_size_8_consec_1": 150, "allreduce_size_4_consec_2": 1})");
  std::string msg = ErrorOf(LoadGalvatronAllReduceBandwidth(path));
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("field 'allreduce_size_4_consec_2'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("allreduce_size_<n>_consec_<0|1>"), std::string::npos) << msg;

  path = WriteTemp("ar_bad_value.json", R"({"allreduce_size_8_consec_1": -3})");
  msg = ErrorOf(LoadGalvatronAllReduceBandwidth(path));
  EXPECT_NE(msg.find("field 'allreduce_size_8_consec_1': expected a positive number (GB/s)"),
            std::string::npos)
      << msg;

  path = WriteTemp("ar_string.json", R"({"allreduce_size_8_consec_1": "150"})");
  EXPECT_NE(ErrorOf(LoadGalvatronAllReduceBandwidth(path)).find("got \"150\""), std::string::npos);
  path = WriteTemp("ar_zero_ranks.json", R"({"allreduce_size_0_consec_1": 150})");
  msg = ErrorOf(LoadGalvatronAllReduceBandwidth(path));
  EXPECT_NE(msg.find("field 'allreduce_size_0_consec_1'"), std::string::npos) << msg;
  path = WriteTemp("ar_empty.json", "{}");
  EXPECT_NE(ErrorOf(LoadGalvatronAllReduceBandwidth(path)).find("no \"allreduce_size_"),
            std::string::npos);
  path = WriteTemp("ar_array.json", "[1, 2]");
  EXPECT_NE(ErrorOf(LoadGalvatronAllReduceBandwidth(path)).find("expected an object"),
            std::string::npos);
  Result<GalvatronAllReduceBandwidth> missing =
      LoadGalvatronAllReduceBandwidth(::testing::TempDir() + "absent.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();
}

TEST(GalvatronP2pBandwidth, ReadsTheTwoNodeTable) {
  Result<GalvatronP2pBandwidth> t =
      LoadGalvatronP2pBandwidth(kHardware + "p2p_bandwidth_2nodes_8gpus_per_node.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->entries.size(), 4u);
  EXPECT_EQ(t->entries[0].pp, 2);
  EXPECT_DOUBLE_EQ(t->entries[0].bandwidth.ToGBps(), 7.65998);
  EXPECT_EQ(t->entries[3].pp, 16);
  EXPECT_DOUBLE_EQ(t->entries[3].bandwidth.ToGBps(), 8.13177);
  ASSERT_TRUE(t->shape.has_value());
  EXPECT_EQ(t->shape->nodes, 2);
}

TEST(GalvatronP2pBandwidth, RejectsAMalformedKey) {
  std::string path = WriteTemp("p2p_bad.json", R"({"pp_size_2": 160, "pp_size_four": 140})");
  std::string msg = ErrorOf(LoadGalvatronP2pBandwidth(path));
  EXPECT_NE(msg.find("field 'pp_size_four'"), std::string::npos) << msg;
  path = WriteTemp("p2p_one.json", R"({"pp_size_1": 160})");
  EXPECT_NE(ErrorOf(LoadGalvatronP2pBandwidth(path)).find("n >= 2"), std::string::npos);
}

TEST(GalvatronCollectiveTimes, ReadsAllReduceAndAllToAllTimesInMiBAndMs) {
  Result<GalvatronCollectiveTimes> t =
      LoadGalvatronCollectiveTimes(kHardware + "sp_time_1nodes_8gpus_per_node.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->entries.size(), 66u);  // 2 ops x 3 group sizes x 11 sizes
  const GalvatronCollectiveTimes::Entry& first = t->entries[0];
  EXPECT_EQ(first.op, CollectiveOp::kAllReduce);
  EXPECT_EQ(first.ranks, 8);
  EXPECT_EQ(first.size, MiB(1));
  EXPECT_NEAR(first.time.ToMicros(), 78.95, 1e-6);
  const GalvatronCollectiveTimes::Entry& last = t->entries.back();
  EXPECT_EQ(last.op, CollectiveOp::kAllToAll);
  EXPECT_EQ(last.ranks, 2);
  EXPECT_EQ(last.size, GiB(1));  // "1024MB": 1024 x 2^20 bytes
  EXPECT_NEAR(last.time.ToMillis(), 3.4954, 1e-9);
}

TEST(GalvatronCollectiveTimes, RejectsAMalformedKey) {
  std::string path =
      WriteTemp("sp_bad.json",
                R"({"allreduce_size_8_1MB_time": 0.08, "allreduce_size_8_1GB_time": 8})");
  std::string msg = ErrorOf(LoadGalvatronCollectiveTimes(path));
  EXPECT_NE(msg.find("field 'allreduce_size_8_1GB_time'"), std::string::npos) << msg;
  path = WriteTemp("sp_bad_op.json", R"({"allgather_size_8_1MB_time": 0.08})");
  msg = ErrorOf(LoadGalvatronCollectiveTimes(path));
  EXPECT_NE(msg.find("field 'allgather_size_8_1MB_time'"), std::string::npos) << msg;
  path = WriteTemp("sp_bad_time.json", R"({"all2all_size_8_1MB_time": 0})");
  msg = ErrorOf(LoadGalvatronCollectiveTimes(path));
  EXPECT_NE(msg.find("expected a positive number (ms)"), std::string::npos) << msg;
}

TEST(GalvatronOverlap, ReadsTheCoefficientAndRejectsOneBelowOne) {
  Result<double> c = LoadGalvatronOverlapCoefficient(kHardware + "overlap_coefficient.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(*c, 1.125552573612729);
  std::string path = WriteTemp("overlap_low.json", R"({"overlap_coe": 0.9})");
  std::string msg = ErrorOf(LoadGalvatronOverlapCoefficient(path));
  EXPECT_NE(msg.find("field 'overlap_coe'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(">= 1"), std::string::npos) << msg;
  path = WriteTemp("overlap_typo.json", R"({"overlap_coef": 1.1})");
  EXPECT_NE(ErrorOf(LoadGalvatronOverlapCoefficient(path)).find("overlap_coe"),
            std::string::npos);
}

TEST(GalvatronMemoryProfile, ReadsEveryStrategyOfTheLlama2Profile) {
  Result<GalvatronMemoryProfile> p =
      LoadGalvatronMemoryProfile(kModel + "memory_profiling_bf16_llama2-7b_all.json");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // 16 strategies ("layertype_0_sp" and "other_memory_*" are summaries, skipped):
  // 8 with layernum 1 and 2, 8 with one layer count; ranks 0 and 7 each.
  EXPECT_EQ(p->entries.size(), 8u * 2 * 2 + 8u * 2);
  const GalvatronMemoryProfile::Entry& e = p->entries[0];
  EXPECT_EQ(e.strategy, "1_1_8_sp");
  EXPECT_EQ(e.pp, 1);
  EXPECT_EQ(e.tp, 1);
  EXPECT_EQ(e.dp, 8);
  EXPECT_TRUE(e.sequence_parallel);
  EXPECT_FALSE(e.vocab_tp);
  EXPECT_FALSE(e.checkpoint);
  EXPECT_EQ(e.layers, 1);
  EXPECT_EQ(e.micro_batch, 8);
  EXPECT_EQ(e.sequence_length, 2048);
  EXPECT_EQ(e.rank, 0);
  // 904.3330078125 MiB exactly, in bytes.
  EXPECT_EQ(e.model_states, Bytes(static_cast<int64_t>(904.3330078125 * 1048576)));
  EXPECT_DOUBLE_EQ(e.activation.ToMiB(), 828.607421875);
  EXPECT_DOUBLE_EQ(e.activation_peak.ToMiB(), 1357.1357421875);
  bool saw_vtp = false, saw_checkpoint = false;
  for (const GalvatronMemoryProfile::Entry& x : p->entries) {
    if (x.strategy == "4_2_1_vtp_sp" && x.rank == 7) {
      saw_vtp = true;
      EXPECT_EQ(x.pp, 4);
      EXPECT_EQ(x.tp, 2);
      EXPECT_EQ(x.dp, 1);
      EXPECT_TRUE(x.vocab_tp);
      EXPECT_EQ(x.layers, 4);
    }
    if (x.strategy == "1_1_8_c_sp" && x.layers == 2 && x.rank == 0) {
      saw_checkpoint = true;
      EXPECT_TRUE(x.checkpoint);
      EXPECT_DOUBLE_EQ(x.activation.ToMiB(), 378.0439453125);
    }
  }
  EXPECT_TRUE(saw_vtp);
  EXPECT_TRUE(saw_checkpoint);
}

TEST(GalvatronMemoryProfile, MalformedKeysNameTheStrategyAndTheEntry) {
  std::string path = WriteTemp("mem_bad_group.json", R"({"1_x_8_sp": {}})");
  std::string msg = ErrorOf(LoadGalvatronMemoryProfile(path));
  EXPECT_NE(msg.find("field '1_x_8_sp'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("<pp>_<tp>_<dp>[_c][_vtp][_sp]"), std::string::npos) << msg;

  path = WriteTemp("mem_bad_entry.json",
                   R"({"1_1_8_sp": {"layernum[1]_bsz8_seq2048_rank0_ms": 900,
                                     "layernum[1]_bsz8_seq2048_rank0_activation": 800}})");
  msg = ErrorOf(LoadGalvatronMemoryProfile(path));
  EXPECT_NE(msg.find("field '1_1_8_sp.layernum[1]_bsz8_seq2048_rank0_activation'"),
            std::string::npos)
      << msg;

  path = WriteTemp("mem_missing.json",
                   R"({"1_1_8": {"layernum[1]_bsz8_seq2048_rank0_ms": 900,
                                  "layernum[1]_bsz8_seq2048_rank0_act": 800}})");
  msg = ErrorOf(LoadGalvatronMemoryProfile(path));
  EXPECT_NE(msg.find("'1_1_8.layernum[1]_bsz8_seq2048_rank0_act_peak': missing"),
            std::string::npos)
      << msg;

  path = WriteTemp("mem_bad_value.json",
                   R"({"1_1_8": {"layernum[1]_bsz8_seq2048_rank0_ms": "900"}})");
  msg = ErrorOf(LoadGalvatronMemoryProfile(path));
  EXPECT_NE(msg.find("expected a positive number (MiB)"), std::string::npos) << msg;
}

}  // namespace
}  // namespace orrery::traces
