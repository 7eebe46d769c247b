// The analytical fast path: the pipeline recurrence against the closed
// forms of SC21 (Narayanan et al., Eq. 1-2) and of the exposed transfers,
// and whole estimates of GPT presets on DGX A100 clusters.
#include "sim/analytical.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/units.h"
#include "sim/iteration.h"
#include "topology/presets.h"
#include "workload/model_presets.h"
#include "workload/plan.h"

namespace orrery::sim {
namespace {

using workload::PipelineSchedule;

// A table of p stages × vpp chunks, each chunk one layer of forward `f` and
// backward `b` compute.
StageCostTable UniformTable(int p, int vpp, Duration f, Duration b) {
  StageCostTable table;
  table.pp = p;
  table.vpp = vpp;
  for (int s = 0; s < p; ++s) {
    for (int c = 0; c < vpp; ++c) {
      ChunkCost chunk;
      chunk.stage = s;
      chunk.chunk = c;
      LayerCost layer;
      layer.forward = f;
      layer.backward = b;
      chunk.layers.push_back(layer);
      table.chunks.push_back(chunk);
    }
  }
  return table;
}

Duration Makespan(const PipelineInputs& inputs) {
  Result<PipelineTimes> times = EstimatePipeline(inputs);
  EXPECT_TRUE(times.ok()) << times.status().message();
  return times.ok() ? times->makespan : Duration::Zero();
}

PipelineInputs WithTransfers(PipelineInputs inputs, Duration t) {
  const size_t boundaries = static_cast<size_t>(inputs.pp * inputs.vpp - 1);
  inputs.activation_transfer.assign(boundaries, t);
  inputs.gradient_transfer.assign(boundaries, t);
  return inputs;
}

TEST(EstimatePipeline, GpipeAndOneFOneBTakeMPlusPMinusOneStagesWithFreeTransfers) {
  const Duration f = Micros(3);
  const Duration b = Micros(5);
  for (const PipelineSchedule schedule : {PipelineSchedule::kGpipe, PipelineSchedule::kOneFOneB}) {
    for (const int p : {1, 2, 4, 8}) {
      for (const int m : {1, 3, 8, 32}) {
        const PipelineInputs inputs =
            PipelineInputs::FromCosts(UniformTable(p, 1, f, b), schedule, m);
        EXPECT_EQ(Makespan(inputs), (f + b) * (m + p - 1))
            << workload::PipelineScheduleName(schedule) << " p " << p << " m " << m;
      }
    }
  }
}

TEST(EstimatePipeline, InterleavingShrinksTheBubbleByTheChunkCount) {
  // Per stage F = vpp·f, B = vpp·b: T = (m + (p − 1)/vpp)·(F + B) = (m·vpp + p − 1)(f + b).
  const Duration f = Micros(2);
  const Duration b = Micros(4);
  for (const int p : {2, 4}) {
    for (const int vpp : {2, 3, 4}) {
      for (const int m : {p, 2 * p, 8 * p}) {
        const PipelineInputs inputs = PipelineInputs::FromCosts(
            UniformTable(p, vpp, f, b), PipelineSchedule::kInterleaved, m);
        const Duration t = Makespan(inputs);
        EXPECT_EQ(t, (f + b) * (m * vpp + p - 1)) << "p " << p << " vpp " << vpp << " m " << m;
        // Against 1F1B with the same stage costs, the bubble (p − 1)(F + B)
        // becomes (p − 1)(F + B)/vpp.
        const Duration stage = (f + b) * vpp;
        EXPECT_EQ(t - stage * m, stage * (p - 1) / vpp);
      }
    }
  }
}

TEST(EstimatePipeline, OneFOneBExposesTransfersInEverySteadyStateMicroBatch) {
  // Equal stages, transfers of t each way, m a multiple of p:
  // T = (m + p − 1)(F + B) + 2((p − 1)·m/p + p − 2)·t (the header's derivation).
  const Duration f = Micros(3);
  const Duration b = Micros(6);
  const Duration t = Micros(1);
  for (const int p : {2, 3, 4, 8}) {
    for (const int m : {p, 4 * p, 32 * p}) {
      const PipelineInputs inputs = WithTransfers(
          PipelineInputs::FromCosts(UniformTable(p, 1, f, b), PipelineSchedule::kOneFOneB, m), t);
      EXPECT_EQ(Makespan(inputs), (f + b) * (m + p - 1) + t * (2 * ((p - 1) * m / p + p - 2)))
          << "p " << p << " m " << m;
    }
  }
}

TEST(EstimatePipeline, GpipeExposesTransfersOnlyInFillAndDrain) {
  // T = (m + p − 1)(F + B) + 2(p − 1)·t when t <= F, B.
  const Duration f = Micros(3);
  const Duration b = Micros(6);
  const Duration t = Micros(1);
  for (const int p : {2, 4, 8}) {
    for (const int m : {1, 4, 16}) {
      const PipelineInputs inputs = WithTransfers(
          PipelineInputs::FromCosts(UniformTable(p, 1, f, b), PipelineSchedule::kGpipe, m), t);
      EXPECT_EQ(Makespan(inputs), (f + b) * (m + p - 1) + t * (2 * (p - 1)))
          << "p " << p << " m " << m;
    }
  }
}

TEST(EstimatePipeline, AccountsEveryStageTimeAsBusyExposedOrBubble) {
  StageCostTable table = UniformTable(4, 1, Micros(3), Micros(6));
  table.chunks[2].layers[0].backward = Micros(9);  // a slow stage
  const PipelineInputs inputs = WithTransfers(
      PipelineInputs::FromCosts(table, PipelineSchedule::kOneFOneB, 8), Micros(1));
  Result<PipelineTimes> times = EstimatePipeline(inputs);
  ASSERT_TRUE(times.ok());
  Duration lower;  // Σ_s (F_s + B_s) + (m − 1)·max_s (F_s + B_s)
  Duration slowest;
  for (int s = 0; s < 4; ++s) {
    const Duration stage = inputs.forward[static_cast<size_t>(s)] +
                           inputs.backward[static_cast<size_t>(s)];
    lower += stage;
    slowest = std::max(slowest, stage);
  }
  lower += slowest * 7;
  EXPECT_GE(times->makespan, lower);
  for (const PipelineStageTimes& st : times->stages) {
    EXPECT_EQ(st.busy + st.p2p_exposed + st.bubble, st.end);
    EXPECT_GT(st.p2p_exposed, Duration::Zero());
  }
  // The first stage's last backward ends the pipeline.
  EXPECT_EQ(times->stages[0].end, times->makespan);
}

TEST(EstimatePipeline, RejectsInconsistentInputs) {
  PipelineInputs inputs =
      PipelineInputs::FromCosts(UniformTable(2, 1, Micros(1), Micros(1)),
                                PipelineSchedule::kOneFOneB, 4);
  inputs.activation_transfer = {Micros(1), Micros(1)};  // one boundary, two times
  EXPECT_FALSE(EstimatePipeline(inputs).ok());
  PipelineInputs interleaved = PipelineInputs::FromCosts(
      UniformTable(2, 2, Micros(1), Micros(1)), PipelineSchedule::kInterleaved, 3);
  EXPECT_FALSE(EstimatePipeline(interleaved).ok());  // m not a multiple of p
}

struct Fixture {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
};

Fixture Load(const std::string& model, const std::string& cluster, int nodes) {
  Result<workload::ModelSpec> m = workload::ModelPreset(model);
  Result<topology::ClusterSpec> c = topology::ResolveCluster(cluster, nodes);
  EXPECT_TRUE(m.ok() && c.ok());
  return {*m, *c};
}

// The identities every estimate satisfies (see the header).
void ExpectConsistent(const AnalyticalEstimate& e) {
  EXPECT_EQ(e.pipeline + e.exposed_dp + e.optimizer + e.param_gather, e.iteration_time);
  const AnalyticalStage& bottleneck = e.stages[static_cast<size_t>(e.bottleneck_stage)];
  EXPECT_EQ(bottleneck.busy + e.p2p_exposed + e.bubble, e.pipeline);
  for (const AnalyticalStage& s : e.stages) {
    EXPECT_EQ(s.compute + s.recompute + s.exposed_comm + s.bubble, e.iteration_time)
        << "stage " << s.stage;
    EXPECT_LE(s.end, e.iteration_time);
    EXPECT_GE(s.exposed_dp, Duration::Zero());
    EXPECT_GE(s.bubble, Duration::Zero());
  }
}

TEST(AnalyticalModel, DataParallelReductionHidesBehindBackwardUpToItsLength) {
  // GPT 1.7B on two DGX A100 nodes, TP8 PP1 DP2: the dp group crosses the
  // nodes, buckets of 40M parameters reduce during the last backward.
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const workload::Plan plan = workload::Plan::Uniform(f.model, 1, {.tp = 8, .dp = 2}, 16, 2);
  Result<AnalyticalEstimate> e = model->Estimate(f.model, plan);
  ASSERT_TRUE(e.ok()) << e.status().message();
  ASSERT_EQ(e->stages.size(), 1u);
  const AnalyticalStage& stage = e->stages[0];
  EXPECT_EQ(e->micro_batches, 4);
  EXPECT_GT(stage.buckets, 1);
  EXPECT_GT(stage.gradient_reduction, Duration::Zero());
  EXPECT_GE(e->exposed_dp, Duration::Zero());
  EXPECT_LE(e->exposed_dp, stage.gradient_reduction);
  // One stage: no bubble, no transfers.
  EXPECT_EQ(e->pipeline, (stage.forward + stage.backward) * 4);
  EXPECT_EQ(e->bubble, Duration::Zero());
  EXPECT_EQ(e->p2p_transfer, Duration::Zero());
  EXPECT_GT(e->optimizer, Duration::Zero());
  EXPECT_EQ(e->param_gather, Duration::Zero());
  EXPECT_GT(stage.comm_in_path, Duration::Zero());  // TP all-reduces
  EXPECT_GT(e->peak_memory, Bytes::Zero());
  EXPECT_TRUE(e->fits);
  ExpectConsistent(*e);

  // The same estimate again, and from a second model of the cluster.
  Result<AnalyticalEstimate> again = model->EstimateValidated(f.model, plan);
  Result<AnalyticalModel> other = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(again.ok() && other.ok());
  Result<AnalyticalEstimate> third = other->Estimate(f.model, plan);
  ASSERT_TRUE(third.ok());
  for (const AnalyticalEstimate* x : {&*again, &*third}) {
    EXPECT_EQ(x->iteration_time, e->iteration_time);
    EXPECT_EQ(x->exposed_dp, e->exposed_dp);
    EXPECT_EQ(x->stages[0].busy, stage.busy);
  }
}

TEST(AnalyticalModel, ZeroShardsTheOptimizerAndGathersParametersAfterIt) {
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  const workload::Plan plain = workload::Plan::Uniform(f.model, 1, {.tp = 8, .dp = 2}, 16, 2);
  const workload::Plan zero1 =
      workload::Plan::Uniform(f.model, 1, {.tp = 8, .dp = 2, .zero_stage = 1}, 16, 2);
  Result<AnalyticalEstimate> a = model->Estimate(f.model, plain);
  Result<AnalyticalEstimate> z = model->Estimate(f.model, zero1);
  ASSERT_TRUE(a.ok() && z.ok());
  EXPECT_LT(z->optimizer, a->optimizer);
  EXPECT_GT(z->param_gather, Duration::Zero());
  EXPECT_EQ(z->stages[0].buckets, a->stages[0].buckets);
  // A reduce-scatter moves half an all-reduce's bytes.
  EXPECT_LT(z->stages[0].gradient_reduction, a->stages[0].gradient_reduction);
  ExpectConsistent(*z);

  const workload::Plan zero3 =
      workload::Plan::Uniform(f.model, 1, {.tp = 8, .dp = 2, .zero_stage = 3}, 16, 2);
  Result<AnalyticalEstimate> z3 = model->Estimate(f.model, zero3);
  ASSERT_TRUE(z3.ok()) << z3.status().message();
  EXPECT_EQ(z3->param_gather, Duration::Zero());
  EXPECT_GE(z3->pipeline, a->pipeline);  // passes wait for gathers, never less
  ExpectConsistent(*z3);
}

TEST(AnalyticalModel, PipelineTransfersCrossTheNodesAtTheNicRate) {
  // PP2 over two nodes: stage 0 on node 0, stage 1 on node 1; each of the 8
  // tp ranks sends p2p_bytes (scatter-gather: 1/tp of the activations)
  // through its own NIC.
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  const workload::Plan plan = workload::Plan::Uniform(f.model, 2, {.tp = 8, .dp = 1}, 16, 1);
  Result<AnalyticalEstimate> e = model->Estimate(f.model, plan);
  ASSERT_TRUE(e.ok()) << e.status().message();
  ASSERT_EQ(e->stages.size(), 2u);
  EXPECT_EQ(e->micro_batches, 16);
  EXPECT_EQ(e->stages[0].first_rank, 0);
  EXPECT_EQ(e->stages[1].first_rank, 8);
  // b·s·h·2 / tp bytes.
  EXPECT_EQ(e->p2p_bytes, Bytes(int64_t{1} * f.model.default_sequence_length *
                                f.model.hidden_size * 2 / 8));
  const Duration wire = e->p2p_bytes / f.cluster.PrimaryNodeType().nics.front().bandwidth;
  EXPECT_GE(e->p2p_transfer, wire);
  EXPECT_LT(e->p2p_transfer, wire + Micros(20));
  EXPECT_GT(e->bubble, Duration::Zero());
  EXPECT_GT(e->p2p_exposed, Duration::Zero());
  EXPECT_EQ(e->exposed_dp, Duration::Zero());  // dp = 1
  ExpectConsistent(*e);

  workload::Plan interleaved = plan;
  interleaved.schedule = PipelineSchedule::kInterleaved;
  interleaved.vpp = 2;
  Result<AnalyticalEstimate> i = model->Estimate(f.model, interleaved);
  ASSERT_TRUE(i.ok()) << i.status().message();
  EXPECT_LT(i->bubble, e->bubble);
  ExpectConsistent(*i);
}

TEST(AnalyticalModel, RejectsPlansThatDoNotFitAndUnknownPrecisions) {
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 1);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  const workload::Plan too_big = workload::Plan::Uniform(f.model, 1, {.tp = 8, .dp = 2}, 16, 2);
  EXPECT_EQ(model->Estimate(f.model, too_big).status().code(), StatusCode::kFailedPrecondition);
  workload::Plan fp8 = workload::Plan::Uniform(f.model, 1, {.tp = 8}, 16, 2);
  fp8.precision = topology::Precision::kFp8;  // A100 has no fp8 peak
  Result<AnalyticalEstimate> e = model->Estimate(f.model, fp8);
  EXPECT_FALSE(e.ok());
}


// Analytical estimate vs the event simulation of the same plan, both with
// the overlap slowdown given explicitly; the relative gap (a − s) / s.
struct Gap {
  Duration simulated;
  Duration analytical;
  double gap = 0;
};

Gap Compare(const Fixture& f, const AnalyticalModel& model, const workload::Plan& plan,
            bool free_communication, double overlap_slowdown) {
  IterationOptions sim_options;
  sim_options.free_communication = free_communication;
  sim_options.overlap_slowdown = overlap_slowdown;
  Result<IterationReport> sim = SimulateIteration(f.model, plan, f.cluster, sim_options);
  EXPECT_TRUE(sim.ok()) << sim.status().message();
  AnalyticalOptions options;
  options.free_communication = free_communication;
  options.overlap_slowdown = overlap_slowdown;
  Result<AnalyticalEstimate> e = model.Estimate(f.model, plan, options);
  EXPECT_TRUE(e.ok()) << e.status().message();
  if (!sim.ok() || !e.ok()) return {};
  ExpectConsistent(*e);
  Gap g{sim->iteration_time, e->iteration_time, 0};
  g.gap = (e->iteration_time.ToSeconds() - sim->iteration_time.ToSeconds()) /
          sim->iteration_time.ToSeconds();
  return g;
}

std::string Describe(const workload::Plan& plan) {
  const workload::LayerStrategy& l = plan.layers.front();
  return std::string(workload::PipelineScheduleName(plan.schedule)) + " pp " +
         std::to_string(plan.pp) + " tp " + std::to_string(l.tp) + " dp " +
         std::to_string(l.dp) + " zero " + std::to_string(l.zero_stage) +
         (l.sequence_parallel ? " sp" : "") + " recompute " +
         std::string(workload::RecomputeName(l.recompute));
}

constexpr workload::Recompute kRecomputes[] = {
    workload::Recompute::kNone, workload::Recompute::kSelective, workload::Recompute::kFull};

TEST(AnalyticalModel, AgreesWithTheSimulationWhereNoTrafficContends) {
  // GPT 1.7B on DGX A100 nodes. PP2 × TP8 over two nodes, dp 1: the TP
  // collectives stay on each node's NVSwitch, each tp rank's pipeline
  // sends cross its own NIC alone. TP8 × DP2 over two nodes: the gradient
  // rings alone on the NICs. One node, TP8: no transfers at all.
  Fixture two = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Fixture one = Load("gpt-1.7b", "dgx-a100-80gb", 1);
  Result<AnalyticalModel> two_model = AnalyticalModel::Create(two.cluster);
  Result<AnalyticalModel> one_model = AnalyticalModel::Create(one.cluster);
  ASSERT_TRUE(two_model.ok() && one_model.ok());
  std::vector<workload::Plan> on_two;
  std::vector<workload::Plan> on_one;
  for (const workload::Recompute r : kRecomputes) {
    for (const PipelineSchedule schedule :
         {PipelineSchedule::kGpipe, PipelineSchedule::kOneFOneB, PipelineSchedule::kInterleaved}) {
      workload::Plan plan = workload::Plan::Uniform(two.model, 2, {.tp = 8, .recompute = r}, 16, 1);
      plan.schedule = schedule;
      if (schedule == PipelineSchedule::kInterleaved) plan.vpp = 3;
      on_two.push_back(plan);
    }
    on_two.push_back(workload::Plan::Uniform(
        two.model, 2, {.tp = 8, .sequence_parallel = true, .recompute = r}, 16, 2));
    on_one.push_back(workload::Plan::Uniform(one.model, 1, {.tp = 8, .recompute = r}, 8, 1));
  }
  for (const int zero : {0, 1, 3}) {
    on_two.push_back(
        workload::Plan::Uniform(two.model, 1, {.tp = 8, .dp = 2, .zero_stage = zero}, 16, 2));
  }
  for (const workload::Plan& plan : on_two) {
    const Gap g = Compare(two, *two_model, plan, false, 0.0);
    EXPECT_LE(std::abs(g.gap), 0.02) << Describe(plan) << ": simulated "
                                     << FormatDuration(g.simulated) << ", analytical "
                                     << FormatDuration(g.analytical);
  }
  for (const workload::Plan& plan : on_one) {
    const Gap g = Compare(one, *one_model, plan, false, 0.0);
    EXPECT_LE(std::abs(g.gap), 0.02) << Describe(plan) << ": simulated "
                                     << FormatDuration(g.simulated) << ", analytical "
                                     << FormatDuration(g.analytical);
  }
}

TEST(AnalyticalModel, SlowsComputeOverlappingTheGradientReductionAsTheReplayDoes) {
  // TP8 × DP2 over two nodes with σ = 0.2: the compute tasks of the last
  // backward that start while a bucket reduces (ZeRO-3: while any gather
  // or reduce-scatter runs) last 1.2 times longer.
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  for (const int zero : {0, 1, 3}) {
    for (const workload::Recompute r : {workload::Recompute::kNone, workload::Recompute::kFull}) {
      const workload::Plan plan = workload::Plan::Uniform(
          f.model, 1, {.tp = 8, .dp = 2, .zero_stage = zero, .recompute = r}, 32, 2);
      const Gap slowed = Compare(f, *model, plan, false, 0.2);
      EXPECT_LE(std::abs(slowed.gap), 0.02) << Describe(plan) << ": simulated "
                                            << FormatDuration(slowed.simulated) << ", analytical "
                                            << FormatDuration(slowed.analytical);
      AnalyticalOptions options;
      options.overlap_slowdown = 0.0;
      Result<AnalyticalEstimate> plain = model->Estimate(f.model, plan, options);
      ASSERT_TRUE(plain.ok());
      EXPECT_GT(slowed.analytical, plain->iteration_time) << Describe(plan);
    }
  }
}

TEST(AnalyticalModel, EqualsTheSimulationWhenCommunicationIsFree) {
  // Compute only: the recurrence is the replay of the compute streams, so
  // the two agree to the picosecond, whatever the parallelism — ZeRO's
  // collectives, the dp stream and the overlap slowdown vanish with it.
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 4);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  std::vector<workload::Plan> plans;
  for (const int zero : {0, 1, 3}) {
    plans.push_back(
        workload::Plan::Uniform(f.model, 2, {.tp = 4, .dp = 4, .zero_stage = zero}, 32, 1));
    plans.push_back(
        workload::Plan::Uniform(f.model, 1, {.tp = 8, .dp = 4, .zero_stage = zero}, 16, 2));
    workload::Plan interleaved = workload::Plan::Uniform(
        f.model, 4, {.tp = 2, .dp = 4, .zero_stage = zero, .recompute = workload::Recompute::kFull},
        64, 2);
    interleaved.schedule = PipelineSchedule::kInterleaved;
    interleaved.vpp = 2;
    plans.push_back(interleaved);
    workload::Plan gpipe = workload::Plan::Uniform(
        f.model, 8, {.tp = 1, .dp = 4, .zero_stage = zero,
                     .recompute = workload::Recompute::kSelective}, 32, 1);
    gpipe.schedule = PipelineSchedule::kGpipe;
    plans.push_back(gpipe);
  }
  for (const workload::Plan& plan : plans) {
    for (const double sigma : {0.0, 0.3}) {
      const Gap g = Compare(f, *model, plan, true, sigma);
      EXPECT_EQ(g.analytical, g.simulated) << Describe(plan) << " σ " << sigma;
      EXPECT_GT(g.analytical, Duration::Zero());
    }
  }
}

