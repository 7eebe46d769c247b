#include "traces/measurements.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

#include "core/file.h"
#include "core/json.h"
#include "core/statistics.h"

namespace orrery::traces {
namespace {

using workload::GemmShape;
using workload::OperatorClass;

enum class FileKind {
  kUnknown,
  kComputeProfile,
  kExecutionTrace,
  kNcclTestsLog,
  kGalvatronComputation,
  kGalvatronMemory,
  kGalvatronAllReduce,
  kGalvatronP2p,
  kGalvatronCollectiveTimes,
  kGalvatronOverlap,
};

bool StartsAndEnds(std::string_view name, std::string_view prefix, std::string_view suffix) {
  return name.size() >= prefix.size() + suffix.size() && name.starts_with(prefix) &&
         name.ends_with(suffix);
}

// Galvatron's files are recognised by their names alone (their contents are
// flat objects of numbers that say nothing of what they measure).
FileKind GalvatronKindOf(std::string_view name) {
  if (StartsAndEnds(name, "computation_profiling_", ".json")) {
    return FileKind::kGalvatronComputation;
  }
  if (StartsAndEnds(name, "memory_profiling_", ".json")) return FileKind::kGalvatronMemory;
  if (StartsAndEnds(name, "allreduce_bandwidth_", ".json")) return FileKind::kGalvatronAllReduce;
  if (StartsAndEnds(name, "p2p_bandwidth_", ".json")) return FileKind::kGalvatronP2p;
  if (StartsAndEnds(name, "sp_time_", ".json")) return FileKind::kGalvatronCollectiveTimes;
  if (name == "overlap_coefficient.json") return FileKind::kGalvatronOverlap;
  return FileKind::kUnknown;
}

// A line of nccl-tests' header at the start of a line: "# nThread ...",
// "# Collective test starting: ...", or the table's "out-of-place
// in-place" caption. (A note that merely quotes "# nThread" mid-line, as a
// fixture's .source.txt does, is not a log.)
bool LooksLikeNcclTestsLog(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# nThread ") || line.starts_with("# Collective test starting:")) {
      return true;
    }
    if (line.starts_with("#") && line.find("out-of-place") != std::string::npos &&
        line.find("in-place") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// The kind of the file at `path` whose text is `text`.
FileKind KindOf(const std::string& path, std::string_view text) {
  const std::string name = std::filesystem::path(path).filename().string();
  if (FileKind k = GalvatronKindOf(name); k != FileKind::kUnknown) return k;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '{') {
    Result<Json> doc = ParseJson(text, path);
    if (!doc.ok() || !doc->is_object()) return FileKind::kUnknown;
    auto format = doc->find("format");
    if (format != doc->end() && format->is_string() &&
        format->get<std::string>() == "orrery-execution-trace") {
      return FileKind::kExecutionTrace;
    }
    if (doc->contains("entries") && doc->contains("device")) return FileKind::kComputeProfile;
    return FileKind::kUnknown;
  }
  if (LooksLikeNcclTestsLog(text)) return FileKind::kNcclTestsLog;
  return FileKind::kUnknown;
}

Status LoadFile(const std::string& path, FileKind kind, std::string_view text,
                const MeasurementLoadOptions& options, Measurements& out) {
  switch (kind) {
    case FileKind::kUnknown:
      break;
    case FileKind::kComputeProfile: {
      ORRERY_ASSIGN_OR_RETURN(ComputeProfile p, ParseComputeProfile(text, path));
      if (p.source.empty()) p.source = path;
      out.compute_profiles.push_back(std::move(p));
      break;
    }
    case FileKind::kExecutionTrace: {
      ORRERY_ASSIGN_OR_RETURN(ExecutionTrace trace, ParseExecutionTrace(text, path));
      ORRERY_ASSIGN_OR_RETURN(ComputeProfile p, ComputeProfileFromTrace(trace, path));
      out.compute_profiles.push_back(std::move(p));
      break;
    }
    case FileKind::kNcclTestsLog: {
      ORRERY_ASSIGN_OR_RETURN(NcclTestsLog log, ParseNcclTestsLog(text, path));
      out.nccl_logs.push_back(NamedNcclTestsLog{path, std::move(log)});
      break;
    }
    case FileKind::kGalvatronComputation: {
      if (options.galvatron_device.empty()) {
        return InvalidArgumentError(
            path + ": a Galvatron computation profile does not say which device measured it; "
                   "name the device (MeasurementLoadOptions::galvatron_device)");
      }
      ORRERY_ASSIGN_OR_RETURN(ComputeProfile p,
                              ImportGalvatronComputationProfile(path, options.galvatron_device,
                                                                options.galvatron_precision));
      out.compute_profiles.push_back(std::move(p));
      break;
    }
    case FileKind::kGalvatronMemory: {
      ORRERY_ASSIGN_OR_RETURN(GalvatronMemoryProfile p, LoadGalvatronMemoryProfile(path));
      out.memory_profiles.push_back(std::move(p));
      break;
    }
    case FileKind::kGalvatronAllReduce: {
      ORRERY_ASSIGN_OR_RETURN(GalvatronAllReduceBandwidth p, LoadGalvatronAllReduceBandwidth(path));
      out.allreduce_bandwidth.push_back(std::move(p));
      break;
    }
    case FileKind::kGalvatronP2p: {
      ORRERY_ASSIGN_OR_RETURN(GalvatronP2pBandwidth p, LoadGalvatronP2pBandwidth(path));
      out.p2p_bandwidth.push_back(std::move(p));
      break;
    }
    case FileKind::kGalvatronCollectiveTimes: {
      ORRERY_ASSIGN_OR_RETURN(GalvatronCollectiveTimes p, LoadGalvatronCollectiveTimes(path));
      out.collective_times.push_back(std::move(p));
      break;
    }
    case FileKind::kGalvatronOverlap: {
      ORRERY_ASSIGN_OR_RETURN(double c, LoadGalvatronOverlapCoefficient(path));
      if (out.overlap_coefficient.has_value()) {
        return InvalidArgumentError(path + ": a second overlap coefficient (the first came from " +
                                    out.overlap_source + ")");
      }
      out.overlap_coefficient = c;
      out.overlap_source = path;
      break;
    }
  }
  return Status::Ok();
}

// Reads and loads one file; `named` when the person named it (a file of no
// known kind is then an error, else it is skipped).
Status LoadPath(const std::string& path, bool named, const MeasurementLoadOptions& options,
                Measurements& out) {
  ORRERY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  const FileKind kind = KindOf(path, text);
  if (kind == FileKind::kUnknown) {
    if (named) {
      return InvalidArgumentError(
          path + ": not a measurement Orrery reads (expected an Orrery compute profile or "
                 "execution trace, an nccl-tests log, or a Galvatron profile named "
                 "computation_profiling_*.json, memory_profiling_*.json, "
                 "allreduce_bandwidth_*.json, p2p_bandwidth_*.json, sp_time_*.json or "
                 "overlap_coefficient.json)");
    }
    out.skipped.push_back(path);
    return Status::Ok();
  }
  ORRERY_RETURN_IF_ERROR(LoadFile(path, kind, text, options, out));
  out.sources.push_back(path);
  return Status::Ok();
}

// ---- Execution traces -------------------------------------------------------

// The cost model's class of an executor operator, by its name (the executor
// names its operators as workload/operators.h does; execution_trace.h).
OperatorClass ClassOfTraceOp(std::string_view name, bool has_gemm) {
  if (name.ends_with(".core") || name.ends_with(".qk") || name.ends_with(".av")) {
    return OperatorClass::kAttention;
  }
  if (has_gemm) return OperatorClass::kGemm;
  if (name.starts_with("embed.")) return OperatorClass::kEmbedding;
  if (name.ends_with(".loss")) return OperatorClass::kLoss;
  if (name.ends_with("norm")) return OperatorClass::kNorm;
  return OperatorClass::kElementwise;
}

double MnkBatch(const GemmShape& g) {
  return static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k) *
         static_cast<double>(g.batch);
}

// The samples of one (name, shape) over the timed iterations: each sample
// is the time of the operator in one (rank, iteration, chunk, layer,
// micro-batch), summed over its occurrences there (the vocabulary-parallel
// loss runs as several kernels between all-reduces).
struct OpSamples {
  std::map<std::tuple<int, int, int, int, int>, Duration> forward;
  std::map<std::tuple<int, int, int, int, int>, Duration> backward;
};

std::vector<Duration> Values(const std::map<std::tuple<int, int, int, int, int>, Duration>& m) {
  std::vector<Duration> out;
  out.reserve(m.size());
  for (const auto& [key, d] : m) out.push_back(d);
  return out;
}

}  // namespace

