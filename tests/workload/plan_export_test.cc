#include "workload/plan_export.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/json.h"
#include "workload/model_presets.h"

namespace orrery::workload {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

ModelSpec Preset(const std::string& name) {
  Result<ModelSpec> m = ModelPreset(name);
  ORRERY_CHECK(m.ok()) << m.status().message();
  return *m;
}

std::vector<std::string> Args(const Plan& plan, const ModelSpec& model) {
  Result<std::vector<std::string>> args = MegatronArguments(plan, model);
  EXPECT_TRUE(args.ok()) << args.status().message();
  return args.ok() ? *args : std::vector<std::string>();
}

std::string MegatronRefusal(const Plan& plan, const ModelSpec& model) {
  Result<std::vector<std::string>> args = MegatronArguments(plan, model);
  EXPECT_FALSE(args.ok());
  return args.ok() ? std::string() : args.status().message();
}

// The hand-tuned Llama-3-70B layout on 64 H100: TP8, PP4 interleaved with
// 4 chunks per stage (80 / (4 × 4) = 5 layers each), sequence parallel,
// selective recomputation, distributed optimizer.
TEST(MegatronExport, WritesTheModelAndTheLayout) {
  const ModelSpec model = Preset("llama3-70b");
  Plan plan = Plan::Uniform(model, 4,
                            LayerStrategy{.tp = 8, .dp = 2, .zero_stage = 1,
                                          .sequence_parallel = true,
                                          .recompute = Recompute::kSelective},
                            512, 1);
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 4;
  EXPECT_THAT(Args(plan, model),
              ElementsAre("--num-layers 80", "--hidden-size 8192", "--ffn-hidden-size 28672",
                          "--num-attention-heads 64", "--group-query-attention",
                          "--num-query-groups 8", "--seq-length 8192",
                          "--max-position-embeddings 8192", "--swiglu",
                          "--normalization RMSNorm", "--position-embedding-type rope",
                          "--disable-bias-linear", "--untie-embeddings-and-output-weights",
                          "--tensor-model-parallel-size 8", "--pipeline-model-parallel-size 4",
                          "--sequence-parallel", "--num-layers-per-virtual-pipeline-stage 5",
                          "--micro-batch-size 1", "--global-batch-size 512",
                          "--recompute-granularity selective", "--use-distributed-optimizer",
                          "--bf16"));
}

TEST(MegatronExport, TextIsOneArgumentPerLineForAShellScript) {
  const ModelSpec model = Preset("gpt-1.7b");
  Plan plan = Plan::Uniform(model, 1, LayerStrategy{.tp = 2, .dp = 4}, 32, 4);
  Result<PlanExport> e = ExportPlan(plan, model, ExportFormat::kMegatron);
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_THAT(e->text, HasSubstr(" \\\n--tensor-model-parallel-size 2 \\\n"));
  EXPECT_EQ(e->text.back(), '\n');
  EXPECT_THAT(e->text, Not(HasSubstr("\\\n\n")));
  EXPECT_THAT(e->notes, Contains(HasSubstr("= 8 GPUs; Megatron-LM infers dp = 4")));
}

TEST(MegatronExport, UnevenStagesUseFirstAndLastStageLayers) {
  const ModelSpec model = Preset("llama3-70b");
  Plan plan = Plan::Uniform(model, 4, LayerStrategy{.tp = 8, .dp = 2}, 512, 1);
  plan.stage_layers = {18, 20, 20, 22};
  EXPECT_THAT(Args(plan, model), IsSupersetOf({"--decoder-first-pipeline-num-layers 18",
                                               "--decoder-last-pipeline-num-layers 22"}));
  plan.stage_layers = {20, 20, 20, 20};
  EXPECT_THAT(Args(plan, model), Not(Contains(HasSubstr("pipeline-num-layers"))));
  plan.stage_layers = {17, 21, 21, 21};
  EXPECT_THAT(Args(plan, model), Contains("--decoder-first-pipeline-num-layers 17"));
  EXPECT_THAT(Args(plan, model), Not(Contains(HasSubstr("--decoder-last"))));
  // Megatron-Core splits the middle stages evenly: 19 and 21 in the middle
  // cannot be said.
  plan.stage_layers = {20, 19, 21, 20};
  EXPECT_THAT(MegatronRefusal(plan, model),
              HasSubstr("pipeline.stage_layers[2]: 21 layers, but stage 1 has 19"));
}

TEST(MegatronExport, FullRecomputationIsUniformOrBlock) {
  const ModelSpec model = Preset("llama2-7b");
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 4, .dp = 1,
                                                    .recompute = Recompute::kFull}, 16, 1);
  EXPECT_THAT(Args(plan, model),
              IsSupersetOf({"--recompute-granularity full", "--recompute-method uniform",
                            "--recompute-num-layers 1"}));
  // The first 3 layers of each 16-layer stage: --recompute-method block.
  for (int i = 0; i < 32; ++i) {
    plan.layers[static_cast<size_t>(i)].recompute =
        i % 16 < 3 ? Recompute::kFull : Recompute::kNone;
  }
  EXPECT_THAT(Args(plan, model),
              IsSupersetOf({"--recompute-granularity full", "--recompute-method block",
                            "--recompute-num-layers 3"}));
  plan.layers[20].recompute = Recompute::kFull;
  EXPECT_THAT(MegatronRefusal(plan, model), HasSubstr("layers[3].recompute: none, but layers[0] "
                                                      "has full"));
}