// A slow device: with free communication the replica holding it is the
// whole iteration, so the estimate (replica 0 with that stage slowed)
// equals the simulation (the slow rank's lane slowed) to the picosecond,
// wherever the rank is — another replica, another stage, a tp peer — and
// whichever pipeline schedule runs.
TEST(AnalyticalModel, ASlowDeviceSlowsItsStageAsTheSimulationDoes) {
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 4);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  std::vector<workload::Plan> plans;
  plans.push_back(workload::Plan::Uniform(f.model, 2, {.tp = 4, .dp = 4}, 32, 1));
  plans.push_back(workload::Plan::Uniform(f.model, 4, {.tp = 2, .dp = 4, .zero_stage = 1}, 32, 1));
  workload::Plan gpipe = workload::Plan::Uniform(f.model, 8, {.tp = 1, .dp = 4}, 32, 1);
  gpipe.schedule = PipelineSchedule::kGpipe;
  plans.push_back(gpipe);
  for (const workload::Plan& plan : plans) {
    IterationOptions healthy_options;
    healthy_options.free_communication = true;
    const Duration healthy =
        SimulateIteration(f.model, plan, f.cluster, healthy_options)->iteration_time;
    for (const std::vector<SlowDevice>& slow : std::vector<std::vector<SlowDevice>>{
             {{0, 1.5}}, {{31, 1.25}}, {{13, 2.0}}, {{13, 1.5}, {13, 1.2}, {12, 1.1}}}) {
      IterationOptions sim_options;
      sim_options.free_communication = true;
      sim_options.faults.slow_devices = slow;
      Result<IterationReport> sim = SimulateIteration(f.model, plan, f.cluster, sim_options);
      ASSERT_TRUE(sim.ok()) << sim.status().message();
      AnalyticalOptions options;
      options.free_communication = true;
      options.slow_devices = slow;
      Result<AnalyticalEstimate> e = model->Estimate(f.model, plan, options);
      ASSERT_TRUE(e.ok()) << e.status().message();
      ExpectConsistent(*e);
      EXPECT_EQ(e->iteration_time, sim->iteration_time) << Describe(plan) << " rank "
                                                         << slow.front().rank;
      EXPECT_GT(e->iteration_time, healthy) << Describe(plan);
    }
  }
  // Slow ranks in two replicas and two stages: the estimate slows both
  // stages of one replica, an upper bound of the simulation's.
  {
    IterationOptions sim_options;
    sim_options.free_communication = true;
    sim_options.faults.slow_devices = {{13, 1.8}, {20, 1.1}};  // pp 0 dp 3; pp 1 dp 1
    AnalyticalOptions options;
    options.free_communication = true;
    options.slow_devices = sim_options.faults.slow_devices;
    const Duration simulated =
        SimulateIteration(f.model, plans.front(), f.cluster, sim_options)->iteration_time;
    const Duration estimated = model->Estimate(f.model, plans.front(), options)->iteration_time;
    EXPECT_GT(estimated, simulated);
  }
  // The rank must be one of the plan's.
  AnalyticalOptions options;
  options.slow_devices = {{32, 1.5}};
  Result<AnalyticalEstimate> e = model->Estimate(f.model, plans.front(), options);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), ::testing::HasSubstr("rank 32"));
}

