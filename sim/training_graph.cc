#include "sim/training_graph.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "workload/pipeline_schedule.h"

namespace orrery::sim {

using workload::CheckStageSchedule;
using workload::PipelinePass;
using workload::StageSchedule;
namespace {

using costmodel::CollectiveOp;
using workload::LayerStrategy;
using workload::ParallelDim;
using workload::PipelineSchedule;

constexpr int64_t kPicosPerSecond = 1'000'000'000'000;

std::string Str(int64_t v) { return std::to_string(v); }

// The kinds of rank groups a lane's collectives run over.
enum class GroupKind { kTp = 0, kCp = 1, kEp = 2, kDpCp = 3 };

GroupKind KindOf(ParallelDim dim) {
  switch (dim) {
    case ParallelDim::kTp:
      return GroupKind::kTp;
    case ParallelDim::kCp:
      return GroupKind::kCp;
    case ParallelDim::kEp:
      return GroupKind::kEp;
    default:
      break;
  }
  ORRERY_CHECK(false) << "no path collectives over " << workload::ParallelDimName(dim);
  return GroupKind::kTp;
}

// The path dimensions in the order their communication tasks follow a pass.
constexpr ParallelDim kPathDims[] = {ParallelDim::kTp, ParallelDim::kCp, ParallelDim::kEp};

TaskLabel PathLabel(ParallelDim dim) {
  switch (dim) {
    case ParallelDim::kCp:
      return TaskLabel::kContextParallel;
    case ParallelDim::kEp:
      return TaskLabel::kExpertParallel;
    default:
      return TaskLabel::kTensorParallel;
  }
}

// A partition of all ranks into groups of one kind for one layer strategy.
struct RankPartition {
  std::vector<std::vector<int>> groups;  // each in ring order
  std::vector<int> group_of_rank;
};

// The lanes of one stage grouped by which lanes run one kind of collective
// together: the lanes holding the ranks of the groups of the first lane's
// ranks (one group per tp index), with the footprint of all those groups.
struct LaneSets {
  std::vector<std::vector<LaneId>> lanes;  // per set, ascending
  std::vector<FootprintId> footprint;      // per set
  int group_size = 1;                      // ranks per group
  std::vector<int> set_of_lane;            // by the lane's index in its stage
};

// One layer's pass (forward or backward) as its tasks on every lane.
struct LayerPass {
  bool backward = false;
  int layer = 0;  // index in the chunk
  Duration compute;
  Duration recompute;
  bool recomputes = false;
  Bytes saved;       // allocated by the forward, freed by the backward
  Bytes recomputed;  // allocated by the recompute, freed by the backward
  struct Comm {
    TaskLabel label = TaskLabel::kTensorParallel;
    const LaneSets* sets = nullptr;
    std::vector<CoflowSpec> coflow;  // per set
  };
  std::vector<Comm> comms;
  // ZeRO-3 over a dp × cp group of more than one rank: gathered bytes and
  // the per-set coflows of the gather and (backward) the reduce-scatter.
  bool zero3 = false;
  Bytes gathered;
  std::vector<CoflowSpec> gather;
  std::vector<CoflowSpec> reduce_scatter;
  // Backward: the DP bucket whose last layer this is, or -1.
  int bucket = -1;
};

struct Bucket {
  int64_t parameters = 0;
  std::vector<CoflowSpec> reduce;  // per dp set
  std::vector<CoflowSpec> gather;  // per dp set (ZeRO-1/2), else empty
};

struct ChunkPasses {
  std::vector<LayerPass> forward;   // in layer order
  std::vector<LayerPass> backward;  // in reverse layer order
  std::vector<Bucket> buckets;
};

class Builder;

// Times path collectives on the footprints the graph uses: the groups of
// the first lane of the layer's stage.
class FlowTimer final : public PathCollectiveTimer {
 public:
  explicit FlowTimer(Builder* builder) : builder_(builder) {}
  Result<Duration> Time(int plan_layer, ParallelDim dim, CollectiveOp op, Bytes size) override;

 private:
  Builder* builder_;
};

class Builder {
 public:
  Builder(const workload::ModelSpec& model, const workload::Plan& plan,
          const topology::ClusterSpec& cluster, const costmodel::ComputeModel& compute,
          CollectiveFlows* flows, const TrainingGraphOptions& options)
      : model_(model),
        plan_(plan),
        cluster_(cluster),
        compute_(compute),
        flows_(flows),
        options_(options) {}

  Result<TrainingGraph> Build();

  // The lane sets of `kind` over stage `stage`'s lanes for the strategy of
  // `plan_layer`; cached per (stage, kind, strategy).
  Result<const LaneSets*> SetsFor(int stage, GroupKind kind, int plan_layer);
  int StageOfLayer(int plan_layer) const {
    const auto it = std::upper_bound(bounds_.begin(), bounds_.end(), plan_layer);
    return std::clamp(static_cast<int>(it - bounds_.begin()) - 1, 0, p_ - 1);
  }
  CollectiveFlows* flows() { return flows_; }

 private:
  using StrategyKey = std::tuple<int, int, int, int>;  // tp, cp, dp, ep
  StrategyKey KeyOf(int plan_layer) const {
    const LayerStrategy& l = plan_.layers[static_cast<size_t>(plan_layer)];
    return {l.tp, l.cp, l.dp, l.ep};
  }
  const LayerStrategy& Strategy(int plan_layer) const {
    return plan_.layers[static_cast<size_t>(plan_layer)];
  }
  int Anchor(int stage) const {
    return std::min(bounds_[static_cast<size_t>(stage)], plan_.num_layers() - 1);
  }

