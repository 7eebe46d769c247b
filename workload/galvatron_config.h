// Galvatron's strategy config: the JSON file Galvatron's search engine
// writes and its runtime reads (--galvatron_config_path), converted to and
// from an Orrery Plan.
//
// The format (PKU-DAIR/Hetu-Galvatron, galvatron/utils/config_utils.py
// config2strategy and galvatron/core/runtime/hybrid_parallel_config.py
// get_hybrid_parallel_configs_api) holds one comma-separated list entry per
// transformer layer, as strings:
//
//   {"pp_deg": 1,
//    "tp_sizes_enc": "1,1,...", "tp_consecutive_flags": "1,1,...",
//    "dp_types_enc": "1,1,...", "use_sp": "0,0,...", "checkpoint": "1,...,0",
//    "global_bsz": 16, "chunks": 1, "pp_division": "32",
//    "pipeline_type": "pipedream_flush", "default_dp_type": "zero2",
//    "vtp": 2, "vsp": 1, "embed_sdp": 1}
//
// What maps to what (docs/export.md has the table and the reasons):
//
//   pp_deg, pp_division       → pp, stage_layers (absent: Galvatron's split,
//                               layers / pp per stage, the rest on the last)
//   tp_sizes_enc[i], use_sp[i] → layer i's tp, or, where use_sp is 1, its
//                               cp: Galvatron's "sp" is DeepSpeed-Ulysses
//                               (a layer's tp_sizes_enc entry is then its
//                               Ulysses degree and its tp is 1;
//                               hp_config_whole_model). Ulysses splits the
//                               sequence with weights replicated and
//                               gradients reduced over dp × sp, as context
//                               parallelism does, so Orrery models it as cp;
//                               the two differ in their collectives
//                               (all-to-all around attention vs. a ring of
//                               key/value exchanges).
//   dp                         = devices / (pp · tp · cp) per layer
//                               (hp_config_whole_model's dp_sizes_whole)
//   dp_types_enc[i]            1: ZeRO-3 (FSDP FULL_SHARD, "sdp"); 0: the
//                               default_dp_type — "ddp" ZeRO-0, "zero2"
//                               ZeRO-2 (FSDP SHARD_GRAD_OP), "zero3" ZeRO-3
//                               (galvatron/core/runtime/parallel.py
//                               wrap_data_parallel)
//   checkpoint[i]              1: full recomputation of layer i (PyTorch
//                               checkpoint_wrapper around the layer); 0: none
//   global_bsz, chunks         → global batch and chunks micro-batches:
//                               micro = global / (chunks · max dp)
//   pipeline_type              "gpipe" → GPipe, "pipedream_flush" → 1F1B
//                               (absent: Galvatron's default, gpipe)
//   tp_consecutive_flags       → rank order: 1 puts a layer's tp (or sp)
//                               ranks next to each other, "tp-cp-ep-dp-pp";
//                               0 strides them by dp, "dp-tp-cp-ep-pp"
//                               (comm_groups.py gen_tp_group_dist). Galvatron
//                               ignores the flag for a layer whose degree is 1
//                               or the whole stage; Orrery has one order per
//                               plan, so the other layers must agree.
//   vtp, vsp, embed_sdp        the embedding and LM-head strategy: Orrery
//                               plans carry none; read and not modelled.
//
// Neither the sequence length nor the precision is in the file (they are
// Galvatron runtime arguments), nor Megatron sequence parallelism (its
// --sequence_parallel flag): the import takes them as options.
//
// Thread-safety: pure functions.
#ifndef ORRERY_WORKLOAD_GALVATRON_CONFIG_H_
#define ORRERY_WORKLOAD_GALVATRON_CONFIG_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::workload {

// What a Galvatron config does not say and a Plan needs.
struct GalvatronImportOptions {
  int sequence_length = 0;  // 0: the model's default_sequence_length
  topology::Precision precision = topology::Precision::kBf16;  // --mixed_precision
  // Galvatron's --sequence_parallel (Megatron-SP on every layer with tp > 1).
  bool megatron_sequence_parallel = false;
};

// True when `json` is an object holding Galvatron's "pp_deg" and
// "tp_sizes_enc", the two fields every Galvatron strategy config has and
// no Orrery plan file does.
bool IsGalvatronConfig(const Json& json);

// The plan `config` describes for `model` on `cluster`. Errors name
// `source`, the field and, for per-layer lists, the layer:
//   "cfg.json: field 'tp_sizes_enc': layer 3: 3 does not divide the 8 devices of a stage"
// Fails on lists whose length is not model.total_layers(), values outside
// Galvatron's (dp types 0/1, checkpoint 0/1, flags 0/1), a global batch not
// divisible into chunks × dp, and tp_consecutive_flags that ask for two
// rank orders. The plan is built, not validated: run CheckPlan.
Result<Plan> PlanFromGalvatronConfig(const Json& config, std::string_view source,
                                     const ModelSpec& model, const topology::ClusterSpec& cluster,
                                     const GalvatronImportOptions& options = {});

// A plan as a Galvatron config, with what the config cannot carry.
struct GalvatronExport {
  Json config;
  // Runtime arguments the config needs beside it (--mixed_precision,
  // --seq_length, --sequence_parallel) and mappings worth knowing.
  std::vector<std::string> notes;
};

// The Galvatron config of `plan`, every per-layer list written out and
// pp_division explicit. InvalidArgument, naming the layer or field, for
// what Galvatron cannot express: the interleaved schedule, ZeRO-1,
// different non-ZeRO-3 data-parallel types across layers (Galvatron has one
// default_dp_type), tp and cp both > 1 in one layer, expert parallelism,
// selective recomputation, Megatron-SP on some tp > 1 layers but not all,
// and a rank order that does not put pp outermost.
// PlanFromGalvatronConfig(GalvatronConfigFromPlan(p).config) == p for such
// a plan with the default rank order and the import options its notes name.
Result<GalvatronExport> GalvatronConfigFromPlan(const Plan& plan);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_GALVATRON_CONFIG_H_
