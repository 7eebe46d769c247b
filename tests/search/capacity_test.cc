// search/capacity.h: the sweep file's errors name the field, a sweep
// expands to the product of its lists with equal clusters searched once,
// the arithmetic of time, device-hours and cost, the bound rule, and that
// doubling a cluster never reports a slower best plan.
#include "search/capacity.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/units.h"
#include "topology/cluster_spec.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/operators.h"

namespace orrery::search {
namespace {

using ::testing::HasSubstr;

Result<Sweep> SweepOf(const std::string& text) {
  Result<Json> json = ParseJson(text, "sweep.json");
  if (!json.ok()) return json.status();
  return ParseSweep(*json, "sweep.json");
}

TEST(ParseTokenCount, ReadsSuffixesAndScientificNotation) {
  EXPECT_EQ(*ParseTokenCount("15T"), 15e12);
  EXPECT_EQ(*ParseTokenCount("15e12"), 15e12);
  EXPECT_EQ(*ParseTokenCount("300B"), 300e9);
  EXPECT_EQ(*ParseTokenCount("1.5t"), 1.5e12);
  EXPECT_EQ(*ParseTokenCount("2000"), 2000.0);
  for (const char* bad : {"", "T", "15X", "-3T", "0", "15 T", "abc"}) {
    EXPECT_FALSE(ParseTokenCount(bad).ok()) << bad;
  }
}

TEST(ParseSweep, ErrorsNameTheFileAndTheField) {
  struct Case {
    std::string text;
    std::string field;
  };
  const std::vector<Case> cases = {
      {R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1], "nic_gbs": [400],
           "price_per_device_hour": 1}]})",
       "nic_gbs"},
      {R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "devices": [8, 12],
           "price_per_device_hour": 1}]})",
       "clusters[0].devices[1]"},
      {R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1]}]})",
       "clusters[0].price_per_device_hour"},
      {R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1], "devices": [8],
           "price_per_device_hour": 1}]})",
       "nodes"},
      {R"({"clusters": [{"name": "a", "cluster": "no-such-cluster", "nodes": [1],
           "price_per_device_hour": 1}]})",
       "clusters[0].cluster"},
      {R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1],
           "oversubscription": [0.5], "price_per_device_hour": 1}]})",
       "clusters[0].oversubscription[0]"},
      {R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1, 1],
           "price_per_device_hour": 1}]})",
       "clusters[0].nodes[1]"},
      {R"({"clusters": [], "extra": 1})", "clusters"},
      {R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1],
           "price_per_device_hour": 1}], "extra": 1})",
       "extra"},
  };
  for (const Case& c : cases) {
    Result<Sweep> sweep = SweepOf(c.text);
    ASSERT_FALSE(sweep.ok()) << c.text;
    EXPECT_THAT(sweep.status().message(), HasSubstr("sweep.json")) << c.text;
    EXPECT_THAT(sweep.status().message(), HasSubstr(c.field)) << sweep.status().message();
  }
}

TEST(ParseSweep, ReadsFaultScenariosAndNamesTheBadField) {
  Result<Sweep> sweep = SweepOf(
      R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1],
          "price_per_device_hour": 1}],
          "faults": [{"name": "slow", "slow_device": ["3:1.5", "3:2"]},
                     {"name": "nic", "degrade_link": ["node0/nic0:4"]}]})");
  ASSERT_TRUE(sweep.ok()) << sweep.status().message();
  ASSERT_EQ(sweep->faults.size(), 2u);
  EXPECT_EQ(sweep->faults[0].name, "slow");
  ASSERT_EQ(sweep->faults[0].faults.slow_devices.size(), 2u);
  EXPECT_EQ(sweep->faults[0].faults.slow_devices[1], (sim::SlowDevice{3, 2.0}));
  ASSERT_EQ(sweep->faults[1].faults.degraded_links.size(), 1u);
  EXPECT_EQ(sweep->faults[1].faults.degraded_links[0], (sim::DegradedLink{"node0/nic0", 4.0}));

  const std::string head =
      R"({"clusters": [{"name": "a", "cluster": "dgx-h100", "nodes": [1],
          "price_per_device_hour": 1}], "faults": )";
  struct Case {
    std::string faults;
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {R"([{"name": "x"}])", "'faults[0]'"},
           {R"([{"name": "x", "slow_device": ["0:0.5"]}])", "'faults[0].slow_device[0]'"},
           {R"([{"name": "x", "degrade_link": "node0/nic0:2"}])", "'faults[0].degrade_link'"},
           {R"([{"name": "x y", "slow_device": ["0:2"]}])", "'faults[0].name'"},
           {R"([{"name": "x", "slow_device": ["0:2"]}, {"name": "x", "slow_device": ["1:2"]}])",
            "'faults[1].name'"},
           {R"([{"name": "x", "slow_device": ["0:2"], "rank": 3}])", "rank"},
       }) {
    Result<Sweep> bad = SweepOf(head + c.faults + "}");
    ASSERT_FALSE(bad.ok()) << c.faults;
    EXPECT_THAT(bad.status().message(), HasSubstr("sweep.json")) << bad.status().message();
    EXPECT_THAT(bad.status().message(), HasSubstr(c.field)) << bad.status().message();
  }
}

