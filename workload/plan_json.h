// The JSON form of a Plan (docs/plan.md documents every field).
//
// A uniform plan is written with one "layers" object that every layer
// uses; layers that differ are listed in "overrides", each naming a range
// of layers ("0-15", or "7" for one) and only the fields it changes.
// Overrides apply in order, a later one winning where ranges overlap.
//
//   {
//     "num_layers": 80,
//     "global_batch_size": 512, "micro_batch_size": 1, "sequence_length": 8192,
//     "precision": "bf16",
//     "pipeline": {"pp": 4, "schedule": "interleaved", "vpp": 2,
//                  "stage_layers": [20, 20, 20, 20]},        // optional: even split
//     "rank_order": "tp-cp-ep-dp-pp",
//     "layers": {"tp": 8, "cp": 1, "dp": 2, "ep": 1, "zero_stage": 1,
//                "sequence_parallel": true, "recompute": "selective"},
//     "overrides": [{"layers": "0-9", "recompute": "full"}]
//   }
//
// Every field but "num_layers", "global_batch_size" and "sequence_length"
// has a default; unknown fields are rejected, so a typo is an error.
//
// Thread-safety: pure functions.
#ifndef ORRERY_WORKLOAD_PLAN_JSON_H_
#define ORRERY_WORKLOAD_PLAN_JSON_H_

#include <string>
#include <string_view>

#include "core/json.h"
#include "core/status.h"
#include "workload/plan.h"

namespace orrery::workload {

// Reads a plan from its JSON form. `source` names the document in errors:
//   "plan.json: field 'pipeline.schedule': expected 'gpipe', '1f1b' or 'interleaved', got 'zb'"
// The result is well-formed (types, ranges of override layers) but not
// checked against a model or cluster: that is ValidatePlan's job.
Result<Plan> ParsePlanJson(const Json& json, std::string_view source);
// Parses `text` (a whole document) and reads the plan from it.
Result<Plan> ParsePlanJsonText(std::string_view text, std::string_view source);
// Reads the plan file at `path`.
Result<Plan> ReadPlanFile(const std::string& path);

// The JSON form of `plan`: the most common layer strategy as "layers" and
// the others as "overrides" over ranges of layers, each with only the
// fields that differ. ParsePlanJson(PlanToJson(p)) == p.
Json PlanToJson(const Plan& plan);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_PLAN_JSON_H_
