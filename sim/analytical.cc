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
#include "sim/pipeline_schedule.h"

namespace orrery::sim {
namespace {

using costmodel::CollectiveOp;
using workload::LayerStrategy;
using workload::ParallelDim;
using workload::PipelineSchedule;

constexpr int64_t kPicosPerSecond = 1'000'000'000'000;
// "Not known yet" in the recurrence's tables (every real time is >= 0).
constexpr Duration kUnknown = Duration::FromPicos(-1);

std::string Str(int64_t v) { return std::to_string(v); }

// The group of `groups` that holds `rank` (empty when none does).
std::vector<int> GroupHolding(const std::vector<std::vector<int>>& groups, int rank) {
  for (const std::vector<int>& g : groups) {
    if (std::find(g.begin(), g.end(), rank) != g.end()) return g;
  }
  return {};
}

// workload::RankGroups of the layers of one plan, computed once per
// (layer strategy, dimension): the search's plans have few distinct
// strategies, and RankGroups over a thousand ranks costs tens of µs.
class GroupCache {
 public:
  explicit GroupCache(const workload::Plan* plan) : plan_(plan) {}

  const std::vector<std::vector<int>>& Groups(int layer, ParallelDim dim) {
    const LayerStrategy& st = plan_->layers[static_cast<size_t>(layer)];
    const auto key = std::make_tuple(static_cast<int>(dim), st.tp, st.cp, st.dp, st.ep);
    auto it = groups_.find(key);
    if (it == groups_.end()) {
      it = groups_.emplace(key, workload::RankGroups(*plan_, layer, dim)).first;
    }
    return it->second;
  }
  // The group of `dim` for `layer` that holds `rank`.
  std::vector<int> Holding(int layer, ParallelDim dim, int rank) {
    return GroupHolding(Groups(layer, dim), rank);
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
  std::map<std::tuple<int, int, int, int, int>, std::vector<std::vector<int>>> groups_;
};

// Collective times on groups as the simulator's coflows see them, cached
// for one Estimate call.
class GroupTimer {
 public:
  GroupTimer(const costmodel::CollectiveModel* model, int devices_per_node)
      : model_(model), devices_per_node_(devices_per_node) {}

