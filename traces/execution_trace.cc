#include "traces/execution_trace.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "core/file.h"

namespace orrery::traces {
namespace {

using workload::GemmShape;

constexpr std::string_view kFormat = "orrery-execution-trace";
constexpr int kVersion = 1;

constexpr std::array<ExecutionOpKind, 2> kKinds = {ExecutionOpKind::kCompute,
                                                   ExecutionOpKind::kCommunication};
constexpr std::array<ExecutionPhase, 6> kPhases = {
    ExecutionPhase::kForward,   ExecutionPhase::kBackward,     ExecutionPhase::kRecompute,
    ExecutionPhase::kOptimizer, ExecutionPhase::kGradientSync, ExecutionPhase::kOther,
};

// Chrome-trace threads of a rank's process.
constexpr int kComputeThread = 0;
constexpr int kCommunicationThread = 1;
constexpr int kIterationThread = 2;

// The JSON number of a time: microseconds with three decimals, i.e. the
// nearest nanosecond (the same rounding as the Chrome trace).
double ToJsonMicros(Duration d) { return ChromeTraceMicros(d); }

// The inverse: a microsecond count read back to the nearest nanosecond, so
// that a written trace reads back exactly.
Duration FromJsonMicros(double us) {
  return Picos(static_cast<int64_t>(std::llround(us * 1e3)) * 1000);
}

// Numbers this far from zero (about 29 years in microseconds) do not fit
// the picosecond clock; they are errors, not overflows.
constexpr double kMaxMicros = 9.0e14;

Result<Duration> ReadMicros(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(double us, r.Number(key));
  if (!std::isfinite(us) || std::abs(us) > kMaxMicros) {
    return r.FieldError(key, "expected a time in microseconds, got " + JsonSnippet(us));
  }
  return FromJsonMicros(us);
}

Result<int> ReadNonNegativeInt(const JsonReader& r, std::string_view key) {
  ORRERY_ASSIGN_OR_RETURN(int64_t v, r.Int(key));
  if (v < 0 || v > std::numeric_limits<int>::max()) {
    return r.FieldError(key, "expected an integer >= 0, got " + std::to_string(v));
  }
  return static_cast<int>(v);
}

Result<ExecutionOpKind> ReadKind(const JsonReader& r) {
  ORRERY_ASSIGN_OR_RETURN(std::string name, r.String("kind"));
  for (ExecutionOpKind k : kKinds) {
    if (ExecutionOpKindName(k) == name) return k;
  }
  return r.FieldError("kind", "expected \"compute\" or \"communication\", got \"" + name + "\"");
}

Result<ExecutionPhase> ReadPhase(const JsonReader& r) {
  ORRERY_ASSIGN_OR_RETURN(std::string name, r.String("phase"));
  std::string known;
  for (ExecutionPhase p : kPhases) {
    if (ExecutionPhaseName(p) == name) return p;
    known += (known.empty() ? "" : ", ") + std::string(ExecutionPhaseName(p));
  }
  return r.FieldError("phase", "expected one of " + known + ", got \"" + name + "\"");
}

Result<GemmShape> ReadGemm(const JsonReader& op) {
  ORRERY_ASSIGN_OR_RETURN(JsonReader g, op.Object("gemm"));
  GemmShape shape;
  ORRERY_ASSIGN_OR_RETURN(shape.m, g.PositiveInt("m"));
  ORRERY_ASSIGN_OR_RETURN(shape.n, g.PositiveInt("n"));
  ORRERY_ASSIGN_OR_RETURN(shape.k, g.PositiveInt("k"));
  ORRERY_ASSIGN_OR_RETURN(shape.batch, g.PositiveInt("batch", 1));
  ORRERY_RETURN_IF_ERROR(g.RejectUnknownFields());
  return shape;
}

// One element of "ops". `world_size` bounds the ranks when known.
Result<ExecutionOp> ReadOp(const JsonReader& r, std::optional<int> world_size) {
  ExecutionOp op;
  ORRERY_ASSIGN_OR_RETURN(op.rank, ReadNonNegativeInt(r, "rank"));
  if (world_size.has_value() && op.rank >= *world_size) {
    return r.FieldError("rank", "expected a rank below world_size " +
                                    std::to_string(*world_size) + ", got " +
                                    std::to_string(op.rank));
  }
  ORRERY_ASSIGN_OR_RETURN(op.iteration, ReadNonNegativeInt(r, "iteration"));
  ORRERY_ASSIGN_OR_RETURN(op.name, r.String("name"));
  if (op.name.empty()) return r.FieldError("name", "expected a non-empty operator name");
  ORRERY_ASSIGN_OR_RETURN(op.kind, ReadKind(r));
  ORRERY_ASSIGN_OR_RETURN(op.phase, ReadPhase(r));
  if (r.Has("layer")) {
    ORRERY_ASSIGN_OR_RETURN(op.layer, ReadNonNegativeInt(r, "layer"));
  }
  if (r.Has("micro_batch")) {
    ORRERY_ASSIGN_OR_RETURN(op.micro_batch, ReadNonNegativeInt(r, "micro_batch"));
  }
  if (r.Has("chunk")) {
    ORRERY_ASSIGN_OR_RETURN(op.chunk, ReadNonNegativeInt(r, "chunk"));
  }
  ORRERY_ASSIGN_OR_RETURN(op.start, ReadMicros(r, "start_us"));
  ORRERY_ASSIGN_OR_RETURN(op.end, ReadMicros(r, "end_us"));
  if (op.end < op.start) {
    return r.FieldError("end_us", "expected a number >= start_us (" +
                                      JsonSnippet(ToJsonMicros(op.start)) + "), got " +
                                      JsonSnippet(ToJsonMicros(op.end)));
  }
  const bool compute = op.kind == ExecutionOpKind::kCompute;
  if (r.Has("gemm")) {
    if (!compute) return r.FieldError("gemm", "a communication op has no GEMM shape");
    ORRERY_ASSIGN_OR_RETURN(op.gemm, ReadGemm(r));
  }
  if (r.Has("collective")) {
    if (compute) return r.FieldError("collective", "a compute op has no collective");
    ORRERY_ASSIGN_OR_RETURN(std::string name, r.String("collective"));
    Result<CollectiveOp> c = ParseCollectiveOp(name);
    if (!c.ok()) return r.FieldError("collective", c.status().message());
    op.collective = *c;
  }
  if (r.Has("bytes")) {
    if (compute) return r.FieldError("bytes", "a compute op moves no message");
    ORRERY_ASSIGN_OR_RETURN(op.bytes, r.Int("bytes"));
    if (op.bytes < 0) {
      return r.FieldError("bytes", "expected an integer >= 0, got " + std::to_string(op.bytes));
    }
  }
  if (r.Has("group")) {
    if (compute) return r.FieldError("group", "a compute op has no group");
    ORRERY_ASSIGN_OR_RETURN(std::vector<int64_t> group, r.IntArray("group"));
    for (size_t i = 0; i < group.size(); ++i) {
      const int64_t g = group[i];
      if (g < 0 || (world_size.has_value() && g >= *world_size) ||
          g > std::numeric_limits<int>::max()) {
        return r.FieldError("group[" + std::to_string(i) + "]",
                            "expected a world rank" +
                                (world_size.has_value()
                                     ? " below world_size " + std::to_string(*world_size)
                                     : std::string(" >= 0")) +
                                ", got " + std::to_string(g));
      }
      op.group.push_back(static_cast<int>(g));
    }
  }
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return op;
}

Result<ExecutionIteration> ReadIteration(const JsonReader& r, int world_size) {
  ExecutionIteration it;
  ORRERY_ASSIGN_OR_RETURN(it.iteration, ReadNonNegativeInt(r, "iteration"));
  ORRERY_ASSIGN_OR_RETURN(it.warmup, r.Bool("warmup", false));
  if (!r.Has("time_us") || !r.json()["time_us"].is_array()) {
    return r.FieldError("time_us", "expected an array of microseconds, one per rank");
  }
  const Json& times = r.json()["time_us"];
  if (static_cast<int>(times.size()) != world_size) {
    return r.FieldError("time_us", "expected " + std::to_string(world_size) +
                                       " times (one per rank of world_size), got " +
                                       std::to_string(times.size()));
  }
  for (size_t i = 0; i < times.size(); ++i) {
    const Json& t = times[i];
    if (!t.is_number() || !(t.get<double>() >= 0.0) || t.get<double>() > kMaxMicros) {
      return r.FieldError("time_us[" + std::to_string(i) + "]",
                          "expected a number of microseconds >= 0, got " + JsonSnippet(t));
    }
    it.rank_times.push_back(FromJsonMicros(t.get<double>()));
  }
  if (r.Has("loss")) {
    ORRERY_ASSIGN_OR_RETURN(double loss, r.Number("loss"));
    it.loss = loss;
  }
  ORRERY_RETURN_IF_ERROR(r.RejectUnknownFields());
  return it;
}

Json OpToJson(const ExecutionOp& op) {
  Json j = Json::object();
  j["rank"] = op.rank;
  j["iteration"] = op.iteration;
  j["name"] = op.name;
  j["kind"] = std::string(ExecutionOpKindName(op.kind));
  j["phase"] = std::string(ExecutionPhaseName(op.phase));
  if (op.layer.has_value()) j["layer"] = *op.layer;
  if (op.micro_batch.has_value()) j["micro_batch"] = *op.micro_batch;
  j["chunk"] = op.chunk;
  j["start_us"] = ToJsonMicros(op.start);
  j["end_us"] = ToJsonMicros(op.end);
  if (op.gemm.has_value()) {
    j["gemm"] = {{"m", op.gemm->m}, {"n", op.gemm->n}, {"k", op.gemm->k},
                 {"batch", op.gemm->batch}};
  }
  if (op.kind == ExecutionOpKind::kCommunication) {
    if (op.collective.has_value()) j["collective"] = std::string(CollectiveOpName(*op.collective));
    j["bytes"] = op.bytes;
    j["group"] = op.group;
  }
  return j;
}

Json OpsToJson(const std::vector<ExecutionOp>& ops) {
  Json out = Json::array();
  for (const ExecutionOp& op : ops) out.push_back(OpToJson(op));
  return out;
}

Result<std::vector<ExecutionOp>> ReadOps(const JsonReader& root, std::optional<int> world_size) {
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> readers, root.ObjectArray("ops"));
  std::vector<ExecutionOp> ops;
  ops.reserve(readers.size());
  for (const JsonReader& r : readers) {
    ORRERY_ASSIGN_OR_RETURN(ExecutionOp op, ReadOp(r, world_size));
    ops.push_back(std::move(op));
  }
  return ops;
}

// The args of an op's Chrome-trace event.
Json OpArgs(const ExecutionOp& op) {
  Json args = Json::object();
  args["iteration"] = op.iteration;
  args["phase"] = std::string(ExecutionPhaseName(op.phase));
  if (op.layer.has_value()) args["layer"] = *op.layer;
  if (op.micro_batch.has_value()) args["micro_batch"] = *op.micro_batch;
  args["chunk"] = op.chunk;
  if (op.gemm.has_value()) {
    args["gemm"] = std::to_string(op.gemm->m) + "x" + std::to_string(op.gemm->n) + "x" +
                   std::to_string(op.gemm->k) +
                   (op.gemm->batch != 1 ? " (batch " + std::to_string(op.gemm->batch) + ")" : "");
  }
  if (op.kind == ExecutionOpKind::kCommunication) {
    if (op.collective.has_value()) args["collective"] = std::string(CollectiveOpName(*op.collective));
    args["bytes"] = op.bytes;
    args["group"] = op.group;
  }
  return args;
}

}  // namespace

