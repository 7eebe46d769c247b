// The executor's runtime: runs real training iterations of a plan on the
// ranks of an MPI job, one rank per core (cpu) or per GPU (cuda).
//
// Each rank finds its coordinates in the plan's grid (workload::RankGroups,
// Megatron-Core's order), builds its communicators (tp, dp, pp and the
// embedding group), the units of its model chunks (exec/gpt_model.h) and
// their parameters, and runs, per iteration:
//   * its stage's passes in the plan's schedule order
//     (workload/pipeline_schedule.h: GPipe, 1F1B, Megatron's interleaved
//     1F1B), receiving each pass's input from the previous stage and
//     sending its output to the next with batched Isend/Irecv, as
//     Megatron-LM's p2p_communication;
//   * data-parallel gradient reduction in buckets of units, launched
//     asynchronously as each bucket's last backward finishes and waited for
//     before the optimizer (ZeRO-0: all-reduce; ZeRO-1/2: reduce-scatter,
//     each rank's AdamW on its shard, all-gather of the parameters; ZeRO-2
//     reduce-scatters after every micro-batch and keeps only its shard of
//     the gradients; ZeRO-3 also shards the parameters and all-gathers each
//     unit's before its forward and its backward);
//   * the tied-embedding gradient sum, then AdamW.
// Tokens are synthetic: sample i of the global batch at step k starts at a
// hash of (seed, k, i) and walks a fixed successor function of the
// vocabulary (a hash of seed and token), the same whatever the plan, so
// every plan trains on the same data as the single-rank run, and the loss
// falls from log V as the model learns the successor table.
//
// Timing follows nccl-tests: `warmup` iterations, a barrier, then the timed
// iterations; an iteration's time is the maximum over ranks of the wall
// time from the barrier before it to the end of its optimizer step
// (synchronized). Ops are recorded (exec/op_recorder.h) only in the
// iterations `trace_iterations` selects, which are reported but not timed.
//
// Thread-safety: RunTraining is called by every rank of the job, once.
#ifndef ORRERY_EXEC_RUNTIME_H_
#define ORRERY_EXEC_RUNTIME_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/backend.h"
#include "exec/gpt_model.h"
#include "exec/mpi_world.h"
#include "traces/execution_trace.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::exec {

struct ExecuteOptions {
  BackendKind backend = BackendKind::kCpu;
  int iterations = 5;  // timed training steps
  int warmup = 1;      // untimed steps before them (their losses are reported)
  int trace_iterations = 0;  // recorded steps after the timed ones
  uint64_t seed = 1234;
  AdamHyperparameters adam;
  // Parameters per data-parallel bucket (Megatron-LM's bucket_size); 0:
  // max(4·10⁷, 10⁶·dp), Megatron-LM's default.
  int64_t bucket_parameters = 0;
  // Gather every full parameter tensor to rank 0 after the last step.
  bool gather_parameters = false;
  // Fault injection: rank → factor (>= 1) by which every compute operator
  // of that rank is slowed (OpRecorder::set_compute_factor) — `orrery
  // execute --slow-rank RANK:FACTOR`, the executor's counterpart of
  // `orrery simulate --slow-device`.
  std::map<int, double> slow_ranks;
};

// InvalidArgument naming the rank when options.slow_ranks holds a rank
// outside [0, world_size) or a factor that is not a finite number >= 1.
Status CheckSlowRanks(const ExecuteOptions& options, int world_size);

// OK when `plan` can run on `world_size` ranks: the plan's devices
// (pp × tp × cp × dp of its layers) equal world_size; every layer has the
// same tp, dp, sequence parallelism and ZeRO stage (per-layer recompute
// may differ); cp = ep = 1; CheckExecutableModel; the schedule is valid for
// the plan's micro-batches; the stage partition gives each chunk at least
// one layer. FailedPrecondition listing every reason otherwise, each
// naming the plan field, e.g. "plan needs 16 ranks (tp 2 × pp 4 × dp 2),
// the job has 8".
Status CheckExecutable(const workload::ModelSpec& model, const workload::Plan& plan,
                       int world_size);

struct ExecutionResult {  // filled on rank 0; other ranks get an empty one
  std::vector<double> losses;              // one per step, warm-up first
  // L2 norm of each step's gradient of the mean loss, after the reductions
  // (no clipping is applied); the single-rank run's norm whatever the plan.
  std::vector<double> grad_norms;
  std::vector<double> iteration_seconds;   // timed steps only
  double median_iteration_seconds = 0;
  double min_iteration_seconds = 0;
  double max_iteration_seconds = 0;
  double tokens_per_second = 0;            // global batch tokens / median
  std::vector<int64_t> peak_memory_bytes;  // per rank (Backend's peak)
  std::string device;                      // rank 0's Backend::device_name()
  traces::ExecutionTrace trace;            // ops only when traced
  // gather_parameters: full tensor name → row-major values.
  std::map<std::string, std::vector<float>> parameters;
};

// Runs the plan. Collective over `world`. Errors found before anything
// starts (CheckExecutable, the backend) are returned on every rank; a
// failure during the run aborts the job (MpiWorld::Fail).
Result<ExecutionResult> RunTraining(MpiWorld& world, const workload::ModelSpec& model,
                                    const workload::Plan& plan, const ExecuteOptions& options);

