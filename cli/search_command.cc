// `orrery search`: the fastest plans that fit memory for a model on a
// cluster (search/search.h, issue #6): an algorithm scores the space with
// the analytical model, the best are re-scored by the event simulator.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/plan_options.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/text.h"
#include "core/units.h"
#include "search/phases.h"
#include "search/search.h"
#include "search/space.h"
#include "workload/hf_import.h"
#include "workload/phases.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "search";

constexpr std::string_view kUsage =
    "orrery search --model M --cluster C [--nodes N] --global-batch B [--seq-len S]\n"
    "                 [--memory-budget GiB] [--algorithm NAME] [--top K]\n"
    "                 [--time-limit SECONDS] [--seed N] [--samples N] [--analytical]\n"
    "                 [--out plan.json] [--format text|json]\n"
    "  orrery search --model M --cluster C [--nodes N] --phases FILE [--top K]\n"
    "                 [--single-plan-candidates N] [--analytical]\n"
    "                 [--out phases-with-plans.json] [...]";

constexpr std::string_view kDescription =
    "Searches the hybrid-parallel plans of a model on a cluster for the fastest\n"
    "training iteration that fits in memory. The space: pipeline degree pp,\n"
    "stage partition (even, or one or two layers fewer on the first and last\n"
    "stages), schedule (1f1b, gpipe, interleaved with vpp chunks), micro-batch\n"
    "size, device order (tensor-parallel groups on consecutive ranks or strided),\n"
    "and per layer tp, cp, dp, ep (MoE models), ZeRO 0-3, sequence parallelism\n"
    "and recomputation (none, selective, full), with the divisibility and\n"
    "attention-head rules applied. docs/search.md describes it.\n"
    "\n"
    "An algorithm scores candidates with the analytical model (the event\n"
    "simulator's costs without an event queue) and the memory model; the best\n"
    "--top K are then re-scored by the event simulator, which decides their\n"
    "order, and any whose simulated peak memory exceeds the budget is dropped.\n"
    "Algorithms (--algorithm): galvatron (decision-tree pruning and a dynamic\n"
    "program over layers; the default when built), exhaustive (every uniform\n"
    "plan), random (random layer-wise plans, --samples of them), anneal\n"
    "(simulated annealing over layer-wise plans, --samples evaluations).\n"
    "Every core is used; the answer is the same whatever their number (unless\n"
    "--time-limit cuts the search short). The memory budget defaults to the\n"
    "device's capacity less the memory model's 1 GiB reserve.\n"
    "\n"
    "Prints the best plans (simulated and analytical iteration time, tokens/s,\n"
    "peak memory), how many candidates were evaluated and how many were pruned\n"
    "and why (memory, divisibility, dominated, invalid, unsupported), and the\n"
    "search time. --out writes the best plan as a plan file for\n"
    "`orrery simulate --plan` and `orrery export --plan`.\n"
    "A calibrated cluster file (`orrery calibrate --out`) scores every plan with\n"
    "its measured operators, fitted collectives, optimizer step and overlap\n"
    "slowdown, in the analytical model and the simulator alike.\n"
    "--analytical ranks by the analytical model alone, with no event simulation\n"
    "(what a cluster of thousands of devices needs: simulating one plan on\n"
    "16,384 devices takes minutes, the search seconds).\n"
    "\n"
    "Phases (--phases FILE, docs/phases.md): training in phases, each with its\n"
    "tokens or steps, sequence length, global batch and optionally its own\n"
    "cluster or node count (the batch ramping up, the sequence growing for\n"
    "long-context training, nodes lost or added). Each phase is searched; its\n"
    "best --top K plans are candidates, and every candidate is scored on every\n"
    "phase it can run in, on one scale. Switching plans between phases moves\n"
    "parameters and optimizer states, in memory over the network or through a\n"
    "checkpoint at the file's storage bandwidth, whichever is faster; a shortest\n"
    "path over phases and candidates picks the plans with the least total time,\n"
    "keeping a plan where switching would cost more than it gains. Prints each\n"
    "phase's plan, iteration and phase time, each switch's bytes and time, and\n"
    "the total against the best single plan for the whole schedule: when every\n"
    "phase runs on one cluster, each phase is searched again (analytically) for\n"
    "--single-plan-candidates plans (default 50; 0: only the phases' own\n"
    "candidates), each is scored on every phase, and the least total that runs\n"
    "in all of them is that plan (a candidate too, so the schedule is never\n"
    "slower). The phases give the batch and sequence: --global-batch and\n"
    "--seq-len are refused with --phases. --out writes the phases file with\n"
    "every phase's chosen plan filled in, for `orrery execute --phases`.";

