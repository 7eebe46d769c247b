// `orrery simulate`: replay one training iteration of a plan on the event
// simulator (sim/iteration.h) and report its time, throughput, MFU and
// per-stage breakdown: every rank and link (issue #5). With --analytical,
// also the analytical fast path's estimate (sim/analytical.h) of the same
// plan under the same options, and its gap to the simulation. With
// --slow-device / --degrade-link (sim/faults.h), simulates the plan twice,
// healthy and with the faults, and reports what the faults cost.
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
#include "core/text.h"
#include "core/units.h"
#include "costmodel/calibration.h"
#include "costmodel/collective.h"
#include "costmodel/compute.h"
#include "sim/analytical.h"
#include "sim/chrome_timeline.h"
#include "sim/faults.h"
#include "sim/iteration.h"
#include "topology/cluster_spec.h"
#include "topology/topology_graph.h"
#include "workload/model_spec.h"
#include "workload/plan.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "simulate";

constexpr std::string_view kUsage =
    "orrery simulate --model M --cluster C [--nodes N] (--plan FILE | flags)\n"
    "                   [simulation options] [--free-communication] [--analytical]\n"
    "                   [--slow-device RANK:FACTOR]... [--degrade-link LINK:FACTOR]...\n"
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
    "optimizer step and overlap slowdown.\n"
    "\n"
    "Stragglers and faults. --slow-device RANK:FACTOR makes every compute task of\n"
    "that rank FACTOR times as long (a throttled GPU); its whole tensor-parallel\n"
    "group runs at its pace, since the group synchronizes every layer.\n"
    "--degrade-link LINK:FACTOR divides a link's bandwidth by FACTOR: LINK is a\n"
    "directed link's name (\"node1/nic0->leaf0.rail0\") or a vertex's\n"
    "(\"node1/nic0\": every link into and out of it); `orrery clusters --cluster C\n"
    "--nodes N --links` lists them. FACTOR is a number from 1 to 1000; both flags\n"
    "repeat. The plan is then simulated twice, healthy and with the faults: the\n"
    "report is the faulted run's, followed by the healthy baseline, the cost in ms\n"
    "and %, tokens/s of both and the lane that bounds the faulted run. In JSON the\n"
    "top-level figures are the faulted run's and \"faults\" holds the comparison\n"
    "(slowdown: faulted / baseline - 1); --analytical is compared with the\n"
    "baseline (the analytical model does not see faults); --timeline writes the\n"
    "faulted run.";

constexpr std::string_view kExamples =
    "  orrery simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --micro-batch 2 --global-batch 64\n"
    "  orrery simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --micro-batch 2 --global-batch 64 --timeline timeline.json\n"
    "  orrery simulate --model gpt-1.7b --cluster dgx-a100-80gb --nodes 4 --tp 8 --pp 2 \\\n"
    "      --micro-batch 1 --global-batch 64 --analytical\n"
    "  orrery simulate --model llama3-70b --cluster dgx-h100 --nodes 8 --tp 8 --pp 4 \\\n"
    "      --micro-batch 1 --global-batch 512 --format json\n"
    "  orrery simulate --model gpt-1.7b --cluster dgx-h100 --nodes 2 --tp 2 --pp 4 \\\n"
    "      --micro-batch 2 --global-batch 64 --slow-device 13:1.2 --degrade-link node1/nic0:2\n"
    "  orrery clusters --cluster dgx-h100 --nodes 2 --links   # the link names\n";

std::string Gib(Bytes b) { return FixedText(static_cast<double>(b.count()) / (1 << 30), 1); }

// The analytical estimate's gap to the simulation, (a − s) / s.
double GapOf(const sim::AnalyticalEstimate& a, const sim::IterationReport& r) {
  return (a.iteration_time.ToSeconds() - r.iteration_time.ToSeconds()) /
         r.iteration_time.ToSeconds();
}

// "0-1", "3", "0-3,8-11": ranks as ranges.
std::string RanksText(const std::vector<int>& ranks) {
  std::string text;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!text.empty()) text += ",";
    text += std::to_string(ranks[i]);
    if (j > i) text += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return text;
}

// The faults of --slow-device and --degrade-link; InvalidArgument naming
// the flag.
Result<sim::Faults> FaultsFrom(const po::variables_map& vm) {
  sim::Faults faults;
  if (vm.count("slow-device") != 0) {
    for (const std::string& text : vm["slow-device"].as<std::vector<std::string>>()) {
      Result<sim::SlowDevice> s = sim::ParseSlowDevice(text);
      if (!s.ok()) return s.status().WithContext("--slow-device");
      faults.slow_devices.push_back(*s);
    }
  }
  if (vm.count("degrade-link") != 0) {
    for (const std::string& text : vm["degrade-link"].as<std::vector<std::string>>()) {
      Result<sim::DegradedLink> d = sim::ParseDegradedLink(text);
      if (!d.ok()) return d.status().WithContext("--degrade-link");
      faults.degraded_links.push_back(*d);
    }
  }
  return faults;
}

