// The cost of switching plans (issue #10): moving a training run's state —
// parameters and optimizer states — from the layout of one plan to the
// layout of another, either in memory over the network (every missing
// piece sent by one of its old holders, as the executor's re-sharding,
// exec/reshard.h, does it) or through a checkpoint on shared storage.
//
// Two parts:
//
//   ReshardTraffic  bytes: what each rank of the switch sends, receives
//                   and keeps, and how much of it crosses nodes. Computed
//                   from the two plans' state layouts, which follow the
//                   executor's placement rules exactly (runtime.h
//                   TrainerLayout: Megatron's tensor-parallel splits of
//                   every tensor, the pipeline's stages, ZeRO's data-
//                   parallel shards of flat buckets of units in backward
//                   order, padded to a multiple of dp) and its choice of
//                   sender (workload/reshard_senders.h, below), so that
//                   for the executor's fp32 state (4-byte parameters, 8
//                   bytes of Adam moments per element) the per-rank bytes
//                   equal those exec::ExecuteReshard counts at its
//                   Isend/Irecv calls (tests/exec/reshard_cost_test.cc
//                   against exec::PlanReshard, exec_reshard_checks over
//                   MPI). Holdings are kept as rectangles of each full
//                   tensor (rows × columns), never element by element, so
//                   a switch of Llama-3-405B on 16,384 ranks is counted in
//                   1 to 3 seconds (docs/switch-cost.md).
//
//   SwitchCost      time: in memory, each rank's bytes over its links
//                   (intra-node fabric for peers on its node, its NIC
//                   otherwise; sending and receiving in parallel, the
//                   slower of the two), the slowest rank; through a
//                   checkpoint, every distinct byte of the old state
//                   written and every byte of the new state read at the
//                   storage's aggregate bandwidth. The cheaper is chosen.
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_COSTMODEL_RESHARD_COST_H_
#define ORRERY_COSTMODEL_RESHARD_COST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "costmodel/collective.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::costmodel {

// Bytes per element of each kind of state.
struct StateBytes {
  // The executor's fp32 training: 4-byte parameters, Adam m and v (8).
  // Mixed-precision training on GPUs (Megatron-LM's distributed
  // optimizer): 2-byte bf16 parameters, and an fp32 master copy, m and v
  // (12) laid out as the moments (ZeRO's K = 12, arXiv 1910.02054 §3.1).
  int64_t parameter = 4;
  int64_t optimizer = 8;

  static StateBytes Fp32Adam() { return {4, 8}; }
  static StateBytes MixedPrecisionAdam() { return {2, 12}; }
};

struct StateLayoutOptions {
  // Parameters per data-parallel bucket, as exec::ExecuteOptions; 0:
  // max(4·10⁷, 10⁶·dp), Megatron-LM's default and the executor's.
  int64_t bucket_parameters = 0;
  StateBytes bytes;
};

struct ReshardTraffic {
  int ranks = 0;  // max(old world, new world); rank r is device r in both
  int devices_per_node = 1;  // as given: rank r is on node r / devices_per_node
  // Per rank.
  std::vector<int64_t> bytes_sent;
  std::vector<int64_t> bytes_received;
  std::vector<int64_t> bytes_kept;       // needed bytes the rank already held
  std::vector<int64_t> sent_off_node;    // of bytes_sent, to other nodes
  std::vector<int64_t> received_off_node;
  std::vector<int> messages_sent;        // distinct destinations
  std::vector<int> messages_received;    // distinct sources
  std::vector<int> messages_sent_off_node;  // of messages_sent, to other nodes
  std::vector<int> messages_received_off_node;
  int64_t old_state_bytes = 0;  // distinct bytes of the state (every element once)
  int64_t new_state_bytes = 0;  // Σ over new ranks of the bytes each holds

  int64_t total_bytes() const;   // Σ bytes_sent
  int64_t max_sent() const;
  int64_t max_received() const;
};

