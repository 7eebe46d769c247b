#include "search/space.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/status.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::search {
namespace {

using workload::LayerStrategy;
using workload::ParallelDim;
using workload::PipelineSchedule;
using workload::Recompute;
using workload::RankOrder;

std::string Str(int v) { return std::to_string(v); }

std::vector<int> Divisors(int n) {
  std::vector<int> d;
  for (int k = 1; k <= n; ++k) {
    if (n % k == 0) d.push_back(k);
  }
  return d;
}

// `layers` spread over `parts` stages, the first ones one more.
std::vector<int> EvenSplit(int layers, int parts) {
  std::vector<int> counts(static_cast<size_t>(parts), layers / parts);
  for (int s = 0; s < layers % parts; ++s) ++counts[static_cast<size_t>(s)];
  return counts;
}

RankOrder TpOuterOrder() {
  return {ParallelDim::kCp, ParallelDim::kDp, ParallelDim::kTp, ParallelDim::kEp,
          ParallelDim::kPp};
}

std::string RecomputeShort(Recompute r) {
  switch (r) {
    case Recompute::kNone:
      return "";
    case Recompute::kSelective:
      return "sel";
    case Recompute::kFull:
      return "full";
  }
  return "";
}

}  // namespace

PipelineShape ShapeOfPlan(const workload::Plan& plan) {
  PipelineShape shape;
  shape.pp = plan.pp;
  shape.stage_layers = plan.stage_layers;
  shape.schedule = plan.schedule;
  shape.vpp = plan.vpp;
  shape.micro_batches = plan.NumMicroBatches();
  shape.rank_order = plan.rank_order;
  return shape;
}

std::string ShapeName(const PipelineShape& shape) {
  std::string out = "pp" + Str(shape.pp);
  if (shape.schedule == PipelineSchedule::kInterleaved) out += "(v" + Str(shape.vpp) + ")";
  if (!shape.stage_layers.empty()) {
    out += "[";
    for (size_t s = 0; s < shape.stage_layers.size(); ++s) {
      if (s > 0) out += ",";
      out += Str(shape.stage_layers[s]);
    }
    out += "]";
  }
  out += " " + std::string(workload::PipelineScheduleName(shape.schedule));
  out += " m" + Str(shape.micro_batches);
  if (shape.rank_order != workload::DefaultRankOrder()) {
    out += " order=" + workload::RankOrderName(shape.rank_order);
  }
  return out;
}

std::string StrategyName(const LayerStrategy& s) {
  std::string out = "tp" + Str(s.tp);
  if (s.cp > 1) out += " cp" + Str(s.cp);
  out += " dp" + Str(s.dp);
  if (s.ep > 1) out += " ep" + Str(s.ep);
  if (s.zero_stage > 0) out += " z" + Str(s.zero_stage);
  if (s.sequence_parallel) out += " sp";
  const std::string rc = RecomputeShort(s.recompute);
  if (!rc.empty()) out += " " + rc;
  return out;
}