TEST(AnalyticalModel, TensorParallelOverlapHidesCollectivesBehindCompute) {
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  const workload::Plan plan =
      workload::Plan::Uniform(f.model, 2, {.tp = 8, .dp = 1, .zero_stage = 0}, 16, 2);
  AnalyticalOptions serial;
  AnalyticalOptions overlapped;
  overlapped.graph.tp_comm_overlap = true;
  AnalyticalOptions free;
  free.free_communication = true;
  Result<AnalyticalEstimate> a = model->Estimate(f.model, plan, serial);
  Result<AnalyticalEstimate> b = model->Estimate(f.model, plan, overlapped);
  Result<AnalyticalEstimate> c = model->Estimate(f.model, plan, free);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ExpectConsistent(*b);
  EXPECT_LT(b->iteration_time, a->iteration_time);
  EXPECT_GE(b->iteration_time, c->iteration_time);
  // Each layer pass takes max(compute, TP) instead of their sum.
  EXPECT_LT(b->stages[0].comm_in_path, a->stages[0].comm_in_path);
  EXPECT_EQ(b->stages[0].compute, a->stages[0].compute);
}

TEST(AnalyticalModel, AgreesWithTheSimulationOnTensorParallelOverlapInOneStage) {
  // TP8 × DP2 over two nodes, one stage: each layer takes max(compute, TP)
  // in both.
  Fixture f = Load("gpt-1.7b", "dgx-a100-80gb", 2);
  Result<AnalyticalModel> model = AnalyticalModel::Create(f.cluster);
  ASSERT_TRUE(model.ok());
  const workload::Plan plan = workload::Plan::Uniform(f.model, 1, {.tp = 8, .dp = 2}, 16, 1);
  IterationOptions sim_options;
  sim_options.overlap_slowdown = 0.0;
  sim_options.graph.tp_comm_overlap = true;
  Result<IterationReport> sim = SimulateIteration(f.model, plan, f.cluster, sim_options);
  AnalyticalOptions options;
  options.overlap_slowdown = 0.0;
  options.graph.tp_comm_overlap = true;
  Result<AnalyticalEstimate> e = model->Estimate(f.model, plan, options);
  ASSERT_TRUE(sim.ok() && e.ok());
  EXPECT_NEAR(e->iteration_time.ToSeconds(), sim->iteration_time.ToSeconds(),
              0.02 * sim->iteration_time.ToSeconds());
  ExpectConsistent(*e);
}

}  // namespace
}  // namespace orrery::sim
