// `orrery capacity`: what-if capacity planning over hypothetical clusters
// (search/capacity.h, docs/capacity.md, issue #9). Under mpirun the
// distinct searches are dealt to the ranks and gathered on rank 0, which
// alone prints and writes. With --phases (issue #10,
// search/capacity_phases.h) every point is planned phase by phase, on
// rank 0 alone.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/command.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/text.h"
#include "exec/mpi_world.h"
#include "search/capacity.h"
#include "search/capacity_phases.h"
#include "search/search.h"
#include "workload/hf_import.h"
#include "workload/phases.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "capacity";

constexpr std::string_view kUsage =
    "orrery capacity --model M --tokens T --sweep sweep.json [--global-batch B]\n"
    "                   [--seq-len S] [--out DIR] [--sensitivity LIST] [--simulate-best]\n"
    "                   [--bound-share F] [--time-limit SECONDS] [--algorithm NAME]\n"
    "                   [--format text|json]\n"
    "  orrery capacity --model M --phases FILE --sweep sweep.json [--out DIR]\n"
    "                   [--simulate-best] [--time-limit SECONDS] [--algorithm NAME]\n"
    "                   [--format text|json]";

constexpr std::string_view kDescription =
    "What-if capacity planning: how long, and at what cost, training a model on\n"
    "T tokens takes on clusters you may not have. The sweep file lists cluster\n"
    "families; every combination of their listed values is one point:\n"
    "\n"
    "  {\"clusters\": [{\"name\": \"h100\", \"cluster\": \"dgx-h100\",\n"
    "                 \"devices\": [1024, 2048], \"nic_gbps\": [400, 800],\n"
    "                 \"price_per_device_hour\": 2.5}]}\n"
    "\n"
    "Fields of a cluster: name; cluster (a preset or a cluster JSON file);\n"
    "nodes or devices (a list; devices a multiple of the devices per node);\n"
    "optional lists nic_gbps (NIC bandwidth per device, Gb/s), oversubscription\n"
    "(of the top network tier, >= 1) and memory_gib (per device); and\n"
    "price_per_device_hour (USD). docs/capacity.md describes each.\n"
    "\n"
    "For each point the search (default galvatron) finds the fastest plan that\n"
    "fits memory, ranked by the analytical model; the event simulator is not\n"
    "run unless --simulate-best asks (it simulates each chosen plan: minutes\n"
    "per point at 10,000+ devices). Reported: the plan, iteration time, tokens/s\n"
    "(global batch × seq len / iteration), days to train T tokens, device-hours\n"
    "(devices × seconds / 3600), cost (device-hours × price), MFU (model FLOPs,\n"
    "6N + attention, no recomputation, over every device's dense bf16 peak) and\n"
    "the bound: the largest of pipeline bubble, memory capacity (recomputation,\n"
    "or no plan fits) and the communication of each level\n"
    "(intra-node:<fabric>, network:<tier>) when it takes at least 25% of the\n"
    "iteration (--bound-share), else compute. Then the days with twice the\n"
    "NIC bandwidth, twice the memory per device and twice the devices, each\n"
    "from its own search (--sensitivity picks which; each costs as much as a\n"
    "point's search).\n"
    "A larger cluster never reports a slower plan than a smaller point of the\n"
    "same family: it may run that plan on part of its devices (devices_used).\n"
    "Equal clusters are searched once.\n"
    "\n"
    "Stragglers and faults: a top-level \"faults\" list of scenarios, e.g.\n"
    "  \"faults\": [{\"name\": \"slow-gpu\", \"slow_device\": [\"0:1.2\"]},\n"
    "             {\"name\": \"half-nic\", \"degrade_link\": [\"node0/nic0:2\"]}]\n"
    "(the forms of `orrery simulate --slow-device/--degrade-link`): each point's\n"
    "best plan is event-simulated healthy and under each scenario, and the\n"
    "slowdown and the days at that pace are reported (CSV columns\n"
    "fault_<name>_slowdown, fault_<name>_days).\n"
    "\n"
    "Output: a table on stdout (--format json: the JSON), one progress line per\n"
    "search on stderr; --out DIR writes DIR/capacity.csv and DIR/capacity.json,\n"
    "only when every search succeeded. Every core is used; under\n"
    "`mpirun -np N orrery capacity ...` the searches are dealt to N ranks\n"
    "(largest clusters first) and the result is the same as one rank's.\n"
    "\n"
    "Phases (--phases FILE, the file of `orrery search --phases`, docs/phases.md):\n"
    "training in phases (a batch ramp, a long-context phase), each with its tokens\n"
    "or steps, global_batch and seq_len. Every point is planned phase by phase:\n"
    "each phase's best 5 plans are candidates, every candidate is scored on every\n"
    "phase, switches between plans are priced (in memory, or through the file's\n"
    "checkpoint storage) and the plans with the least total time are chosen.\n"
    "Reported per point: days (every phase plus every switch), the switches and\n"
    "their time, the days of the best single plan for every phase (none when no\n"
    "candidate runs in every phase) and the saving over it, and the cost\n"
    "(device-hours of every phase and switch × price). The phases give the tokens,\n"
    "batch and sequence: --tokens, --global-batch and --seq-len are refused with\n"
    "--phases. A phase runs on the point's cluster, or with \"nodes\" on that many\n"
    "nodes of it; a phase naming its own \"cluster\" is refused (the sweep says\n"
    "which machines). Not with --phases: --sensitivity (no ×2 searches are run),\n"
    "the sweep's \"faults\" and --bound-share (no bound is reported); each is\n"
    "refused. --simulate-best scores every candidate on every phase with the event\n"
    "simulator (slow at thousands of devices). --out DIR writes\n"
    "DIR/capacity-phases.csv and DIR/capacity-phases.json. Under mpirun, rank 0\n"
    "alone plans every point.";