  Status BuildLayout();
  const RankPartition& PartitionFor(GroupKind kind, int plan_layer);
  Result<CoflowSpec> Combine(FootprintId footprint, const std::vector<PathCollective>& calls,
                             ParallelDim dim);
  Result<std::vector<CoflowSpec>> PerSet(const LaneSets& sets, CollectiveOp op, Bytes size);
  Result<ChunkPasses> PlanChunk(int stage, int chunk, const LaneSets* dp_sets);
  Status BuildStage(int stage);
  Status AddTransfers();

  // first_/last_ task of a pass: index by lane, direction, chunk, micro-batch.
  size_t PassIndex(LaneId lane, bool backward, int chunk, int micro_batch) const {
    return ((static_cast<size_t>(lane) * 2 + (backward ? 1 : 0)) * static_cast<size_t>(vpp_) +
            static_cast<size_t>(chunk)) *
               static_cast<size_t>(m_) +
           static_cast<size_t>(micro_batch);
  }

  const workload::ModelSpec& model_;
  const workload::Plan& plan_;
  const topology::ClusterSpec& cluster_;
  const costmodel::ComputeModel& compute_;
  CollectiveFlows* flows_;
  const TrainingGraphOptions& options_;

  int p_ = 1, m_ = 1, vpp_ = 1, devices_ = 0;
  int weight_bytes_ = 2;
  std::vector<int> bounds_;
  // Layout.
  std::vector<int> stage_of_rank_, pp_next_, pp_prev_, lane_of_rank_;
  std::vector<std::vector<int>> lane_ranks_;  // by LaneId
  std::vector<int> index_in_stage_;           // by LaneId
  std::vector<std::vector<LaneId>> lanes_of_stage_;
  std::vector<std::vector<PipelinePass>> schedules_;  // by stage

  std::map<std::tuple<int, StrategyKey>, RankPartition> partitions_;
  std::map<std::tuple<int, int, StrategyKey>, LaneSets> sets_;