Result<Measurements> LoadMeasurements(const std::vector<std::string>& paths,
                                      const MeasurementLoadOptions& options) {
  Measurements out;
  for (const std::string& path : paths) {
    std::error_code ec;
    const std::filesystem::file_status st = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(st)) {
      return NotFoundError(path + ": no such file or directory");
    }
    if (std::filesystem::is_directory(st)) {
      std::vector<std::string> files;
      for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
        if (e.is_regular_file()) files.push_back(e.path().string());
      }
      if (ec) return IoError(path + ": cannot list the directory: " + ec.message());
      std::sort(files.begin(), files.end());
      for (const std::string& file : files) {
        ORRERY_RETURN_IF_ERROR(LoadPath(file, /*named=*/false, options, out));
      }
    } else {
      ORRERY_RETURN_IF_ERROR(LoadPath(path, /*named=*/true, options, out));
    }
  }
  if (out.empty()) {
    std::string named;
    for (const std::string& p : paths) named += (named.empty() ? "" : ", ") + p;
    return InvalidArgumentError("no measurements in " + (named.empty() ? "(no paths)" : named));
  }
  return out;
}

Result<ComputeProfile> ComputeProfileFromTrace(const ExecutionTrace& trace,
                                               const std::string& source) {
  std::map<int, bool> warmup;
  for (const ExecutionIteration& it : trace.iterations) warmup[it.iteration] = it.warmup;
  // (name, m, n, k, batch; 0s when no shape) → samples. Ordered, so that the
  // entries come out in a fixed order.
  using Key = std::tuple<std::string, int64_t, int64_t, int64_t, int64_t>;
  std::map<Key, OpSamples> ops;
  std::map<Key, std::optional<GemmShape>> shapes;
  for (const ExecutionOp& op : trace.ops) {
    if (op.kind != ExecutionOpKind::kCompute) continue;
    if (op.phase != ExecutionPhase::kForward && op.phase != ExecutionPhase::kBackward) continue;
    auto w = warmup.find(op.iteration);
    if (w == warmup.end() || w->second) continue;  // warm-up, or no iteration summary
    const GemmShape g = op.gemm.value_or(GemmShape{0, 0, 0, 0});
    const Key key{op.name, g.m, g.n, g.k, g.batch};
    shapes[key] = op.gemm;
    const auto sample = std::make_tuple(op.rank, op.iteration, op.chunk, op.layer.value_or(-1),
                                        op.micro_batch.value_or(-1));
    OpSamples& s = ops[key];
    (op.phase == ExecutionPhase::kForward ? s.forward : s.backward)[sample] += op.duration();
  }
  ComputeProfile profile;
  profile.device = trace.device.empty() ? trace.backend : trace.device;
  if (profile.device.empty()) {
    return InvalidArgumentError(source + ": the trace names no device");
  }
  // The executor's backends compute in fp32 whatever the plan's precision.
  profile.precision = topology::Precision::kFp32;
  profile.source = source + " (execution trace of " + trace.model + " on " +
                   std::to_string(trace.world_size) + " ranks; median per operator over timed "
                   "iterations of every rank)";
  for (const auto& [key, s] : ops) {
    if (s.forward.empty()) continue;
    const std::string& name = std::get<0>(key);
    const std::optional<GemmShape>& gemm = shapes[key];
    ComputeProfileEntry e;
    e.op_class = ClassOfTraceOp(name, gemm.has_value());
    e.name = name;
    e.gemm = gemm;
    if (gemm.has_value()) {
      if (name.ends_with(".core")) {
        // The executor's fused attention core, over the cost model's QKᵀ
        // shape (s × s_full × head_dim, batch·heads): QKᵀ and A·V at 2mnk
        // each and the softmax at 5 FLOPs per score, as
        // workload/operators.cc counts the three unfused operators.
        const std::string prefix = name.substr(0, name.size() - 5);
        e.covers = {prefix + ".qk", prefix + ".softmax", prefix + ".av"};
        const double scores = static_cast<double>(gemm->m) * static_cast<double>(gemm->n) *
                              static_cast<double>(gemm->batch);
        e.forward_flops = Flop(2.0 * MnkBatch(*gemm) + 5.0 * scores + 2.0 * MnkBatch(*gemm));
      } else {
        e.forward_flops = Flop(2.0 * MnkBatch(*gemm));
      }
    }
    e.forward = std::max(Median(Values(s.forward)), Nanos(1));
    if (!s.backward.empty()) e.backward = std::max(Median(Values(s.backward)), Nanos(1));
    profile.entries.push_back(std::move(e));
  }
  if (profile.entries.empty()) {
    return InvalidArgumentError(source +
                                ": no timed forward compute operators (every iteration is a "
                                "warm-up, or the trace holds no compute operators)");
  }
  return profile;
}

}  // namespace orrery::traces
