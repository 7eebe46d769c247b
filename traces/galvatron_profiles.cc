#include "traces/galvatron_profiles.h"

// The key formats are those Galvatron writes (PKU-DAIR/Hetu-Galvatron @
// cea12ffb):
//   galvatron/core/profiler/hardware_profiler.py  profile_bandwidth,
//       profile_sp_bandwidth, launch_nccl_test: the bandwidths are the last
//       number of nccl-tests' "Avg bus bandwidth" line (decimal GB/s, bus
//       bandwidth); sp_time sizes are int(bytes) // 1024 // 1024 (MiB) and
//       times nccl-tests' out-of-place µs / 1000 (ms).
//   galvatron/core/profiler/utils.py  save_profiled_memory (MiB = 2^20 B,
//       print_peak_memory divides by 2**20) and
//   galvatron/utils/config_utils.py  num2str ("layernum[1]", "seq2048").
// The profiler's older PyTorch backend (profile_allreduce.py) wrote the
// all-reduce bandwidth as bus-factor-scaled MiB per ms, 4.9% above decimal
// GB/s; nothing in a file says which backend wrote it, and the reader takes
// the NCCL backend's units, the default (--backend nccl).

#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <string_view>
#include <system_error>
#include <tuple>

#include "core/json.h"

namespace orrery::traces {
namespace {

// A positive decimal integer at the start of `s`, consumed.
std::optional<int> TakeCount(std::string_view& s) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || v <= 0 || ptr == s.data()) return std::nullopt;
  s.remove_prefix(static_cast<size_t>(ptr - s.data()));
  return v;
}

bool TakePrefix(std::string_view& s, std::string_view prefix) {
  if (!s.starts_with(prefix)) return false;
  s.remove_prefix(prefix.size());
  return true;
}

Status KeyError(const std::string& path, const std::string& key, std::string_view expected) {
  return InvalidArgumentError(path + ": field '" + key + "': expected a key of the form " +
                              std::string(expected));
}

// The value of `key` as a positive number in `unit`.
Result<double> PositiveValue(const std::string& path, const std::string& key, const Json& value,
                             std::string_view unit) {
  if (!value.is_number() || !std::isfinite(value.get<double>()) || !(value.get<double>() > 0)) {
    return InvalidArgumentError(path + ": field '" + key + "': expected a positive number (" +
                                std::string(unit) + "), got " + JsonSnippet(value));
  }
  return value.get<double>();
}

// The document at `path`; NotFound when there is no such file.
Result<Json> ReadDocument(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFoundError(path + ": no such file");
  return ReadJsonFile(path);
}

Result<Json> ReadObject(const std::string& path, std::string_view what) {
  ORRERY_ASSIGN_OR_RETURN(Json doc, ReadDocument(path));
  if (!doc.is_object()) {
    return InvalidArgumentError(path + ": expected an object of " + std::string(what) + ", got " +
                                JsonSnippet(doc));
  }
  return doc;
}

Bytes FromMiB(double mib) { return Bytes(std::llround(mib * 1024.0 * 1024.0)); }

}  // namespace

std::optional<GalvatronClusterShape> GalvatronShapeFromFileName(const std::string& path) {
  std::string_view name = path;
  if (size_t slash = name.rfind('/'); slash != std::string_view::npos) {
    name.remove_prefix(slash + 1);
  }
  // Every "_<N>nodes_<G>gpus_per_node" in the name; the last one wins.
  std::optional<GalvatronClusterShape> shape;
  for (size_t at = name.find('_'); at != std::string_view::npos; at = name.find('_', at + 1)) {
    std::string_view s = name.substr(at + 1);
    std::optional<int> nodes = TakeCount(s);
    if (!nodes || !TakePrefix(s, "nodes_")) continue;
    std::optional<int> gpus = TakeCount(s);
    if (!gpus || !TakePrefix(s, "gpus_per_node")) continue;
    if (!s.empty() && s.front() != '.' && s.front() != '_') continue;
    shape = GalvatronClusterShape{*nodes, *gpus};
  }
  return shape;
}