// The command that lists the links of the cluster of this command line.
std::string LinksCommand(const po::variables_map& vm) {
  std::string command = "orrery clusters --cluster " + vm["cluster"].as<std::string>();
  if (vm.count("nodes") != 0) command += " --nodes " + std::to_string(vm["nodes"].as<int>());
  return command + " --links";
}

// Checks the faults against the cluster's topology before any simulation;
// an unknown link name points at the listing of the link names.
Status CheckFaultsOn(const sim::Faults& faults, const topology::ClusterSpec& cluster,
                     const po::variables_map& vm) {
  ORRERY_ASSIGN_OR_RETURN(const topology::Topology topo, topology::Topology::Build(cluster));
  Status checked = sim::CheckFaults(faults, topo);
  if (checked.ok()) return checked;
  if (checked.code() == StatusCode::kNotFound) {
    checked = Status(checked.code(), checked.message() + " (`" + LinksCommand(vm) +
                                         "` lists the link names)");
  }
  return checked.WithContext("cluster " + cluster.name);
}

std::string FaultListText(const sim::Faults& faults) {
  std::string text;
  for (const sim::SlowDevice& s : faults.slow_devices) {
    text += (text.empty() ? "" : ", ") + std::string("slow device ") + sim::SlowDeviceText(s);
  }
  for (const sim::DegradedLink& d : faults.degraded_links) {
    text += (text.empty() ? "" : ", ") + std::string("degraded link ") + sim::DegradedLinkText(d);
  }
  return text;
}

// The comparison of the faulted run `r` with the healthy `baseline`.
std::string FaultsText(const sim::Faults& faults, const sim::IterationReport& baseline,
                       const sim::IterationReport& r) {
  const double base_s = baseline.iteration_time.ToSeconds();
  const double delta_s = r.iteration_time.ToSeconds() - base_s;
  std::ostringstream out;
  out << "\nFaults: " << FaultListText(faults) << "\n";
  out << "  baseline (healthy)  " << PadText(FormatDuration(baseline.iteration_time), 12)
      << FixedText(baseline.tokens_per_s, 0) << " tokens/s\n";
  out << "  with the faults     " << PadText(FormatDuration(r.iteration_time), 12)
      << FixedText(r.tokens_per_s, 0) << " tokens/s\n";
  out << "  cost                " << (delta_s >= 0 ? "+" : "") << FixedText(1e3 * delta_s, 1)
      << " ms per iteration (" << (delta_s >= 0 ? "+" : "") << FixedText(100 * delta_s / base_s, 1)
      << "%)\n";
  bool slow_lane = false;
  for (const sim::SlowDevice& s : faults.slow_devices) {
    for (const int rank : r.bound_ranks) slow_lane = slow_lane || rank == s.rank;
  }
  out << "  bound by            stage " << r.bound_stage << ", lane " << r.bound_replica
      << " (rank" << (r.bound_ranks.size() > 1 ? "s " : " ") << RanksText(r.bound_ranks)
      << (slow_lane ? ": the slow device's lane" : "") << "); healthy: stage "
      << baseline.bound_stage << ", lane " << baseline.bound_replica << "\n";
  return out.str();
}

Json FaultsJson(const sim::Faults& faults, const sim::IterationReport& baseline,
                const sim::IterationReport& r) {
  Json j = Json::object();
  Json slow = Json::array();
  for (const sim::SlowDevice& s : faults.slow_devices) {
    Json e = Json::object();
    e["rank"] = s.rank;
    e["factor"] = s.factor;
    slow.push_back(std::move(e));
  }
  Json links = Json::array();
  for (const sim::DegradedLink& d : faults.degraded_links) {
    Json e = Json::object();
    e["link"] = d.link;
    e["factor"] = d.factor;
    links.push_back(std::move(e));
  }
  j["slow_devices"] = std::move(slow);
  j["degraded_links"] = std::move(links);
  j["baseline_iteration_time_s"] = baseline.iteration_time.ToSeconds();
  j["iteration_time_s"] = r.iteration_time.ToSeconds();
  j["slowdown"] = r.iteration_time.ToSeconds() / baseline.iteration_time.ToSeconds() - 1.0;
  j["baseline_tokens_per_s"] = baseline.tokens_per_s;
  j["tokens_per_s"] = r.tokens_per_s;
  j["baseline_bound_stage"] = baseline.bound_stage;
  j["bound_stage"] = r.bound_stage;
  j["bound_lane"] = r.bound_replica;
  Json ranks = Json::array();
  for (const int rank : r.bound_ranks) ranks.push_back(rank);
  j["bound_ranks"] = std::move(ranks);
  return j;
}