constexpr std::string_view kExamples =
    "  orrery capacity --model llama3-70b --tokens 15T --global-batch 2048 --seq-len 8192 \\\n"
    "      --sweep sweep.json --out results/\n"
    "  orrery capacity --model gpt-1.7b --tokens 300B --global-batch 64 --sweep small.json \\\n"
    "      --format json\n"
    "  mpirun -np 4 orrery capacity --model llama3-70b --tokens 15e12 --sweep sweep.json\n"
    "  # a batch ramp then the main phase, on every point of the sweep:\n"
    "  cat > ramp.json <<'EOF'\n"
    "  {\"phases\": [\n"
    "     {\"name\": \"ramp\", \"tokens\": \"2B\",   \"seq_len\": 2048, \"global_batch\": 16},\n"
    "     {\"name\": \"main\", \"tokens\": \"100B\", \"seq_len\": 2048, \"global_batch\": 256}]}\n"
    "  EOF\n"
    "  orrery capacity --model gpt-1.7b --phases ramp.json --sweep small.json --out results/\n";

std::string DefaultAlgorithm() {
  const std::vector<std::string> names = search::SearchAlgorithmNames();
  for (const char* preferred : {"galvatron", "exhaustive"}) {
    for (const std::string& n : names) {
      if (n == preferred) return n;
    }
  }
  return names.empty() ? "exhaustive" : names.front();
}

// The progress line of one finished search.
std::string JobLine(const search::CapacityJob& job, int number, int of,
                    const search::CapacityOutcome& o, const search::CapacitySettings& s) {
  std::string line = std::string(job.is_point ? "point" : "search") + " " +
                     std::to_string(number) + "/" + std::to_string(of) + " " + job.label + ": ";
  if (!o.found) return line + "no plan fits (" + FixedText(o.search_time_s, 1) + " s)";
  const int seq = s.sequence_length > 0 ? s.sequence_length : s.model.default_sequence_length;
  const double tokens_per_s = static_cast<double>(s.global_batch_size) *
                              static_cast<double>(seq) / o.iteration_time.ToSeconds();
  char tps[32];
  std::snprintf(tps, sizeof(tps), "%.3g", tokens_per_s);
  return line + o.summary + ", " + tps + " tokens/s, " +
         FixedText(s.tokens / tokens_per_s / 86400.0, 1) + " days, " + o.bound + " (" +
         FixedText(o.search_time_s, 1) + " s)";
}

