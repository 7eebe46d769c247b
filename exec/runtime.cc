#include "exec/runtime.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/json.h"
#include "core/statistics.h"
#include "exec/communicator.h"
#include "exec/gpt_model.h"
#include "exec/op_recorder.h"
#include "workload/pipeline_schedule.h"
#include "workload/plan_json.h"

namespace orrery::exec {

namespace {

using traces::CollectiveOp;
using traces::ExecutionPhase;
using workload::ParallelDim;
using workload::PipelinePass;

// The head's copy of the tied word embeddings has the embedding's name
// (exec/gpt_model.h).
constexpr char kWordEmbeddings[] = "embedding.word_embeddings.weight";

// splitmix64's finalizer (Steele, Lea & Flood, OOPSLA 2014): a bijective
// mix of 64 bits, the counter-based generator of the synthetic tokens.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The tokens 0 … count − 1 of global sample `sample` of step `iteration`:
// a walk through a fixed successor function of the vocabulary. The first
// token is a hash of (seed, iteration, sample); each next one is
// Successor(previous), a hash of (seed, token) modulo the vocabulary, the
// same function at every step. The data is thus a learnable bigram table:
// the loss starts near log V and falls as the model learns it, which a
// stream of independent random tokens (whose loss stays at log V whatever
// the model does) would not show.
std::vector<int32_t> SyntheticSample(uint64_t seed, int iteration, int64_t sample, int64_t count,
                                     int vocab) {
  const uint64_t v = static_cast<uint64_t>(vocab);
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  uint64_t token = Mix(Mix(Mix(seed) ^ static_cast<uint64_t>(iteration)) ^
                       static_cast<uint64_t>(sample)) % v;
  const uint64_t successor_key = Mix(seed ^ 0x5eed5eed5eed5eedULL);
  for (int64_t t = 0; t < count; ++t) {
    tokens[static_cast<size_t>(t)] = static_cast<int32_t>(token);
    token = Mix(successor_key ^ token) % v;
  }
  return tokens;
}

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// The group of `rank` among `groups`, and its index in it.
std::pair<std::vector<int>, int> GroupOf(const std::vector<std::vector<int>>& groups, int rank) {
  for (const std::vector<int>& g : groups) {
    for (size_t i = 0; i < g.size(); ++i) {
      if (g[i] == rank) return {g, static_cast<int>(i)};
    }
  }
  ORRERY_CHECK(false) << "rank " << rank << " is in no group";
  return {};
}

// A run of parameters that is reduced, sharded and updated as one: a
// data-parallel bucket of units (ZeRO 0/1), or one unit (ZeRO 2/3). Its
// flat buffers hold its units back to back; `size` is padded to a multiple
// of dp when sharded, and this rank's shard is [dp_rank·shard, +shard).
struct Space {
  int64_t size = 0;
  int64_t shard = 0;
  DeviceArray<float> params;       // full; ZeRO 0, 1, 2
  DeviceArray<float> grads;        // full; ZeRO 0, 1
  DeviceArray<float> param_shard;  // ZeRO 3
  DeviceArray<float> grad_shard;   // ZeRO 1, 2, 3
  DeviceArray<float> adam_m;       // size (ZeRO 0) or shard
  DeviceArray<float> adam_v;
  std::vector<int> units;
  int units_pending = 0;  // units whose last backward of the step has not run
  std::unique_ptr<CommRequest> reduction;
};

struct UnitSlot {
  std::unique_ptr<ModelUnit> unit;
  int chunk = 0;
  int space = 0;
  int64_t offset = 0;  // in the space's flat buffers
  int64_t count = 0;   // parameter_count()
  int backwards_left = 0;
};

// A rank's place in the plan's grid (Megatron-Core's order,
// workload::RankGroups) and the groups it belongs to.
struct Coordinates {
  std::vector<int> tp_group, dp_group, pp_group;
  int tp_rank = 0, dp_rank = 0, stage = 0;
};

Coordinates CoordinatesOf(const workload::Plan& plan, int rank) {
  Coordinates c;
  std::tie(c.tp_group, c.tp_rank) = GroupOf(workload::RankGroups(plan, 0, ParallelDim::kTp), rank);
  std::tie(c.dp_group, c.dp_rank) = GroupOf(workload::RankGroups(plan, 0, ParallelDim::kDp), rank);
  std::tie(c.pp_group, c.stage) = GroupOf(workload::RankGroups(plan, 0, ParallelDim::kPp), rank);
  return c;
}

// The units of one stage, chunk by chunk, in forward order: the embedding
// first on stage 0, the head last on the last stage.
struct StageUnits {
  std::vector<UnitSlot> units;
  std::vector<std::vector<int>> chunk_units;  // per chunk, forward order
  int embedding_unit = -1, head_unit = -1;
};

StageUnits BuildStageUnits(const UnitContext& context, const workload::Plan& plan, int stage,
                           int pp, int vpp) {
  StageUnits out;
  const std::vector<std::pair<int, int>> ranges = workload::ChunkLayerRanges(plan);
  out.chunk_units.assign(static_cast<size_t>(vpp), {});
  for (int c = 0; c < vpp; ++c) {
    auto add = [&](std::unique_ptr<ModelUnit> unit) {
      UnitSlot slot;
      slot.count = unit->parameter_count();
      slot.unit = std::move(unit);
      slot.chunk = c;
      out.chunk_units[static_cast<size_t>(c)].push_back(static_cast<int>(out.units.size()));
      out.units.push_back(std::move(slot));
    };
    if (stage == 0 && c == 0) {
      out.embedding_unit = static_cast<int>(out.units.size());
      add(MakeEmbedding(context));
    }
    const auto [first, count] = ranges[static_cast<size_t>(stage * vpp + c)];
    for (int layer = first; layer < first + count; ++layer) {
      add(MakeBlock(context, layer, plan.layers[static_cast<size_t>(layer)].recompute));
    }
    if (stage == pp - 1 && c == vpp - 1) {
      out.head_unit = static_cast<int>(out.units.size());
      add(MakeHead(context));
    }
  }
  return out;
}

// The spaces of a stage's units (runtime.h's StateSpace) and each unit's
// place in them (its slot's space and offset).
struct SpacePlacement {
  int64_t size = 0;
  int64_t shard = 0;
  std::vector<int> units;
};

std::vector<SpacePlacement> PlaceUnits(std::vector<UnitSlot>& units,
                                       const std::vector<std::vector<int>>& chunk_units,
                                       int zero, int dp_size, int64_t bucket_parameters) {
  // Units in backward order: the last chunk's last unit first.
  std::vector<int> backward_order;
  for (int c = static_cast<int>(chunk_units.size()) - 1; c >= 0; --c) {
    const std::vector<int>& us = chunk_units[static_cast<size_t>(c)];
    backward_order.insert(backward_order.end(), us.rbegin(), us.rend());
  }
  const int64_t dp = dp_size;
  std::vector<SpacePlacement> spaces;
  if (zero <= 1) {
    // Megatron-LM's DDP buckets: runs of units in backward order of at
    // least bucket_size parameters, default max(4·10⁷, 10⁶·dp)
    // (megatron/core/distributed/distributed_data_parallel.py).
    const int64_t bucket = bucket_parameters > 0 ? bucket_parameters
                                                 : std::max<int64_t>(40'000'000, 1'000'000 * dp);
    for (int u : backward_order) {
      if (spaces.empty() || spaces.back().size >= bucket) spaces.emplace_back();
      SpacePlacement& s = spaces.back();
      UnitSlot& slot = units[static_cast<size_t>(u)];
      slot.space = static_cast<int>(spaces.size()) - 1;
      slot.offset = s.size;
      s.size += slot.count;
      s.units.push_back(u);
    }
  } else {
    for (int u : backward_order) {
      SpacePlacement& s = spaces.emplace_back();
      UnitSlot& slot = units[static_cast<size_t>(u)];
      slot.space = static_cast<int>(spaces.size()) - 1;
      slot.offset = 0;
      s.size = slot.count;
      s.units.push_back(u);
    }
  }
  for (SpacePlacement& s : spaces) {
    if (zero >= 1) s.size = RoundUp(std::max<int64_t>(s.size, 1), dp);
    s.shard = zero >= 1 ? s.size / dp : s.size;
  }
  return spaces;
}

TrainerLayout MakeLayout(int rank, const Coordinates& c, int dp, int zero,
                         const std::vector<UnitSlot>& units,
                         const std::vector<SpacePlacement>& spaces) {
  TrainerLayout layout;
  layout.rank = rank;
  layout.tp_rank = c.tp_rank;
  layout.dp_rank = c.dp_rank;
  layout.stage = c.stage;
  layout.dp = dp;
  layout.zero_stage = zero;
  for (const SpacePlacement& p : spaces) {
    StateSpace& s = layout.spaces.emplace_back();
    s.size = p.size;
    s.shard = p.shard;
    for (int u : p.units) {
      const UnitSlot& slot = units[static_cast<size_t>(u)];
      s.units.push_back({slot.unit->name(), slot.offset, slot.unit->parameters()});
    }
  }
  return layout;
}

// A communicator that knows only its place in its group: units read the
// tensor-parallel rank and size when they are built, so TrainerStateLayout
// builds them on one of these, outside any job. Any transfer is a bug.
class PlaceholderCommunicator final : public Communicator {
 public:
  PlaceholderCommunicator(std::vector<int> world_ranks, int rank)
      : world_ranks_(std::move(world_ranks)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(world_ranks_.size()); }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  std::string library() const override { return "none"; }
  void AllReduce(float*, int64_t, ReduceOp) override { Unexpected(); }
  void AllGather(const float*, float*, int64_t) override { Unexpected(); }
  void ReduceScatter(const float*, float*, int64_t) override { Unexpected(); }
  void AllToAll(const float*, float*, int64_t) override { Unexpected(); }
  void Broadcast(float*, int64_t, int) override { Unexpected(); }
  void Barrier() override { Unexpected(); }
  std::unique_ptr<CommRequest> AllReduceAsync(float*, int64_t) override { return Unexpected(); }
  std::unique_ptr<CommRequest> AllGatherAsync(const float*, float*, int64_t) override {
    return Unexpected();
  }
  std::unique_ptr<CommRequest> ReduceScatterAsync(const float*, float*, int64_t) override {
    return Unexpected();
  }
  std::unique_ptr<CommRequest> Isend(const float*, int64_t, int) override { return Unexpected(); }
  std::unique_ptr<CommRequest> Irecv(float*, int64_t, int) override { return Unexpected(); }

