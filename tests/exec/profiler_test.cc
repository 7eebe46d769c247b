// The compute profiler on the CPU backend, and both profilers through
// `orrery profile` (the collective profiler needs an MPI job of its own, so
// it runs under mpirun), their files read back with the traces parsers.
#include "exec/profiler.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "exec/cpu/cpu_backend.h"
#include "tests/cli/cli_runner.h"
#include "traces/compute_profile.h"
#include "traces/nccl_tests_log.h"
#include "workload/model_presets.h"
#include "workload/operators.h"

namespace orrery::exec {
namespace {

using workload::OperatorClass;

ComputeProfileOptions Quick() {
  ComputeProfileOptions o;
  o.warmup = 1;
  o.repetitions = 3;
  return o;
}

workload::ModelSpec Model(const std::string& name) {
  Result<workload::ModelSpec> m = workload::ModelPreset(name);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t>;

TEST(ProfileCompute, MeasuresEveryDistinctGemmShapeOfGptTinyWithItsFlopCount) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  std::vector<std::string> lines;
  Result<traces::ComputeProfile> p =
      ProfileCompute(*cpu, Model("gpt-tiny"), Quick(),
                     [&](const std::string& line) { lines.push_back(line); });
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->device, cpu->device_name());
  EXPECT_EQ(p->precision, topology::Precision::kFp32);

  // gpt-tiny at micro-batch 1, sequence 64 (64 tokens), hidden 64, FFN 256,
  // vocabulary 512: qkv, proj, fc1, fc2 and the logits.
  const std::set<Shape> expected = {{64, 192, 64, 1}, {64, 64, 64, 1}, {64, 256, 64, 1},
                                    {64, 64, 256, 1}, {64, 512, 64, 1}};
  std::set<Shape> measured;
  int gemm_entries = 0;
  for (const traces::ComputeProfileEntry& e : p->entries) {
    if (e.op_class != OperatorClass::kGemm) continue;
    ++gemm_entries;
    ASSERT_TRUE(e.gemm.has_value());
    measured.insert({e.gemm->m, e.gemm->n, e.gemm->k, e.gemm->batch});
    ASSERT_TRUE(e.forward_flops.has_value());
    EXPECT_DOUBLE_EQ(e.forward_flops->count(),
                     2.0 * static_cast<double>(e.gemm->m * e.gemm->n * e.gemm->k));
    EXPECT_GT(e.forward, Duration::Zero());
    ASSERT_TRUE(e.backward.has_value());
    EXPECT_GT(*e.backward, Duration::Zero());
  }
  EXPECT_EQ(measured, expected);
  EXPECT_EQ(gemm_entries, 5);  // one entry per shape, however many layers use it

  int gflops_lines = 0;
  for (const std::string& line : lines) {
    if (line.starts_with("gemm ") && line.find("GFLOP/s") != std::string::npos) ++gflops_lines;
  }
  EXPECT_EQ(gflops_lines, 5);
}

TEST(ProfileCompute, NamesTheOtherOperatorsAsTheCostModelDoes) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  const workload::ModelSpec gpt = Model("gpt-tiny");
  Result<traces::ComputeProfile> p = ProfileCompute(*cpu, gpt, Quick(), nullptr);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::map<std::string, const traces::ComputeProfileEntry*> named;
  for (const traces::ComputeProfileEntry& e : p->entries) {
    if (!e.name.empty()) named[e.name] = &e;
    EXPECT_GT(e.forward, Duration::Zero()) << e.name;
  }
  for (const char* name : {"embed.tokens", "embed.positions", "attn.norm", "attn.core",
                           "attn.dropout_add", "mlp.norm", "mlp.act", "mlp.dropout_add",
                           "head.norm", "head.loss"}) {
    EXPECT_TRUE(named.contains(name)) << name;
  }
  ASSERT_TRUE(named.contains("attn.core"));
  EXPECT_EQ(named["attn.core"]->op_class, OperatorClass::kAttention);
  EXPECT_TRUE(named["attn.core"]->backward.has_value());
  // The core's FLOPs are those of attn.qk, attn.softmax and attn.av.
  Result<workload::LayerOperators> block = workload::ExpandLayer(
      gpt, workload::LayerKind::kDecoderBlock, 1, 64, workload::LayerLayout{});
  ASSERT_TRUE(block.ok());
  double core = 0;
  for (const workload::Operator& op : block->ops) {
    if (op.name == "attn.qk" || op.name == "attn.softmax" || op.name == "attn.av") {
      core += op.forward_flops.count();
    }
  }
  EXPECT_DOUBLE_EQ(named["attn.core"]->forward_flops->count(), core);
  EXPECT_EQ(named["attn.norm"]->op_class, OperatorClass::kNorm);
  EXPECT_EQ(named["mlp.act"]->op_class, OperatorClass::kElementwise);
  EXPECT_EQ(named["head.loss"]->op_class, OperatorClass::kLoss);
  EXPECT_EQ(named["embed.tokens"]->op_class, OperatorClass::kEmbedding);
  // Three norms of one shape: one kernel timed, three entries carrying it.
  EXPECT_EQ(named["attn.norm"]->forward, named["mlp.norm"]->forward);