Result<GalvatronAllReduceBandwidth> LoadGalvatronAllReduceBandwidth(const std::string& path) {
  constexpr std::string_view kForm = "allreduce_size_<n>_consec_<0|1>";
  ORRERY_ASSIGN_OR_RETURN(Json doc, ReadObject(path, "\"allreduce_size_<n>_consec_<0|1>\": GB/s"));
  GalvatronAllReduceBandwidth table;
  table.source = path;
  table.shape = GalvatronShapeFromFileName(path);
  for (const auto& [key, value] : doc.items()) {
    std::string_view s = key;
    GalvatronAllReduceBandwidth::Entry e;
    std::optional<int> n;
    if (!TakePrefix(s, "allreduce_size_") || !(n = TakeCount(s)) || !TakePrefix(s, "_consec_") ||
        (s != "0" && s != "1")) {
      return KeyError(path, key, kForm);
    }
    e.ranks = *n;
    e.consecutive = s == "1";
    ORRERY_ASSIGN_OR_RETURN(double gbps, PositiveValue(path, key, value, "GB/s"));
    e.busbw = GBps(gbps);
    table.entries.push_back(e);
  }
  if (table.entries.empty()) {
    return InvalidArgumentError(path + ": no \"" + std::string(kForm) + "\" keys");
  }
  return table;
}

Result<GalvatronP2pBandwidth> LoadGalvatronP2pBandwidth(const std::string& path) {
  constexpr std::string_view kForm = "pp_size_<n>";
  ORRERY_ASSIGN_OR_RETURN(Json doc, ReadObject(path, "\"pp_size_<n>\": GB/s"));
  GalvatronP2pBandwidth table;
  table.source = path;
  table.shape = GalvatronShapeFromFileName(path);
  for (const auto& [key, value] : doc.items()) {
    std::string_view s = key;
    std::optional<int> n;
    if (!TakePrefix(s, "pp_size_") || !(n = TakeCount(s)) || !s.empty() || *n < 2) {
      return KeyError(path, key, "pp_size_<n> with n >= 2");
    }
    ORRERY_ASSIGN_OR_RETURN(double gbps, PositiveValue(path, key, value, "GB/s"));
    table.entries.push_back({*n, GBps(gbps)});
  }
  if (table.entries.empty()) {
    return InvalidArgumentError(path + ": no \"" + std::string(kForm) + "\" keys");
  }
  return table;
}

Result<GalvatronCollectiveTimes> LoadGalvatronCollectiveTimes(const std::string& path) {
  constexpr std::string_view kForm =
      "allreduce_size_<n>_<S>MB_time or all2all_size_<n>_<S>MB_time";
  ORRERY_ASSIGN_OR_RETURN(Json doc, ReadObject(path, "\"<op>_size_<n>_<S>MB_time\": ms"));
  GalvatronCollectiveTimes table;
  table.source = path;
  table.shape = GalvatronShapeFromFileName(path);
  for (const auto& [key, value] : doc.items()) {
    std::string_view s = key;
    GalvatronCollectiveTimes::Entry e;
    if (TakePrefix(s, "allreduce_size_")) {
      e.op = CollectiveOp::kAllReduce;
    } else if (TakePrefix(s, "all2all_size_")) {
      e.op = CollectiveOp::kAllToAll;
    } else {
      return KeyError(path, key, kForm);
    }
    std::optional<int> n, mib;
    if (!(n = TakeCount(s)) || !TakePrefix(s, "_") || !(mib = TakeCount(s)) ||
        s != "MB_time") {
      return KeyError(path, key, kForm);
    }
    e.ranks = *n;
    e.size = MiB(*mib);
    ORRERY_ASSIGN_OR_RETURN(double ms, PositiveValue(path, key, value, "ms"));
    e.time = Millis(ms);
    table.entries.push_back(e);
  }
  if (table.entries.empty()) {
    return InvalidArgumentError(path + ": no \"" + std::string(kForm) + "\" keys");
  }
  return table;
}

Result<double> LoadGalvatronOverlapCoefficient(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(Json doc, ReadDocument(path));
  JsonReader root(doc, path);
  ORRERY_RETURN_IF_ERROR(root.ExpectObject());
  ORRERY_ASSIGN_OR_RETURN(double c, root.Number("overlap_coe"));
  if (!std::isfinite(c) || c < 1.0) {
    return root.FieldError("overlap_coe", "expected a slowdown coefficient >= 1, got " +
                                              JsonSnippet(doc["overlap_coe"]));
  }
  ORRERY_RETURN_IF_ERROR(root.RejectUnknownFields());
  return c;
}

