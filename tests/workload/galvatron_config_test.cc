#include "workload/galvatron_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/json.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan_json.h"

namespace orrery::workload {
namespace {

using ::testing::HasSubstr;

// Galvatron's own search output for Llama-2-7B on one node of 8 GPUs
// (PKU-DAIR/Hetu-Galvatron galvatron/models/gpt/configs; .source.txt beside it).
const char kFixture[] =
    "/galvatron/main_gpt_llama2-7b/galvatron_config_llama2-7b_1nodes_8gpus_per_node_36GB_bf16.json";

Json Fixture() {
  Result<Json> json = ReadJsonFile(std::string(ORRERY_FIXTURES_DIR) + kFixture);
  ORRERY_CHECK(json.ok()) << json.status().message();
  return *json;
}

ModelSpec Llama2_7b() {
  Result<ModelSpec> m = ModelPreset("llama2-7b");
  ORRERY_CHECK(m.ok()) << m.status().message();
  return *m;
}

topology::ClusterSpec OneA100Node() {
  Result<topology::ClusterSpec> c = topology::ResolveCluster("dgx-a100-80gb", 1);
  ORRERY_CHECK(c.ok()) << c.status().message();
  return *c;
}

// A 32-entry list with `value` everywhere.
std::string Repeat(const std::string& value, int n = 32) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i > 0 ? "," : "") + value;
  return s;
}

// A minimal config for 32 layers on 8 GPUs: pure data parallelism.
Json DataParallelConfig() {
  Json c = Json::object();
  c["pp_deg"] = 1;
  c["tp_sizes_enc"] = Repeat("1");
  c["tp_consecutive_flags"] = Repeat("1");
  c["dp_types_enc"] = Repeat("0");
  c["global_bsz"] = 16;
  c["chunks"] = 2;
  return c;
}

Status ImportError(const Json& config) {
  Result<Plan> plan = PlanFromGalvatronConfig(config, "cfg.json", Llama2_7b(), OneA100Node());
  EXPECT_FALSE(plan.ok());
  return plan.ok() ? Status::Ok() : plan.status();
}

TEST(GalvatronConfig, FixtureImportsIntoAValidPlanForLlama2_7b) {
  const ModelSpec model = Llama2_7b();
  const topology::ClusterSpec cluster = OneA100Node();
  Result<Plan> plan = PlanFromGalvatronConfig(Fixture(), "fixture", model, cluster);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_TRUE(ValidatePlan(*plan, model, cluster).ok())
      << ValidatePlan(*plan, model, cluster).message();

  EXPECT_EQ(plan->pp, 1);
  EXPECT_TRUE(plan->stage_layers.empty());  // pp_division "32" is the even split
  EXPECT_EQ(plan->schedule, PipelineSchedule::kOneFOneB);  // pipedream_flush
  EXPECT_EQ(plan->rank_order, DefaultRankOrder());
  // global_bsz 16 in chunks = 1 micro-batch over dp = 8 / (1 · 1) = 8: 2 each.
  EXPECT_EQ(plan->global_batch_size, 16);
  EXPECT_EQ(plan->micro_batch_size, 2);
  EXPECT_EQ(plan->NumMicroBatches(), 1);
  EXPECT_EQ(plan->sequence_length, model.default_sequence_length);
  ASSERT_EQ(plan->num_layers(), 32);
  for (int i = 0; i < 32; ++i) {
    const LayerStrategy& l = plan->layers[static_cast<size_t>(i)];
    EXPECT_EQ(l.tp, 1);
    EXPECT_EQ(l.cp, 1);
    EXPECT_EQ(l.dp, 8);
    EXPECT_EQ(l.zero_stage, 3) << "dp_types_enc 1 is 'sdp', FSDP FULL_SHARD";
    // checkpoint: 1 for layers 0-19, 0 for 20-31.
    EXPECT_EQ(l.recompute, i < 20 ? Recompute::kFull : Recompute::kNone) << "layer " << i;
  }
}

TEST(GalvatronConfig, FixtureRoundTripsThroughExport) {
  const ModelSpec model = Llama2_7b();
  const topology::ClusterSpec cluster = OneA100Node();
  Result<Plan> plan = PlanFromGalvatronConfig(Fixture(), "fixture", model, cluster);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  Result<GalvatronExport> exported = GalvatronConfigFromPlan(*plan);
  ASSERT_TRUE(exported.ok()) << exported.status().message();
  const Json& c = exported->config;
  const Json fixture = Fixture();
  for (const char* key : {"pp_deg", "tp_sizes_enc", "tp_consecutive_flags", "dp_types_enc",
                          "use_sp", "checkpoint", "global_bsz", "chunks", "pp_division",
                          "pipeline_type"}) {
    EXPECT_EQ(c[key], fixture[key]) << key;
  }
  Result<Plan> again = PlanFromGalvatronConfig(c, "exported", model, cluster);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(*again, *plan);
}

