#include "costmodel/reshard_cost.h"

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "costmodel/collective.h"
#include "workload/pipeline_schedule.h"
#include "workload/reshard_senders.h"

namespace orrery::costmodel {

namespace {

using workload::LayerStrategy;
using workload::ModelSpec;
using workload::ParallelDim;
using workload::Plan;

constexpr int kParameterKind = 0;
constexpr int kOptimizerKind = 1;
constexpr int kKinds = 2;
const char* const kKindNames[kKinds] = {"parameters", "optimizer states"};

// ---- Tensors ----------------------------------------------------------------

// A rectangle of a full tensor seen as rows × columns (a 1-D tensor is one
// row): rows [r0, r1) × columns [c0, c1).
struct Rect {
  int64_t r0 = 0, r1 = 0, c0 = 0, c1 = 0;
};

using Range = std::pair<int64_t, int64_t>;  // [begin, end)

// One tensor-parallel rank's share of one full tensor — exec/gpt_model.h's
// ParameterShard in the rows × columns view: the local tensor concatenates,
// along the split axis, the full tensor's ranges `pieces` on that axis.
struct LocalTensor {
  std::string name;
  int64_t rows = 1, cols = 1;  // the full tensor
  int split = -1;              // -1 whole, 0 rows, 1 columns
  std::vector<Range> pieces;
  int64_t local_rows = 1, local_cols = 1;
  int64_t size() const { return local_rows * local_cols; }
};

// A tensor of full shape `shape` (1 or 2 dims, row-major) split along
// `split_dim` (-1: replicated) into `pieces`, as gpt_model.cc's AddParameter.
LocalTensor MakeTensor(std::string name, const std::vector<int64_t>& shape, int split_dim,
                       std::vector<Range> pieces = {}) {
  ORRERY_CHECK(shape.size() == 1 || shape.size() == 2) << name;
  LocalTensor t;
  t.name = std::move(name);
  t.rows = shape.size() == 1 ? 1 : shape[0];
  t.cols = shape.back();
  t.split = split_dim < 0 ? -1 : (shape.size() == 1 ? 1 : split_dim);
  t.pieces = std::move(pieces);
  t.local_rows = t.rows;
  t.local_cols = t.cols;
  if (t.split >= 0) {
    int64_t extent = 0;
    for (const auto& [b, e] : t.pieces) extent += e - b;
    (t.split == 0 ? t.local_rows : t.local_cols) = extent;
  }
  return t;
}

// Rank `rank` of `size`'s piece of [base, base + extent): even splits, the
// last piece short when `size` does not divide `extent` (the vocabulary of a
// model the executor does not run: the padding Megatron-LM adds holds no
// state worth moving).
Range EvenPiece(int64_t extent, int size, int rank, int64_t base = 0) {
  const int64_t each = (extent + size - 1) / size;
  return {base + std::min(extent, rank * each), base + std::min(extent, (rank + 1) * each)};
}

// Appends the rectangles of the full tensor that local elements [a, b)
// (row-major in the local tensor) hold: at most 3 rectangles of the local
// tensor (a partial first row, whole rows, a partial last row), each cut
// where it crosses a piece of the split axis.
void LocalRangeRects(const LocalTensor& t, int64_t a, int64_t b, std::vector<Rect>& out) {
  if (a >= b) return;
  const int64_t w = t.local_cols;
  std::array<Rect, 3> local;
  int count = 0;
  int64_t ra = a / w, ca = a % w;
  const int64_t rb = b / w, cb = b % w;
  if (ra == rb) {
    local[count++] = {ra, ra + 1, ca, cb};
  } else {
    if (ca > 0) {
      local[count++] = {ra, ra + 1, ca, w};
      ++ra;
    }
    if (ra < rb) local[count++] = {ra, rb, 0, w};
    if (cb > 0) local[count++] = {rb, rb + 1, 0, cb};
  }
  // Local [lo, hi) on an axis → full ranges, through the pieces when split.
  auto map_axis = [&t](bool split, int64_t lo, int64_t hi, std::vector<Range>& ranges) {
    ranges.clear();
    if (!split) {
      ranges.push_back({lo, hi});
      return;
    }
    int64_t at = 0;
    for (const auto& [begin, end] : t.pieces) {
      const int64_t len = end - begin;
      const int64_t x = std::max(lo, at), y = std::min(hi, at + len);
      if (x < y) ranges.push_back({begin + (x - at), begin + (y - at)});
      at += len;
    }
  };
  std::vector<Range> rows, cols;
  for (int i = 0; i < count; ++i) {
    map_axis(t.split == 0, local[i].r0, local[i].r1, rows);
    map_axis(t.split == 1, local[i].c0, local[i].c1, cols);
    for (const Range& r : rows) {
      for (const Range& c : cols) out.push_back({r.first, r.second, c.first, c.second});
    }
  }
}

// ---- Units ------------------------------------------------------------------

// The units of the executor (exec/gpt_model.h), and for MoE models the
// experts of a layer as a unit of their own.
enum class UnitKind { kEmbedding, kBlock, kExperts, kHead };

struct UnitRef {
  UnitKind kind = UnitKind::kBlock;
  int layer = 0;  // the transformer layer whose strategy lays it out
};

// The tensors of a unit on tensor-parallel rank `t` of `tp` (and, for the
// experts, expert-parallel rank `e` of `ep`), in the executor's order and
// with its names and geometry (gpt_model.cc's Embedding, Block and Head).
std::vector<LocalTensor> UnitTensors(const ModelSpec& m, const UnitRef& u, int tp, int t, int ep,
                                     int e) {
  const int64_t h = m.hidden_size;
  const int64_t vocab = m.vocab_size;
  const bool norm_bias = m.norm == workload::NormKind::kLayerNorm;
  const bool gated = workload::IsGated(m.activation);
  auto piece = [&](int64_t extent, int64_t base = 0) { return EvenPiece(extent, tp, t, base); };
  std::vector<LocalTensor> out;
  switch (u.kind) {
    case UnitKind::kEmbedding:
      out.push_back(MakeTensor("embedding.word_embeddings.weight", {vocab, h}, 0, {piece(vocab)}));
      if (m.position_embedding == workload::PositionEmbedding::kLearned) {
        out.push_back(
            MakeTensor("embedding.position_embeddings.weight", {m.max_sequence_length, h}, -1));
      }
      break;
    case UnitKind::kBlock: {
      const int64_t d = m.head_dim;
      const int64_t nq = m.num_attention_heads;
      const int64_t nkv = m.num_kv_heads;
      const int64_t ffn = m.ffn_hidden_size;
      const bool bias = m.linear_bias;
      const std::string p = "layers." + std::to_string(u.layer) + ".";
      const std::vector<Range> qkv = {piece(nq * d), piece(nkv * d, nq * d),
                                      piece(nkv * d, (nq + nkv) * d)};
      out.push_back(MakeTensor(p + "attn.norm.weight", {h}, -1));
      if (norm_bias) out.push_back(MakeTensor(p + "attn.norm.bias", {h}, -1));
      out.push_back(MakeTensor(p + "attn.qkv.weight", {h, (nq + 2 * nkv) * d}, 1, qkv));
      if (bias) out.push_back(MakeTensor(p + "attn.qkv.bias", {(nq + 2 * nkv) * d}, 0, qkv));
      out.push_back(MakeTensor(p + "attn.proj.weight", {nq * d, h}, 0, {piece(nq * d)}));
      if (bias) out.push_back(MakeTensor(p + "attn.proj.bias", {h}, -1));
      out.push_back(MakeTensor(p + "mlp.norm.weight", {h}, -1));
      if (norm_bias) out.push_back(MakeTensor(p + "mlp.norm.bias", {h}, -1));
      if (m.is_moe()) {
        // The router: a replicated h × E linear (workload/operators.cc).
        out.push_back(MakeTensor(p + "mlp.router.weight", {h, m.num_experts}, -1));
        break;
      }
      std::vector<Range> fc1 = {piece(ffn)};
      if (gated) fc1.push_back(piece(ffn, ffn));
      out.push_back(MakeTensor(p + "mlp.fc1.weight", {h, gated ? 2 * ffn : ffn}, 1, fc1));
      if (bias) out.push_back(MakeTensor(p + "mlp.fc1.bias", {gated ? 2 * ffn : ffn}, 0, fc1));
      out.push_back(MakeTensor(p + "mlp.fc2.weight", {ffn, h}, 0, {piece(ffn)}));
      if (bias) out.push_back(MakeTensor(p + "mlp.fc2.bias", {h}, -1));
      break;
    }
    case UnitKind::kExperts: {
      // Expert-parallel rank e holds experts [e·E/ep, (e+1)·E/ep), each
      // MLP split over tp as the dense one (Megatron-Core's expert tensor
      // parallelism equal to tp).
      const int64_t ffn = m.ffn_hidden_size;
      const bool bias = m.linear_bias;
      const int per_rank = m.num_experts / ep;
      for (int x = e * per_rank; x < (e + 1) * per_rank; ++x) {
        const std::string p =
            "layers." + std::to_string(u.layer) + ".mlp.experts." + std::to_string(x) + ".";
        std::vector<Range> fc1 = {piece(ffn)};
        if (gated) fc1.push_back(piece(ffn, ffn));
        out.push_back(MakeTensor(p + "fc1.weight", {h, gated ? 2 * ffn : ffn}, 1, fc1));
        if (bias) out.push_back(MakeTensor(p + "fc1.bias", {gated ? 2 * ffn : ffn}, 0, fc1));
        out.push_back(MakeTensor(p + "fc2.weight", {ffn, h}, 0, {piece(ffn)}));
        if (bias) out.push_back(MakeTensor(p + "fc2.bias", {h}, -1));
      }
      break;
    }
    case UnitKind::kHead:
      out.push_back(MakeTensor("head.norm.weight", {h}, -1));
      if (norm_bias) out.push_back(MakeTensor("head.norm.bias", {h}, -1));
      // Tied: the head's own copy of the word embeddings, under their name.
      out.push_back(
          MakeTensor(m.tied_embeddings ? "embedding.word_embeddings.weight" : "head.output.weight",
                     {vocab, h}, 0, {piece(vocab)}));
      break;
  }
  return out;
}

// ---- The rank grid ------------------------------------------------------------

constexpr int kDims = 5;  // ParallelDim: kTp, kCp, kEp, kDp, kPp
int Dim(ParallelDim d) { return static_cast<int>(d); }

// Coordinates ↔ ranks of one layer's grid, as workload::RankGroups lays it
// out (Megatron-Core's RankGenerator): dense dims tp, cp, dp, pp; the
// experts' tp, ep, dp·cp/ep, pp.
struct Grid {
  std::array<int, kDims> size{};
  std::array<int, kDims> stride{};
  // Of the sharding group (dense: cp and dp; experts: their dp), the
  // inner and the outer dimension in rank order.
  int inner = Dim(ParallelDim::kCp), outer = Dim(ParallelDim::kDp);

