// search/phases.h: the schedule's shortest path on synthetic costs (keep
// when a switch costs more than it gains, switch otherwise, infeasible
// phases, deterministic ties, only the switches the answer needs priced),
// then PlanPhases end to end on small models and clusters (a sequence
// length change, a batch ramp-up, a phase with more nodes, other machines,
// the best single plan searched for the whole schedule) and the planned
// schedule's round trip through the phases file.
#include "search/phases.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/units.h"
#include "search/space.h"
#include "topology/cluster_spec.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/phases.h"
#include "workload/plan.h"

namespace orrery::search {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::function<double(int, int, int)> Constant(double seconds) {
  return [seconds](int, int, int) { return seconds; };
}

TEST(ChooseSchedule, KeepsThePlanWhenTheSwitchCostsMoreThanItGains) {
  // Candidate 1 is 5 s faster in phase 1; a switch costs 10 s.
  const std::vector<std::vector<double>> seconds = {{100, 110}, {100, 95}};
  Result<std::vector<int>> chosen = ChooseSchedule(seconds, Constant(10));
  ASSERT_TRUE(chosen.ok()) << chosen.status().message();
  EXPECT_THAT(*chosen, ElementsAre(0, 0));
}

TEST(ChooseSchedule, SwitchesWhenTheSwitchCostsLessThanItGains) {
  const std::vector<std::vector<double>> seconds = {{100, 110}, {100, 95}};
  Result<std::vector<int>> chosen = ChooseSchedule(seconds, Constant(2));
  ASSERT_TRUE(chosen.ok()) << chosen.status().message();
  EXPECT_THAT(*chosen, ElementsAre(0, 1));
}

TEST(ChooseSchedule, StartsOnAPlanThatIsNotTheFirstPhasesBestWhenThatPays) {
  // Candidate 1 is 1 s slower in phase 0 and 50 s faster in phases 1 and 2;
  // switching costs 100 s: starting on 1 beats switching to it.
  const std::vector<std::vector<double>> seconds = {{10, 11}, {100, 50}, {100, 50}};
  Result<std::vector<int>> chosen = ChooseSchedule(seconds, Constant(100));
  ASSERT_TRUE(chosen.ok());
  EXPECT_THAT(*chosen, ElementsAre(1, 1, 1));
}

TEST(ChooseSchedule, APhaseWithNoRunnablePlanIsNamed) {
  Result<std::vector<int>> chosen = ChooseSchedule({{1, 2}, {kInf, kInf}}, Constant(1));
  ASSERT_FALSE(chosen.ok());
  EXPECT_EQ(chosen.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(chosen.status().message(), HasSubstr("phase 1"));
}

TEST(ChooseSchedule, AnInfeasibleSwitchIsAvoidedOrReported) {
  // Only candidate 1 runs in phase 1; the switch 0 -> 1 cannot be made.
  Result<std::vector<int>> none = ChooseSchedule({{1, kInf}, {kInf, 1}}, Constant(kInf));
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("phase 1"));
  // A switch that cannot be made is routed around.
  const auto only_from_1 = [](int, int from, int) { return from == 1 ? 0.0 : kInf; };
  Result<std::vector<int>> around = ChooseSchedule({{1, 5, 2}, {9, kInf, 1}}, only_from_1);
  ASSERT_TRUE(around.ok());
  // 0 then 0 costs 10; 1 then 2 costs 5 + 0 + 1 = 6; 2 -> 2 costs 3.
  EXPECT_THAT(*around, ElementsAre(2, 2));
}

TEST(ChooseSchedule, TiesGoToKeepingThenToTheLowerIndex) {
  // Equal everywhere: the first candidate, never a switch.
  Result<std::vector<int>> equal = ChooseSchedule({{10, 10}, {10, 10}}, Constant(0));
  ASSERT_TRUE(equal.ok());
  EXPECT_THAT(*equal, ElementsAre(0, 0));
  // Keeping 0 (10 + 12) ties with switching to 1 (10 + 2 + 10): keep.
  Result<std::vector<int>> keep = ChooseSchedule({{10, 12}, {12, 10}}, Constant(2));
  ASSERT_TRUE(keep.ok());
  EXPECT_THAT(*keep, ElementsAre(0, 0));
  // The same answer every time.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(*ChooseSchedule({{10, 12}, {12, 10}}, Constant(2)), *keep);
  }
}