TEST(CheckSweepFaults, NamesTheScenarioAndThePointAFaultDoesNotFit) {
  Result<Sweep> sweep = SweepOf(
      R"({"clusters": [{"name": "h100", "cluster": "dgx-h100", "nodes": [1, 2],
          "price_per_device_hour": 1}],
          "faults": [{"name": "far", "slow_device": ["12:2"]}]})");
  ASSERT_TRUE(sweep.ok()) << sweep.status().message();
  const CapacityWork work = *PlanCapacityWork(*sweep);
  const Status s = CheckSweepFaults(*sweep, work);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("'faults[0]' (far)"));
  EXPECT_THAT(s.message(), HasSubstr("8 devices"));
  sweep->faults[0].faults.slow_devices[0].rank = 7;
  EXPECT_TRUE(CheckSweepFaults(*sweep, work).ok());
}

TEST(MaterializeCluster, SetsTheKnobsAndDependsOnlyOnTheirValues) {
  const topology::ClusterSpec base = *topology::ClusterPreset("dgx-h100");
  Result<topology::ClusterSpec> spec =
      MaterializeCluster(base, ClusterKnobs{.nodes = 4, .nic_gbps = 800,
                                            .oversubscription = 2, .memory_gib = 96});
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(spec->TotalDevices(), 32);
  const topology::NodeType& node = spec->PrimaryNodeType();
  for (int d = 0; d < node.devices_per_node; ++d) {
    EXPECT_EQ(node.NicBandwidthPerDevice(d), Gbps(800));
  }
  EXPECT_EQ(spec->network.tiers.back().oversubscription, 2.0);
  EXPECT_EQ(node.device.memory, GiB(96));
  // 400 Gb/s doubled is the 800 Gb/s cluster, exactly.
  ClusterKnobs k = KnobsOf(base);
  EXPECT_EQ(k.nic_gbps, 400);
  EXPECT_EQ(k.memory_gib, 80);
  k.nodes = 4;
  k.nic_gbps *= 2;
  k.oversubscription = 2;
  k.memory_gib = 96;
  EXPECT_EQ(*MaterializeCluster(base, k), *spec);
}

