// `orrery calibrate`: fit the cost model of a cluster to measurements —
// Orrery's profiles and execution traces, nccl-tests logs, Galvatron's
// profiler files (traces/measurements.h) — with costmodel::Calibrate, write
// the cluster spec with its calibration (costmodel/calibration_json.h) and
// print what changed and how well each fit reproduces its points.
// docs/calibration.md describes the fits and the file.
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/command.h"
#include "cli/plan_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/text.h"
#include "costmodel/calibration.h"
#include "costmodel/calibration_json.h"
#include "topology/cluster_spec.h"
#include "traces/measurements.h"
#include "workload/hf_import.h"
#include "workload/model_spec.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "calibrate";

constexpr std::string_view kUsage =
    "orrery calibrate --cluster C [--nodes N] --from PATH... [--model M] [--precision P]\n"
    "                    [--out calibrated.json] [--format text|json]";

constexpr std::string_view kDescription =
    "Fits the cost model of a cluster to what was measured on it and writes the\n"
    "cluster spec with its calibration, which every command that takes --cluster\n"
    "reads back (search, simulate, validate, tune).\n"
    "\n"
    "--from takes files and directories (a directory: every file in it, not\n"
    "recursive; files of no known kind are skipped and listed). Each file is\n"
    "recognised by its content and name:\n"
    "  * Orrery compute profiles (`orrery profile`, compute_profile.json) and\n"
    "    execution traces (`orrery execute --trace-out`, execution_trace.json);\n"
    "  * nccl-tests logs (all_reduce_perf and friends; `orrery profile` writes them);\n"
    "  * Galvatron's profiler files: computation_profiling_*.json (whole-layer\n"
    "    times: need --model, the model they were measured on, and are taken at\n"
    "    --precision, default bf16), memory_profiling_*.json,\n"
    "    allreduce_bandwidth_*.json, p2p_bandwidth_*.json, sp_time_*.json and\n"
    "    overlap_coefficient.json.\n"
    "\n"
    "What is fitted (docs/calibration.md): the measured operator tables and the\n"
    "roofline's GEMM, attention and streaming-bandwidth efficiencies per\n"
    "precision; one efficiency scale for whole-layer timings; the optimizer step\n"
    "per parameter; alpha-beta regimes per collective and topology level; the\n"
    "overlap slowdown (compute overlapping data-parallel communication lasts\n"
    "1 + sigma times longer). A measurement that contradicts the cluster (a\n"
    "collective on more ranks than it holds, a precision its device lacks) is an\n"
    "error naming the file.\n"
    "\n"
    "--cluster is a preset or a cluster JSON file; a file written by an earlier\n"
    "calibrate carries its calibration, which is then the 'before' column (and is\n"
    "replaced, not merged: name every measurement again). Prints the files read\n"
    "and skipped, a table of what changed (quantity, before, after, residual of\n"
    "the fit) and every fit's residuals: rms and max of (model - measured) /\n"
    "measured over its points. --out writes the calibrated cluster atomically:\n"
    "nothing is written when anything fails.";

constexpr std::string_view kExamples =
    "  mpirun -np 2 orrery profile --backend cpu --out prof\n"
    "  orrery calibrate --cluster cpu-local --from prof --out cpu-calibrated.json\n"
    "  orrery calibrate --cluster cpu-calibrated.json --from prof tune/round0/trace/execution_trace.json\n"
    "  orrery calibrate --cluster dgx-a100-40gb --model llama2-7b \\\n"
    "      --from galvatron/hardware_configs/allreduce_bandwidth_1nodes_8gpus_per_node.json \\\n"
    "             galvatron/hardware_configs/p2p_bandwidth_1nodes_8gpus_per_node.json \\\n"
    "             galvatron/hardware_configs/overlap_coefficient.json \\\n"
    "             galvatron/main_gpt_llama2-7b/computation_profiling_bf16_llama2-7b_all.json \\\n"
    "      --out a100-calibrated.json\n"
    "  orrery calibrate --cluster dgx-a100-40gb --nodes 2 --model llama2-7b \\\n"
    "      --from galvatron/hardware_configs --format json\n";