constexpr std::string_view kExamples =
    "  orrery search --model gpt-1.7b --cluster dgx-a100-80gb --nodes 1 --global-batch 64 \\\n"
    "      --algorithm exhaustive\n"
    "  orrery search --model llama3-70b --cluster dgx-h100 --nodes 8 --global-batch 512 \\\n"
    "      --seq-len 4096 --top 3 --out best.json\n"
    "  orrery search --model bert-large --cluster dgx-a100-80gb --nodes 1 --global-batch 64 \\\n"
    "      --memory-budget 8 --algorithm anneal --seed 2 --format json\n"
    "  # Llama 3's 8K phase then its 128K long-context phase, plan by plan:\n"
    "  cat > phases.json <<'EOF'\n"
    "  {\"phases\": [\n"
    "     {\"name\": \"8k\",   \"tokens\": \"15.6T\", \"seq_len\": 8192,   \"global_batch\": 2048},\n"
    "     {\"name\": \"128k\", \"tokens\": \"800B\",  \"seq_len\": 131072, \"global_batch\": 128}],\n"
    "   \"checkpoint\": {\"write_gb_per_s\": 1000}}\n"
    "  EOF\n"
    "  orrery search --model llama3-405b --cluster dgx-h100 --nodes 2048 --phases phases.json \\\n"
    "      --analytical --out planned.json   # then: orrery execute --phases planned.json\n"
    "  orrery search --model llama3-8b --cluster dgx-h100 --nodes 2 --algorithm exhaustive \\\n"
    "      --analytical --phases experiments/phases/llama3-8b-8k-64k.json\n";

double GibOf(Bytes b) { return static_cast<double>(b.count()) / (1 << 30); }

std::string DefaultAlgorithm() {
  const std::vector<std::string> names = search::SearchAlgorithmNames();
  for (const char* preferred : {"galvatron", "exhaustive"}) {
    for (const std::string& n : names) {
      if (n == preferred) return n;
    }
  }
  return names.empty() ? "exhaustive" : names.front();
}

std::string Prunes(const search::SearchResult& r) {
  std::string out;
  int64_t total = 0;
  for (const auto& [reason, count] : r.pruned) {
    if (!out.empty()) out += ", ";
    out += std::string(search::PruneReasonName(reason)) + " " + std::to_string(count);
    total += count;
  }
  if (out.empty()) return "none";
  return std::to_string(total) + " (" + out + ")";
}

std::string TextReport(const search::SearchResult& r, const search::SearchRequest& request,
                       Bytes budget, const std::string& calibrated) {
  std::ostringstream out;
  out << "Search [" << r.algorithm << "] for " << request.model.name << " on "
      << request.cluster.name << " (" << request.cluster.TotalDevices()
      << " devices): global batch " << request.global_batch_size << ", sequence "
      << request.sequence_length << ", memory budget " << FixedText(GibOf(budget), 1)
      << " GiB per device\n";
  if (!calibrated.empty()) out << calibrated << "\n";
  out << "\n";
  if (r.plans.empty()) {
    out << "  no plan fits\n";
  } else {
    size_t width = 4;
    std::vector<std::string> summaries;
    for (const search::Candidate& c : r.plans) {
      summaries.push_back(search::PlanSummary(c.plan));
      width = std::max(width, TextWidth(summaries.back()));
    }
    out << "  " << PadText("rank", 6) << PadText("plan", width + 2) << PadText("iteration", 12)
        << PadText("analytical", 12) << PadText("tokens/s", 12) << "peak memory\n";
    for (size_t k = 0; k < r.plans.size(); ++k) {
      const search::Candidate& c = r.plans[k];
      const search::Evaluation& e = c.simulated.has_value() ? *c.simulated : c.analytical;
      out << "  " << PadText(std::to_string(k + 1), 6) << PadText(summaries[k], width + 2)
          << PadText(FormatDuration(e.iteration_time), 12)
          << PadText(FormatDuration(c.analytical.iteration_time), 12)
          << PadText(FixedText(e.tokens_per_s, 0), 12) << FixedText(GibOf(e.peak_memory), 1) << " GiB\n";
    }
  }
  out << "\n  evaluated  " << r.evaluated << " plans\n";
  out << "  pruned     " << Prunes(r) << "\n";
  out << "  time       " << FixedText(r.search_time_s, 2) << " s search + "
      << FixedText(r.rescore_time_s, 2) << " s simulating the best";
  if (!request.rescore_with_simulator) out << " (--analytical: not simulated)";
  if (r.stopped_by_time_limit) out << " (stopped by --time-limit)";
  out << "\n";
  return out.str();
}