TEST(PlanCapacityWork, PointsAreTheProductAndEqualClustersAreSearchedOnce) {
  Result<Sweep> sweep = SweepOf(
      R"({"clusters": [{"name": "h100", "cluster": "dgx-h100", "nodes": [1, 2],
          "nic_gbps": [100, 200, 400], "memory_gib": [40, 80], "price_per_device_hour": 2},
         {"name": "b200", "cluster": "dgx-b200", "devices": [8],
          "price_per_device_hour": 5}]})");
  ASSERT_TRUE(sweep.ok()) << sweep.status().message();
  Result<CapacityWork> work = PlanCapacityWork(*sweep);
  ASSERT_TRUE(work.ok()) << work.status().message();
  ASSERT_EQ(work->points.size(), 2u * 3u * 2u + 1u);
  // h100: 12 points; new variants: NIC 400 → 800 (2 nodes × 2 memories),
  // memory 80 → 160 (2 × 3), nodes 2 → 4 (3 × 2). b200: 1 point, 3 variants.
  EXPECT_EQ(work->jobs.size(), 12u + 4u + 6u + 6u + 1u + 3u);
  std::set<std::string> keys;
  for (const CapacityJob& job : work->jobs) keys.insert(job.key);
  EXPECT_EQ(keys.size(), work->jobs.size());
  // The NIC ×2 of the 100 Gb/s point is the 200 Gb/s point's search.
  for (size_t i = 0; i < work->points.size(); ++i) {
    const CapacityPoint& p = work->points[i];
    if (p.entry != 0 || p.knobs.nic_gbps != 100) continue;
    for (size_t k = 0; k < work->points.size(); ++k) {
      const CapacityPoint& q = work->points[k];
      if (q.entry == 0 && q.knobs.nodes == p.knobs.nodes && q.knobs.nic_gbps == 200 &&
          q.knobs.memory_gib == p.knobs.memory_gib) {
        EXPECT_EQ(*work->uses[i].nic_x2, work->uses[k].point);
      }
    }
  }
  // Every job is dealt to exactly one of three ranks, largest first.
  std::vector<int> seen(work->jobs.size(), 0);
  for (int rank = 0; rank < 3; ++rank) {
    const std::vector<int> mine = JobsOfRank(*work, rank, 3);
    for (int j : mine) ++seen[static_cast<size_t>(j)];
    for (size_t k = 1; k < mine.size(); ++k) {
      EXPECT_GE(work->jobs[static_cast<size_t>(mine[k - 1])].cluster.TotalDevices(),
                work->jobs[static_cast<size_t>(mine[k])].cluster.TotalDevices());
    }
  }
  for (int s : seen) EXPECT_EQ(s, 1);
}

TEST(PlanCapacityWork, SearchesOnlyTheSensitivitiesAskedFor) {
  Result<Sweep> sweep = SweepOf(
      R"({"clusters": [{"name": "h100", "cluster": "dgx-h100", "nodes": [1, 2],
          "price_per_device_hour": 2}]})");
  ASSERT_TRUE(sweep.ok()) << sweep.status().message();
  Result<Sensitivities> none = ParseSensitivities("none");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(PlanCapacityWork(*sweep, *none)->jobs.size(), 2u);
  Result<Sensitivities> devices = ParseSensitivities("devices");
  ASSERT_TRUE(devices.ok());
  const CapacityWork work = *PlanCapacityWork(*sweep, *devices);
  EXPECT_EQ(work.jobs.size(), 3u);  // nodes 1, 2 and 4
  EXPECT_FALSE(work.uses[0].nic_x2.has_value());
  EXPECT_EQ(*work.uses[0].devices_x2, work.uses[1].point);
  EXPECT_EQ(PlanCapacityWork(*sweep, *ParseSensitivities("memory,nic"))->jobs.size(), 6u);
  EXPECT_FALSE(ParseSensitivities("nic,cpu").ok());
}

TEST(ComputeFigures, FollowsTheFormulas) {
  // 8 sequences of 1000 tokens every 2 s: 4000 tokens/s; 8.64e9 tokens take
  // 2.16e6 s = 25 days; 16 devices: 9600 device-hours, at $2.5: $24,000.
  const CapacityFigures f = ComputeFigures(8.64e9, 8, 1000, Picos(2'000'000'000'000), 16, 2.5,
                                           Flop(1e9), TFlops(1));
  EXPECT_EQ(f.iteration_s, 2.0);
  EXPECT_EQ(f.tokens_per_s, 4000.0);
  EXPECT_EQ(f.seconds, 2.16e6);
  EXPECT_EQ(f.days, 25.0);
  EXPECT_EQ(f.device_hours, 9600.0);
  EXPECT_EQ(f.cost, 24000.0);
  EXPECT_DOUBLE_EQ(f.mfu, 1e9 * 4000 / (16 * 1e12));
}

