#include "sim/analytical.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "costmodel/memory.h"
#include "sim/collective_flows.h"
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
// "Not known yet" in the recurrence's tables (every real time is >= 0).
constexpr Duration kUnknown = Duration::FromPicos(-1);

std::string Str(int64_t v) { return std::to_string(v); }

// The rank groups of one plan's layers, the group holding a given rank
// computed in closed form on workload::RankGroups' grid (dimensions in
// plan.rank_order, innermost first; ep groups on the grid tp × 1 × ep ×
// dp·cp/ep × pp): the group of `rank` along `dim` is
//     base + k·stride(dim),  k = 0 … size(dim) − 1,
// base = rank − coordinate(dim)·stride(dim) — RankGroups' members in its
// order, without building the partition of every rank (a search scores
// plans of thousands of ranks).
class RankGrid {
 public:
  explicit RankGrid(const workload::Plan* plan) : plan_(plan) {}

  // The group of `dim` for `layer` that holds `rank`.
  std::vector<int> Holding(int layer, ParallelDim dim, int rank) const {
    const LayerStrategy& l = plan_->layers[static_cast<size_t>(layer)];
    const auto size_of = [&](ParallelDim d) {
      if (dim == ParallelDim::kEp) {
        switch (d) {
          case ParallelDim::kTp: return l.tp;
          case ParallelDim::kCp: return 1;
          case ParallelDim::kEp: return l.ep;
          case ParallelDim::kDp: return l.dp * l.cp / l.ep;
          case ParallelDim::kPp: return plan_->pp;
        }
      }
      switch (d) {
        case ParallelDim::kTp: return l.tp;
        case ParallelDim::kCp: return l.cp;
        case ParallelDim::kEp: return 1;
        case ParallelDim::kDp: return l.dp;
        case ParallelDim::kPp: return plan_->pp;
      }
      return 1;
    };
    int stride = 1;
    for (const ParallelDim d : plan_->rank_order) {
      if (d == dim) break;
      stride *= size_of(d);
    }
    const int n = size_of(dim);
    const int coordinate = (rank / stride) % n;
    const int base = rank - coordinate * stride;
    std::vector<int> group(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) group[static_cast<size_t>(k)] = base + k * stride;
    return group;
  }

  // The ranks that differ from `rank` only in their dp and cp coordinates
  // for `layer`: the stage's gradient-reduction group, sorted.
  std::vector<int> DataParallel(int layer, int rank) {
    const std::vector<int> cp = Holding(layer, ParallelDim::kCp, rank);
    std::set<int> members;
    for (int r : cp) {
      const std::vector<int> g = Holding(layer, ParallelDim::kDp, r);
      members.insert(g.begin(), g.end());
    }
    return std::vector<int>(members.begin(), members.end());
  }

 private:
  const workload::Plan* plan_;
};

// Collective times on groups as the simulator's coflows see them, cached
// for one Estimate call.
class GroupTimer {
 public:
  // `free`: every collective takes zero time (free communication).
  GroupTimer(const costmodel::CollectiveModel* model, int devices_per_node, bool free)
      : model_(model), devices_per_node_(devices_per_node), free_(free) {}

  // The uncontended time of one call of `op` of `size` bytes on `ranks`:
  // zero for one rank or zero bytes (CollectiveFlows::Collective).
  Result<Duration> Time(CollectiveOp op, Bytes size, const std::vector<int>& ranks) {
    if (free_ || ranks.size() <= 1 || size <= Bytes::Zero()) return Duration::Zero();
    const costmodel::RankGroup shape = ShapeOfGroup(ranks, devices_per_node_);
    const auto key = std::make_tuple(shape.nodes, shape.ranks_per_node,
                                     static_cast<int>(shape.placement), static_cast<int>(op),
                                     size.count());
    if (const auto it = cache_.find(key); it != cache_.end()) return it->second;
    ORRERY_ASSIGN_OR_RETURN(const costmodel::CollectiveEstimate e,
                            model_->Estimate(op, size, shape));
    cache_.emplace(key, e.time);
    return e.time;
  }

 private:
  const costmodel::CollectiveModel* model_;
  int devices_per_node_;
  bool free_;
  std::map<std::tuple<int, int, int, int, int64_t>, Duration> cache_;
};

// PathCollectiveTimer on the group of `dim` for the layer that holds the
// first rank of the layer's stage in replica 0.
class PlanPathTimer final : public PathCollectiveTimer {
 public:
  PlanPathTimer(std::vector<int> stage_of_layer, std::vector<int> stage_rank, RankGrid* groups,
                GroupTimer* timer)
      : stage_of_layer_(std::move(stage_of_layer)), stage_rank_(std::move(stage_rank)),
        groups_(groups), timer_(timer) {}

  Result<Duration> Time(int plan_layer, ParallelDim dim, CollectiveOp op, Bytes size) override {
    const int stage = stage_of_layer_[static_cast<size_t>(plan_layer)];
    return timer_->Time(
        op, size, groups_->Holding(plan_layer, dim, stage_rank_[static_cast<size_t>(stage)]));
  }

 private:
  std::vector<int> stage_of_layer_;
  std::vector<int> stage_rank_;
  RankGrid* groups_;
  GroupTimer* timer_;
};

