// search/replan.h on gpt-tiny (4 layers) and two CPU cores: the margin
// check, a decision that moves layers off a rank three times slower, a
// probe within noise that the scale absorbs, the settings' errors, the
// executor's filter, and predictions after recalibration.
#include "search/replan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/units.h"
#include "search/space.h"
#include "sim/faults.h"
#include "topology/cluster_spec.h"
#include "workload/model_presets.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::search {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Two CPU cores of one node: the shape of `orrery tune`'s cpu-local cluster
// narrowed to two ranks, with fixed figures so that the test does not
// depend on the machine it runs on.
topology::ClusterSpec TwoCores() {
  topology::DeviceType d;
  d.name = "cpu-core";
  d.model = "test core";
  d.peak[topology::Precision::kFp32] = GFlops(50);
  d.memory = GiB(4);
  d.memory_bandwidth = GBps(10);
  d.source = "test figures";
  topology::NodeType node;
  node.name = "cpu";
  node.count = 1;
  node.devices_per_node = 2;
  node.device = d;
  node.fabric.kind = topology::FabricKind::kSharedMemory;
  node.fabric.bandwidth_per_device = GBps(10);
  node.fabric.latency = Micros(1);
  topology::ClusterSpec cluster;
  cluster.name = "two-cores";
  cluster.node_types = {node};
  return cluster;
}

ReplanSettings Settings() {
  ReplanSettings s;
  s.request.model = *workload::ModelPreset("gpt-tiny");
  s.request.cluster = TwoCores();
  s.request.global_batch_size = 8;
  s.request.sequence_length = 32;
  s.request.precision = topology::Precision::kFp32;
  s.request.allow_context_parallel = false;
  s.algorithm = "exhaustive";
  s.margin = 0.2;
  return s;
}

// Data parallelism over both ranks, micro-batch 4: every layer on both.
workload::Plan Dp2() {
  const workload::ModelSpec model = *workload::ModelPreset("gpt-tiny");
  workload::LayerStrategy layer;
  layer.dp = 2;
  workload::Plan plan = workload::Plan::Uniform(model, 1, layer, 8, 4);
  plan.sequence_length = 32;
  plan.precision = topology::Precision::kFp32;
  return plan;
}

// The layers of the stage rank `rank` holds.
int LayersOfRank(const workload::Plan& plan, int rank) {
  const std::vector<std::vector<int>> groups =
      workload::RankGroups(plan, 0, workload::ParallelDim::kPp);
  for (const std::vector<int>& g : groups) {
    for (size_t s = 0; s < g.size(); ++s) {
      if (g[s] == rank) return plan.StageLayerCounts()[s];
    }
  }
  ADD_FAILURE() << "rank " << rank << " is in no pipeline group";
  return -1;
}

// pp 2 with an even split (two layers a stage), micro-batch 2.
workload::Plan Pp2Even() {
  const workload::ModelSpec model = *workload::ModelPreset("gpt-tiny");
  workload::LayerStrategy layer;
  workload::Plan plan = workload::Plan::Uniform(model, 2, layer, 8, 2);
  plan.sequence_length = 32;
  plan.precision = topology::Precision::kFp32;
  return plan;
}

Replanning Create(const ReplanSettings& settings) {
  Result<Replanning> r = Replanning::Create(settings);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(*r);
}

double PredictOrDie(const Replanning& r, const workload::Plan& plan) {
  Result<double> p = r.Predict(plan);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return p.ok() ? *p : 0;
}

TEST(Replanning, AWindowOverThePredictionByMoreThanTheMarginIsOver) {
  Replanning r = Create(Settings());
  const double predicted = PredictOrDie(r, Dp2());
  ASSERT_GT(predicted, 0);

  Result<MarginCheck> same = r.Check(1, Dp2(), predicted);
  ASSERT_TRUE(same.ok()) << same.status().message();
  EXPECT_EQ(same->window, 1);
  EXPECT_DOUBLE_EQ(same->predicted_s, predicted);
  EXPECT_FALSE(same->over);
  // Exactly at the margin is still within; 1% past it is over.
  Result<MarginCheck> at = r.Check(2, Dp2(), predicted * 1.2 * (1 - 1e-9));
  ASSERT_TRUE(at.ok());
  EXPECT_FALSE(at->over);
  Result<MarginCheck> over = r.Check(3, Dp2(), predicted * 1.2 * 1.01);
  ASSERT_TRUE(over.ok());
  EXPECT_TRUE(over->over);

  ASSERT_EQ(r.log().size(), 3u);
  EXPECT_EQ(r.log()[2].check->window, 3);
  EXPECT_FALSE(r.log()[2].decision.has_value());
  EXPECT_THAT(MarginCheckText(*over, 0.2), HasSubstr("margin 20%): over"));
  EXPECT_THAT(MarginCheckText(*same, 0.2), HasSubstr("(+0.0%, margin 20%): within"));
  EXPECT_FALSE(r.Check(4, Dp2(), 0).ok());
}