  int ShardGroupSize() const {
    return size[static_cast<size_t>(inner)] * size[static_cast<size_t>(outer)];
  }
  // The rank at tensor-parallel rank t, expert rank e, stage s and index j
  // of the sharding group (ranks of the group in ascending order).
  int Rank(int t, int e, int s, int j) const {
    const int ni = size[static_cast<size_t>(inner)];
    return t * stride[0] + e * stride[2] + s * stride[4] +
           (j % ni) * stride[static_cast<size_t>(inner)] +
           (j / ni) * stride[static_cast<size_t>(outer)];
  }
};

Grid MakeGrid(const Plan& plan, const LayerStrategy& l, bool experts) {
  Grid g;
  g.size = {l.tp, experts ? 1 : l.cp, experts ? l.ep : 1, experts ? l.dp * l.cp / l.ep : l.dp,
            plan.pp};
  int world = 1;
  for (ParallelDim d : plan.rank_order) {
    g.stride[static_cast<size_t>(Dim(d))] = world;
    world *= g.size[static_cast<size_t>(Dim(d))];
  }
  const int cp = Dim(ParallelDim::kCp), dp = Dim(ParallelDim::kDp);
  if (g.stride[static_cast<size_t>(cp)] > g.stride[static_cast<size_t>(dp)]) {
    g.inner = dp;
    g.outer = cp;
  }
  return g;
}

// ---- State layouts --------------------------------------------------------------

// What the ranks hold of one tensor, per kind: rectangles, each with the
// list of its holders.
struct Holding {
  Rect rect;
  int list = 0;
};

struct TensorHoldings {
  int64_t rows = 0, cols = 0;
  std::array<std::vector<Holding>, kKinds> kinds;
};

struct StateLayout {
  std::map<std::string, TensorHoldings> tensors;
  std::vector<std::vector<int>> lists;  // ascending ranks
  std::map<std::vector<int>, int> list_ids;