Result<GalvatronMemoryProfile> LoadGalvatronMemoryProfile(const std::string& path) {
  constexpr std::string_view kGroupForm = "<pp>_<tp>_<dp>[_c][_vtp][_sp]";
  constexpr std::string_view kEntryForm =
      "layernum[<L>]_bsz<b>_seq<s>_rank<r>_<ms|act|act_peak>";
  ORRERY_ASSIGN_OR_RETURN(Json doc, ReadObject(path, "strategies"));
  GalvatronMemoryProfile profile;
  profile.source = path;
  for (const auto& [group, values] : doc.items()) {
    if (group.starts_with("layertype_") || group.starts_with("other_memory_")) continue;
    GalvatronMemoryProfile::Entry base;
    base.strategy = group;
    std::string_view s = group;
    std::optional<int> pp, tp, dp;
    if (!(pp = TakeCount(s)) || !TakePrefix(s, "_") || !(tp = TakeCount(s)) ||
        !TakePrefix(s, "_") || !(dp = TakeCount(s))) {
      return KeyError(path, group, kGroupForm);
    }
    base.pp = *pp;
    base.tp = *tp;
    base.dp = *dp;
    base.checkpoint = TakePrefix(s, "_c");
    base.vocab_tp = TakePrefix(s, "_vtp");
    base.sequence_parallel = TakePrefix(s, "_sp");
    if (!s.empty()) return KeyError(path, group, kGroupForm);
    if (!values.is_object()) {
      return InvalidArgumentError(path + ": field '" + group + "': expected an object of \"" +
                                  std::string(kEntryForm) + "\": MiB, got " +
                                  JsonSnippet(values));
    }
    // One entry per (layers, bsz, seq, rank), in the order first seen.
    using Id = std::tuple<int, int, int, int>;
    std::map<Id, size_t> index;
    std::vector<GalvatronMemoryProfile::Entry> entries;
    std::vector<std::array<bool, 3>> seen;
    for (const auto& [key, value] : values.items()) {
      const std::string field = group + "." + key;
      std::string_view k = key;
      std::optional<int> layers, bsz, seq, rank;
      if (!TakePrefix(k, "layernum[") || !(layers = TakeCount(k)) || !TakePrefix(k, "]_bsz") ||
          !(bsz = TakeCount(k)) || !TakePrefix(k, "_seq") || !(seq = TakeCount(k)) ||
          !TakePrefix(k, "_rank")) {
        return KeyError(path, field, kEntryForm);
      }
      int r = 0;
      auto [ptr, ec] = std::from_chars(k.data(), k.data() + k.size(), r);
      if (ec != std::errc() || ptr == k.data() || r < 0) return KeyError(path, field, kEntryForm);
      k.remove_prefix(static_cast<size_t>(ptr - k.data()));
      rank = r;
      int which = -1;
      if (k == "_ms") which = 0;
      if (k == "_act") which = 1;
      if (k == "_act_peak") which = 2;
      if (which < 0) return KeyError(path, field, kEntryForm);
      ORRERY_ASSIGN_OR_RETURN(double mib, PositiveValue(path, field, value, "MiB"));
      Id id{*layers, *bsz, *seq, *rank};
      auto [it, fresh] = index.emplace(id, entries.size());
      if (fresh) {
        GalvatronMemoryProfile::Entry e = base;
        e.layers = *layers;
        e.micro_batch = *bsz;
        e.sequence_length = *seq;
        e.rank = *rank;
        entries.push_back(e);
        seen.push_back({false, false, false});
      }
      GalvatronMemoryProfile::Entry& e = entries[it->second];
      (which == 0 ? e.model_states : which == 1 ? e.activation : e.activation_peak) = FromMiB(mib);
      seen[it->second][static_cast<size_t>(which)] = true;
    }
    for (size_t i = 0; i < entries.size(); ++i) {
      for (size_t w = 0; w < 3; ++w) {
        if (seen[i][w]) continue;
        const GalvatronMemoryProfile::Entry& e = entries[i];
        static constexpr std::string_view kSuffix[3] = {"_ms", "_act", "_act_peak"};
        return InvalidArgumentError(
            path + ": field '" + group + "." + "layernum[" + std::to_string(e.layers) + "]_bsz" +
            std::to_string(e.micro_batch) + "_seq" + std::to_string(e.sequence_length) + "_rank" +
            std::to_string(e.rank) + std::string(kSuffix[w]) +
            "': missing (each rank has _ms, _act and _act_peak)");
      }
    }
    for (GalvatronMemoryProfile::Entry& e : entries) profile.entries.push_back(std::move(e));
  }
  if (profile.entries.empty()) {
    return InvalidArgumentError(path + ": no \"" + std::string(kGroupForm) + "\" strategies");
  }
  return profile;
}

}  // namespace orrery::traces
