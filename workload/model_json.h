// The JSON form of a ModelSpec (documented in docs/models.md): what
// `orrery models --format json` prints and what LoadModel reads back.
//
//   {"name": "llama3-8b", "family": "llama", "architecture": "decoder-only",
//    "parameters": 8030261248, "layers": 32, "encoder_layers": 0,
//    "hidden_size": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128,
//    "ffn_hidden_size": 14336, "vocab_size": 128256,
//    "max_sequence_length": 8192, "default_sequence_length": 8192,
//    "activation": "swiglu", "norm": "rmsnorm", "position_embedding": "rotary",
//    "linear_bias": false, "tied_embeddings": false, "num_experts": 0,
//    "experts_per_token": 0, "source": "..."}
//
// plus the family-specific fields: BERT type_vocab_size, pooler, mlm_head,
// num_classes; ViT image_size, patch_size, num_channels, pooler,
// num_classes; T5 relative_attention_buckets.
//
// Kept apart from model_spec.h so that users of the spec do not pull in the
// JSON library.
#ifndef ORRERY_WORKLOAD_MODEL_JSON_H_
#define ORRERY_WORKLOAD_MODEL_JSON_H_

#include <string>

#include "core/json.h"
#include "core/status.h"
#include "workload/model_spec.h"

namespace orrery::workload {

// The JSON form, with the exact parameter count under "parameters".
// REQUIRES: ValidateModelSpec(spec).ok().
Json ModelSpecToJson(const ModelSpec& spec);

// Reads the form ModelSpecToJson writes; `source` names it in errors (a
// path). Every field but "parameters" and "source" is required; unknown
// fields are rejected; the spec is validated; "parameters", when present,
// must equal the count the spec implies (a check on hand edits).
// ParseModelSpecJson(ModelSpecToJson(s)) gives back s.
Result<ModelSpec> ParseModelSpecJson(const Json& json, const std::string& source);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_MODEL_JSON_H_