// What CollectiveFlows::Transfer takes alone: the longest pair's route
// latency, then `size` at min over the footprint's links of ⌊C_l / w_l⌋.
Duration TransferTime(const topology::Topology& topo, const std::vector<int>& from,
                      const std::vector<int>& to, Bytes size) {
  const size_t pairs = std::min(from.size(), to.size());
  std::map<uint32_t, int64_t> weight;
  Duration longest;
  std::vector<topology::LinkId> route;
  for (size_t i = 0; i < pairs; ++i) {
    topo.RouteInto(from[i], to[i], &route);
    Duration latency;
    for (const topology::LinkId link : route) {
      latency += topo.link(link).latency;
      ++weight[link.value()];
    }
    longest = std::max(longest, latency);
  }
  if (size == Bytes::Zero() || weight.empty()) return longest;
  int64_t rate = std::numeric_limits<int64_t>::max();
  for (const auto& [link, w] : weight) {
    const int64_t capacity =
        std::llround(topo.link(topology::LinkId(link)).bandwidth.BytesPerSecond());
    rate = std::min(rate, capacity / w);
  }
  ORRERY_CHECK(rate > 0) << "a transfer route of zero capacity";
  const __int128 picos =
      (static_cast<__int128>(size.count()) * kPicosPerSecond + rate - 1) / rate;
  return longest + Duration::FromPicos(static_cast<int64_t>(picos));
}

// Lengths of passes decided when they start (the data-parallel stream of
// steps 3 and 5 of the header). Called for each pass of each stage in
// program order: passes[index] is the pass, `previous_end` when the
// stage's previous pass ended, `start` when this one starts (its input
// arrived); returns how long it takes.
class PassTimer {
 public:
  virtual ~PassTimer() = default;
  virtual Duration Length(int stage, const std::vector<PipelinePass>& passes, size_t index,
                          bool last_of_chunk, Duration previous_end, Duration start,
                          Duration nominal) = 0;
};

Result<PipelineTimes> RunPipeline(const PipelineInputs& in, PassTimer* timer);

}  // namespace

PipelineInputs PipelineInputs::FromCosts(const StageCostTable& costs, PipelineSchedule schedule,
                                         int micro_batches) {
  PipelineInputs in;
  in.schedule = schedule;
  in.pp = costs.pp;
  in.vpp = costs.vpp;
  in.micro_batches = micro_batches;
  for (const ChunkCost& chunk : costs.chunks) {
    in.forward.push_back(chunk.Forward());
    in.backward.push_back(chunk.Backward());
  }
  return in;
}

Result<PipelineTimes> EstimatePipeline(const PipelineInputs& inputs) {
  return RunPipeline(inputs, nullptr);
}

namespace {

Result<PipelineTimes> RunPipeline(const PipelineInputs& in, PassTimer* timer) {
  const int p = in.pp;
  const int v = in.vpp;
  const int m = in.micro_batches;
  if (p < 1 || v < 1 || m < 1) {
    return InvalidArgumentError("pipeline: pp " + Str(p) + ", vpp " + Str(v) +
                                ", micro-batches " + Str(m) + "; expected each >= 1");
  }
  ORRERY_RETURN_IF_ERROR(CheckStageSchedule(in.schedule, p, m, v));
  const int virtual_stages = p * v;
  const size_t chunks = static_cast<size_t>(virtual_stages);
  if (in.forward.size() != chunks || in.backward.size() != chunks ||
      (!in.activation_transfer.empty() && in.activation_transfer.size() != chunks - 1) ||
      (!in.gradient_transfer.empty() && in.gradient_transfer.size() != chunks - 1)) {
    return InvalidArgumentError("pipeline: expected " + Str(virtual_stages) +
                                " chunk costs and " + Str(virtual_stages - 1) +
                                " transfer times each way");
  }
  for (size_t i = 0; i < chunks; ++i) {
    if (in.forward[i] < Duration::Zero() || in.backward[i] < Duration::Zero()) {
      return InvalidArgumentError("pipeline: chunk " + Str(static_cast<int64_t>(i)) +
                                  " has a negative cost");
    }
  }
  const auto transfer = [](const std::vector<Duration>& times, int boundary) {
    return times.empty() ? Duration::Zero() : times[static_cast<size_t>(boundary)];
  };

  // Arrivals at virtual stage vs of micro-batch i's input, and when its
  // transfer started: index vs·m + i.
  const size_t cells = chunks * static_cast<size_t>(m);
  std::vector<Duration> activation_at(cells, kUnknown), activation_sent(cells, kUnknown);
  std::vector<Duration> gradient_at(cells, kUnknown), gradient_sent(cells, kUnknown);
  const auto cell = [m](int vs, int i) { return static_cast<size_t>(vs) * m + i; };

  struct Lane {
    std::vector<PipelinePass> passes;
    std::vector<size_t> last_backward;  // by chunk: its last backward's index in passes
    size_t next = 0;
    Duration free;       // compute stream
    Duration send_free;  // pipeline-send stream
  };
  std::vector<Lane> lanes(static_cast<size_t>(p));
  PipelineTimes out;
  out.stages.resize(static_cast<size_t>(p));
  for (int s = 0; s < p; ++s) {
    Lane& lane = lanes[static_cast<size_t>(s)];
    lane.passes = StageSchedule(in.schedule, p, s, m, v);
    lane.last_backward.assign(static_cast<size_t>(v), 0);
    for (size_t k = 0; k < lane.passes.size(); ++k) {
      if (lane.passes[k].backward) {
        lane.last_backward[static_cast<size_t>(lane.passes[k].chunk)] = k;
      }
    }
    out.stages[static_cast<size_t>(s)].last_backward_start.assign(static_cast<size_t>(v),
                                                                   Duration::Zero());
  }

  bool progress = true;
  size_t done = 0;
  while (progress) {
    progress = false;
    for (int s = 0; s < p; ++s) {
      Lane& lane = lanes[static_cast<size_t>(s)];
      PipelineStageTimes& times = out.stages[static_cast<size_t>(s)];
      while (lane.next < lane.passes.size()) {
        const PipelinePass pass = lane.passes[lane.next];
        const int vs = pass.chunk * p + s;
        const size_t chunk = static_cast<size_t>(s * v + pass.chunk);
        Duration arrival = Duration::Zero();
        Duration sent = Duration::Zero();
        if (!pass.backward && vs > 0) {
          arrival = activation_at[cell(vs, pass.micro_batch)];
          sent = activation_sent[cell(vs, pass.micro_batch)];
        } else if (pass.backward && vs < virtual_stages - 1) {
          arrival = gradient_at[cell(vs, pass.micro_batch)];
          sent = gradient_sent[cell(vs, pass.micro_batch)];
        }
        if (arrival == kUnknown) break;
        Duration start = lane.free;
        if (arrival > lane.free) {
          // Idle: waiting on the transfer while it is in flight, otherwise
          // on the neighbour's compute (sim/replay.h's accounting).
          const Duration exposed = arrival - std::max(lane.free, sent);
          times.p2p_exposed += exposed;
          times.bubble += arrival - lane.free - exposed;
          start = arrival;
        }
        Duration length = pass.backward ? in.backward[chunk] : in.forward[chunk];
        const bool last_of_chunk =
            pass.backward && lane.next == lane.last_backward[static_cast<size_t>(pass.chunk)];
        if (timer != nullptr) {
          length =
              timer->Length(s, lane.passes, lane.next, last_of_chunk, lane.free, start, length);
        }
        const Duration end = start + length;
        times.busy += length;
        lane.free = end;
        if (last_of_chunk) {
          times.last_backward_start[static_cast<size_t>(pass.chunk)] = start;
        }
        if (!pass.backward && vs + 1 < virtual_stages) {
          const Duration go = std::max(end, lane.send_free);
          lane.send_free = go + transfer(in.activation_transfer, vs);
          activation_sent[cell(vs + 1, pass.micro_batch)] = go;
          activation_at[cell(vs + 1, pass.micro_batch)] = lane.send_free;
        } else if (pass.backward && vs > 0) {
          const Duration go = std::max(end, lane.send_free);
          lane.send_free = go + transfer(in.gradient_transfer, vs - 1);
          gradient_sent[cell(vs - 1, pass.micro_batch)] = go;
          gradient_at[cell(vs - 1, pass.micro_batch)] = lane.send_free;
        }
        ++lane.next;
        ++done;
        progress = true;
      }
    }
  }
  if (done != 2 * cells) {
    return InternalError("pipeline: the schedule deadlocks after " +
                         Str(static_cast<int64_t>(done)) +
                         " of " + Str(static_cast<int64_t>(2 * cells)) + " passes");
  }
  for (int s = 0; s < p; ++s) {
    PipelineStageTimes& times = out.stages[static_cast<size_t>(s)];
    times.end = lanes[static_cast<size_t>(s)].free;
    out.makespan = std::max(out.makespan, times.end);
  }
  return out;
}

}  // namespace

