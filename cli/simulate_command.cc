// `orrery simulate`: replay one training iteration of a plan on the event
// simulator (sim/iteration.h) and report its time, throughput, MFU and
// per-stage breakdown: every rank and link (issue #5). With --analytical,
// also the analytical fast path's estimate (sim/analytical.h) of the same
// plan under the same options, and its gap to the simulation.
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/plan_options.h"
#include "cli/sim_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "sim/analytical.h"
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
    "                   [simulation options] [--free-communication] [--analytical]\n"
    "                   [--timeline FILE] [--format text|json]";

constexpr std::string_view kDescription =
    "Simulates one training iteration of a plan on the discrete-event simulator,\n"
    "every rank and every link: each pipeline stage's forward and backward passes\n"
    "per layer and micro-batch in the order of the schedule (gpipe, 1f1b or\n"
    "interleaved), the tensor/sequence-, context- and expert-parallel collectives\n"
    "in the compute path, pipeline sends on their own streams, the data-parallel\n"
    "gradient reduction in buckets overlapped with the last backward, ZeRO's\n"
    "reduce-scatters and all-gathers, recomputation and the optimizer step.\n"
    "Every collective and transfer is a flow on the cluster's links, sharing\n"
    "bandwidth max-min with the traffic it meets; compute comes from the compute\n"
    "model, each collective's uncontended time from NCCL's tuning model.\n"
    "Memory is tracked as allocations and frees over the run.\n"
    "\n"
    "Prints the iteration time, tokens/s, model TFLOP/s per GPU, MFU, the peak\n"
    "memory against the device's, and per stage where the time went (compute,\n"
    "recompute, exposed communication, pipeline bubble).\n"
    "--free-communication makes every transfer and collective cost nothing.\n"
    "--analytical also prints the analytical fast path's estimate of the same plan\n"
    "(the closed form the search scores plans with) and its gap to the simulation:\n"
    "zero where no traffic contends, negative where it does.\n"
    "--timeline FILE writes the iteration as a Chrome trace (one process per\n"
    "node, one track per rank and stream) to open in https://ui.perfetto.dev.\n"
    "A calibrated cluster file (`orrery calibrate --out`) is simulated with its\n"
    "measured operators, fitted roofline figures and collectives, measured\n"
    "optimizer step and overlap slowdown.";

constexpr std::string_view kExamples =
    "  orrery simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --micro-batch 2 --global-batch 64\n"
    "  orrery simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --micro-batch 2 --global-batch 64 --timeline timeline.json\n"
    "  orrery simulate --model gpt-1.7b --cluster dgx-a100-80gb --nodes 4 --tp 8 --pp 2 \\\n"
    "      --micro-batch 1 --global-batch 64 --analytical\n"
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

std::string Gib(Bytes b) { return Fixed(static_cast<double>(b.count()) / (1 << 30), 1); }

// The analytical estimate's gap to the simulation, (a − s) / s.
double GapOf(const sim::AnalyticalEstimate& a, const sim::IterationReport& r) {
  return (a.iteration_time.ToSeconds() - r.iteration_time.ToSeconds()) /
         r.iteration_time.ToSeconds();
}

