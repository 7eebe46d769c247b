// The skeleton shared by the multi-rank check drivers (exec_comm_checks,
// exec_reshard_checks, exec_phase_runner_checks, exec_replan_runner_checks),
// which the gtest wrappers in tests/exec/*_test.cc launch under mpirun:
//
//   mpirun -np N <program> <check> [cpu|cuda]
//
// Every rank joins MpiWorld and runs the named check, which records what it
// found wrong in a Findings; each rank prints its own failures to stderr
// ("<check>: rank R: FAILED: <what>"), the ranks agree on the outcome
// (MpiWorld::AgreeOnStatus), rank 0 prints "<check>: PASSED" or the agreed
// error, and every rank exits 0 when no rank failed, 1 otherwise. A bad
// command line exits 2 (the usage lists the checks), a failed MpiWorld::Join
// exits 1.
//
// Thread-safety: none; one check runs at a time on each rank.
#ifndef ORRERY_TESTS_EXEC_MPI_CHECKS_H_
#define ORRERY_TESTS_EXEC_MPI_CHECKS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "costmodel/reshard_cost.h"
#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "exec/phase_runner.h"
#include "exec/runtime.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::exec {

// What one rank found wrong, in the order found.
class Findings {
 public:
  void Expect(bool ok, const std::string& what) {
    if (!ok) failures_.push_back(what);
  }
  void ExpectOk(const Status& status, const std::string& what) {
    if (!status.ok()) failures_.push_back(what + ": " + status.ToString());
  }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  std::vector<std::string> failures_;
};

// One check, run on every rank with the backend named on the command line.
// It returns an error only when it could not run at all (its set-up failed),
// with the same error on every rank (agreed over the ranks): each rank then
// prints the error's message alone and exits 1, with no summary.
using MpiCheck = std::function<Status(MpiWorld& world, BackendKind backend, Findings& findings)>;

// Runs the check argv[1] of `checks` as described above and returns the
// exit code; `program` names the driver in the usage line.
int RunMpiChecks(int argc, char** argv, const char* program,
                 const std::map<std::string, MpiCheck>& checks);

// A check of training `model` under ExecuteOptions whose only setting is the
// backend (the rest as defaults).
using ModelCheck = void (*)(MpiWorld& world, const workload::ModelSpec& model,
                            const ExecuteOptions& options, Findings& findings);

// `checks` bound to `model`, which must outlive the result.
std::map<std::string, MpiCheck> BindModel(const workload::ModelSpec& model,
                                          const std::map<std::string, ModelCheck>& checks);

// A run against a reference run, step by step, over the steps both have:
// each step's loss within 1e-5 relative of the reference's and its gradient
// norm within 1e-4 relative (the executor's tolerances against the
// single-rank run, docs/executor.md "Correctness"). A miss reads
// "<what>: step K: loss X, the reference's Y" (or "gradient norm").
// REQUIRES: each run has a gradient norm for every loss.
void ExpectSameSteps(const std::vector<double>& losses, const std::vector<double>& grad_norms,
                     const std::vector<double>& reference_losses,
                     const std::vector<double>& reference_grad_norms, const std::string& what,
                     Findings& findings);

// The switch cost model (costmodel::ComputeReshardTraffic with fp32 Adam
// state, StateBytes::Fp32Adam(), and the options' bucketing) for `model`,
// which must outlive the result. Inline, so that only the drivers that call
// it link orrery_costmodel.
inline SwitchTrafficModel CostModel(const workload::ModelSpec& model,
                                    const ExecuteOptions& options) {
  return [&model, options](const workload::Plan& from, const workload::Plan& to,
                           int world_size) -> Result<PredictedTraffic> {
    costmodel::StateLayoutOptions layout;
    layout.bucket_parameters = options.bucket_parameters;
    layout.bytes = costmodel::StateBytes::Fp32Adam();
    ORRERY_ASSIGN_OR_RETURN(costmodel::ReshardTraffic traffic,
                            costmodel::ComputeReshardTraffic(model, from, world_size, to,
                                                             world_size, world_size, layout));
    return PredictedTraffic{traffic.bytes_sent, traffic.bytes_received};
  };
}

// "[1, 2, 3]".
std::string Bracketed(const std::vector<int64_t>& values);

}  // namespace orrery::exec

#endif  // ORRERY_TESTS_EXEC_MPI_CHECKS_H_