// The options shared by both forms.
Result<std::string> AlgorithmOf(const po::variables_map& vm) {
  std::string algorithm =
      vm.count("algorithm") > 0 ? vm["algorithm"].as<std::string>() : DefaultAlgorithm();
  ORRERY_RETURN_IF_ERROR(search::MakeSearchAlgorithm(algorithm).status());
  return algorithm;
}

Result<std::optional<double>> TimeLimitOf(const po::variables_map& vm) {
  if (vm.count("time-limit") == 0) return std::optional<double>();
  const double limit = vm["time-limit"].as<double>();
  if (!(limit > 0)) {
    return InvalidArgumentError("--time-limit: expected a positive number of seconds, got " +
                                FixedText(limit, 2));
  }
  return std::optional<double>(limit);
}

// "" without --out.
Result<std::string> OutDirOf(const po::variables_map& vm) {
  if (vm.count("out") == 0) return std::string();
  std::string dir = vm["out"].as<std::string>();
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    return InvalidArgumentError("--out: '" + dir + "' exists and is not a directory");
  }
  return dir;
}

struct Inputs {
  search::CapacitySettings settings;
  search::Sweep sweep;
  search::CapacityWork work;
  std::string out_dir;
  OutputFormat format = OutputFormat::kText;
};

Result<Inputs> ReadInputs(const po::variables_map& vm) {
  Inputs in;
  ORRERY_ASSIGN_OR_RETURN(in.format, GetFormat(vm));
  for (const char* required : {"model", "tokens", "sweep"}) {
    if (vm.count(required) == 0) {
      return InvalidArgumentError(std::string("--") + required + " is required" +
                                  (std::string_view(required) == "tokens"
                                       ? " (or --phases FILE)"
                                       : ""));
    }
  }
  ORRERY_ASSIGN_OR_RETURN(in.settings.model, workload::LoadModel(vm["model"].as<std::string>()));
  Result<double> tokens = search::ParseTokenCount(vm["tokens"].as<std::string>());
  if (!tokens.ok()) return InvalidArgumentError("--" + tokens.status().message());
  in.settings.tokens = *tokens;
  in.settings.global_batch_size = vm["global-batch"].as<int>();
  if (in.settings.global_batch_size < 1) {
    return InvalidArgumentError("--global-batch: expected a positive integer, got " +
                                std::to_string(in.settings.global_batch_size));
  }
  in.settings.sequence_length = vm.count("seq-len") > 0
                                    ? vm["seq-len"].as<int>()
                                    : in.settings.model.default_sequence_length;
  if (in.settings.sequence_length < 1) {
    return InvalidArgumentError("--seq-len: expected a positive integer, got " +
                                std::to_string(in.settings.sequence_length));
  }
  ORRERY_ASSIGN_OR_RETURN(in.settings.algorithm, AlgorithmOf(vm));
  ORRERY_ASSIGN_OR_RETURN(in.settings.time_limit_s, TimeLimitOf(vm));
  in.settings.simulate_best = vm["simulate-best"].as<bool>();
  in.settings.bound_share = vm["bound-share"].as<double>();
  if (!(in.settings.bound_share > 0 && in.settings.bound_share <= 1)) {
    return InvalidArgumentError("--bound-share: expected a fraction in (0, 1], got " +
                                FixedText(in.settings.bound_share, 3));
  }
  ORRERY_ASSIGN_OR_RETURN(in.out_dir, OutDirOf(vm));
  ORRERY_ASSIGN_OR_RETURN(in.sweep, search::LoadSweepFile(vm["sweep"].as<std::string>()));
  Result<search::Sensitivities> which =
      search::ParseSensitivities(vm["sensitivity"].as<std::string>());
  if (!which.ok()) return InvalidArgumentError("--" + which.status().message());
  ORRERY_ASSIGN_OR_RETURN(in.work, search::PlanCapacityWork(in.sweep, *which));
  ORRERY_RETURN_IF_ERROR(search::CheckSweepFaults(in.sweep, in.work));
  in.settings.faults = in.sweep.faults;
  return in;
}