std::string TextReport(const sim::IterationReport& r, const workload::ModelSpec& model,
                       const workload::Plan& plan, const topology::ClusterSpec& cluster,
                       bool free_comm, const sim::AnalyticalEstimate* analytical,
                       const std::string& calibrated) {
  const workload::LayerStrategy& l = plan.layers.front();
  std::ostringstream out;
  out << "Simulated iteration of " << model.name << " on " << cluster.name << " ("
      << r.devices << " devices): tp " << l.tp << ", pp " << plan.pp << ", dp " << l.dp;
  if (l.cp > 1) out << ", cp " << l.cp;
  if (l.ep > 1) out << ", ep " << l.ep;
  out << ", " << workload::PipelineScheduleName(r.schedule);
  if (r.vpp > 1) out << " (vpp " << r.vpp << ")";
  out << ", " << r.micro_batches << " micro-batches\n";
  if (!calibrated.empty()) out << calibrated << "\n";
  out << "\n";
  out << "  iteration time   " << FormatDuration(r.iteration_time) << "\n";
  if (analytical != nullptr) {
    const double gap = 100 * GapOf(*analytical, r);
    out << "  analytical estimate  " << Fixed(analytical->iteration_time.ToSeconds(), 4)
        << " s (gap " << (gap >= 0 ? "+" : "") << Fixed(gap, 2) << "% vs simulated)\n";
  }
  out << "  throughput       " << Fixed(r.tokens_per_s, 0) << " tokens/s, "
      << Fixed(r.samples_per_s, 2) << " samples/s\n";
  out << "  model TFLOP/s    " << Fixed(r.model_flops_per_device.FlopsPerSecond() / 1e12, 1)
      << " per GPU (hardware " << Fixed(r.hardware_flops_per_device.FlopsPerSecond() / 1e12, 1)
      << "); MFU " << Fixed(100 * r.mfu, 1) << "% of "
      << Fixed(r.peak_per_device.FlopsPerSecond() / 1e12, 0) << " TFLOP/s\n";
  out << "  peak memory      " << Gib(r.peak_memory) << " GiB of " << Gib(r.memory_capacity)
      << " GiB (usable " << Gib(r.usable_memory) << " GiB): "
      << (r.fits_memory ? "fits" : "DOES NOT FIT") << "\n";
  const sim::LaneTimes& b = r.breakdown;
  out << "  stage " << r.bound_stage << " ends last: compute " << FormatDuration(b.compute)
      << ", recompute " << FormatDuration(b.recompute) << ", exposed comm "
      << FormatDuration(b.exposed_comm) << ", bubble " << FormatDuration(b.bubble) << "\n\n";
  out << "  " << Pad("stage", 7) << Pad("rank", 6) << Pad("layers", 8) << Pad("fwd/mb", 10)
      << Pad("bwd/mb", 10) << Pad("comm/mb", 10) << Pad("compute", 10) << Pad("exposed", 10)
      << Pad("bubble", 10) << "peak memory\n";
  for (const sim::StageReport& st : r.stages) {
    out << "  " << Pad(std::to_string(st.stage), 7) << Pad(std::to_string(st.rank), 6)
        << Pad(std::to_string(st.layers), 8) << Pad(FormatDuration(st.forward), 10)
        << Pad(FormatDuration(st.backward), 10) << Pad(FormatDuration(st.path_comm), 10)
        << Pad(FormatDuration(st.times.compute + st.times.recompute), 10)
        << Pad(FormatDuration(st.times.exposed_comm), 10)
        << Pad(FormatDuration(st.times.bubble), 10) << Gib(st.peak_memory) << " GiB\n";
  }
  out << "\n  " << r.lanes << " lanes, " << r.tasks << " tasks, " << r.flows << " flows, "
      << r.events << " events";
  if (free_comm) out << "; communication is free (--free-communication)";
  out << "\n";
  return out.str();
}

Json Times(const sim::LaneTimes& t) {
  Json j = Json::object();
  j["compute_s"] = t.compute.ToSeconds();
  j["recompute_s"] = t.recompute.ToSeconds();
  j["exposed_comm_s"] = t.exposed_comm.ToSeconds();
  j["comm_in_path_s"] = t.comm_in_path.ToSeconds();
  j["bubble_s"] = t.bubble.ToSeconds();
  return j;
}

double GibOf(Bytes b) { return static_cast<double>(b.count()) / (1 << 30); }

Json JsonReport(const sim::IterationReport& r, bool free_comm) {
  Json j = Json::object();
  j["iteration_time_s"] = r.iteration_time.ToSeconds();
  j["tokens_per_s"] = r.tokens_per_s;
  j["samples_per_s"] = r.samples_per_s;
  j["model_tflops_per_gpu"] = r.model_flops_per_device.FlopsPerSecond() / 1e12;
  j["hardware_tflops_per_gpu"] = r.hardware_flops_per_device.FlopsPerSecond() / 1e12;
  j["mfu"] = r.mfu;
  j["peak_memory_gib"] = GibOf(r.peak_memory);
  j["memory_capacity_gib"] = GibOf(r.memory_capacity);
  j["usable_memory_gib"] = GibOf(r.usable_memory);
  j["fits_memory"] = r.fits_memory;
  j["breakdown"] = Times(r.breakdown);
  j["bound_stage"] = r.bound_stage;
  j["devices"] = r.devices;
  j["schedule"] = std::string(workload::PipelineScheduleName(r.schedule));
  j["vpp"] = r.vpp;
  j["micro_batches"] = r.micro_batches;
  j["p2p_bytes"] = r.p2p_bytes.count();
  Json stages = Json::array();
  for (const sim::StageReport& st : r.stages) {
    Json s = Json::object();
    s["stage"] = st.stage;
    s["rank"] = st.rank;
    s["first_layer"] = st.first_layer;
    s["layers"] = st.layers;
    s["parameters"] = st.parameters;
    s["forward_per_micro_batch_s"] = st.forward.ToSeconds();
    s["backward_per_micro_batch_s"] = st.backward.ToSeconds();
    s["recompute_per_micro_batch_s"] = st.recompute.ToSeconds();
    s["path_comm_per_micro_batch_s"] = st.path_comm.ToSeconds();
    s["times"] = Times(st.times);
    s["end_s"] = st.times.end.ToSeconds();
    s["peak_memory_gib"] = GibOf(st.peak_memory);
    s["estimated_memory_gib"] = GibOf(st.estimated_memory);
    stages.push_back(s);
  }
  j["per_stage"] = stages;
  j["free_communication"] = free_comm;
  j["lanes"] = r.lanes;
  j["tasks"] = r.tasks;
  j["flows"] = r.flows;
  j["events"] = r.events;
  return j;
}

}  // namespace