 private:
  static std::unique_ptr<CommRequest> Unexpected() {
    ORRERY_CHECK(false) << "a placeholder communicator cannot transfer data";
    return nullptr;
  }
  std::vector<int> world_ranks_;
  int rank_ = 0;
};

// The activations of one (micro-batch, chunk) between its forward and its
// backward: the received input and each unit's output but the head's.
struct LiveActivations {
  DeviceArray<float> input;
  std::vector<DeviceArray<float>> outputs;
  std::unique_ptr<CommRequest> send;  // of outputs.back() to the next virtual stage
};

// One micro-batch's synthetic data on the device.
struct DeviceBatch {
  DeviceArray<int32_t> tokens;
  DeviceArray<int32_t> targets;
  DeviceArray<int32_t> positions;
  MicroBatch mb;
};

// A transfer waiting to be posted with the next step's receives.
struct PendingSend {
  const float* data = nullptr;
  int64_t count = 0;
  int peer = 0;
  bool activation = true;  // else a gradient
  int micro_batch = 0;
  int chunk = 0;
  std::unique_ptr<CommRequest>* request = nullptr;  // where to keep the request
};

class Trainer {
 public:
  Trainer(MpiWorld& world, const workload::ModelSpec& model, const workload::Plan& plan,
          const ExecuteOptions& options, Backend& backend)
      : world_(world), model_(model), plan_(plan), options_(options), backend_(backend),
        recorder_(backend, world.rank()) {
    const auto slow = options.slow_ranks.find(world.rank());
    if (slow != options.slow_ranks.end()) recorder_.set_compute_factor(slow->second);
  }

  Status Setup();
  // Runs step `iteration` (0-based, counting warm-up) and returns the loss
  // of the global batch on every rank.
  double Step(int iteration);
  // This rank's share of the squared L2 norm of the step's gradient (after
  // the reductions, before the optimizer), such that the sum over ranks is
  // the squared norm of the single-rank run's gradient.
  double gradient_square_sum() const { return gradient_square_sum_; }
  OpRecorder& recorder() { return recorder_; }
  // Rank 0: full tensor name → values (collective).
  std::map<std::string, std::vector<float>> GatherParameters();
  // This rank's placement of its state (runtime.h).
  const TrainerLayout& layout() const { return layout_; }
  TrainerState ExportState(int64_t step);
  // The state's step count is the caller's to keep.
  Status ImportState(const TrainerState& state);

 private:
  Result<std::unique_ptr<Communicator>> Make(const std::vector<int>& group) {
    return MakeCommunicator(world_, backend_, group);
  }
  void BuildUnits();
  void AllocateParameters();
  std::vector<DeviceBatch> MakeBatches(int iteration);
  // The parameters of unit `u` for a pass; ZeRO-3 gathers them into `scratch`.
  const float* ParamsFor(int u, DeviceArray<float>& scratch, ExecutionPhase phase,
                         std::optional<int> micro_batch);
  void Forward(const MicroBatch& mb, int chunk);
  void Backward(const MicroBatch& mb, int chunk);
  void UnitBackwardDone(int u);
  void ReduceGradients();
  // Σ g² over the gradient elements this rank holds and no other rank
  // counts: tp-replicated tensors on tp rank 0 only, data-parallel replicas
  // (ZeRO 0) on dp rank 0 only, ZeRO shards where they live, and the head's
  // copy of tied embeddings not at all — each element of the single-rank
  // gradient exactly once over the job (Megatron-LM's get_grad_norm_fp32
  // counts the same way: tensor-parallel duplicates once).
  double GradientSquareSum() const;
  void SumTiedGradients();
  void OptimizerStep(int64_t step);
  int64_t rows() const {
    return ActivationRows(plan_.sequence_length, plan_.micro_batch_size, tp_size_,
                          sequence_parallel_);
  }
  int64_t activation_elements() const { return rows() * model_.hidden_size; }
  std::optional<int> LayerOf(int u) const { return units_[static_cast<size_t>(u)].unit->layer(); }

  MpiWorld& world_;
  const workload::ModelSpec& model_;
  const workload::Plan& plan_;
  const ExecuteOptions& options_;
  Backend& backend_;
  OpRecorder recorder_;