TEST(Replanning, MarginCheckTextSaysTheExcessInPercent) {
  const MarginCheck check{3, 0.0412, 0.0201, true};
  EXPECT_EQ(MarginCheckText(check, 0.2),
            "window 3: measured 41.20 ms, predicted 20.10 ms (+105.0%, margin 20%): over");
  const Json j = MarginCheckToJson(check);
  EXPECT_EQ(j["window"], 3);
  EXPECT_DOUBLE_EQ(j["measured_s"].get<double>(), 0.0412);
  EXPECT_DOUBLE_EQ(j["predicted_s"].get<double>(), 0.0201);
  EXPECT_EQ(j["over"], true);
}

// Data parallelism with rank 1 three times slower: every step waits for
// rank 1's whole model. The search under the new fault pipelines the
// model and gives rank 1's stage fewer layers.
TEST(Replanning, ARankThreeTimesSlowerMovesLayersOffIt) {
  Replanning r = Create(Settings());
  const double healthy = PredictOrDie(r, Dp2());
  const double measured = 2.9 * healthy;
  Result<ReplanDecision> d = r.Decide(2, Dp2(), measured, {0.010, 0.030}, 1000);
  ASSERT_TRUE(d.ok()) << d.status().message();

  EXPECT_EQ(d->window, 2);
  ASSERT_EQ(d->factors.size(), 2u);
  EXPECT_DOUBLE_EQ(d->factors[0], 1.0);
  EXPECT_DOUBLE_EQ(d->factors[1], 3.0);
  ASSERT_EQ(d->faults.slow_devices.size(), 1u);
  EXPECT_EQ(d->faults.slow_devices[0], (sim::SlowDevice{1, 3.0}));
  EXPECT_TRUE(d->faults.degraded_links.empty());
  EXPECT_EQ(r.faults(), d->faults);

  // The scale: measured over the simulation of the running plan with
  // rank 1 slow, whatever it is, times that simulation is the measurement.
  EXPECT_GT(d->scale, 0.5);
  EXPECT_LT(d->scale, 1.5);
  EXPECT_DOUBLE_EQ(r.scale(), d->scale);
  EXPECT_NEAR(d->running_predicted_s, measured, 1e-12 * measured);

  ASSERT_TRUE(d->best.has_value());
  const workload::Plan& best = *d->best;
  EXPECT_EQ(best.pp, 2) << PlanSummary(best);
  EXPECT_LT(LayersOfRank(best, 1), LayersOfRank(best, 0)) << PlanSummary(best);
  EXPECT_LT(d->best_predicted_s, d->running_predicted_s);
  EXPECT_DOUBLE_EQ(d->gain_s, (measured - d->best_predicted_s) * 1000);
  EXPECT_GT(d->gain_s, 0);
  // Both ranks of dp 2 hold the whole state (ZeRO 0): each stage's layers
  // are already there, nothing moves.
  EXPECT_EQ(d->switch_cost_s, 0);
  EXPECT_TRUE(d->switch_plan);
  EXPECT_THAT(d->reason, StartsWith("switch: the gain over the 1000 steps left, "));

  const std::string text = ReplanDecisionText(*d);
  EXPECT_THAT(text, HasSubstr("probe: rank 1 3.00× slower than the fastest (rank 0 1.00)"));
  EXPECT_THAT(text, HasSubstr("running: " + PlanSummary(Dp2())));
  EXPECT_THAT(text, HasSubstr("best: " + PlanSummary(best)));
  EXPECT_THAT(text, HasSubstr("decision: switch: "));

  const Json j = ReplanDecisionToJson(*d);
  EXPECT_EQ(j["faults"]["slow_devices"], Json::array({"1:3"}));
  EXPECT_EQ(j["faults"]["degraded_links"], Json::array());
  EXPECT_EQ(j["best"], workload::PlanToJson(best));
  EXPECT_EQ(j["running"], workload::PlanToJson(Dp2()));
  EXPECT_EQ(j["factors"], Json::array({1.0, 3.0}));
  EXPECT_EQ(j["switch_plan"], true);
  EXPECT_EQ(j["steps_left"], 1000);
  EXPECT_DOUBLE_EQ(j["gain_s"].get<double>(), d->gain_s);
  EXPECT_EQ(j["reason"], d->reason);

  ASSERT_EQ(r.log().size(), 1u);
  EXPECT_TRUE(r.log()[0].decision.has_value());
}

