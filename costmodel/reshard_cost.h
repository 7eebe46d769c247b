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
//                   sender (the old holder nearest after the destination
//                   in rank order, cyclically), so that
//                   for the executor's fp32 state (4-byte parameters, 8
//                   bytes of Adam moments per element) the per-rank bytes
//                   equal those exec::ExecuteReshard counts at its
//                   Isend/Irecv calls (tests/exec/reshard_cost_test.cc).
//                   Holdings are kept as rectangles of each full tensor
//                   (rows × columns), never element by element, so a
//                   switch of a 405B-parameter model on 16,384 ranks is
//                   counted in seconds.
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
  // Per rank.
  std::vector<int64_t> bytes_sent;
  std::vector<int64_t> bytes_received;
  std::vector<int64_t> bytes_kept;       // needed bytes the rank already held
  std::vector<int64_t> sent_off_node;    // of bytes_sent, to other nodes
  std::vector<int64_t> received_off_node;
  std::vector<int> messages_sent;        // distinct destinations
  std::vector<int> messages_received;    // distinct sources
  int64_t old_state_bytes = 0;  // distinct bytes of the state (every element once)
  int64_t new_state_bytes = 0;  // Σ over new ranks of the bytes each holds

  int64_t total_bytes() const;   // Σ bytes_sent
  int64_t max_sent() const;
  int64_t max_received() const;
};

// The traffic of switching `model`'s state from plan `from` on
// `from_ranks` ranks to plan `to` on `to_ranks` ranks, with
// `devices_per_node` devices per node (rank r on node r / devices_per_node,
// for sent_off_node). Layer-wise plans (tp, dp, ZeRO differing between
// layers, which the executor does not run) are laid out unit by unit, each
// layer its own bucket; context- and expert-parallel ranks hold the state
// as data-parallel replicas do (ZeRO shards over dp × cp, as Megatron-LM's
// distributed optimizer). InvalidArgument when a plan's devices differ from
// its rank count or its layers are not the model's.
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

// The time of `traffic` on `cluster` (its first node type's intra-node
// bandwidth per device and NIC bandwidth per device; with a calibration,
// its fitted point-to-point α added per message), and of a checkpoint at
// `storage`. A switch moving no byte costs zero.
Result<SwitchCost> EstimateSwitchCost(const ReshardTraffic& traffic,
                                      const topology::ClusterSpec& cluster,
                                      const std::optional<StorageBandwidth>& storage);

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_RESHARD_COST_H_
