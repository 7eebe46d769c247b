// SimulateIteration end to end: closed forms under free communication,
// schedules, memory from the run against the memory model, contention, and
// a golden report of a small plan (tests/sim/golden/).
#include "sim/iteration.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <algorithm>
#include <map>
#include <string>

#include "core/file.h"
#include "core/json.h"
#include "sim/chrome_timeline.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::sim {
namespace {

using workload::LayerStrategy;
using workload::PipelineSchedule;
using workload::Plan;

struct Env {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
};

Env Load(const std::string& model, const std::string& cluster, int nodes) {
  Result<workload::ModelSpec> m = workload::ModelPreset(model);
  Result<topology::ClusterSpec> c = topology::ResolveCluster(cluster, nodes);
  EXPECT_TRUE(m.ok()) << m.status().message();
  EXPECT_TRUE(c.ok()) << c.status().message();
  return {*m, *c};
}

Duration Sum(const LaneTimes& t) { return t.compute + t.recompute + t.exposed_comm + t.bubble; }

TEST(SimulateIteration, EveryLaneAccountsForTheWholeIteration) {
  Env s = Load("gpt-1.7b", "dgx-h100", 2);
  Plan plan = Plan::Uniform(s.model, 4, {.tp = 2, .dp = 2}, 64, 2);
  IterationTrace trace;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, {}, &trace);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->lanes, 8);  // 16 devices / tp 2
  EXPECT_EQ(r->devices, 16);
  for (const LaneTimes& t : trace.replay.lanes) EXPECT_EQ(Sum(t), r->iteration_time);
  EXPECT_EQ(Sum(r->breakdown), r->iteration_time);
  EXPECT_GT(r->flows, 0);
  // Throughput is what the iteration time says.
  EXPECT_NEAR(r->samples_per_s * r->iteration_time.ToSeconds(), 64.0, 1e-6);
  EXPECT_NEAR(r->tokens_per_s, r->samples_per_s * 2048, 1e-6 * r->tokens_per_s);
}

TEST(SimulateIteration, FreeCommunicationOneFOneBIsNarayananEquationOne) {
  // One stage: m micro-batches back to back, then the optimizer step.
  Env s = Load("gpt-1.7b", "dgx-h100", 1);
  Plan plan = Plan::Uniform(s.model, 1, {.tp = 1, .dp = 8}, 64, 2);
  IterationOptions options;
  options.free_communication = true;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const StageReport& st = r->stages[0];
  const Duration passes = (st.forward + st.backward) * r->micro_batches;
  EXPECT_EQ(r->breakdown.exposed_comm, Duration::Zero());
  EXPECT_EQ(r->breakdown.bubble, Duration::Zero());
  EXPECT_GT(r->iteration_time, passes);  // + the optimizer step
  EXPECT_LT(r->iteration_time, passes + passes / 20);
}

TEST(SimulateIteration, FreeCommunicationOneFOneBRunsAtTheSlowestStagesPace) {
  // Free communication, 4 stages of unequal cost (the embedding and the LM
  // head make the end stages longer): 1F1B takes Σ_s (F_s + B_s) for the
  // fill and drain plus (m − 1)·max_s (F_s + B_s) in the steady state
  // (Narayanan et al., SC21, Eq. 1 for equal stages), then the optimizer.
  Env s = Load("gpt-1.7b", "dgx-h100", 1);
  Plan plan = Plan::Uniform(s.model, 4, {.tp = 1, .dp = 2}, 64, 2);
  IterationOptions options;
  options.free_communication = true;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  Duration sum;
  Duration slowest;
  for (const StageReport& st : r->stages) {
    sum += st.forward + st.backward;
    slowest = std::max(slowest, st.forward + st.backward);
  }
  const Duration pipeline = sum + slowest * (r->micro_batches - 1);
  EXPECT_GE(r->iteration_time, pipeline);
  EXPECT_LT(r->iteration_time, pipeline + pipeline / 50);  // + the optimizer step
}