TEST(ClassifyBound, TheLargestLossAboveTheShareElseCompute) {
  BoundBreakdown b;
  b.compute = 6;
  b.bubble = 3;
  b.dp = 1;
  b.dp_tier = "network:spine";
  EXPECT_EQ(ClassifyBound(b, 10, 0.25), "pipeline bubble");
  EXPECT_EQ(ClassifyBound(b, 10, 0.35), "compute");
  // Equal tiers add up: 2 + 2 on the spine beat a bubble of 3.
  b.p2p = 2;
  b.p2p_tier = "network:spine";
  b.dp = 2;
  EXPECT_EQ(ClassifyBound(b, 13, 0.25), "network:spine");
  b.memory = 5;
  EXPECT_EQ(ClassifyBound(b, 18, 0.25), "memory capacity");
}

TEST(CapacityOutcome, JsonRoundTripIsExact) {
  CapacityOutcome o;
  o.found = true;
  o.plan = Json::object();
  o.plan["pp"] = 4;
  o.summary = "pp4 mb1 tp8 dp2";
  o.devices_used = 64;
  o.iteration_time = Picos(123'456'789'012);
  o.peak_memory = Bytes(70'000'000'123);
  o.breakdown.compute = 0.1 + 0.2;
  o.breakdown.bubble = 1.0 / 3;
  o.breakdown.dp_tier = "network:leaf";
  o.bound = "pipeline bubble";
  o.search_time_s = 1.25;
  o.evaluated = 4321;
  Result<CapacityOutcome> back = CapacityOutcomeFromJson(
      *ParseJson(CapacityOutcomeToJson(o).dump(), "x"), "x");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->iteration_time, o.iteration_time);
  EXPECT_EQ(back->peak_memory, o.peak_memory);
  EXPECT_EQ(back->breakdown.compute, o.breakdown.compute);
  EXPECT_EQ(back->breakdown.bubble, o.breakdown.bubble);
  EXPECT_EQ(back->breakdown.dp_tier, o.breakdown.dp_tier);
  EXPECT_EQ(back->plan, o.plan);
  EXPECT_EQ(back->summary, o.summary);
  EXPECT_EQ(back->devices_used, 64);
  EXPECT_EQ(back->evaluated, 4321);
  EXPECT_TRUE(back->faults.empty());

  o.faults.push_back({"slow", Picos(1'000'000'000'001), Picos(1'200'000'000'003)});
  back = CapacityOutcomeFromJson(*ParseJson(CapacityOutcomeToJson(o).dump(), "x"), "x");
  ASSERT_TRUE(back.ok()) << back.status().message();
  ASSERT_EQ(back->faults.size(), 1u);
  EXPECT_EQ(back->faults[0].name, "slow");
  EXPECT_EQ(back->faults[0].healthy, Picos(1'000'000'000'001));
  EXPECT_EQ(back->faults[0].faulted, Picos(1'200'000'000'003));
}

CapacitySettings SmallSettings() {
  CapacitySettings s;
  s.model = *workload::ModelPreset("gpt-1.7b");
  s.model.num_layers = 8;
  s.tokens = 1e11;
  s.global_batch_size = 32;
  s.sequence_length = 1024;
  s.algorithm = "galvatron";
  return s;
}

TEST(RunSearch, WithoutRescoringKeepsTheAnalyticalBestUnsimulated) {
  SearchRequest r;
  r.model = *workload::ModelPreset("gpt-1.7b");
  r.model.num_layers = 4;
  r.cluster = *topology::ClusterPreset("dgx-h100");
  r.global_batch_size = 16;
  r.sequence_length = 1024;
  r.top_k = 3;
  r.rescore_with_simulator = false;
  Result<SearchResult> result = RunSearch(r, "exhaustive");
  ASSERT_TRUE(result.ok()) << result.status().message();
  ASSERT_EQ(result->plans.size(), 3u);
  EXPECT_EQ(result->rescore_time_s, 0.0);
  for (size_t k = 0; k < result->plans.size(); ++k) {
    EXPECT_FALSE(result->plans[k].simulated.has_value());
    EXPECT_TRUE(result->plans[k].analytical.fits);
    if (k > 0) {
      EXPECT_LE(result->plans[k - 1].analytical.iteration_time,
                result->plans[k].analytical.iteration_time);
    }
  }
}

TEST(AssembleRows, ArithmeticOfAPointAndALargerClusterNeverSlower) {
  Result<Sweep> sweep = SweepOf(
      R"({"clusters": [{"name": "h100", "cluster": "dgx-h100", "nodes": [1, 2, 4],
          "price_per_device_hour": 2.5}]})");
  ASSERT_TRUE(sweep.ok()) << sweep.status().message();
  const CapacityWork work = *PlanCapacityWork(*sweep);
  ASSERT_EQ(work.points.size(), 3u);
  const CapacitySettings settings = SmallSettings();
  // Made-up outcomes: the 2-node cluster's own plan is slower than the
  // 1-node one's, the 4-node one faster.
  std::vector<CapacityOutcome> outcomes(work.jobs.size());
  for (size_t j = 0; j < work.jobs.size(); ++j) {
    CapacityOutcome& o = outcomes[j];
    o.found = true;
    o.devices_used = work.jobs[j].cluster.TotalDevices();
    o.summary = "plan " + std::to_string(j);
    o.bound = "compute";
    o.iteration_time = Picos(1'000'000'000'000);  // 1 s
  }
  outcomes[static_cast<size_t>(work.uses[1].point)].iteration_time = Picos(3'000'000'000'000);
  outcomes[static_cast<size_t>(work.uses[2].point)].iteration_time = Picos(500'000'000'000);
  Result<std::vector<CapacityRow>> rows = AssembleRows(settings, *sweep, work, outcomes);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 3u);
  const double tokens_per_iteration = 32.0 * 1024.0;
  for (const CapacityRow& r : *rows) {
    EXPECT_EQ(r.figures.tokens_per_s, tokens_per_iteration / r.figures.iteration_s);
    EXPECT_EQ(r.figures.days, settings.tokens / r.figures.tokens_per_s / 86400.0);
    EXPECT_EQ(r.figures.device_hours,
              r.devices * (settings.tokens / r.figures.tokens_per_s) / 3600.0);
    EXPECT_EQ(r.figures.cost, r.figures.device_hours * 2.5);
    const double flops = workload::TrainingFlopsPerToken(settings.model, 1024,
                                                         workload::RecomputeAccounting::kNone)
                             .model.count();
    EXPECT_DOUBLE_EQ(r.figures.mfu,
                     flops * r.figures.tokens_per_s /
                         (r.devices * topology::DevicePreset("h100-sxm5-80gb")
                                          ->Peak(topology::Precision::kBf16)
                                          ->FlopsPerSecond()));
  }
  // 16 devices run the 8-device plan (1 s, not their own 3 s), paying for 16.
  EXPECT_EQ((*rows)[1].figures.iteration_s, 1.0);
  EXPECT_EQ((*rows)[1].devices_used, 8);
  EXPECT_EQ((*rows)[1].devices, 16);
  EXPECT_EQ((*rows)[1].plan, (*rows)[0].plan);
  EXPECT_EQ((*rows)[2].figures.iteration_s, 0.5);
  EXPECT_EQ((*rows)[2].devices_used, 32);
  // Twice the devices: the next point's search, never slower than the point.
  EXPECT_EQ(*(*rows)[0].days_devices_x2, (*rows)[0].figures.days);
  EXPECT_EQ(*(*rows)[1].days_devices_x2, (*rows)[2].figures.days);
}

