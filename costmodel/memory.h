// The memory model: how many bytes one device of each pipeline stage holds
// at its peak while training a model under a Plan.
//
// A stage's device holds (docs/memory.md derives each term):
//   * model states — parameters, gradients and optimizer states of its
//     layers (after tensor, pipeline and expert splitting), under plain data
//     parallelism or ZeRO-1/2/3 sharded over each layer's dp·cp ranks
//     (Rajbhandari et al., arXiv 1910.02054, §5: baseline (2+2+K)Ψ,
//     stage 1 4Ψ + KΨ/N_d, stage 2 2Ψ + (2+K)Ψ/N_d, stage 3 (2+2+K)Ψ/N_d,
//     with K = 12 for mixed-precision Adam); the gradient bytes per
//     parameter default to Megatron-LM's fp32 main gradients, 4, which gives
//     its "18 B/param, or 6 + 12/d with the distributed optimizer";
//   * activations in flight — each layer's saved activations for one
//     micro-batch (workload::ExpandLayer under the layer's tp, SP and cp;
//     Korthikanti et al., arXiv 2205.05198) times the micro-batches whose
//     forward pass the schedule has run and whose backward it has not:
//     GPipe m, 1F1B min(p − s, m) at stage s, interleaved 1F1B as
//     Megatron-LM's schedule orders its chunks (its first stage holds
//     (1 + (p−1)/(p·v))·p micro-batches' worth); recomputation keeps
//     2sbh per layer (full; /t with SP, /cp with CP) or drops the attention
//     core (selective), and the layer being recomputed holds its activations
//     once more during its backward;
//   * the embedding on the first stage and the LM head on the last (a tied
//     embedding's copy on the last stage when pp > 1, as Megatron-LM);
//   * communication buffers (pipeline send/receive, ZeRO-2's reduction
//     bucket, ZeRO-3's gathered parameters of the layer in use and the one
//     prefetched);
//   * an allowance for allocator fragmentation and for the framework's
//     context (CUDA context, cuBLAS workspace, NCCL buffers): nominal
//     figures, overridable in MemoryOptions.
// A stage fits when its total is at most the device's capacity less a
// reserve.
//
// Thread-safety: pure functions of their arguments.
#ifndef ORRERY_COSTMODEL_MEMORY_H_
#define ORRERY_COSTMODEL_MEMORY_H_

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

struct MemoryOptions {
  // Bytes per parameter of the weights the forward and backward passes use.
  // nullopt: 4 when the plan's precision is fp32 or tf32, otherwise 2
  // (bf16/fp16; fp8 training keeps bf16 weights, as Transformer Engine).
  std::optional<int> parameter_bytes;
  // Bytes per parameter of the gradients: 4 is Megatron-LM's fp32 main
  // gradients (its default with bf16); 2 is what the ZeRO paper counts.
  int gradient_bytes = 4;
  // Bytes per parameter of the optimizer states, the ZeRO paper's K.
  // nullopt: 12 for mixed-precision Adam (fp32 master weights, momentum and
  // variance) when parameter bytes are 2; 8 (momentum and variance) when the
  // weights are already fp32.
  std::optional<int> optimizer_bytes;
  // Bytes per activation element (bf16/fp16).
  int activation_bytes = 2;
  // A fused attention kernel that stores no s×s scores
  // (workload::ExpansionOptions::flash_attention).
  bool flash_attention = false;
  // ZeRO-2's gradient reduction bucket, in elements: the unsharded
  // gradients of one bucket exist before they are reduce-scattered.
  // 2e8 is the reduce_bucket_size default of PyTorch Lightning's
  // DeepSpeedStrategy; capped at the stage's parameters.
  int64_t zero2_bucket_elements = 200'000'000;
  // Allocator fragmentation, as a fraction of what the model allocates
  // (model states, activations and buffers). Nominal: PyTorch's caching
  // allocator leaves unusable gaps that depend on the allocation pattern.
  double fragmentation = 0.10;
  // CUDA context, the cuBLAS workspace (32 MiB on Hopper, cuBLAS's
  // recommended size, which PyTorch allocates per handle and stream) and
  // NCCL's communicator buffers. Nominal.
  Bytes framework_context = GiB(1);
  // Device memory kept free: memory the driver does not hand out and
  // headroom for allocations this model ignores. Nominal.
  Bytes reserve = GiB(1);
};