TEST(SimulateIteration, InterleavingShrinksTheBubbleByAboutV) {
  // Equal chunks make the bubble (p − 1)(F + B)/v (SC21 §2.2.2). The
  // middle stages of gpt-1.7b are equal; the end stages carry the embedding
  // and head, so compare the bubble of the first stage against the closed
  // form within a tolerance for them.
  Env s = Load("gpt-1.7b", "dgx-h100", 1);
  IterationOptions options;
  options.free_communication = true;
  Plan plain = Plan::Uniform(s.model, 4, {.tp = 1, .dp = 2}, 32, 2);
  Plan interleaved = plain;
  interleaved.schedule = PipelineSchedule::kInterleaved;
  interleaved.vpp = 3;
  Result<IterationReport> a = SimulateIteration(s.model, plain, s.cluster, options);
  Result<IterationReport> b = SimulateIteration(s.model, interleaved, s.cluster, options);
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_LT(b->iteration_time, a->iteration_time);
  const Duration mb = b->stages[1].forward + b->stages[1].backward;
  const double closed_plain = 3.0 * mb.ToSeconds();
  const double closed_interleaved = closed_plain / 3;
  // The time saved is about the bubble interleaving removes.
  const double saved = (a->iteration_time - b->iteration_time).ToSeconds();
  EXPECT_NEAR(saved, closed_plain - closed_interleaved, 0.25 * (closed_plain - closed_interleaved));
}

TEST(SimulateIteration, PeakMemoryOfTheRunMatchesTheMemoryModel) {
  Env s = Load("gpt-1.7b", "dgx-h100", 2);
  for (PipelineSchedule schedule : {PipelineSchedule::kGpipe, PipelineSchedule::kOneFOneB}) {
    for (workload::Recompute recompute : {workload::Recompute::kNone,
                                          workload::Recompute::kSelective,
                                          workload::Recompute::kFull}) {
      Plan plan = Plan::Uniform(s.model, 4, {.tp = 2, .dp = 2, .recompute = recompute}, 32, 2);
      plan.schedule = schedule;
      Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster);
      ASSERT_TRUE(r.ok()) << r.status().message();
      for (const StageReport& st : r->stages) {
        const double run = static_cast<double>(st.peak_memory.count());
        const double model = static_cast<double>(st.estimated_memory.count());
        // Equal for every stage but one case: with recomputation the LM
        // head's backward frees its activations before the last block is
        // recomputed, which the closed form does not credit (the replay is
        // lower by the smaller of the two, a few percent of the last stage).
        EXPECT_LE(run, model * 1.001);
        EXPECT_NEAR(run, model, 0.05 * model)
            << workload::PipelineScheduleName(schedule) << " stage " << st.stage
            << " recompute " << static_cast<int>(recompute);
      }
    }
  }
}

TEST(SimulateIteration, DataParallelTrafficContendsWithPipelineTraffic) {
  // Communication costs time only where it is exposed: free communication is
  // never slower, and the report's exposed communication is what is left.
  Env s = Load("gpt-1.7b", "dgx-h100", 4);
  Plan plan = Plan::Uniform(s.model, 4, {.tp = 1, .dp = 8}, 128, 2);
  IterationOptions free;
  free.free_communication = true;
  Result<IterationReport> with = SimulateIteration(s.model, plan, s.cluster);
  Result<IterationReport> without = SimulateIteration(s.model, plan, s.cluster, free);
  ASSERT_TRUE(with.ok()) << with.status().message();
  ASSERT_TRUE(without.ok()) << without.status().message();
  EXPECT_GT(with->iteration_time, without->iteration_time);
  EXPECT_GT(with->breakdown.exposed_comm, Duration::Zero());
}