  int tp_size_ = 1, dp_size_ = 1, pp_size_ = 1, vpp_ = 1, micro_batches_ = 1;
  int tp_rank_ = 0, dp_rank_ = 0, stage_ = 0;
  int zero_ = 0;
  bool sequence_parallel_ = false;
  std::unique_ptr<Communicator> tp_, dp_, pp_, embedding_;
  std::vector<UnitSlot> units_;
  std::vector<std::vector<int>> chunk_units_;  // per chunk, forward order
  std::vector<Space> spaces_;
  std::map<std::pair<int, int>, LiveActivations> live_;
  // Gradients sent to the previous virtual stage, kept until their sends
  // complete (a deque: PendingSend points into it).
  std::deque<std::pair<std::unique_ptr<CommRequest>, DeviceArray<float>>> grad_sends_;
  std::vector<PendingSend> pending_sends_;
  // Gradient received for the backward of (micro-batch, chunk).
  std::map<std::pair<int, int>, DeviceArray<float>> received_grads_;
  int head_unit_ = -1, embedding_unit_ = -1;
  double gradient_square_sum_ = 0;
  int current_micro_batch_ = 0;
  TrainerLayout layout_;
};

Status Trainer::Setup() {
  const workload::LayerStrategy& l = plan_.layers.front();
  tp_size_ = l.tp;
  dp_size_ = l.dp;
  pp_size_ = plan_.pp;
  vpp_ = plan_.schedule == workload::PipelineSchedule::kInterleaved ? plan_.vpp : 1;
  micro_batches_ = plan_.NumMicroBatches();
  zero_ = l.zero_stage;
  sequence_parallel_ = l.sequence_parallel;
  const int rank = world_.rank();
  const Coordinates coordinates = CoordinatesOf(plan_, rank);
  const std::vector<int>& tp_group = coordinates.tp_group;
  const std::vector<int>& dp_group = coordinates.dp_group;
  const std::vector<int>& pp_group = coordinates.pp_group;
  tp_rank_ = coordinates.tp_rank;
  dp_rank_ = coordinates.dp_rank;
  stage_ = coordinates.stage;
  // Every rank makes the communicators in the same order (MakeCommunicator
  // is collective over the world).
  ORRERY_ASSIGN_OR_RETURN(tp_, Make(tp_group));
  ORRERY_ASSIGN_OR_RETURN(dp_, Make(dp_group));
  ORRERY_ASSIGN_OR_RETURN(pp_, Make(pp_group));
  if (model_.tied_embeddings && pp_size_ > 1) {
    // Megatron-LM's embedding group: the first and last stage of each
    // pipeline; the other ranks form singletons so the groups partition
    // the world.
    std::vector<int> group = {rank};
    if (stage_ == 0 || stage_ == pp_size_ - 1) group = {pp_group.front(), pp_group.back()};
    ORRERY_ASSIGN_OR_RETURN(embedding_, Make(group));
  }
  BuildUnits();
  AllocateParameters();
  std::vector<SpacePlacement> placement;
  for (const Space& s : spaces_) placement.push_back({s.size, s.shard, s.units});
  layout_ = MakeLayout(rank, coordinates, dp_size_, zero_, units_, placement);
  return Status::Ok();
}

void Trainer::BuildUnits() {
  UnitContext context;
  context.model = &model_;
  context.backend = &backend_;
  context.tp = tp_.get();
  context.sequence_parallel = sequence_parallel_;
  context.recorder = &recorder_;
  StageUnits built = BuildStageUnits(context, plan_, stage_, pp_size_, vpp_);
  units_ = std::move(built.units);
  chunk_units_ = std::move(built.chunk_units);
  embedding_unit_ = built.embedding_unit;
  head_unit_ = built.head_unit;
}

void Trainer::AllocateParameters() {
  const std::vector<SpacePlacement> placement =
      PlaceUnits(units_, chunk_units_, zero_, dp_size_, options_.bucket_parameters);
  spaces_.resize(placement.size());
  for (size_t i = 0; i < placement.size(); ++i) {
    spaces_[i].size = placement[i].size;
    spaces_[i].shard = placement[i].shard;
    spaces_[i].units = placement[i].units;
  }
  for (Space& s : spaces_) {
    if (zero_ <= 2) {
      s.params = DeviceArray<float>(backend_, s.size);
      backend_.Fill(s.params.data(), s.size, 0.0f);
      for (int u : s.units) {
        UnitSlot& slot = units_[static_cast<size_t>(u)];
        slot.unit->InitializeParameters(options_.seed, s.params.data() + slot.offset);
      }
    } else {
      DeviceArray<float> full(backend_, s.size);
      backend_.Fill(full.data(), s.size, 0.0f);
      UnitSlot& slot = units_[static_cast<size_t>(s.units.front())];
      slot.unit->InitializeParameters(options_.seed, full.data());
      s.param_shard = DeviceArray<float>(backend_, s.shard);
      backend_.CopyOnDevice(full.data() + dp_rank_ * s.shard, s.param_shard.data(),
                            s.shard * int64_t{sizeof(float)});
    }
    if (zero_ <= 1) s.grads = DeviceArray<float>(backend_, s.size);
    if (zero_ >= 1) s.grad_shard = DeviceArray<float>(backend_, s.shard);
    s.adam_m = DeviceArray<float>(backend_, s.shard);
    s.adam_v = DeviceArray<float>(backend_, s.shard);
    backend_.Fill(s.adam_m.data(), s.shard, 0.0f);
    backend_.Fill(s.adam_v.data(), s.shard, 0.0f);
  }
  backend_.Synchronize();
}

std::vector<DeviceBatch> Trainer::MakeBatches(int iteration) {
  std::vector<DeviceBatch> batches(static_cast<size_t>(micro_batches_));
  const bool needs_data = embedding_unit_ >= 0 || head_unit_ >= 0;
  const int64_t b = plan_.micro_batch_size;
  const int64_t seq = plan_.sequence_length;
  const float loss_scale =
      static_cast<float>(1.0 / (static_cast<double>(plan_.global_batch_size) * seq));
  for (int i = 0; i < micro_batches_; ++i) {
    DeviceBatch& d = batches[static_cast<size_t>(i)];
    d.mb.index = i;
    d.mb.batch = b;
    d.mb.sequence = seq;
    d.mb.loss_scale = loss_scale;
    if (!needs_data) continue;
    const int64_t n = seq * b;
    std::vector<int32_t> tokens(static_cast<size_t>(n)), targets(static_cast<size_t>(n)),
        positions(static_cast<size_t>(n));
    // Replica dp_rank's micro-batch i holds the global samples
    // [(i·dp + dp_rank)·b, +b); rows are sequence-major (row = t·b + j).
    const int64_t first_sample = (static_cast<int64_t>(i) * dp_size_ + dp_rank_) * b;
    for (int64_t j = 0; j < b; ++j) {
      const std::vector<int32_t> sample = SyntheticSample(
          options_.seed, iteration, first_sample + j, seq + 1, model_.vocab_size);
      for (int64_t t = 0; t < seq; ++t) {
        const size_t row = static_cast<size_t>(t * b + j);
        tokens[row] = sample[static_cast<size_t>(t)];
        targets[row] = sample[static_cast<size_t>(t + 1)];
        positions[row] = static_cast<int32_t>(t);
      }
    }
    d.tokens = DeviceArray<int32_t>(backend_, n);
    d.targets = DeviceArray<int32_t>(backend_, n);
    d.positions = DeviceArray<int32_t>(backend_, n);
    const int64_t bytes = n * int64_t{sizeof(int32_t)};
    backend_.CopyFromHost(tokens.data(), d.tokens.data(), bytes);
    backend_.CopyFromHost(targets.data(), d.targets.data(), bytes);
    backend_.CopyFromHost(positions.data(), d.positions.data(), bytes);
    d.mb.tokens = d.tokens.data();
    d.mb.targets = d.targets.data();
    d.mb.positions = d.positions.data();
  }
  return batches;
}

const float* Trainer::ParamsFor(int u, DeviceArray<float>& scratch, ExecutionPhase phase,
                                std::optional<int> micro_batch) {
  const UnitSlot& slot = units_[static_cast<size_t>(u)];
  Space& s = spaces_[static_cast<size_t>(slot.space)];
  if (zero_ <= 2) return s.params.data() + slot.offset;
  // ZeRO-3: gather the unit's full parameters for this pass only.
  scratch = DeviceArray<float>(backend_, s.size);
  OpRecorder::Scope scope = recorder_.Communication(
      "dp.allgather", CollectiveOp::kAllGather, phase, LayerOf(u), micro_batch,
      dp_->world_ranks(), s.size * int64_t{sizeof(float)});
  dp_->AllGather(s.param_shard.data(), scratch.data(), s.shard);
  return scratch.data();
}

void Trainer::Forward(const MicroBatch& mb, int chunk) {
  LiveActivations& live = live_[{mb.index, chunk}];
  const std::vector<int>& us = chunk_units_[static_cast<size_t>(chunk)];
  const float* input = live.input.empty() ? nullptr : live.input.data();
  for (int u : us) {
    UnitSlot& slot = units_[static_cast<size_t>(u)];
    DeviceArray<float> scratch;
    const float* params = ParamsFor(u, scratch, ExecutionPhase::kForward, mb.index);
    float* output = nullptr;
    if (slot.unit->kind() != UnitKind::kHead) {
      live.outputs.emplace_back(backend_, activation_elements());
      output = live.outputs.back().data();
    }
    slot.unit->Forward(mb, params, input, output);
    input = output;
  }
}

void Trainer::UnitBackwardDone(int u) {
  UnitSlot& slot = units_[static_cast<size_t>(u)];
  if (--slot.backwards_left > 0) return;
  Space& s = spaces_[static_cast<size_t>(slot.space)];
  if (--s.units_pending > 0 || zero_ >= 2) return;
  // The bucket's last backward of the step: launch its reduction now, so
  // that it overlaps the backward passes still to run (Megatron-LM's
  // overlap_grad_reduce). Gradients are summed, not averaged: the loss is
  // already scaled by 1 / global tokens.
  if (zero_ == 0) {
    s.reduction = dp_->AllReduceAsync(s.grads.data(), s.size);
  } else {
    s.reduction = dp_->ReduceScatterAsync(s.grads.data(), s.grad_shard.data(), s.shard);
  }
}

void Trainer::Backward(const MicroBatch& mb, int chunk) {
  auto it = live_.find({mb.index, chunk});
  ORRERY_CHECK(it != live_.end()) << "backward before forward";
  LiveActivations& live = it->second;
  const std::vector<int>& us = chunk_units_[static_cast<size_t>(chunk)];
  DeviceArray<float> grad_output;
  auto received = received_grads_.find({mb.index, chunk});
  if (received != received_grads_.end()) {
    grad_output = std::move(received->second);
    received_grads_.erase(received);
  }
  for (int k = static_cast<int>(us.size()) - 1; k >= 0; --k) {
    const int u = us[static_cast<size_t>(k)];
    UnitSlot& slot = units_[static_cast<size_t>(u)];
    Space& s = spaces_[static_cast<size_t>(slot.space)];
    DeviceArray<float> scratch;
    const float* params = ParamsFor(u, scratch, ExecutionPhase::kBackward, mb.index);
    DeviceArray<float> transient;  // ZeRO 2/3: this micro-batch's gradients only
    float* grads = nullptr;
    if (zero_ >= 2) {
      transient = DeviceArray<float>(backend_, s.size);
      backend_.Fill(transient.data(), s.size, 0.0f);
      grads = transient.data();
    } else {
      grads = s.grads.data() + slot.offset;
    }
    DeviceArray<float> grad_input;
    if (slot.unit->kind() != UnitKind::kEmbedding) {
      grad_input = DeviceArray<float>(backend_, activation_elements());
    }
    slot.unit->Backward(mb, params, grads, grad_output.empty() ? nullptr : grad_output.data(),
                        grad_input.empty() ? nullptr : grad_input.data());
    scratch.Reset();
    if (zero_ >= 2) {
      // ZeRO-2/3: reduce-scatter this micro-batch's gradients at once and
      // keep only this rank's shard (Rajbhandari et al. §5.2).
      DeviceArray<float> shard(backend_, s.shard);
      {
        OpRecorder::Scope scope = recorder_.Communication(
            "dp.reducescatter", CollectiveOp::kReduceScatter, ExecutionPhase::kGradientSync,
            LayerOf(u), mb.index, dp_->world_ranks(), s.size * int64_t{sizeof(float)});
        dp_->ReduceScatter(transient.data(), shard.data(), s.shard);
      }
      backend_.Axpy(1.0f, shard.data(), s.grad_shard.data(), s.shard);
    }
    grad_output = std::move(grad_input);
    UnitBackwardDone(u);
  }
  // What is left in grad_output is d(loss)/d(chunk input), sent back by
  // the caller; keep it alive until its send completes.
  if (!grad_output.empty()) grad_sends_.emplace_back(nullptr, std::move(grad_output));
  for (const PendingSend& p : pending_sends_) {
    ORRERY_CHECK(p.request != &live.send) << "backward before its forward's send was posted";
  }
  if (live.send != nullptr) live.send->Wait();
  live_.erase(it);
}

void Trainer::ReduceGradients() {
  for (Space& s : spaces_) {
    if (s.reduction == nullptr) continue;
    OpRecorder::Scope scope = recorder_.Communication(
        zero_ == 0 ? "dp.allreduce" : "dp.reducescatter",
        zero_ == 0 ? CollectiveOp::kAllReduce : CollectiveOp::kReduceScatter,
        ExecutionPhase::kGradientSync, std::nullopt, std::nullopt, dp_->world_ranks(),
        s.size * int64_t{sizeof(float)});
    s.reduction->Wait();
    s.reduction.reset();
  }
}

void Trainer::SumTiedGradients() {
  if (!model_.tied_embeddings) return;
  std::vector<int> holders;
  if (embedding_unit_ >= 0) holders.push_back(embedding_unit_);
  if (head_unit_ >= 0) holders.push_back(head_unit_);
  if (holders.empty()) return;
  // The tied tensor's dp-summed gradient of each holder, full (not
  // sharded): under ZeRO the shards of the two copies do not line up, so
  // the space is all-gathered first and this rank's shard written back
  // after the sum.
  struct Copy {
    float* grad = nullptr;
    int64_t size = 0;
  };
  std::map<int, DeviceArray<float>> gathered;  // ZeRO >= 1: space → its full gradients
  std::vector<Copy> copies;
  for (int u : holders) {
    UnitSlot& slot = units_[static_cast<size_t>(u)];
    Space& s = spaces_[static_cast<size_t>(slot.space)];
    const ParameterShard* tied = nullptr;
    for (const ParameterShard& p : slot.unit->parameters()) {
      if (p.name == kWordEmbeddings) tied = &p;
    }
    ORRERY_CHECK(tied != nullptr) << slot.unit->name() << " has no " << kWordEmbeddings;
    float* base = nullptr;
    if (zero_ == 0) {
      base = s.grads.data();
    } else {
      auto [at, inserted] = gathered.try_emplace(slot.space);
      if (inserted) {
        at->second = DeviceArray<float>(backend_, s.size);
        OpRecorder::Scope scope = recorder_.Communication(
            "dp.allgather", CollectiveOp::kAllGather, ExecutionPhase::kGradientSync,
            std::nullopt, std::nullopt, dp_->world_ranks(), s.size * int64_t{sizeof(float)});
        dp_->AllGather(s.grad_shard.data(), at->second.data(), s.shard);
      }
      base = at->second.data();
    }
    copies.push_back({base + slot.offset + tied->offset, tied->size});
  }
  if (copies.size() == 2) {
    // pp = 1: both copies on this rank.
    ORRERY_CHECK(copies[0].size == copies[1].size);
    backend_.Add(copies[0].grad, copies[1].grad, copies[0].grad, copies[0].size);
    backend_.CopyOnDevice(copies[0].grad, copies[1].grad,
                          copies[0].size * int64_t{sizeof(float)});
  } else {
    ORRERY_CHECK(embedding_ != nullptr);
    OpRecorder::Scope scope = recorder_.Communication(
        "embedding.allreduce", CollectiveOp::kAllReduce, ExecutionPhase::kGradientSync,
        std::nullopt, std::nullopt, embedding_->world_ranks(),
        copies[0].size * int64_t{sizeof(float)});
    embedding_->AllReduce(copies[0].grad, copies[0].size);
  }
  for (auto& [space, full] : gathered) {
    Space& s = spaces_[static_cast<size_t>(space)];
    backend_.CopyOnDevice(full.data() + dp_rank_ * s.shard, s.grad_shard.data(),
                          s.shard * int64_t{sizeof(float)});
  }
}

double Trainer::GradientSquareSum() const {
  double sum = 0;
  for (const Space& s : spaces_) {
    // The range of the space's flat layout whose reduced gradients this
    // rank holds, and where element `begin` of that range lives.
    int64_t begin = 0;
    int64_t end = s.size;
    const float* held = s.grads.data();
    if (zero_ == 0) {
      if (dp_rank_ != 0) continue;
    } else {
      begin = dp_rank_ * s.shard;
      end = begin + s.shard;
      held = s.grad_shard.data();
    }
    for (int u : s.units) {
      const UnitSlot& slot = units_[static_cast<size_t>(u)];
      for (const ParameterShard& p : slot.unit->parameters()) {
        if (p.split_dim == -1 && tp_rank_ != 0) continue;
        if (u == head_unit_ && model_.tied_embeddings && p.name == kWordEmbeddings) continue;
        const int64_t first = std::max(begin, slot.offset + p.offset);
        const int64_t last = std::min(end, slot.offset + p.offset + p.size);
        if (first < last) sum += backend_.SumOfSquares(held + (first - begin), last - first);
      }
    }
  }
  return sum;
}

void Trainer::OptimizerStep(int64_t step) {
  for (Space& s : spaces_) {
    {
      OpRecorder::Scope scope = recorder_.Compute("optimizer.adam", ExecutionPhase::kOptimizer,
                                                  std::nullopt, std::nullopt);
      if (zero_ == 0) {
        backend_.AdamStep(s.params.data(), s.grads.data(), s.adam_m.data(), s.adam_v.data(),
                          s.size, options_.adam, step);
      } else if (zero_ <= 2) {
        backend_.AdamStep(s.params.data() + dp_rank_ * s.shard, s.grad_shard.data(),
                          s.adam_m.data(), s.adam_v.data(), s.shard, options_.adam, step);
      } else {
        backend_.AdamStep(s.param_shard.data(), s.grad_shard.data(), s.adam_m.data(),
                          s.adam_v.data(), s.shard, options_.adam, step);
      }
    }
    if (zero_ == 1 || zero_ == 2) {
      // Every replica gets the updated parameters (Megatron-LM's
      // distributed optimizer all-gathers them after the step).
      DeviceArray<float> mine(backend_, s.shard);
      backend_.CopyOnDevice(s.params.data() + dp_rank_ * s.shard, mine.data(),
                            s.shard * int64_t{sizeof(float)});
      OpRecorder::Scope scope = recorder_.Communication(
          "dp.allgather", CollectiveOp::kAllGather, ExecutionPhase::kOptimizer, std::nullopt,
          std::nullopt, dp_->world_ranks(), s.size * int64_t{sizeof(float)});
      dp_->AllGather(mine.data(), s.params.data(), s.shard);
    }
  }
}

double Trainer::Step(int iteration) {
  recorder_.set_iteration(iteration);
  std::vector<DeviceBatch> batches = MakeBatches(iteration);
  for (Space& s : spaces_) {
    if (zero_ <= 1) backend_.Fill(s.grads.data(), s.size, 0.0f);
    if (zero_ >= 2) backend_.Fill(s.grad_shard.data(), s.shard, 0.0f);
    s.units_pending = static_cast<int>(s.units.size());
  }
  for (UnitSlot& slot : units_) slot.backwards_left = micro_batches_;

  const std::vector<PipelinePass> passes =
      workload::StageSchedule(plan_.schedule, pp_size_, stage_, micro_batches_, vpp_);
  const int virtual_stages = pp_size_ * vpp_;
  const int next = (stage_ + 1) % pp_size_;
  const int previous = (stage_ + pp_size_ - 1) % pp_size_;
  const int64_t elements = activation_elements();
  const int64_t bytes = elements * int64_t{sizeof(float)};

  // Steps of the schedule. Interleaved (vpp > 1): each warm-up and
  // cool-down pass alone, and each steady-state forward with the backward
  // after it (F(w+i), B(i)). Not interleaved: every pass alone.
  // Before a step, one batch on the pp communicator: the sends of the
  // previous step, then the receives of this step's passes — Megatron-LM's
  // send_forward_recv_backward / send_backward_recv_forward without
  // interleaving (a forward's output leaves before the backward that
  // follows it, so the next stage is not idle through that backward), and
  // send_forward_backward_recv_forward_backward with it (schedules.py).
  // Under NCCL's rule (a batch completes only when every peer has posted
  // its matching batch, and a rank's batches run one after another) these
  // orders cannot deadlock: the step's receives never wait for a send this
  // rank posts later, and holding the forward's send until the pair's
  // backward is what makes interleaved 1F1B safe; posting each send alone
  // right after its pass does deadlock interleaved 1F1B with m > p. We
  // checked this by exhaustively simulating NCCL's semantics for every
  // schedule with p <= 6, m <= 14, vpp <= 4, and the one-pass steps for
  // p <= 8, m <= 16 (docs/executor.md). Messages between a pair of ranks
  // match in posting order, and both sides post in the same (micro-batch,
  // chunk) order, so one communicator carries activations and gradients
  // alike.
  int first_backward = 0;
  while (first_backward < static_cast<int>(passes.size()) &&
         !passes[static_cast<size_t>(first_backward)].backward) {
    ++first_backward;
  }
  const int total_forwards = micro_batches_ * vpp_;
  const int warmup = first_backward < total_forwards ? first_backward - 1 : total_forwards;
  std::vector<std::vector<PipelinePass>> steps;
  for (size_t i = 0; i < passes.size();) {
    if (vpp_ > 1 && static_cast<int>(i) >= warmup && i + 1 < passes.size() &&
        !passes[i].backward && passes[i + 1].backward) {
      steps.push_back({passes[i], passes[i + 1]});
      i += 2;
    } else {
      steps.push_back({passes[i]});
      i += 1;
    }
  }

  // The sends of the previous step are posted first, the step's receives
  // after them, and then the sends are waited for — every request of the
  // batch completes before the step's passes run, as Megatron-LM waits on
  // each request of a batch (p2p_communication.py). Leaving a send in
  // flight across a pass stalls its receiver under MPI: a message above the
  // eager limit moves only when the sender is inside an MPI call, so
  // gpt-tiny's PP2 1F1B steps ran 15-60% slower than the simulator's (and
  // GPipe's) until the sends were waited for here.
  std::vector<std::pair<CommRequest*, const PendingSend>> posted;
  auto post_sends = [&]() {
    for (PendingSend& p : pending_sends_) {
      *p.request = pp_->Isend(p.data, p.count, p.peer);
      posted.emplace_back(p.request->get(), p);
    }
    pending_sends_.clear();
  };
  auto wait_sends = [&]() {
    for (const auto& [request, p] : posted) {
      OpRecorder::Scope scope = recorder_.Communication(
          "pp.send", CollectiveOp::kSendRecv,
          p.activation ? ExecutionPhase::kForward : ExecutionPhase::kBackward, std::nullopt,
          p.micro_batch, {world_.rank(), pp_->world_ranks()[static_cast<size_t>(p.peer)]},
          p.count * int64_t{sizeof(float)});
      request->Wait();
    }
    posted.clear();
  };

  for (const std::vector<PipelinePass>& step : steps) {
    post_sends();
    // Receives of this step.
    std::vector<std::pair<std::unique_ptr<CommRequest>, const PipelinePass*>> receives;
    for (const PipelinePass& pass : step) {
      const int vs = pass.chunk * pp_size_ + stage_;
      if (!pass.backward && vs > 0) {
        LiveActivations& live = live_[{pass.micro_batch, pass.chunk}];
        live.input = DeviceArray<float>(backend_, elements);
        receives.emplace_back(pp_->Irecv(live.input.data(), elements, previous), &pass);
      } else if (pass.backward && vs < virtual_stages - 1) {
        DeviceArray<float>& g = received_grads_[{pass.micro_batch, pass.chunk}];
        g = DeviceArray<float>(backend_, elements);
        receives.emplace_back(pp_->Irecv(g.data(), elements, next), &pass);
      }
    }
    wait_sends();
    for (const PipelinePass& pass : step) {
      recorder_.set_chunk(pass.chunk);
      current_micro_batch_ = pass.micro_batch;
      for (auto& [request, of] : receives) {
        if (of != &pass) continue;
        OpRecorder::Scope scope = recorder_.Communication(
            "pp.recv", CollectiveOp::kSendRecv,
            pass.backward ? ExecutionPhase::kBackward : ExecutionPhase::kForward, std::nullopt,
            pass.micro_batch,
            {world_.rank(),
             pp_->world_ranks()[static_cast<size_t>(pass.backward ? next : previous)]},
            bytes);
        request->Wait();
      }
      const MicroBatch& mb = batches[static_cast<size_t>(pass.micro_batch)].mb;
      const int vs = pass.chunk * pp_size_ + stage_;
      if (!pass.backward) {
        Forward(mb, pass.chunk);
        if (vs < virtual_stages - 1) {
          LiveActivations& live = live_[{pass.micro_batch, pass.chunk}];
          pending_sends_.push_back({live.outputs.back().data(), elements, next, true,
                                    pass.micro_batch, pass.chunk, &live.send});
        }
      } else {
        Backward(mb, pass.chunk);
        if (vs > 0) {
          auto& [request, buffer] = grad_sends_.back();
          pending_sends_.push_back({buffer.data(), elements, previous, false, pass.micro_batch,
                                    pass.chunk, &request});
        }
      }
    }
    recorder_.set_chunk(0);
  }
  post_sends();
  wait_sends();
  ReduceGradients();
  for (auto& [request, buffer] : grad_sends_) {
    if (request != nullptr) request->Wait();
  }
  grad_sends_.clear();
  ORRERY_CHECK(live_.empty() && received_grads_.empty());
  SumTiedGradients();
  gradient_square_sum_ = GradientSquareSum();
  OptimizerStep(iteration + 1);

  double loss = 0;
  if (head_unit_ >= 0 && tp_rank_ == 0) {
    const ModelUnit& head = *units_[static_cast<size_t>(head_unit_)].unit;
    for (int i = 0; i < micro_batches_; ++i) {
      loss += head.LossSum(i) * static_cast<double>(batches[0].mb.loss_scale);
    }
  }
  backend_.Synchronize();
  return loss;
}

std::map<std::string, std::vector<float>> Trainer::GatherParameters() {
  // Each rank's local tensors, from dp rank 0 (the replicas are equal).
  Json mine = Json::array();
  for (Space& s : spaces_) {
    DeviceArray<float> gathered;
    const float* full = s.params.data();
    if (zero_ == 3) {
      gathered = DeviceArray<float>(backend_, s.size);
      dp_->AllGather(s.param_shard.data(), gathered.data(), s.shard);
      full = gathered.data();
    }
    if (dp_rank_ != 0) continue;
    std::vector<float> host(static_cast<size_t>(s.size));
    backend_.CopyToHost(full, host.data(), s.size * int64_t{sizeof(float)});
    for (int u : s.units) {
      const UnitSlot& slot = units_[static_cast<size_t>(u)];
      for (const ParameterShard& p : slot.unit->parameters()) {
        Json t = Json::object();
        t["name"] = p.name;
        t["full_shape"] = p.full_shape;
        t["split_dim"] = p.split_dim;
        Json pieces = Json::array();
        for (const auto& [b, e] : p.pieces) pieces.push_back(Json::array({b, e}));
        t["pieces"] = pieces;
        const float* values = host.data() + slot.offset + p.offset;
        t["values"] = std::vector<float>(values, values + p.size);
        mine.push_back(std::move(t));
      }
    }
  }
  std::vector<std::string> all = world_.GatherToRoot(mine.dump());
  std::map<std::string, std::vector<float>> out;
  for (const std::string& text : all) {
    const Json tensors = Json::parse(text);
    for (const Json& t : tensors) {
      const std::vector<int64_t> shape = t["full_shape"].get<std::vector<int64_t>>();
      const int split = t["split_dim"].get<int>();
      const std::vector<float> values = t["values"].get<std::vector<float>>();
      int64_t total = 1;
      for (int64_t d : shape) total *= d;
      std::vector<float>& full = out[t["name"].get<std::string>()];
      full.resize(static_cast<size_t>(total));
      const int64_t rows = shape.size() == 2 ? shape[0] : total;
      const int64_t cols = shape.size() == 2 ? shape[1] : 1;
      if (split < 0) {
        std::copy(values.begin(), values.end(), full.begin());
        continue;
      }
      // Local extent along the split dimension.
      int64_t local = 0;
      for (const Json& piece : t["pieces"]) {
        local += piece[1].get<int64_t>() - piece[0].get<int64_t>();
      }
      int64_t at = 0;  // position along the split dimension in the local tensor
      for (const Json& piece : t["pieces"]) {
        const int64_t begin = piece[0].get<int64_t>(), end = piece[1].get<int64_t>();
        for (int64_t i = begin; i < end; ++i, ++at) {
          if (split == 0 || shape.size() == 1) {
            for (int64_t c = 0; c < cols; ++c) {
              full[static_cast<size_t>(i * cols + c)] = values[static_cast<size_t>(at * cols + c)];
            }
          } else {
            for (int64_t r = 0; r < rows; ++r) {
              full[static_cast<size_t>(r * cols + i)] = values[static_cast<size_t>(r * local + at)];
            }
          }
        }
      }
    }
  }
  return out;
}

TrainerState Trainer::ExportState(int64_t step) {
  TrainerState state;
  state.step = step;
  for (const Space& s : spaces_) {
    SpaceState& out = state.spaces.emplace_back();
    const DeviceArray<float>& params = zero_ == 3 ? s.param_shard : s.params;
    out.params.resize(static_cast<size_t>(params.size()));
    out.adam_m.resize(static_cast<size_t>(s.adam_m.size()));
    out.adam_v.resize(static_cast<size_t>(s.adam_v.size()));
    backend_.CopyToHost(params.data(), out.params.data(), params.bytes());
    backend_.CopyToHost(s.adam_m.data(), out.adam_m.data(), s.adam_m.bytes());
    backend_.CopyToHost(s.adam_v.data(), out.adam_v.data(), s.adam_v.bytes());
  }
  backend_.Synchronize();
  return state;
}

Status Trainer::ImportState(const TrainerState& state) {
  if (state.spaces.size() != spaces_.size()) {
    return InvalidArgumentError("trainer state: " + std::to_string(state.spaces.size()) +
                                " spaces, the layout of rank " + std::to_string(world_.rank()) +
                                " has " + std::to_string(spaces_.size()));
  }
  for (size_t i = 0; i < spaces_.size(); ++i) {
    Space& s = spaces_[i];
    const SpaceState& in = state.spaces[i];
    DeviceArray<float>& params = zero_ == 3 ? s.param_shard : s.params;
    const std::pair<const char*, std::pair<const std::vector<float>*, DeviceArray<float>*>>
        buffers[] = {{"params", {&in.params, &params}},
                     {"adam_m", {&in.adam_m, &s.adam_m}},
                     {"adam_v", {&in.adam_v, &s.adam_v}}};
    for (const auto& [name, pair] : buffers) {
      if (static_cast<int64_t>(pair.first->size()) != pair.second->size()) {
        return InvalidArgumentError("trainer state: spaces[" + std::to_string(i) + "]." + name +
                                    " has " + std::to_string(pair.first->size()) +
                                    " elements, the layout of rank " +
                                    std::to_string(world_.rank()) + " has " +
                                    std::to_string(pair.second->size()));
      }
    }
    for (const auto& [name, pair] : buffers) {
      backend_.CopyFromHost(pair.first->data(), pair.second->data(), pair.second->bytes());
    }
  }
  backend_.Synchronize();
  return Status::Ok();
}

}  // namespace

Status CheckExecutable(const workload::ModelSpec& model, const workload::Plan& plan,
                       int world_size) {
  std::vector<std::string> reasons;
  if (plan.layers.empty()) {
    return FailedPreconditionError("plan.layers: the plan has no layers");
  }
  if (plan.num_layers() != model.total_layers()) {
    reasons.push_back("plan.num_layers: " + std::to_string(plan.num_layers()) +
                      " layers, the model " + model.name + " has " +
                      std::to_string(model.total_layers()));
  }
  const workload::LayerStrategy& l = plan.layers.front();
  for (int i = 1; i < plan.num_layers(); ++i) {
    const workload::LayerStrategy& o = plan.layers[static_cast<size_t>(i)];
    if (o.tp != l.tp || o.dp != l.dp || o.cp != l.cp || o.ep != l.ep ||
        o.sequence_parallel != l.sequence_parallel || o.zero_stage != l.zero_stage) {
      reasons.push_back("plan.layers[" + std::to_string(i) +
                        "]: tp, dp, cp, ep, sequence_parallel and zero_stage must be the same "
                        "in every layer (the executor does not run per-layer layouts yet; "
                        "recompute may differ)");
      break;
    }
  }
  if (l.cp != 1) {
    reasons.push_back("plan.layers.cp: context parallelism (cp " + std::to_string(l.cp) +
                      ") is not supported by the executor yet");
  }
  if (l.ep != 1) {
    reasons.push_back("plan.layers.ep: expert parallelism (ep " + std::to_string(l.ep) +
                      ") is not supported by the executor yet");
  }
  if (l.zero_stage < 0 || l.zero_stage > 3) {
    reasons.push_back("plan.layers.zero_stage: expected 0, 1, 2 or 3, got " +
                      std::to_string(l.zero_stage));
  }
  const int64_t needed = int64_t{plan.pp} * l.tp * l.cp * l.dp;
  if (needed != world_size) {
    std::string dims = "tp " + std::to_string(l.tp) + " × pp " + std::to_string(plan.pp);
    if (l.cp != 1) dims += " × cp " + std::to_string(l.cp);
    dims += " × dp " + std::to_string(l.dp);
    reasons.push_back("plan needs " + std::to_string(needed) + " ranks (" + dims +
                      "), the job has " + std::to_string(world_size));
  }
  if (l.tp >= 1 && l.dp >= 1 && plan.micro_batch_size >= 1 && plan.sequence_length >= 1) {
    Status model_ok = CheckExecutableModel(model, l.tp, l.sequence_parallel,
                                           plan.micro_batch_size, plan.sequence_length);
    if (!model_ok.ok()) reasons.push_back(model_ok.message());
  }
  const int64_t per_micro_batch = int64_t{plan.micro_batch_size} * l.dp;
  if (plan.micro_batch_size < 1 || plan.global_batch_size < 1 ||
      plan.global_batch_size % per_micro_batch != 0) {
    reasons.push_back("plan.global_batch_size: " + std::to_string(plan.global_batch_size) +
                      " is not a multiple of micro_batch_size × dp (" +
                      std::to_string(plan.micro_batch_size) + " × " + std::to_string(l.dp) +
                      ")");
  } else if (plan.pp >= 1) {
    const int vpp = plan.schedule == workload::PipelineSchedule::kInterleaved ? plan.vpp : 1;
    Status schedule =
        workload::CheckStageSchedule(plan.schedule, plan.pp, plan.NumMicroBatches(), plan.vpp);
    if (!schedule.ok()) reasons.push_back(schedule.message());
    if (plan.schedule == workload::PipelineSchedule::kInterleaved && plan.pp < 2) {
      reasons.push_back("plan.pipeline.schedule: the interleaved schedule needs pp >= 2");
    }
    if (!plan.stage_layers.empty()) {
      int sum = 0;
      for (int c : plan.stage_layers) sum += c;
      if (static_cast<int>(plan.stage_layers.size()) != plan.pp || sum != plan.num_layers()) {
        reasons.push_back("plan.pipeline.stage_layers: expected " + std::to_string(plan.pp) +
                          " counts summing to " + std::to_string(plan.num_layers()));
      }
    }
    if (vpp >= 1 && reasons.empty()) {
      const std::vector<int> counts = plan.StageLayerCounts();
      for (int s = 0; s < plan.pp; ++s) {
        const int c = counts[static_cast<size_t>(s)];
        if (c < vpp || c % vpp != 0) {
          reasons.push_back("plan.pipeline.stage_layers: stage " + std::to_string(s) + " has " +
                            std::to_string(c) + " layers, which do not split into " +
                            std::to_string(vpp) + " model chunks of at least one layer each");
        }
      }
    }
  } else {
    reasons.push_back("plan.pipeline.pp: expected >= 1, got " + std::to_string(plan.pp));
  }
  if (reasons.empty()) return Status::Ok();
  std::string message = "the plan cannot run on " + std::to_string(world_size) + " rank" +
                        (world_size == 1 ? "" : "s") + ":";
  for (const std::string& r : reasons) message += "\n  " + r;
  return FailedPreconditionError(message);
}

Status CheckSlowRanks(const ExecuteOptions& options, int world_size) {
  for (const auto& [rank, factor] : options.slow_ranks) {
    if (rank < 0 || rank >= world_size) {
      return InvalidArgumentError("slow rank " + std::to_string(rank) + ": not a rank of the " +
                                  std::to_string(world_size) + "-rank job");
    }
    if (!(factor >= 1.0) || !std::isfinite(factor)) {
      return InvalidArgumentError("slow rank " + std::to_string(rank) +
                                  ": the factor must be a finite number >= 1, got " +
                                  std::to_string(factor));
    }
  }
  return Status::Ok();
}

Result<ExecutionResult> RunTraining(MpiWorld& world, const workload::ModelSpec& model,
                                    const workload::Plan& plan, const ExecuteOptions& options) {
  ORRERY_RETURN_IF_ERROR(CheckExecutable(model, plan, world.size()));
  ORRERY_RETURN_IF_ERROR(CheckSlowRanks(options, world.size()));
  if (options.iterations < 1 || options.warmup < 0 || options.trace_iterations < 0) {
    return InvalidArgumentError("iterations must be >= 1, warmup and trace_iterations >= 0");
  }
  Result<std::unique_ptr<Backend>> made = MakeBackend(options.backend, world.local_rank());
  ORRERY_RETURN_IF_ERROR(world.AgreeOnStatus(made.status()));
  Backend& backend = **made;

  Trainer trainer(world, model, plan, options, backend);
  Status setup = trainer.Setup();
  if (!setup.ok()) world.Fail(setup);

  const int total_steps = options.warmup + options.iterations + options.trace_iterations;
  std::vector<double> losses;
  std::vector<double> grad_norms;
  std::vector<double> step_seconds;  // this rank's, every step
  std::vector<double> timed;         // max over ranks, timed steps only
  for (int step = 0; step < total_steps; ++step) {
    const bool traced = step >= options.warmup + options.iterations;
    trainer.recorder().set_recording(traced);
    world.Barrier();
    if (step == 0) trainer.recorder().ResetOrigin();
    const double start = MpiWorld::Now();
    const double loss = trainer.Step(step);
    const double seconds = MpiWorld::Now() - start;  // Step ends synchronized
    step_seconds.push_back(seconds);
    const double slowest = world.AllReduceMax(seconds);
    if (step >= options.warmup && !traced) timed.push_back(slowest);
    losses.push_back(world.AllReduceSum(loss));
    grad_norms.push_back(std::sqrt(world.AllReduceSum(trainer.gradient_square_sum())));
  }
  trainer.recorder().set_recording(false);

  ExecutionResult result;
  std::map<std::string, std::vector<float>> parameters;
  if (options.gather_parameters) parameters = trainer.GatherParameters();

  // Per-rank numbers and ops to rank 0.
  Json mine = Json::object();
  mine["peak"] = backend.peak_allocated_bytes();
  mine["times"] = step_seconds;
  std::vector<std::string> summaries = world.GatherToRoot(mine.dump());
  std::vector<std::string> ops =
      world.GatherToRoot(traces::ExecutionOpsToJson(trainer.recorder().TakeOps()));
  if (world.rank() != 0) return ExecutionResult{};

  result.losses = losses;
  result.grad_norms = grad_norms;
  result.iteration_seconds = timed;
  result.median_iteration_seconds = Median(timed);
  result.min_iteration_seconds = *std::min_element(timed.begin(), timed.end());
  result.max_iteration_seconds = *std::max_element(timed.begin(), timed.end());
  result.tokens_per_second =
      result.median_iteration_seconds > 0
          ? static_cast<double>(plan.global_batch_size) * plan.sequence_length /
                result.median_iteration_seconds
          : 0;
  result.device = backend.device_name();
  result.parameters = std::move(parameters);

  traces::ExecutionTrace& trace = result.trace;
  trace.model = model.name;
  trace.backend = std::string(BackendKindName(options.backend));
  trace.device = result.device;
  trace.world_size = world.size();
  trace.plan = workload::PlanToJson(plan);
  trace.micro_batch_size = plan.micro_batch_size;
  trace.sequence_length = plan.sequence_length;
  std::vector<std::vector<double>> rank_times;
  for (const std::string& s : summaries) {
    const Json j = Json::parse(s);
    result.peak_memory_bytes.push_back(j["peak"].get<int64_t>());
    rank_times.push_back(j["times"].get<std::vector<double>>());
  }
  for (int step = 0; step < total_steps; ++step) {
    traces::ExecutionIteration it;
    it.iteration = step;
    it.warmup = step < options.warmup;
    for (const std::vector<double>& t : rank_times) {
      it.rank_times.push_back(Seconds(t[static_cast<size_t>(step)]));
    }
    it.loss = losses[static_cast<size_t>(step)];
    trace.iterations.push_back(std::move(it));
  }
  for (size_t r = 0; r < ops.size(); ++r) {
    Result<std::vector<traces::ExecutionOp>> parsed =
        traces::ParseExecutionOps(ops[r], "ops of rank " + std::to_string(r));
    if (!parsed.ok()) world.Fail(parsed.status());
    trace.ops.insert(trace.ops.end(), parsed->begin(), parsed->end());
  }
  return result;
}

int64_t TrainerLayout::ParameterElements(int space) const {
  const StateSpace& s = spaces[static_cast<size_t>(space)];
  return zero_stage == 3 ? s.shard : s.size;
}

int64_t TrainerLayout::MomentElements(int space) const {
  const StateSpace& s = spaces[static_cast<size_t>(space)];
  return zero_stage >= 1 ? s.shard : s.size;
}

int64_t TrainerLayout::ParameterBegin(int space) const {
  return zero_stage == 3 ? dp_rank * spaces[static_cast<size_t>(space)].shard : 0;
}

int64_t TrainerLayout::MomentBegin(int space) const {
  return zero_stage >= 1 ? dp_rank * spaces[static_cast<size_t>(space)].shard : 0;
}

Result<TrainerLayout> TrainerStateLayout(const workload::ModelSpec& model,
                                         const workload::Plan& plan,
                                         const ExecuteOptions& options, int world_size,
                                         int rank) {
  ORRERY_RETURN_IF_ERROR(CheckExecutable(model, plan, world_size));
  if (rank < 0 || rank >= world_size) {
    return InvalidArgumentError("rank " + std::to_string(rank) + " is not in a job of " +
                                std::to_string(world_size) + " ranks");
  }
  const workload::LayerStrategy& l = plan.layers.front();
  const int vpp = plan.schedule == workload::PipelineSchedule::kInterleaved ? plan.vpp : 1;
  const Coordinates coordinates = CoordinatesOf(plan, rank);
  // The units only keep the backend for the math; building them touches
  // no memory.
  ORRERY_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, MakeBackend(BackendKind::kCpu, 0));
  PlaceholderCommunicator tp(coordinates.tp_group, coordinates.tp_rank);
  UnitContext context;
  context.model = &model;
  context.backend = backend.get();
  context.tp = &tp;
  context.sequence_parallel = l.sequence_parallel;
  StageUnits built = BuildStageUnits(context, plan, coordinates.stage, plan.pp, vpp);
  const std::vector<SpacePlacement> placement =
      PlaceUnits(built.units, built.chunk_units, l.zero_stage, l.dp, options.bucket_parameters);
  return MakeLayout(rank, coordinates, l.dp, l.zero_stage, built.units, placement);
}