TEST(MegatronExport, RefusesPerLayerStrategies) {
  const ModelSpec model = Preset("llama3-70b");
  Plan plan = Plan::Uniform(model, 4, LayerStrategy{.tp = 8, .dp = 2}, 512, 1);
  plan.layers[40].tp = 4;
  plan.layers[40].dp = 4;
  EXPECT_EQ(MegatronRefusal(plan, model),
            "cannot export to Megatron-LM: layers[40].tp: 4, but layers[0] has 8; Megatron-LM "
            "applies one strategy to every layer");
}

TEST(MegatronExport, ZeroStagesMapToTheDistributedOptimizerAndMegatronFsdp) {
  const ModelSpec model = Preset("llama2-7b");
  Plan plan = Plan::Uniform(model, 1, LayerStrategy{.dp = 8, .zero_stage = 2}, 16, 2);
  EXPECT_THAT(Args(plan, model),
              IsSupersetOf({"--use-megatron-fsdp", "--data-parallel-sharding-strategy optim_grads",
                            "--use-distributed-optimizer"}));
  plan.layers.assign(32, LayerStrategy{.dp = 8, .zero_stage = 3});
  EXPECT_THAT(Args(plan, model),
              Contains("--data-parallel-sharding-strategy optim_grads_params"));
  plan.layers.assign(32, LayerStrategy{.dp = 8});
  EXPECT_THAT(Args(plan, model), Not(Contains(HasSubstr("distributed-optimizer"))));
}

TEST(MegatronExport, RankOrderIsMegatronsOrTpPpDp) {
  const ModelSpec model = Preset("llama2-7b");
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 2, .dp = 4}, 16, 2);
  plan.rank_order = ParseRankOrder("tp-cp-ep-pp-dp").value();
  EXPECT_THAT(Args(plan, model), Contains("--use-tp-pp-dp-mapping"));
  // cp and ep have degree 1: their places do not matter.
  plan.rank_order = ParseRankOrder("cp-tp-dp-ep-pp").value();
  EXPECT_THAT(Args(plan, model), Not(Contains("--use-tp-pp-dp-mapping")));
  plan.rank_order = ParseRankOrder("dp-tp-cp-ep-pp").value();
  EXPECT_THAT(MegatronRefusal(plan, model), HasSubstr("rank_order: 'dp-tp-cp-ep-pp'"));
}

TEST(MegatronExport, MoeAndContextParallelArguments) {
  const ModelSpec model = Preset("mixtral-8x7b");
  Plan plan = Plan::Uniform(model, 4, LayerStrategy{.tp = 2, .cp = 2, .dp = 4, .ep = 4}, 256, 1);
  EXPECT_THAT(Args(plan, model),
              IsSupersetOf({"--num-experts 8", "--moe-router-topk 2",
                            "--context-parallel-size 2", "--expert-model-parallel-size 4"}));
}

