// `orrery plan`: check a parallel plan against its model and cluster, and
// print it (a readable summary, or JSON), or list every rule it breaks.
#include <sstream>
#include <string>
#include <vector>

#include "cli/plan_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/text.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;
using workload::LayerStrategy;
using workload::ParallelDim;
using workload::Plan;

constexpr std::string_view kCommand = "plan";

constexpr std::string_view kUsage =
    "orrery plan --model M --cluster C [--nodes N] (--plan FILE | flags)\n"
    "                   [--format text|json] [--out FILE]";

constexpr std::string_view kDescription =
    "Checks a hybrid-parallel training plan against a model (a preset or a\n"
    "HuggingFace config.json) and a cluster (a preset or a cluster JSON file,\n"
    "scaled to --nodes), then prints it: degrees, rank groups, micro-batches,\n"
    "the pipeline's stage partition and the per-layer strategies folded into\n"
    "ranges of layers. A plan that breaks rules is not printed: every broken rule\n"
    "is listed, one per line, and the exit code is 2.\n"
    "\n"
    "The plan is a JSON file (--plan FILE, docs/plan.md) or Megatron-style flags\n"
    "for a uniform plan. dp defaults to devices / (tp × cp × pp); the number of\n"
    "micro-batches is global-batch / (micro-batch × dp). --out writes the plan's\n"
    "JSON (which --plan reads back), only when the plan is valid.";

constexpr std::string_view kExamples =
    "  orrery plan --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 8 --pp 4 \\\n"
    "      --micro-batch 1 --global-batch 512\n"
    "  orrery plan --model llama3-70b --cluster dgx-h100 --nodes 8 \\\n"
    "      --tensor-model-parallel-size 8 --pipeline-model-parallel-size 4 \\\n"
    "      --num-layers-per-virtual-pipeline-stage 5 --global-batch-size 512 \\\n"
    "      --sequence-parallel --recompute selective --out llama70b.plan.json\n"
    "  orrery plan --model llama3-70b --cluster dgx-h100 --nodes 8 --plan llama70b.plan.json\n"
    "  orrery plan --model mixtral-8x7b --cluster dgx-h100 --nodes 4 --tp 2 --pp 4 --ep 4 \\\n"
    "      --global-batch 256 --zero 1 --format json\n";

std::string GroupText(const std::vector<int>& group) {
  std::string s = "[";
  for (size_t i = 0; i < group.size(); ++i) {
    if (i > 0) s += " ";
    if (group.size() > 8 && i == 4) {
      s += "... " + std::to_string(group.back());
      break;
    }
    s += std::to_string(group[i]);
  }
  return s + "]";
}