// The traffic of switching `model`'s state from plan `from` on
// `from_ranks` ranks to plan `to` on `to_ranks` ranks, with
// `devices_per_node` devices per node (rank r on node r / devices_per_node,
// for the off-node counts).
//
// The layout of a plan (docs/switch-cost.md):
//   * tensors: the executor's (exec/gpt_model.h) names, full shapes and
//     tensor-parallel pieces — the fused [q | k | v] weight split by heads,
//     SwiGLU's [gate | up], the vocabulary split of the word embeddings,
//     norms and row-parallel biases whole on every tp rank; the head's own
//     copy of tied word embeddings on the last stage; for MoE models
//     (Mixtral) a replicated router and E/ep experts per expert-parallel
//     rank, each split over tp as the dense MLP;
//   * ranks: workload::RankGroups' grid (Megatron-Core's order); stages by
//     the plan's partition and interleaving;
//   * spaces: as runtime.h's TrainerLayout when every layer has the same
//     tp, cp, dp, ep and ZeRO stage and the model is dense (the executor's
//     case: ZeRO 0/1 buckets of units in backward order of at least
//     bucket_parameters, ZeRO 2/3 one unit each); otherwise (layer-wise
//     plans, MoE) one space per unit — each layer's block, its experts, the
//     embedding (laid out by layer 0's strategy) and the head (by the last
//     layer's);
//   * sharding: ZeRO >= 1 pads a space to a multiple of the sharding group
//     (dp × cp; the experts' dp × cp / ep) and gives its j-th rank the
//     j-th shard; parameters are whole-space under ZeRO 0-2 and a shard
//     under ZeRO 3, moments whole under ZeRO 0 and a shard otherwise.
//     Context-parallel ranks hold the state as data-parallel replicas do
//     (Megatron-LM's distributed optimizer shards over dp × cp).
// Padding holds no state. The bytes of an element are options.bytes'.
//
// Per destination d (of n = max(from_ranks, to_ranks) ranks), the
// distinct elements it needs under `to` that it held under `from` are
// kept. The others come from old holders by workload/reshard_senders.h's
// rule, the executor's too (exec/reshard.h): for an
// element with old holders H (ascending) and destinations D (ranks needing
// it under `to` that did not hold it), each d ∈ D has a nearest holder
// h0(d) = the h ∈ H minimizing (h − d) mod n; the destinations sharing
// h0 = H[i], ordered by (h0 − d) mod n ascending, take H[i], H[i + 1], …
// in turn (the j-th, from 0, gets H[(i + j) mod |H|]). H and D are constant
// over each piece of a tensor the sweep yields (one old and one new holder
// set), so the rule is applied once per piece, to all its bytes.
//
// InvalidArgument when a plan's devices (pp × tp × cp × dp of each layer)
// differ from its rank count, its layers are not the model's, tp does not
// divide the heads, kv heads or FFN, ep does not divide the experts and
// dp × cp, or the partition does not fit; Unimplemented for encoder and
// encoder-decoder models.
Result<ReshardTraffic> ComputeReshardTraffic(const workload::ModelSpec& model,
                                             const workload::Plan& from, int from_ranks,
                                             const workload::Plan& to, int to_ranks,
                                             int devices_per_node,
                                             const StateLayoutOptions& options = {});

// The storage a checkpoint goes through: aggregate bandwidth, GB/s.
struct StorageBandwidth {
  double write_gb_per_s = 0;
  double read_gb_per_s = 0;
};

struct SwitchCost {
  Duration in_memory;                 // the slowest rank's exchange
  std::optional<Duration> checkpoint; // write then read; nullopt: no storage given
  bool via_checkpoint = false;        // the checkpoint is strictly cheaper
  Duration time() const { return via_checkpoint ? *checkpoint : in_memory; }
};

// The time of `traffic` on `cluster` and of a checkpoint at `storage`.
// Every rank sends and receives at once, each direction over its links:
//   out(r) = on-node bytes sent / B_fabric + off-node bytes sent / B_nic(r)
//            + α_node · on-node messages sent + α_net · off-node ones
//   in(r)  = the same for what r receives
//   in_memory = max over r of max(out(r), in(r))
// with B_fabric the primary node type's fabric.bandwidth_per_device,
// B_nic(r) its NicBandwidthPerDevice(r mod devices_per_node), and α the
// time of a zero-byte send/recv between two devices of one node (α_node)
// or of two nodes (α_net) from CollectiveModel — NCCL's point-to-point
// latency (REFERENCES.md §2: base 8.4 µs + NVLink 3.4 µs on H100 nodes),
// or a calibration's fitted send/recv. Through a checkpoint:
//   checkpoint = old_state_bytes / write + new_state_bytes / read
// (GB/s = 10⁹ B/s). via_checkpoint when it is strictly cheaper. A switch
// moving no byte costs zero both ways. InvalidArgument when the cluster's
// devices per node differ from the traffic's, a storage bandwidth is not
// positive, or the traffic crosses nodes of a cluster without NICs.
Result<SwitchCost> EstimateSwitchCost(const ReshardTraffic& traffic,
                                      const topology::ClusterSpec& cluster,
                                      const std::optional<StorageBandwidth>& storage);

// The same with `collectives`' figures: its cluster, and its calibration's
// fitted send/recv latency where it has one (CollectiveModel::Estimate of a
// zero-byte kSendRecv) as α.
Result<SwitchCost> EstimateSwitchCost(const ReshardTraffic& traffic,
                                      const CollectiveModel& collectives,
                                      const std::optional<StorageBandwidth>& storage);

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_RESHARD_COST_H_