TEST(ChooseSchedule, PricesOnlyTheSwitchesThatCanChangeTheAnswer) {
  std::set<std::tuple<int, int, int>> asked;
  const auto counting = [&](int p, int a, int b) {
    asked.insert({p, a, b});
    return 5.0;
  };
  // Candidate 0 is far ahead after phase 0: no switch out of 1 or 2 can
  // beat a path through it.
  Result<std::vector<int>> chosen =
      ChooseSchedule({{1, 1000, 2000}, {5, 5, 5}, {5, 5, 5}}, counting);
  ASSERT_TRUE(chosen.ok());
  EXPECT_THAT(*chosen, ElementsAre(0, 0, 0));
  for (const auto& [p, a, b] : asked) {
    EXPECT_NE(a, b);
    EXPECT_EQ(a, 0) << "a switch out of a candidate far behind was priced";
  }
  EXPECT_LE(asked.size(), 4u);  // 0 -> 1 and 0 -> 2 in phases 1 and 2
}

TEST(ChooseSchedule, KeepingIsPricedWhereTheMachinesChange) {
  // Keeping costs 50 s in phase 1 (the state moves through a checkpoint);
  // a switch 5 s.
  const auto cost = [](int, int a, int b) { return a == b ? 50.0 : 5.0; };
  Result<std::vector<int>> chosen = ChooseSchedule({{10, 20}, {10, 20}}, cost, {false, true});
  ASSERT_TRUE(chosen.ok());
  // 1 then 0: 20 + 5 + 10 = 35 ties 0 then 1: 10 + 5 + 20 = 35; the lower
  // last candidate wins. Keeping either costs 70.
  EXPECT_THAT(*chosen, ElementsAre(1, 0));
  Result<std::vector<int>> free_keep = ChooseSchedule({{10, 20}, {10, 20}}, cost);
  ASSERT_TRUE(free_keep.ok());
  EXPECT_THAT(*free_keep, ElementsAre(0, 0));
}

// ---- PlanPhases end to end ----

workload::TrainingPhase Phase(std::string name, double tokens, int seq, int batch) {
  workload::TrainingPhase p;
  p.name = std::move(name);
  p.tokens = tokens;
  p.sequence_length = seq;
  p.global_batch_size = batch;
  return p;
}

PhasePlanningRequest RequestOf(const std::string& model, const std::string& cluster, int nodes,
                               std::vector<workload::TrainingPhase> phases) {
  PhasePlanningRequest r;
  r.model = *workload::ModelPreset(model);
  r.cluster = *topology::ResolveCluster(cluster, nodes);
  r.schedule.source = "phases.json";
  r.schedule.phases = std::move(phases);
  r.algorithm = "exhaustive";
  r.base.top_k = 3;
  r.base.rescore_with_simulator = false;
  // A smaller space: the tests check the planning, not the search.
  r.base.micro_batch_sizes = {1, 2};
  return r;
}

int DevicesOf(const workload::Plan& plan) {
  const workload::LayerStrategy& l = plan.layers.front();
  return plan.pp * l.tp * l.cp * l.dp;
}

// What every answer satisfies.
void ExpectConsistent(const PhasePlanningRequest& request, const PhasePlan& plan) {
  ASSERT_EQ(plan.phases.size(), request.schedule.phases.size());
  double sum = 0;
  double switches = 0;
  int count = 0;
  for (size_t p = 0; p < plan.phases.size(); ++p) {
    const PlannedPhase& phase = plan.phases[p];
    const PhaseScore& score = plan.scores[static_cast<size_t>(phase.chosen)][p];
    EXPECT_TRUE(score.runs) << phase.name << ": " << score.why_not;
    EXPECT_EQ(phase.seconds, score.phase_seconds);
    EXPECT_DOUBLE_EQ(phase.seconds,
                     static_cast<double>(phase.steps) * phase.iteration_time.ToSeconds());
    // The phase's own best is no slower than the chosen plan.
    EXPECT_LE(plan.scores[static_cast<size_t>(phase.best)][p].phase_seconds, phase.seconds);
    EXPECT_EQ(phase.chosen != phase.best, !phase.note.empty()) << phase.name;
    sum += phase.seconds;
    if (phase.switch_in.has_value()) {
      switches += phase.switch_in->time().ToSeconds();
      ++count;
      ASSERT_TRUE(phase.traffic_in.has_value());
    }
  }
  EXPECT_EQ(plan.switches, count);
  EXPECT_DOUBLE_EQ(plan.switch_seconds, switches);
  EXPECT_DOUBLE_EQ(plan.total_seconds, sum + switches);
  if (plan.best_single.has_value()) {
    // The schedule may keep one plan throughout: it is never worse.
    EXPECT_LE(plan.total_seconds, *plan.best_single_seconds * (1 + 1e-12));
  }
}

