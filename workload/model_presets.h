// Built-in models: the GPT scaling series Megatron-LM trained (Narayanan et
// al., SC21, Table 1), GPT-3 175B, Llama 2 and 3, Mixtral 8x7B, BERT-Large,
// T5-Large and ViT-Large, each with the published architecture and a
// `source` citing it. docs/models.md lists them with their exact parameter
// counts.
//
// Names are short and lower-case: gpt-1.7b … gpt-1t, gpt3-175b, llama2-7b,
// llama2-13b, llama2-70b, llama3-8b, llama3-70b, llama3-405b, mixtral-8x7b,
// bert-large, t5-large, vit-large.
//
// A preset's default_sequence_length is the sequence length the model was
// (pre)trained with, which is what plans use unless told otherwise.
//
// Thread-safety: the functions are thread-safe (presets are immutable).
#ifndef ORRERY_WORKLOAD_MODEL_PRESETS_H_
#define ORRERY_WORKLOAD_MODEL_PRESETS_H_

#include <string>
#include <vector>

#include "core/status.h"
#include "workload/model_spec.h"

namespace orrery::workload {

// Every preset, in the order `orrery models` lists them.
const std::vector<ModelSpec>& ModelPresets();
std::vector<std::string> ModelPresetNames();

// The named preset. NotFound names the known presets.
Result<ModelSpec> ModelPreset(const std::string& name);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_MODEL_PRESETS_H_