std::string Percent(double fraction) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * fraction);
  return buf;
}

// Rows of cells as aligned columns, two spaces apart, indented by two.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  return FormatColumns(rows, 2);
}

struct Report {
  std::string cluster;
  std::string device;
  const traces::Measurements* measurements = nullptr;
  std::vector<costmodel::CalibrationChange> changes;
  const costmodel::Calibration* calibration = nullptr;
  bool had_calibration = false;
  std::optional<std::string> out;
};

std::string TextReport(const Report& r) {
  std::ostringstream out;
  out << "Calibrated " << r.cluster << " (" << r.device << ") from "
      << r.measurements->sources.size() << " file"
      << (r.measurements->sources.size() == 1 ? "" : "s");
  if (!r.measurements->skipped.empty()) {
    out << ", " << r.measurements->skipped.size() << " skipped";
  }
  out << "\n";
  std::vector<std::vector<std::string>> files;
  for (const std::string& s : r.measurements->sources) files.push_back({"read", s});
  for (const std::string& s : r.measurements->skipped) {
    files.push_back({"skipped", s + " (not a measurement)"});
  }
  out << Table(files) << "\n";

  out << "What changed (before: " << (r.had_calibration ? "the cluster file's calibration" : "the nominal model")
      << "):\n";
  if (r.changes.empty()) {
    out << "  nothing\n";
  } else {
    std::vector<std::vector<std::string>> rows = {{"quantity", "before", "after", "residual"}};
    for (const costmodel::CalibrationChange& c : r.changes) {
      rows.push_back({c.quantity, c.before, c.after, c.residual});
    }
    out << Table(rows);
  }
  out << "\nResiduals of the fits ((model - measured) / measured over each fit's points):\n";
  if (r.calibration->residuals.empty()) {
    out << "  none\n";
  } else {
    std::vector<std::vector<std::string>> rows = {{"quantity", "points", "rms", "max", "source"}};
    for (const costmodel::FitResidual& f : r.calibration->residuals) {
      rows.push_back({f.quantity, std::to_string(f.points), Percent(f.rms_relative_error),
                      Percent(f.max_relative_error), f.source});
    }
    out << Table(rows);
  }
  if (r.calibration->overlap_slowdown.has_value()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.4f", *r.calibration->overlap_slowdown);
    out << "\nOverlap slowdown sigma " << buf
        << " (compute overlapping data-parallel communication lasts 1 + sigma times longer)\n";
  }
  if (r.out.has_value()) {
    out << "\ncalibrated cluster written to " << *r.out << "\n";
  } else {
    out << "\n(nothing written: give --out FILE to keep the calibration)\n";
  }
  return out.str();
}

Json JsonReport(const Report& r) {
  Json j = Json::object();
  j["cluster"] = r.cluster;
  j["device"] = r.device;
  j["sources"] = r.measurements->sources;
  j["skipped"] = r.measurements->skipped;
  j["before"] = r.had_calibration ? "calibration" : "nominal";
  Json changes = Json::array();
  for (const costmodel::CalibrationChange& c : r.changes) {
    Json row = Json::object();
    row["quantity"] = c.quantity;
    row["before"] = c.before;
    row["after"] = c.after;
    row["residual"] = c.residual;
    changes.push_back(row);
  }
  j["changes"] = changes;
  Json residuals = Json::array();
  for (const costmodel::FitResidual& f : r.calibration->residuals) {
    Json row = Json::object();
    row["quantity"] = f.quantity;
    row["source"] = f.source;
    row["points"] = f.points;
    row["rms_relative_error"] = f.rms_relative_error;
    row["max_relative_error"] = f.max_relative_error;
    residuals.push_back(row);
  }
  j["residuals"] = residuals;
  j["overlap_slowdown"] = r.calibration->overlap_slowdown.has_value()
                              ? Json(*r.calibration->overlap_slowdown)
                              : Json(nullptr);
  j["out"] = r.out.has_value() ? Json(*r.out) : Json(nullptr);
  return j;
}

}  // namespace

