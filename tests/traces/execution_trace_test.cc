#include "traces/execution_trace.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"

namespace orrery::traces {
namespace {

// A two-rank trace with a GEMM, a tensor-parallel all-reduce, an optimizer
// op without layer or micro-batch, and times that are not whole
// microseconds.
ExecutionTrace TwoRankTrace() {
  ExecutionTrace t;
  t.model = "gpt-tiny";
  t.backend = "cpu";
  t.device = "test cpu (1 thread)";
  t.world_size = 2;
  t.plan = Json{{"tp", 2}};
  t.micro_batch_size = 2;
  t.sequence_length = 64;
  t.iterations.push_back({.iteration = 0,
                          .warmup = true,
                          .rank_times = {Micros(2000.5), Picos(2'000'123'000)},
                          .loss = 6.25});
  t.iterations.push_back({.iteration = 1,
                          .warmup = false,
                          .rank_times = {Micros(1900), Micros(1900.001)},
                          .loss = std::nullopt});
  ExecutionOp qkv;
  qkv.rank = 1;
  qkv.iteration = 1;
  qkv.name = "attn.qkv";
  qkv.kind = ExecutionOpKind::kCompute;
  qkv.phase = ExecutionPhase::kForward;
  qkv.layer = 3;
  qkv.micro_batch = 0;
  qkv.start = Picos(1'520'250'000);  // 1520.25 us
  qkv.end = Picos(1'712'500'001);    // not a whole nanosecond: rounds to 1712.5 us
  qkv.gemm = workload::GemmShape{.m = 128, .n = 96, .k = 32, .batch = 1};
  t.ops.push_back(qkv);
  ExecutionOp ar;
  ar.rank = 1;
  ar.iteration = 1;
  ar.name = "tp.allreduce";
  ar.kind = ExecutionOpKind::kCommunication;
  ar.phase = ExecutionPhase::kForward;
  ar.layer = 3;
  ar.micro_batch = 0;
  ar.chunk = 1;
  ar.start = Micros(1712.5);
  ar.end = Picos(1'800'000'007'000);  // 1800000.007 us: every nanosecond kept
  ar.collective = CollectiveOp::kAllReduce;
  ar.bytes = 16384;
  ar.group = {0, 1};
  t.ops.push_back(ar);
  ExecutionOp adam;
  adam.rank = 0;
  adam.iteration = 1;
  adam.name = "optimizer.adam";
  adam.phase = ExecutionPhase::kOptimizer;
  adam.start = Micros(1800);
  adam.end = Micros(1850.125);
  t.ops.push_back(adam);
  return t;
}

// The message of a failed parse of `text`.
std::string ErrorOf(const std::string& text) {
  Result<ExecutionTrace> t = ParseExecutionTrace(text, "trace.json");
  EXPECT_FALSE(t.ok());
  return t.ok() ? "" : t.status().message();
}

// The trace's JSON text with one op field replaced (or removed when `value`
// is null).
std::string WithOpField(const std::string& field, const Json& value, size_t op = 0) {
  Json doc = ExecutionTraceToJson(TwoRankTrace());
  if (value.is_null()) {
    doc["ops"][op].erase(field);
  } else {
    doc["ops"][op][field] = value;
  }
  return doc.dump();
}

void ExpectSameOp(const ExecutionOp& a, const ExecutionOp& b) {
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(a.iteration, b.iteration);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.layer, b.layer);
  EXPECT_EQ(a.micro_batch, b.micro_batch);
  EXPECT_EQ(a.chunk, b.chunk);
  EXPECT_EQ(a.start, b.start);
  EXPECT_EQ(a.end, b.end);
  EXPECT_EQ(a.gemm.has_value(), b.gemm.has_value());
  if (a.gemm.has_value() && b.gemm.has_value()) {
    EXPECT_EQ(a.gemm->m, b.gemm->m);
    EXPECT_EQ(a.gemm->n, b.gemm->n);
    EXPECT_EQ(a.gemm->k, b.gemm->k);
    EXPECT_EQ(a.gemm->batch, b.gemm->batch);
  }
  EXPECT_EQ(a.collective, b.collective);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.group, b.group);
}

TEST(ExecutionTrace, RoundTripsThroughItsJsonFormToTheNanosecond) {
  const ExecutionTrace t = TwoRankTrace();
  const std::string text = DumpJson(ExecutionTraceToJson(t));
  Result<ExecutionTrace> back = ParseExecutionTrace(text, "trace.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->model, "gpt-tiny");
  EXPECT_EQ(back->backend, "cpu");
  EXPECT_EQ(back->device, t.device);
  EXPECT_EQ(back->world_size, 2);
  EXPECT_EQ(back->plan, t.plan);
  EXPECT_EQ(back->micro_batch_size, 2);
  EXPECT_EQ(back->sequence_length, 64);
  ASSERT_EQ(back->iterations.size(), 2u);
  EXPECT_TRUE(back->iterations[0].warmup);
  EXPECT_EQ(back->iterations[0].rank_times[1], Picos(2'000'123'000));
  EXPECT_EQ(back->iterations[0].loss, 6.25);
  EXPECT_FALSE(back->iterations[1].loss.has_value());
  EXPECT_EQ(back->iterations[1].rank_times[1], Nanos(1'900'001));
  ASSERT_EQ(back->ops.size(), 3u);
  // Sub-nanosecond parts round to the nearest nanosecond; the rest is exact.
  ExecutionOp expected = t.ops[0];
  expected.end = Picos(1'712'500'000);
  ExpectSameOp(back->ops[0], expected);
  ExpectSameOp(back->ops[1], t.ops[1]);
  ExpectSameOp(back->ops[2], t.ops[2]);
  EXPECT_FALSE(back->ops[2].layer.has_value());
  EXPECT_FALSE(back->ops[2].micro_batch.has_value());
  // And a second trip changes nothing.
  EXPECT_EQ(DumpJson(ExecutionTraceToJson(*back)), text);
}

TEST(ExecutionTrace, WritesTheDocumentedFieldsAndNoEmptyOnes) {
  const Json doc = ExecutionTraceToJson(TwoRankTrace());
  EXPECT_EQ(doc["format"], "orrery-execution-trace");
  EXPECT_EQ(doc["version"], 1);
  const Json& qkv = doc["ops"][0];
  EXPECT_EQ(qkv["kind"], "compute");
  EXPECT_EQ(qkv["start_us"], 1520.25);
  EXPECT_EQ(qkv["gemm"], (Json{{"m", 128}, {"n", 96}, {"k", 32}, {"batch", 1}}));
  EXPECT_FALSE(qkv.contains("bytes"));
  EXPECT_FALSE(qkv.contains("group"));
  const Json& ar = doc["ops"][1];
  EXPECT_EQ(ar["kind"], "communication");
  EXPECT_EQ(ar["collective"], "allreduce");
  EXPECT_EQ(ar["bytes"], 16384);
  EXPECT_EQ(ar["group"], (Json{0, 1}));
  EXPECT_EQ(ar["end_us"], 1800000.007);
  EXPECT_EQ(doc["ops"][2]["phase"], "optimizer");
  EXPECT_FALSE(doc["ops"][2].contains("layer"));
}

TEST(ExecutionTrace, OpsRoundTripThroughTheirCompactForm) {
  const ExecutionTrace t = TwoRankTrace();
  const std::string text = ExecutionOpsToJson(t.ops);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  Result<std::vector<ExecutionOp>> back = ParseExecutionOps(text, "rank 1");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 3u);
  ExpectSameOp((*back)[1], t.ops[1]);
  ExpectSameOp((*back)[2], t.ops[2]);

  Result<std::vector<ExecutionOp>> empty = ParseExecutionOps(ExecutionOpsToJson({}), "rank 0");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ExecutionTrace, OpsErrorsNameTheSourceAndTheField) {
  Result<std::vector<ExecutionOp>> r = ParseExecutionOps(
      R"([{"rank": 0, "iteration": 0, "name": "x", "kind": "compute", "phase": "forward",
          "start_us": 1, "end_us": "2"}])",
      "rank 3");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "rank 3: field 'ops[0].end_us': expected a number, got \"2\"");
  Result<std::vector<ExecutionOp>> obj = ParseExecutionOps("{}", "rank 3");
  ASSERT_FALSE(obj.ok());
  EXPECT_NE(obj.status().message().find("expected an array of ops"), std::string::npos);
}

TEST(ExecutionTrace, AnEndBeforeTheStartIsAnErrorNamingTheField) {
  EXPECT_EQ(ErrorOf(WithOpField("end_us", 1000.0)),
            "trace.json: field 'ops[0].end_us': expected a number >= start_us (1520.25), got "
            "1000.0");
}

TEST(ExecutionTrace, FieldErrorsNameTheFieldAndWhatWasExpected) {
  EXPECT_EQ(ErrorOf(WithOpField("kind", "kernel")),
            "trace.json: field 'ops[0].kind': expected \"compute\" or \"communication\", got "
            "\"kernel\"");
  EXPECT_NE(ErrorOf(WithOpField("phase", "fwd"))
                .find("field 'ops[0].phase': expected one of forward, backward, recompute, "
                      "optimizer, gradient-sync, other"),
            std::string::npos);
  EXPECT_EQ(ErrorOf(WithOpField("rank", 2)),
            "trace.json: field 'ops[0].rank': expected a rank below world_size 2, got 2");
  EXPECT_EQ(ErrorOf(WithOpField("layer", -1)),
            "trace.json: field 'ops[0].layer': expected an integer >= 0, got -1");
  EXPECT_EQ(ErrorOf(WithOpField("start_us", Json(nullptr))),
            "trace.json: field 'ops[0].start_us': missing (expected a number)");
  EXPECT_NE(ErrorOf(WithOpField("collective", "allsum", 1)).find("field 'ops[1].collective'"),
            std::string::npos);
  EXPECT_EQ(ErrorOf(WithOpField("group", Json{0, 5}, 1)),
            "trace.json: field 'ops[1].group[1]': expected a world rank below world_size 2, got 5");
  EXPECT_EQ(ErrorOf(WithOpField("bytes", 8)),
            "trace.json: field 'ops[0].bytes': a compute op moves no message");
  EXPECT_EQ(ErrorOf(WithOpField("gemm", Json{{"m", 1}, {"n", 0}, {"k", 1}})),
            "trace.json: field 'ops[0].gemm.n': expected a positive integer, got 0");

  Json doc = ExecutionTraceToJson(TwoRankTrace());
  doc["iterations"][1]["time_us"] = Json{1.0};
  EXPECT_EQ(ErrorOf(doc.dump()),
            "trace.json: field 'iterations[1].time_us': expected 2 times (one per rank of "
            "world_size), got 1");
  doc = ExecutionTraceToJson(TwoRankTrace());
  doc["format"] = "chrome";
  EXPECT_EQ(ErrorOf(doc.dump()),
            "trace.json: field 'format': expected \"orrery-execution-trace\", got \"chrome\"");
  doc = ExecutionTraceToJson(TwoRankTrace());
  doc["version"] = 2;
  EXPECT_NE(ErrorOf(doc.dump()).find("field 'version': expected 1"), std::string::npos);
  doc = ExecutionTraceToJson(TwoRankTrace());
  doc["backend"] = "tpu";
  EXPECT_EQ(ErrorOf(doc.dump()),
            "trace.json: field 'backend': expected \"cpu\" or \"cuda\", got \"tpu\"");
}

TEST(ExecutionTrace, UnknownFieldsAreErrors) {
  EXPECT_NE(ErrorOf(WithOpField("strat_us", 1.0)).find("field 'ops[0].strat_us': unknown field"),
            std::string::npos);
  Json doc = ExecutionTraceToJson(TwoRankTrace());
  doc["iterations"][0]["los"] = 1.0;
  EXPECT_NE(ErrorOf(doc.dump()).find("field 'iterations[0].los': unknown field"),
            std::string::npos);
  doc = ExecutionTraceToJson(TwoRankTrace());
  doc["ranks"] = 2;
  EXPECT_NE(ErrorOf(doc.dump()).find("field 'ranks': unknown field"), std::string::npos);
}

TEST(ExecutionTrace, ChromeTraceHasAProcessPerRankAndThreadsForComputeAndCommunication) {
  const Json chrome = ExecutionTraceToChromeTrace(TwoRankTrace()).ToJson();
  std::map<int, std::string> processes;
  std::map<std::pair<int, int>, std::string> threads;
  std::vector<Json> complete;
  for (const Json& e : chrome["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "process_name") {
      processes[e["pid"].get<int>()] = e["args"]["name"].get<std::string>();
    } else if (e["ph"] == "M" && e["name"] == "thread_name") {
      threads[{e["pid"].get<int>(), e["tid"].get<int>()}] = e["args"]["name"].get<std::string>();
    } else if (e["ph"] == "X") {
      complete.push_back(e);
    }
  }
  EXPECT_EQ(processes, (std::map<int, std::string>{{0, "rank 0"}, {1, "rank 1"}}));
  EXPECT_EQ(threads[std::make_pair(0, 0)], "compute");
  EXPECT_EQ(threads[std::make_pair(0, 1)], "communication");
  EXPECT_EQ(threads[std::make_pair(1, 1)], "communication");
  EXPECT_EQ(threads[std::make_pair(1, 2)], "iterations");

  // Three ops, then one iteration span per (rank, iteration) that has ops.
  ASSERT_EQ(complete.size(), 5u);
  const Json& qkv = complete[0];
  EXPECT_EQ(qkv["name"], "attn.qkv");
  EXPECT_EQ(qkv["pid"], 1);
  EXPECT_EQ(qkv["tid"], 0);
  EXPECT_EQ(qkv["ts"], 1520.25);
  EXPECT_EQ(qkv["dur"], 192.25);
  EXPECT_EQ(qkv["args"]["phase"], "forward");
  EXPECT_EQ(qkv["args"]["layer"], 3);
  EXPECT_EQ(qkv["args"]["micro_batch"], 0);
  EXPECT_EQ(qkv["args"]["gemm"], "128x96x32");
  const Json& ar = complete[1];
  EXPECT_EQ(ar["tid"], 1);
  EXPECT_EQ(ar["args"]["collective"], "allreduce");
  EXPECT_EQ(ar["args"]["bytes"], 16384);
  EXPECT_EQ(ar["args"]["group"], (Json{0, 1}));
  EXPECT_EQ(ar["args"]["chunk"], 1);
  EXPECT_EQ(complete[2]["pid"], 0);
  EXPECT_FALSE(complete[2]["args"].contains("layer"));

  // Rank 0's iteration 1 spans its one op; rank 1's spans its two.
  EXPECT_EQ(complete[3]["name"], "iteration 1");
  EXPECT_EQ(complete[3]["pid"], 0);
  EXPECT_EQ(complete[3]["ts"], 1800.0);
  EXPECT_EQ(complete[3]["dur"], 50.125);
  EXPECT_EQ(complete[4]["pid"], 1);
  EXPECT_EQ(complete[4]["ts"], 1520.25);
  EXPECT_EQ(complete[4]["dur"], 1798479.757);
  EXPECT_EQ(complete[4]["args"]["time_us"], 1900.001);
}

}  // namespace
}  // namespace orrery::traces