AnalyticalModel::AnalyticalModel(topology::ClusterSpec cluster,
                                 std::vector<costmodel::ComputeModel> compute,
                                 costmodel::CollectiveModel collectives,
                                 topology::Topology topology)
    : cluster_(std::move(cluster)), compute_(std::move(compute)),
      collectives_(std::move(collectives)),
      topology_(std::make_unique<topology::Topology>(std::move(topology))) {}

AnalyticalModel::AnalyticalModel(AnalyticalModel&&) noexcept = default;
AnalyticalModel& AnalyticalModel::operator=(AnalyticalModel&&) noexcept = default;
AnalyticalModel::~AnalyticalModel() = default;

Result<AnalyticalModel> AnalyticalModel::Create(const topology::ClusterSpec& cluster) {
  return Create(cluster, nullptr);
}

Result<AnalyticalModel> AnalyticalModel::Create(const topology::ClusterSpec& cluster,
                                                const costmodel::Calibration* calibration) {
  // CalibratedCollectiveModel rejects a calibration of another device.
  ORRERY_ASSIGN_OR_RETURN(costmodel::CollectiveModel collectives,
                          costmodel::CalibratedCollectiveModel(cluster, calibration));
  if (cluster.node_types.empty()) return InvalidArgumentError("cluster: no node type");
  const topology::DeviceType& device = cluster.PrimaryNodeType().device;
  std::vector<costmodel::ComputeModel> compute;
  for (const auto& [precision, peak] : device.peak) {
    Result<costmodel::ComputeModel> model =
        costmodel::CalibratedComputeModel(device, precision, calibration);
    if (model.ok()) compute.push_back(std::move(model).value());
  }
  if (compute.empty()) {
    return InvalidArgumentError("cluster: no compute model can be built for device '" +
                                device.name + "'");
  }
  ORRERY_ASSIGN_OR_RETURN(AnalyticalModel made,
                          Create(cluster, std::move(compute), std::move(collectives)));
  if (calibration != nullptr) {
    made.optimizer_time_per_parameter_ = calibration->optimizer_time_per_parameter;
  }
  return made;
}