Result<Space> Space::Create(const SearchRequest& request) {
  Space space;
  space.model_ = request.model;
  space.precision_ = request.precision;
  if (request.cluster.node_types.empty()) {
    return InvalidArgumentError("search: the cluster has no nodes");
  }
  space.devices_ = request.cluster.TotalDevices();
  space.devices_per_node_ = request.cluster.PrimaryNodeType().devices_per_node;
  space.num_layers_ = request.model.total_layers();
  space.global_batch_size_ = request.global_batch_size;
  space.sequence_length_ = request.sequence_length > 0 ? request.sequence_length
                                                       : request.model.default_sequence_length;
  space.allow_interleaved_ = request.allow_interleaved;
  space.allow_uneven_stages_ = request.allow_uneven_stages;
  space.allow_zero_ = request.allow_zero;
  space.allow_context_parallel_ = request.allow_context_parallel;
  if (space.devices_ < 1) return InvalidArgumentError("search: the cluster has no devices");
  if (space.num_layers_ < 1) {
    return InvalidArgumentError("search: model " + request.model.name + " has no layers");
  }
  if (space.global_batch_size_ < 1) {
    return InvalidArgumentError("search: global_batch_size: expected a positive integer, got " +
                                Str(space.global_batch_size_));
  }
  if (space.sequence_length_ < 1) {
    return InvalidArgumentError("search: sequence_length: expected a positive integer, got " +
                                Str(space.sequence_length_));
  }
  if (!request.micro_batch_sizes.empty()) {
    std::set<int> sizes;
    for (int m : request.micro_batch_sizes) {
      if (m < 1) {
        return InvalidArgumentError("search: micro_batch_sizes: expected positive integers, got " +
                                    Str(m));
      }
      if (space.global_batch_size_ % m == 0) sizes.insert(m);
    }
    space.micro_batch_sizes_.assign(sizes.begin(), sizes.end());
  } else {
    for (int m = 1; m <= space.global_batch_size_; m *= 2) {
      if (space.global_batch_size_ % m == 0) space.micro_batch_sizes_.push_back(m);
    }
  }
  return space;
}

std::vector<int> Space::PipelineDegrees() const {
  std::vector<int> out;
  for (int p : Divisors(devices_)) {
    if (p <= num_layers_) out.push_back(p);
  }
  return out;
}

std::vector<std::vector<int>> Space::StagePartitions(int pp) const {
  ORRERY_CHECK(pp >= 1 && pp <= num_layers_) << "pp = " << pp;
  std::vector<std::vector<int>> out = {{}};
  if (!allow_uneven_stages_ || pp < 2) return out;
  std::set<std::vector<int>> seen = {EvenSplit(num_layers_, pp)};
  for (int k = 1; k <= 2; ++k) {
    // fewer on the first, on the last, on both
    for (int variant = 0; variant < 3; ++variant) {
      const int first_fewer = variant == 1 ? 0 : k;
      const int last_fewer = variant == 0 ? 0 : k;
      // The ends take base − k where base is the even share of all layers.
      const int base = num_layers_ / pp;
      const int first = variant == 1 ? -1 : base - first_fewer;
      const int last = variant == 0 ? -1 : base - last_fewer;
      if ((first != -1 && first < 1) || (last != -1 && last < 1)) continue;
      int rest = num_layers_;
      int inner = pp;
      if (first != -1) {
        rest -= first;
        --inner;
      }
      if (last != -1) {
        rest -= last;
        --inner;
      }
      if (inner < 1 || rest < inner) continue;
      std::vector<int> counts;
      if (first != -1) counts.push_back(first);
      for (int c : EvenSplit(rest, inner)) counts.push_back(c);
      if (last != -1) counts.push_back(last);
      if (seen.insert(counts).second) out.push_back(std::move(counts));
    }
  }
  return out;
}

std::vector<int> Space::MicroBatchCounts(int pp) const {
  ORRERY_CHECK(pp >= 1 && devices_ % pp == 0) << "pp = " << pp;
  std::set<int> counts;
  for (int mbs : micro_batch_sizes_) {
    for (int dp : Divisors(devices_ / pp)) {
      const int64_t samples = static_cast<int64_t>(mbs) * dp;
      if (global_batch_size_ % samples == 0) {
        counts.insert(static_cast<int>(global_batch_size_ / samples));
      }
    }
  }
  return {counts.begin(), counts.end()};
}

std::vector<std::pair<PipelineSchedule, int>> Space::Schedules(
    int pp, const std::vector<int>& stage_layers) const {
  std::vector<std::pair<PipelineSchedule, int>> out = {{PipelineSchedule::kOneFOneB, 1}};
  // One stage runs GPipe and 1F1B alike.
  if (pp >= 2) out.emplace_back(PipelineSchedule::kGpipe, 1);
  if (!allow_interleaved_ || pp < 2 ||
      model_.architecture == workload::Architecture::kEncoderDecoder) {
    return out;
  }
  const std::vector<int> counts =
      stage_layers.empty() ? EvenSplit(num_layers_, pp) : stage_layers;
  for (int v = 2; v <= 8; ++v) {
    const bool divides =
        std::all_of(counts.begin(), counts.end(), [&](int c) { return c % v == 0; });
    if (divides) out.emplace_back(PipelineSchedule::kInterleaved, v);
  }
  return out;
}