int RunCalibrate(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("cluster", po::value<std::string>()->value_name("NAME|FILE"),
       "cluster preset or cluster JSON file, possibly already calibrated (required)")
      ("nodes", po::value<int>()->value_name("N"), "scale the cluster to N nodes")
      ("from", po::value<std::vector<std::string>>()->multitoken()->value_name("PATH..."),
       "measurement files and directories (required; may be repeated)")
      ("model", po::value<std::string>()->value_name("NAME|FILE"),
       "the model whole-layer timings were measured on (Galvatron's computation profiles)")
      ("precision", po::value<std::string>()->default_value("bf16")->value_name("P"),
       "precision of Galvatron's computation profiles (their files do not say)")
      ("out", po::value<std::string>()->value_name("FILE"),
       "write the calibrated cluster spec here (atomically)");
  AddFormatOption(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  if (vm.count("cluster") == 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--cluster is required (a preset such as cpu-local "
                                            "or dgx-a100-40gb, or a cluster JSON file)"),
                       io);
  }
  if (vm.count("from") == 0 || vm["from"].as<std::vector<std::string>>().empty()) {
    return ReportError(kCommand,
                       InvalidArgumentError("--from is required: the measurement files or "
                                            "directories (e.g. `orrery profile`'s --out)"),
                       io);
  }
  Result<topology::Precision> precision =
      topology::ParsePrecision(vm["precision"].as<std::string>());
  if (!precision.ok()) {
    return ReportError(kCommand, precision.status().WithContext("--precision"), io);
  }
  std::optional<int> nodes;
  if (vm.count("nodes") > 0) nodes = vm["nodes"].as<int>();
  const std::string cluster_name = vm["cluster"].as<std::string>();
  Result<ClusterInput> loaded = LoadClusterInput(cluster_name, nodes);
  if (!loaded.ok()) return ReportError(kCommand, loaded.status().WithContext("--cluster"), io);
  const topology::DeviceType& device = loaded->cluster.PrimaryNodeType().device;

  std::optional<workload::ModelSpec> model;
  if (vm.count("model") > 0) {
    Result<workload::ModelSpec> m = workload::LoadModel(vm["model"].as<std::string>());
    if (!m.ok()) return ReportError(kCommand, m.status().WithContext("--model"), io);
    model = std::move(*m);
  }

  traces::MeasurementLoadOptions load_options;
  load_options.galvatron_device = device.name;
  load_options.galvatron_precision = *precision;
  Result<traces::Measurements> measurements =
      traces::LoadMeasurements(vm["from"].as<std::vector<std::string>>(), load_options);
  if (!measurements.ok()) {
    return ReportError(kCommand, measurements.status().WithContext("--from"), io);
  }

  costmodel::CalibrationRequest request;
  request.cluster = loaded->cluster;
  request.measurements = *measurements;
  request.model = model.has_value() ? &*model : nullptr;
  request.layer_precision = *precision;
  Result<costmodel::Calibration> calibration = costmodel::Calibrate(request);
  if (!calibration.ok()) return ReportError(kCommand, calibration.status(), io);

  Report report;
  report.cluster = loaded->cluster.name;
  report.device = device.name;
  report.measurements = &*measurements;
  report.had_calibration = loaded->calibration != nullptr;
  report.changes =
      costmodel::DescribeChanges(loaded->cluster, loaded->calibration.get(), *calibration);
  report.calibration = &*calibration;
  if (vm.count("out") > 0) {
    const std::string path = vm["out"].as<std::string>();
    Status written = WriteFileAtomically(
        path, DumpJson(costmodel::CalibratedClusterToJson(loaded->cluster, *calibration)));
    if (!written.ok()) return ReportError(kCommand, written.WithContext("--out"), io);
    report.out = path;
  }
  io.out << (*format == OutputFormat::kJson ? DumpJson(JsonReport(report)) : TextReport(report));
  return kExitOk;
}

}  // namespace orrery::cli
