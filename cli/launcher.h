// Launching `orrery` itself on N ranks, for the commands that run the
// executor or the profiler as a step of their own work (`validate`,
// `tune`): under Slurm (SLURM_JOB_ID set and srun on PATH) with
// `srun --ntasks N`, otherwise with `mpirun -np N` (Open MPI's
// --oversubscribe when N exceeds the cores, and --allow-run-as-root when
// run as root, as a container's shell is).
//
// The launched command's standard output is captured (the JSON report the
// subcommand writes with --format json); its standard error passes through
// to ours so a person sees progress and errors as they happen.
//
// Thread-safety: Launch blocks; one launch at a time per caller.
#ifndef ORRERY_CLI_LAUNCHER_H_
#define ORRERY_CLI_LAUNCHER_H_

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace orrery::cli {

struct LaunchOptions {
  int ranks = 1;
  // "auto": srun under Slurm, else mpirun; or "mpirun", "srun".
  std::string launcher = "auto";
  // Extra arguments to the launcher, before the program (e.g. "-npernode 8").
  std::vector<std::string> launcher_args;
  // Wall-clock limit; nullopt: none. The launch is killed past it.
  std::optional<double> timeout_s;
  // The orrery binary LaunchOrrery runs; "": this one (SelfExecutable()).
  // Tests, whose own binary is not orrery, name it.
  std::string program;
};

struct LaunchResult {
  std::vector<std::string> argv;  // the command line run, for messages
  std::string stdout_text;
};

// The path of the running orrery binary (/proc/self/exe).
Result<std::string> SelfExecutable();

// The launcher's command line for `program` `args` (no process started).
// InvalidArgument for an unknown launcher or ranks < 1.
Result<std::vector<std::string>> LaunchCommand(const LaunchOptions& options,
                                               const std::string& program,
                                               const std::vector<std::string>& args);

// Runs `orrery args...` on options.ranks ranks and waits. Internal (naming
// the command line and its exit status) when it exits non-zero or is
// killed; Unavailable when the launcher is not installed.
Result<LaunchResult> LaunchOrrery(const LaunchOptions& options,
                                  const std::vector<std::string>& args);

}  // namespace orrery::cli

#endif  // ORRERY_CLI_LAUNCHER_H_