  // The profile is a valid ComputeProfile file.
  Result<traces::ComputeProfile> back =
      traces::ParseComputeProfile(traces::ComputeProfileToJson(*p), "profile.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->entries.size(), p->entries.size());
}

TEST(ProfileCompute, ShardsTheShapesOverTensorParallelRanks) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  ComputeProfileOptions o = Quick();
  o.tp = 2;
  o.micro_batch = 2;
  o.sequence_length = 32;
  Result<traces::ComputeProfile> p = ProfileCompute(*cpu, Model("llama-tiny"), o, nullptr);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::set<Shape> shapes;
  bool rmsnorm = false;
  for (const traces::ComputeProfileEntry& e : p->entries) {
    if (e.gemm.has_value()) shapes.insert({e.gemm->m, e.gemm->n, e.gemm->k, e.gemm->batch});
    rmsnorm = rmsnorm || e.name == "attn.norm";
  }
  EXPECT_TRUE(rmsnorm);
  // 64 tokens; qkv: 2 query heads and 1 kv head of 16 per rank → n = 64;
  // fc1 (SwiGLU): 2·128/2 = 128; logits: 512/2 = 256.
  EXPECT_TRUE(shapes.contains({64, 64, 64, 1}));
  EXPECT_TRUE(shapes.contains({64, 128, 64, 1}));
  EXPECT_TRUE(shapes.contains({64, 256, 64, 1}));
}

TEST(ProfileCompute, RejectsALayoutThatDoesNotDivideTheModel) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  ComputeProfileOptions o = Quick();
  o.tp = 3;
  Result<traces::ComputeProfile> p = ProfileCompute(*cpu, Model("gpt-tiny"), o, nullptr);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("tp 3"), std::string::npos) << p.status().message();
}

TEST(ProfileCompute, EntriesCarryTheirOperatorsBytesAndTheCoreWhatItCovers) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  const workload::ModelSpec gpt = Model("gpt-tiny");
  ComputeProfileOptions o = Quick();
  o.optimizer = false;
  Result<traces::ComputeProfile> p = ProfileCompute(*cpu, gpt, o, nullptr);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->optimizer.empty());
  workload::ExpansionOptions fp32;
  fp32.activation_bytes = 4;
  Result<workload::LayerOperators> block = workload::ExpandLayer(
      gpt, workload::LayerKind::kDecoderBlock, 1, 64, workload::LayerLayout{}, fp32);
  ASSERT_TRUE(block.ok());
  std::map<std::string, const workload::Operator*> ops;
  for (const workload::Operator& op : block->ops) ops[op.name] = &op;
  const traces::ComputeProfileEntry* core = nullptr;
  for (const traces::ComputeProfileEntry& e : p->entries) {
    // Every entry the profiler writes has a byte count.
    EXPECT_TRUE(e.forward_bytes.has_value()) << e.name;
    if (e.name == "attn.core") core = &e;
    if (e.name == "attn.norm") {
      EXPECT_EQ(e.forward_bytes, ops["attn.norm"]->forward_bytes);
      EXPECT_EQ(e.backward_bytes, ops["attn.norm"]->backward_bytes);
      EXPECT_TRUE(e.covers.empty());
    }
    if (e.gemm.has_value() && e.gemm->n == 192) {  // attn.qkv
      EXPECT_EQ(e.forward_bytes, ops["attn.qkv"]->forward_bytes);
      EXPECT_EQ(e.backward_bytes, ops["attn.qkv"]->backward_bytes);
    }
  }
  ASSERT_NE(core, nullptr);
  EXPECT_EQ(core->covers, (std::vector<std::string>{"attn.qk", "attn.softmax", "attn.av"}));
  const Bytes fwd = ops["attn.qk"]->forward_bytes + ops["attn.softmax"]->forward_bytes +
                    ops["attn.av"]->forward_bytes;
  const Bytes bwd = ops["attn.qk"]->backward_bytes + ops["attn.softmax"]->backward_bytes +
                    ops["attn.av"]->backward_bytes;
  EXPECT_EQ(core->forward_bytes, fwd);
  EXPECT_EQ(core->backward_bytes, bwd);
  // Written and read back with the new fields.
  Result<traces::ComputeProfile> back =
      traces::ParseComputeProfile(traces::ComputeProfileToJson(*p), "profile.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  bool core_back = false;
  for (const traces::ComputeProfileEntry& e : back->entries) {
    if (e.name == "attn.core") core_back = e.covers == core->covers && e.forward_bytes == fwd;
  }
  EXPECT_TRUE(core_back);
}