// ---- Training state, exported and imported for re-sharding between plans
// (exec/reshard.h). --------------------------------------------------------

// Where one rank of a plan keeps its training state: the Trainer's own
// placement (RunTraining and TrainingSession use it), exposed so that the
// state of one plan can be moved to another. The units of the rank's
// stage are placed in spaces — runs of units reduced, sharded and updated
// as one: a data-parallel bucket of units in backward order (ZeRO 0/1),
// one unit (ZeRO 2/3). A space is a flat buffer of `size` elements, its
// units back to back at their offsets (padded with zeros to a multiple of
// dp under ZeRO >= 1), and this rank's shard of it is
// [dp_rank·shard, (dp_rank + 1)·shard). A rank keeps, per space:
//   parameters  the whole space (ZeRO 0, 1, 2) or its shard (ZeRO 3);
//   Adam m, v   the whole space (ZeRO 0) or its shard (ZeRO 1, 2, 3).
struct StateUnit {
  std::string name;      // "embedding", "layers.3", "head"
  int64_t offset = 0;    // of the unit in its space
  std::vector<ParameterShard> parameters;  // offsets within the unit
};

struct StateSpace {
  int64_t size = 0;   // elements, padding included
  int64_t shard = 0;  // size / dp under ZeRO >= 1, else size
  std::vector<StateUnit> units;
};

struct TrainerLayout {
  int rank = 0;
  int tp_rank = 0;
  int dp_rank = 0;
  int stage = 0;
  int dp = 1;
  int zero_stage = 0;
  std::vector<StateSpace> spaces;

  // Elements of space i's parameter and moment buffers on this rank, and
  // the first element of the space each holds.
  int64_t ParameterElements(int space) const;
  int64_t MomentElements(int space) const;
  int64_t ParameterBegin(int space) const;
  int64_t MomentBegin(int space) const;
};

// The layout rank `rank` of a `world_size`-rank job has under `plan` —
// computed by the code that places a Trainer's state (the units' own
// ParameterShards and the Trainer's spaces), without an MPI job.
// options.bucket_parameters is the only option it reads. Errors:
// CheckExecutable's; InvalidArgument when rank is not in [0, world_size).
Result<TrainerLayout> TrainerStateLayout(const workload::ModelSpec& model,
                                         const workload::Plan& plan,
                                         const ExecuteOptions& options, int world_size, int rank);

// One rank's training state in host memory, in its TrainerLayout's order.
struct SpaceState {
  std::vector<float> params;  // ParameterElements(space)
  std::vector<float> adam_m;  // MomentElements(space)
  std::vector<float> adam_v;
};

struct TrainerState {
  int64_t step = 0;  // AdamW steps taken (the next step's bias correction uses step + 1)
  std::vector<SpaceState> spaces;
};

// A training run stepped by the caller, whose state can be exported after
// any step and imported into a run of another plan over the same ranks —
// how `orrery execute --phases` switches plans (exec/reshard.h moves the
// state between the two layouts). It trains exactly as RunTraining does
// (same data, same math), without timing or tracing.
//
// Thread-safety: every rank calls each method collectively, from one thread.
class TrainingSession {
 public:
  // Sets up the plan's communicators, units and parameters, initialized
  // from options.seed as RunTraining's. Collective. Errors before anything
  // starts (CheckExecutable, the backend) are returned on every rank.
  static Result<std::unique_ptr<TrainingSession>> Start(MpiWorld& world,
                                                       const workload::ModelSpec& model,
                                                       const workload::Plan& plan,
                                                       const ExecuteOptions& options);
  ~TrainingSession();
  TrainingSession(const TrainingSession&) = delete;
  TrainingSession& operator=(const TrainingSession&) = delete;

  struct StepResult {
    double loss = 0;       // of the global batch, on every rank
    double grad_norm = 0;  // as ExecutionResult::grad_norms
  };
  // Runs training step steps_done() (its data and its AdamW bias
  // correction follow from that index) on every rank. Collective.
  StepResult Step();
  int64_t steps_done() const;

  // This rank's compute speed, for finding a straggler: the seconds of one
  // GEMM of [rows, width] × [width, width] (width = the model's hidden
  // size, at least 512; rows = the plan's micro-batch × sequence length,
  // at least 512 and at most 4,096), each
  // an operator of the trainer (so a slow rank's compute factor applies),
  // after one untimed GEMM; the fastest of `repeats` timed batches, each
  // of enough GEMMs to last 20 ms. Not collective: every rank runs the
  // same shapes, so their answers compare (a straggler's is larger) —
  // what `orrery execute --replan` measures. REQUIRES: repeats >= 1.
  double ProbeComputeSeconds(int repeats);

  // This rank's layout: equal to TrainerStateLayout for its plan and rank.
  const TrainerLayout& layout() const;
  Backend& backend();

  // A host copy of this rank's parameters, Adam moments and step count.
  TrainerState ExportState();
  // Replaces this rank's state by `state` (parameters, moments, step
  // count; padding elements should be zero). InvalidArgument naming the
  // space and the buffer when a size differs from layout()'s. Not
  // collective: ranks import independently.
  Status ImportState(const TrainerState& state);

 private:
  struct Impl;
  explicit TrainingSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_RUNTIME_H_