Json JsonReport(const search::SearchResult& r, Bytes budget) {
  Json j = Json::object();
  j["algorithm"] = r.algorithm;
  Json plans = Json::array();
  for (const search::Candidate& c : r.plans) {
    const search::Evaluation& e = c.simulated.has_value() ? *c.simulated : c.analytical;
    Json p = Json::object();
    p["summary"] = search::PlanSummary(c.plan);
    p["plan"] = workload::PlanToJson(c.plan);
    p["iteration_time_s"] = e.iteration_time.ToSeconds();
    p["analytical_iteration_time_s"] = c.analytical.iteration_time.ToSeconds();
    p["tokens_per_s"] = e.tokens_per_s;
    p["peak_memory_gib"] = GibOf(e.peak_memory);
    p["analytical_peak_memory_gib"] = GibOf(c.analytical.peak_memory);
    plans.push_back(p);
  }
  j["plans"] = plans;
  j["memory_budget_gib"] = GibOf(budget);
  j["search_time_s"] = r.search_time_s;
  j["rescore_time_s"] = r.rescore_time_s;
  j["evaluated"] = r.evaluated;
  Json pruned = Json::object();
  for (const auto& [reason, count] : r.pruned) {
    pruned[std::string(search::PruneReasonName(reason))] = count;
  }
  j["pruned"] = pruned;
  j["stopped_by_time_limit"] = r.stopped_by_time_limit;
  return j;
}

// The phases file to write for `orrery execute --phases`: `schedule` with
// its cluster files made absolute when they were relative to the read
// file's folder, so they resolve wherever the written file lies.
workload::PhaseSchedule WithPortableClusters(workload::PhaseSchedule schedule) {
  namespace fs = std::filesystem;
  const fs::path folder = fs::path(schedule.source).parent_path();
  for (workload::TrainingPhase& phase : schedule.phases) {
    if (phase.cluster.empty() || folder.empty()) continue;
    std::error_code ec;
    const fs::path beside = folder / phase.cluster;
    if (fs::path(phase.cluster).is_relative() && fs::is_regular_file(beside, ec)) {
      phase.cluster = fs::absolute(beside, ec).lexically_normal().string();
    }
  }
  return schedule;
}