// Runs `jobs` and returns their outcomes as one JSON array of
// {"job": index, "outcome": ...} or {"job": index, "error": message}.
std::string RunJobs(const Inputs& in, const std::vector<int>& jobs, int rank, int ranks,
                    CommandIo& io) {
  Json results = Json::array();
  int points = 0;
  int variants = 0;
  for (const search::CapacityJob& job : in.work.jobs) (job.is_point ? points : variants)++;
  for (int j : jobs) {
    const search::CapacityJob& job = in.work.jobs[static_cast<size_t>(j)];
    // The job's number among the points (or among the other searches).
    int number = 1;
    for (int k = 0; k < j; ++k) {
      number += in.work.jobs[static_cast<size_t>(k)].is_point == job.is_point ? 1 : 0;
    }
    Json entry = Json::object();
    entry["job"] = j;
    Result<search::CapacityOutcome> outcome = search::RunCapacityJob(in.settings, job.cluster, {}, job.is_point);
    if (outcome.ok()) {
      entry["outcome"] = search::CapacityOutcomeToJson(*outcome);
      if (!IsQuiet()) {
        io.err << (ranks > 1 ? "[rank " + std::to_string(rank) + "] " : std::string())
               << JobLine(job, number, job.is_point ? points : variants, *outcome, in.settings)
               << std::endl;
      }
    } else {
      entry["error"] = job.label + ": " + outcome.status().message();
    }
    results.push_back(std::move(entry));
  }
  return results.dump();
}

// The outcomes of every job from the ranks' JSON arrays; the first error
// (by job index) when a search failed.
Result<std::vector<search::CapacityOutcome>> CollectOutcomes(
    const Inputs& in, const std::vector<std::string>& parts) {
  std::vector<std::optional<search::CapacityOutcome>> found(in.work.jobs.size());
  std::vector<std::string> errors(in.work.jobs.size());
  for (const std::string& part : parts) {
    ORRERY_ASSIGN_OR_RETURN(const Json array, ParseJson(part, "<rank results>"));
    for (const Json& entry : array) {
      const size_t j = entry.at("job").get<size_t>();
      if (j >= found.size()) return InternalError("capacity: a rank returned job " +
                                                  std::to_string(j));
      if (entry.contains("error")) {
        errors[j] = entry.at("error").get<std::string>();
        continue;
      }
      ORRERY_ASSIGN_OR_RETURN(found[j],
                              search::CapacityOutcomeFromJson(entry.at("outcome"), "<rank results>"));
    }
  }
  std::vector<search::CapacityOutcome> outcomes;
  for (size_t j = 0; j < found.size(); ++j) {
    if (!errors[j].empty()) return InvalidArgumentError(errors[j]);
    if (!found[j].has_value()) {
      return InternalError("capacity: no rank returned search " + std::to_string(j));
    }
    outcomes.push_back(std::move(*found[j]));
  }
  return outcomes;
}

Status WriteOutputs(const Inputs& in, const std::vector<search::CapacityRow>& rows) {
  std::error_code ec;
  std::filesystem::create_directories(in.out_dir, ec);
  if (ec) return IoError("--out: cannot create directory '" + in.out_dir + "': " + ec.message());
  const std::filesystem::path dir(in.out_dir);
  // Both rendered before either is written.
  const std::string csv = search::RowsToCsv(rows);
  const std::string json = DumpJson(search::RowsToJson(in.settings, rows));
  ORRERY_RETURN_IF_ERROR(WriteFileAtomically((dir / "capacity.csv").string(), csv));
  return WriteFileAtomically((dir / "capacity.json").string(), json);
}

