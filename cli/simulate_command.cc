// `orrery simulate`: replay one training iteration of a plan on the event
// simulator (sim/iteration.h) and report its time, throughput, MFU and
// per-stage breakdown. First slice of issue #5: one pipeline with its
// pipeline traffic as flows; TP and DP collectives analytic.
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/plan_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/units.h"
#include "sim/chrome_timeline.h"
#include "sim/iteration.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "simulate";

constexpr std::string_view kUsage =
    "orrery simulate --model M --cluster C [--nodes N] (--plan FILE | flags)\n"
    "                   [--free-communication] [--timeline FILE] [--format text|json]";

constexpr std::string_view kDescription =
    "Simulates one training iteration of a plan on the discrete-event simulator:\n"
    "the forwards and backwards of one pipeline (the pp ranks of data-parallel\n"
    "replica 0) in the order of the schedule (gpipe or 1f1b), compute timed by\n"
    "the compute model, activations and gradients between stages as flows on the\n"
    "cluster's topology, then the data-parallel gradient all-reduce and the\n"
    "optimizer step. Prints the iteration time, tokens/s, model TFLOP/s per GPU,\n"
    "MFU and, per stage, compute, bubble and exposed communication.\n"
    "\n"
    "In this first slice the tensor-parallel collectives (in the compute path)\n"
    "and the data-parallel all-reduce (after the last backward, not overlapped)\n"
    "are analytic estimates of the collective cost model, not flows; the\n"
    "interleaved schedule and memory are not simulated yet.\n"
    "--free-communication makes every transfer and collective cost nothing.\n"
    "--timeline FILE writes the iteration as a Chrome trace (every forward,\n"
    "backward, pipeline transfer, gradient sync and optimizer step per stage)\n"
    "to open in https://ui.perfetto.dev or chrome://tracing.";

constexpr std::string_view kExamples =
    "  orrery simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --micro-batch 2 --global-batch 64\n"
    "  orrery simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --micro-batch 2 --global-batch 64 --timeline timeline.json\n"
    "  orrery simulate --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 8 --pp 4 \\\n"
    "      --micro-batch 1 --global-batch 512 --format json\n";

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string Pad(std::string s, size_t width) {
  if (s.size() < width) s.resize(width, ' ');
  return s;
}

// The stage whose end sets the iteration time.
size_t BoundingStage(const sim::IterationReport& r) {
  size_t best = 0;
  for (size_t s = 1; s < r.stages.size(); ++s) {
    if (r.stages[s].times.end > r.stages[best].times.end) best = s;
  }
  return best;
}

constexpr std::string_view kAnalyticNote =
    "TP collectives and the DP gradient all-reduce are analytic (collective cost\n"
    "        model), not flows, in this slice; the DP all-reduce is not overlapped with\n"
    "        backward";

std::string TextReport(const sim::IterationReport& r, const workload::ModelSpec& model,
                       const workload::Plan& plan, const topology::ClusterSpec& cluster,
                       bool free_comm) {
  std::ostringstream out;
  out << "Simulated iteration of " << model.name << " on " << cluster.name << " ("
      << r.devices << " devices), " << workload::PipelineScheduleName(r.schedule) << ", pp "
      << plan.pp << ", " << r.micro_batches << " micro-batches\n\n";
  out << "  iteration time   " << FormatDuration(r.iteration_time) << "\n";
  out << "  throughput       " << Fixed(r.tokens_per_s, 0) << " tokens/s, "
      << Fixed(r.samples_per_s, 2) << " samples/s\n";
  out << "  model TFLOP/s    " << Fixed(r.model_flops_per_device.FlopsPerSecond() / 1e12, 1)
      << " per GPU; MFU " << Fixed(100 * r.mfu, 1) << "% of "
      << Fixed(r.peak_per_device.FlopsPerSecond() / 1e12, 0) << " TFLOP/s\n";
  out << "  p2p transfer     " << r.p2p_bytes.count() << " bytes per micro-batch each way ("
      << r.flows << " flows)\n\n";
  out << "  " << Pad("stage", 7) << Pad("rank", 6) << Pad("layers", 8) << Pad("fwd/mb", 10)
      << Pad("bwd/mb", 10) << Pad("tp/mb", 10) << Pad("dp sync", 10) << Pad("optim", 10)
      << Pad("compute", 10) << Pad("bubble", 10) << "exposed comm\n";
  for (size_t s = 0; s < r.stages.size(); ++s) {
    const sim::StageReport& st = r.stages[s];
    out << "  " << Pad(std::to_string(s), 7) << Pad(std::to_string(st.rank), 6)
        << Pad(workload::LayerRangeName(st.first_layer, st.first_layer + st.layers - 1), 8)
        << Pad(FormatDuration(st.forward), 10) << Pad(FormatDuration(st.backward), 10)
        << Pad(FormatDuration(st.tp_comm), 10) << Pad(FormatDuration(st.gradient_sync), 10)
        << Pad(FormatDuration(st.optimizer), 10) << Pad(FormatDuration(st.times.busy), 10)
        << Pad(FormatDuration(st.times.bubble), 10) << FormatDuration(st.times.exposed_comm)
        << "\n";
  }
  out << "\n  Stage " << BoundingStage(r) << " bounds the iteration.\n";
  if (free_comm) {
    out << "  Communication is free (--free-communication).\n";
  } else {
    out << "  Note: " << kAnalyticNote << ".\n";
  }
  return out.str();
}