Result<AnalyticalModel> AnalyticalModel::Create(const topology::ClusterSpec& cluster,
                                                std::vector<costmodel::ComputeModel> compute,
                                                costmodel::CollectiveModel collectives) {
  ORRERY_ASSIGN_OR_RETURN(topology::Topology topo, topology::Topology::Build(cluster));
  std::set<topology::Precision> seen;
  for (const costmodel::ComputeModel& c : compute) {
    if (!seen.insert(c.precision()).second) {
      return InvalidArgumentError("analytical model: two compute models of precision " +
                                  std::string(topology::PrecisionName(c.precision())));
    }
  }
  return AnalyticalModel(cluster, std::move(compute), std::move(collectives), std::move(topo));
}

const costmodel::ComputeModel* AnalyticalModel::compute(topology::Precision precision) const {
  for (const costmodel::ComputeModel& c : compute_) {
    if (c.precision() == precision) return &c;
  }
  return nullptr;
}

namespace {

// The TP part of a pass's path collectives.
Duration TensorParallelComm(const std::vector<PathCollective>& calls) {
  Duration total;
  for (const PathCollective& c : calls) {
    if (c.dim == ParallelDim::kTp) total += c.uncontended;
  }
  return total;
}

// One layer's pass from its first compute task until the next layer may
// start: compute (recompute included), then the path collectives; with
// tp_comm_overlap the TP collectives run on their own stream beside the
// compute and the other collectives after it, the next layer waiting for
// both: max(compute + others, TP).
Duration LayerPassLength(const LayerCost& l, bool backward, bool tp_overlap) {
  const Duration compute = backward ? l.recompute + l.backward : l.forward;
  const Duration comm = backward ? l.BackwardComm() : l.ForwardComm();
  if (!tp_overlap) return compute + comm;
  const Duration tp = TensorParallelComm(backward ? l.backward_comm : l.forward_comm);
  return std::max(compute + (comm - tp), tp);
}

// One gradient bucket of a chunk (step 3 of the header): reduced when the
// backward compute of chunk.layers[layer] ends in the chunk's last backward.
struct BucketPlan {
  int layer = 0;
  Duration reduce;  // all-reduce, or reduce-scatter with ZeRO-1/2
  Duration gather;  // ZeRO-1/2: the parameters' all-gather after the optimizer
};

// What one layer of a chunk does on the data-parallel stream.
struct LayerDp {
  bool zero3 = false;      // gathers its parameters (ZeRO-3 over dp·cp > 1)
  Duration gather;         // ZeRO-3: before each of its passes
  Duration reduce_scatter; // ZeRO-3: after each of its backward passes
  int bucket = -1;         // the bucket its last backward closes, or -1
};

// The data-parallel stream of one stage of replica 0, run by the
// recurrence (PassTimer) as the training graph orders it
// (sim/training_graph.cc BuildStage): one task at a time in the order the
// graph creates them — per layer pass, the ZeRO-3 gather of the next
// ZeRO-3 layer pass (ready when the lane's previous compute-stream task
// ends; the first two at once), then after the layer's backward compute
// its ZeRO-3 reduce-scatter or the bucket it closes in the chunk's last
// backward — and the overlap slowdown of compute tasks that start while
// one runs.
struct StageStream {
  std::vector<std::vector<BucketPlan>> buckets;  // by chunk, in backward order
  std::vector<std::vector<LayerDp>> layers;       // by chunk, by layer
  std::vector<bool> chunk_zero3;                  // by chunk: some layer is ZeRO-3
  bool zero3 = false;                             // some chunk is
  int64_t zero3_passes = 0;                       // ZeRO-3 layer passes in the iteration
  // Filled by the recurrence.
  std::vector<std::pair<Duration, Duration>> runs;  // [start, end) of the tasks, in order
  std::vector<Duration> gathers;                    // ZeRO-1/2 buckets' gathers, in order
  Duration free;                                    // when the last task ends
  Duration last_reduce_start;                       // of the last reduction
  Duration gradient_reduction;                      // Σ reductions (ZeRO-3's included)
  Duration gather_wait;                             // compute idle on ZeRO-3 gathers
  Duration slowed_compute;                          // what the slowdown added, forward/backward
  Duration slowed_recompute;                        // and recompute
  int64_t zero3_next = 0;                           // the next ZeRO-3 layer pass
  int64_t gathers_issued = 0;
  Duration gather_end[4];                           // by ZeRO-3 layer pass k, at k mod 4

  // Whether a task runs at `t`.
  bool Busy(Duration t) const {
    for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
      if (t >= it->second) return false;
      if (t >= it->first) return true;
    }
    return false;
  }
  // Appends a task ready at `ready` lasting `length`; returns its start.
  Duration Issue(Duration ready, Duration length) {
    const Duration begin = std::max(ready, free);
    free = begin + length;
    if (length > Duration::Zero()) runs.emplace_back(begin, free);
    return begin;
  }
};

class DataParallelStreams final : public PassTimer {
 public:
  DataParallelStreams(const StageCostTable* costs, double slowdown, bool tp_overlap,
                      std::vector<StageStream>* stages)
      : costs_(costs), slowdown_(slowdown), tp_overlap_(tp_overlap), stages_(stages) {}