TEST(Capacity, DoublingTheClusterNeverReportsASlowerBestPlan) {
  Result<Sweep> sweep = SweepOf(
      R"({"clusters": [{"name": "h100", "cluster": "dgx-h100", "nodes": [1, 2, 4],
          "nic_gbps": [100], "price_per_device_hour": 2.5}]})");
  ASSERT_TRUE(sweep.ok()) << sweep.status().message();
  const CapacityWork work = *PlanCapacityWork(*sweep);
  const CapacitySettings settings = SmallSettings();
  std::vector<CapacityOutcome> outcomes;
  for (const CapacityJob& job : work.jobs) {
    Result<CapacityOutcome> o = RunCapacityJob(settings, job.cluster);
    ASSERT_TRUE(o.ok()) << o.status().message();
    ASSERT_TRUE(o->found) << job.label;
    EXPECT_GT(o->iteration_time, Duration::Zero());
    EXPECT_FALSE(o->simulated);
    EXPECT_FALSE(o->bound.empty());
    outcomes.push_back(*o);
  }
  Result<std::vector<CapacityRow>> rows = AssembleRows(settings, *sweep, work, outcomes);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 3u);
  for (size_t i = 0; i < rows->size(); ++i) {
    const CapacityRow& r = (*rows)[i];
    EXPECT_TRUE(r.found);
    EXPECT_LE(r.devices_used, r.devices);
    EXPECT_LE(*r.days_devices_x2, r.figures.days);
    EXPECT_LE(*r.days_nic_x2, r.figures.days);
    EXPECT_LE(*r.days_memory_x2, r.figures.days);
    if (i > 0) {
      EXPECT_LE(r.figures.days, (*rows)[i - 1].figures.days) << i;
    }
    // A bound is one of the documented labels.
    const bool known = r.bound == "compute" || r.bound == "memory capacity" ||
                       r.bound == "pipeline bubble" || r.bound.rfind("network:", 0) == 0 ||
                       r.bound.rfind("intra-node:", 0) == 0;
    EXPECT_TRUE(known) << r.bound;
  }
  EXPECT_EQ(RowsToCsv(*rows).substr(0, CapacityCsvHeader().size()), CapacityCsvHeader());
}

