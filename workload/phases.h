// Training phases (issue #10): training is rarely one shape from start to
// end. The global batch ramps up (BLOOM-176B grew from 16 to 2,048
// sequences), the sequence length grows for long-context training (Llama 3
// went from 8K to 128K tokens), and the cluster changes when nodes fail or
// are added. A phases file lists the phases in order; `orrery search
// --phases` finds the best plan of each and what switching costs
// (search/phases.h), and `orrery execute --phases` runs them, moving the
// training state between plans at every switch (exec/reshard.h).
//
// The file (docs/phases.md):
//
//   {
//     "phases": [
//       {"name": "8k",   "tokens": "15T",  "seq_len": 8192,   "global_batch": 2048},
//       {"name": "128k", "tokens": "800B", "seq_len": 131072, "global_batch": 128,
//        "nodes": 2048, "plan": "plan-128k.json"}
//     ],
//     "checkpoint": {"write_gb_per_s": 1000, "read_gb_per_s": 2000}
//   }
//
//   name          a label, unique in the file
//   tokens|steps  how long the phase lasts: tokens to train (a number or
//                 "15T", "800B", ParseTokenCount's forms)
//                 or optimizer steps; exactly one. steps = ceil(tokens /
//                 (global_batch × seq_len)).
//   seq_len       tokens per sample
//   global_batch  samples per step
//   cluster       optional: the cluster of this phase (a preset or a spec
//                 file, as --cluster); absent: the command's --cluster
//   nodes         optional: the nodes available in this phase
//   plan          optional: this phase's plan, a plan file (a path relative
//                 to the phases file's folder) or an inline plan object.
//                 `orrery execute --phases` needs one in every phase;
//                 `orrery search --phases --out F` writes a phases file
//                 with them filled in.
//   checkpoint    optional: the aggregate bandwidth of the storage a
//                 checkpoint goes through, in GB/s (10^9 bytes/s); read
//                 defaults to write. Absent: switches are only priced in
//                 memory.
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_WORKLOAD_PHASES_H_
#define ORRERY_WORKLOAD_PHASES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "workload/plan.h"

namespace orrery::workload {

// A token count: a number (15000000000000, 15e12, 1.5e13) or a number with
// a decimal suffix K, M, B (or G), T (10^3, 10^6, 10^9, 10^12): "15T",
// "1.5t", "300B". InvalidArgument for anything else or a value <= 0.
Result<double> ParseTokenCount(std::string_view text);

struct TrainingPhase {
  std::string name;
  // Exactly one is set in a parsed file.
  std::optional<double> tokens;
  std::optional<int64_t> steps;
  int sequence_length = 0;
  int global_batch_size = 0;
  std::string cluster;        // "": the command's cluster
  std::optional<int> nodes;   // nullopt: the cluster's own
  std::optional<Plan> plan;

  int64_t TokensPerStep() const {
    return int64_t{global_batch_size} * int64_t{sequence_length};
  }
  // steps, or ceil(tokens / TokensPerStep()).
  int64_t Steps() const;
  // tokens, or steps × TokensPerStep().
  double Tokens() const;
};

struct CheckpointBandwidth {
  double write_gb_per_s = 0;  // aggregate, 10^9 bytes/s
  double read_gb_per_s = 0;
};

struct PhaseSchedule {
  std::string source;  // the file's path, for messages ("" inline)
  std::vector<TrainingPhase> phases;
  std::optional<CheckpointBandwidth> checkpoint;
};

// Reads the format above. InvalidArgument naming `source`, the phase
// (by index and name) and the field for: a missing or unknown field, not
// exactly one of tokens and steps, a value <= 0, a duplicate name, an empty
// list, a plan that does not parse (its parser's message, prefixed), a
// plan whose global batch or sequence length differs from its phase's.
// `base_dir` resolves relative plan paths ("" : the current directory).
Result<PhaseSchedule> ParsePhases(const Json& json, const std::string& source,
                                  const std::string& base_dir);
// Reads and parses `path` (plans relative to its folder).
Result<PhaseSchedule> LoadPhasesFile(const std::string& path);

// The file form, plans inline (PlanToJson), tokens as integers when
// integral: ParsePhases(PhasesToJson(s)) == s.
Json PhasesToJson(const PhaseSchedule& schedule);

// `plan` re-targeted to a phase's shape: global batch and sequence length
// set, the micro-batch size kept when the phase's batch is still a
// multiple of micro × dp, else the largest divisor of
// global_batch / dp that is at most the old one (1 at worst). Whether the
// result is valid (memory, divisibility) is the caller's to check.
Plan RetargetPlan(const Plan& plan, int global_batch_size, int sequence_length);

}  // namespace orrery::workload

#endif  // ORRERY_WORKLOAD_PHASES_H_