// `orrery capacity --phases FILE`: search/capacity_phases.h.
struct PhasedInputs {
  search::PhasedCapacitySettings settings;
  search::Sweep sweep;
  search::CapacityWork work;
  std::string out_dir;
  OutputFormat format = OutputFormat::kText;
};

Result<PhasedInputs> ReadPhasedInputs(const po::variables_map& vm) {
  PhasedInputs in;
  ORRERY_ASSIGN_OR_RETURN(in.format, GetFormat(vm));
  // What the phases file gives, or what is not computed with --phases:
  // refused before anything is read, never silently ignored.
  for (const char* option : {"tokens", "global-batch", "seq-len"}) {
    if (vm.count(option) > 0 && !vm[option].defaulted()) {
      return InvalidArgumentError(
          std::string("--") + option + " and --phases: with --phases every phase sets its own "
          "tokens (or steps), global_batch and seq_len in the phases file; leave --" + option +
          " out");
    }
  }
  if (!vm["sensitivity"].defaulted() && vm["sensitivity"].as<std::string>() != "none") {
    return InvalidArgumentError("--sensitivity and --phases: the ×2 sensitivity searches are not "
                                "run with --phases; leave --sensitivity out");
  }
  if (!vm["bound-share"].defaulted()) {
    return InvalidArgumentError("--bound-share and --phases: no bound is reported with --phases; "
                                "leave --bound-share out");
  }
  for (const char* required : {"model", "sweep"}) {
    if (vm.count(required) == 0) {
      return InvalidArgumentError(std::string("--") + required + " is required");
    }
  }
  ORRERY_ASSIGN_OR_RETURN(in.settings.model, workload::LoadModel(vm["model"].as<std::string>()));
  ORRERY_ASSIGN_OR_RETURN(in.settings.schedule,
                          workload::LoadPhasesFile(vm["phases"].as<std::string>()));
  ORRERY_RETURN_IF_ERROR(search::CheckPhasesForCapacity(in.settings.schedule));
  ORRERY_ASSIGN_OR_RETURN(in.settings.algorithm, AlgorithmOf(vm));
  ORRERY_ASSIGN_OR_RETURN(in.settings.time_limit_s, TimeLimitOf(vm));
  in.settings.simulate = vm["simulate-best"].as<bool>();
  ORRERY_ASSIGN_OR_RETURN(in.out_dir, OutDirOf(vm));
  ORRERY_ASSIGN_OR_RETURN(in.sweep, search::LoadSweepFile(vm["sweep"].as<std::string>()));
  if (!in.sweep.faults.empty()) {
    return InvalidArgumentError(in.sweep.source + ": field 'faults': fault scenarios are not "
                                "simulated with --phases; run the sweep without --phases, or "
                                "leave the field out");
  }
  ORRERY_ASSIGN_OR_RETURN(in.work,
                          search::PlanCapacityWork(in.sweep, search::Sensitivities{false, false,
                                                                                   false}));
  return in;
}

// The progress line of one planned point.
std::string PhasedPointLine(int number, int of, const search::PhasedCapacityRow& r) {
  std::string line = "point " + std::to_string(number) + "/" + std::to_string(of) + " " +
                     r.label + ": ";
  if (!r.found) return line + "no schedule fits (" + FixedText(r.search_time_s, 1) + " s)";
  line += FixedText(r.days(), 2) + " days, " + std::to_string(r.switches) +
          (r.switches == 1 ? " switch (" : " switches (") + FixedText(r.switch_seconds, 2) +
          " s), one plan ";
  if (r.best_single_seconds.has_value()) {
    line += FixedText(*r.best_single_seconds / 86400.0, 2) + " days, saving " +
            FixedText(*r.saving_percent(), 2) + "%";
  } else {
    line += "none";
  }
  return line + " (" + FixedText(r.search_time_s, 1) + " s)";
}