std::string_view ExecutionOpKindName(ExecutionOpKind kind) {
  switch (kind) {
    case ExecutionOpKind::kCompute: return "compute";
    case ExecutionOpKind::kCommunication: return "communication";
  }
  return "compute";
}

std::string_view ExecutionPhaseName(ExecutionPhase phase) {
  switch (phase) {
    case ExecutionPhase::kForward: return "forward";
    case ExecutionPhase::kBackward: return "backward";
    case ExecutionPhase::kRecompute: return "recompute";
    case ExecutionPhase::kOptimizer: return "optimizer";
    case ExecutionPhase::kGradientSync: return "gradient-sync";
    case ExecutionPhase::kOther: return "other";
  }
  return "other";
}

Result<ExecutionTrace> ParseExecutionTrace(std::string_view text, std::string_view source) {
  ORRERY_ASSIGN_OR_RETURN(Json doc, ParseJson(text, source));
  JsonReader root(doc, std::string(source));
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  ORRERY_ASSIGN_OR_RETURN(std::string format, root.String("format"));
  if (format != kFormat) {
    return root.FieldError("format", "expected \"" + std::string(kFormat) + "\", got \"" +
                                         format + "\"");
  }
  ORRERY_ASSIGN_OR_RETURN(int64_t version, root.Int("version"));
  if (version != kVersion) {
    return root.FieldError("version", "expected " + std::to_string(kVersion) +
                                          " (the version this build reads), got " +
                                          std::to_string(version));
  }
  ExecutionTrace trace;
  ORRERY_ASSIGN_OR_RETURN(trace.model, root.String("model"));
  ORRERY_ASSIGN_OR_RETURN(trace.backend, root.String("backend"));
  if (trace.backend != "cpu" && trace.backend != "cuda") {
    return root.FieldError("backend", "expected \"cpu\" or \"cuda\", got \"" + trace.backend +
                                          "\"");
  }
  ORRERY_ASSIGN_OR_RETURN(trace.device, root.String("device", ""));
  ORRERY_ASSIGN_OR_RETURN(int64_t world_size, root.PositiveInt("world_size"));
  if (world_size > std::numeric_limits<int>::max()) {
    return root.FieldError("world_size", "expected a rank count, got " +
                                             std::to_string(world_size));
  }
  trace.world_size = static_cast<int>(world_size);
  if (root.Has("plan")) {
    ORRERY_ASSIGN_OR_RETURN(JsonReader plan, root.Object("plan"));
    trace.plan = plan.json();
  }
  ORRERY_ASSIGN_OR_RETURN(int64_t micro_batch, root.PositiveInt("micro_batch_size"));
  ORRERY_ASSIGN_OR_RETURN(int64_t sequence, root.PositiveInt("sequence_length"));
  trace.micro_batch_size = static_cast<int>(micro_batch);
  trace.sequence_length = static_cast<int>(sequence);
  ORRERY_ASSIGN_OR_RETURN(std::vector<JsonReader> iterations, root.ObjectArray("iterations"));
  for (const JsonReader& r : iterations) {
    ORRERY_ASSIGN_OR_RETURN(ExecutionIteration it, ReadIteration(r, trace.world_size));
    trace.iterations.push_back(std::move(it));
  }
  ORRERY_ASSIGN_OR_RETURN(trace.ops, ReadOps(root, trace.world_size));
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  return trace;
}

