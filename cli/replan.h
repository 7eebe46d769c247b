// Re-planning at run time from the command line (issue #10, deliverable 3,
// docs/replanning.md): `orrery execute --replan MARGIN` runs
// exec::RunWithReplanning with a Replanner made of search::Replanning
// (the prediction, the recalibration from the probe, the search and the
// decision), logs every check and decision on stderr as it is made, and
// reports the windows, the decisions and the switches. `orrery tune
// --replan` launches its executions this way.
//
// Also here, because `tune` and `execute --replan` must ask the same
// question: the search request of what the executor runs.
#ifndef ORRERY_CLI_REPLAN_H_
#define ORRERY_CLI_REPLAN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "cli/command.h"
#include "cli/plan_options.h"
#include "core/status.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "exec/mpi_world.h"
#include "exec/phase_runner.h"
#include "exec/runtime.h"
#include "search/search.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::cli {

// The search request of the plans the executor runs: fp32 (the executor's
// precision on either backend), no context parallelism, fp32 gradients
// reduced, the top 10 plans event-simulated, the calibration and its
// overlap slowdown. sequence_length 0: the model's default.
search::SearchRequest ExecutorSearchRequest(
    const workload::ModelSpec& model, const topology::ClusterSpec& cluster,
    std::shared_ptr<const costmodel::Calibration> calibration, int global_batch,
    int sequence_length, std::optional<Bytes> memory_budget);

// `input`'s cluster with exactly `ranks` devices: as it is when it has
// that many; a one-node cluster without NICs (cpu-local) with more is
// narrowed to `ranks`. InvalidArgument otherwise, naming the flag `flag`.
Result<topology::ClusterSpec> ClusterForRanks(const ClusterInput& input, int ranks,
                                              const std::string& flag);

// The switch cost model's per-rank bytes for the executor's state (fp32
// parameters and both Adam moments, `options`' buckets,
// costmodel::ComputeReshardTraffic), which RunPhases and
// RunWithReplanning print beside the bytes they count.
exec::SwitchTrafficModel ExecutorSwitchTraffic(const workload::ModelSpec& model,
                                               const exec::ExecuteOptions& options,
                                               int devices_per_node);

struct ReplanCommand {
  workload::ModelSpec model;
  workload::Plan plan;       // the plan to start with (CheckExecutable passed)
  ClusterInput cluster;      // --cluster, narrowed to the job's ranks
  double margin = 0.2;       // --replan
  int window = 5;            // --replan-window
  int64_t steps = 0;         // --iterations: steps in all
  std::string algorithm = "exhaustive";
  exec::ExecuteOptions options;  // backend, seed, adam, buckets, slow ranks
  OutputFormat format = OutputFormat::kText;
  std::string out_path;      // --out: the JSON report too ("" none)
};

// Runs `command` on every rank of `world` (collective); rank 0 reports.
// Returns the exit code.
int RunExecuteReplan(exec::MpiWorld& world, const ReplanCommand& command, CommandIo& io);

}  // namespace orrery::cli

#endif  // ORRERY_CLI_REPLAN_H_