TEST(PlanPhases, ALongerSequenceGetsItsOwnPlan) {
  // Llama 3 8B on 2 DGX H100 nodes: 8K tokens per sample, then 64K at an
  // eighth of the batch (as Llama 3's long-context phase, scaled down).
  PhasePlanningRequest request =
      RequestOf("llama3-8b", "dgx-h100", 2,
                {Phase("8k", 20e9, 8192, 64), Phase("64k", 5e9, 65536, 8)});
  request.schedule.checkpoint = workload::CheckpointBandwidth{100, 200};
  std::vector<std::string> notes;
  Result<PhasePlan> plan =
      PlanPhases(request, [&](double, std::string_view note) {
        if (!note.empty()) notes.emplace_back(note);
      });
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ExpectConsistent(request, *plan);
  EXPECT_FALSE(notes.empty());
  const PlannedPhase& second = plan->phases[1];
  // 5e9 / (8 × 65536) steps.
  EXPECT_EQ(second.steps, static_cast<int64_t>(std::ceil(5e9 / (8.0 * 65536))));
  // The 8K phase's best plan (dp 16) does not run at 64K, where the batch
  // is 8: the schedule switches to a context-parallel plan.
  EXPECT_NE(plan->phases[0].chosen, second.chosen);
  EXPECT_FALSE(plan->scores[static_cast<size_t>(plan->phases[0].chosen)][1].runs);
  EXPECT_GT(plan->candidates[static_cast<size_t>(second.chosen)].layers.front().cp, 1);
  ASSERT_TRUE(second.switch_in.has_value());
  // The state: bf16 parameters and 12 bytes of fp32 Adam state each.
  EXPECT_EQ(second.traffic_in->old_state_bytes, request.model.ParameterCount() * 14);
  EXPECT_TRUE(second.switch_in->checkpoint.has_value());
  // A context-parallel plan runs in both phases, but slower at 8K: the
  // switch pays.
  ASSERT_TRUE(plan->best_single.has_value());
  EXPECT_LT(plan->total_seconds, *plan->best_single_seconds);
  for (size_t c = 0; c < plan->candidates.size(); ++c) {
    EXPECT_EQ(DevicesOf(plan->candidates[c]), 16);
  }
}