Result<ExecutionTrace> LoadExecutionTrace(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseExecutionTrace(text, path);
}

Json ExecutionTraceToJson(const ExecutionTrace& trace) {
  Json doc = Json::object();
  doc["format"] = std::string(kFormat);
  doc["version"] = kVersion;
  doc["model"] = trace.model;
  doc["backend"] = trace.backend;
  doc["device"] = trace.device;
  doc["world_size"] = trace.world_size;
  doc["plan"] = trace.plan;
  doc["micro_batch_size"] = trace.micro_batch_size;
  doc["sequence_length"] = trace.sequence_length;
  Json iterations = Json::array();
  for (const ExecutionIteration& it : trace.iterations) {
    Json j = Json::object();
    j["iteration"] = it.iteration;
    j["warmup"] = it.warmup;
    Json times = Json::array();
    for (Duration t : it.rank_times) times.push_back(ToJsonMicros(t));
    j["time_us"] = std::move(times);
    if (it.loss.has_value()) j["loss"] = *it.loss;
    iterations.push_back(std::move(j));
  }
  doc["iterations"] = std::move(iterations);
  doc["ops"] = OpsToJson(trace.ops);
  return doc;
}

std::string ExecutionOpsToJson(const std::vector<ExecutionOp>& ops) {
  return OpsToJson(ops).dump();
}