  Duration Length(int stage, const std::vector<PipelinePass>& passes, size_t index,
                  bool last_of_chunk, Duration previous_end, Duration start,
                  Duration nominal) override {
    StageStream& st = (*stages_)[static_cast<size_t>(stage)];
    const PipelinePass& pass = passes[index];
    const auto c = static_cast<size_t>(pass.chunk);
    const bool reduce = last_of_chunk && !st.buckets[c].empty();
    const bool slowed = slowdown_ > 0 && start < st.free;
    if (!reduce && !slowed && !st.zero3) return nominal;
    // Walk the pass task by task as the replay runs it.
    const ChunkCost& chunk = costs_->chunk(stage, pass.chunk);
    const std::vector<LayerDp>& dp = st.layers[c];
    Duration t = start;
    Duration last_task_end = previous_end;  // the lane's last compute-stream task
    const auto run = [&](Duration cost, Duration* slowed_sum) {
      if (slowdown_ > 0 && st.Busy(t)) {
        const Duration longer = cost * (1.0 + slowdown_);
        *slowed_sum += longer - cost;
        cost = longer;
      }
      t += cost;
    };
    const int n = static_cast<int>(chunk.layers.size());
    for (int j = 0; j < n; ++j) {
      const size_t l = static_cast<size_t>(pass.backward ? n - 1 - j : j);
      const LayerCost& layer = chunk.layers[l];
      if (dp[l].zero3) {
        // Gathers: the first two up front, then the next one when this
        // layer pass could start; the pass waits for its own.
        const int64_t k = st.zero3_next++;
        while (st.gathers_issued < std::min(k + 1, st.zero3_passes)) {
          IssueGather(st, Duration::Zero(), NextZero3(st, passes, index, j, true));
        }
        if (k + 1 < st.zero3_passes) {
          IssueGather(st, k == 0 ? Duration::Zero() : last_task_end,
                      NextZero3(st, passes, index, j, false));
        }
        const Duration ready = st.gather_end[k % 4];
        if (ready > t) {
          st.gather_wait += ready - t;
          t = ready;
        }
      }
      const Duration began = t;
      if (pass.backward) {
        run(layer.recompute, &st.slowed_recompute);
        run(layer.backward, &st.slowed_compute);
      } else {
        run(layer.forward, &st.slowed_compute);
      }
      const Duration computed = t;
      const Duration comm = pass.backward ? layer.BackwardComm() : layer.ForwardComm();
      if (tp_overlap_) {
        const Duration tp =
            TensorParallelComm(pass.backward ? layer.backward_comm : layer.forward_comm);
        t = std::max(t + (comm - tp), began + tp);
      } else {
        t += comm;
      }
      last_task_end = t;
      if (!pass.backward) continue;
      if (dp[l].zero3) {
        st.last_reduce_start = st.Issue(computed, dp[l].reduce_scatter);
        st.gradient_reduction += dp[l].reduce_scatter;
      } else if (reduce && dp[l].bucket >= 0) {
        const BucketPlan& b = st.buckets[c][static_cast<size_t>(dp[l].bucket)];
        st.last_reduce_start = st.Issue(computed, b.reduce);
        st.gradient_reduction += b.reduce;
        if (b.gather > Duration::Zero()) st.gathers.push_back(b.gather);
      }
    }
    return t - start;
  }

 private:
  // The gather of ZeRO-3 layer pass st.gathers_issued, ready at `ready`.
  void IssueGather(StageStream& st, Duration ready, Duration length) {
    const Duration begin = st.Issue(ready, length);
    st.gather_end[st.gathers_issued % 4] = begin + length;
    ++st.gathers_issued;
  }

  // The gather time of the ZeRO-3 layer pass after the j-th layer pass of
  // passes[index] (`self`: of that layer pass itself), in program order.
  Duration NextZero3(const StageStream& st, const std::vector<PipelinePass>& passes,
                     size_t index, int j, bool self) const {
    for (size_t q = index; q < passes.size(); ++q) {
      const auto c = static_cast<size_t>(passes[q].chunk);
      if (!st.chunk_zero3[c]) continue;
      const std::vector<LayerDp>& dp = st.layers[c];
      const int n = static_cast<int>(dp.size());
      for (int i = q == index ? (self ? j : j + 1) : 0; i < n; ++i) {
        const size_t l = static_cast<size_t>(passes[q].backward ? n - 1 - i : i);
        if (dp[l].zero3) return dp[l].gather;
      }
    }
    return Duration::Zero();
  }

  const StageCostTable* costs_;
  double slowdown_;
  bool tp_overlap_;
  std::vector<StageStream>* stages_;
};

}  // namespace

Result<AnalyticalEstimate> AnalyticalModel::Estimate(const workload::ModelSpec& model,
                                                     const workload::Plan& plan,
                                                     const AnalyticalOptions& options) const {
  ORRERY_RETURN_IF_ERROR(workload::ValidatePlan(plan, model, cluster_));
  return EstimateValidated(model, plan, options);
}

Result<AnalyticalEstimate> AnalyticalModel::Estimate(const workload::ModelSpec& model,
                                                     const workload::Plan& plan,
                                                     const TrainingGraphOptions& graph) const {
  AnalyticalOptions options;
  options.graph = graph;
  return Estimate(model, plan, options);
}

Result<AnalyticalEstimate> AnalyticalModel::EstimateValidated(
    const workload::ModelSpec& model, const workload::Plan& plan,
    const TrainingGraphOptions& graph) const {
  AnalyticalOptions options;
  options.graph = graph;
  return EstimateValidated(model, plan, options);
}

