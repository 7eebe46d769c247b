// Re-sharding: moving a training run's state — parameters, both AdamW
// moments and the step count — from the layout of one plan to the layout
// of another over the same ranks, in memory, so that training carries on
// under the new plan (`orrery execute --phases`).
//
// Three steps, each usable alone:
//
//   StateMap       what one rank holds, element by element: runs of its
//                  state buffers (runtime.h's TrainerLayout: per space a
//                  parameter, an Adam m and an Adam v buffer), each mapped
//                  to a contiguous range (row-major) of one full,
//                  single-rank tensor. It is derived from TrainerLayout —
//                  the units' own ParameterShards and the Trainer's spaces
//                  and ZeRO shards — so the sharding rules live in one
//                  place. ZeRO: parameters are whole-space replicas except
//                  under ZeRO 3 (a dp shard); moments are replicas under
//                  ZeRO 0 and dp shards under ZeRO 1, 2, 3. Padding holds
//                  no element. The head's copy of tied word embeddings has
//                  the embedding's name, so a rank may hold an element
//                  twice (both copies are equal: the runtime sums their
//                  gradients).
//
//   ReshardPlan    pure: for every element each rank needs under the new
//                  layout, one source. A rank that held the element keeps
//                  its own copy (no transfer). The others — the element's
//                  destinations D, each needing it and not holding it —
//                  are dealt over its old holders H (ascending rank), on
//                  n ranks:
//                    1. each d ∈ D has a nearest holder h0(d), the h ∈ H
//                       minimizing (h − d) mod n (at or after d in rank
//                       order, cyclically);
//                    2. the destinations of one nearest holder h0 = H[i],
//                       ordered by (h0 − d) mod n ascending (the one just
//                       before h0 first; distinct d, so no ties), take
//                       H[i], H[i + 1], H[i + 2], … in turn, wrapping
//                       around H: the j-th (from 0) gets H[(i + j) mod |H|].
//                  A destination alone with its nearest holder (the usual
//                  case within a stage: tp is innermost in Megatron's rank
//                  order, so the nearest holder is usually on its node)
//                  gets that holder; many destinations sharing one (a
//                  stage moving to other ranks: every rank of the old
//                  stage 2k needing stage 2k + 1's state, whose nearest
//                  holder is the same first replica) are spread over all
//                  replicas, one each in turn, instead of all falling on
//                  one. The rule is deterministic (every rank computes the
//                  same plan) and a function of the element's H and D
//                  alone (workload/reshard_senders.h DealSenders, shared),
//                  so the switch cost model
//                  (costmodel/reshard_cost.h) applies it to each piece of
//                  a tensor with one H and one D and counts the same bytes
//                  per rank. The plan lists transfers and per-rank totals
//                  of bytes sent and received (4 bytes an element).
//
//   ExecuteReshard over a Communicator of the whole world (MPI on the cpu
//                  backend, NCCL on cuda): one message per (source,
//                  destination) pair, the pair's transfers packed in plan
//                  order, all posted as one batch of Isend/Irecv; returns
//                  the new state and the bytes this rank sent and received,
//                  counted at the Isend/Irecv calls. Staging is through
//                  host memory (state is exported and imported as host
//                  copies, runtime.h's TrainerState).
//
// ApplyReshardOnHost runs the same packing and unpacking for all ranks in
// one process, for tests and for checking a plan without a job.
//
// Thread-safety: plain values and pure functions; ExecuteReshard is
// collective over the communicator and uses it from one thread.
#ifndef ORRERY_EXEC_RESHARD_H_
#define ORRERY_EXEC_RESHARD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "exec/communicator.h"
#include "exec/runtime.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::exec {

enum class StateKind { kParameter = 0, kAdamM = 1, kAdamV = 2 };

// "param", "adam_m", "adam_v".
const char* StateKindName(StateKind kind);

// Elements [begin, begin + length) of full tensor `tensor` (row-major), of
// kind `kind`, held at [offset, offset + length) of the rank's buffer of
// that kind in space `space`.
struct StateRun {
  StateKind kind = StateKind::kParameter;
  std::string tensor;
  int64_t begin = 0;
  int64_t length = 0;
  int space = 0;
  int64_t offset = 0;
};