std::vector<RankOrder> Space::RankOrders() const {
  return {workload::DefaultRankOrder(), TpOuterOrder()};
}

std::vector<PipelineShape> Space::Shapes(int pp) const {
  std::vector<PipelineShape> out;
  const std::vector<int> counts = MicroBatchCounts(pp);
  for (const std::vector<int>& partition : StagePartitions(pp)) {
    for (const auto& [schedule, vpp] : Schedules(pp, partition)) {
      for (int m : counts) {
        if (schedule == PipelineSchedule::kInterleaved && m % pp != 0) continue;
        for (const RankOrder& order : RankOrders()) {
          PipelineShape shape;
          shape.pp = pp;
          shape.stage_layers = partition;
          shape.schedule = schedule;
          shape.vpp = vpp;
          shape.micro_batches = m;
          shape.rank_order = order;
          out.push_back(std::move(shape));
        }
      }
    }
  }
  return out;
}

std::vector<PipelineShape> Space::AllShapes() const {
  std::vector<PipelineShape> out;
  for (int pp : PipelineDegrees()) {
    std::vector<PipelineShape> shapes = Shapes(pp);
    out.insert(out.end(), std::make_move_iterator(shapes.begin()),
               std::make_move_iterator(shapes.end()));
  }
  return out;
}

std::vector<LayerStrategy> Space::LayerCandidates(int pp) const {
  ORRERY_CHECK(pp >= 1 && devices_ % pp == 0) << "pp = " << pp;
  const int per_stage = devices_ / pp;
  const bool causal = model_.architecture != workload::Architecture::kEncoderOnly;
  const int heads = model_.num_attention_heads;
  const int kv = model_.num_kv_heads;
  std::vector<LayerStrategy> out;
  for (int tp : Divisors(per_stage)) {
    if (heads <= 0 || heads % tp != 0) continue;
    if (kv > 0 && kv != heads && kv % tp != 0 && tp % kv != 0) continue;
    for (int cp : Divisors(per_stage / tp)) {
      if (cp > 1) {
        if (!allow_context_parallel_) continue;
        if (sequence_length_ % ((causal ? 2 : 1) * cp) != 0) continue;
      }
      const int dp = per_stage / tp / cp;
      std::vector<int> eps = {1};
      if (model_.is_moe()) {
        for (int ep : Divisors(dp * cp)) {
          if (ep > 1 && model_.num_experts % ep == 0) eps.push_back(ep);
        }
      }
      for (int ep : eps) {
        const int max_zero = allow_zero_ && dp * cp > 1 ? 3 : 0;
        for (int zero = 0; zero <= max_zero; ++zero) {
          for (int sp = 0; sp <= (tp > 1 ? 1 : 0); ++sp) {
            for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
              LayerStrategy s;
              s.tp = tp;
              s.cp = cp;
              s.dp = dp;
              s.ep = ep;
              s.zero_stage = zero;
              s.sequence_parallel = sp == 1;
              s.recompute = rc;
              out.push_back(s);
            }
          }
        }
      }
    }
  }
  return out;
}

std::vector<LayerStrategy> Space::LayerCandidates(const PipelineShape& shape) const {
  std::vector<LayerStrategy> out;
  for (const LayerStrategy& s : LayerCandidates(shape.pp)) {
    if (Compatible(shape, s)) out.push_back(s);
  }
  return out;
}

