// workload/phases.h: the phases file's fields, its errors (naming the file,
// the phase and the field), plans by path or inline, the round trip, and
// RetargetPlan.
#include "workload/phases.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/json.h"
#include "workload/model_presets.h"
#include "workload/plan_json.h"

namespace orrery::workload {
namespace {

using ::testing::HasSubstr;

Result<PhaseSchedule> PhasesOf(const std::string& text, const std::string& base_dir = "") {
  Result<Json> json = ParseJson(text, "phases.json");
  if (!json.ok()) return json.status();
  return ParsePhases(*json, "phases.json", base_dir);
}

TEST(ParseTokenCount, ReadsSuffixes) {
  EXPECT_EQ(*ParseTokenCount("800B"), 800e9);
  EXPECT_EQ(*ParseTokenCount("15.6T"), 15.6e12);
  EXPECT_EQ(*ParseTokenCount("4k"), 4e3);
  EXPECT_FALSE(ParseTokenCount("0").ok());
  EXPECT_FALSE(ParseTokenCount("T").ok());
  EXPECT_FALSE(ParseTokenCount("12X").ok());
}

TEST(ParsePhases, ReadsEveryFieldAndCountsSteps) {
  Result<PhaseSchedule> s = PhasesOf(R"({
    "phases": [
      {"name": "8k", "tokens": "15T", "seq_len": 8192, "global_batch": 2048},
      {"name": "128k", "tokens": 1e9, "seq_len": 131072, "global_batch": 64,
       "cluster": "dgx-h100", "nodes": 4},
      {"name": "tail", "steps": 7, "seq_len": 4096, "global_batch": 16}
    ],
    "checkpoint": {"write_gb_per_s": 500}
  })");
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s->phases.size(), 3u);
  const TrainingPhase& a = s->phases[0];
  EXPECT_EQ(a.name, "8k");
  EXPECT_EQ(*a.tokens, 15e12);
  EXPECT_EQ(a.TokensPerStep(), 2048 * 8192);
  // ceil(15e12 / 16,777,216) = 894,070 steps (894,069.7...).
  EXPECT_EQ(a.Steps(), 894070);
  EXPECT_EQ(s->phases[1].cluster, "dgx-h100");
  EXPECT_EQ(*s->phases[1].nodes, 4);
  // 1e9 / (64 × 131072) = 119.2... → 120.
  EXPECT_EQ(s->phases[1].Steps(), 120);
  EXPECT_EQ(s->phases[2].Steps(), 7);
  EXPECT_EQ(s->phases[2].Tokens(), 7.0 * 16 * 4096);
  ASSERT_TRUE(s->checkpoint.has_value());
  EXPECT_EQ(s->checkpoint->write_gb_per_s, 500);
  EXPECT_EQ(s->checkpoint->read_gb_per_s, 500);  // defaults to write
}

TEST(ParsePhases, ErrorsNameTheFileThePhaseAndTheField) {
  struct Case {
    std::string text;
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"phases": []})", "'phases'"},
           {R"({"phases": [{"name": "a", "seq_len": 8, "global_batch": 2}]})", "tokens"},
           {R"({"phases": [{"name": "a", "steps": 3, "tokens": 9, "seq_len": 8,
                "global_batch": 2}]})", "exactly one"},
           {R"({"phases": [{"name": "a", "steps": 0, "seq_len": 8, "global_batch": 2}]})",
            "phases[0].steps"},
           {R"({"phases": [{"name": "a", "tokens": "9Q", "seq_len": 8, "global_batch": 2}]})",
            "phases[0].tokens"},
           {R"({"phases": [{"name": "a", "steps": 3, "global_batch": 2}]})", "phases[0].seq_len"},
           {R"({"phases": [{"name": "a", "steps": 3, "seq_len": 8, "global_batch": 2},
                           {"name": "a", "steps": 3, "seq_len": 8, "global_batch": 2}]})",
            "phases[1].name"},
           {R"({"phases": [{"name": "a", "steps": 3, "seq_len": 8, "global_batch": 2,
                "batch": 4}]})", "batch"},
           {R"({"phases": [{"name": "a", "steps": 3, "seq_len": 8, "global_batch": 2,
                "plan": 5}]})", "phases[0].plan"},
           {R"({"phases": [{"name": "a", "steps": 3, "seq_len": 8, "global_batch": 2}],
                "checkpoint": {"write_gb_per_s": -1}})", "checkpoint.write_gb_per_s"},
       }) {
    Result<PhaseSchedule> s = PhasesOf(c.text);
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_THAT(s.status().message(), HasSubstr("phases.json")) << s.status().message();
    EXPECT_THAT(s.status().message(), HasSubstr(c.field)) << s.status().message();
  }
}