  int Intern(std::vector<int> ranks) {
    std::sort(ranks.begin(), ranks.end());
    ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
    auto [it, inserted] = list_ids.emplace(ranks, static_cast<int>(lists.size()));
    if (inserted) lists.push_back(std::move(ranks));
    return it->second;
  }
};

struct PlacedUnit {
  UnitRef ref;
  int64_t offset = 0;  // in its space
  std::vector<LocalTensor> tensors;
  int64_t count = 0;
};

// A flat buffer of units reduced, sharded and updated as one (runtime.h's
// StateSpace).
struct Space {
  int64_t size = 0;
  std::vector<PlacedUnit> units;
};

// Adds what the ranks of one (stage, tp rank, expert rank) class hold of
// `space`: its sharding group is `grid`'s, `zero` its ZeRO stage. Holders
// of a whole-space buffer are every rank of the group; of a shard, the
// group's j-th rank.
void AddSpace(const Space& space, const Grid& grid, int zero, int t, int e, int s,
              StateLayout& out) {
  const int group = grid.ShardGroupSize();
  std::vector<int> replicas;
  for (int j = 0; j < group; ++j) replicas.push_back(grid.Rank(t, e, s, j));
  const int all = out.Intern(replicas);
  int64_t size = space.size;
  if (zero >= 1) size = (std::max<int64_t>(size, 1) + group - 1) / group * group;
  const int64_t shard = zero >= 1 ? size / group : size;
  std::vector<Rect> rects;
  for (const PlacedUnit& unit : space.units) {
    int64_t at = unit.offset;
    for (const LocalTensor& tensor : unit.tensors) {
      TensorHoldings& held = out.tensors[tensor.name];
      ORRERY_CHECK((held.rows == 0 && held.cols == 0) ||
                   (held.rows == tensor.rows && held.cols == tensor.cols))
          << tensor.name;
      held.rows = tensor.rows;
      held.cols = tensor.cols;
      for (int kind = 0; kind < kKinds; ++kind) {
        const bool sharded = kind == kParameterKind ? zero == 3 : zero >= 1;
        std::vector<Holding>& list = held.kinds[static_cast<size_t>(kind)];
        if (!sharded) {
          rects.clear();
          LocalRangeRects(tensor, 0, tensor.size(), rects);
          for (const Rect& r : rects) list.push_back({r, all});
          continue;
        }
        if (tensor.size() == 0) continue;
        const int64_t first = at / shard, last = (at + tensor.size() - 1) / shard;
        for (int64_t j = first; j <= last; ++j) {
          const int64_t lo = std::max(at, j * shard),
                        hi = std::min(at + tensor.size(), (j + 1) * shard);
          rects.clear();
          LocalRangeRects(tensor, lo - at, hi - at, rects);
          const int holder = out.Intern({replicas[static_cast<size_t>(j)]});
          for (const Rect& r : rects) list.push_back({r, holder});
        }
      }
      at += tensor.size();
    }
  }
}

// True when every layer has the same state layout (tp, cp, dp, ep, ZeRO):
// the executor's case, bucketed as it does.
bool UniformState(const Plan& plan) {
  const LayerStrategy& a = plan.layers.front();
  for (const LayerStrategy& b : plan.layers) {
    if (b.tp != a.tp || b.cp != a.cp || b.dp != a.dp || b.ep != a.ep ||
        b.zero_stage != a.zero_stage) {
      return false;
    }
  }
  return true;
}

Status CheckLayoutInputs(const ModelSpec& model, const Plan& plan, int ranks, const char* side) {
  const std::string who = std::string(side) + " plan";
  if (model.architecture != workload::Architecture::kDecoderOnly) {
    return UnimplementedError("switch cost: model '" + model.name + "' is " +
                              std::string(workload::ArchitectureName(model.architecture)) +
                              "; the state layout is of decoder-only models");
  }
  ORRERY_RETURN_IF_ERROR(workload::ValidateModelSpec(model));
  if (plan.num_layers() != model.total_layers() || plan.layers.empty()) {
    return InvalidArgumentError(who + ": field 'layers': " + std::to_string(plan.num_layers()) +
                                " layers, the model '" + model.name + "' has " +
                                std::to_string(model.total_layers()));
  }
  if (plan.pp < 1) {
    return InvalidArgumentError(who + ": field 'pp': expected >= 1, got " +
                                std::to_string(plan.pp));
  }
  std::array<int, kDims> seen{};
  for (ParallelDim d : plan.rank_order) {
    if (Dim(d) < 0 || Dim(d) >= kDims) return InvalidArgumentError(who + ": field 'rank_order'");
    ++seen[static_cast<size_t>(Dim(d))];
  }
  for (int c : seen) {
    if (c != 1) {
      return InvalidArgumentError(who +
                                  ": field 'rank_order': expected each of tp, cp, ep, dp, "
                                  "pp once, got " +
                                  workload::RankOrderName(plan.rank_order));
    }
  }
  for (int i = 0; i < plan.num_layers(); ++i) {
    const LayerStrategy& l = plan.layers[static_cast<size_t>(i)];
    const std::string field = who + ": field 'layers[" + std::to_string(i) + "]";
    if (l.tp < 1 || l.cp < 1 || l.dp < 1 || l.ep < 1) {
      return InvalidArgumentError(field + "': tp, cp, dp and ep must be >= 1");
    }
    if (l.zero_stage < 0 || l.zero_stage > 3) {
      return InvalidArgumentError(field + ".zero_stage': expected 0 to 3, got " +
                                  std::to_string(l.zero_stage));
    }
    const int64_t devices = int64_t{plan.pp} * l.tp * l.cp * l.dp;
    if (devices != ranks) {
      return InvalidArgumentError(
          field + "': pp " + std::to_string(plan.pp) + " × tp " + std::to_string(l.tp) + " × cp " +
          std::to_string(l.cp) + " × dp " + std::to_string(l.dp) + " = " + std::to_string(devices) +
          " devices, the switch gives it " + std::to_string(ranks) + " ranks");
    }
    const std::pair<const char*, int64_t> divided[] = {
        {"num_attention_heads", model.num_attention_heads},
        {"num_kv_heads", model.num_kv_heads},
        {"ffn_hidden_size", model.ffn_hidden_size}};
    for (const auto& [name, value] : divided) {
      if (value % l.tp != 0) {
        return InvalidArgumentError(field + ".tp': " + std::to_string(l.tp) +
                                    " does not divide the model's " + name + " (" +
                                    std::to_string(value) + ")");
      }
    }
    if (l.ep > 1 &&
        (!model.is_moe() || model.num_experts % l.ep != 0 || (l.dp * l.cp) % l.ep != 0)) {
      return InvalidArgumentError(field + ".ep': " + std::to_string(l.ep) +
                                  " must divide the model's experts (" +
                                  std::to_string(model.num_experts) + ") and dp × cp (" +
                                  std::to_string(l.dp * l.cp) + ")");
    }
  }
  const std::vector<int> counts = plan.StageLayerCounts();
  int sum = 0;
  for (int c : counts) sum += c < 0 ? plan.num_layers() + 1 : c;
  if (static_cast<int>(counts.size()) != plan.pp || sum != plan.num_layers()) {
    return InvalidArgumentError(who + ": field 'stage_layers': expected " +
                                std::to_string(plan.pp) + " non-negative counts summing to " +
                                std::to_string(plan.num_layers()));
  }
  if (plan.schedule == workload::PipelineSchedule::kInterleaved) {
    for (int c : counts) {
      if (plan.vpp < 1 || c % plan.vpp != 0) {
        return InvalidArgumentError(who + ": field 'vpp': " + std::to_string(plan.vpp) +
                                    " chunks do not divide a stage of " + std::to_string(c) +
                                    " layers");
      }
    }
  }
  return Status::Ok();
}

// Every rank's state under `plan` on `ranks` ranks.
Result<StateLayout> LayOut(const ModelSpec& model, const Plan& plan, int ranks,
                           const StateLayoutOptions& options, const char* side) {
  ORRERY_RETURN_IF_ERROR(CheckLayoutInputs(model, plan, ranks, side));
  const int pp = plan.pp;
  const int vpp = plan.schedule == workload::PipelineSchedule::kInterleaved ? plan.vpp : 1;
  const std::vector<std::pair<int, int>> ranges = workload::ChunkLayerRanges(plan);
  const int last_layer = plan.num_layers() - 1;
  // The executor's spaces (bucketed) need the same layout in every layer;
  // MoE models and layer-wise plans get one unit per space.
  const bool bucketed = UniformState(plan) && !model.is_moe();
  StateLayout out;
  for (int s = 0; s < pp; ++s) {
    // The stage's units, chunk by chunk, in forward order
    // (runtime.cc's BuildStageUnits).
    std::vector<std::vector<UnitRef>> chunks(static_cast<size_t>(vpp));
    for (int c = 0; c < vpp; ++c) {
      std::vector<UnitRef>& units = chunks[static_cast<size_t>(c)];
      if (s == 0 && c == 0) units.push_back({UnitKind::kEmbedding, 0});
      const auto [first, count] = ranges[static_cast<size_t>(s * vpp + c)];
      for (int layer = first; layer < first + count; ++layer) {
        units.push_back({UnitKind::kBlock, layer});
        if (model.is_moe()) units.push_back({UnitKind::kExperts, layer});
      }
      if (s == pp - 1 && c == vpp - 1) units.push_back({UnitKind::kHead, last_layer});
    }
    std::vector<UnitRef> backward;
    for (int c = vpp - 1; c >= 0; --c) {
      const std::vector<UnitRef>& us = chunks[static_cast<size_t>(c)];
      backward.insert(backward.end(), us.rbegin(), us.rend());
    }
    if (bucketed) {
      const LayerStrategy& l = plan.layers.front();
      const Grid grid = MakeGrid(plan, l, /*experts=*/false);
      const int64_t group = grid.ShardGroupSize();
      for (int t = 0; t < l.tp; ++t) {
        // runtime.cc's PlaceUnits: ZeRO 0/1 buckets of units in backward
        // order of at least bucket_parameters; ZeRO 2/3 one unit each.
        const int64_t bucket = options.bucket_parameters > 0
                                   ? options.bucket_parameters
                                   : std::max<int64_t>(40'000'000, 1'000'000 * group);
        std::vector<Space> spaces;
        for (const UnitRef& ref : backward) {
          if (spaces.empty() || l.zero_stage >= 2 || spaces.back().size >= bucket) {
            spaces.emplace_back();
          }
          Space& space = spaces.back();
          PlacedUnit unit;
          unit.ref = ref;
          unit.offset = space.size;
          unit.tensors = UnitTensors(model, ref, l.tp, t, 1, 0);
          for (const LocalTensor& x : unit.tensors) unit.count += x.size();
          space.size += unit.count;
          space.units.push_back(std::move(unit));
        }
        for (const Space& space : spaces) AddSpace(space, grid, l.zero_stage, t, 0, s, out);
      }
      continue;
    }
    for (const UnitRef& ref : backward) {
      const LayerStrategy& l = plan.layers[static_cast<size_t>(ref.layer)];
      const bool experts = ref.kind == UnitKind::kExperts;
      const Grid grid = MakeGrid(plan, l, experts);
      const int ep = experts ? l.ep : 1;
      for (int t = 0; t < l.tp; ++t) {
        for (int e = 0; e < ep; ++e) {
          Space space;
          PlacedUnit unit;
          unit.ref = ref;
          unit.tensors = UnitTensors(model, ref, l.tp, t, ep, e);
          for (const LocalTensor& x : unit.tensors) unit.count += x.size();
          space.size = unit.count;
          space.units.push_back(std::move(unit));
          AddSpace(space, grid, l.zero_stage, t, e, s, out);
        }
      }
    }
  }
  return out;
}

// ---- The exchange -----------------------------------------------------------------

// Sorted ids with multiplicities: the lists covering a point.
class Cover {
 public:
  void Add(int id, int delta) {
    auto it = std::lower_bound(items_.begin(), items_.end(), id,
                               [](const std::pair<int, int>& p, int v) { return p.first < v; });
    if (it != items_.end() && it->first == id) {
      it->second += delta;
      if (it->second == 0) items_.erase(it);
    } else {
      ORRERY_CHECK_GT(delta, 0);
      items_.insert(it, {id, delta});
    }
  }
  bool empty() const { return items_.empty(); }
  std::vector<int> Ids() const {
    std::vector<int> ids;
    ids.reserve(items_.size());
    for (const auto& [id, n] : items_) ids.push_back(id);
    return ids;
  }