int RunSimulate(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  AddModelClusterOptions(options);
  options.add_options()
      ("free-communication", po::bool_switch(),
       "every transfer and collective costs nothing (compute only)")
      ("analytical", po::bool_switch(),
       "also print the analytical fast path's estimate and its gap to the simulation")
      ("timeline", po::value<std::string>()->value_name("FILE"),
       "write the iteration as a Chrome trace (Perfetto, chrome://tracing) to FILE");
  AddFormatOption(options);
  AddSimulationOptions(options);
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

  Result<sim::IterationOptions> parsed = SimulationOptionsFrom(
      vm, cluster.PrimaryNodeType().device, plan.precision, inputs->calibration);
  if (!parsed.ok()) return ReportError(kCommand, parsed.status(), io);
  sim::IterationOptions sim_options = *parsed;
  sim_options.free_communication = vm["free-communication"].as<bool>();
  const std::string timeline_path =
      vm.count("timeline") > 0 ? vm["timeline"].as<std::string>() : "";
  sim::IterationTrace trace;
  Result<sim::IterationReport> report = sim::SimulateIteration(
      model, plan, cluster, sim_options, timeline_path.empty() ? nullptr : &trace);
  if (!report.ok()) return ReportError(kCommand, report.status(), io);
  std::optional<sim::AnalyticalEstimate> analytical;
  if (vm["analytical"].as<bool>()) {
    // One model of the cluster, with the compute and collective models and
    // the optimizer step the simulation used (calibrated or nominal).
    const costmodel::Calibration* calibration = sim_options.calibration.get();
    Result<costmodel::ComputeModel> compute = costmodel::CalibratedComputeModel(
        cluster.PrimaryNodeType().device, plan.precision, calibration, sim_options.compute);
    if (!compute.ok()) return ReportError(kCommand, compute.status(), io);
    Result<costmodel::CollectiveModel> collectives =
        costmodel::CalibratedCollectiveModel(cluster, calibration);
    if (!collectives.ok()) return ReportError(kCommand, collectives.status(), io);
    std::vector<costmodel::ComputeModel> compute_models;
    compute_models.push_back(std::move(compute).value());
    Result<sim::AnalyticalModel> analytical_model = sim::AnalyticalModel::Create(
        cluster, std::move(compute_models), std::move(collectives).value());
    if (!analytical_model.ok()) return ReportError(kCommand, analytical_model.status(), io);
    sim::AnalyticalOptions analytical_options;
    analytical_options.graph = sim_options.graph;
    if (calibration != nullptr && !analytical_options.graph.optimizer_time_per_parameter) {
      analytical_options.graph.optimizer_time_per_parameter =
          calibration->optimizer_time_per_parameter;
    }
    analytical_options.free_communication = sim_options.free_communication;
    analytical_options.overlap_slowdown = sim_options.overlap_slowdown;
    Result<sim::AnalyticalEstimate> estimate =
        analytical_model->EstimateValidated(model, plan, analytical_options);
    if (!estimate.ok()) return ReportError(kCommand, estimate.status(), io);
    analytical = std::move(estimate).value();
  }
  if (!timeline_path.empty()) {
    Status written = WriteFileAtomically(timeline_path, DumpJson(sim::TraceToChromeTrace(trace)));
    if (!written.ok()) return ReportError(kCommand, written, io);
  }

  if (*format == OutputFormat::kJson) {
    Json j = JsonReport(*report, sim_options.free_communication);
    j["calibrated"] = inputs->calibration != nullptr;
    j["timeline"] = timeline_path.empty() ? Json(nullptr) : Json(timeline_path);
    if (analytical.has_value()) {
      Json a = Json::object();
      a["iteration_time_s"] = analytical->iteration_time.ToSeconds();
      a["gap"] = GapOf(*analytical, *report);
      j["analytical"] = a;
    }
    io.out << DumpJson(j);
  } else {
    io.out << TextReport(*report, model, plan, cluster, sim_options.free_communication,
                         analytical.has_value() ? &*analytical : nullptr,
                         inputs->calibration != nullptr
                             ? CalibrationLine(*inputs->calibration, inputs->cluster_source)
                             : "");
    if (!timeline_path.empty()) {
      io.out << "\ntimeline written to " << timeline_path << " (open in https://ui.perfetto.dev)\n";
    }
  }
  return kExitOk;
}

}  // namespace orrery::cli
