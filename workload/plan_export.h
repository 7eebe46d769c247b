// Plan export: what Megatron-LM, DeepSpeed and Galvatron take to run a plan.
//
// - Megatron-LM: the command-line arguments of pretrain_gpt.py
//   (megatron/training/arguments.py), model shape and parallel layout,
//   one "--flag value" per line joined by " \" for a shell script.
// - DeepSpeed: a ds_config.json (train_batch_size,
//   train_micro_batch_size_per_gpu, gradient_accumulation_steps,
//   zero_optimization.stage, bf16/fp16, activation_checkpointing). Tensor
//   and pipeline degrees are not DeepSpeed config keys: they are arguments
//   of the Megatron-DeepSpeed launcher, returned as a note.
// - Galvatron: its JSON strategy config (workload/galvatron_config.h).
//
// Each framework expresses less than a Plan. What it cannot express is an
// InvalidArgument naming the layer or field and the reason, never a silent
// approximation: Megatron-LM and Megatron-DeepSpeed apply one strategy to
// every layer, DeepSpeed's pipeline engine refuses ZeRO-2/3, Galvatron has
// no interleaved schedule. docs/export.md has every mapping and refusal.
//
// Thread-safety: pure functions.
#ifndef ORRERY_WORKLOAD_PLAN_EXPORT_H_
#define ORRERY_WORKLOAD_PLAN_EXPORT_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::workload {

enum class ExportFormat { kMegatron, kDeepSpeed, kGalvatron };
// "megatron", "deepspeed", "galvatron".
std::string_view ExportFormatName(ExportFormat f);
Result<ExportFormat> ParseExportFormat(std::string_view name);

struct PlanExport {
  // What the framework reads: an argument list (Megatron-LM) or a JSON
  // document (DeepSpeed, Galvatron), ending in a newline.
  std::string text;
  // What the text cannot carry and a person must know: launcher arguments,
  // the world size, runtime flags, version requirements.
  std::vector<std::string> notes;
};

// Megatron-LM arguments for `plan` on `model`, in order: model shape,
// parallel layout, batch, recomputation, optimizer sharding, precision.
// REQUIRES: the plan passed ValidatePlan for `model`.
Result<std::vector<std::string>> MegatronArguments(const Plan& plan, const ModelSpec& model);

// `plan` in `format`. REQUIRES: the plan passed ValidatePlan for `model`.
Result<PlanExport> ExportPlan(const Plan& plan, const ModelSpec& model, ExportFormat format);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_PLAN_EXPORT_H_