TEST(ProfileCompute, TimesAdamOverTheParametersOneRankHoldsAndAroundIt) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  const workload::ModelSpec gpt = Model("gpt-tiny");
  ComputeProfileOptions o = Quick();
  o.tp = 2;
  Result<traces::ComputeProfile> p = ProfileCompute(*cpu, gpt, o, nullptr);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  int64_t held = 0;
  for (workload::LayerKind kind : workload::ModelLayers(gpt)) {
    Result<workload::LayerOperators> layer =
        workload::ExpandLayer(gpt, kind, 1, 64, workload::LayerLayout{.tp = 2});
    ASSERT_TRUE(layer.ok());
    held += layer->Parameters();
  }
  ASSERT_EQ(p->optimizer.size(), 3u);
  EXPECT_EQ(p->optimizer[0].parameters, held / 2);
  EXPECT_EQ(p->optimizer[1].parameters, held);
  EXPECT_EQ(p->optimizer[2].parameters, 2 * held);
  for (const traces::OptimizerMeasurement& m : p->optimizer) {
    EXPECT_EQ(m.name, "adamw");
    EXPECT_GT(m.step, Duration::Zero());
  }
  // The cap bounds every size.
  o.max_optimizer_parameters = held;
  Result<traces::ComputeProfile> capped = ProfileCompute(*cpu, gpt, o, nullptr);
  ASSERT_TRUE(capped.ok());
  ASSERT_EQ(capped->optimizer.size(), 2u);
  EXPECT_EQ(capped->optimizer[1].parameters, held);
}

TEST(ProfileComputeSweep, CoversEveryTpAndMicroBatchWithEachEntryOnce) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  const workload::ModelSpec gpt = Model("gpt-tiny");
  ComputeProfileOptions o = Quick();
  o.optimizer = false;
  Result<traces::ComputeProfile> sweep =
      ProfileComputeSweep(*cpu, gpt, o, {1, 2}, {1, 2}, nullptr);
  ASSERT_TRUE(sweep.ok()) << sweep.status().ToString();
  std::set<std::tuple<std::string, Shape, double, int64_t>> keys;
  for (const traces::ComputeProfileEntry& e : sweep->entries) {
    Shape shape{0, 0, 0, 0};
    if (e.gemm.has_value()) shape = {e.gemm->m, e.gemm->n, e.gemm->k, e.gemm->batch};
    const auto key = std::make_tuple(e.gemm.has_value() ? std::string() : e.name, shape,
                                     e.forward_flops ? e.forward_flops->count() : 0.0,
                                     e.gemm.has_value() ? 0 : e.forward_bytes->count());
    EXPECT_TRUE(keys.insert(key).second) << "entered twice: " << e.name;
  }
  // Each combination's own profile is inside the sweep.
  for (int tp : {1, 2}) {
    for (int64_t b : {1, 2}) {
      o.tp = tp;
      o.micro_batch = b;
      Result<traces::ComputeProfile> one = ProfileCompute(*cpu, gpt, o, nullptr);
      ASSERT_TRUE(one.ok());
      for (const traces::ComputeProfileEntry& e : one->entries) {
        Shape shape{0, 0, 0, 0};
        if (e.gemm.has_value()) shape = {e.gemm->m, e.gemm->n, e.gemm->k, e.gemm->batch};
        const auto key = std::make_tuple(e.gemm.has_value() ? std::string() : e.name, shape,
                                         e.forward_flops ? e.forward_flops->count() : 0.0,
                                         e.gemm.has_value() ? 0 : e.forward_bytes->count());
        EXPECT_TRUE(keys.contains(key)) << "tp " << tp << " b " << b << ": " << e.name;
      }
    }
  }
  EXPECT_NE(sweep->source.find("tp 1,2, micro-batch 1,2"), std::string::npos) << sweep->source;
  EXPECT_FALSE(ProfileComputeSweep(*cpu, gpt, o, {}, {1}, nullptr).ok());
  EXPECT_FALSE(ProfileComputeSweep(*cpu, gpt, o, {1, 3}, {1}, nullptr).ok());
}