  // The uncontended time of one call of `op` of `size` bytes on `ranks`:
  // zero for one rank or zero bytes (CollectiveFlows::Collective).
  Result<Duration> Time(CollectiveOp op, Bytes size, const std::vector<int>& ranks) {
    if (ranks.size() <= 1 || size <= Bytes::Zero()) return Duration::Zero();
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
  std::map<std::tuple<int, int, int, int, int64_t>, Duration> cache_;
};

// PathCollectiveTimer on the group of `dim` for the layer that holds the
// first rank of the layer's stage in replica 0.
class PlanPathTimer final : public PathCollectiveTimer {
 public:
  PlanPathTimer(std::vector<int> stage_of_layer, std::vector<int> stage_rank, GroupCache* groups,
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
  GroupCache* groups_;
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

// Parameters of a chunk's layers cut, in backward order, into buckets of
// at least `bucket` parameters: the index (into chunk.layers) of the layer
// whose backward completes each bucket, and its parameters.
std::vector<std::pair<int, int64_t>> Buckets(const ChunkCost& chunk, int64_t bucket) {
  std::vector<std::pair<int, int64_t>> out;
  int64_t filled = 0;
  for (int l = static_cast<int>(chunk.layers.size()) - 1; l >= 0; --l) {
    filled += chunk.layers[static_cast<size_t>(l)].parameters;
    if (filled >= bucket || l == 0) {
      if (filled > 0) out.emplace_back(l, filled);
      filled = 0;
    }
  }
  return out;
}

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

Result<PipelineTimes> EstimatePipeline(const PipelineInputs& in) {
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
    size_t next = 0;
    Duration free;       // compute stream
    Duration send_free;  // pipeline-send stream
  };
  std::vector<Lane> lanes(static_cast<size_t>(p));
  PipelineTimes out;
  out.stages.resize(static_cast<size_t>(p));
  for (int s = 0; s < p; ++s) {
    lanes[static_cast<size_t>(s)].passes = StageSchedule(in.schedule, p, s, m, v);
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
        const Duration length = pass.backward ? in.backward[chunk] : in.forward[chunk];
        const Duration end = start + length;
        times.busy += length;
        lane.free = end;
        if (pass.backward && pass.micro_batch == m - 1) {
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
  ORRERY_ASSIGN_OR_RETURN(costmodel::CollectiveModel collectives,
                          costmodel::CollectiveModel::Create(cluster));
  if (cluster.node_types.empty()) return InvalidArgumentError("cluster: no node type");
  const topology::DeviceType& device = cluster.PrimaryNodeType().device;
  std::vector<costmodel::ComputeModel> compute;
  for (const auto& [precision, peak] : device.peak) {
    Result<costmodel::ComputeModel> model = costmodel::ComputeModel::Create(device, precision);
    if (model.ok()) compute.push_back(std::move(model).value());
  }
  if (compute.empty()) {
    return InvalidArgumentError("cluster: no compute model can be built for device '" +
                                device.name + "'");
  }
  return Create(cluster, std::move(compute), std::move(collectives));
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

Result<AnalyticalEstimate> AnalyticalModel::Estimate(const workload::ModelSpec& model,
                                                     const workload::Plan& plan,
                                                     const TrainingGraphOptions& options) const {
  ORRERY_RETURN_IF_ERROR(workload::ValidatePlan(plan, model, cluster_));
  return EstimateValidated(model, plan, options);
}

Result<AnalyticalEstimate> AnalyticalModel::EstimateValidated(
    const workload::ModelSpec& model, const workload::Plan& plan,
    const TrainingGraphOptions& options) const {
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
  GroupCache groups(&plan);
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
    const std::vector<std::pair<int, int>> ranges = ChunkLayers(plan);
    for (size_t k = 0; k < ranges.size(); ++k) {
      for (int l = ranges[k].first; l < ranges[k].first + ranges[k].second; ++l) {
        stage_of_layer[static_cast<size_t>(l)] = static_cast<int>(k) / vpp;
      }
    }
  }
  GroupTimer timer(&collectives_, devices_per_node);
  PlanPathTimer path_timer(std::move(stage_of_layer), pipeline, &groups, &timer);
  ORRERY_ASSIGN_OR_RETURN(StageCostTable costs,
                          BuildStageCosts(model, plan, *compute_model, &path_timer, options.stage));
  ORRERY_CHECK(costs.pp == p && costs.vpp == vpp);

  AnalyticalEstimate estimate;
  estimate.micro_batches = m;
  estimate.p2p_bytes = costs.p2p_bytes;
  PipelineInputs inputs = PipelineInputs::FromCosts(costs, plan.schedule, m);

  // Pipeline transfers between consecutive virtual stages (stage p − 1 to
  // stage 0 between chunks when interleaved).
  {
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

  // Per stage: the data-parallel group, ZeRO and its costs.
  const int parameter_bytes = options.memory.parameter_bytes.value_or(
      plan.precision == topology::Precision::kFp32 || plan.precision == topology::Precision::kTf32
          ? 4
          : 2);
  const Bandwidth optimizer_bandwidth = cluster_.PrimaryNodeType().device.memory_bandwidth *
                                        compute_model->options().bandwidth_efficiency;
  struct StageDp {
    std::vector<int> group;
    int replicas = 1;
    int zero = 0;
    int64_t bucket = 0;
    Duration zero3_exposed;  // per micro-batch, ZeRO-3's gather waits
    Duration zero3_last_reduce;
    Duration zero3_reduce;  // per micro-batch, Σ reduce-scatters
  };
  std::vector<StageDp> dp(static_cast<size_t>(p));
  for (int s = 0; s < p; ++s) {
    StageDp& d = dp[static_cast<size_t>(s)];
    const LayerStrategy& st = plan.layers[static_cast<size_t>(anchor_of(s))];
    d.replicas = st.dp * st.cp;
    d.zero = st.zero_stage;
    d.group = groups.DataParallel(anchor_of(s), pipeline[static_cast<size_t>(s)]);
    d.bucket = options.bucket_parameters > 0
                   ? options.bucket_parameters
                   : std::max<int64_t>(40'000'000, int64_t{1'000'000} * d.replicas);
    if (d.zero < 3) continue;
    // ZeRO-3: each pass's layers wait for their gathers (see the header).
    for (int c = 0; c < vpp; ++c) {
      const ChunkCost& chunk = costs.chunk(s, c);
      const int n = static_cast<int>(chunk.layers.size());
      std::vector<Duration> gather(static_cast<size_t>(n)), reduce(static_cast<size_t>(n));
      for (int l = 0; l < n; ++l) {
        const LayerCost& layer = chunk.layers[static_cast<size_t>(l)];
        ORRERY_ASSIGN_OR_RETURN(gather[static_cast<size_t>(l)],
                                timer.Time(CollectiveOp::kAllGather,
                                           Bytes(layer.parameters * parameter_bytes), d.group));
        ORRERY_ASSIGN_OR_RETURN(
            reduce[static_cast<size_t>(l)],
            timer.Time(CollectiveOp::kReduceScatter,
                       Bytes(layer.parameters * options.gradient_bytes_per_parameter), d.group));
        d.zero3_reduce += reduce[static_cast<size_t>(l)];
      }
      Duration forward_extra, backward_extra;
      for (int l = 0; l < n; ++l) {
        const LayerCost& layer = chunk.layers[static_cast<size_t>(l)];
        const Duration f = layer.forward + layer.ForwardComm();
        const Duration next_f = gather[static_cast<size_t>(l + 1 < n ? l + 1 : 0)];
        forward_extra += std::max(f, next_f) - f;
        const Duration b = layer.recompute + layer.backward + layer.BackwardComm();
        Duration dp_work = gather[static_cast<size_t>(l > 0 ? l - 1 : n - 1)];
        if (l + 1 < n) dp_work += reduce[static_cast<size_t>(l + 1)];
        backward_extra += std::max(b, dp_work) - b;
      }
      inputs.forward[static_cast<size_t>(s * vpp + c)] += forward_extra;
      inputs.backward[static_cast<size_t>(s * vpp + c)] += backward_extra;
      d.zero3_exposed += forward_extra + backward_extra;
      if (c == 0 && n > 0) d.zero3_last_reduce = reduce[0];
    }
  }

  ORRERY_ASSIGN_OR_RETURN(const PipelineTimes pipe, EstimatePipeline(inputs));

  for (int s = 0; s < p; ++s) {
    const StageDp& d = dp[static_cast<size_t>(s)];
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
        stage.comm_in_path += (layer.ForwardComm() + layer.BackwardComm()) * m;
      }
    }
    stage.busy = pt.busy;
    stage.p2p_exposed = pt.p2p_exposed;
    stage.pipeline_end = pt.end;
    stage.exposed_comm = stage.comm_in_path + pt.p2p_exposed + d.zero3_exposed * m;
    stage.bubble = pt.bubble;

    // Gradient reduction: ZeRO-3's last reduce-scatter, or the buckets.
    Duration reduced = pt.end;  // when the last reduction ends
    Duration last_start = pt.end;
    std::vector<Bytes> bucket_params;
    if (d.zero == 3) {
      stage.gradient_reduction = d.zero3_reduce * m;
      stage.buckets = 0;
      last_start = pt.end;
      reduced = pt.end + d.zero3_last_reduce;
    } else if (d.replicas > 1) {
      struct Ready {
        Duration at;
        int64_t parameters;
      };
      std::vector<Ready> ready;
      for (int c = 0; c < vpp; ++c) {
        const ChunkCost& chunk = costs.chunk(s, c);
        const std::vector<std::pair<int, int64_t>> buckets = Buckets(chunk, d.bucket);
        // Backward compute ends of the chunk's layers in its last pass.
        std::vector<Duration> end_of(chunk.layers.size());
        Duration t = pt.last_backward_start[static_cast<size_t>(c)];
        for (int l = static_cast<int>(chunk.layers.size()) - 1; l >= 0; --l) {
          const LayerCost& layer = chunk.layers[static_cast<size_t>(l)];
          t += layer.recompute + layer.backward;
          end_of[static_cast<size_t>(l)] = t;
          t += layer.BackwardComm();
        }
        for (const auto& [layer, params] : buckets) {
          ready.push_back({end_of[static_cast<size_t>(layer)], params});
        }
      }
      std::stable_sort(ready.begin(), ready.end(),
                       [](const Ready& a, const Ready& b) { return a.at < b.at; });
      const CollectiveOp op = d.zero >= 1 ? CollectiveOp::kReduceScatter : CollectiveOp::kAllReduce;
      Duration free = Duration::Zero();
      for (const Ready& r : ready) {
        ORRERY_ASSIGN_OR_RETURN(
            const Duration time,
            timer.Time(op, Bytes(r.parameters * options.gradient_bytes_per_parameter), d.group));
        const Duration start = std::max(r.at, free);
        free = start + time;
        last_start = start;
        stage.gradient_reduction += time;
        bucket_params.push_back(Bytes(r.parameters * parameter_bytes));
      }
      stage.buckets = static_cast<int>(ready.size());
      reduced = std::max(free, pt.end);
      if (ready.empty()) last_start = pt.end;
    }
    stage.exposed_dp = reduced - pt.end;
    // sim/replay.h charges the wait to exposed communication from the
    // later of the idle start and the last reduction's start.
    const Duration waited_from = std::min(std::max(last_start, pt.end), reduced);
    stage.exposed_comm += reduced - waited_from;
    stage.bubble += waited_from - pt.end;

    stage.optimizer = Bytes(held * options.optimizer_bytes_per_parameter) / optimizer_bandwidth;
    stage.compute += stage.optimizer;
    if (d.zero >= 1 && d.zero <= 2) {
      for (const Bytes size : bucket_params) {
        ORRERY_ASSIGN_OR_RETURN(const Duration time,
                                timer.Time(CollectiveOp::kAllGather, size, d.group));
        stage.param_gather += time;
      }
    }
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
    // The compute stream idles from its optimizer step to the iteration's end.
    stage.bubble += estimate.iteration_time - (stage.end - stage.param_gather);
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

  ORRERY_ASSIGN_OR_RETURN(const costmodel::MemoryEstimate memory,
                          costmodel::EstimateMemory(model, plan, cluster_, options.memory));
  estimate.peak_memory = memory.Peak().Total();
  estimate.fits = memory.Fits();
  return estimate;
}

}  // namespace orrery::sim