 private:
  std::vector<std::pair<int, int>> items_;
};

// Elements of one (tensor, kind) by who held them and who needs them:
// (old holder lists, new holder lists) → elements, and the elements held
// at all before.
struct Overlap {
  std::map<std::pair<std::vector<int>, std::vector<int>>, int64_t> by_lists;
  int64_t old_elements = 0;
};

// Sweeps the rows of the tensor band by band (the bands between every
// rectangle's top and bottom), and each band's columns.
Overlap Sweep(const std::vector<Holding>& old_held, const std::vector<Holding>& new_held) {
  struct Item {
    Rect rect;
    int list = 0;
    bool fresh = false;  // of the new layout
  };
  std::vector<Item> items;
  items.reserve(old_held.size() + new_held.size());
  for (const Holding& h : old_held) items.push_back({h.rect, h.list, false});
  for (const Holding& h : new_held) items.push_back({h.rect, h.list, true});
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return a.rect.r0 < b.rect.r0; });
  std::vector<int64_t> cuts;
  for (const Item& i : items) {
    cuts.push_back(i.rect.r0);
    cuts.push_back(i.rect.r1);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());

  Overlap out;
  std::vector<size_t> active;
  size_t next = 0;
  struct Event {
    int64_t x = 0;
    int delta = 0;
    size_t item = 0;
  };
  std::vector<Event> events;
  for (size_t b = 0; b + 1 < cuts.size(); ++b) {
    const int64_t y0 = cuts[b], y1 = cuts[b + 1];
    active.erase(std::remove_if(active.begin(), active.end(),
                                [&](size_t i) { return items[i].rect.r1 <= y0; }),
                 active.end());
    while (next < items.size() && items[next].rect.r0 == y0) active.push_back(next++);
    if (active.empty()) continue;
    events.clear();
    for (size_t i : active) {
      events.push_back({items[i].rect.c0, +1, i});
      events.push_back({items[i].rect.c1, -1, i});
    }
    std::sort(events.begin(), events.end(), [](const Event& a, const Event& c) {
      return a.x != c.x ? a.x < c.x : a.delta < c.delta;
    });
    Cover old_cover, new_cover;
    int64_t x = events.front().x;
    for (const Event& ev : events) {
      if (ev.x > x && !(old_cover.empty() && new_cover.empty())) {
        const int64_t area = (y1 - y0) * (ev.x - x);
        if (!old_cover.empty()) out.old_elements += area;
        if (!new_cover.empty()) out.by_lists[{old_cover.Ids(), new_cover.Ids()}] += area;
      }
      x = ev.x;
      const Item& it = items[ev.item];
      (it.fresh ? new_cover : old_cover).Add(it.list, ev.delta);
    }
  }
  return out;
}