// `orrery search --phases FILE`: search/phases.h.
int RunPhaseSearch(const po::variables_map& vm, const search::SearchRequest& base,
                   const std::string& algorithm, OutputFormat format,
                   const std::string& cluster_source, CommandIo& io) {
  const std::string path = vm["phases"].as<std::string>();
  Result<workload::PhaseSchedule> schedule = workload::LoadPhasesFile(path);
  if (!schedule.ok()) return ReportError(kCommand, schedule.status(), io);
  search::PhasePlanningRequest request;
  request.model = base.model;
  request.cluster = base.cluster;
  request.schedule = std::move(*schedule);
  request.algorithm = algorithm;
  request.base = base;
  if (vm.count("single-plan-candidates") > 0) {
    request.single_plan_candidates = vm["single-plan-candidates"].as<int>();
    if (request.single_plan_candidates < 0) {
      return ReportError(kCommand,
                         InvalidArgumentError("--single-plan-candidates: expected 0 or a "
                                              "positive integer, got " +
                                              std::to_string(request.single_plan_candidates)),
                         io);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const search::ProgressFn progress = [&](double, std::string_view note) {
    if (!note.empty() && !IsQuiet()) {
      io.err << "search --phases [" << FixedText(search::SecondsSince(start), 1) << " s] " << note
             << std::endl;
    }
  };
  Result<search::PhasePlan> plan = search::PlanPhases(request, progress);
  if (!plan.ok()) return ReportError(kCommand, plan.status(), io);

  const bool write = vm.count("out") > 0;
  if (write) {
    const workload::PhaseSchedule planned =
        WithPortableClusters(search::ScheduleWithPlans(request, *plan));
    Status written = WriteFileAtomically(vm["out"].as<std::string>(),
                                         DumpJson(workload::PhasesToJson(planned)));
    if (!written.ok()) return ReportError(kCommand, written, io);
  }
  if (format == OutputFormat::kJson) {
    Json j = search::PhasePlanToJson(request, *plan);
    j["phases_file"] = path;
    j["calibrated"] = base.calibration != nullptr;
    j["out"] = write ? Json(vm["out"].as<std::string>()) : Json(nullptr);
    io.out << DumpJson(j);
  } else {
    io.out << search::PhasePlanToText(request, *plan);
    if (base.calibration != nullptr) {
      io.out << "  " << CalibrationLine(*base.calibration, cluster_source) << "\n";
    }
    if (write) {
      io.out << "\n  phases with their plans written to " << vm["out"].as<std::string>()
             << " (for orrery execute --phases)\n";
    }
  }
  return kExitOk;
}

}  // namespace

int RunSearch(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  AddModelClusterOptions(options);
  options.add_options()
      ("global-batch", po::value<int>()->value_name("B"),
       "samples per iteration (required; not with --phases)")
      ("seq-len", po::value<int>()->value_name("S"),
       "tokens per sample (default: the model's training sequence length; not with --phases)")
      ("phases", po::value<std::string>()->value_name("FILE"),
       "plan every training phase of FILE (docs/phases.md) and the switches between them")
      ("single-plan-candidates", po::value<int>()->value_name("N"),
       "with --phases: plans of each phase's second, analytical search scored on every "
       "phase for the best single plan (default 50; 0: the phases' own candidates only)")
      ("analytical", po::bool_switch(),
       "rank by the analytical model only, no event simulation (thousands of devices)")
      ("memory-budget", po::value<double>()->value_name("GiB"),
       "usable memory per device in GiB (default: capacity less the 1 GiB reserve)")
      ("algorithm", po::value<std::string>()->value_name("NAME"),
       "galvatron, exhaustive, random or anneal (default: galvatron when built, "
       "else exhaustive)")
      ("top", po::value<int>()->default_value(5)->value_name("K"),
       "plans to re-score with the event simulator and print")
      ("time-limit", po::value<double>()->value_name("SECONDS"),
       "stop the algorithm after this long and report what it has")
      ("seed", po::value<uint64_t>()->default_value(1)->value_name("N"),
       "seed of random and anneal")
      ("samples", po::value<int64_t>()->value_name("N"),
       "plans random and anneal evaluate (default 2000 and 4000)")
      ("out", po::value<std::string>()->value_name("FILE"),
       "write the best plan as a plan file (for simulate --plan); with --phases, the "
       "phases file with every phase's plan (for execute --phases)");
  AddFormatOption(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  if (vm.count("model") == 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--model is required (a preset such as llama3-70b, "
                                            "or a config.json)"),
                       io);
  }
  if (vm.count("cluster") == 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--cluster is required (a preset such as dgx-h100, "
                                            "or a cluster JSON file)"),
                       io);
  }
  const bool phased = vm.count("phases") > 0;
  if (phased) {
    for (const char* option : {"global-batch", "seq-len"}) {
      if (vm.count(option) > 0) {
        return ReportError(
            kCommand,
            InvalidArgumentError(std::string("--") + option + ": with --phases every phase sets "
                                 "its own global_batch and seq_len in the phases file; leave --" +
                                 option + " out"),
            io);
      }
    }
  } else if (vm.count("single-plan-candidates") > 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--single-plan-candidates: only with --phases FILE "
                                            "(a single search has one shape)"),
                       io);
  } else if (vm.count("global-batch") == 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--global-batch is required (or --phases FILE)"), io);
  }
  search::SearchRequest request;
  std::string cluster_source;
  {
    Result<workload::ModelSpec> model = workload::LoadModel(vm["model"].as<std::string>());
    if (!model.ok()) return ReportError(kCommand, model.status(), io);
    request.model = std::move(*model);
    Result<ClusterInput> cluster = ClusterFromOptions(vm);
    if (!cluster.ok()) return ReportError(kCommand, cluster.status(), io);
    request.cluster = std::move(cluster->cluster);
    // A calibrated cluster: its models score every plan, and its overlap
    // slowdown applies to the estimate and the simulation alike.
    request.calibration = std::move(cluster->calibration);
    if (request.calibration != nullptr) {
      request.overlap_slowdown = request.calibration->overlap_slowdown.value_or(0.0);
    }
    cluster_source = cluster->source;
  }
  request.global_batch_size = phased ? 1 : vm["global-batch"].as<int>();
  if (request.global_batch_size < 1) {
    return ReportError(kCommand,
                       InvalidArgumentError("--global-batch: expected a positive integer, got " +
                                            std::to_string(request.global_batch_size)),
                       io);
  }
  request.sequence_length = vm.count("seq-len") > 0 ? vm["seq-len"].as<int>()
                                                    : request.model.default_sequence_length;
  if (request.sequence_length < 1) {
    return ReportError(kCommand,
                       InvalidArgumentError("--seq-len: expected a positive integer, got " +
                                            std::to_string(request.sequence_length)),
                       io);
  }
  if (vm.count("memory-budget") > 0) {
    const double gib = vm["memory-budget"].as<double>();
    if (!(gib > 0)) {
      return ReportError(kCommand,
                         InvalidArgumentError("--memory-budget: expected a positive number of "
                                              "GiB, got " + FixedText(gib, 2)),
                         io);
    }
    request.memory_budget = Bytes(static_cast<int64_t>(gib * static_cast<double>(1 << 30)));
  }
  request.top_k = vm["top"].as<int>();
  if (request.top_k < 1) {
    return ReportError(kCommand,
                       InvalidArgumentError("--top: expected a positive integer, got " +
                                            std::to_string(request.top_k)),
                       io);
  }
  if (vm.count("time-limit") > 0) {
    const double limit = vm["time-limit"].as<double>();
    if (!(limit > 0)) {
      return ReportError(kCommand,
                         InvalidArgumentError("--time-limit: expected a positive number of "
                                              "seconds, got " + FixedText(limit, 2)),
                         io);
    }
    request.time_limit_s = limit;
  }
  request.seed = vm["seed"].as<uint64_t>();
  if (vm.count("samples") > 0) {
    request.max_samples = vm["samples"].as<int64_t>();
    if (request.max_samples < 1) {
      return ReportError(kCommand,
                         InvalidArgumentError("--samples: expected a positive integer, got " +
                                              std::to_string(request.max_samples)),
                         io);
    }
  }
  const std::string algorithm =
      vm.count("algorithm") > 0 ? vm["algorithm"].as<std::string>() : DefaultAlgorithm();
  // Fail on an unknown name before any work.
  if (Result<std::unique_ptr<search::SearchAlgorithm>> made =
          search::MakeSearchAlgorithm(algorithm);
      !made.ok()) {
    return ReportError(kCommand, made.status(), io);
  }
  request.rescore_with_simulator = !vm["analytical"].as<bool>();
  if (phased) return RunPhaseSearch(vm, request, algorithm, *format, cluster_source, io);
  Result<search::Evaluator> evaluator = search::Evaluator::Create(request);
  if (!evaluator.ok()) return ReportError(kCommand, evaluator.status(), io);
  const Bytes budget = evaluator->memory_budget();

  constexpr int64_t kSteps = 1000;
  ProgressLine progress_line("search [" + algorithm + "]", kSteps, "steps");
  const search::ProgressFn progress = [&](double fraction, std::string_view) {
    if (fraction >= 0) progress_line.Update(static_cast<int64_t>(fraction * kSteps));
  };
  Result<search::SearchResult> result = search::RunSearch(request, algorithm, progress);
  progress_line.Finish();
  if (!result.ok()) return ReportError(kCommand, result.status(), io);

  if (vm.count("out") > 0 && !result->plans.empty()) {
    const std::string path = vm["out"].as<std::string>();
    Status written =
        WriteFileAtomically(path, DumpJson(workload::PlanToJson(result->plans.front().plan)));
    if (!written.ok()) return ReportError(kCommand, written, io);
  }
  if (*format == OutputFormat::kJson) {
    Json j = JsonReport(*result, budget);
    j["calibrated"] = request.calibration != nullptr;
    j["out"] = vm.count("out") > 0 && !result->plans.empty() ? Json(vm["out"].as<std::string>())
                                                             : Json(nullptr);
    io.out << DumpJson(j);
  } else {
    io.out << TextReport(*result, request, budget,
                         request.calibration != nullptr
                             ? CalibrationLine(*request.calibration, cluster_source)
                             : "");
    if (vm.count("out") > 0 && !result->plans.empty()) {
      io.out << "\nbest plan written to " << vm["out"].as<std::string>() << "\n";
    }
  }
  return result->plans.empty() ? kExitNo : kExitOk;
}

}  // namespace orrery::cli