Result<std::vector<ExecutionOp>> ParseExecutionOps(std::string_view text,
                                                   std::string_view source) {
  ORRERY_ASSIGN_OR_RETURN(Json ops, ParseJson(text, source));
  if (!ops.is_array()) {
    return InvalidArgumentError(std::string(source) + ": expected an array of ops, got " +
                                JsonSnippet(ops));
  }
  // Read through a one-field object so that errors name "ops[i].field".
  Json wrapper = Json::object();
  wrapper["ops"] = std::move(ops);
  JsonReader root(wrapper, std::string(source));
  return ReadOps(root, std::nullopt);
}

ChromeTrace ExecutionTraceToChromeTrace(const ExecutionTrace& trace) {
  ChromeTrace chrome;
  // Per (rank, iteration): the span from its first op's start to its last
  // op's end, shown on a third thread.
  std::map<std::pair<int, int>, std::pair<Duration, Duration>> spans;
  for (int rank = 0; rank < trace.world_size; ++rank) {
    chrome.SetProcessName(rank, "rank " + std::to_string(rank));
    chrome.SetThreadName(rank, kComputeThread, "compute");
    chrome.SetThreadName(rank, kCommunicationThread, "communication");
  }
  for (const ExecutionOp& op : trace.ops) {
    const bool compute = op.kind == ExecutionOpKind::kCompute;
    chrome.SetProcessName(op.rank, "rank " + std::to_string(op.rank));
    chrome.AddComplete({.name = op.name,
                        .category = std::string(ExecutionPhaseName(op.phase)),
                        .pid = op.rank,
                        .tid = compute ? kComputeThread : kCommunicationThread,
                        .start = op.start,
                        .duration = op.duration(),
                        .args = OpArgs(op)});
    auto [it, inserted] = spans.try_emplace({op.rank, op.iteration}, op.start, op.end);
    if (!inserted) {
      it->second.first = std::min(it->second.first, op.start);
      it->second.second = std::max(it->second.second, op.end);
    }
  }
  std::map<int, const ExecutionIteration*> by_number;
  for (const ExecutionIteration& it : trace.iterations) by_number[it.iteration] = &it;
  for (const auto& [key, span] : spans) {
    const auto [rank, iteration] = key;
    chrome.SetThreadName(rank, kIterationThread, "iterations");
    Json args = Json::object();
    args["iteration"] = iteration;
    auto found = by_number.find(iteration);
    if (found != by_number.end()) {
      const ExecutionIteration& it = *found->second;
      args["warmup"] = it.warmup;
      if (rank < static_cast<int>(it.rank_times.size())) {
        args["time_us"] = ToJsonMicros(it.rank_times[static_cast<size_t>(rank)]);
      }
      if (it.loss.has_value()) args["loss"] = *it.loss;
    }
    const bool warmup = found != by_number.end() && found->second->warmup;
    chrome.AddComplete({.name = "iteration " + std::to_string(iteration) +
                                (warmup ? " (warm-up)" : ""),
                        .category = "iteration",
                        .pid = rank,
                        .tid = kIterationThread,
                        .start = span.first,
                        .duration = span.second - span.first,
                        .args = std::move(args)});
  }
  return chrome;
}

}  // namespace orrery::traces