struct TrainingSession::Impl {
  MpiWorld* world = nullptr;
  workload::ModelSpec model;
  workload::Plan plan;
  ExecuteOptions options;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Trainer> trainer;
  int64_t steps_done = 0;
};

TrainingSession::TrainingSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainingSession::~TrainingSession() = default;

Result<std::unique_ptr<TrainingSession>> TrainingSession::Start(MpiWorld& world,
                                                                const workload::ModelSpec& model,
                                                                const workload::Plan& plan,
                                                                const ExecuteOptions& options) {
  ORRERY_RETURN_IF_ERROR(CheckExecutable(model, plan, world.size()));
  ORRERY_RETURN_IF_ERROR(CheckSlowRanks(options, world.size()));
  Result<std::unique_ptr<Backend>> made = MakeBackend(options.backend, world.local_rank());
  ORRERY_RETURN_IF_ERROR(world.AgreeOnStatus(made.status()));
  auto impl = std::make_unique<Impl>();
  impl->world = &world;
  impl->model = model;
  impl->plan = plan;
  impl->options = options;
  impl->backend = std::move(*made);
  // The trainer keeps references to the model, plan and options: those of
  // the Impl, whose address does not change.
  impl->trainer =
      std::make_unique<Trainer>(world, impl->model, impl->plan, impl->options, *impl->backend);
  Status setup = impl->trainer->Setup();
  if (!setup.ok()) world.Fail(setup);
  return std::unique_ptr<TrainingSession>(new TrainingSession(std::move(impl)));
}