bool HaveMpirun() {
  return testing::RunShell("command -v mpirun >/dev/null 2>&1").exit_code == 0;
}

TEST(ProfileCli, TheComputeProfileItWritesLoadsBack) {
  const std::string dir = testing::MakeTempDir("exec_profile_compute");
  testing::CliRun run = testing::RunOrrery(
      "profile --backend cpu --what compute --repetitions 3 --out " + dir);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  Result<traces::ComputeProfile> p = traces::LoadComputeProfile(dir + "/compute_profile.json");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->precision, topology::Precision::kFp32);
  EXPECT_FALSE(p->device.empty());
}

TEST(ProfileCli, AloneItProfilesCollectivesOverAGroupOfOne) {
  const std::string dir = testing::MakeTempDir("exec_profile_one_rank");
  testing::CliRun run = testing::RunOrrery(
      "profile --backend cpu --what collectives --ops allreduce,sendrecv --max-bytes 1K "
      "--iterations 2 --warmup 1 --out " + dir);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(dir + "/sendrecv.log");
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_EQ(log->tables.size(), 1u);
  EXPECT_EQ(log->tables[0].collective, traces::CollectiveOp::kSendRecv);
  EXPECT_EQ(log->tables[0].RankCount(), 1);
  EXPECT_EQ(log->tables[0].rows.size(), 8u);  // 8 B .. 1 KiB
}

TEST(ProfileCli, UnderMpirunItsNcclTestsLogsParseBackWithTwoRanksAndTheirCollective) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not found";
  const std::string dir = testing::MakeTempDir("exec_profile_collectives");
  testing::CliRun run = testing::RunShell(
      "mpirun --oversubscribe --allow-run-as-root -np 2 " + testing::OrreryBinary() +
      " profile --backend cpu --what collectives --max-bytes 64K --iterations 5 --out " + dir);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  for (traces::CollectiveOp op :
       {traces::CollectiveOp::kAllReduce, traces::CollectiveOp::kAllGather,
        traces::CollectiveOp::kReduceScatter, traces::CollectiveOp::kAllToAll,
        traces::CollectiveOp::kSendRecv}) {
    const std::string path = dir + "/" + std::string(traces::NcclTestsName(op)) + ".log";
    Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(path);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    ASSERT_EQ(log->tables.size(), 1u) << path;
    const traces::NcclTestsTable& t = log->tables[0];
    EXPECT_EQ(t.collective, op) << path;
    EXPECT_EQ(t.collective_evidence, "log header");
    EXPECT_EQ(t.RankCount(), 2) << path;
    EXPECT_EQ(t.iters, 5);
    EXPECT_EQ(t.max_bytes, Bytes(64 << 10));
    // 8 B .. 64 KiB doubling: 14 sizes (all-gather, reduce-scatter and
    // all-to-all over 2 ranks hold at least one float per rank from 8 B).
    ASSERT_EQ(t.rows.size(), 14u) << path;
    EXPECT_EQ(t.rows.front().size, Bytes(8));
    EXPECT_EQ(t.rows.back().size, Bytes(64 << 10));
    EXPECT_EQ(t.rows.back().count,
              traces::NcclTestsCount(op, int64_t{64} << 10, /*ranks=*/2, /*element_bytes=*/4));
    for (const traces::NcclTestsRow& row : t.rows) {
      EXPECT_GT(row.out_of_place.time, Duration::Zero());
      ASSERT_TRUE(row.out_of_place.wrong.has_value());
      EXPECT_EQ(*row.out_of_place.wrong, 0) << path << ":" << row.line;
      // busbw / algbw is nccl-tests' factor (both printed to 0.01 GB/s).
      if (row.out_of_place.algbw > GBps(0.5)) {
        EXPECT_NEAR(row.out_of_place.busbw / row.out_of_place.algbw,
                    traces::BusBandwidthFactor(op, 2), 0.05)
            << path << ":" << row.line;
      }
    }
    EXPECT_EQ(t.out_of_bounds, "0 OK");
    EXPECT_TRUE(t.avg_busbw_gbps.has_value());
  }
}

}  // namespace
}  // namespace orrery::exec