TEST(DeepSpeedExport, WritesTheBatchZeroAndPrecision) {
  const ModelSpec model = Preset("llama2-7b");
  // 8 GPUs: tp 2 × dp 4; 64 = 4 micro-batches × micro 4 × dp 4.
  Plan plan = Plan::Uniform(model, 1, LayerStrategy{.tp = 2, .dp = 4, .zero_stage = 1}, 64, 4);
  Result<PlanExport> e = ExportPlan(plan, model, ExportFormat::kDeepSpeed);
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_EQ(e->text,
            "{\n"
            "  \"train_batch_size\": 64,\n"
            "  \"train_micro_batch_size_per_gpu\": 4,\n"
            "  \"gradient_accumulation_steps\": 4,\n"
            "  \"zero_optimization\": {\n"
            "    \"stage\": 1\n"
            "  },\n"
            "  \"bf16\": {\n"
            "    \"enabled\": true\n"
            "  }\n"
            "}\n");
  ASSERT_GE(e->notes.size(), 2u);
  EXPECT_EQ(e->notes[0],
            "Megatron-DeepSpeed arguments: --tensor-model-parallel-size 2 "
            "--pipeline-model-parallel-size 1 --no-pipeline-parallel --micro-batch-size 4 "
            "--global-batch-size 64 --seq-length 4096 --bf16 --zero-stage 1 --deepspeed "
            "--deepspeed_config ds_config.json");
  EXPECT_EQ(e->notes[1], "launch on 8 GPUs (dp = 4)");
}

TEST(DeepSpeedExport, RecomputationAddsActivationCheckpointing) {
  const ModelSpec model = Preset("llama2-7b");
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 2, .dp = 2,
                                                    .recompute = Recompute::kFull}, 64, 4);
  plan.precision = topology::Precision::kFp16;
  Result<PlanExport> e = ExportPlan(plan, model, ExportFormat::kDeepSpeed);
  ASSERT_TRUE(e.ok()) << e.status().message();
  const Json j = ParseJson(e->text, "export").value();
  EXPECT_EQ(j["fp16"]["enabled"], true);
  EXPECT_FALSE(j.contains("bf16"));
  EXPECT_EQ(j["activation_checkpointing"]["partition_activations"], false);
  EXPECT_EQ(j["gradient_accumulation_steps"], 8);
  EXPECT_THAT(e->notes[0], HasSubstr("--pipeline-model-parallel-size 2 --micro-batch-size 4"));
  EXPECT_THAT(e->notes[0], HasSubstr("--checkpoint-activations"));
}

TEST(DeepSpeedExport, RefusesZero2WithPipelineAndPerLayerStrategies) {
  const ModelSpec model = Preset("llama2-7b");
  Plan plan = Plan::Uniform(model, 2, LayerStrategy{.tp = 1, .dp = 4, .zero_stage = 2}, 64, 4);
  Result<PlanExport> e = ExportPlan(plan, model, ExportFormat::kDeepSpeed);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(),
              HasSubstr("zero_stage: 2 with pp = 2; DeepSpeed's pipeline engine accepts only "
                        "ZeRO-0 and ZeRO-1"));
  plan.layers.assign(32, LayerStrategy{.dp = 4});
  plan.layers[3].recompute = Recompute::kFull;
  e = ExportPlan(plan, model, ExportFormat::kDeepSpeed);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("layers[3].recompute: full, but layers[0] has none"));
}

TEST(ExportFormat, ParsesTheThreeNames) {
  EXPECT_EQ(ParseExportFormat("megatron").value(), ExportFormat::kMegatron);
  EXPECT_EQ(ParseExportFormat("deepspeed").value(), ExportFormat::kDeepSpeed);
  EXPECT_EQ(ParseExportFormat("galvatron").value(), ExportFormat::kGalvatron);
  EXPECT_EQ(ParseExportFormat("nemo").status().message(),
            "expected 'megatron', 'deepspeed' or 'galvatron', got 'nemo'");
}

}  // namespace
}  // namespace orrery::workload