Json JsonReport(const sim::IterationReport& r, bool free_comm) {
  Json j = Json::object();
  j["iteration_time_s"] = r.iteration_time.ToSeconds();
  j["tokens_per_s"] = r.tokens_per_s;
  j["samples_per_s"] = r.samples_per_s;
  j["model_tflops_per_gpu"] = r.model_flops_per_device.FlopsPerSecond() / 1e12;
  j["mfu"] = r.mfu;
  j["devices"] = r.devices;
  j["schedule"] = std::string(workload::PipelineScheduleName(r.schedule));
  j["micro_batches"] = r.micro_batches;
  j["p2p_bytes"] = r.p2p_bytes.count();
  const sim::StageReport& bound = r.stages[BoundingStage(r)];
  Json breakdown = Json::object();
  breakdown["compute_s"] = bound.times.busy.ToSeconds();
  breakdown["exposed_comm_s"] = bound.times.exposed_comm.ToSeconds();
  breakdown["bubble_s"] = bound.times.bubble.ToSeconds();
  j["breakdown"] = breakdown;
  Json stages = Json::array();
  for (const sim::StageReport& st : r.stages) {
    Json s = Json::object();
    s["rank"] = st.rank;
    s["first_layer"] = st.first_layer;
    s["layers"] = st.layers;
    s["parameters"] = st.parameters;
    s["forward_per_micro_batch_s"] = st.forward.ToSeconds();
    s["backward_per_micro_batch_s"] = st.backward.ToSeconds();
    s["tp_comm_per_micro_batch_s"] = st.tp_comm.ToSeconds();
    s["gradient_sync_s"] = st.gradient_sync.ToSeconds();
    s["optimizer_s"] = st.optimizer.ToSeconds();
    s["compute_s"] = st.times.busy.ToSeconds();
    s["bubble_s"] = st.times.bubble.ToSeconds();
    s["exposed_comm_s"] = st.times.exposed_comm.ToSeconds();
    s["end_s"] = st.times.end.ToSeconds();
    stages.push_back(s);
  }
  j["per_stage"] = stages;
  j["free_communication"] = free_comm;
  j["notes"] = Json::array(
      {"TP collectives and the DP gradient all-reduce are analytic (collective cost model), "
       "not flows, in this slice; the DP all-reduce is not overlapped with backward"});
  return j;
}

}  // namespace

int RunSimulate(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  AddModelClusterOptions(options);
  options.add_options()
      ("free-communication", po::bool_switch(),
       "every transfer and collective costs nothing (compute only)")
      ("timeline", po::value<std::string>()->value_name("FILE"),
       "write the iteration as a Chrome trace (Perfetto, chrome://tracing) to FILE");
  AddFormatOption(options);
  AddPlanOptions(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  Result<PlanInputs> inputs = LoadPlanInputs(vm);
  if (!inputs.ok()) return ReportError(kCommand, inputs.status(), io);
  const workload::ModelSpec& model = inputs->model;
  const topology::ClusterSpec& cluster = inputs->cluster;
  const workload::Plan& plan = inputs->plan;

  sim::IterationOptions sim_options;
  sim_options.free_communication = vm["free-communication"].as<bool>();
  const std::string timeline_path =
      vm.count("timeline") > 0 ? vm["timeline"].as<std::string>() : "";
  sim::Timeline timeline;
  Result<sim::IterationReport> report = sim::SimulateIteration(
      model, plan, cluster, sim_options, timeline_path.empty() ? nullptr : &timeline);
  if (!report.ok()) return ReportError(kCommand, report.status(), io);
  if (!timeline_path.empty()) {
    Status written =
        WriteFileAtomically(timeline_path, DumpJson(sim::TimelineToChromeTrace(timeline)));
    if (!written.ok()) return ReportError(kCommand, written, io);
  }

  if (*format == OutputFormat::kJson) {
    Json j = JsonReport(*report, sim_options.free_communication);
    j["timeline"] = timeline_path.empty() ? Json(nullptr) : Json(timeline_path);
    io.out << DumpJson(j);
  } else {
    io.out << TextReport(*report, model, plan, cluster, sim_options.free_communication);
    if (!timeline_path.empty()) {
      io.out << "\ntimeline written to " << timeline_path << " (open in https://ui.perfetto.dev)\n";
    }
  }
  return kExitOk;
}

}  // namespace orrery::cli