bool Space::Compatible(const PipelineShape& shape, const LayerStrategy& s) const {
  if (shape.pp < 1 || shape.micro_batches < 1) return false;
  if (s.tp * s.cp * s.dp * shape.pp != devices_) return false;
  if (global_batch_size_ % shape.micro_batches != 0) return false;
  const int samples = global_batch_size_ / shape.micro_batches;
  return samples % s.dp == 0;
}

bool Space::SameStageCompatible(const RankOrder& order, const LayerStrategy& a,
                                const LayerStrategy& b) {
  if (a.tp != b.tp) return false;
  const bool tp_first = !order.empty() && order.front() == ParallelDim::kTp;
  if (tp_first || a.tp == 1) return true;
  return a.cp == b.cp && a.dp == b.dp;
}

std::vector<LayerStrategy> Space::RandomLayers(const PipelineShape& shape,
                                               const std::vector<LayerStrategy>& candidates,
                                               std::mt19937_64* rng) const {
  if (candidates.empty()) return {};
  auto pick = [&](size_t n) {
    // Modulo, not uniform_int_distribution, whose algorithm differs between
    // standard libraries: the same seed gives the same plans everywhere.
    return static_cast<size_t>((*rng)() % n);
  };
  std::vector<LayerStrategy> layers;
  layers.reserve(static_cast<size_t>(num_layers_));
  for (int count : StageLayerCounts(shape)) {
    const LayerStrategy first = candidates[pick(candidates.size())];
    std::vector<LayerStrategy> same;
    for (const LayerStrategy& c : candidates) {
      if (SameStageCompatible(shape.rank_order, first, c)) same.push_back(c);
    }
    layers.push_back(first);
    for (int l = 1; l < count; ++l) layers.push_back(same[pick(same.size())]);
  }
  return layers;
}

std::vector<int> Space::StageLayerCounts(const PipelineShape& shape) const {
  if (!shape.stage_layers.empty()) return shape.stage_layers;
  return EvenSplit(num_layers_, shape.pp);
}

Result<workload::Plan> Space::BuildPlan(const PipelineShape& shape,
                                        std::vector<LayerStrategy> layers) const {
  if (static_cast<int>(layers.size()) != num_layers_) {
    return InvalidArgumentError("search: " + Str(static_cast<int>(layers.size())) +
                                " layer strategies for " + Str(num_layers_) + " layers");
  }
  if (shape.micro_batches < 1 || global_batch_size_ % shape.micro_batches != 0) {
    return InvalidArgumentError("search: " + Str(shape.micro_batches) +
                                " micro-batches do not divide the global batch " +
                                Str(global_batch_size_));
  }
  int max_dp = 1;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!Compatible(shape, layers[i])) {
      return InvalidArgumentError("search: layer " + Str(static_cast<int>(i)) + " strategy " +
                                  StrategyName(layers[i]) + " does not fit shape " +
                                  ShapeName(shape));
    }
    max_dp = std::max(max_dp, layers[i].dp);
  }
  const std::vector<int> counts = StageLayerCounts(shape);
  int first = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    for (int l = first + 1; l < first + counts[s] && l < num_layers_; ++l) {
      if (!SameStageCompatible(shape.rank_order, layers[static_cast<size_t>(first)],
                               layers[static_cast<size_t>(l)])) {
        return InvalidArgumentError("search: layers " + Str(first) + " and " + Str(l) +
                                    " of stage " + Str(static_cast<int>(s)) +
                                    " have layouts the simulator cannot run in one stage");
      }
    }
    first += counts[s];
  }
  const int samples = global_batch_size_ / shape.micro_batches;
  workload::Plan plan;
  plan.global_batch_size = global_batch_size_;
  plan.micro_batch_size = samples / max_dp;
  plan.sequence_length = sequence_length_;
  plan.precision = precision_;
  plan.pp = shape.pp;
  plan.stage_layers = shape.stage_layers;
  plan.schedule = shape.schedule;
  plan.vpp = shape.vpp;
  plan.rank_order = shape.rank_order;
  plan.layers = std::move(layers);
  return plan;
}