std::vector<int> Union(const std::vector<std::vector<int>>& lists, const std::vector<int>& ids) {
  if (ids.size() == 1) return lists[static_cast<size_t>(ids.front())];
  std::vector<int> out;
  for (int id : ids) {
    const std::vector<int>& l = lists[static_cast<size_t>(id)];
    out.insert(out.end(), l.begin(), l.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

int64_t ReshardTraffic::total_bytes() const {
  int64_t n = 0;
  for (const int64_t b : bytes_sent) n += b;
  return n;
}
int64_t ReshardTraffic::max_sent() const {
  int64_t n = 0;
  for (const int64_t b : bytes_sent) n = std::max(n, b);
  return n;
}
int64_t ReshardTraffic::max_received() const {
  int64_t n = 0;
  for (const int64_t b : bytes_received) n = std::max(n, b);
  return n;
}

Result<ReshardTraffic> ComputeReshardTraffic(const workload::ModelSpec& model,
                                             const workload::Plan& from, int from_ranks,
                                             const workload::Plan& to, int to_ranks,
                                             int devices_per_node,
                                             const StateLayoutOptions& options) {
  if (from_ranks < 1 || to_ranks < 1) {
    return InvalidArgumentError("switch cost: the old and the new world need >= 1 rank, got " +
                                std::to_string(from_ranks) + " and " + std::to_string(to_ranks));
  }
  if (devices_per_node < 1) {
    return InvalidArgumentError("switch cost: devices_per_node must be >= 1, got " +
                                std::to_string(devices_per_node));
  }
  if (options.bytes.parameter < 0 || options.bytes.optimizer < 0) {
    return InvalidArgumentError("switch cost: bytes per element must be >= 0");
  }
  ORRERY_ASSIGN_OR_RETURN(StateLayout old_layout, LayOut(model, from, from_ranks, options, "old"));
  ORRERY_ASSIGN_OR_RETURN(StateLayout new_layout, LayOut(model, to, to_ranks, options, "new"));

  const int n = std::max(from_ranks, to_ranks);
  const size_t un = static_cast<size_t>(n);
  ReshardTraffic traffic;
  traffic.ranks = n;
  traffic.devices_per_node = devices_per_node;
  traffic.bytes_sent.assign(un, 0);
  traffic.bytes_received.assign(un, 0);
  traffic.bytes_kept.assign(un, 0);
  traffic.sent_off_node.assign(un, 0);
  traffic.received_off_node.assign(un, 0);
  const int64_t kind_bytes[kKinds] = {options.bytes.parameter, options.bytes.optimizer};
  auto node = [devices_per_node](int rank) { return rank / devices_per_node; };

  std::vector<std::pair<int, int>> pairs;  // (src, dst)
  std::vector<int> dests, sources;
  const std::vector<Holding> none;
  for (const auto& [name, needed] : new_layout.tensors) {
    const auto old_it = old_layout.tensors.find(name);
    for (int kind = 0; kind < kKinds; ++kind) {
      const std::vector<Holding>& held = old_it == old_layout.tensors.end()
                                             ? none
                                             : old_it->second.kinds[static_cast<size_t>(kind)];
      const Overlap overlap = Sweep(held, needed.kinds[static_cast<size_t>(kind)]);
      const int64_t bytes_per = kind_bytes[kind];
      for (const auto& [lists, elements] : overlap.by_lists) {
        const std::vector<int> holders = Union(old_layout.lists, lists.first);
        const std::vector<int> needers = Union(new_layout.lists, lists.second);
        if (holders.empty()) {
          return InvalidArgumentError("switch cost: rank " + std::to_string(needers.front()) +
                                      " needs " + kKindNames[kind] + " of " + name +
                                      " that no rank holds under the old plan");
        }
        const int64_t bytes = elements * bytes_per;
        dests.clear();
        for (int d : needers) {
          if (std::binary_search(holders.begin(), holders.end(), d)) {
            traffic.bytes_kept[static_cast<size_t>(d)] += bytes;
          } else {
            dests.push_back(d);
          }
        }
        workload::DealSenders(holders, dests, sources);
        for (size_t k = 0; k < dests.size(); ++k) {
          const int d = dests[k];
          const int src = sources[k];
          const size_t ud = static_cast<size_t>(d);
          const size_t us = static_cast<size_t>(src);
          traffic.bytes_sent[us] += bytes;
          traffic.bytes_received[ud] += bytes;
          if (node(src) != node(d)) {
            traffic.sent_off_node[us] += bytes;
            traffic.received_off_node[ud] += bytes;
          }
          if (pairs.empty() || pairs.back() != std::make_pair(src, d)) pairs.push_back({src, d});
        }
      }
    }
  }
  // Distinct old state: every element held by some old rank, once.
  for (const auto& [name, held] : old_layout.tensors) {
    for (int kind = 0; kind < kKinds; ++kind) {
      traffic.old_state_bytes +=
          Sweep(held.kinds[static_cast<size_t>(kind)], {}).old_elements * kind_bytes[kind];
    }
  }
  for (size_t r = 0; r < un; ++r) {
    traffic.new_state_bytes += traffic.bytes_kept[r] + traffic.bytes_received[r];
  }
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  traffic.messages_sent.assign(un, 0);
  traffic.messages_received.assign(un, 0);
  traffic.messages_sent_off_node.assign(un, 0);
  traffic.messages_received_off_node.assign(un, 0);
  for (const auto& [src, dst] : pairs) {
    ++traffic.messages_sent[static_cast<size_t>(src)];
    ++traffic.messages_received[static_cast<size_t>(dst)];
    if (node(src) != node(dst)) {
      ++traffic.messages_sent_off_node[static_cast<size_t>(src)];
      ++traffic.messages_received_off_node[static_cast<size_t>(dst)];
    }
  }
  return traffic;
}

namespace {

Status CheckStorage(const std::optional<StorageBandwidth>& storage) {
  if (storage.has_value() && (!(storage->write_gb_per_s > 0) || !(storage->read_gb_per_s > 0))) {
    return InvalidArgumentError(
        "switch cost: storage write_gb_per_s and read_gb_per_s must be "
        "positive, got " +
        std::to_string(storage->write_gb_per_s) + " and " + std::to_string(storage->read_gb_per_s));
  }
  return Status::Ok();
}

// A switch that moves no byte: free in memory and through a checkpoint.
SwitchCost FreeSwitch(const std::optional<StorageBandwidth>& storage) {
  SwitchCost cost;
  if (storage.has_value()) cost.checkpoint = Duration::Zero();
  return cost;
}

}  // namespace

Result<SwitchCost> EstimateSwitchCost(const ReshardTraffic& traffic,
                                      const CollectiveModel& collectives,
                                      const std::optional<StorageBandwidth>& storage) {
  ORRERY_RETURN_IF_ERROR(CheckStorage(storage));
  if (traffic.total_bytes() == 0) return FreeSwitch(storage);
  SwitchCost cost;
  const topology::ClusterSpec& cluster = collectives.cluster();
  if (cluster.node_types.empty()) {
    return InvalidArgumentError("switch cost: cluster '" + cluster.name + "' has no node type");
  }
  const topology::NodeType& node = cluster.PrimaryNodeType();
  const int per_node = traffic.devices_per_node;
  if (node.devices_per_node != per_node) {
    return InvalidArgumentError("switch cost: the traffic was counted with " +
                                std::to_string(per_node) + " devices per node, cluster '" +
                                cluster.name + "' has " + std::to_string(node.devices_per_node));
  }
  const size_t un = static_cast<size_t>(traffic.ranks);
  int64_t on_node_messages = 0, off_node_messages = 0;
  for (size_t r = 0; r < un; ++r) {
    on_node_messages += traffic.messages_sent[r] - traffic.messages_sent_off_node[r];
    off_node_messages += traffic.messages_sent_off_node[r];
  }
  // α of one message: NCCL's point-to-point latency (or the calibration's
  // fitted send/recv) of a zero-byte transfer between two devices of one
  // node, or of two nodes.
  Duration alpha_on = Duration::Zero(), alpha_off = Duration::Zero();
  if (on_node_messages > 0) {
    ORRERY_ASSIGN_OR_RETURN(
        CollectiveEstimate e,
        collectives.Estimate(CollectiveOp::kSendRecv, Bytes(0),
                             RankGroup{1, 2, RankGroup::Placement::kConsecutive}));
    alpha_on = e.time;
  }
  if (off_node_messages > 0) {
    if (cluster.TotalNodes() < 2 || node.nics.empty()) {
      return InvalidArgumentError("switch cost: the switch crosses nodes, cluster '" +
                                  cluster.name + "' has " + std::to_string(cluster.TotalNodes()) +
                                  " node(s) of type '" + node.name + "' with " +
                                  std::to_string(node.nics.size()) + " NIC(s)");
    }
    ORRERY_ASSIGN_OR_RETURN(
        CollectiveEstimate e,
        collectives.Estimate(CollectiveOp::kSendRecv, Bytes(0),
                             RankGroup{2, 1, RankGroup::Placement::kConsecutive}));
    alpha_off = e.time;
  }
  const Bandwidth fabric = node.fabric.bandwidth_per_device;
  Duration slowest = Duration::Zero();
  for (size_t r = 0; r < un; ++r) {
    const int64_t sent_on = traffic.bytes_sent[r] - traffic.sent_off_node[r];
    const int64_t received_on = traffic.bytes_received[r] - traffic.received_off_node[r];
    if ((sent_on > 0 || received_on > 0) && !(fabric > Bandwidth::Zero())) {
      return InvalidArgumentError("switch cost: node type '" + node.name +
                                  "' has no intra-node bandwidth (fabric.bandwidth_per_device)");
    }
    const Bandwidth nic = node.NicBandwidthPerDevice(static_cast<int>(r) % per_node);
    if ((traffic.sent_off_node[r] > 0 || traffic.received_off_node[r] > 0) &&
        !(nic > Bandwidth::Zero())) {
      return InvalidArgumentError("switch cost: device " + std::to_string(r % un) +
                                  " of node type '" + node.name + "' has no NIC bandwidth");
    }
    auto time = [&](int64_t on, int64_t off, int messages, int messages_off) {
      Duration t = Duration::Zero();
      if (on > 0) t = t + Bytes(on) / fabric;
      if (off > 0) t = t + Bytes(off) / nic;
      return t + alpha_on * (messages - messages_off) + alpha_off * messages_off;
    };
    const Duration out = time(sent_on, traffic.sent_off_node[r], traffic.messages_sent[r],
                              traffic.messages_sent_off_node[r]);
    const Duration in = time(received_on, traffic.received_off_node[r],
                             traffic.messages_received[r], traffic.messages_received_off_node[r]);
    slowest = std::max({slowest, out, in});
  }
  cost.in_memory = slowest;
  if (storage.has_value()) {
    cost.checkpoint = Bytes(traffic.old_state_bytes) / GBps(storage->write_gb_per_s) +
                      Bytes(traffic.new_state_bytes) / GBps(storage->read_gb_per_s);
    cost.via_checkpoint = *cost.checkpoint < cost.in_memory;
  }
  return cost;
}

Result<SwitchCost> EstimateSwitchCost(const ReshardTraffic& traffic,
                                      const topology::ClusterSpec& cluster,
                                      const std::optional<StorageBandwidth>& storage) {
  ORRERY_RETURN_IF_ERROR(CheckStorage(storage));
  if (traffic.total_bytes() == 0) return FreeSwitch(storage);
  ORRERY_ASSIGN_OR_RETURN(CollectiveModel model, CollectiveModel::Create(cluster));
  return EstimateSwitchCost(traffic, model, storage);
}

}  // namespace orrery::costmodel