  TrainingGraph out_;
  std::vector<TaskId> first_task_, last_task_;
  // tp_comm_overlap: the TP collective beside a pass's first layer, which
  // waits for the pass's input as its first task does (-1: none).
  std::vector<TaskId> first_overlap_;
  std::vector<Bytes> zero3_gathered_;  // by stage: what the gathers hold at most (two layers)
};

Result<Duration> FlowTimer::Time(int plan_layer, ParallelDim dim, CollectiveOp op, Bytes size) {
  const int stage = builder_->StageOfLayer(plan_layer);
  ORRERY_ASSIGN_OR_RETURN(const LaneSets* sets, builder_->SetsFor(stage, KindOf(dim), plan_layer));
  if (sets->group_size <= 1) return Duration::Zero();
  ORRERY_ASSIGN_OR_RETURN(
      const CoflowSpec coflow,
      builder_->flows()->Collective(sets->footprint[static_cast<size_t>(sets->set_of_lane[0])], op,
                                    size));
  return coflow.uncontended_time;
}

Status Builder::BuildLayout() {
  const int layers = plan_.num_layers();
  const LayerStrategy& first = plan_.layers.front();
  devices_ = p_ * first.tp * first.cp * first.dp;
  // Stages and pipeline neighbours: the pp groups, the same for every layer
  // (checked: a rank order that moves ranks between stages across layers
  // is not modelled).
  const std::vector<std::vector<int>> pp_groups = RankGroups(plan_, 0, ParallelDim::kPp);
  stage_of_rank_.assign(static_cast<size_t>(devices_), -1);
  pp_next_.assign(static_cast<size_t>(devices_), -1);
  pp_prev_.assign(static_cast<size_t>(devices_), -1);
  for (const std::vector<int>& g : pp_groups) {
    for (int s = 0; s < p_; ++s) {
      const auto r = static_cast<size_t>(g[static_cast<size_t>(s)]);
      stage_of_rank_[r] = s;
      pp_next_[r] = g[static_cast<size_t>((s + 1) % p_)];
      pp_prev_[r] = g[static_cast<size_t>((s + p_ - 1) % p_)];
    }
  }
  StrategyKey checked = KeyOf(0);
  for (int i = 1; i < layers; ++i) {
    if (KeyOf(i) == checked) continue;
    if (RankGroups(plan_, i, ParallelDim::kPp) != pp_groups) {
      return UnimplementedError("plan.layers[" + Str(i) +
                                "]: its layout puts ranks in other "
                                "pipeline stages than layer 0's (rank_order '" +
                                workload::RankOrderName(plan_.rank_order) + "')");
    }
    checked = KeyOf(i);
  }

  // Lanes: the tp groups of each stage's first layer, in rank order.
  lane_of_rank_.assign(static_cast<size_t>(devices_), -1);
  lanes_of_stage_.assign(static_cast<size_t>(p_), {});
  for (int s = 0; s < p_; ++s) {
    const int anchor = Anchor(s);
    const int last = std::max(anchor, bounds_[static_cast<size_t>(s) + 1] - 1);
    std::vector<std::vector<int>> groups;
    for (std::vector<int>& g : RankGroups(plan_, anchor, ParallelDim::kTp)) {
      if (stage_of_rank_[static_cast<size_t>(g.front())] == s) groups.push_back(std::move(g));
    }
    std::sort(
        groups.begin(), groups.end(), [](const std::vector<int>& a, const std::vector<int>& b) {
          return *std::min_element(a.begin(), a.end()) < *std::min_element(b.begin(), b.end());
        });
    // Every layer of the stage must have the same tp groups.
    const std::set<std::vector<int>> anchor_groups(groups.begin(), groups.end());
    for (int i = anchor + 1; i <= last && i < layers; ++i) {
      if (Strategy(i).tp != Strategy(anchor).tp) {
        return UnimplementedError("plan.layers[" + Str(i) + "]: tp = " + Str(Strategy(i).tp) +
                                  " differs from tp = " + Str(Strategy(anchor).tp) +
                                  " of the first layer of stage " + Str(s) +
                                  "; the simulator models one tp layout per stage");
      }
      if (KeyOf(i) == KeyOf(i - 1)) continue;
      for (const std::vector<int>& g : RankGroups(plan_, i, ParallelDim::kTp)) {
        if (stage_of_rank_[static_cast<size_t>(g.front())] != s) continue;
        if (!anchor_groups.contains(g)) {
          return UnimplementedError("plan.layers[" + Str(i) +
                                    "]: its tp groups differ from "
                                    "those of the first layer of stage " +
                                    Str(s) + " under rank_order '" +
                                    workload::RankOrderName(plan_.rank_order) + "'");
        }
      }
    }
    for (std::vector<int>& g : groups) {
      const auto lane = static_cast<LaneId>(lane_ranks_.size());
      for (int r : g) lane_of_rank_[static_cast<size_t>(r)] = lane;
      index_in_stage_.push_back(static_cast<int>(lanes_of_stage_[static_cast<size_t>(s)].size()));
      lanes_of_stage_[static_cast<size_t>(s)].push_back(lane);
      lane_ranks_.push_back(std::move(g));
    }
  }
  for (int r = 0; r < devices_; ++r) {
    ORRERY_CHECK(lane_of_rank_[static_cast<size_t>(r)] >= 0) << "rank " << r << " in no lane";
  }
  return Status::Ok();
}

const RankPartition& Builder::PartitionFor(GroupKind kind, int plan_layer) {
  const auto key = std::make_tuple(static_cast<int>(kind), KeyOf(plan_layer));
  if (const auto it = partitions_.find(key); it != partitions_.end()) return it->second;
  RankPartition part;
  part.group_of_rank.assign(static_cast<size_t>(devices_), -1);
  if (kind == GroupKind::kDpCp) {
    // Ranks that differ only in their dp and cp coordinates: the union of
    // the dp groups of the members of a cp group (union-find).
    std::vector<int> parent(static_cast<size_t>(devices_));
    std::iota(parent.begin(), parent.end(), 0);
    const auto find = [&parent](int x) {
      while (parent[static_cast<size_t>(x)] != x) {
        parent[static_cast<size_t>(x)] =
            parent[static_cast<size_t>(parent[static_cast<size_t>(x)])];
        x = parent[static_cast<size_t>(x)];
      }
      return x;
    };
    for (ParallelDim dim : {ParallelDim::kCp, ParallelDim::kDp}) {
      for (const std::vector<int>& g : RankGroups(plan_, plan_layer, dim)) {
        for (size_t i = 1; i < g.size(); ++i) {
          const int a = find(g[0]), b = find(g[i]);
          if (a != b) parent[static_cast<size_t>(std::max(a, b))] = std::min(a, b);
        }
      }
    }
    std::vector<int> group_of_root(static_cast<size_t>(devices_), -1);
    for (int r = 0; r < devices_; ++r) {  // ascending: each group in rank order
      int& g = group_of_root[static_cast<size_t>(find(r))];
      if (g < 0) {
        g = static_cast<int>(part.groups.size());
        part.groups.emplace_back();
      }
      part.groups[static_cast<size_t>(g)].push_back(r);
      part.group_of_rank[static_cast<size_t>(r)] = g;
    }
  } else {
    const ParallelDim dim = kind == GroupKind::kTp   ? ParallelDim::kTp
                            : kind == GroupKind::kCp ? ParallelDim::kCp
                                                     : ParallelDim::kEp;
    part.groups = RankGroups(plan_, plan_layer, dim);
    for (size_t g = 0; g < part.groups.size(); ++g) {
      for (int r : part.groups[g]) part.group_of_rank[static_cast<size_t>(r)] = static_cast<int>(g);
    }
  }
  return partitions_.emplace(key, std::move(part)).first->second;
}

Result<const LaneSets*> Builder::SetsFor(int stage, GroupKind kind, int plan_layer) {
  const auto key = std::make_tuple(stage, static_cast<int>(kind), KeyOf(plan_layer));
  if (const auto it = sets_.find(key); it != sets_.end()) return &it->second;
  const RankPartition& part = PartitionFor(kind, plan_layer);
  const std::vector<LaneId>& stage_lanes = lanes_of_stage_[static_cast<size_t>(stage)];
  const CollectiveFlows::Pattern pattern = kind == GroupKind::kEp
                                               ? CollectiveFlows::Pattern::kAllToAll
                                               : CollectiveFlows::Pattern::kRing;
  LaneSets sets;
  sets.set_of_lane.assign(stage_lanes.size(), -1);
  for (const LaneId lane : stage_lanes) {
    if (sets.set_of_lane[static_cast<size_t>(index_in_stage_[static_cast<size_t>(lane)])] >= 0) {
      continue;
    }
    std::vector<int> group_ids;  // one per tp index of the lane, distinct
    for (int r : lane_ranks_[static_cast<size_t>(lane)]) {
      const int g = part.group_of_rank[static_cast<size_t>(r)];
      if (std::find(group_ids.begin(), group_ids.end(), g) == group_ids.end()) {
        group_ids.push_back(g);
      }
    }
    std::vector<LaneId> members;
    std::vector<std::vector<int>> groups;
    for (int g : group_ids) {
      groups.push_back(part.groups[static_cast<size_t>(g)]);
      for (int r : groups.back()) members.push_back(lane_of_rank_[static_cast<size_t>(r)]);
    }
    std::sort(members.begin(), members.end());
    members.erase(std::unique(members.begin(), members.end()), members.end());
    // The member lanes must run this collective only together: every rank
    // of each of them in one of these groups.
    for (const LaneId member : members) {
      bool closed =
          stage_of_rank_[static_cast<size_t>(lane_ranks_[static_cast<size_t>(member)].front())] ==
          stage;
      for (int r : lane_ranks_[static_cast<size_t>(member)]) {
        const int g = part.group_of_rank[static_cast<size_t>(r)];
        closed = closed && std::find(group_ids.begin(), group_ids.end(), g) != group_ids.end();
      }
      if (!closed) {
        static constexpr const char* kNames[] = {"tp", "cp", "ep", "dp x cp"};
        return UnimplementedError(
            "plan.layers[" + Str(plan_layer) + "]: its " + kNames[static_cast<int>(kind)] +
            " groups cut across the tp groups of stage " + Str(stage) + " under rank_order '" +
            workload::RankOrderName(plan_.rank_order) +
            "'; the simulator runs the tp ranks of "
            "a lane in lock-step");
      }
    }
    ORRERY_ASSIGN_OR_RETURN(const FootprintId footprint, flows_->RegisterGroups(groups, pattern));
    sets.group_size = static_cast<int>(groups.front().size());
    const int index = static_cast<int>(sets.lanes.size());
    for (const LaneId member : members) {
      sets.set_of_lane[static_cast<size_t>(index_in_stage_[static_cast<size_t>(member)])] = index;
    }
    sets.lanes.push_back(std::move(members));
    sets.footprint.push_back(footprint);
  }
  return &sets_.emplace(key, std::move(sets)).first->second;
}

// The calls of `dim` among `calls` as one coflow: progress bytes, latencies
// and uncontended times summed; the cap makes latency + W / cap the sum.
Result<CoflowSpec> Builder::Combine(FootprintId footprint, const std::vector<PathCollective>& calls,
                                    ParallelDim dim) {
  CoflowSpec combined;
  combined.footprint = footprint;
  for (const PathCollective& c : calls) {
    if (c.dim != dim) continue;
    ORRERY_ASSIGN_OR_RETURN(const CoflowSpec one, flows_->Collective(footprint, c.op, c.size));
    combined.progress_bytes += one.progress_bytes * c.count;
    combined.latency += one.latency * c.count;
    combined.uncontended_time += one.uncontended_time * c.count;
  }
  const Duration transfer = combined.uncontended_time - combined.latency;
  if (combined.progress_bytes > Bytes::Zero() && transfer > Duration::Zero()) {
    const __int128 w = combined.progress_bytes.count();
    const __int128 t = transfer.picos();
    combined.rate_cap_bytes_per_s =
        static_cast<int64_t>((w * kPicosPerSecond + t - 1) / t);  // rounded up
  }
  return combined;
}

Result<std::vector<CoflowSpec>> Builder::PerSet(const LaneSets& sets, CollectiveOp op, Bytes size) {
  std::vector<CoflowSpec> out;
  out.reserve(sets.footprint.size());
  for (const FootprintId footprint : sets.footprint) {
    ORRERY_ASSIGN_OR_RETURN(CoflowSpec c, flows_->Collective(footprint, op, size));
    out.push_back(c);
  }
  return out;
}

Result<ChunkPasses> Builder::PlanChunk(int stage, int chunk, const LaneSets* dp_sets) {
  const ChunkCost& cost = out_.costs.chunk(stage, chunk);
  ChunkPasses passes;
  const int layers = static_cast<int>(cost.layers.size());
  const bool reduce = dp_sets != nullptr && dp_sets->group_size > 1;
  const LayerStrategy& anchor = Strategy(Anchor(stage));
  const int64_t bucket_parameters =
      options_.bucket_parameters > 0
          ? options_.bucket_parameters
          : std::max<int64_t>(40'000'000, int64_t{1'000'000} * anchor.dp * anchor.cp);

  for (bool backward : {false, true}) {
    std::vector<LayerPass>& list = backward ? passes.backward : passes.forward;
    list.reserve(static_cast<size_t>(std::max(layers, 1)));
    for (int j = 0; j < layers; ++j) {
      const int i = backward ? layers - 1 - j : j;
      const LayerCost& l = cost.layers[static_cast<size_t>(i)];
      LayerPass pass;
      pass.backward = backward;
      pass.layer = i;
      pass.compute = backward ? l.backward : l.forward;
      pass.saved = l.saved_activations;
      if (backward) {
        pass.recompute = l.recompute;
        pass.recomputed = l.recompute_activations;
        pass.recomputes = l.recompute > Duration::Zero() || l.recompute_activations > Bytes::Zero();
      }
      const std::vector<PathCollective>& calls = backward ? l.backward_comm : l.forward_comm;
      for (ParallelDim dim : kPathDims) {
        bool any = false;
        for (const PathCollective& c : calls) any = any || c.dim == dim;
        if (!any) continue;
        ORRERY_ASSIGN_OR_RETURN(const LaneSets* sets, SetsFor(stage, KindOf(dim), l.plan_layer));
        if (sets->group_size <= 1) continue;
        LayerPass::Comm comm;
        comm.label = PathLabel(dim);
        comm.sets = sets;
        comm.coflow.reserve(sets->footprint.size());
        for (const FootprintId footprint : sets->footprint) {
          ORRERY_ASSIGN_OR_RETURN(CoflowSpec c, Combine(footprint, calls, dim));
          comm.coflow.push_back(c);
        }
        pass.comms.push_back(std::move(comm));
      }
      if (reduce && Strategy(l.plan_layer).zero_stage == 3) {
        pass.zero3 = true;
        pass.gathered = Bytes(l.parameters * weight_bytes_);
        ORRERY_ASSIGN_OR_RETURN(pass.gather,
                                PerSet(*dp_sets, CollectiveOp::kAllGather, pass.gathered));
        if (backward) {
          ORRERY_ASSIGN_OR_RETURN(
              pass.reduce_scatter,
              PerSet(*dp_sets, CollectiveOp::kReduceScatter,
                     Bytes(l.parameters * options_.gradient_bytes_per_parameter)));
        }
      }
      list.push_back(std::move(pass));
    }
    if (layers == 0) {
      // An empty chunk still passes its micro-batches on.
      LayerPass pass;
      pass.backward = backward;
      list.push_back(std::move(pass));
    }
  }

  // Gradient buckets, in backward order, of the layers without ZeRO-3; a
  // bucket closes once it holds bucket_parameters or before a layer whose
  // ZeRO stage asks for another collective.
  if (reduce) {
    int64_t filled = 0;
    for (size_t j = 0; j < passes.backward.size(); ++j) {
      LayerPass& pass = passes.backward[j];
      if (layers == 0 || pass.zero3) continue;
      const LayerCost& l = cost.layers[static_cast<size_t>(pass.layer)];
      const int zero = Strategy(l.plan_layer).zero_stage;
      filled += l.parameters;
      bool close = filled >= bucket_parameters;
      size_t next = j + 1;
      while (next < passes.backward.size() && passes.backward[next].zero3) ++next;
      if (next == passes.backward.size()) {
        close = true;
      } else {
        const int next_zero =
            Strategy(cost.layers[static_cast<size_t>(passes.backward[next].layer)].plan_layer)
                .zero_stage;
        close = close || (next_zero >= 1) != (zero >= 1);
      }
      if (!close) continue;
      Bucket bucket;
      bucket.parameters = filled;
      ORRERY_ASSIGN_OR_RETURN(
          bucket.reduce,
          PerSet(*dp_sets, zero >= 1 ? CollectiveOp::kReduceScatter : CollectiveOp::kAllReduce,
                 Bytes(filled * options_.gradient_bytes_per_parameter)));
      if (zero >= 1) {
        ORRERY_ASSIGN_OR_RETURN(bucket.gather, PerSet(*dp_sets, CollectiveOp::kAllGather,
                                                      Bytes(filled * weight_bytes_)));
      }
      pass.bucket = static_cast<int>(passes.buckets.size());
      passes.buckets.push_back(std::move(bucket));
      filled = 0;
    }
  }
  return passes;
}

Status Builder::BuildStage(int stage) {
  TaskGraph& graph = out_.graph;
  const std::vector<LaneId>& lanes = lanes_of_stage_[static_cast<size_t>(stage)];
  const size_t n = lanes.size();
  ORRERY_ASSIGN_OR_RETURN(const LaneSets* dp_sets, SetsFor(stage, GroupKind::kDpCp, Anchor(stage)));
  const bool reduce = dp_sets->group_size > 1;
  std::vector<ChunkPasses> chunks;
  for (int c = 0; c < vpp_; ++c) {
    ORRERY_ASSIGN_OR_RETURN(ChunkPasses passes, PlanChunk(stage, c, reduce ? dp_sets : nullptr));
    chunks.push_back(std::move(passes));
  }
  const std::vector<PipelinePass>& schedule = schedules_[static_cast<size_t>(stage)];

  // The last backward of each chunk: where its gradient buckets reduce.
  std::vector<size_t> last_backward(static_cast<size_t>(vpp_), 0);
  for (size_t k = 0; k < schedule.size(); ++k) {
    if (schedule[k].backward) last_backward[static_cast<size_t>(schedule[k].chunk)] = k;
  }
  // The ZeRO-3 layer passes in program order (k-th gather before the k-th).
  std::vector<std::pair<const LayerPass*, const PipelinePass*>> zero3_sequence;
  for (const PipelinePass& pp : schedule) {
    const ChunkPasses& cp = chunks[static_cast<size_t>(pp.chunk)];
    for (const LayerPass& lp : pp.backward ? cp.backward : cp.forward) {
      if (lp.zero3) zero3_sequence.emplace_back(&lp, &pp);
    }
  }
  const size_t num_sets = dp_sets->lanes.size();
  std::vector<std::vector<TaskId>> gather_tasks;  // by ZeRO-3 pass, per set
  gather_tasks.reserve(zero3_sequence.size());
  std::vector<TaskId> last_reduce(num_sets, -1);
  std::vector<TaskId> last_compute(n, -1);  // the lane's last compute-stream task
  std::vector<TaskId> layer_task(n, -1);    // this layer pass's kForward/kBackward task
  std::vector<TaskId> pass_first(n, -1);
  // tp_comm_overlap: a lane's TP collective running beside its pass's
  // compute; the lane's next compute task waits for it.
  std::vector<TaskId> overlapped(n, -1);
  std::vector<TaskId> before_pass(n, -1);
  std::vector<TaskId> pass_overlap(n, -1);
  std::vector<TaskId> stream_last(n, -1);     // the lane's last compute-stream task
  std::vector<TaskId> before_compute(n, -1);  // ... before this layer pass
  // (chunk, bucket) reduce tasks per set, for the ZeRO-1/2 gathers.
  std::vector<std::pair<const Bucket*, std::vector<TaskId>>> reduced_buckets;
  size_t zero3_next = 0;

  const auto issue_gather = [&](size_t k, const std::vector<TaskId>* after) {
    const auto [lp, pass] = zero3_sequence[k];
    std::vector<TaskId> tasks(num_sets);
    for (size_t set = 0; set < num_sets; ++set) {
      const std::vector<LaneId>& members = dp_sets->lanes[set];
      const TaskId t = graph.AddCommunication(members, StreamKind::kDataParallel,
                                              TaskLabel::kParameterGather, lp->gather[set],
                                              {.micro_batch = pass->micro_batch,
                                               .chunk = static_cast<int16_t>(pass->chunk),
                                               .bucket = static_cast<int16_t>(lp->layer)});
      graph.SetMemory(t, lp->gathered, Bytes::Zero());
      if (after != nullptr) {
        for (const LaneId lane : members) {
          const TaskId before =
              (*after)[static_cast<size_t>(index_in_stage_[static_cast<size_t>(lane)])];
          if (before >= 0) graph.AddDependency(before, t);
        }
      }
      tasks[set] = t;
    }
    gather_tasks.push_back(std::move(tasks));
  };

  for (size_t k = 0; k < schedule.size(); ++k) {
    const PipelinePass& pp = schedule[k];
    const ChunkPasses& cp = chunks[static_cast<size_t>(pp.chunk)];
    const bool reduce_buckets = pp.backward && k == last_backward[static_cast<size_t>(pp.chunk)];
    std::fill(pass_first.begin(), pass_first.end(), -1);
    std::fill(pass_overlap.begin(), pass_overlap.end(), -1);
    bool first_layer = true;
    const TaskInfo info{
        .micro_batch = pp.micro_batch, .chunk = static_cast<int16_t>(pp.chunk), .bucket = -1};
    for (const LayerPass& lp : pp.backward ? cp.backward : cp.forward) {
      size_t zero3_index = 0;
      if (lp.zero3) {
        // Gathers: the first two up front, then the next one issued when
        // this pass can start (after the lane's previous task).
        zero3_index = zero3_next++;
        while (gather_tasks.size() < std::min(zero3_index + 1, zero3_sequence.size())) {
          issue_gather(gather_tasks.size(), nullptr);
        }
        if (zero3_index + 1 < zero3_sequence.size()) {
          issue_gather(zero3_index + 1, zero3_index == 0 ? nullptr : &last_compute);
        }
      }
      for (size_t li = 0; li < n; ++li) {
        const LaneId lane = lanes[li];
        before_pass[li] = last_compute[li];
        before_compute[li] = stream_last[li];
        TaskId first = -1;
        if (lp.recomputes) {
          first = graph.AddCompute(lane, StreamKind::kCompute, TaskLabel::kRecompute, lp.recompute,
                                   info);
          graph.SetMemory(first, lp.recomputed, Bytes::Zero());
        }
        const TaskId t = graph.AddCompute(lane, StreamKind::kCompute,
                                          lp.backward ? TaskLabel::kBackward : TaskLabel::kForward,
                                          lp.compute, info);
        const Bytes freed = (lp.backward ? lp.saved + lp.recomputed : Bytes::Zero()) +
                            (lp.zero3 ? lp.gathered : Bytes::Zero());
        graph.SetMemory(t, lp.backward ? Bytes::Zero() : lp.saved, freed);
        if (first < 0) first = t;
        if (overlapped[li] >= 0) {
          graph.AddDependency(overlapped[li], first);
          overlapped[li] = -1;
        }
        if (lp.zero3) {
          const size_t set = static_cast<size_t>(dp_sets->set_of_lane[li]);
          graph.AddDependency(gather_tasks[zero3_index][set], first);
        }
        if (pass_first[li] < 0) pass_first[li] = first;
        layer_task[li] = t;
        last_compute[li] = t;
        stream_last[li] = t;
      }
      for (const LayerPass::Comm& comm : lp.comms) {
        for (size_t set = 0; set < comm.sets->lanes.size(); ++set) {
          const std::vector<LaneId>& members = comm.sets->lanes[set];
          const bool overlap =
              options_.tp_comm_overlap && comm.label == TaskLabel::kTensorParallel;
          const TaskId t = graph.AddCommunication(
              members, overlap ? StreamKind::kTensorParallel : StreamKind::kCompute, comm.label,
              comm.coflow[set], info);
          for (const LaneId lane : members) {
            const size_t li = static_cast<size_t>(index_in_stage_[static_cast<size_t>(lane)]);
            if (overlap) {
              // Beside the pass's compute: it starts when the pass may.
              if (before_pass[li] >= 0) graph.AddDependency(before_pass[li], t);
              if (before_compute[li] >= 0 && before_compute[li] != before_pass[li]) {
                graph.AddDependency(before_compute[li], t);
              }
              if (first_layer && pass_overlap[li] < 0) pass_overlap[li] = t;
              overlapped[li] = t;
            } else {
              stream_last[li] = t;
            }
            last_compute[li] = t;
          }
        }
      }
      first_layer = false;
      // Gradient reductions on the data-parallel stream.
      const auto reduce_after_backward = [&](const std::vector<CoflowSpec>& coflows,
                                             TaskInfo reduce_info) {
        std::vector<TaskId> tasks(num_sets);
        for (size_t set = 0; set < num_sets; ++set) {
          const std::vector<LaneId>& members = dp_sets->lanes[set];
          const TaskId t =
              graph.AddCommunication(members, StreamKind::kDataParallel, TaskLabel::kGradientReduce,
                                     coflows[set], reduce_info);
          for (const LaneId lane : members) {
            graph.AddDependency(
                layer_task[static_cast<size_t>(index_in_stage_[static_cast<size_t>(lane)])], t);
          }
          last_reduce[set] = t;
          tasks[set] = t;
        }
        return tasks;
      };
      if (lp.backward && lp.zero3) {
        reduce_after_backward(lp.reduce_scatter, {.micro_batch = pp.micro_batch,
                                                  .chunk = static_cast<int16_t>(pp.chunk),
                                                  .bucket = static_cast<int16_t>(lp.layer)});
      }
      if (reduce_buckets && lp.bucket >= 0) {
        const Bucket& bucket = cp.buckets[static_cast<size_t>(lp.bucket)];
        std::vector<TaskId> tasks =
            reduce_after_backward(bucket.reduce, {.micro_batch = -1,
                                                  .chunk = static_cast<int16_t>(pp.chunk),
                                                  .bucket = static_cast<int16_t>(lp.bucket)});
        if (!bucket.gather.empty()) reduced_buckets.emplace_back(&bucket, std::move(tasks));
      }
    }
    for (size_t li = 0; li < n; ++li) {
      const size_t index = PassIndex(lanes[li], pp.backward, pp.chunk, pp.micro_batch);
      first_task_[index] = pass_first[li];
      first_overlap_[index] = pass_overlap[li];
      last_task_[index] = last_compute[li];
    }
  }

  // The optimizer step: parameters held after ZeRO, each at the measured
  // time per parameter when calibrated, else at the memory bandwidth the
  // compute model grants streaming kernels.
  int64_t held = 0;
  for (int c = 0; c < vpp_; ++c) {
    for (const LayerCost& l : out_.costs.chunk(stage, c).layers) {
      const LayerStrategy& st = Strategy(l.plan_layer);
      held += st.zero_stage >= 1 ? l.parameters / (st.dp * st.cp) : l.parameters;
    }
  }
  const Bandwidth bandwidth =
      compute_.device().memory_bandwidth * compute_.options().bandwidth_efficiency;
  const Duration optimizer =
      options_.optimizer_time_per_parameter.has_value()
          ? *options_.optimizer_time_per_parameter * held
          : Bytes(held * options_.optimizer_bytes_per_parameter) / bandwidth;
  out_.optimizer = std::max(out_.optimizer, optimizer);
  std::vector<TaskId> optimizer_task(n);
  for (size_t li = 0; li < n; ++li) {
    optimizer_task[li] =
        graph.AddCompute(lanes[li], StreamKind::kCompute, TaskLabel::kOptimizer, optimizer);
    if (overlapped[li] >= 0) graph.AddDependency(overlapped[li], optimizer_task[li]);
    const TaskId reduce_task = last_reduce[static_cast<size_t>(dp_sets->set_of_lane[li])];
    if (reduce_task >= 0) graph.AddDependency(reduce_task, optimizer_task[li]);
  }
  // ZeRO-1/2: the updated parameters all-gathered in the same buckets.
  for (const auto& [bucket, reduce_tasks] : reduced_buckets) {
    for (size_t set = 0; set < num_sets; ++set) {
      const std::vector<LaneId>& members = dp_sets->lanes[set];
      const TaskId t =
          graph.AddCommunication(members, StreamKind::kDataParallel, TaskLabel::kParameterGather,
                                 bucket->gather[set], graph.task(reduce_tasks[set]).info);
      for (const LaneId lane : members) {
        graph.AddDependency(
            optimizer_task[static_cast<size_t>(index_in_stage_[static_cast<size_t>(lane)])], t);
      }
    }
  }
  return Status::Ok();
}

Status Builder::AddTransfers() {
  TaskGraph& graph = out_.graph;
  const int virtual_stages = p_ * vpp_;
  for (int s = 0; s < p_; ++s) {
    for (const LaneId lane : lanes_of_stage_[static_cast<size_t>(s)]) {
      const std::vector<int>& ranks = lane_ranks_[static_cast<size_t>(lane)];
      FootprintId footprint[2] = {0, 0};  // activations forward, gradients backward
      std::vector<LaneId> receivers[2];
      if (p_ > 1) {
        for (int dir = 0; dir < 2; ++dir) {
          std::vector<int> to;
          to.reserve(ranks.size());
          for (int r : ranks)
            to.push_back((dir == 0 ? pp_next_ : pp_prev_)[static_cast<size_t>(r)]);
          ORRERY_ASSIGN_OR_RETURN(footprint[dir], flows_->RegisterTransfer(ranks, to));
          for (int r : to) receivers[dir].push_back(lane_of_rank_[static_cast<size_t>(r)]);
          std::sort(receivers[dir].begin(), receivers[dir].end());
          receivers[dir].erase(std::unique(receivers[dir].begin(), receivers[dir].end()),
                               receivers[dir].end());
        }
      }
      for (const PipelinePass& pass : schedules_[static_cast<size_t>(s)]) {
        const int v = pass.chunk * p_ + s;
        const int to_v = pass.backward ? v - 1 : v + 1;
        if (to_v < 0 || to_v >= virtual_stages) continue;
        const int to_chunk = to_v / p_;
        const TaskId last =
            last_task_[PassIndex(lane, pass.backward, pass.chunk, pass.micro_batch)];
        if (p_ == 1) {  // the next chunk on the same lane: no transfer
          const size_t to = PassIndex(lane, pass.backward, to_chunk, pass.micro_batch);
          graph.AddDependency(last, first_task_[to]);
          if (first_overlap_[to] >= 0) graph.AddDependency(last, first_overlap_[to]);
          continue;
        }
        const int dir = pass.backward ? 1 : 0;
        const TaskId t = graph.AddCommunication(
            std::span<const LaneId>(&lane, 1), StreamKind::kPipelineSend,
            pass.backward ? TaskLabel::kPipelineGradient : TaskLabel::kPipelineActivation,
            flows_->Transfer(footprint[dir], out_.costs.p2p_bytes),
            {.micro_batch = pass.micro_batch,
             .chunk = static_cast<int16_t>(pass.chunk),
             .bucket = -1});
        graph.AddDependency(last, t);
        for (const LaneId receiver : receivers[dir]) {
          const size_t to = PassIndex(receiver, pass.backward, to_chunk, pass.micro_batch);
          graph.AddDependency(t, first_task_[to]);
          if (first_overlap_[to] >= 0) graph.AddDependency(t, first_overlap_[to]);
        }
      }
    }
  }
  return Status::Ok();
}

Result<TrainingGraph> Builder::Build() {
  ORRERY_RETURN_IF_ERROR(workload::ValidatePlan(plan_, model_, cluster_));
  if (options_.gradient_bytes_per_parameter < 0 || options_.optimizer_bytes_per_parameter < 0 ||
      options_.bucket_parameters < 0) {
    return InvalidArgumentError(
        "training graph options: bytes per parameter and bucket "
        "parameters must be >= 0");
  }
  if (options_.optimizer_time_per_parameter.has_value() &&
      *options_.optimizer_time_per_parameter < Duration()) {
    return InvalidArgumentError(
        "training graph options: optimizer time per parameter must be >= 0, got " +
        FormatDuration(*options_.optimizer_time_per_parameter));
  }
  p_ = plan_.pp;
  m_ = plan_.NumMicroBatches();
  vpp_ = plan_.schedule == PipelineSchedule::kInterleaved ? plan_.vpp : 1;
  ORRERY_RETURN_IF_ERROR(CheckStageSchedule(plan_.schedule, p_, m_, vpp_));
  bounds_ = plan_.StageBoundaries();
  const bool fp32 = plan_.precision == topology::Precision::kFp32 ||
                    plan_.precision == topology::Precision::kTf32;
  weight_bytes_ = options_.memory.parameter_bytes.value_or(fp32 ? 4 : 2);

  ORRERY_RETURN_IF_ERROR(BuildLayout());

  FlowTimer timer(this);
  ORRERY_ASSIGN_OR_RETURN(out_.costs,
                          BuildStageCosts(model_, plan_, compute_, &timer, options_.stage));
  ORRERY_CHECK(out_.costs.pp == p_ && out_.costs.vpp == vpp_ &&
               out_.costs.chunks.size() == static_cast<size_t>(p_ * vpp_));
  costmodel::MemoryOptions memory = options_.memory;
  memory.flash_attention = options_.stage.flash_attention;
  ORRERY_ASSIGN_OR_RETURN(out_.memory, costmodel::EstimateMemory(model_, plan_, cluster_, memory));

  for (int s = 0; s < p_; ++s) {
    schedules_.push_back(StageSchedule(plan_.schedule, p_, s, m_, vpp_));
  }

  // Lanes, with the memory the tasks do not allocate.
  for (int s = 0; s < p_; ++s) {
    const costmodel::StageMemory& mem = out_.memory.stages[static_cast<size_t>(s)];
    Bytes held = mem.Total() - mem.activations - mem.recompute_activations;
    // ZeRO-3: the gather tasks allocate the gathered layers that the memory
    // model counts as buffers (the layer in use and the one prefetched).
    const LayerStrategy& anchor = Strategy(Anchor(s));
    if (anchor.dp * anchor.cp > 1) {
      int64_t largest = 0;
      for (int c = 0; c < vpp_; ++c) {
        for (const LayerCost& l : out_.costs.chunk(s, c).layers) {
          const bool block = l.model_layer >= 1 && l.model_layer <= plan_.num_layers();
          if (block && Strategy(l.plan_layer).zero_stage == 3) {
            largest = std::max(largest, l.parameters);
          }
        }
      }
      held -= Bytes(2 * largest * weight_bytes_);
    }
    out_.lanes_of_stage.emplace_back();
    for (const LaneId lane : lanes_of_stage_[static_cast<size_t>(s)]) {
      const LaneId id = out_.graph.AddLane({.ranks = lane_ranks_[static_cast<size_t>(lane)],
                                            .stage = s,
                                            .replica = index_in_stage_[static_cast<size_t>(lane)],
                                            .static_memory = held});
      ORRERY_CHECK_EQ(id, lane);
      out_.lanes_of_stage.back().push_back(id);
    }
  }

  const size_t passes =
      lane_ranks_.size() * 2 * static_cast<size_t>(vpp_) * static_cast<size_t>(m_);
  first_task_.assign(passes, -1);
  first_overlap_.assign(passes, -1);
  last_task_.assign(passes, -1);
  for (int s = 0; s < p_; ++s) ORRERY_RETURN_IF_ERROR(BuildStage(s));
  ORRERY_RETURN_IF_ERROR(AddTransfers());
  const Status finalized = out_.graph.Finalize();
  if (!finalized.ok()) {
    return InternalError("training graph: " + finalized.message() + " (a bug of the builder)");
  }
  return std::move(out_);
}

}  // namespace

Result<TrainingGraph> BuildTrainingGraph(const workload::ModelSpec& model,
                                         const workload::Plan& plan,
                                         const topology::ClusterSpec& cluster,
                                         const costmodel::ComputeModel& compute,
                                         CollectiveFlows* flows,
                                         const TrainingGraphOptions& options) {
  ORRERY_CHECK(flows != nullptr);
  Builder builder(model, plan, cluster, compute, flows, options);
  return builder.Build();
}

}  // namespace orrery::sim