Result<workload::Plan> Space::UniformPlan(const PipelineShape& shape,
                                          const LayerStrategy& layer) const {
  return BuildPlan(shape, std::vector<LayerStrategy>(static_cast<size_t>(num_layers_), layer));
}

std::string PlanSummary(const workload::Plan& plan) {
  if (plan.layers.empty()) return "(no layers)";
  std::string pipe = "pp" + Str(plan.pp);
  if (plan.schedule == PipelineSchedule::kInterleaved) pipe += "(v" + Str(plan.vpp) + ")";
  if (plan.schedule == PipelineSchedule::kGpipe) pipe += " gpipe";
  if (!plan.stage_layers.empty()) {
    pipe += "[";
    for (size_t s = 0; s < plan.stage_layers.size(); ++s) {
      if (s > 0) pipe += ",";
      pipe += Str(plan.stage_layers[s]);
    }
    pipe += "]";
  }
  const std::string mb = "mb" + Str(plan.micro_batch_size);
  std::string order;
  if (plan.rank_order == TpOuterOrder()) {
    order = " tp-outer";
  } else if (plan.rank_order != workload::DefaultRankOrder()) {
    order = " order=" + workload::RankOrderName(plan.rank_order);
  }
  auto extras = [](const LayerStrategy& s) {
    std::string out;
    if (s.cp > 1) out += " cp" + Str(s.cp);
    if (s.ep > 1) out += " ep" + Str(s.ep);
    if (s.zero_stage > 0) out += " z" + Str(s.zero_stage);
    if (s.sequence_parallel) out += " sp";
    const std::string rc = RecomputeShort(s.recompute);
    if (!rc.empty()) out += " " + rc;
    return out;
  };
  if (plan.is_uniform()) {
    const LayerStrategy& s = plan.layers.front();
    return "tp" + Str(s.tp) + " " + pipe + " dp" + Str(s.dp) + " " + mb + extras(s) + order;
  }
  // Runs of consecutive equal strategies; more than four runs are listed
  // as the distinct strategies with their layer counts.
  std::vector<std::pair<int, int>> runs;  // [first, last]
  for (int i = 0; i < plan.num_layers(); ++i) {
    if (runs.empty() || !(plan.layers[static_cast<size_t>(i)] ==
                          plan.layers[static_cast<size_t>(runs.back().first)])) {
      runs.emplace_back(i, i);
    } else {
      runs.back().second = i;
    }
  }
  auto name = [&](const LayerStrategy& s) {
    return "tp" + Str(s.tp) + " dp" + Str(s.dp) + extras(s);
  };
  std::string out = pipe + " " + mb + order + " {";
  if (runs.size() <= 4) {
    for (size_t k = 0; k < runs.size(); ++k) {
      if (k > 0) out += ", ";
      out += workload::LayerRangeName(runs[k].first, runs[k].second) + ": " +
             name(plan.layers[static_cast<size_t>(runs[k].first)]);
    }
    return out + "}";
  }
  std::vector<std::pair<LayerStrategy, int>> distinct;
  for (const LayerStrategy& s : plan.layers) {
    auto it = std::find_if(distinct.begin(), distinct.end(),
                           [&](const auto& e) { return e.first == s; });
    if (it == distinct.end()) {
      distinct.emplace_back(s, 1);
    } else {
      ++it->second;
    }
  }
  // The three most common (stable: first appearance breaks ties).
  std::stable_sort(distinct.begin(), distinct.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  const size_t shown = std::min<size_t>(3, distinct.size());
  for (size_t k = 0; k < shown; ++k) {
    if (k > 0) out += ", ";
    out += name(distinct[k].first) + " ×" + Str(distinct[k].second);
  }
  if (distinct.size() > shown) out += ", +" + Str(static_cast<int>(distinct.size() - shown)) +
                                      " more";
  return out + "}";
}

}  // namespace orrery::search