TEST(PlanPhases, ABatchRampUpIsPlannedPhaseByPhase) {
  // GPT 1.7B on one DGX A100: 8, then 64, then 256 sequences of 2048.
  PhasePlanningRequest request = RequestOf(
      "gpt-1.7b", "dgx-a100-80gb", 1,
      {Phase("b8", 1e9, 2048, 8), Phase("b32", 5e9, 2048, 32), Phase("b64", 20e9, 2048, 64)});
  Result<PhasePlan> plan = PlanPhases(request);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ExpectConsistent(request, *plan);
  ASSERT_TRUE(plan->best_single.has_value());
  // Every candidate was scored on every phase.
  for (const std::vector<PhaseScore>& row : plan->scores) EXPECT_EQ(row.size(), 3u);
  // Steps: ceil(tokens / (batch × 2048)).
  EXPECT_EQ(plan->phases[0].steps, static_cast<int64_t>(std::ceil(1e9 / (8.0 * 2048))));
  EXPECT_EQ(plan->phases[2].steps, static_cast<int64_t>(std::ceil(20e9 / (64.0 * 2048))));
  // The text and JSON reports carry every phase and the comparison.
  const std::string text = PhasePlanToText(request, *plan);
  for (const char* s : {"b8", "b32", "b64", "total", "one plan"}) {
    EXPECT_THAT(text, HasSubstr(s));
  }
  const Json j = PhasePlanToJson(request, *plan);
  ASSERT_EQ(j["phases"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["total_seconds"].get<double>(), plan->total_seconds);
  EXPECT_FALSE(j["best_single"].is_null());
}

TEST(PlanPhases, MoreNodesForcesASwitchAndNoSinglePlanRunsThroughout) {
  workload::TrainingPhase wide = Phase("wide", 4e9, 2048, 64);
  wide.nodes = 2;
  PhasePlanningRequest request =
      RequestOf("gpt-1.7b", "dgx-a100-80gb", 1, {Phase("one-node", 1e9, 2048, 64), wide});
  Result<PhasePlan> plan = PlanPhases(request);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ExpectConsistent(request, *plan);
  EXPECT_EQ(plan->phases[0].devices, 8);
  EXPECT_EQ(plan->phases[1].devices, 16);
  EXPECT_FALSE(plan->best_single.has_value());
  // No plan runs on 8 and 16 devices: the single-plan search is not run.
  EXPECT_FALSE(plan->single_search.has_value());
  ASSERT_TRUE(plan->phases[1].switch_in.has_value());
  // A candidate of 8 devices cannot run on 16, and says why.
  const PhaseScore& across = plan->scores[static_cast<size_t>(plan->phases[0].chosen)][1];
  EXPECT_FALSE(across.runs);
  EXPECT_THAT(across.why_not, HasSubstr("devices"));
  EXPECT_GE(plan->phases[1].traffic_in->ranks, 16);
}

TEST(PlanPhases, OtherMachinesNeedACheckpointBandwidth) {
  workload::TrainingPhase moved = Phase("moved", 1e9, 2048, 64);
  moved.cluster = "dgx-h100";
  moved.nodes = 1;
  PhasePlanningRequest request =
      RequestOf("gpt-1.7b", "dgx-a100-80gb", 1, {Phase("a100", 1e9, 2048, 64), moved});
  Result<PhasePlan> refused = PlanPhases(request);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("phases.json: phases[1] (moved)"));
  EXPECT_THAT(refused.status().message(), HasSubstr("'checkpoint'"));

  request.schedule.checkpoint = workload::CheckpointBandwidth{50, 50};
  Result<PhasePlan> plan = PlanPhases(request);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ExpectConsistent(request, *plan);
  // Even the same plan moves through the checkpoint.
  ASSERT_TRUE(plan->phases[1].switch_in.has_value());
  EXPECT_TRUE(plan->phases[1].switch_in->via_checkpoint);
  EXPECT_TRUE(plan->phases[1].machines_change);
  EXPECT_GT(plan->switch_seconds, 0);
  EXPECT_FALSE(plan->best_single.has_value());
  EXPECT_FALSE(plan->single_search.has_value());
}

// The best single plan of `request` with the single-plan search off (0)
// and on (`width`): both answers, each checked for consistency.
std::pair<PhasePlan, PhasePlan> NarrowAndWide(PhasePlanningRequest request, int width) {
  request.single_plan_candidates = 0;
  Result<PhasePlan> narrow = PlanPhases(request);
  EXPECT_TRUE(narrow.ok()) << narrow.status().message();
  request.single_plan_candidates = width;
  Result<PhasePlan> wide = PlanPhases(request);
  EXPECT_TRUE(wide.ok()) << wide.status().message();
  if (!narrow.ok() || !wide.ok()) return {};
  ExpectConsistent(request, *narrow);
  ExpectConsistent(request, *wide);
  EXPECT_FALSE(narrow->single_search.has_value());
  EXPECT_TRUE(wide->single_search.has_value());
  // The phases' own candidates come first, unchanged; the schedule may
  // only get faster with the single plan among its candidates.
  EXPECT_GE(wide->candidates.size(), narrow->candidates.size());
  for (size_t c = 0; c < narrow->candidates.size(); ++c) {
    EXPECT_EQ(wide->candidates[c], narrow->candidates[c]);
    EXPECT_FALSE(wide->candidate_from_single_search[c]);
  }
  EXPECT_LE(wide->total_seconds, narrow->total_seconds * (1 + 1e-12));
  return {std::move(*narrow), std::move(*wide)};
}