TEST(Replanning, NoStepLeftGainsNothingSoTheRunKeepsItsPlan) {
  Replanning r = Create(Settings());
  const double measured = 2.9 * PredictOrDie(r, Dp2());
  Result<ReplanDecision> d = r.Decide(2, Dp2(), measured, {0.010, 0.030}, 0);
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_TRUE(d->best.has_value());
  EXPECT_EQ(d->best->pp, 2);
  EXPECT_EQ(d->gain_s, 0);
  EXPECT_FALSE(d->switch_plan);
  EXPECT_THAT(d->reason, StartsWith("keep: the gain over the 0 steps left, "));
  EXPECT_THAT(d->reason, HasSubstr("does not exceed the switch's"));
}

// From an even pipeline, rank 1's stage must send a layer's state to
// rank 0: the switch costs time, and a run with too few steps left keeps
// its plan.
TEST(Replanning, ASwitchThatMovesStateIsPricedAndWeighedAgainstTheGain) {
  Replanning r = Create(Settings());
  const double measured = 2.5 * PredictOrDie(r, Pp2Even());

  Result<ReplanDecision> late = r.Decide(2, Pp2Even(), measured, {0.010, 0.030}, 0);
  ASSERT_TRUE(late.ok()) << late.status().message();
  ASSERT_TRUE(late->best.has_value());
  EXPECT_LT(LayersOfRank(*late->best, 1), LayersOfRank(*late->best, 0));
  EXPECT_GT(late->switch_cost_s, 0);
  EXPECT_LT(late->switch_cost_s, 0.1);  // a layer of gpt-tiny is ~0.6 MB
  EXPECT_FALSE(late->switch_plan);
  EXPECT_THAT(late->reason, HasSubstr("does not exceed the switch's"));

  // The same probe on a fresh run (on this one the slow device is now
  // known, so it would keep: see below).
  Replanning fresh = Create(Settings());
  Result<ReplanDecision> early = fresh.Decide(3, Pp2Even(), measured, {0.010, 0.030}, 100);
  ASSERT_TRUE(early.ok()) << early.status().message();
  EXPECT_DOUBLE_EQ(early->switch_cost_s, late->switch_cost_s);
  EXPECT_GT(early->gain_s, early->switch_cost_s);
  EXPECT_TRUE(early->switch_plan);
}

// A rank 5% slower is noise under the threshold 1.15: no fault, and the
// scale alone absorbs what the simulation misses.
TEST(Replanning, AProbeWithinTheThresholdFindsNoSlowDeviceAndTheScaleAbsorbsTheDifference) {
  const ReplanSettings settings = Settings();
  Result<SearchResult> healthy = RunSearch(settings.request, settings.algorithm);
  ASSERT_TRUE(healthy.ok()) << healthy.status().message();
  ASSERT_FALSE(healthy->plans.empty());
  const workload::Plan running = healthy->plans.front().plan;

  Replanning r = Create(settings);
  const double predicted = PredictOrDie(r, running);
  Result<ReplanDecision> d = r.Decide(4, running, 1.3 * predicted, {0.010, 0.0105}, 1000);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->factors, (std::vector<double>{1.0, 1.0}));
  EXPECT_TRUE(d->faults.empty());
  EXPECT_NEAR(d->scale, 1.3, 1e-12);
  ASSERT_TRUE(d->best.has_value());
  EXPECT_EQ(*d->best, running);
  EXPECT_EQ(d->gain_s, 0);
  EXPECT_EQ(d->switch_cost_s, 0);
  EXPECT_FALSE(d->switch_plan);
  EXPECT_EQ(d->reason, "keep: no slow device found; the scale absorbs the difference");
  EXPECT_THAT(ReplanDecisionText(*d), HasSubstr("probe: no slow rank"));

  // Every later prediction carries the scale: the same measurement is now
  // within the margin.
  EXPECT_NEAR(PredictOrDie(r, running), 1.3 * predicted, 1e-12 * predicted);
  Result<MarginCheck> again = r.Check(5, running, 1.3 * predicted);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->over);
}

