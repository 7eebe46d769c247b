// Training that re-plans itself while it runs: `orrery execute --replan`
// and the executions of `orrery tune --replan` (issue #10, deliverable 3,
// docs/replanning.md).
//
// RunWithReplanning trains `steps` steps from one plan, in windows of
// `window` steps. After every window rank 0 hands the window's step times
// to a Replanner, which answers whether the measurement is worse than its
// prediction by more than its margin. When it is, every rank runs the
// compute probe (TrainingSession::ProbeComputeSeconds) and rank 0 hands the
// per-rank probe times to the Replanner again, which returns the plan to
// continue with: the same plan (keep) or another (switch). A switch moves
// the training state in memory to the new plan's layout exactly as a phase
// boundary of RunPhases does (SwitchSession, exec/phase_runner.h), so the
// losses continue as if one plan had run throughout; the steps after it
// run under the new plan.
//
// exec/ does not depend on the search or the cost model (DESIGN.md): the
// prediction, the search and the decision are the Replanner's, which the
// CLI builds from search/replan.h. This module owns the collective part:
// windows, timing, the probe, broadcasting rank 0's decision, the switch.
//
// Steps are timed as RunPhases times them: a barrier, the step, the
// slowest rank's time.
//
// Thread-safety: RunWithReplanning is collective: every rank of the job
// calls it once, from one thread. The Replanner is called on rank 0 only.
#ifndef ORRERY_EXEC_REPLAN_RUNNER_H_
#define ORRERY_EXEC_REPLAN_RUNNER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/mpi_world.h"
#include "exec/phase_runner.h"
#include "exec/runtime.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::exec {

// One window of steps, as the Replanner sees it.
struct ReplanWindow {
  int index = 0;             // 0-based
  workload::Plan plan;       // the plan the window ran
  int64_t first_step = 0;    // index of its first step in the whole run
  std::vector<double> step_seconds;  // the slowest rank's, one per step
  double median_step_seconds = 0;
  int64_t steps_left = 0;    // steps of the run after this window
};

// The decisions, made on rank 0. Implementations may keep a log of their
// own (the CLI's logs every decision with its numbers).
class Replanner {
 public:
  virtual ~Replanner() = default;
  // After every window: true when the window's time is worse than
  // predicted by more than the margin, which runs the probe. An error
  // aborts the job (MpiWorld::Fail).
  virtual Result<bool> OverMargin(const ReplanWindow& window) = 0;
  // After the probe: probe_seconds[r] is rank r's ProbeComputeSeconds.
  // Returns the plan to carry on with (window.plan to keep it). The plan
  // must pass CheckExecutable on the job's ranks and keep the global batch
  // and sequence length; otherwise the job aborts naming it.
  virtual Result<workload::Plan> Decide(const ReplanWindow& window,
                                        const std::vector<double>& probe_seconds) = 0;
};

struct ReplanRunOptions {
  int64_t steps = 0;   // training steps in all (>= 1)
  int window = 5;      // steps per window (>= 1); the last may be shorter
  int probe_repeats = 3;  // ProbeComputeSeconds(repeats)
  // Windows before the first check: the first window after the start and
  // after every switch is not judged (warm-up: allocation, first-touch,
  // caches), when true.
  bool skip_first_window = true;
};

struct ProbeRecord {
  int after_window = 0;               // the window that triggered it
  std::vector<double> probe_seconds;  // per rank
  bool switched = false;              // the Replanner chose another plan
};

struct ReplanRunResult {  // filled on rank 0; other ranks get an empty one
  std::vector<ReplanWindow> windows;
  // One per window: OverMargin's answer (false for a skipped window).
  std::vector<bool> over_margin;
  std::vector<bool> judged;  // false: the window was skipped (warm-up)
  std::vector<ProbeRecord> probes;
  std::vector<SwitchRecord> switches;  // from_phase: the window index
  std::vector<double> losses;          // one per step, the whole run
  std::vector<double> grad_norms;      // one per step
  std::string device;                  // rank 0's Backend::device_name()
};

// Runs the training. Collective over `world`. options: backend, seed, adam,
// bucket_parameters and slow_ranks are read; iterations, warmup and
// trace_iterations are not (run_options.steps is the length). Errors found
// before anything runs (CheckExecutable, the backend, run_options out of
// range) come back on every rank; failures during the run abort the job
// (MpiWorld::Fail), as RunTraining's do. `replanner` is called on rank 0
// only and may be null on the others.
Result<ReplanRunResult> RunWithReplanning(MpiWorld& world, const workload::ModelSpec& model,
                                          const workload::Plan& plan,
                                          const ExecuteOptions& options,
                                          const ReplanRunOptions& run_options,
                                          Replanner* replanner,
                                          const SwitchTrafficModel& traffic_model = nullptr);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_REPLAN_RUNNER_H_
