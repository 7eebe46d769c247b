// `orrery export`: write a checked plan in the form Megatron-LM, DeepSpeed or
// Galvatron takes (workload/plan_export.h; docs/export.md).
#include <string>
#include <vector>

#include "cli/plan_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/progress.h"
#include "workload/plan.h"
#include "workload/plan_export.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "export";

constexpr std::string_view kUsage =
    "orrery export --model M --cluster C [--nodes N] (--plan FILE | flags)\n"
    "                   --to megatron|deepspeed|galvatron [--out FILE]";

constexpr std::string_view kDescription =
    "Checks a plan against its model and cluster, then writes it in the form a\n"
    "training framework takes:\n"
    "\n"
    "  megatron   Megatron-LM arguments for pretrain_gpt.py: the model's shape, the\n"
    "             parallel layout, the batch, recomputation, the distributed\n"
    "             optimizer (ZeRO-1) or Megatron-FSDP (ZeRO-2/3), the precision.\n"
    "  deepspeed  a ds_config.json (batch, gradient accumulation, ZeRO stage,\n"
    "             bf16/fp16, activation checkpointing); the tensor and pipeline\n"
    "             degrees, which are Megatron-DeepSpeed arguments, go to stderr.\n"
    "  galvatron  Galvatron's JSON strategy config: per-layer tp, data-parallel\n"
    "             type, Ulysses sequence parallelism and checkpointing; pp_deg,\n"
    "             pp_division, global_bsz and chunks.\n"
    "\n"
    "The plan is a plan JSON file, a Galvatron config (--plan reads both), or\n"
    "Megatron-style flags. What a framework cannot express is refused with the\n"
    "layer or field and the reason (Megatron-LM applies one strategy to every\n"
    "layer; DeepSpeed's pipeline engine takes ZeRO-0/1 only; Galvatron has no\n"
    "interleaved schedule). The export goes to stdout, or atomically to --out;\n"
    "what it cannot carry (launcher arguments, runtime flags) is printed on\n"
    "stderr as notes.";

constexpr std::string_view kExamples =
    "  orrery export --model llama3-70b --cluster dgx-h100 --nodes 8 --plan llama70b.plan.json \\\n"
    "      --to megatron\n"
    "  orrery export --model llama2-7b --cluster dgx-a100-80gb --tp 2 --micro-batch 4 \\\n"
    "      --global-batch 64 --zero 1 --to deepspeed --out ds_config.json\n"
    "  orrery export --model llama2-7b --cluster dgx-a100-80gb \\\n"
    "      --plan galvatron_config_llama2-7b_1nodes_8gpus_per_node_36GB_bf16.json --to megatron\n"
    "  orrery export --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --global-batch 64 --to galvatron --out galvatron_config.json\n";

}  // namespace

int RunExport(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  AddModelClusterOptions(options);
  options.add_options()
      ("to", po::value<std::string>()->value_name("FORMAT"),
       "megatron | deepspeed | galvatron (required)")
      ("out", po::value<std::string>()->value_name("FILE"),
       "write the export to FILE (atomically) instead of stdout");
  AddPlanOptions(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  if (vm.count("to") == 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--to is required: megatron, deepspeed or galvatron"),
                       io);
  }
  Result<workload::ExportFormat> format =
      workload::ParseExportFormat(vm["to"].as<std::string>());
  if (!format.ok()) return ReportError(kCommand, format.status().WithContext("--to"), io);

  Result<PlanInputs> inputs = LoadPlanInputs(vm);
  if (!inputs.ok()) return ReportError(kCommand, inputs.status(), io);
  const std::string plan_name =
      vm.count("plan") > 0 ? vm["plan"].as<std::string>() : std::string("the plan");
  Status valid = workload::ValidatePlan(inputs->plan, inputs->model, inputs->cluster);
  if (!valid.ok()) return ReportError(kCommand, valid.WithContext(plan_name), io);

  Result<workload::PlanExport> exported =
      workload::ExportPlan(inputs->plan, inputs->model, *format);
  if (!exported.ok()) return ReportError(kCommand, exported.status().WithContext(plan_name), io);

  if (vm.count("out") > 0) {
    Status written = WriteFileAtomically(vm["out"].as<std::string>(), exported->text);
    if (!written.ok()) return ReportError(kCommand, written, io);
  } else {
    io.out << exported->text;
  }
  if (!IsQuiet()) {
    for (const std::string& note : exported->notes) io.err << "note: " << note << "\n";
  }
  return kExitOk;
}

}  // namespace orrery::cli
