// Megatron-style command-line flags for a Plan, shared by the subcommands
// that take a plan (`plan`, later `simulate` and `search`).
//
// A plan comes either whole from a JSON file (--plan FILE, the form of
// workload/plan_json.h) or from flags that describe a uniform plan in
// Megatron-LM's terms:
//
//   --tp 8 --pp 4 --micro-batch 1 --global-batch 512 --sequence-parallel
//   --tensor-model-parallel-size 8 --pipeline-model-parallel-size 4 ...   (the same)
//
// dp is inferred as devices / (tp·cp·pp) when not given, as Megatron-LM
// does; the global batch defaults to micro-batch × dp (Megatron-LM's
// default) and the sequence length to the model's. docs/plan.md lists
// every flag.
//
// Thread-safety: functions of their arguments.
#ifndef ORRERY_CLI_PLAN_OPTIONS_H_
#define ORRERY_CLI_PLAN_OPTIONS_H_

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>

#include <memory>
#include <optional>
#include <string>

#include "core/status.h"
#include "costmodel/calibration.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::cli {

// Adds the plan flags (and --plan FILE) to `options` as a titled group.
void AddPlanOptions(boost::program_options::options_description& options);

// Builds the plan that the parsed flags in `vm` describe for `model` on
// `cluster`: read from --plan FILE, or built uniform from the flags. Fails
// (naming the flag) on a file that does not parse, on --plan combined with
// plan flags, on a flag and its Megatron alias given different values, and
// on values no plan can hold (an unknown schedule name). The plan is not
// validated against the model and cluster: call workload::ValidatePlan.
// REQUIRES: `vm` was parsed against a description AddPlanOptions filled.
Result<workload::Plan> PlanFromOptions(const boost::program_options::variables_map& vm,
                                       const workload::ModelSpec& model,
                                       const topology::ClusterSpec& cluster);

// Adds --model, --cluster and --nodes, the inputs every plan needs.
void AddModelClusterOptions(boost::program_options::options_description& options);

// A cluster as --cluster names it, with the calibration a cluster file may
// carry (its "calibration" member, written by `orrery calibrate`;
// costmodel/calibration_json.h).
struct ClusterInput {
  topology::ClusterSpec cluster;
  // nullptr: a preset, or a file without a calibration.
  std::shared_ptr<const costmodel::Calibration> calibration;
  std::string source;  // the preset name or the file's path, as given
};

// A preset name, or the path of a cluster JSON file (what
// topology::ResolveCluster takes as one: a name with a '/', a ".json"
// suffix, or an existing file), scaled to `nodes` when given and then
// validated. A file is read by costmodel::LoadCalibratedCluster, so a
// calibrated cluster spec loads with its calibration; a calibration stays
// valid on the scaled cluster (it describes the device and the links, not
// the node count). Errors name the file and the field.
Result<ClusterInput> LoadClusterInput(const std::string& name_or_path,
                                      std::optional<int> nodes = std::nullopt);
// The same from --cluster and --nodes. InvalidArgument when --cluster is
// missing. REQUIRES: `vm` was parsed against AddModelClusterOptions.
Result<ClusterInput> ClusterFromOptions(const boost::program_options::variables_map& vm);

// The one line reports print for a calibrated cluster:
// "calibrated: <sources> measurements (<file>)".
std::string CalibrationLine(const costmodel::Calibration& calibration,
                            const std::string& source);

// What a plan-taking subcommand works on.
struct PlanInputs {
  workload::ModelSpec model;
  topology::ClusterSpec cluster;
  workload::Plan plan;
  // The cluster file's calibration; nullptr for a preset or a file
  // without one.
  std::shared_ptr<const costmodel::Calibration> calibration;
  std::string cluster_source;  // ClusterInput::source
};

// Loads the model (--model), the cluster (--cluster, scaled by --nodes,
// with its calibration: LoadClusterInput) and the plan (--plan FILE or the
// flags). InvalidArgument when --model or --cluster is missing; otherwise
// the loaders' and PlanFromOptions' errors. The plan is built, not
// validated: callers run CheckPlan.
Result<PlanInputs> LoadPlanInputs(const boost::program_options::variables_map& vm);

}  // namespace orrery::cli

#endif  // ORRERY_CLI_PLAN_OPTIONS_H_