TEST(GalvatronConfig, LayerwisePlanRoundTrips) {
  const ModelSpec model = Llama2_7b();
  const topology::ClusterSpec cluster = OneA100Node();
  // pp 2 on 8 GPUs: 4 devices per stage. Layers 0-9 tp 2 × dp 2 in ZeRO-3
  // with full recomputation; 10-19 tp 4; 20-31 Ulysses-style cp 2 × dp 2.
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 1, .dp = 4, .zero_stage = 2}, 64, 2);
  plan.stage_layers = {14, 18};
  plan.sequence_length = 2048;
  plan.precision = topology::Precision::kFp16;
  for (int i = 0; i < 32; ++i) {
    LayerStrategy& l = plan.layers[static_cast<size_t>(i)];
    if (i < 10) l = {.tp = 2, .dp = 2, .zero_stage = 3, .recompute = Recompute::kFull};
    else if (i < 20) l = {.tp = 4, .dp = 1, .zero_stage = 2};
    else l = {.cp = 2, .dp = 2, .zero_stage = 2};
  }
  ASSERT_TRUE(ValidatePlan(plan, model, cluster).ok())
      << ValidatePlan(plan, model, cluster).message();

  Result<GalvatronExport> exported = GalvatronConfigFromPlan(plan);
  ASSERT_TRUE(exported.ok()) << exported.status().message();
  const Json& c = exported->config;
  EXPECT_EQ(c["pp_deg"], 2);
  EXPECT_EQ(c["pp_division"], "14,18");
  EXPECT_EQ(c["default_dp_type"], "zero2");
  EXPECT_EQ(c["pipeline_type"], "pipedream_flush");
  EXPECT_EQ(c["global_bsz"], 64);
  EXPECT_EQ(c["chunks"], 16);  // 64 / (micro 2 × max dp 2)
  EXPECT_EQ(c["tp_sizes_enc"],
            "2,2,2,2,2,2,2,2,2,2,4,4,4,4,4,4,4,4,4,4,2,2,2,2,2,2,2,2,2,2,2,2");
  EXPECT_EQ(c["use_sp"], "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1,1,1,1");
  EXPECT_EQ(c["dp_types_enc"], "1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0");
  EXPECT_EQ(c["checkpoint"], "1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0");

  GalvatronImportOptions options;
  options.sequence_length = 2048;
  options.precision = topology::Precision::kFp16;
  Result<Plan> again = PlanFromGalvatronConfig(c, "exported", model, cluster, options);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(*again, plan);
}

TEST(GalvatronConfig, UseSpIsUlyssesAndImportsAsContextParallel) {
  Json c = DataParallelConfig();
  c["tp_sizes_enc"] = Repeat("4");
  c["use_sp"] = Repeat("1");
  Result<Plan> plan = PlanFromGalvatronConfig(c, "cfg.json", Llama2_7b(), OneA100Node());
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->layers[0], (LayerStrategy{.tp = 1, .cp = 4, .dp = 2}));
  // Absent pipeline_type is Galvatron's default, gpipe; 16 / (2 chunks × dp 2).
  EXPECT_EQ(plan->schedule, PipelineSchedule::kGpipe);
  EXPECT_EQ(plan->micro_batch_size, 4);
}

TEST(GalvatronConfig, NonConsecutiveTpStridesTpRanksByDp) {
  Json c = DataParallelConfig();
  c["tp_sizes_enc"] = Repeat("2");
  c["tp_consecutive_flags"] = Repeat("0");
  Result<Plan> plan = PlanFromGalvatronConfig(c, "cfg.json", Llama2_7b(), OneA100Node());
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(RankOrderName(plan->rank_order), "dp-tp-cp-ep-pp");
  // Galvatron gen_tp_group_dist(consecutive=False): range(j, 8, dp = 4).
  EXPECT_EQ(RankGroups(*plan, 0, ParallelDim::kTp)[0], (std::vector<int>{0, 4}));
  EXPECT_EQ(RankGroups(*plan, 0, ParallelDim::kDp)[0], (std::vector<int>{0, 1, 2, 3}));
}

TEST(GalvatronConfig, MissingPpDivisionUsesGalvatronsSplit) {
  Json c = DataParallelConfig();
  c["pp_deg"] = 3;
  c["tp_sizes_enc"] = Repeat("1");
  const topology::ClusterSpec cluster = topology::ResolveCluster("dgx-a100-80gb", 3).value();
  Result<Plan> plan = PlanFromGalvatronConfig(c, "cfg.json", Llama2_7b(), cluster);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  // 32 / 3 = 10 per stage, the last takes the rest (Orrery's even split
  // would give 11, 11, 10).
  EXPECT_EQ(plan->stage_layers, (std::vector<int>{10, 10, 12}));
}

TEST(GalvatronConfig, DefaultDpTypeSetsTheZeroStageOfDpType0Layers) {
  for (const auto& [name, zero] : std::vector<std::pair<std::string, int>>{
           {"ddp", 0}, {"zero2", 2}, {"zero3", 3}}) {
    Json c = DataParallelConfig();
    c["default_dp_type"] = name;
    Result<Plan> plan = PlanFromGalvatronConfig(c, "cfg.json", Llama2_7b(), OneA100Node());
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    EXPECT_EQ(plan->layers[0].zero_stage, zero) << name;
  }
}

