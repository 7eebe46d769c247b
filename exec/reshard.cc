#include "exec/reshard.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "exec/backend.h"
#include "exec/gpt_model.h"
#include "exec/mpi_world.h"
#include "workload/reshard_senders.h"

namespace orrery::exec {

namespace {

constexpr int64_t kFloatBytes = int64_t{sizeof(float)};

// A contiguous piece of a local tensor and the full tensor's elements it
// holds: local [local, local + length) ↔ full [full, full + length).
struct Piece {
  int64_t local = 0;
  int64_t full = 0;
  int64_t length = 0;
};

// The local tensor of `shard` as contiguous pieces of the full tensor, in
// local order — gpt_model.h's mapping: the local tensor concatenates, along
// split_dim, the ranges `pieces` of the full tensor.
std::vector<Piece> FullPieces(const ParameterShard& shard) {
  std::vector<Piece> out;
  const std::vector<int64_t>& full = shard.full_shape;
  if (shard.split_dim < 0) {
    out.push_back({0, 0, shard.size});
  } else if (full.size() == 1 || shard.split_dim == 0) {
    const int64_t row = full.size() == 1 ? 1 : full[1];
    int64_t at = 0;
    for (const auto& [begin, end] : shard.pieces) {
      out.push_back({at, begin * row, (end - begin) * row});
      at += (end - begin) * row;
    }
  } else {
    int64_t at = 0;
    for (int64_t r = 0; r < full[0]; ++r) {
      for (const auto& [begin, end] : shard.pieces) {
        out.push_back({at, r * full[1] + begin, end - begin});
        at += end - begin;
      }
    }
  }
  int64_t total = 0;
  for (const Piece& p : out) total += p.length;
  ORRERY_CHECK_EQ(total, shard.size) << shard.name;
  return out;
}

using Key = std::pair<StateKind, std::string>;

Key KeyOf(const StateRun& r) { return {r.kind, r.tensor}; }

int64_t End(const StateRun& r) { return r.begin + r.length; }

// The runs of `map` for `key`: a [first, last) range of map.runs.
std::pair<size_t, size_t> RunsOf(const StateMap& map, StateKind kind, const std::string& tensor) {
  auto less = [](const StateRun& r, const Key& k) { return KeyOf(r) < k; };
  auto greater = [](const Key& k, const StateRun& r) { return k < KeyOf(r); };
  const Key key{kind, tensor};
  const auto first = std::lower_bound(map.runs.begin(), map.runs.end(), key, less);
  const auto last = std::upper_bound(first, map.runs.end(), key, greater);
  return {static_cast<size_t>(first - map.runs.begin()),
          static_cast<size_t>(last - map.runs.begin())};
}

std::vector<float>& Buffer(TrainerState& state, StateKind kind, int space) {
  SpaceState& s = state.spaces[static_cast<size_t>(space)];
  switch (kind) {
    case StateKind::kParameter: return s.params;
    case StateKind::kAdamM: return s.adam_m;
    case StateKind::kAdamV: return s.adam_v;
  }
  return s.params;
}

const std::vector<float>& Buffer(const TrainerState& state, StateKind kind, int space) {
  return Buffer(const_cast<TrainerState&>(state), kind, space);
}

// out[0 .. end − begin) = elements [begin, end) of (kind, tensor) from
// `state`, which `map` describes. REQUIRES: the map holds all of them.
void Gather(const StateMap& map, const TrainerState& state, StateKind kind,
            const std::string& tensor, int64_t begin, int64_t end, float* out) {
  const auto [first, last] = RunsOf(map, kind, tensor);
  int64_t next = begin;
  for (size_t i = first; i < last && next < end; ++i) {
    const StateRun& r = map.runs[i];
    if (End(r) <= next) continue;
    ORRERY_CHECK_LE(r.begin, next) << "rank " << map.rank << " lacks element " << next << " of "
                                   << StateKindName(kind) << " " << tensor;
    const int64_t stop = std::min(End(r), end);
    const std::vector<float>& buffer = Buffer(state, kind, r.space);
    std::memcpy(out + (next - begin), buffer.data() + r.offset + (next - r.begin),
                static_cast<size_t>(stop - next) * sizeof(float));
    next = stop;
  }
  ORRERY_CHECK_EQ(next, end) << "rank " << map.rank << " lacks element " << next << " of "
                             << StateKindName(kind) << " " << tensor;
}

// Writes elements [begin, end) of (kind, tensor), in[0 .. end − begin), to
// every place `map` holds any of them in `state`.
void Scatter(const StateMap& map, TrainerState& state, StateKind kind, const std::string& tensor,
             int64_t begin, int64_t end, const float* in) {
  const auto [first, last] = RunsOf(map, kind, tensor);
  for (size_t i = first; i < last; ++i) {
    const StateRun& r = map.runs[i];
    if (r.begin >= end) break;
    const int64_t lo = std::max(r.begin, begin);
    const int64_t hi = std::min(End(r), end);
    if (lo >= hi) continue;
    std::vector<float>& buffer = Buffer(state, kind, r.space);
    std::memcpy(buffer.data() + r.offset + (lo - r.begin), in + (lo - begin),
                static_cast<size_t>(hi - lo) * sizeof(float));
  }
}

// Copies into `to_state` every element `to` needs that `from` held (the
// elements a rank keeps).
void CopyKept(const StateMap& from, const TrainerState& from_state, const StateMap& to,
              TrainerState& to_state) {
  for (const StateRun& n : to.runs) {
    const auto [first, last] = RunsOf(from, n.kind, n.tensor);
    for (size_t i = first; i < last; ++i) {
      const StateRun& o = from.runs[i];
      if (o.begin >= End(n)) break;
      const int64_t lo = std::max(o.begin, n.begin);
      const int64_t hi = std::min(End(o), End(n));
      if (lo >= hi) continue;
      const std::vector<float>& src = Buffer(from_state, o.kind, o.space);
      std::vector<float>& dst = Buffer(to_state, n.kind, n.space);
      std::memcpy(dst.data() + n.offset + (lo - n.begin), src.data() + o.offset + (lo - o.begin),
                  static_cast<size_t>(hi - lo) * sizeof(float));
    }
  }
}

// The transfers [first, last) of a plan, packed back to back.
std::vector<float> Pack(const ReshardPlan& plan, size_t first, size_t last, const StateMap& from,
                        const TrainerState& state) {
  int64_t count = 0;
  for (size_t i = first; i < last; ++i) count += plan.transfers[i].length;
  std::vector<float> out(static_cast<size_t>(count));
  int64_t at = 0;
  for (size_t i = first; i < last; ++i) {
    const StateTransfer& t = plan.transfers[i];
    Gather(from, state, t.kind, t.tensor, t.begin, t.begin + t.length, out.data() + at);
    at += t.length;
  }
  return out;
}

void Unpack(const ReshardPlan& plan, size_t first, size_t last, const StateMap& to,
            TrainerState& state, const float* data) {
  int64_t at = 0;
  for (size_t i = first; i < last; ++i) {
    const StateTransfer& t = plan.transfers[i];
    Scatter(to, state, t.kind, t.tensor, t.begin, t.begin + t.length, data + at);
    at += t.length;
  }
}

// The (src, dst) messages of a plan: [first, last) ranges of its transfers.
struct Message {
  int src = 0;
  int dst = 0;
  size_t first = 0;
  size_t last = 0;
  int64_t count = 0;  // elements
};

std::vector<Message> MessagesOf(const ReshardPlan& plan) {
  std::vector<Message> out;
  for (size_t i = 0; i < plan.transfers.size(); ++i) {
    const StateTransfer& t = plan.transfers[i];
    if (out.empty() || out.back().src != t.src || out.back().dst != t.dst) {
      out.push_back({t.src, t.dst, i, i, 0});
    }
    out.back().last = i + 1;
    out.back().count += t.length;
  }
  return out;
}

Status CheckStateMatches(const StateMap& map, const TrainerState& state) {
  const std::string who = "trainer state of rank " + std::to_string(map.rank);
  if (state.spaces.size() != map.parameter_elements.size()) {
    return InvalidArgumentError(who + ": " + std::to_string(state.spaces.size()) +
                                " spaces, its layout has " +
                                std::to_string(map.parameter_elements.size()));
  }
  for (size_t i = 0; i < state.spaces.size(); ++i) {
    const SpaceState& s = state.spaces[i];
    const int64_t p = map.parameter_elements[i], m = map.moment_elements[i];
    if (static_cast<int64_t>(s.params.size()) != p ||
        static_cast<int64_t>(s.adam_m.size()) != m ||
        static_cast<int64_t>(s.adam_v.size()) != m) {
      return InvalidArgumentError(who + ": spaces[" + std::to_string(i) + "] has " +
                                  std::to_string(s.params.size()) + "/" +
                                  std::to_string(s.adam_m.size()) + "/" +
                                  std::to_string(s.adam_v.size()) +
                                  " parameter/adam_m/adam_v elements, its layout " +
                                  std::to_string(p) + "/" + std::to_string(m) + "/" +
                                  std::to_string(m));
    }
  }
  return Status::Ok();
}

}  // namespace

const char* StateKindName(StateKind kind) {
  switch (kind) {
    case StateKind::kParameter: return "param";
    case StateKind::kAdamM: return "adam_m";
    case StateKind::kAdamV: return "adam_v";
  }
  return "?";
}

int64_t StateMap::DistinctElements() const {
  int64_t total = 0;
  size_t i = 0;
  while (i < runs.size()) {
    const Key key = KeyOf(runs[i]);
    int64_t covered_to = 0;  // runs of one key are sorted by begin
    for (; i < runs.size() && KeyOf(runs[i]) == key; ++i) {
      const int64_t lo = std::max(runs[i].begin, covered_to);
      if (End(runs[i]) > lo) total += End(runs[i]) - lo;
      covered_to = std::max(covered_to, End(runs[i]));
    }
  }
  return total;
}

StateMap DescribeState(const TrainerLayout& layout) {
  StateMap map;
  map.rank = layout.rank;
  for (int i = 0; i < static_cast<int>(layout.spaces.size()); ++i) {
    map.parameter_elements.push_back(layout.ParameterElements(i));
    map.moment_elements.push_back(layout.MomentElements(i));
    // The window of the space each buffer holds: [begin, begin + elements).
    const int64_t windows[3][2] = {
        {layout.ParameterBegin(i), layout.ParameterElements(i)},
        {layout.MomentBegin(i), layout.MomentElements(i)},
        {layout.MomentBegin(i), layout.MomentElements(i)}};
    for (const StateUnit& unit : layout.spaces[static_cast<size_t>(i)].units) {
      for (const ParameterShard& p : unit.parameters) {
        int64_t elements = 1;
        for (int64_t d : p.full_shape) elements *= d;
        map.tensor_elements[p.name] = elements;
        for (const Piece& piece : FullPieces(p)) {
          const int64_t at = unit.offset + p.offset + piece.local;  // in the space
          for (int k = 0; k < 3; ++k) {
            const int64_t lo = std::max(at, windows[k][0]);
            const int64_t hi = std::min(at + piece.length, windows[k][0] + windows[k][1]);
            if (lo >= hi) continue;
            map.runs.push_back({static_cast<StateKind>(k), p.name, piece.full + (lo - at),
                                hi - lo, i, lo - windows[k][0]});
          }
        }
      }
    }
  }
  // Merge runs that continue each other in the tensor and in the buffer.
  std::sort(map.runs.begin(), map.runs.end(), [](const StateRun& a, const StateRun& b) {
    return std::tie(a.kind, a.tensor, a.space, a.begin) <
           std::tie(b.kind, b.tensor, b.space, b.begin);
  });
  std::vector<StateRun> merged;
  for (StateRun& r : map.runs) {
    if (!merged.empty()) {
      StateRun& last = merged.back();
      if (KeyOf(last) == KeyOf(r) && last.space == r.space && End(last) == r.begin &&
          last.offset + last.length == r.offset) {
        last.length += r.length;
        continue;
      }
    }
    merged.push_back(std::move(r));
  }
  std::sort(merged.begin(), merged.end(), [](const StateRun& a, const StateRun& b) {
    return std::tie(a.kind, a.tensor, a.begin, a.space, a.offset) <
           std::tie(b.kind, b.tensor, b.begin, b.space, b.offset);
  });
  map.runs = std::move(merged);
  return map;
}

Result<std::vector<StateMap>> DescribeStates(const workload::ModelSpec& model,
                                             const workload::Plan& plan,
                                             const ExecuteOptions& options, int world_size) {
  std::vector<StateMap> out;
  for (int r = 0; r < world_size; ++r) {
    ORRERY_ASSIGN_OR_RETURN(TrainerLayout layout,
                            TrainerStateLayout(model, plan, options, world_size, r));
    out.push_back(DescribeState(layout));
  }
  return out;
}

int64_t ReshardPlan::total_bytes() const {
  int64_t total = 0;
  for (int64_t b : bytes_sent) total += b;
  return total;
}

int ReshardPlan::messages() const {
  std::set<std::pair<int, int>> pairs;
  for (const StateTransfer& t : transfers) pairs.insert({t.src, t.dst});
  return static_cast<int>(pairs.size());
}

Result<ReshardPlan> PlanReshard(const std::vector<StateMap>& from,
                                const std::vector<StateMap>& to) {
  if (from.size() != to.size() || from.empty()) {
    return InvalidArgumentError("re-sharding needs the same ranks on both sides: the old layout "
                                "has " + std::to_string(from.size()) + ", the new one " +
                                std::to_string(to.size()));
  }
  const int n = static_cast<int>(from.size());
  std::map<std::string, int64_t> sizes;
  for (const std::vector<StateMap>* side : {&from, &to}) {
    for (const StateMap& m : *side) {
      for (const auto& [name, elements] : m.tensor_elements) {
        auto [it, inserted] = sizes.emplace(name, elements);
        if (!inserted && it->second != elements) {
          return InvalidArgumentError("tensor " + name + " has " + std::to_string(it->second) +
                                      " elements in one layout and " + std::to_string(elements) +
                                      " in another (rank " + std::to_string(m.rank) + ")");
        }
      }
    }
  }

  // Per (kind, tensor): elementary segments of the tensor — cut at every
  // old and new run's ends — with the old holders of each, its new
  // holders, and the sender of each destination (DealSenders).
  struct Segment {
    int64_t begin = 0;
    int64_t end = 0;
    std::vector<int> holders;  // ascending
    std::vector<int> needers;  // ascending: ranks that hold it in the new layout
    std::vector<std::pair<int, int>> senders;  // (destination, source), ascending
  };
  std::map<Key, std::vector<Segment>> segments;
  {
    // begin, end, rank, new layout?
    std::map<Key, std::vector<std::tuple<int64_t, int64_t, int, bool>>> runs;
    for (int r = 0; r < n; ++r) {
      for (const StateRun& run : from[static_cast<size_t>(r)].runs) {
        runs[KeyOf(run)].emplace_back(run.begin, End(run), r, false);
      }
      for (const StateRun& run : to[static_cast<size_t>(r)].runs) {
        runs[KeyOf(run)].emplace_back(run.begin, End(run), r, true);
      }
    }
    for (auto& [key, list] : runs) {
      std::vector<int64_t> cuts;
      for (const auto& [b, e, r, fresh] : list) {
        cuts.push_back(b);
        cuts.push_back(e);
      }
      std::sort(cuts.begin(), cuts.end());
      cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
      std::vector<Segment>& out = segments[key];
      for (size_t i = 0; i + 1 < cuts.size(); ++i) out.push_back({cuts[i], cuts[i + 1], {}, {}, {}});
      for (const auto& [b, e, r, fresh] : list) {
        auto it = std::lower_bound(out.begin(), out.end(), b,
                                   [](const Segment& s, int64_t v) { return s.begin < v; });
        for (; it != out.end() && it->begin < e; ++it) {
          (fresh ? it->needers : it->holders).push_back(r);
        }
      }
      std::vector<int> dests, sources;
      for (Segment& s : out) {
        for (std::vector<int>* ranks : {&s.holders, &s.needers}) {
          std::sort(ranks->begin(), ranks->end());
          ranks->erase(std::unique(ranks->begin(), ranks->end()), ranks->end());
        }
        if (s.holders.empty()) continue;  // reported below if some rank needs it
        dests.clear();
        std::set_difference(s.needers.begin(), s.needers.end(), s.holders.begin(),
                            s.holders.end(), std::back_inserter(dests));
        workload::DealSenders(s.holders, dests, sources);
        for (size_t k = 0; k < dests.size(); ++k) s.senders.emplace_back(dests[k], sources[k]);
      }
    }
  }

  ReshardPlan plan;
  plan.world_size = n;
  plan.bytes_sent.assign(static_cast<size_t>(n), 0);
  plan.bytes_received.assign(static_cast<size_t>(n), 0);
  plan.bytes_kept.assign(static_cast<size_t>(n), 0);
  std::map<std::pair<int, int>, std::vector<StateTransfer>> by_pair;
  for (int d = 0; d < n; ++d) {
    const StateMap& need = to[static_cast<size_t>(d)];
    size_t i = 0;
    while (i < need.runs.size()) {
      // The union of the destination's runs of one key, as disjoint ranges.
      const Key key = KeyOf(need.runs[i]);
      std::vector<std::pair<int64_t, int64_t>> wanted;
      for (; i < need.runs.size() && KeyOf(need.runs[i]) == key; ++i) {
        const StateRun& r = need.runs[i];
        if (!wanted.empty() && r.begin <= wanted.back().second) {
          wanted.back().second = std::max(wanted.back().second, End(r));
        } else {
          wanted.emplace_back(r.begin, End(r));
        }
      }
      const std::vector<Segment>* segs = nullptr;
      if (auto it = segments.find(key); it != segments.end()) segs = &it->second;
      for (const auto& [begin, end] : wanted) {
        int64_t next = begin;
        if (segs != nullptr) {
          auto it = std::upper_bound(segs->begin(), segs->end(), begin,
                                     [](int64_t v, const Segment& s) { return v < s.end; });
          for (; it != segs->end() && it->begin < end && next < end; ++it) {
            if (it->begin > next || it->holders.empty()) break;  // a gap: no holder
            const int64_t stop = std::min(it->end, end);
            const int64_t bytes = (stop - next) * kFloatBytes;
            if (std::binary_search(it->holders.begin(), it->holders.end(), d)) {
              plan.bytes_kept[static_cast<size_t>(d)] += bytes;
            } else {
              const auto sender = std::lower_bound(
                  it->senders.begin(), it->senders.end(), std::make_pair(d, 0),
                  [](const std::pair<int, int>& a, const std::pair<int, int>& b) {
                    return a.first < b.first;
                  });
              ORRERY_CHECK(sender != it->senders.end() && sender->first == d)
                  << "rank " << d << " needs " << StateKindName(key.first) << " " << key.second;
              const int src = sender->second;
              plan.bytes_sent[static_cast<size_t>(src)] += bytes;
              plan.bytes_received[static_cast<size_t>(d)] += bytes;
              std::vector<StateTransfer>& list = by_pair[{src, d}];
              if (!list.empty() && list.back().kind == key.first &&
                  list.back().tensor == key.second &&
                  list.back().begin + list.back().length == next) {
                list.back().length += stop - next;
              } else {
                list.push_back({src, d, key.first, key.second, next, stop - next});
              }
            }
            next = stop;
          }
        }
        if (next < end) {
          return InvalidArgumentError("rank " + std::to_string(d) + " needs element " +
                                      std::to_string(next) + " of " + StateKindName(key.first) +
                                      " " + key.second + ", which no rank holds in the old "
                                      "layout");
        }
      }
    }
  }
  for (auto& [pair, list] : by_pair) {
    for (StateTransfer& t : list) plan.transfers.push_back(std::move(t));
  }
  return plan;
}

TrainerState EmptyState(const StateMap& map, int64_t step) {
  TrainerState state;
  state.step = step;
  for (size_t i = 0; i < map.parameter_elements.size(); ++i) {
    SpaceState& s = state.spaces.emplace_back();
    s.params.assign(static_cast<size_t>(map.parameter_elements[i]), 0.0f);
    s.adam_m.assign(static_cast<size_t>(map.moment_elements[i]), 0.0f);
    s.adam_v.assign(static_cast<size_t>(map.moment_elements[i]), 0.0f);
  }
  return state;
}

std::vector<TrainerState> ApplyReshardOnHost(const ReshardPlan& plan,
                                             const std::vector<StateMap>& from,
                                             const std::vector<StateMap>& to,
                                             const std::vector<TrainerState>& old_states) {
  ORRERY_CHECK_EQ(from.size(), old_states.size());
  ORRERY_CHECK_EQ(to.size(), old_states.size());
  std::vector<TrainerState> out;
  for (size_t r = 0; r < to.size(); ++r) {
    ORRERY_CHECK(CheckStateMatches(from[r], old_states[r]).ok()) << "rank " << r;
    out.push_back(EmptyState(to[r], old_states[r].step));
    CopyKept(from[r], old_states[r], to[r], out.back());
  }
  for (const Message& m : MessagesOf(plan)) {
    const std::vector<float> data = Pack(plan, m.first, m.last, from[static_cast<size_t>(m.src)],
                                         old_states[static_cast<size_t>(m.src)]);
    Unpack(plan, m.first, m.last, to[static_cast<size_t>(m.dst)],
           out[static_cast<size_t>(m.dst)], data.data());
  }
  return out;
}

Result<ReshardResult> ExecuteReshard(const ReshardPlan& plan, const std::vector<StateMap>& from,
                                     const std::vector<StateMap>& to,
                                     const TrainerState& old_state, Communicator& world,
                                     Backend& backend) {
  const int n = world.size();
  const int me = world.rank();
  for (int r = 0; r < n; ++r) {
    if (world.world_ranks()[static_cast<size_t>(r)] != r) {
      return InvalidArgumentError("re-sharding needs a communicator of the whole job in rank "
                                  "order; its rank " + std::to_string(r) + " is MPI rank " +
                                  std::to_string(world.world_ranks()[static_cast<size_t>(r)]));
    }
  }
  if (plan.world_size != n || static_cast<int>(from.size()) != n ||
      static_cast<int>(to.size()) != n) {
    return InvalidArgumentError("re-sharding plan for " + std::to_string(plan.world_size) +
                                " ranks (layouts of " + std::to_string(from.size()) + " and " +
                                std::to_string(to.size()) + "), the job has " +
                                std::to_string(n));
  }
  const StateMap& mine_from = from[static_cast<size_t>(me)];
  const StateMap& mine_to = to[static_cast<size_t>(me)];
  ORRERY_RETURN_IF_ERROR(CheckStateMatches(mine_from, old_state));

  // The step count moves with the state: every rank must be at the same
  // step (checked with one all-reduce of (step, −step) under max; steps
  // below 2^24 are exact in float).
  {
    const float mine[2] = {static_cast<float>(old_state.step),
                           -static_cast<float>(old_state.step)};
    DeviceArray<float> steps(backend, 2);
    backend.CopyFromHost(mine, steps.data(), 2 * kFloatBytes);
    world.AllReduce(steps.data(), 2, ReduceOp::kMax);
    float agreed[2] = {0, 0};
    backend.CopyToHost(steps.data(), agreed, 2 * kFloatBytes);
    backend.Synchronize();
    if (agreed[0] != -agreed[1]) {
      return FailedPreconditionError(
          "re-sharding: the ranks are at different training steps (from " +
          std::to_string(static_cast<int64_t>(-agreed[1])) + " to " +
          std::to_string(static_cast<int64_t>(agreed[0])) + ")");
    }
  }

  const double start = MpiWorld::Now();
  ReshardResult result;
  result.state = EmptyState(mine_to, old_state.step);
  CopyKept(mine_from, old_state, mine_to, result.state);

  // Every message this rank takes part in, staged in device memory.
  struct Staged {
    const Message* message = nullptr;
    std::vector<float> host;  // kept until the copies to the device are done
    DeviceArray<float> buffer;
  };
  const std::vector<Message> messages = MessagesOf(plan);
  std::vector<Staged> outgoing, incoming;
  for (const Message& m : messages) {
    if (m.src == me && m.dst != me) {
      Staged& s = outgoing.emplace_back();
      s.message = &m;
      s.host = Pack(plan, m.first, m.last, mine_from, old_state);
      s.buffer = DeviceArray<float>(backend, m.count);
      backend.CopyFromHost(s.host.data(), s.buffer.data(), m.count * kFloatBytes);
    } else if (m.dst == me && m.src != me) {
      Staged& s = incoming.emplace_back();
      s.message = &m;
      s.buffer = DeviceArray<float>(backend, m.count);
    }
  }
  backend.Synchronize();
  // One batch: every receive, then every send, back to back (the batching
  // rule of communicator.h); then wait for all.
  std::vector<std::unique_ptr<CommRequest>> requests;
  for (Staged& s : incoming) {
    requests.push_back(world.Irecv(s.buffer.data(), s.message->count, s.message->src));
    result.bytes_received += s.message->count * kFloatBytes;
    ++result.messages_received;
  }
  for (Staged& s : outgoing) {
    requests.push_back(world.Isend(s.buffer.data(), s.message->count, s.message->dst));
    result.bytes_sent += s.message->count * kFloatBytes;
    ++result.messages_sent;
  }
  for (std::unique_ptr<CommRequest>& r : requests) r->Wait();
  for (Staged& s : incoming) {
    std::vector<float> host(static_cast<size_t>(s.message->count));
    backend.CopyToHost(s.buffer.data(), host.data(), s.message->count * kFloatBytes);
    backend.Synchronize();
    Unpack(plan, s.message->first, s.message->last, mine_to, result.state, host.data());
  }
  backend.Synchronize();
  result.seconds = MpiWorld::Now() - start;
  return result;
}

}  // namespace orrery::exec