Result<AnalyticalEstimate> AnalyticalModel::EstimateValidated(
    const workload::ModelSpec& model, const workload::Plan& plan,
    const AnalyticalOptions& analytical) const {
  const TrainingGraphOptions& options = analytical.graph;
  const double slowdown = analytical.overlap_slowdown;
  const costmodel::ComputeModel* compute_model = compute(plan.precision);
  if (compute_model == nullptr) {
    return InvalidArgumentError("plan.precision: no compute model for " +
                                std::string(topology::PrecisionName(plan.precision)) +
                                " on this cluster's device");
  }
  if (options.gradient_bytes_per_parameter < 0 || options.optimizer_bytes_per_parameter < 0 ||
      options.bucket_parameters < 0) {
    return InvalidArgumentError("training options: bytes per parameter and bucket size must be "
                                ">= 0");
  }
  if (!(slowdown >= 0.0) || !std::isfinite(slowdown)) {
    return InvalidArgumentError("analytical options: overlap_slowdown must be a finite fraction "
                                ">= 0, got " + std::to_string(slowdown));
  }
  const std::optional<Duration> optimizer_per_parameter =
      options.optimizer_time_per_parameter.has_value() ? options.optimizer_time_per_parameter
                                                       : optimizer_time_per_parameter_;
  if (optimizer_per_parameter.has_value() && *optimizer_per_parameter < Duration()) {
    return InvalidArgumentError("training options: optimizer time per parameter must be >= 0, "
                                "got " + FormatDuration(*optimizer_per_parameter));
  }
  const int p = plan.pp;
  const int m = plan.NumMicroBatches();
  const int vpp = plan.schedule == PipelineSchedule::kInterleaved ? plan.vpp : 1;
  const int devices_per_node = cluster_.PrimaryNodeType().devices_per_node;
  const std::vector<int> bounds = plan.StageBoundaries();
  const auto anchor_of = [&](int s) {
    return std::min(bounds[static_cast<size_t>(s)], plan.num_layers() - 1);
  };

  // Replica 0: the pp group holding rank 0; each stage's lane is the tp
  // group of its first layer holding that stage's rank.
  RankGrid groups(&plan);
  const std::vector<int> pipeline = groups.Holding(0, ParallelDim::kPp, 0);
  ORRERY_CHECK(static_cast<int>(pipeline.size()) == p);
  std::vector<std::vector<int>> lanes(static_cast<size_t>(p));
  for (int s = 0; s < p; ++s) {
    const int first = bounds[static_cast<size_t>(s)];
    const int last = bounds[static_cast<size_t>(s) + 1];
    for (int l = first + 1; l < last; ++l) {
      if (plan.layers[static_cast<size_t>(l)].tp != plan.layers[static_cast<size_t>(first)].tp) {
        return UnimplementedError("plan.layers[" + workload::LayerRangeName(first, last - 1) +
                                  "].tp: tensor parallelism differing within pipeline stage " +
                                  Str(s) + " is not modelled");
      }
    }
    lanes[static_cast<size_t>(s)] =
        groups.Holding(anchor_of(s), ParallelDim::kTp, pipeline[static_cast<size_t>(s)]);
  }

  // Costs, the path collectives timed on the stage's own groups.
  std::vector<int> stage_of_layer(static_cast<size_t>(plan.num_layers()), 0);
  {
    const std::vector<std::pair<int, int>> ranges = ChunkLayerRanges(plan);
    for (size_t k = 0; k < ranges.size(); ++k) {
      for (int l = ranges[k].first; l < ranges[k].first + ranges[k].second; ++l) {
        stage_of_layer[static_cast<size_t>(l)] = static_cast<int>(k) / vpp;
      }
    }
  }
  GroupTimer timer(&collectives_, devices_per_node, analytical.free_communication);
  PlanPathTimer path_timer(std::move(stage_of_layer), pipeline, &groups, &timer);
  ORRERY_ASSIGN_OR_RETURN(StageCostTable costs,
                          BuildStageCosts(model, plan, *compute_model, &path_timer, options.stage));
  ORRERY_CHECK(costs.pp == p && costs.vpp == vpp);

  // Slow devices: stage s's compute at the pace of its slowest rank.
  std::vector<double> stage_factor(static_cast<size_t>(p), 1.0);
  if (!analytical.slow_devices.empty()) {
    const LayerStrategy& first = plan.layers.front();
    const int devices = p * first.tp * first.cp * first.dp;
    std::map<int, double> rank_factor;
    for (const SlowDevice& d : analytical.slow_devices) {
      if (d.rank < 0 || d.rank >= devices) {
        return InvalidArgumentError("slow device \"" + SlowDeviceText(d) + "\": rank " +
                                    Str(d.rank) + " is not one of the plan's " + Str(devices) +
                                    " ranks");
      }
      if (!(d.factor >= 1.0 && d.factor <= kMaxFaultFactor)) {
        return InvalidArgumentError("slow device \"" + SlowDeviceText(d) +
                                    "\": the factor must be in [1, " +
                                    FaultFactorText(kMaxFaultFactor) + "]");
      }
      auto [it, inserted] = rank_factor.emplace(d.rank, d.factor);
      if (!inserted) it->second *= d.factor;
    }
    for (const auto& [rank, factor] : rank_factor) {
      const std::vector<int> pp_group = groups.Holding(anchor_of(0), ParallelDim::kPp, rank);
      for (int s = 0; s < p; ++s) {
        if (pp_group[static_cast<size_t>(s)] != rank) continue;
        double& f = stage_factor[static_cast<size_t>(s)];
        f = std::max(f, factor);
      }
    }
    for (ChunkCost& chunk : costs.chunks) {
      const double f = stage_factor[static_cast<size_t>(chunk.stage)];
      if (f == 1.0) continue;
      for (LayerCost& layer : chunk.layers) {
        layer.forward = layer.forward * f;
        layer.backward = layer.backward * f;
        layer.recompute = layer.recompute * f;
      }
    }
  }

  AnalyticalEstimate estimate;
  estimate.micro_batches = m;
  estimate.p2p_bytes = costs.p2p_bytes;
  PipelineInputs inputs = PipelineInputs::FromCosts(costs, plan.schedule, m);
  if (options.tp_comm_overlap) {
    for (size_t k = 0; k < costs.chunks.size(); ++k) {
      inputs.forward[k] = inputs.backward[k] = Duration::Zero();
      for (const LayerCost& l : costs.chunks[k].layers) {
        inputs.forward[k] += LayerPassLength(l, false, true);
        inputs.backward[k] += LayerPassLength(l, true, true);
      }
    }
  }

  // Pipeline transfers between consecutive virtual stages (stage p − 1 to
  // stage 0 between chunks when interleaved).
  if (!analytical.free_communication) {
    std::map<std::pair<int, int>, Duration> by_pair;
    const auto time = [&](int from, int to) {
      const auto key = std::make_pair(from, to);
      auto it = by_pair.find(key);
      if (it == by_pair.end()) {
        it = by_pair
                 .emplace(key, TransferTime(*topology_, lanes[static_cast<size_t>(from)],
                                            lanes[static_cast<size_t>(to)], costs.p2p_bytes))
                 .first;
      }
      return it->second;
    };
    for (int vs = 0; vs + 1 < p * vpp; ++vs) {
      inputs.activation_transfer.push_back(time(vs % p, (vs + 1) % p));
      inputs.gradient_transfer.push_back(time((vs + 1) % p, vs % p));
    }
    if (p > 1) estimate.p2p_transfer = inputs.activation_transfer.front();
  }

  // Per stage: the data-parallel group, its buckets and ZeRO-3's waits.
  const int parameter_bytes = options.memory.parameter_bytes.value_or(
      plan.precision == topology::Precision::kFp32 || plan.precision == topology::Precision::kTf32
          ? 4
          : 2);
  const Bandwidth optimizer_bandwidth = cluster_.PrimaryNodeType().device.memory_bandwidth *
                                        compute_model->options().bandwidth_efficiency;
  std::vector<std::vector<int>> dp_group(static_cast<size_t>(p));
  std::vector<StageStream> streams(static_cast<size_t>(p));
  const auto zero_of = [&](const LayerCost& l) {
    return plan.layers[static_cast<size_t>(l.plan_layer)].zero_stage;
  };
  for (int s = 0; s < p; ++s) {
    StageStream& stream = streams[static_cast<size_t>(s)];
    const LayerStrategy& st = plan.layers[static_cast<size_t>(anchor_of(s))];
    const int replicas = st.dp * st.cp;
    const std::vector<int>& group = dp_group[static_cast<size_t>(s)] =
        groups.DataParallel(anchor_of(s), pipeline[static_cast<size_t>(s)]);
    const int64_t bucket_parameters =
        options.bucket_parameters > 0 ? options.bucket_parameters
                                      : std::max<int64_t>(40'000'000, int64_t{1'000'000} * replicas);
    stream.buckets.resize(static_cast<size_t>(vpp));
    stream.layers.resize(static_cast<size_t>(vpp));
    stream.chunk_zero3.assign(static_cast<size_t>(vpp), false);
    for (int c = 0; c < vpp; ++c) {
      const ChunkCost& chunk = costs.chunk(s, c);
      const int n = static_cast<int>(chunk.layers.size());
      std::vector<LayerDp>& dp = stream.layers[static_cast<size_t>(c)];
      dp.assign(static_cast<size_t>(n), LayerDp{});
      if (replicas <= 1) continue;
      for (int l = 0; l < n; ++l) {
        const LayerCost& layer = chunk.layers[static_cast<size_t>(l)];
        LayerDp& d = dp[static_cast<size_t>(l)];
        d.zero3 = zero_of(layer) == 3;
        if (!d.zero3) continue;
        stream.chunk_zero3[static_cast<size_t>(c)] = true;
        stream.zero3 = true;
        stream.zero3_passes += 2 * int64_t{m};
        ORRERY_ASSIGN_OR_RETURN(
            d.gather,
            timer.Time(CollectiveOp::kAllGather, Bytes(layer.parameters * parameter_bytes), group));
        ORRERY_ASSIGN_OR_RETURN(
            d.reduce_scatter,
            timer.Time(CollectiveOp::kReduceScatter,
                       Bytes(layer.parameters * options.gradient_bytes_per_parameter), group));
      }
      // Buckets in backward order (sim/training_graph.cc's PlanChunk): a
      // bucket closes once it holds bucket_parameters, at the last layer
      // without ZeRO-3, or before a layer whose ZeRO stage asks for
      // another collective.
      int64_t filled = 0;
      for (int i = n - 1; i >= 0; --i) {
        if (dp[static_cast<size_t>(i)].zero3) continue;
        const LayerCost& layer = chunk.layers[static_cast<size_t>(i)];
        const int zero = zero_of(layer);
        filled += layer.parameters;
        int next = i - 1;
        while (next >= 0 && dp[static_cast<size_t>(next)].zero3) --next;
        const bool close =
            filled >= bucket_parameters || next < 0 ||
            (zero_of(chunk.layers[static_cast<size_t>(next)]) >= 1) != (zero >= 1);
        if (!close) continue;
        BucketPlan bucket;
        bucket.layer = i;
        ORRERY_ASSIGN_OR_RETURN(
            bucket.reduce,
            timer.Time(zero >= 1 ? CollectiveOp::kReduceScatter : CollectiveOp::kAllReduce,
                       Bytes(filled * options.gradient_bytes_per_parameter), group));
        if (zero >= 1) {
          ORRERY_ASSIGN_OR_RETURN(
              bucket.gather,
              timer.Time(CollectiveOp::kAllGather, Bytes(filled * parameter_bytes), group));
        }
        dp[static_cast<size_t>(i)].bucket =
            static_cast<int>(stream.buckets[static_cast<size_t>(c)].size());
        stream.buckets[static_cast<size_t>(c)].push_back(bucket);
        filled = 0;
      }
    }
  }

  DataParallelStreams dp_streams(&costs, slowdown, options.tp_comm_overlap, &streams);
  ORRERY_ASSIGN_OR_RETURN(const PipelineTimes pipe, RunPipeline(inputs, &dp_streams));

  for (int s = 0; s < p; ++s) {
    const StageStream& stream = streams[static_cast<size_t>(s)];
    const PipelineStageTimes& pt = pipe.stages[static_cast<size_t>(s)];
    AnalyticalStage stage;
    stage.stage = s;
    stage.first_rank = pipeline[static_cast<size_t>(s)];
    int64_t held = 0;
    for (int c = 0; c < vpp; ++c) {
      const ChunkCost& chunk = costs.chunk(s, c);
      stage.forward += inputs.forward[static_cast<size_t>(s * vpp + c)];
      stage.backward += inputs.backward[static_cast<size_t>(s * vpp + c)];
      for (const LayerCost& layer : chunk.layers) {
        stage.parameters += layer.parameters;
        const LayerStrategy& st = plan.layers[static_cast<size_t>(layer.plan_layer)];
        held += st.zero_stage >= 1 ? layer.parameters / (st.dp * st.cp) : layer.parameters;
        stage.compute += (layer.forward + layer.backward) * m;
        stage.recompute += layer.recompute * m;
      }
    }
    // The overlap slowdown, as run; the rest of the passes' time is their
    // path collectives (what the compute does not hide of them with
    // tp_comm_overlap) and the waits for ZeRO-3's gathers.
    stage.compute += stream.slowed_compute;
    stage.recompute += stream.slowed_recompute;
    stage.busy = pt.busy;
    stage.comm_in_path = pt.busy - stage.compute - stage.recompute - stream.gather_wait;
    stage.p2p_exposed = pt.p2p_exposed;
    stage.pipeline_end = pt.end;
    stage.exposed_comm = stage.comm_in_path + pt.p2p_exposed + stream.gather_wait;
    stage.bubble = pt.bubble;

    // The optimizer step waits for the last reduction on the dp stream.
    stage.gradient_reduction = stream.gradient_reduction;
    for (const std::vector<BucketPlan>& b : stream.buckets) {
      stage.buckets += static_cast<int>(b.size());
    }
    const Duration reduced = std::max(stream.free, pt.end);
    stage.exposed_dp = reduced - pt.end;
    // sim/replay.h charges the wait to exposed communication from the
    // later of the idle start and the last reduction's start.
    const Duration waited_from = std::min(std::max(stream.last_reduce_start, pt.end), reduced);
    stage.exposed_comm += reduced - waited_from;
    stage.bubble += waited_from - pt.end;

    stage.optimizer =
        optimizer_per_parameter.has_value()
            ? *optimizer_per_parameter * held
            : Bytes(held * options.optimizer_bytes_per_parameter) / optimizer_bandwidth;
    if (stage_factor[static_cast<size_t>(s)] != 1.0) {
      stage.optimizer = stage.optimizer * stage_factor[static_cast<size_t>(s)];
    }
    stage.compute += stage.optimizer;
    for (const Duration g : stream.gathers) stage.param_gather += g;
    // The parameter gathers after the optimizer step count as exposed
    // communication (sim/replay.h).
    stage.exposed_comm += stage.param_gather;
    stage.end = reduced + stage.optimizer + stage.param_gather;
    estimate.stages.push_back(stage);
  }

  for (int s = 0; s < p; ++s) {
    if (estimate.stages[static_cast<size_t>(s)].end > estimate.iteration_time) {
      estimate.iteration_time = estimate.stages[static_cast<size_t>(s)].end;
      estimate.bottleneck_stage = s;
    }
  }
  for (AnalyticalStage& stage : estimate.stages) {
    // The lane idles from its last task to the iteration's end.
    stage.bubble += estimate.iteration_time - stage.end;
  }
  const AnalyticalStage& bottleneck =
      estimate.stages[static_cast<size_t>(estimate.bottleneck_stage)];
  estimate.pipeline = bottleneck.pipeline_end;
  estimate.p2p_exposed = bottleneck.p2p_exposed;
  estimate.bubble = bottleneck.pipeline_end - bottleneck.busy - bottleneck.p2p_exposed;
  estimate.exposed_dp = bottleneck.exposed_dp;
  estimate.optimizer = bottleneck.optimizer;
  estimate.param_gather = bottleneck.param_gather;

  const double seconds = estimate.iteration_time.ToSeconds();
  if (seconds > 0) {
    estimate.samples_per_s = static_cast<double>(plan.global_batch_size) / seconds;
    estimate.tokens_per_s = estimate.samples_per_s * static_cast<double>(plan.sequence_length);
  }

  costmodel::MemoryOptions memory = options.memory;
  memory.flash_attention = options.stage.flash_attention;
  ORRERY_ASSIGN_OR_RETURN(const costmodel::MemoryEstimate estimated,
                          costmodel::EstimateMemory(model, plan, cluster_, memory));
  estimate.peak_memory = estimated.Peak().Total();
  estimate.fits = estimated.Fits();
  return estimate;
}

}  // namespace orrery::sim