// `healthy`: the run --analytical is compared with (r itself without faults).
std::string TextReport(const sim::IterationReport& r, const sim::IterationReport& healthy,
                       const workload::ModelSpec& model, const workload::Plan& plan,
                       const topology::ClusterSpec& cluster, bool free_comm,
                       const sim::AnalyticalEstimate* analytical,
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
    const double gap = 100 * GapOf(*analytical, healthy);
    out << "  analytical estimate  " << FixedText(analytical->iteration_time.ToSeconds(), 4)
        << " s (gap " << (gap >= 0 ? "+" : "") << FixedText(gap, 2) << "% vs simulated"
        << (&healthy != &r ? " without the faults" : "") << ")\n";
  }
  out << "  throughput       " << FixedText(r.tokens_per_s, 0) << " tokens/s, "
      << FixedText(r.samples_per_s, 2) << " samples/s\n";
  out << "  model TFLOP/s    " << FixedText(r.model_flops_per_device.FlopsPerSecond() / 1e12, 1)
      << " per GPU (hardware " << FixedText(r.hardware_flops_per_device.FlopsPerSecond() / 1e12, 1)
      << "); MFU " << FixedText(100 * r.mfu, 1) << "% of "
      << FixedText(r.peak_per_device.FlopsPerSecond() / 1e12, 0) << " TFLOP/s\n";
  out << "  peak memory      " << Gib(r.peak_memory) << " GiB of " << Gib(r.memory_capacity)
      << " GiB (usable " << Gib(r.usable_memory) << " GiB): "
      << (r.fits_memory ? "fits" : "DOES NOT FIT") << "\n";
  const sim::LaneTimes& b = r.breakdown;
  out << "  stage " << r.bound_stage << " ends last: compute " << FormatDuration(b.compute)
      << ", recompute " << FormatDuration(b.recompute) << ", exposed comm "
      << FormatDuration(b.exposed_comm) << ", bubble " << FormatDuration(b.bubble) << "\n\n";
  out << "  " << PadText("stage", 7) << PadText("rank", 6) << PadText("layers", 8) << PadText("fwd/mb", 10)
      << PadText("bwd/mb", 10) << PadText("comm/mb", 10) << PadText("compute", 10) << PadText("exposed", 10)
      << PadText("bubble", 10) << "peak memory\n";
  for (const sim::StageReport& st : r.stages) {
    out << "  " << PadText(std::to_string(st.stage), 7) << PadText(std::to_string(st.rank), 6)
        << PadText(std::to_string(st.layers), 8) << PadText(FormatDuration(st.forward), 10)
        << PadText(FormatDuration(st.backward), 10) << PadText(FormatDuration(st.path_comm), 10)
        << PadText(FormatDuration(st.times.compute + st.times.recompute), 10)
        << PadText(FormatDuration(st.times.exposed_comm), 10)
        << PadText(FormatDuration(st.times.bubble), 10) << Gib(st.peak_memory) << " GiB\n";
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
       "write the iteration as a Chrome trace (Perfetto, chrome://tracing) to FILE")
      ("slow-device", po::value<std::vector<std::string>>()->composing()->value_name(
           "RANK:FACTOR"),
       "rank RANK computes FACTOR (1 to 1000) times slower; repeatable")
      ("degrade-link", po::value<std::vector<std::string>>()->composing()->value_name(
           "LINK:FACTOR"),
       "divide the bandwidth of LINK (a link or vertex name, see `orrery clusters "
       "--links`) by FACTOR; repeatable");
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
  Result<sim::Faults> faults = FaultsFrom(vm);
  if (!faults.ok()) return ReportError(kCommand, faults.status(), io);
  if (!faults->empty()) {
    Status checked = CheckFaultsOn(*faults, cluster, vm);
    if (!checked.ok()) return ReportError(kCommand, checked, io);
  }
  const std::string timeline_path =
      vm.count("timeline") > 0 ? vm["timeline"].as<std::string>() : "";
  // With faults: the healthy baseline first, then the faulted run, which
  // the report (and the timeline) describe.
  std::optional<sim::IterationReport> baseline;
  if (!faults->empty()) {
    Result<sim::IterationReport> healthy = sim::SimulateIteration(model, plan, cluster, sim_options);
    if (!healthy.ok()) return ReportError(kCommand, healthy.status(), io);
    baseline = std::move(healthy).value();
    sim_options.faults = *faults;
  }
  sim::IterationTrace trace;
  Result<sim::IterationReport> report = sim::SimulateIteration(
      model, plan, cluster, sim_options, timeline_path.empty() ? nullptr : &trace);
  if (!report.ok()) return ReportError(kCommand, report.status(), io);
  // What --analytical is compared with: the healthy run.
  const sim::IterationReport& healthy_report = baseline.has_value() ? *baseline : *report;
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
      a["gap"] = GapOf(*analytical, healthy_report);
      j["analytical"] = a;
    }
    if (baseline.has_value()) j["faults"] = FaultsJson(*faults, *baseline, *report);
    io.out << DumpJson(j);
  } else {
    io.out << TextReport(*report, healthy_report, model, plan, cluster,
                         sim_options.free_communication,
                         analytical.has_value() ? &*analytical : nullptr,
                         inputs->calibration != nullptr
                             ? CalibrationLine(*inputs->calibration, inputs->cluster_source)
                             : "");
    if (baseline.has_value()) io.out << FaultsText(*faults, *baseline, *report);
    if (!timeline_path.empty()) {
      io.out << "\ntimeline written to " << timeline_path << " (open in https://ui.perfetto.dev)\n";
    }
  }
  return kExitOk;
}

}  // namespace orrery::cli