// One rank's state, element by element.
struct StateMap {
  int rank = 0;
  // Elements of each space's parameter and moment buffers (TrainerState's sizes).
  std::vector<int64_t> parameter_elements;
  std::vector<int64_t> moment_elements;
  // Sorted by (kind, tensor, begin, space, offset); adjacent runs that
  // continue each other in both the tensor and the buffer are merged.
  std::vector<StateRun> runs;
  // Elements of each full tensor (the product of its full shape).
  std::map<std::string, int64_t> tensor_elements;

  // Distinct elements held (an element held twice counts once).
  int64_t DistinctElements() const;
};

StateMap DescribeState(const TrainerLayout& layout);

// StateMap of every rank of a `world_size`-rank job under `plan`, in rank
// order. Errors: TrainerStateLayout's.
Result<std::vector<StateMap>> DescribeStates(const workload::ModelSpec& model,
                                             const workload::Plan& plan,
                                             const ExecuteOptions& options, int world_size);

// Elements [begin, begin + length) of (kind, tensor) sent from src to dst.
struct StateTransfer {
  int src = 0;
  int dst = 0;
  StateKind kind = StateKind::kParameter;
  std::string tensor;
  int64_t begin = 0;
  int64_t length = 0;
  int64_t bytes() const { return length * int64_t{sizeof(float)}; }
};

struct ReshardPlan {
  int world_size = 0;
  // Sorted by (src, dst), then in the order the destination asked for the
  // elements; the message from src to dst is its transfers' elements back
  // to back in this order.
  std::vector<StateTransfer> transfers;
  std::vector<int64_t> bytes_sent;      // per rank
  std::vector<int64_t> bytes_received;  // per rank
  std::vector<int64_t> bytes_kept;      // per rank: needed elements it already held, × 4
  int64_t total_bytes() const;          // Σ bytes_sent
  // Messages (non-empty (src, dst) pairs).
  int messages() const;
};

// The plan moving `from` (every rank's old StateMap, rank order) to `to`
// (the new ones). InvalidArgument when the two have different numbers of
// ranks, name a tensor with different sizes, or when an element some rank
// needs is held by no rank (the layouts are of different models).
Result<ReshardPlan> PlanReshard(const std::vector<StateMap>& from,
                                const std::vector<StateMap>& to);

// Zero-filled state of the sizes `map` gives.
TrainerState EmptyState(const StateMap& map, int64_t step);

// The new state of every rank, computed in one process: what
// ExecuteReshard produces on each rank of a job.
// REQUIRES: plan = PlanReshard(from, to); old_states[r] matches from[r].
std::vector<TrainerState> ApplyReshardOnHost(const ReshardPlan& plan,
                                             const std::vector<StateMap>& from,
                                             const std::vector<StateMap>& to,
                                             const std::vector<TrainerState>& old_states);

struct ReshardResult {
  TrainerState state;  // this rank's, in its new layout
  // Counted at the Isend/Irecv calls: Σ count × 4 over this rank's messages.
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  int messages_sent = 0;
  int messages_received = 0;
  double seconds = 0;  // wall time of the exchange on this rank (packing included)
};

// Moves this rank's state. Collective over `world`, a communicator of the
// whole job whose group rank r is MPI rank r (MakeCommunicator with ranks
// 0 … n − 1), on `backend`. `from` and `to` are every rank's maps.
// InvalidArgument when `old_state` does not match from[world.rank()] or the
// communicator is not the whole job in rank order (checked before any
// transfer: every rank returns the same kind of error only if its own
// inputs are wrong, so callers should agree on the status).
// REQUIRES: plan = PlanReshard(from, to), the same on every rank; every
// rank's old state has the same step.
Result<ReshardResult> ExecuteReshard(const ReshardPlan& plan, const std::vector<StateMap>& from,
                                     const std::vector<StateMap>& to,
                                     const TrainerState& old_state, Communicator& world,
                                     Backend& backend);

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_RESHARD_H_