TEST(PlanPhases, TheSinglePlanSearchFindsOneWhereNoCandidateRunsEverywhere) {
  // Llama 3 8B on 16 H100s: a batch of 3 at 4K (dp must divide 3: dp 1),
  // then 16 sequences of 64K. Each phase's best plan cannot run in the
  // other (4K's tp4 pp2 cp2 needs too much memory at 64K; 64K's dp 2 does
  // not divide 3), so the phases' own candidates have no single plan; a
  // plan searched for the whole schedule does.
  PhasePlanningRequest request =
      RequestOf("llama3-8b", "dgx-h100", 2,
                {Phase("4k-b3", 10e9, 4096, 3), Phase("64k", 5e9, 65536, 16)});
  request.base.top_k = 1;
  const auto [narrow, wide] = NarrowAndWide(request, 20);
  ASSERT_EQ(wide.phases.size(), 2u);
  EXPECT_FALSE(narrow.best_single.has_value());
  ASSERT_TRUE(wide.best_single.has_value());
  const size_t b = static_cast<size_t>(*wide.best_single);
  EXPECT_TRUE(wide.candidate_from_single_search[b]);
  EXPECT_THAT(wide.candidate_found_in[b], HasSubstr("single-plan search of "));
  for (size_t p = 0; p < 2; ++p) EXPECT_TRUE(wide.scores[b][p].runs) << wide.scores[b][p].why_not;
  // Its total is the sum of its phases on the one scale.
  EXPECT_DOUBLE_EQ(*wide.best_single_seconds,
                   wide.scores[b][0].phase_seconds + wide.scores[b][1].phase_seconds);
  const SinglePlanSearch& s = *wide.single_search;
  EXPECT_EQ(s.searches, 2);
  EXPECT_EQ(s.plans_per_search, 20);
  EXPECT_GE(s.run_everywhere, 1);
  EXPECT_EQ(s.added, 1);
  ASSERT_TRUE(s.best_seconds.has_value());
  EXPECT_NEAR(*s.best_seconds, *wide.best_single_seconds, 1e-9 * *s.best_seconds);
  // The reports say where the single plan came from.
  EXPECT_THAT(PhasePlanToText(request, wide), HasSubstr("'s shape, for the whole schedule"));
  const Json j = PhasePlanToJson(request, wide);
  EXPECT_TRUE(j["best_single"]["from_single_plan_search"].get<bool>());
  EXPECT_EQ(j["single_plan_search"]["added"].get<int>(), 1);
  EXPECT_TRUE(PhasePlanToJson(request, narrow)["best_single"].is_null());
}

TEST(PlanPhases, TheSinglePlanSearchIsNeverWorseThanThePhasesOwnCandidates) {
  // Llama 3 8B, 8K then 64K (the docs' example) with one candidate per
  // phase: the 64K phase's plan runs at 8K too, but a plan searched for
  // both phases is faster over the two (a smaller cp, slower at 64K but
  // faster at 8K, where four times the tokens are).
  PhasePlanningRequest request =
      RequestOf("llama3-8b", "dgx-h100", 2,
                {Phase("8k", 20e9, 8192, 64), Phase("64k", 5e9, 65536, 8)});
  request.base.top_k = 1;
  const auto [narrow, wide] = NarrowAndWide(request, 20);
  ASSERT_TRUE(narrow.best_single.has_value());
  ASSERT_TRUE(wide.best_single.has_value());
  EXPECT_LT(*wide.best_single_seconds, *narrow.best_single_seconds);
  EXPECT_TRUE(wide.candidate_from_single_search[static_cast<size_t>(*wide.best_single)]);
  // The search's width only adds plans: twice as wide is no worse.
  request.single_plan_candidates = 40;
  Result<PhasePlan> wider = PlanPhases(request);
  ASSERT_TRUE(wider.ok()) << wider.status().message();
  ASSERT_TRUE(wider->best_single.has_value());
  EXPECT_LE(*wider->best_single_seconds, *wide.best_single_seconds * (1 + 1e-12));
}