TEST(SimulateIteration, TwoRunsAreIdentical) {
  Env s = Load("gpt-1.7b", "dgx-h100", 2);
  Plan plan = Plan::Uniform(s.model, 2, {.tp = 4, .dp = 2, .zero_stage = 1}, 32, 2);
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  Result<IterationReport> a = SimulateIteration(s.model, plan, s.cluster);
  Result<IterationReport> b = SimulateIteration(s.model, plan, s.cluster);
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->iteration_time, b->iteration_time);
  EXPECT_EQ(a->events, b->events);
  EXPECT_EQ(a->peak_memory, b->peak_memory);
}

TEST(SimulateIteration, RejectsAnInvalidPlan) {
  Env s = Load("gpt-1.7b", "dgx-h100", 1);
  Plan plan = Plan::Uniform(s.model, 4, {.tp = 2, .dp = 2}, 64, 2);  // 16 devices on 8
  EXPECT_FALSE(SimulateIteration(s.model, plan, s.cluster).ok());
}

// The golden summary of a small plan: the report's numbers and, per task
// label, how many tasks ran and their total time. Regenerate with
// ORRERY_UPDATE_GOLDEN=1 after a deliberate change, and say why in the
// commit.
Json GoldenSummary(const IterationReport& r, const IterationTrace& trace) {
  Json j = Json::object();
  j["iteration_time_ps"] = r.iteration_time.picos();
  j["peak_memory_bytes"] = r.peak_memory.count();
  j["lanes"] = r.lanes;
  j["tasks"] = r.tasks;
  j["flows"] = r.flows;
  j["events"] = r.events;
  Json stages = Json::array();
  for (const StageReport& st : r.stages) {
    stages.push_back({{"compute_ps", st.times.compute.picos()},
                      {"recompute_ps", st.times.recompute.picos()},
                      {"exposed_comm_ps", st.times.exposed_comm.picos()},
                      {"bubble_ps", st.times.bubble.picos()},
                      {"peak_memory_bytes", st.peak_memory.count()}});
  }
  j["stages"] = stages;
  std::map<std::string, std::pair<int64_t, int64_t>> by_label;  // count, Σ ps
  for (const TaskSpan& span : trace.replay.spans) {
    auto& [count, total] =
        by_label[std::string(TaskLabelName(trace.graph.graph.task(span.task).label))];
    ++count;
    total += (span.end - span.start).picos();
  }
  Json timeline = Json::object();
  for (const auto& [label, v] : by_label) {
    timeline[label] = {{"tasks", v.first}, {"total_ps", v.second}};
  }
  j["timeline"] = timeline;
  return j;
}

TEST(SimulateIteration, GoldenReportOfASmallPlan) {
  Env s = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Plan plan = Plan::Uniform(s.model, 2,
                            {.tp = 2, .dp = 4, .sequence_parallel = true,
                             .recompute = workload::Recompute::kSelective},
                            32, 2);
  plan.schedule = PipelineSchedule::kInterleaved;
  plan.vpp = 2;
  IterationTrace trace;
  Result<IterationReport> r = SimulateIteration(s.model, plan, s.cluster, {}, &trace);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Json summary = GoldenSummary(*r, trace);
  const std::string path =
      std::string(ORRERY_SOURCE_DIR) + "/tests/sim/golden/gpt-1.7b_tp2_pp2_vpp2_dp4.json";
  if (std::getenv("ORRERY_UPDATE_GOLDEN") != nullptr) {
    ASSERT_TRUE(WriteFileAtomically(path, DumpJson(summary)).ok());
  }
  Result<std::string> golden = ReadFile(path);
  ASSERT_TRUE(golden.ok()) << "missing " << path << ": run with ORRERY_UPDATE_GOLDEN=1";
  EXPECT_EQ(DumpJson(summary), *golden);
  // The timeline of the same run opens as a Chrome trace with every rank.
  const Json chrome = TraceToChromeTrace(trace);
  EXPECT_GT(chrome["traceEvents"].size(), summary["tasks"].get<size_t>());
}

}  // namespace
}  // namespace orrery::sim
