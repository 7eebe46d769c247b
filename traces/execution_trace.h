// ExecutionTrace: what the executor measured while it ran a plan — every
// operator's start and end on every rank, per iteration, micro-batch and
// layer, and every collective's size and group. It is the input of
// calibration (measured operator times against the cost model's) and of
// validation (measured iteration time against the simulator's), and it
// converts to a Chrome trace that Perfetto opens.
//
// The file is JSON (docs/traces.md documents every field):
//
//   {
//     "format": "orrery-execution-trace", "version": 1,
//     "model": "gpt-tiny", "backend": "cpu",
//     "device": "AMD EPYC 7B13 (1 thread, Eigen 3.4.0)",
//     "world_size": 8,
//     "plan": { ...workload/plan_json.h... },
//     "micro_batch_size": 2, "sequence_length": 64,
//     "iterations": [ {"iteration": 0, "warmup": true,
//                      "time_us": [..per rank..], "loss": 5.61}, ... ],
//     "ops": [
//       {"rank": 0, "iteration": 1, "name": "attn.qkv", "kind": "compute",
//        "phase": "forward", "layer": 3, "micro_batch": 0, "chunk": 0,
//        "start_us": 1520.25, "end_us": 1712.5,
//        "gemm": {"m": 128, "n": 96, "k": 32, "batch": 1}},
//       {"rank": 0, "iteration": 1, "name": "tp.allreduce", "kind": "communication",
//        "phase": "forward", "layer": 3, "micro_batch": 0, "chunk": 0,
//        "start_us": 1712.5, "end_us": 1800.0,
//        "collective": "allreduce", "bytes": 16384, "group": [0, 1]}
//     ]
//   }
//
// Times are microseconds from the trace's origin: the end of the barrier
// that starts the first iteration, on each rank's own steady clock (ranks
// of one node share it; across nodes the barrier aligns them to within its
// latency). Operator names follow the cost model's (workload/operators.h:
// "attn.norm", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.act", "mlp.fc2",
// "head.logits", "head.loss", ...) with "attn.core" for the whole attention
// core (attn.qk + attn.softmax + attn.av); communication ops are named by
// their group and collective ("tp.allreduce", "dp.reducescatter",
// "pp.send", "pp.recv", ...).
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_TRACES_EXECUTION_TRACE_H_
#define ORRERY_TRACES_EXECUTION_TRACE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/units.h"
#include "traces/chrome_trace.h"
#include "traces/collective_op.h"
#include "workload/operators.h"

namespace orrery::traces {

enum class ExecutionOpKind { kCompute, kCommunication };
// "compute", "communication".
std::string_view ExecutionOpKindName(ExecutionOpKind kind);

// The part of the iteration an operator belongs to.
enum class ExecutionPhase { kForward, kBackward, kRecompute, kOptimizer, kGradientSync, kOther };
// "forward", "backward", "recompute", "optimizer", "gradient-sync", "other".
std::string_view ExecutionPhaseName(ExecutionPhase phase);

struct ExecutionOp {
  int rank = 0;
  int iteration = 0;
  std::string name;
  ExecutionOpKind kind = ExecutionOpKind::kCompute;
  ExecutionPhase phase = ExecutionPhase::kOther;
  std::optional<int> layer;        // transformer layer (0-based), absent for others
  std::optional<int> micro_batch;  // absent for per-iteration ops (optimizer)
  int chunk = 0;                   // model chunk (interleaved schedules)
  Duration start;                  // from the trace origin
  Duration end;                    // >= start
  // Compute: the GEMM's shape when the op is one (per the cost model's
  // GemmShape: m×k by k×n).
  std::optional<workload::GemmShape> gemm;
  // Communication: the collective, its size (nccl-tests' "size": the full
  // array for all-gather / reduce-scatter) and its group's world ranks.
  std::optional<CollectiveOp> collective;
  int64_t bytes = 0;
  std::vector<int> group;

  Duration duration() const { return end - start; }
};

// One iteration's summary.
struct ExecutionIteration {
  int iteration = 0;
  bool warmup = false;                // not counted in the timing statistics
  std::vector<Duration> rank_times;   // wall time of the iteration per rank
  std::optional<double> loss;         // mean token loss of the step
};

struct ExecutionTrace {
  std::string model;
  std::string backend;  // "cpu" or "cuda"
  std::string device;   // Backend::device_name() of rank 0
  int world_size = 1;
  Json plan = Json::object();  // workload/plan_json.h form
  int micro_batch_size = 1;
  int sequence_length = 1;
  std::vector<ExecutionIteration> iterations;
  std::vector<ExecutionOp> ops;
};

// Reads a trace; `source` names the document in errors, which name the
// field ("trace.json: field 'ops[12].end_us': expected a number >= start_us").
Result<ExecutionTrace> ParseExecutionTrace(std::string_view text, std::string_view source);
Result<ExecutionTrace> LoadExecutionTrace(const std::string& path);
// The JSON form (round-trips through ParseExecutionTrace to the nanosecond).
Json ExecutionTraceToJson(const ExecutionTrace& trace);

// The ops of one rank's part, serialized compactly for gathering on rank 0
// (the same JSON as the "ops" array); ParseExecutionOps reads it back.
std::string ExecutionOpsToJson(const std::vector<ExecutionOp>& ops);
Result<std::vector<ExecutionOp>> ParseExecutionOps(std::string_view text, std::string_view source);

// The trace as a Chrome trace: one process per rank ("rank 3"), one thread
// for compute and one for communication, each op a complete event named
// by its op name with its layer, micro-batch, phase, shape, bytes and group
// in args.
ChromeTrace ExecutionTraceToChromeTrace(const ExecutionTrace& trace);

}  // namespace orrery::traces

#endif  // ORRERY_TRACES_EXECUTION_TRACE_H_