TEST(PlanPhases, OnTheSimulatorsScaleTheSinglePlanSearchAddsTopKPlans) {
  // The single-plan search ranks by the analytical model; on the event
  // simulator's scale its best top_k join the candidates and are
  // simulated on every phase like the others.
  PhasePlanningRequest request =
      RequestOf("gpt-1.7b", "dgx-a100-80gb", 1,
                {Phase("b8", 1e9, 2048, 8), Phase("b64", 8e9, 2048, 64)});
  request.base.top_k = 2;
  request.base.rescore_with_simulator = true;
  request.single_plan_candidates = 8;
  Result<PhasePlan> plan = PlanPhases(request);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ExpectConsistent(request, *plan);
  EXPECT_TRUE(plan->simulated);
  ASSERT_TRUE(plan->single_search.has_value());
  EXPECT_GE(plan->single_search->added, 1);
  EXPECT_LE(plan->single_search->added, 2);
  int added = 0;
  for (size_t c = 0; c < plan->candidates.size(); ++c) {
    if (!plan->candidate_from_single_search[c]) continue;
    ++added;
    for (const PhaseScore& s : plan->scores[c]) {
      EXPECT_TRUE(s.runs) << s.why_not;
      EXPECT_TRUE(s.simulated);
    }
  }
  EXPECT_EQ(added, plan->single_search->added);
  ASSERT_TRUE(plan->best_single.has_value());
}

TEST(PlanPhases, AClusterThatDoesNotResolveNamesThePhaseAndTheField) {
  workload::TrainingPhase bad = Phase("bad", 1e9, 2048, 64);
  bad.cluster = "no-such-cluster";
  PhasePlanningRequest request =
      RequestOf("gpt-1.7b", "dgx-a100-80gb", 1, {Phase("ok", 1e9, 2048, 64), bad});
  Result<PhasePlan> plan = PlanPhases(request);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("phases.json: phases[1] (bad): field 'cluster'"));
}

TEST(ScheduleWithPlans, RoundTripsThroughThePhasesFile) {
  PhasePlanningRequest request =
      RequestOf("gpt-1.7b", "dgx-a100-80gb", 1,
                {Phase("b16", 1e9, 2048, 16), Phase("b32", 8e9, 2048, 32)});
  request.schedule.checkpoint = workload::CheckpointBandwidth{100, 250};
  Result<PhasePlan> plan = PlanPhases(request);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  const workload::PhaseSchedule planned = ScheduleWithPlans(request, *plan);
  ASSERT_EQ(planned.phases.size(), 2u);
  for (size_t p = 0; p < 2; ++p) {
    ASSERT_TRUE(planned.phases[p].plan.has_value());
    EXPECT_EQ(planned.phases[p].plan->global_batch_size, planned.phases[p].global_batch_size);
    EXPECT_EQ(planned.phases[p].plan->sequence_length, planned.phases[p].sequence_length);
    // The chosen candidate, in the phase's shape; valid on the cluster.
    EXPECT_EQ(*planned.phases[p].plan,
              workload::RetargetPlan(plan->candidates[static_cast<size_t>(plan->phases[p].chosen)],
                                     planned.phases[p].global_batch_size,
                                     planned.phases[p].sequence_length));
    EXPECT_TRUE(workload::ValidatePlan(*planned.phases[p].plan, request.model, request.cluster).ok());
  }
  const Json json = workload::PhasesToJson(planned);
  Result<workload::PhaseSchedule> back = workload::ParsePhases(json, "planned.json", "");
  ASSERT_TRUE(back.ok()) << back.status().message();
  ASSERT_EQ(back->phases.size(), 2u);
  for (size_t p = 0; p < 2; ++p) {
    EXPECT_EQ(back->phases[p].name, planned.phases[p].name);
    EXPECT_EQ(back->phases[p].tokens, planned.phases[p].tokens);
    EXPECT_EQ(back->phases[p].Steps(), planned.phases[p].Steps());
    ASSERT_TRUE(back->phases[p].plan.has_value());
    EXPECT_EQ(*back->phases[p].plan, *planned.phases[p].plan);
  }
  ASSERT_TRUE(back->checkpoint.has_value());
  EXPECT_EQ(back->checkpoint->read_gb_per_s, 250);
  EXPECT_EQ(DumpJson(workload::PhasesToJson(*back)), DumpJson(json));
}

}  // namespace
}  // namespace orrery::search