int RunPhasedCapacity(const po::variables_map& vm, CommandIo& io) {
  Result<PhasedInputs> inputs = ReadPhasedInputs(vm);
  if (!inputs.ok()) return ReportError(kCommand, inputs.status(), io);
  const PhasedInputs& in = *inputs;
  // One plan per distinct cluster; points of equal clusters (in two
  // entries) share it with their own name and price.
  std::vector<std::optional<search::PhasedCapacityRow>> of_job(in.work.jobs.size());
  std::vector<search::PhasedCapacityRow> rows;
  const int points = static_cast<int>(in.work.points.size());
  for (int i = 0; i < points; ++i) {
    const search::CapacityPoint& point = in.work.points[static_cast<size_t>(i)];
    const size_t j = static_cast<size_t>(in.work.uses[static_cast<size_t>(i)].point);
    const search::CapacityJob& job = in.work.jobs[j];
    if (!of_job[j].has_value()) {
      Result<search::PhasedCapacityRow> row = search::RunPhasedCapacityPoint(
          in.settings, in.sweep, point, job.cluster, job.label);
      if (!row.ok()) return ReportError(kCommand, row.status().WithContext(job.label), io);
      of_job[j] = std::move(*row);
    }
    search::PhasedCapacityRow row = *of_job[j];
    const search::SweepEntry& entry = in.sweep.entries[static_cast<size_t>(point.entry)];
    row.name = entry.name;
    row.knobs = point.knobs;
    row.price_per_device_hour = entry.price_per_device_hour;
    row.cost = row.device_hours * row.price_per_device_hour;
    if (!IsQuiet()) io.err << PhasedPointLine(i + 1, points, row) << std::endl;
    rows.push_back(std::move(row));
  }
  if (!in.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(in.out_dir, ec);
    if (ec) {
      return ReportError(kCommand,
                         IoError("--out: cannot create directory '" + in.out_dir + "': " +
                                 ec.message()),
                         io);
    }
    const std::filesystem::path dir(in.out_dir);
    // Both rendered before either is written.
    const std::string csv = search::PhasedRowsToCsv(rows);
    const std::string json = DumpJson(search::PhasedRowsToJson(in.settings, rows));
    Status written = WriteFileAtomically((dir / "capacity-phases.csv").string(), csv);
    if (written.ok()) {
      written = WriteFileAtomically((dir / "capacity-phases.json").string(), json);
    }
    if (!written.ok()) return ReportError(kCommand, written, io);
  }
  if (in.format == OutputFormat::kJson) {
    io.out << DumpJson(search::PhasedRowsToJson(in.settings, rows));
  } else {
    io.out << search::PhasedRowsToText(in.settings, rows);
    if (!in.out_dir.empty()) {
      io.out << "\n  written: " << in.out_dir << "/capacity-phases.csv, " << in.out_dir
             << "/capacity-phases.json\n";
    }
  }
  return kExitOk;
}

}  // namespace

