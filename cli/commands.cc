#include "cli/command.h"
#include "cli/subcommands.h"

namespace orrery::cli {

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"quickstart", "the default job: plan Llama-3-70B on 64 H100s (runs what is built)",
       RunQuickstart, ""},
      {"models", "list model presets, or describe one (preset or HF config.json)", RunModels, ""},
      {"clusters", "list cluster presets, or describe one (preset or cluster.json)", RunClusters,
       ""},
      {"plan", "check a parallel plan against its model and cluster, print it as JSON", RunPlan,
       ""},
      {"discover", "describe this machine (or an hwloc / nvidia-smi export) as a cluster spec",
       RunDiscover, ""},
      {"collective", "time a collective on a cluster, in nccl-tests' columns", RunCollective,
       ""},
      {"simulate", "simulate one training iteration of a plan: time, memory, timeline",
       RunSimulate, ""},
      {"search", "search the fastest plan that fits memory", RunSearch, ""},
      {"profile", "measure operators and collectives on this machine", RunProfile, ""},
      {"execute", "run a plan's training iterations for real (MPI + Eigen, or NCCL + cuBLAS)",
       RunExecute, ""},
      {"calibrate", "fit the cost model to measurements (profiles, traces, nccl-tests, Galvatron)",
       RunCalibrate, ""},
      {"validate", "run a plan and compare the simulator's prediction with the measurement",
       RunValidate, ""},
      {"tune", "profile, calibrate, search, execute and re-plan until the plan is stable",
       RunTune, ""},
      {"capacity", "what-if sweep over hypothetical clusters: time, cost, bounds", RunCapacity,
       ""},
      {"export", "write a plan as Megatron-LM arguments, a DeepSpeed or Galvatron config",
       RunExport, ""},
  };
  return kCommands;
}

}  // namespace orrery::cli