// A slow device slows the iteration (its tensor-parallel lane waits for
// it every layer), a degraded NIC does not speed it up, and the rows carry
// both as slowdowns and days at that pace, in the CSV's extra columns.
TEST(Capacity, FaultScenariosSlowThePointsBestPlan) {
  Result<Sweep> sweep = SweepOf(
      R"({"clusters": [{"name": "h100", "cluster": "dgx-h100", "nodes": [2],
          "price_per_device_hour": 2.5}],
          "faults": [{"name": "slow-gpu", "slow_device": ["0:1.5"]},
                     {"name": "half-nic", "degrade_link": ["node0/nic0:2"]}]})");
  ASSERT_TRUE(sweep.ok()) << sweep.status().message();
  const CapacityWork work = *PlanCapacityWork(*sweep, *ParseSensitivities("none"));
  ASSERT_TRUE(CheckSweepFaults(*sweep, work).ok());
  CapacitySettings settings = SmallSettings();
  settings.faults = sweep->faults;
  std::vector<CapacityOutcome> outcomes;
  for (const CapacityJob& job : work.jobs) {
    Result<CapacityOutcome> o = RunCapacityJob(settings, job.cluster, {}, job.is_point);
    ASSERT_TRUE(o.ok()) << o.status().message();
    ASSERT_TRUE(o->found);
    ASSERT_EQ(o->faults.size(), 2u);
    outcomes.push_back(*o);
  }
  const FaultOutcome& slow = outcomes[0].faults[0];
  // A 1.5× slower device slows a compute-bound iteration by most of 1.5×.
  EXPECT_GT(slow.slowdown(), 1.2);
  EXPECT_LE(slow.slowdown(), 1.5 + 1e-9);
  EXPECT_GE(outcomes[0].faults[1].slowdown(), 1.0);

  Result<std::vector<CapacityRow>> rows = AssembleRows(settings, *sweep, work, outcomes);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  const CapacityRow& r = rows->front();
  ASSERT_EQ(r.faults.size(), 2u);
  EXPECT_DOUBLE_EQ(*r.faults[0].slowdown, slow.slowdown());
  EXPECT_DOUBLE_EQ(*r.faults[0].days, r.figures.days * slow.slowdown());
  const std::string csv = RowsToCsv(*rows);
  EXPECT_THAT(csv.substr(0, csv.find('\n')),
              HasSubstr(",fault_slow-gpu_slowdown,fault_slow-gpu_days,"
                        "fault_half-nic_slowdown,fault_half-nic_days"));
  EXPECT_THAT(RowsToText(settings, *rows), HasSubstr("slow-gpu"));
}

}  // namespace
}  // namespace orrery::search