int RunCapacity(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("model", po::value<std::string>()->value_name("M"),
       "model preset (llama3-70b, ...) or HuggingFace config.json (required)")
      ("tokens", po::value<std::string>()->value_name("T"),
       "tokens to train: 15T, 300B, 15e12 (required, unless --phases)")
      ("phases", po::value<std::string>()->value_name("FILE"),
       "plan every point phase by phase (docs/phases.md's file); replaces --tokens, "
       "--global-batch and --seq-len")
      ("sweep", po::value<std::string>()->value_name("FILE"),
       "the sweep file: the hypothetical clusters (required)")
      ("global-batch", po::value<int>()->default_value(2048)->value_name("B"),
       "sequences per iteration (default 2048: Llama 3's 16M-token batch at 8192)")
      ("seq-len", po::value<int>()->value_name("S"),
       "tokens per sequence (default: the model's training sequence length)")
      ("out", po::value<std::string>()->value_name("DIR"),
       "write DIR/capacity.csv and DIR/capacity.json (with --phases, "
       "DIR/capacity-phases.csv and DIR/capacity-phases.json)")
      ("simulate-best", po::bool_switch(),
       "event-simulate each search's chosen plan (slow: minutes per plan at 10,000+ "
       "devices); with --phases, score every candidate on every phase by simulation")
      ("sensitivity", po::value<std::string>()->default_value("nic,memory,devices")
                          ->value_name("LIST"),
       "which ×2 searches to run: any of nic, memory, devices, or none (not with "
       "--phases)")
      ("bound-share", po::value<double>()->default_value(0.25)->value_name("FRACTION"),
       "a loss (bubble, a network tier, ...) that takes at least this share of the "
       "iteration is the bound; otherwise compute (not with --phases)")
      ("time-limit", po::value<double>()->value_name("SECONDS"),
       "stop each search after this long with what it has")
      ("algorithm", po::value<std::string>()->value_name("NAME"),
       "search algorithm (default: galvatron when built)");
  AddFormatOption(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }

  // Under a launcher, join the world first so that only rank 0 speaks.
  std::unique_ptr<exec::MpiWorld> world;
  if (exec::LaunchedByMpiLauncher()) {
    Result<std::unique_ptr<exec::MpiWorld>> joined = exec::MpiWorld::Join();
    if (!joined.ok()) return ReportError(kCommand, joined.status(), io);
    world = std::move(*joined);
  }
  const int rank = world != nullptr ? world->rank() : 0;
  const int ranks = world != nullptr ? world->size() : 1;
  const bool root = rank == 0;
  if (vm.count("phases") > 0) {
    // Single-process: rank 0 plans every point, the others wait for its
    // exit code.
    int code = root ? RunPhasedCapacity(vm, io) : kExitOk;
    if (world != nullptr) code = std::stoi(world->BroadcastFromRoot(std::to_string(code)));
    return code;
  }
  std::ostringstream discard;
  CommandIo quiet{discard, discard};
  CommandIo& rank_io = root ? io : quiet;

  // Every rank reads the same inputs and so fails the same way.
  Result<Inputs> inputs = ReadInputs(vm);
  if (!inputs.ok()) return ReportError(kCommand, inputs.status(), rank_io);

  const std::vector<int> mine = search::JobsOfRank(inputs->work, rank, ranks);
  const std::string part = RunJobs(*inputs, mine, rank, ranks, io);
  std::vector<std::string> parts =
      world != nullptr ? world->GatherToRoot(part) : std::vector<std::string>{part};

  int code = kExitOk;
  if (root) {
    std::vector<search::CapacityRow> rows;
    Status written = Status::Ok();
    Result<std::vector<search::CapacityOutcome>> outcomes = CollectOutcomes(*inputs, parts);
    if (!outcomes.ok()) {
      written = outcomes.status();
    } else {
      Result<std::vector<search::CapacityRow>> assembled =
          search::AssembleRows(inputs->settings, inputs->sweep, inputs->work, *outcomes);
      if (assembled.ok()) {
        rows = std::move(*assembled);
      } else {
        written = assembled.status();
      }
    }
    if (written.ok() && !inputs->out_dir.empty()) written = WriteOutputs(*inputs, rows);
    if (!written.ok()) {
      code = ReportError(kCommand, written, io);
    } else if (inputs->format == OutputFormat::kJson) {
      io.out << DumpJson(search::RowsToJson(inputs->settings, rows));
    } else {
      io.out << search::RowsToText(inputs->settings, rows);
      if (!inputs->out_dir.empty()) {
        io.out << "\n  written: " << inputs->out_dir << "/capacity.csv, " << inputs->out_dir
               << "/capacity.json\n";
      }
    }
  }
  if (world != nullptr) {
    code = std::stoi(world->BroadcastFromRoot(std::to_string(code)));
  }
  return code;
}

}  // namespace orrery::cli