std::string TextReport(const Plan& plan, const workload::ModelSpec& model,
                       const topology::ClusterSpec& cluster, const workload::PlanCheck& check) {
  std::ostringstream out;
  const int devices = cluster.TotalDevices();
  out << "Plan for " << model.name << " on " << cluster.name << ": " << cluster.TotalNodes()
      << (cluster.TotalNodes() == 1 ? " node, " : " nodes, ") << devices << " devices ("
      << cluster.PrimaryNodeType().devices_per_node << " per node)\n\n";

  const LayerStrategy& first = plan.layers.front();
  const bool uniform = plan.is_uniform();
  if (uniform) {
    out << "  degrees      tp " << first.tp << " × cp " << first.cp << " × dp " << first.dp
        << " × pp " << plan.pp << " = " << devices << " devices";
    if (first.ep > 1) out << "; ep " << first.ep << " out of dp × cp";
    out << "\n";
  } else {
    out << "  degrees      pp " << plan.pp << "; tp × cp × dp per layer (below) = "
        << devices / plan.pp << " devices per stage\n";
  }
  out << "  rank order   " << workload::RankOrderName(plan.rank_order)
      << " (innermost first)\n";
  out << "  batch        global " << plan.global_batch_size << " = " << plan.NumMicroBatches()
      << " micro-batches × micro " << plan.micro_batch_size << " × dp "
      << plan.MaxDataParallel() << "; " << plan.sequence_length << " tokens per sample\n";
  out << "  precision    " << topology::PrecisionName(plan.precision) << "\n";

  const std::vector<int> counts = plan.StageLayerCounts();
  const std::vector<int> bounds = plan.StageBoundaries();
  out << "  pipeline     " << workload::PipelineScheduleName(plan.schedule);
  if (plan.schedule == workload::PipelineSchedule::kInterleaved) {
    out << " with vpp " << plan.vpp;
  }
  out << ", " << plan.pp << (plan.pp == 1 ? " stage: " : " stages: ");
  for (size_t s = 0; s < counts.size(); ++s) {
    if (s > 0) out << " | ";
    out << workload::LayerRangeName(bounds[s], bounds[s + 1] - 1);
  }
  out << " (";
  for (size_t s = 0; s < counts.size(); ++s) out << (s > 0 ? " + " : "") << counts[s];
  out << " layers)\n";

  out << "  groups" << (uniform ? "       " : " (L0)  ");
  bool first_line = true;
  auto group_line = [&](ParallelDim dim, int size) {
    if (size <= 1 && dim != ParallelDim::kTp) return;
    const std::vector<std::vector<int>> groups = workload::RankGroups(plan, 0, dim);
    if (!first_line) out << "               ";
    first_line = false;
    out << workload::ParallelDimName(dim) << ": " << groups.size() << " groups of " << size
        << ", first " << GroupText(groups.front()) << "\n";
  };
  group_line(ParallelDim::kTp, first.tp);
  group_line(ParallelDim::kCp, first.cp);
  group_line(ParallelDim::kDp, first.dp);
  group_line(ParallelDim::kEp, first.ep);
  group_line(ParallelDim::kPp, plan.pp);

  out << "\n  " << PadText("layers", 10) << PadText("tp", 4) << PadText("cp", 4) << PadText("dp", 4)
      << PadText("ep", 4) << PadText("zero", 6) << PadText("sp", 5) << PadText("recompute", 11)
      << "micro-batch\n";
  size_t i = 0;
  while (i < plan.layers.size()) {
    size_t end = i;
    while (end + 1 < plan.layers.size() && plan.layers[end + 1] == plan.layers[i]) ++end;
    const LayerStrategy& l = plan.layers[i];
    out << "  " << PadText(workload::LayerRangeName(static_cast<int>(i), static_cast<int>(end)), 10)
        << PadText(std::to_string(l.tp), 4) << PadText(std::to_string(l.cp), 4)
        << PadText(std::to_string(l.dp), 4) << PadText(std::to_string(l.ep), 4)
        << PadText(std::to_string(l.zero_stage), 6) << PadText(l.sequence_parallel ? "yes" : "no", 5)
        << PadText(std::string(workload::RecomputeName(l.recompute)), 11)
        << plan.MicroBatchSizeOfLayer(static_cast<int>(i)) << "\n";
    i = end + 1;
  }
  if (!check.notes.empty()) {
    out << "\nNotes:\n";
    for (const std::string& n : check.notes) out << "  - " << n << "\n";
  }
  return out.str();
}

}  // namespace

int RunPlan(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  AddModelClusterOptions(options);
  options.add_options()
      ("out", po::value<std::string>()->value_name("FILE"),
       "write the plan's JSON to FILE (atomically; nothing is written for an invalid plan)");
  AddFormatOption(options);
  AddPlanOptions(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  Result<PlanInputs> inputs = LoadPlanInputs(vm);
  if (!inputs.ok()) return ReportError(kCommand, inputs.status(), io);
  const workload::ModelSpec& model = inputs->model;
  const topology::ClusterSpec& cluster = inputs->cluster;
  const workload::Plan& plan = inputs->plan;

  const workload::PlanCheck check = workload::CheckPlan(plan, model, cluster);
  if (!check.ok()) {
    if (*format == OutputFormat::kJson) {
      Json j = Json::object();
      j["valid"] = false;
      j["errors"] = check.errors;
      j["notes"] = check.notes;
      io.out << DumpJson(j);
    }
    return ReportError(kCommand, workload::ValidatePlan(plan, model, cluster), io);
  }

  const Json plan_json = workload::PlanToJson(plan);
  if (vm.count("out") > 0) {
    Status written = WriteFileAtomically(vm["out"].as<std::string>(), DumpJson(plan_json));
    if (!written.ok()) return ReportError(kCommand, written, io);
  }
  if (*format == OutputFormat::kJson) {
    Json j = plan_json;
    j["valid"] = true;
    j["num_micro_batches"] = plan.NumMicroBatches();
    j["notes"] = check.notes;
    io.out << DumpJson(j);
  } else {
    io.out << TextReport(plan, model, cluster, check);
  }
  return kExitOk;
}

}  // namespace orrery::cli