// The memory of one device of one pipeline stage at its peak.
struct StageMemory {
  int stage = 0;
  int first_layer = 0;  // the stage's transformer layers: [first_layer, first_layer + num_layers)
  int num_layers = 0;
  // Parameters of the stage's layers on one device after tensor, pipeline
  // and expert splitting, before ZeRO sharding; the embedding on the first
  // stage, the head (and a tied embedding's copy when pp > 1) on the last.
  int64_t parameters = 0;

  Bytes parameter_bytes;  // the weights held (ZeRO-3: this device's shard)
  Bytes gradient_bytes;   // ZeRO-2/3: the shard
  Bytes optimizer_bytes;  // ZeRO-1/2/3: the shard
  // Forward activations kept for the backward pass, at the schedule's peak.
  Bytes activations;
  // The recomputed layer's activations during its backward (selective or
  // full recomputation; zero without).
  Bytes recompute_activations;
  Bytes communication_buffers;
  Bytes fragmentation;
  Bytes framework_context;
  // Micro-batches whose activations are held at the peak, counted per model
  // chunk: the interleaved schedule's rank holds vpp chunks, and this counts
  // (chunk, micro-batch) pairs; the other schedules have one chunk.
  int in_flight = 0;

  Bytes ModelStates() const { return parameter_bytes + gradient_bytes + optimizer_bytes; }
  Bytes Total() const;
};

struct MemoryEstimate {
  std::vector<StageMemory> stages;  // one per pipeline stage, in order
  int peak_stage = 0;               // the stage with the largest Total()
  Bytes capacity;                   // the device's memory
  Bytes reserve;                    // kept free (MemoryOptions::reserve)

  Bytes Usable() const { return capacity - reserve; }
  const StageMemory& Peak() const { return stages[static_cast<size_t>(peak_stage)]; }
  // True when every stage's total is at most Usable().
  bool Fits() const;
};

// Micro-batches (per model chunk) whose activations stage `stage` holds at
// its peak, of `m` micro-batches on `p` stages with `vpp` chunks per stage:
//   GPipe:       m
//   1F1B:        min(p − s, m)
//   interleaved: min((vpp − 1)·p + 2(p − s − 1) + 1, m·vpp) — Megatron-LM's
//                warm-up forwards plus the first steady-state forward
//                (schedules.py, forward_backward_pipelining_with_interleaving).
// For s = 0 the interleaved count divided by vpp is p + (p − 1)/vpp =
// (1 + (p−1)/(p·vpp))·p, Korthikanti's interleaving factor and
// Megatron-LM's theoretical_memory_usage.py before its ceil.
// REQUIRES: p >= 1, 0 <= s < p, m >= 1, vpp >= 1.
int InFlightMicroBatches(workload::PipelineSchedule schedule, int p, int s, int m, int vpp);

// Of InFlightMicroBatches(kInterleaved, ...) at stage s, how many belong to
// each of the vpp chunks: Megatron-LM runs forwards in groups of p
// micro-batches, chunk after chunk (forward k uses chunk (k mod p·vpp) / p).
// REQUIRES: as InFlightMicroBatches.
std::vector<int> InFlightPerChunk(int p, int s, int m, int vpp);

// The memory of each pipeline stage of `plan` for `model` on `cluster`'s
// devices (the smallest device memory when the cluster mixes node types).
// InvalidArgument when the plan has no layers, does not have one strategy
// per transformer layer of the model, or a layer's layout does not divide
// the model (workload::ExpandLayer's checks).
Result<MemoryEstimate> EstimateMemory(const workload::ModelSpec& model,
                                      const workload::Plan& plan,
                                      const topology::ClusterSpec& cluster,
                                      const MemoryOptions& options = {});

// A table with one row per stage: layers, parameters, the breakdown and the
// total, the peak stage marked, and the usable capacity; for the CLI.
std::string FormatMemoryTable(const MemoryEstimate& estimate);

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_MEMORY_H_
