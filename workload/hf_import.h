// Import of a HuggingFace transformers config.json into a ModelSpec, and
// LoadModel, the one entry point that turns what a person typed (a preset
// name, a config.json, an Orrery model JSON) into a spec.
//
// Supported model_type values: llama, mistral (both the Llama family),
// mixtral, gpt2 (the GPT family), bert, t5, vit. docs/models.md lists, per
// type, the keys read, which are required and the defaults used for the
// others.
//
// Required keys are those that size the model and that every released
// config spells out (layers, hidden size, heads, FFN size, vocabulary, the
// position table of learned-position models, the image and patch of ViT):
// a config without them is an error naming the file and the key, e.g.
//   config.json: field 'num_hidden_layers': missing (expected an integer)
// Keys that select a variant take transformers' own default when absent or
// null, as the model classes do: num_key_value_heads = num_attention_heads,
// head_dim = hidden_size / num_attention_heads, tie_word_embeddings (false
// for llama/mistral/mixtral, true for gpt2/bert/t5, whose configs inherit
// PretrainedConfig's default), attention_bias = mlp_bias = false, n_inner =
// 4·n_embd, num_decoder_layers = num_layers, feed_forward_proj = "relu",
// relative_attention_num_buckets = 32, type_vocab_size = 2, num_channels = 3,
// max_position_embeddings (llama 2048, mistral/mixtral 131072).
//
// Which head is counted: the LM-head model for the language models
// (…ForCausalLM, GPT2LMHeadModel, T5ForConditionalGeneration); for bert and
// vit the class named first in "architectures" — BertForMaskedLM (MLM head,
// no pooler), BertForPreTraining (pooler, MLM and next-sentence heads),
// ViTForImageClassification (classifier over len(id2label) classes, else
// num_labels, else transformers' default 2; no pooler) — and otherwise the
// base model with its pooler (BertModel, ViTModel).
//
// default_sequence_length: rope_scaling.original_max_position_embeddings
// when present (the pre-training length of a context-extended model such as
// Llama 3.1), otherwise the model's maximum (max_position_embeddings,
// n_positions, or ViT's patches + 1).
//
// Thread-safety: the functions are thread-safe.
#ifndef ORRERY_WORKLOAD_HF_IMPORT_H_
#define ORRERY_WORKLOAD_HF_IMPORT_H_

#include <string>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "workload/model_spec.h"

namespace orrery::workload {

// The model_type values ImportHuggingFaceConfig reads, sorted.
std::vector<std::string> SupportedHuggingFaceModelTypes();

// Reads a parsed config.json; `source` names it in errors (its path). The
// spec's name is the config's "_name_or_path" when set, otherwise taken from
// `source` (the directory of a file named config.json, else the file name
// without ".json" and a trailing "_config"). The result is validated.
Result<ModelSpec> ImportHuggingFaceConfig(const Json& config, const std::string& source);
Result<ModelSpec> ImportHuggingFaceConfigFile(const std::string& path);

// A preset name (workload/model_presets.h), or the path of a HuggingFace
// config.json (a JSON object with "model_type"), of a directory holding
// one, or of an Orrery model JSON (workload/model_json.h). NotFound names the
// presets when `name_or_path` is neither a preset nor an existing path.
Result<ModelSpec> LoadModel(const std::string& name_or_path);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_HF_IMPORT_H_