// A second probe that finds the slow device already known (within the
// threshold) keeps the plan: it was chosen for that device, and the search
// would only repeat the model's ranking. A factor that moved by more than
// the threshold searches again.
TEST(Replanning, TheSlowDeviceAlreadyKnownKeepsThePlanAndANewFactorSearchesAgain) {
  Replanning r = Create(Settings());
  const double measured = 2.9 * PredictOrDie(r, Dp2());
  Result<ReplanDecision> first = r.Decide(2, Dp2(), measured, {0.010, 0.030}, 1000);
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(first->switch_plan);
  const workload::Plan chosen = *first->best;

  const double later = 1.4 * PredictOrDie(r, chosen);
  Result<ReplanDecision> same = r.Decide(4, chosen, later, {0.010, 0.032}, 500);
  ASSERT_TRUE(same.ok()) << same.status().message();
  EXPECT_FALSE(same->switch_plan);
  EXPECT_EQ(*same->best, chosen);
  EXPECT_EQ(same->gain_s, 0);
  EXPECT_THAT(same->reason, StartsWith("keep: the slow devices are those known (slow devices "
                                       "1:3 before, slow devices 1:3.2 now, within 1.15×)"));
  EXPECT_EQ(r.faults().slow_devices.front().factor, 3.2);  // recalibrated all the same
  EXPECT_NEAR(r.scale(), same->scale, 0);

  // Rank 1 now 6× slower: more than 1.15× off the known 3.2, searched again.
  Result<ReplanDecision> worse = r.Decide(6, chosen, 3 * later, {0.010, 0.060}, 500);
  ASSERT_TRUE(worse.ok()) << worse.status().message();
  EXPECT_THAT(worse->reason, Not(HasSubstr("those known")));
}

// A gain the model predicts below min_gain of the step is within its
// error: kept, even when it beats the switch's cost.
TEST(Replanning, AGainBelowMinGainOfTheStepIsKept) {
  ReplanSettings settings = Settings();
  settings.min_gain = 0.99;
  Replanning r = Create(settings);
  const double measured = 2.9 * PredictOrDie(r, Dp2());
  Result<ReplanDecision> d = r.Decide(2, Dp2(), measured, {0.010, 0.030}, 1000);
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_TRUE(d->best.has_value());
  EXPECT_NE(*d->best, Dp2());
  EXPECT_GT(d->gain_s, d->switch_cost_s);
  EXPECT_FALSE(d->switch_plan);
  EXPECT_THAT(d->reason, HasSubstr("less than min_gain 99%: within the model's error"));
}

TEST(Replanning, PredictionsAfterADecisionSeeTheFaultsAndTheScale) {
  Replanning r = Create(Settings());
  const double before = PredictOrDie(r, Dp2());
  Result<ReplanDecision> d = r.Decide(2, Dp2(), 3.3 * before, {0.010, 0.030}, 1000);
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_TRUE(d->best.has_value());
  EXPECT_DOUBLE_EQ(PredictOrDie(r, Dp2()), d->running_predicted_s);
  EXPECT_DOUBLE_EQ(PredictOrDie(r, *d->best), d->best_predicted_s);
  // dp 2 waits for rank 1's three-times-slower compute every step.
  EXPECT_GT(PredictOrDie(r, Dp2()), 2 * before);
  // A fresh Replanning with the same faults and no scale predicts the
  // simulation alone: the decision's prediction is it times the scale.
  ReplanSettings faulted = Settings();
  faulted.request.faults = d->faults;
  Replanning fresh = Create(faulted);
  EXPECT_NEAR(PredictOrDie(fresh, Dp2()) * d->scale, d->running_predicted_s,
              1e-12 * d->running_predicted_s);
  EXPECT_NE(d->scale, 1.0);
}