Plan TinyPlan(int batch, int seq) {
  const ModelSpec model = *ModelPreset("gpt-tiny");
  Plan plan = Plan::Uniform(model, 1, LayerStrategy{.tp = 2}, batch, 2);
  plan.sequence_length = seq;
  return plan;
}

TEST(ParsePhases, ReadsPlansByPathAndInlineAndChecksTheirShape) {
  const std::string dir = ::testing::TempDir() + "/phases_test_plans";
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/tp2.json");
    f << DumpJson(PlanToJson(TinyPlan(8, 32)));
  }
  const std::string inline_plan = PlanToJson(TinyPlan(16, 32)).dump();
  Result<PhaseSchedule> s = PhasesOf(
      R"({"phases": [{"name": "a", "steps": 3, "seq_len": 32, "global_batch": 8, "plan": "tp2.json"},
                     {"name": "b", "steps": 3, "seq_len": 32, "global_batch": 16, "plan": )" +
          inline_plan + "}]}",
      dir);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(*s->phases[0].plan, TinyPlan(8, 32));
  EXPECT_EQ(*s->phases[1].plan, TinyPlan(16, 32));

  // A plan of another batch than its phase's.
  Result<PhaseSchedule> bad = PhasesOf(
      R"({"phases": [{"name": "a", "steps": 3, "seq_len": 32, "global_batch": 4, "plan": "tp2.json"}]})",
      dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("phases[0].plan"));
  EXPECT_THAT(bad.status().message(), HasSubstr("global batch 8"));
  // A missing plan file names it.
  bad = PhasesOf(
      R"({"phases": [{"name": "a", "steps": 3, "seq_len": 32, "global_batch": 8, "plan": "none.json"}]})",
      dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("none.json"));
}

TEST(PhasesToJson, RoundTrips) {
  PhaseSchedule s;
  s.source = "x";
  TrainingPhase a;
  a.name = "ramp";
  a.tokens = 3e9;
  a.sequence_length = 32;
  a.global_batch_size = 8;
  a.plan = TinyPlan(8, 32);
  TrainingPhase b;
  b.name = "main";
  b.steps = 11;
  b.sequence_length = 32;
  b.global_batch_size = 16;
  b.cluster = "dgx-h100";
  b.nodes = 2;
  s.phases = {a, b};
  s.checkpoint = CheckpointBandwidth{100, 250};
  Result<PhaseSchedule> back = ParsePhases(*ParseJson(PhasesToJson(s).dump(), "x"), "x", "");
  ASSERT_TRUE(back.ok()) << back.status().message();
  ASSERT_EQ(back->phases.size(), 2u);
  EXPECT_EQ(*back->phases[0].tokens, 3e9);
  EXPECT_EQ(*back->phases[0].plan, *a.plan);
  EXPECT_EQ(*back->phases[1].steps, 11);
  EXPECT_EQ(back->phases[1].cluster, "dgx-h100");
  EXPECT_EQ(*back->phases[1].nodes, 2);
  EXPECT_EQ(back->checkpoint->read_gb_per_s, 250);
}

TEST(RetargetPlan, KeepsTheMicroBatchWhenItStillDividesElseShrinksIt) {
  Plan plan = TinyPlan(16, 32);  // tp 2, dp 1, micro 2
  plan.layers[0].dp = 1;
  Plan same = RetargetPlan(plan, 64, 128);
  EXPECT_EQ(same.global_batch_size, 64);
  EXPECT_EQ(same.sequence_length, 128);
  EXPECT_EQ(same.micro_batch_size, 2);

  Plan dp4 = plan;
  for (LayerStrategy& l : dp4.layers) l.dp = 4;
  dp4.micro_batch_size = 4;
  // 24 / 4 replicas = 6 per replica: micro 4 no longer divides, 3 does.
  EXPECT_EQ(RetargetPlan(dp4, 24, 32).micro_batch_size, 3);
  // 4 / 4 = 1 per replica.
  EXPECT_EQ(RetargetPlan(dp4, 4, 32).micro_batch_size, 1);
}

}  // namespace
}  // namespace orrery::workload