TrainingSession::StepResult TrainingSession::Step() {
  Impl& i = *impl_;
  const double loss = i.trainer->Step(static_cast<int>(i.steps_done));
  ++i.steps_done;
  StepResult result;
  result.loss = i.world->AllReduceSum(loss);
  result.grad_norm = std::sqrt(i.world->AllReduceSum(i.trainer->gradient_square_sum()));
  return result;
}

int64_t TrainingSession::steps_done() const { return impl_->steps_done; }

const TrainerLayout& TrainingSession::layout() const { return impl_->trainer->layout(); }

Backend& TrainingSession::backend() { return *impl_->backend; }

double TrainingSession::ProbeComputeSeconds(int repeats) {
  ORRERY_CHECK(repeats >= 1) << "ProbeComputeSeconds: repeats " << repeats;
  // Each timed batch lasts at least this long, so that the clock's
  // resolution and one-off hiccups are small against it.
  constexpr double kBatchSeconds = 0.020;
  // A bound on the GEMMs of a batch, against a first GEMM timed as ~0.
  constexpr int64_t kMaxGemms = 1'000'000;
  Backend& backend = *impl_->backend;
  // At least 512 wide: a tiny model's GEMM (gpt-tiny's 64) is too short to
  // time steadily (ranks of one machine differed by up to 35% at 64, with
  // nothing slowed).
  const int64_t hidden = std::max<int64_t>(impl_->model.hidden_size, 512);
  const int64_t rows = std::clamp<int64_t>(
      int64_t{impl_->plan.micro_batch_size} * impl_->plan.sequence_length, 512, 4096);
  DeviceArray<float> a(backend, rows * hidden);
  DeviceArray<float> w(backend, hidden * hidden);
  DeviceArray<float> c(backend, rows * hidden);
  backend.Fill(a.data(), a.size(), 0.5f);
  backend.Fill(w.data(), w.size(), 0.25f);
  // Through the trainer's recorder: a compute scope, which a slow rank's
  // compute factor stretches as it stretches every training operator.
  OpRecorder& recorder = impl_->trainer->recorder();
  const auto gemm = [&] {
    OpRecorder::Scope scope =
        recorder.Compute("probe.gemm", ExecutionPhase::kForward, std::nullopt, std::nullopt);
    scope.set_gemm({rows, hidden, hidden});
    backend.Gemm(false, false, rows, hidden, hidden, 1.0f, a.data(), hidden, w.data(), hidden,
                 0.0f, c.data(), hidden);
  };
  const auto timed = [&](int64_t count) {
    backend.Synchronize();
    const double start = MpiWorld::Now();
    for (int64_t i = 0; i < count; ++i) gemm();
    backend.Synchronize();
    return MpiWorld::Now() - start;
  };
  const auto enough = [&](double seconds, int64_t gemms) {
    if (seconds <= 0) return kMaxGemms;
    const double wanted = std::ceil(kBatchSeconds / seconds * static_cast<double>(gemms));
    return std::clamp<int64_t>(static_cast<int64_t>(std::min(wanted, 1e18)), 1, kMaxGemms);
  };
  gemm();  // untimed: first touch of the buffers, the library's set-up
  int64_t count = enough(timed(1), 1);
  // One GEMM alone carries a synchronization that a batch of them hides
  // (an asynchronous device): a batch that turned out shorter than
  // kBatchSeconds is lengthened, then every repeat runs the same count.
  double fastest = timed(count);
  for (int tries = 0; fastest < kBatchSeconds && count < kMaxGemms && tries < 4; ++tries) {
    count = std::max(count + 1, enough(fastest, count));
    fastest = timed(count);
  }
  for (int r = 1; r < repeats; ++r) fastest = std::min(fastest, timed(count));
  return fastest / static_cast<double>(count);
}

TrainerState TrainingSession::ExportState() {
  return impl_->trainer->ExportState(impl_->steps_done);
}

Status TrainingSession::ImportState(const TrainerState& state) {
  if (state.step < 0) {
    return InvalidArgumentError("trainer state: step " + std::to_string(state.step) +
                                " is negative");
  }
  ORRERY_RETURN_IF_ERROR(impl_->trainer->ImportState(state));
  impl_->steps_done = state.step;
  return Status::Ok();
}

}  // namespace orrery::exec