TEST(Replanning, OnlyPlansTheExecutorAcceptsAreChosen) {
  ReplanSettings settings = Settings();
  settings.request.top_k = 40;
  settings.executable = [](const workload::Plan& plan) {
    return plan.pp > 1 ? FailedPreconditionError("the executor runs no pipeline") : Status::Ok();
  };
  Replanning r = Create(settings);
  const double measured = 2.9 * PredictOrDie(r, Dp2());
  Result<ReplanDecision> d = r.Decide(2, Dp2(), measured, {0.010, 0.030}, 1000);
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_TRUE(d->best.has_value());
  EXPECT_EQ(d->best->pp, 1) << PlanSummary(*d->best);

  // A filter that accepts nothing: no best, keep, and why.
  settings.executable = [](const workload::Plan&) {
    return FailedPreconditionError("nothing runs here");
  };
  Replanning none = Create(settings);
  Result<ReplanDecision> kept = none.Decide(2, Dp2(), measured, {0.010, 0.030}, 1000);
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_FALSE(kept->best.has_value());
  EXPECT_FALSE(kept->switch_plan);
  EXPECT_THAT(kept->reason, StartsWith("keep: "));
  EXPECT_THAT(kept->reason, HasSubstr("nothing runs here"));
  EXPECT_THAT(ReplanDecisionText(*kept), HasSubstr("best: none"));
  EXPECT_TRUE(ReplanDecisionToJson(*kept)["best"].is_null());
}

TEST(Replanning, DegradedLinksGivenAtTheStartAreKeptWhenTheSlowDevicesAreReplaced) {
  ReplanSettings settings = Settings();
  settings.request.faults.slow_devices = {{0, 2.0}};
  // Rank 1's device: both directions of its link to the node's fabric.
  settings.request.faults.degraded_links = {{"node0/dev1", 2.0}};
  Result<Replanning> r = Replanning::Create(settings);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const double measured = PredictOrDie(*r, Dp2());
  Result<ReplanDecision> d = r->Decide(2, Dp2(), measured, {0.010, 0.030}, 10);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->faults.slow_devices, (std::vector<sim::SlowDevice>{{1, 3.0}}));
  EXPECT_EQ(d->faults.degraded_links, settings.request.faults.degraded_links);
}

TEST(Replanning, BadSettingsAreInvalidArgumentsNamingTheField) {
  struct Case {
    std::function<void(ReplanSettings&)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](ReplanSettings& s) { s.margin = 0; }, "replan: margin: "},
      {[](ReplanSettings& s) { s.margin = -0.1; }, "replan: margin: "},
      {[](ReplanSettings& s) { s.margin = std::numeric_limits<double>::infinity(); },
       "replan: margin: "},
      {[](ReplanSettings& s) { s.slow_threshold = 0.5; }, "replan: slow_threshold: "},
      {[](ReplanSettings& s) { s.min_gain = 1; }, "replan: min_gain: "},
      {[](ReplanSettings& s) { s.min_gain = -0.1; }, "replan: min_gain: "},
      {[](ReplanSettings& s) { s.algorithm = "no-such-search"; }, "replan: algorithm: "},
      {[](ReplanSettings& s) { s.request.faults.slow_devices = {{2, 3.0}}; },
       "replan: faults: "},
  };
  for (const Case& c : cases) {
    ReplanSettings s = Settings();
    c.change(s);
    Result<Replanning> r = Replanning::Create(s);
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().message();
    EXPECT_THAT(r.status().message(), StartsWith(c.field));
  }
  Result<Replanning> r = Replanning::Create(Settings());
  ASSERT_TRUE(r.ok());
  Result<ReplanDecision> one = r->Decide(1, Dp2(), 1.0, {0.01}, 10);
  ASSERT_FALSE(one.ok());
  EXPECT_THAT(one.status().message(), HasSubstr("replan: probe"));
  Result<ReplanDecision> zero = r->Decide(1, Dp2(), 1.0, {0.01, 0.0}, 10);
  ASSERT_FALSE(zero.ok());
  EXPECT_THAT(zero.status().message(), HasSubstr("rank 1"));
}

}  // namespace
}  // namespace orrery::search