TEST(GalvatronConfig, ErrorsNameTheFileFieldAndLayer) {
  Json c = DataParallelConfig();
  c["tp_sizes_enc"] = Repeat("1", 31);
  EXPECT_EQ(ImportError(c).message(),
            "cfg.json: field 'tp_sizes_enc': expected one entry per layer (32), got 31");

  c = DataParallelConfig();
  c["dp_types_enc"] = Repeat("0", 5) + ",2," + Repeat("0", 26);
  EXPECT_EQ(ImportError(c).message(),
            "cfg.json: field 'dp_types_enc': layer 5: expected 0 or 1, got 2");

  c = DataParallelConfig();
  c["tp_sizes_enc"] = "3," + Repeat("1", 31);
  EXPECT_THAT(ImportError(c).message(),
              HasSubstr("field 'tp_sizes_enc': layer 0: 3 does not divide the 8 devices"));

  c = DataParallelConfig();
  c["tp_sizes_enc"] = Repeat("2");
  c["tp_consecutive_flags"] = "1,0," + Repeat("1", 30);
  EXPECT_THAT(ImportError(c).message(),
              HasSubstr("layer 1 has 0 but layer 0 has 1; an Orrery plan has one rank order"));

  c = DataParallelConfig();
  c["global_bsz"] = 12;
  EXPECT_THAT(ImportError(c).message(),
              HasSubstr("field 'global_bsz': 12 is not divisible by chunks × dp = 2 × 8"));

  c = DataParallelConfig();
  c["pp_division"] = "30";
  EXPECT_THAT(ImportError(c).message(),
              HasSubstr("field 'pp_division': expected 1 stage sizes summing to 32"));

  c = DataParallelConfig();
  c["tp_sizes_enc"] = "1,x," + Repeat("1", 30);
  EXPECT_THAT(ImportError(c).message(),
              HasSubstr("field 'tp_sizes_enc': entry 1: expected a non-negative integer"));

  c = DataParallelConfig();
  c["chekpoint"] = Repeat("0");
  EXPECT_THAT(ImportError(c).message(), HasSubstr("chekpoint"));
}

TEST(GalvatronConfig, TellsGalvatronConfigsFromPlanFiles) {
  EXPECT_TRUE(IsGalvatronConfig(Fixture()));
  const Plan plan = Plan::Uniform(Llama2_7b(), 1, LayerStrategy{.dp = 8}, 16, 2);
  EXPECT_FALSE(IsGalvatronConfig(PlanToJson(plan)));
}

TEST(GalvatronConfig, ExportRefusesWhatGalvatronCannotExpress) {
  const ModelSpec model = Llama2_7b();
  auto refusal = [&](const Plan& plan) {
    Result<GalvatronExport> e = GalvatronConfigFromPlan(plan);
    EXPECT_FALSE(e.ok());
    return e.ok() ? std::string() : e.status().message();
  };
  Plan interleaved = Plan::Uniform(model, 2, LayerStrategy{.dp = 4}, 64, 1);
  interleaved.schedule = PipelineSchedule::kInterleaved;
  interleaved.vpp = 2;
  EXPECT_THAT(refusal(interleaved), HasSubstr("pipeline.schedule"));

  EXPECT_THAT(refusal(Plan::Uniform(model, 1, LayerStrategy{.dp = 8, .zero_stage = 1}, 16, 2)),
              HasSubstr("layers[0].zero_stage: 1"));
  EXPECT_THAT(refusal(Plan::Uniform(model, 1,
                                    LayerStrategy{.tp = 2, .dp = 4,
                                                  .recompute = Recompute::kSelective},
                                    16, 2)),
              HasSubstr("layers[0].recompute: selective"));
  EXPECT_THAT(refusal(Plan::Uniform(model, 1, LayerStrategy{.tp = 2, .cp = 2, .dp = 2}, 16, 2)),
              HasSubstr("not both"));

  Plan mixed = Plan::Uniform(model, 1, LayerStrategy{.dp = 8}, 16, 2);
  mixed.layers[7].zero_stage = 2;
  EXPECT_THAT(refusal(mixed),
              HasSubstr("layers[7].zero_stage: 2 but layers[6] has 0; Galvatron has one "
                        "default_dp_type"));
}

TEST(GalvatronConfig, ExportNotesTheRuntimeArguments) {
  Plan plan = Plan::Uniform(Llama2_7b(), 1, LayerStrategy{.tp = 2, .dp = 4,
                                                          .sequence_parallel = true}, 16, 2);
  Result<GalvatronExport> e = GalvatronConfigFromPlan(plan);
  ASSERT_TRUE(e.ok()) << e.status().message();
  ASSERT_EQ(e->notes.size(), 2u);
  EXPECT_EQ(e->notes[0], "run Galvatron with --mixed_precision bf16 --seq_length 4096 (neither "
                         "is in the config)");
  EXPECT_THAT(e->notes[1], HasSubstr("--sequence_parallel"));
}

}  // namespace
}  // namespace orrery::workload
