// Running a phases file (workload/phases.h) for real: `orrery execute
// --phases`. Training goes through the phases in order, each for its
// steps under its own plan, and at every boundary where the plan changes
// the training state — parameters, AdamW's m and v, the step count — is
// moved to the next plan's layout in memory (exec/reshard.h) and training
// carries on from the same step, on the same data, as if one plan had run
// throughout (the synthetic tokens of step k depend only on k and the
// seed, runtime.h).
//
// Per phase boundary:
//   * the next plan equals the current one: the session carries on;
//   * otherwise (the layout, or only the global batch or sequence length,
//     changes): the state is exported, both plans' layouts are described
//     (DescribeStates), the re-shard planned (PlanReshard) and executed
//     (ExecuteReshard) over a communicator of the whole job, the old
//     session is closed, the next plan's session started and the state
//     imported. Equal layouts plan no transfer: 0 bytes move.
//
// Steps are timed as RunTraining times them (nccl-tests' way): a barrier,
// then the step, its time the slowest rank's. The step includes the two
// scalar all-reduces that give every rank the loss and the gradient norm.
//
// exec/ does not depend on the cost model (DESIGN.md), so the caller may
// pass a SwitchTrafficModel — the CLI passes costmodel::
// ComputeReshardTraffic — whose per-rank bytes are recorded next to the
// bytes counted at the communicator.
//
// Thread-safety: RunPhases is collective: every rank of the job calls it
// once, from one thread.
#ifndef ORRERY_EXEC_PHASE_RUNNER_H_
#define ORRERY_EXEC_PHASE_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/mpi_world.h"
#include "exec/runtime.h"
#include "workload/model_spec.h"
#include "workload/phases.h"
#include "workload/plan.h"

namespace orrery::exec {

// Per-rank bytes of one switch as a model predicts them.
struct PredictedTraffic {
  std::vector<int64_t> bytes_sent;      // per rank
  std::vector<int64_t> bytes_received;  // per rank
};

// Predicts the switch from plan `from` to plan `to` over `world_size`
// ranks. Called on rank 0 only; an error is recorded, not raised.
using SwitchTrafficModel = std::function<Result<PredictedTraffic>(
    const workload::Plan& from, const workload::Plan& to, int world_size)>;

struct PhaseRecord {
  std::string name;
  workload::Plan plan;
  int64_t first_step = 0;  // index of the phase's first step in the whole run
  int64_t steps = 0;
  // false: the phase continued the previous phase's session (equal plans).
  bool switched = false;
  std::vector<double> losses;        // one per step
  std::vector<double> grad_norms;    // one per step
  std::vector<double> step_seconds;  // one per step, the slowest rank's
  double median_step_seconds = 0;
};

struct SwitchRecord {
  int from_phase = 0;  // index of the phase before the switch; to_phase = from_phase + 1
  int64_t after_step = 0;  // steps done when the state moved
  bool same_layout = false;  // every rank's StateMap equal: nothing to move
  // Counted at the communicator's Isend/Irecv calls, per rank.
  std::vector<int64_t> bytes_sent;
  std::vector<int64_t> bytes_received;
  std::vector<int> messages_sent;
  // The re-shard plan's own totals, per rank.
  std::vector<int64_t> planned_sent;
  std::vector<int64_t> planned_received;
  std::vector<int64_t> planned_kept;
  int transfers = 0;
  int messages = 0;  // non-empty (source, destination) pairs
  double planning_seconds = 0;  // describing both layouts and planning, slowest rank
  double exchange_seconds = 0;  // ExecuteReshard, slowest rank
  // From the export of the old state to the import into the new session
  // (planning, exchange, closing the old session and starting the new
  // one), slowest rank.
  double total_seconds = 0;
  // The SwitchTrafficModel's answer, or why it gave none; both empty when
  // no model was given.
  std::optional<PredictedTraffic> predicted;
  std::string prediction_error;

  int64_t total_bytes() const;  // Σ bytes_sent
  // A prediction exists and its per-rank bytes sent and received equal
  // the counted ones.
  bool PredictionAgrees() const;
};

struct PhasesResult {  // filled on rank 0; other ranks get an empty one
  std::vector<PhaseRecord> phases;
  std::vector<SwitchRecord> switches;
  std::string device;  // rank 0's Backend::device_name()
};

// Checks, without running anything, that every phase of `schedule` can be
// run by RunPhases on `world_size` ranks: every phase has a plan, the
// plan's global batch and sequence length are the phase's, the plan can
// run on world_size ranks (CheckExecutable: re-sharding is over the same
// ranks), and the phase lasts at least one step. InvalidArgument listing
// every reason, each naming schedule.source, the phase (index and name)
// and the field, e.g. "phases.json: field 'phases[1].plan' (phase '128k'):
// the plan cannot run on 2 ranks: ...".
Status CheckPhases(const workload::ModelSpec& model, const workload::PhaseSchedule& schedule,
                   int world_size);

// Runs every phase of `schedule` in order. Collective over `world`.
// options: backend, seed, adam and bucket_parameters are read; iterations,
// warmup, trace_iterations and gather_parameters are not (each phase runs
// its own steps). Errors found before anything runs (CheckPhases, the
// backend) are returned on every rank; a failure during the run aborts the
// job (MpiWorld::Fail), as RunTraining's do.
Result<PhasesResult> RunPhases(MpiWorld& world, const workload::ModelSpec& model,
                               const workload::PhaseSchedule& schedule,
                               const ExecuteOptions& options,
                               const SwitchTrafficModel& traffic_model = nullptr);

// Moves `session`'s training state from plan `current` to plan `next`
// (over the same ranks) and returns `next`'s session holding it, filling
// `record` (from_phase is left to the caller; predicted is not filled).
// What RunPhases does at a phase boundary and RunWithReplanning at a
// switch (exec/replan_runner.h). Collective; failures abort the job.
std::unique_ptr<TrainingSession> SwitchSession(MpiWorld& world,
                                               const workload::ModelSpec& model,
                                               const workload::Plan& current,
                                               const workload::Plan& next,
                                               const ExecuteOptions& options,
                                               std::unique_ptr<TrainingSession> session,
                                               SwitchRecord& record);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_PHASE_RUNNER_H_
