// `orrery capacity`: what-if capacity planning over hypothetical clusters
// (search/capacity.h, docs/capacity.md, issue #9). Under mpirun the
// distinct searches are dealt to the ranks and gathered on rank 0, which
// alone prints and writes.
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
#include "search/search.h"
#include "workload/hf_import.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "capacity";

constexpr std::string_view kUsage =
    "orrery capacity --model M --tokens T --sweep sweep.json [--global-batch B]\n"
    "                   [--seq-len S] [--out DIR] [--sensitivity LIST] [--simulate-best]\n"
    "                   [--bound-share F] [--time-limit SECONDS] [--algorithm NAME]\n"
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
    "(largest clusters first) and the result is the same as one rank's.";

constexpr std::string_view kExamples =
    "  orrery capacity --model llama3-70b --tokens 15T --global-batch 2048 --seq-len 8192 \\\n"
    "      --sweep sweep.json --out results/\n"
    "  orrery capacity --model gpt-1.7b --tokens 300B --global-batch 64 --sweep small.json \\\n"
    "      --format json\n"
    "  mpirun -np 4 orrery capacity --model llama3-70b --tokens 15e12 --sweep sweep.json\n";

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
      return InvalidArgumentError(std::string("--") + required + " is required");
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
  in.settings.algorithm =
      vm.count("algorithm") > 0 ? vm["algorithm"].as<std::string>() : DefaultAlgorithm();
  ORRERY_RETURN_IF_ERROR(search::MakeSearchAlgorithm(in.settings.algorithm).status());
  if (vm.count("time-limit") > 0) {
    const double limit = vm["time-limit"].as<double>();
    if (!(limit > 0)) {
      return InvalidArgumentError("--time-limit: expected a positive number of seconds, got " +
                                  FixedText(limit, 2));
    }
    in.settings.time_limit_s = limit;
  }
  in.settings.simulate_best = vm["simulate-best"].as<bool>();
  in.settings.bound_share = vm["bound-share"].as<double>();
  if (!(in.settings.bound_share > 0 && in.settings.bound_share <= 1)) {
    return InvalidArgumentError("--bound-share: expected a fraction in (0, 1], got " +
                                FixedText(in.settings.bound_share, 3));
  }
  if (vm.count("out") > 0) {
    in.out_dir = vm["out"].as<std::string>();
    std::error_code ec;
    if (std::filesystem::exists(in.out_dir, ec) &&
        !std::filesystem::is_directory(in.out_dir, ec)) {
      return InvalidArgumentError("--out: '" + in.out_dir + "' exists and is not a directory");
    }
  }
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

}  // namespace

int RunCapacity(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("model", po::value<std::string>()->value_name("M"),
       "model preset (llama3-70b, ...) or HuggingFace config.json (required)")
      ("tokens", po::value<std::string>()->value_name("T"),
       "tokens to train: 15T, 300B, 15e12 (required)")
      ("sweep", po::value<std::string>()->value_name("FILE"),
       "the sweep file: the hypothetical clusters (required)")
      ("global-batch", po::value<int>()->default_value(2048)->value_name("B"),
       "sequences per iteration (default 2048: Llama 3's 16M-token batch at 8192)")
      ("seq-len", po::value<int>()->value_name("S"),
       "tokens per sequence (default: the model's training sequence length)")
      ("out", po::value<std::string>()->value_name("DIR"),
       "write DIR/capacity.csv and DIR/capacity.json")
      ("simulate-best", po::bool_switch(),
       "event-simulate each search's chosen plan (slow: minutes per plan at 10,000+ "
       "devices)")
      ("sensitivity", po::value<std::string>()->default_value("nic,memory,devices")
                          ->value_name("LIST"),
       "which ×2 searches to run: any of nic, memory, devices, or none")
      ("bound-share", po::value<double>()->default_value(0.25)->value_name("FRACTION"),
       "a loss (bubble, a network tier, ...) that takes at least this share of the "
       "iteration is the bound; otherwise compute")
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
