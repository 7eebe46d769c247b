// `orrery execute`: run real training iterations of a plan on the ranks of
// an MPI job (exec/runtime.h), one process per rank: MPI + Eigen on CPU
// cores (--backend cpu) or NCCL + cuBLAS on GPUs (--backend cuda). Rank 0
// prints the per-step losses, the iteration times, tokens/s and every
// rank's peak memory; --trace-out writes the recorded operators as an
// execution trace and a Chrome timeline. With --phases FILE it runs the
// phases of a phases file (workload/phases.h), each under its own plan,
// moving the training state between plans at every switch
// (exec/phase_runner.h), and prints each switch's bytes beside the switch
// cost model's (costmodel/reshard_cost.h). docs/executor.md has the details.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/plan_options.h"
#include "cli/replan.h"
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/text.h"
#include "core/units.h"
#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "exec/phase_runner.h"
#include "exec/runtime.h"
#include "sim/faults.h"
#include "topology/cluster_spec.h"
#include "topology/presets.h"
#include "traces/execution_trace.h"
#include "workload/hf_import.h"
#include "workload/model_spec.h"
#include "workload/phases.h"
#include "workload/plan.h"
#include "workload/plan_json.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;

constexpr std::string_view kCommand = "execute";

constexpr std::string_view kUsage =
    "[mpirun -np N] orrery execute --model M (--plan FILE | plan flags) --backend cpu|cuda\n"
    "                   --iterations N [--warmup W] [--seed S] [--seq-len S] [--lr X]\n"
    "                   [--trace-out DIR [--trace-iterations K]] [--save-parameters FILE]\n"
    "                   [--format text|json] [--out FILE]\n"
    "[mpirun -np N] orrery execute --model M --phases FILE [--backend cpu|cuda]\n"
    "                   [--seed S] [--lr X] [--format text|json] [--out FILE]\n"
    "[mpirun -np N] orrery execute --model M (--plan FILE | plan flags) --backend cpu|cuda\n"
    "                   --replan MARGIN --cluster C --iterations N [--replan-window K]\n"
    "                   [--slow-rank RANK:FACTOR] [--format text|json] [--out FILE]";

constexpr std::string_view kDescription =
    "Runs real training iterations of a plan: one process per rank, started by\n"
    "mpirun or srun (run by hand it is a job of one rank). Each rank builds its\n"
    "share of a GPT or Llama model (Megatron-style tensor parallelism, optional\n"
    "sequence parallelism, pipeline stages and model chunks, data-parallel\n"
    "replicas with ZeRO 0-3, recomputation), trains it with AdamW on synthetic\n"
    "tokens (the same whatever the plan, so every plan reproduces the single-rank\n"
    "run's losses), and measures it.\n"
    "\n"
    "The plan comes from --plan FILE or the plan flags, for the launched ranks:\n"
    "dp defaults to ranks / (tp × pp × cp). A plan that does not fit the job (its\n"
    "devices differ from the ranks, a layout the executor does not run yet) is\n"
    "refused before anything starts, with every reason, and exit code 2.\n"
    "\n"
    "Measurement (as nccl-tests): --warmup untimed steps, then --iterations timed\n"
    "steps, each from a barrier to the end of its optimizer step, its time the\n"
    "slowest rank's; the report gives the median, minimum and maximum, tokens/s\n"
    "at the median, and every rank's peak device memory. With --trace-out DIR,\n"
    "--trace-iterations more steps (default 1) run with every operator recorded\n"
    "(the backend synchronized around each, so they are not timed) and\n"
    "DIR/execution_trace.json and DIR/timeline.json (open in ui.perfetto.dev)\n"
    "are written. --save-parameters FILE writes every full parameter tensor\n"
    "after the last step as JSON {name: [values...]} (small models).\n"
    "\n"
    "Phases (--phases FILE, in place of the plan): a phases file lists training\n"
    "phases in order, each with its steps (or tokens), global batch, sequence\n"
    "length and a plan for the launched ranks: a plan file, relative to the phases\n"
    "file, or a plan object (docs/executor.md, \"Phases\"). Every phase's plan\n"
    "is checked before anything runs. Each phase trains its steps; where the next\n"
    "phase's plan differs, the parameters, AdamW moments and step count move to\n"
    "the new plan's layout in memory (MPI on cpu, NCCL on cuda) and training goes\n"
    "on from the same step on the same data: the losses are those of one plan run\n"
    "throughout. The report has one row per phase (steps, plan, first and last\n"
    "loss, median step time) and one line per switch: the bytes each rank sent,\n"
    "counted, the messages and the time, and whether the switch cost model's\n"
    "bytes per rank are the same. --iterations, --warmup, tracing and\n"
    "--save-parameters do not apply to phases.\n"
    "\n"
    "Re-planning (--replan MARGIN, docs/replanning.md): the --iterations steps run\n"
    "in windows of --replan-window steps. After each window (but the first after\n"
    "the start and after a switch: warm-up) its median step is compared with the\n"
    "event simulation of the running plan on --cluster (a calibrated cluster from\n"
    "`orrery calibrate` or `orrery tune`, narrowed to the ranks when it is a\n"
    "one-node cpu-local) under the faults known so far. When it is more than\n"
    "MARGIN (0.2 = 20%) slower, every rank times the same GEMMs; a rank at least\n"
    "1.15× slower than the fastest is a slow device of that factor; what that does\n"
    "not explain becomes a scale on every prediction (recalibration). The\n"
    "exhaustive search then runs again with the slow devices (a slow pipeline\n"
    "stage gets fewer layers), and the run switches to its best plan the executor\n"
    "can run when the predicted gain over the steps left exceeds the switch's\n"
    "predicted cost, moving the state in memory as --phases does. Every check and\n"
    "decision is logged on stderr as it is made, with its numbers, and reported.\n"
    "--slow-rank makes a straggler to try it on.\n"
    "\n"
    "--out FILE also writes the JSON report to FILE (atomically).\n"
    "\n"
    "The backend runs in fp32 whatever the plan's precision. Gradients are not\n"
    "clipped. A rank that fails during the run takes the whole job down.";

constexpr std::string_view kExamples =
    "  orrery execute --model gpt-tiny --backend cpu --iterations 5 --global-batch 8 \\\n"
    "      --seq-len 32\n"
    "  mpirun -np 8 orrery execute --model gpt-tiny --tp 2 --pp 2 --micro-batch 1 \\\n"
    "      --global-batch 8 --seq-len 32 --backend cpu --iterations 5\n"
    "  mpirun -np 4 orrery execute --model llama-tiny --pp 2 --zero 1 --global-batch 8 \\\n"
    "      --seq-len 32 --backend cpu --iterations 5 --trace-out trace/ --format json\n"
    "  # 3 steps of dp 2, then 3 steps of tp 2, on 2 ranks; the plan files first:\n"
    "  orrery plan --model gpt-tiny --cluster cpu-local --dp 2 --global-batch 8 \\\n"
    "      --seq-len 32 --precision fp32 --out dp2.json\n"
    "  orrery plan --model gpt-tiny --cluster cpu-local --tp 2 --global-batch 8 \\\n"
    "      --seq-len 32 --precision fp32 --out tp2.json\n"
    "  #   phases.json: {\"phases\": [\n"
    "  #     {\"name\": \"dp\", \"steps\": 3, \"seq_len\": 32, \"global_batch\": 8,\n"
    "  #      \"plan\": \"dp2.json\"},\n"
    "  #     {\"name\": \"tp\", \"steps\": 3, \"seq_len\": 32, \"global_batch\": 8,\n"
    "  #      \"plan\": \"tp2.json\"}]}\n"
    "  mpirun -np 2 orrery execute --model gpt-tiny --phases phases.json --backend cpu\n"
    "  # dp 2 with rank 1 at a third of its speed: re-planned after window 1\n"
    "  mpirun -np 2 orrery execute --model gpt-tiny --dp 2 --global-batch 8 --seq-len 32 \\\n"
    "      --backend cpu --iterations 24 --replan 0.2 --replan-window 4 \\\n"
    "      --cluster tune/round0/calibrated.json --slow-rank 1:3\n"
    "  srun -N 2 --ntasks-per-node 8 orrery execute --model gpt-1.7b --tp 4 --pp 2 \\\n"
    "      --micro-batch 2 --global-batch 64 --backend cuda --iterations 10\n";

std::string Mib(int64_t bytes) { return FixedText(static_cast<double>(bytes) / (1 << 20), 1); }

// The cluster the plan flags are read against: --cluster when given (for
// dp inference), otherwise the launched ranks as one node of world_size
// devices.
Result<topology::ClusterSpec> LaunchedCluster(const po::variables_map& vm, int world_size) {
  if (vm.count("cluster") > 0) {
    std::optional<int> nodes;
    if (vm.count("nodes") > 0) nodes = vm["nodes"].as<int>();
    return topology::ResolveCluster(vm["cluster"].as<std::string>(), nodes);
  }
  topology::ClusterSpec cluster;
  cluster.name = "launched ranks";
  topology::NodeType node;
  node.count = 1;
  node.devices_per_node = world_size;
  cluster.node_types.push_back(node);
  return cluster;
}

std::string PlanLine(const workload::ModelSpec& model, const workload::Plan& plan,
                     int world_size) {
  const workload::LayerStrategy& l = plan.layers.front();
  std::ostringstream out;
  out << model.name << " on " << world_size << " rank" << (world_size == 1 ? "" : "s")
      << ": tp " << l.tp;
  if (l.sequence_parallel) out << " (sp)";
  out << ", pp " << plan.pp << ", dp " << l.dp << ", "
      << workload::PipelineScheduleName(plan.schedule);
  if (plan.schedule == workload::PipelineSchedule::kInterleaved) out << " (vpp " << plan.vpp << ")";
  out << ", " << plan.NumMicroBatches() << " micro-batches of " << plan.micro_batch_size << " × "
      << plan.sequence_length << " tokens, ZeRO " << l.zero_stage << ", recompute "
      << workload::RecomputeName(l.recompute);
  return out.str();
}

// The injected slow ranks (--slow-rank), as the reports print them: one
// line, or "" without any.
std::string SlowRanksLine(const exec::ExecuteOptions& options) {
  if (options.slow_ranks.empty()) return "";
  std::string line = "  injected (--slow-rank): ";
  bool first = true;
  for (const auto& [rank, factor] : options.slow_ranks) {
    line += (first ? "" : ", ") + std::string("rank ") + std::to_string(rank) + " computes " +
            sim::FaultFactorText(factor) + "× slower";
    first = false;
  }
  return line + "\n";
}

Json SlowRanksJson(const exec::ExecuteOptions& options) {
  Json list = Json::array();
  for (const auto& [rank, factor] : options.slow_ranks) {
    list.push_back({{"rank", rank}, {"factor", factor}});
  }
  return list;
}

Json ReportJson(const exec::ExecutionResult& r, const workload::ModelSpec& model,
                const workload::Plan& plan, exec::BackendKind backend, int world_size) {
  Json j = Json::object();
  j["model"] = model.name;
  j["backend"] = std::string(exec::BackendKindName(backend));
  j["device"] = r.device;
  j["world_size"] = world_size;
  j["plan"] = workload::PlanToJson(plan);
  Json times = Json::object();
  times["median"] = r.median_iteration_seconds;
  times["min"] = r.min_iteration_seconds;
  times["max"] = r.max_iteration_seconds;
  times["samples"] = r.iteration_seconds;
  j["iteration_time_s"] = times;
  j["tokens_per_s"] = r.tokens_per_second;
  j["losses"] = r.losses;
  j["grad_norms"] = r.grad_norms;
  j["peak_memory_bytes"] = r.peak_memory_bytes;
  return j;
}

std::string ReportText(const exec::ExecutionResult& r, const workload::ModelSpec& model,
                       const workload::Plan& plan, const exec::ExecuteOptions& options,
                       int world_size) {
  std::ostringstream out;
  out << "Executed " << PlanLine(model, plan, world_size) << "\n";
  out << "  backend " << exec::BackendKindName(options.backend) << " (" << r.device
      << "), fp32, AdamW lr " << options.adam.learning_rate << "\n"
      << SlowRanksLine(options) << "\n";
  out << "  step  loss       grad norm\n";
  for (size_t i = 0; i < r.losses.size(); ++i) {
    std::string label = std::to_string(i);
    label.resize(6, ' ');
    out << "  " << label << FixedText(r.losses[i], 6) << "   " << FixedText(r.grad_norms[i], 6);
    if (static_cast<int>(i) < options.warmup) {
      out << "  (warm-up)";
    } else if (static_cast<int>(i) >= options.warmup + options.iterations) {
      out << "  (traced)";
    }
    out << "\n";
  }
  out << "\n  iteration time  median " << FixedText(1e3 * r.median_iteration_seconds, 3)
      << " ms (min " << FixedText(1e3 * r.min_iteration_seconds, 3) << ", max "
      << FixedText(1e3 * r.max_iteration_seconds, 3) << ") over " << r.iteration_seconds.size()
      << " timed step" << (r.iteration_seconds.size() == 1 ? "" : "s") << "\n";
  out << "  throughput      " << FixedText(r.tokens_per_second, 0) << " tokens/s\n";
  out << "  peak memory     ";
  for (size_t i = 0; i < r.peak_memory_bytes.size(); ++i) {
    out << (i == 0 ? "" : ", ") << "rank " << i << " " << Mib(r.peak_memory_bytes[i]) << " MiB";
  }
  out << "\n";
  return out.str();
}

Json ParametersJson(const std::map<std::string, std::vector<float>>& parameters) {
  Json j = Json::object();
  for (const auto& [name, values] : parameters) j[name] = values;
  return j;
}


// The flags --phases replaces or that do not apply to a phases run, given
// with it: InvalidArgument naming them.
Status PhasesExclusions(const po::variables_map& vm) {
  po::options_description plan_flags;
  AddPlanOptions(plan_flags);
  std::vector<std::string> given;
  for (const auto& option : plan_flags.options()) {
    const std::string& name = option->long_name();
    if (vm.count(name) > 0 && !vm[name].defaulted()) given.push_back("--" + name);
  }
  for (const char* name :
       {"iterations", "warmup", "trace-out", "trace-iterations", "save-parameters", "cluster",
        "nodes", "replan", "replan-window"}) {
    if (vm.count(name) > 0 && !vm[name].defaulted()) {
      given.push_back(std::string("--") + name);
    }
  }
  if (given.empty()) return Status::Ok();
  std::string list;
  for (size_t i = 0; i < given.size(); ++i) list += (i == 0 ? "" : ", ") + given[i];
  return InvalidArgumentError(
      "--phases takes every phase's plan and steps from the phases file; " + list +
      (given.size() == 1 ? " does" : " do") + " not apply (give plans in the file)");
}

// The flags --replan needs or that do not apply to it: InvalidArgument
// naming them.
Status ReplanExclusions(const po::variables_map& vm) {
  if (vm.count("cluster") == 0) {
    return InvalidArgumentError(
        "--replan needs --cluster: the cluster its predictions and searches use, best a "
        "calibrated one (`orrery tune --out DIR` writes DIR/round0/calibrated.json; "
        "`orrery calibrate --out F` writes F)");
  }
  const double margin = vm["replan"].as<double>();
  if (!(margin > 0) || !std::isfinite(margin)) {
    return InvalidArgumentError("--replan: expected a margin > 0 (0.2 = 20% slower than "
                                "predicted), got " + FixedText(margin, 3));
  }
  const int window = vm["replan-window"].as<int>();
  const int iterations = vm["iterations"].as<int>();
  if (window < 1) {
    return InvalidArgumentError("--replan-window: expected an integer >= 1, got " +
                                std::to_string(window));
  }
  if (iterations < 2 * window) {
    return InvalidArgumentError(
        "--replan: --iterations " + std::to_string(iterations) + " is less than two windows of " +
        std::to_string(window) + " steps (--replan-window): the first window is warm-up, so "
        "nothing would be judged");
  }
  std::vector<std::string> given;
  for (const char* name : {"phases", "warmup", "trace-out", "trace-iterations",
                           "save-parameters"}) {
    if (vm.count(name) > 0 && !vm[name].defaulted()) given.push_back(std::string("--") + name);
  }
  if (given.empty()) return Status::Ok();
  std::string list;
  for (size_t i = 0; i < given.size(); ++i) list += (i == 0 ? "" : ", ") + given[i];
  return InvalidArgumentError("--replan runs --iterations steps in windows (the first is its "
                              "warm-up) and traces none; " + list +
                              (given.size() == 1 ? " does" : " do") + " not apply");
}

// "tp 2 (sp), pp 2 1f1b, dp 1, ZeRO 1".
std::string ShortPlan(const workload::Plan& plan) {
  const workload::LayerStrategy& l = plan.layers.front();
  std::ostringstream out;
  out << "tp " << l.tp << (l.sequence_parallel ? " (sp)" : "") << ", pp " << plan.pp;
  if (plan.pp > 1) {
    out << " " << workload::PipelineScheduleName(plan.schedule);
    if (plan.schedule == workload::PipelineSchedule::kInterleaved) out << " vpp " << plan.vpp;
  }
  out << ", dp " << l.dp;
  if (l.zero_stage > 0) out << ", ZeRO " << l.zero_stage;
  if (l.recompute != workload::Recompute::kNone) {
    out << ", recompute " << workload::RecomputeName(l.recompute);
  }
  return out.str();
}

std::string ByteCount(int64_t bytes) { return FormatBytes(Bytes(bytes)); }

// "1.15 MiB sent by rank 0, 1.19 MiB by rank 1".
std::string SentLine(const std::vector<int64_t>& sent) {
  std::string s;
  for (size_t r = 0; r < sent.size(); ++r) {
    s += (r == 0 ? "" : ", ") + ByteCount(sent[r]) + (r == 0 ? " sent by rank " : " by rank ") +
         std::to_string(r);
  }
  return s;
}

// "the same bytes", or the ranks where the model differs from the count.
std::string CostModelVerdict(const exec::SwitchRecord& s) {
  if (!s.prediction_error.empty()) return "unavailable (" + s.prediction_error + ")";
  if (!s.predicted.has_value()) return "not asked";
  if (s.PredictionAgrees()) return "the same bytes";
  std::vector<std::string> diffs;
  const exec::PredictedTraffic& p = *s.predicted;
  if (p.bytes_sent.size() != s.bytes_sent.size()) {
    return "differs: it has " + std::to_string(p.bytes_sent.size()) + " ranks, the job " +
           std::to_string(s.bytes_sent.size());
  }
  for (size_t r = 0; r < s.bytes_sent.size(); ++r) {
    if (p.bytes_sent[r] != s.bytes_sent[r]) {
      diffs.push_back("rank " + std::to_string(r) + " sends " + std::to_string(p.bytes_sent[r]) +
                      " B (counted " + std::to_string(s.bytes_sent[r]) + " B)");
    }
    if (p.bytes_received[r] != s.bytes_received[r]) {
      diffs.push_back("rank " + std::to_string(r) + " receives " +
                      std::to_string(p.bytes_received[r]) + " B (counted " +
                      std::to_string(s.bytes_received[r]) + " B)");
    }
  }
  std::string out = "differs: ";
  for (size_t i = 0; i < diffs.size(); ++i) out += (i == 0 ? "" : "; ") + diffs[i];
  return out;
}

std::vector<int64_t> AsVector(const std::vector<int>& v) {
  return std::vector<int64_t>(v.begin(), v.end());
}

Json PhasesReportJson(const exec::PhasesResult& r, const workload::PhaseSchedule& schedule,
                      const workload::ModelSpec& model, exec::BackendKind backend,
                      int world_size) {
  Json j = Json::object();
  j["model"] = model.name;
  j["backend"] = std::string(exec::BackendKindName(backend));
  j["device"] = r.device;
  j["world_size"] = world_size;
  j["phases_file"] = schedule.source;
  Json phases = Json::array();
  for (const exec::PhaseRecord& p : r.phases) {
    Json e = Json::object();
    e["name"] = p.name;
    e["first_step"] = p.first_step;
    e["steps"] = p.steps;
    e["switched"] = p.switched;
    e["plan"] = workload::PlanToJson(p.plan);
    e["losses"] = p.losses;
    e["grad_norms"] = p.grad_norms;
    Json times = Json::object();
    times["median"] = p.median_step_seconds;
    times["samples"] = p.step_seconds;
    e["step_time_s"] = times;
    phases.push_back(e);
  }
  j["phases"] = phases;
  Json switches = Json::array();
  for (const exec::SwitchRecord& s : r.switches) {
    Json e = Json::object();
    e["from"] = schedule.phases[static_cast<size_t>(s.from_phase)].name;
    e["to"] = schedule.phases[static_cast<size_t>(s.from_phase) + 1].name;
    e["after_step"] = s.after_step;
    e["same_layout"] = s.same_layout;
    e["bytes_sent"] = s.bytes_sent;
    e["bytes_received"] = s.bytes_received;
    e["bytes_kept"] = s.planned_kept;
    e["messages_sent"] = AsVector(s.messages_sent);
    e["messages"] = s.messages;
    e["transfers"] = s.transfers;
    e["planning_s"] = s.planning_seconds;
    e["exchange_s"] = s.exchange_seconds;
    e["total_s"] = s.total_seconds;
    Json model_bytes = Json::object();
    if (s.predicted.has_value()) {
      model_bytes["bytes_sent"] = s.predicted->bytes_sent;
      model_bytes["bytes_received"] = s.predicted->bytes_received;
      model_bytes["agrees"] = s.PredictionAgrees();
    } else {
      model_bytes["error"] = s.prediction_error;
      model_bytes["agrees"] = false;
    }
    e["cost_model"] = model_bytes;
    switches.push_back(e);
  }
  j["switches"] = switches;
  return j;
}

std::string PhasesReportText(const exec::PhasesResult& r, const workload::PhaseSchedule& schedule,
                             const workload::ModelSpec& model,
                             const exec::ExecuteOptions& options, int world_size) {
  std::ostringstream out;
  int64_t steps = 0;
  for (const exec::PhaseRecord& p : r.phases) steps += p.steps;
  out << "Executed " << r.phases.size() << " phase" << (r.phases.size() == 1 ? "" : "s") << " ("
      << steps << " steps) of " << schedule.source << ": " << model.name << " on " << world_size
      << " rank" << (world_size == 1 ? "" : "s") << "\n";
  out << "  backend " << exec::BackendKindName(options.backend) << " (" << r.device
      << "), fp32, AdamW lr " << options.adam.learning_rate << "\n"
      << SlowRanksLine(options) << "\n";

  const std::vector<std::string> header = {"phase", "steps",      "plan",     "batch",
                                           "first loss", "last loss", "median step"};
  std::vector<std::vector<std::string>> rows = {header};
  for (const exec::PhaseRecord& p : r.phases) {
    rows.push_back({p.name,
                    std::to_string(p.steps) + " (" + std::to_string(p.first_step) + "-" +
                        std::to_string(p.first_step + p.steps - 1) + ")",
                    ShortPlan(p.plan),
                    std::to_string(p.plan.global_batch_size) + " × " +
                        std::to_string(p.plan.sequence_length) + " (micro " +
                        std::to_string(p.plan.micro_batch_size) + ")",
                    FixedText(p.losses.front(), 6), FixedText(p.losses.back(), 6),
                    FixedText(1e3 * p.median_step_seconds, 3) + " ms"});
  }
  out << FormatColumns(rows, 2);

  if (r.switches.empty()) {
    out << "\n  no switch: every phase runs the same plan\n";
    return out.str();
  }
  out << "\n";
  for (const exec::SwitchRecord& s : r.switches) {
    const std::string& from = schedule.phases[static_cast<size_t>(s.from_phase)].name;
    const std::string& to = schedule.phases[static_cast<size_t>(s.from_phase) + 1].name;
    out << "  switch " << from << " → " << to << " after step " << s.after_step << ": ";
    if (s.total_bytes() == 0) {
      out << "nothing sent" << (s.same_layout ? " (the same layout)" : "");
    } else {
      out << SentLine(s.bytes_sent);
    }
    out << ", " << s.messages << " message" << (s.messages == 1 ? "" : "s") << ", "
        << FixedText(1e3 * s.exchange_seconds, 1) << " ms (" << FixedText(1e3 * s.total_seconds, 1)
        << " ms with planning and the new plan's start); cost model: " << CostModelVerdict(s)
        << "\n";
  }
  return out.str();
}

// `orrery execute --phases FILE`: every rank reads and checks the file,
// RunPhases runs it, rank 0 reports.
int RunExecutePhases(const std::string& phases_path, const std::string& model_name,
                     const exec::ExecuteOptions& options, OutputFormat format,
                     const std::string& out_path, CommandIo& io) {
  Result<std::unique_ptr<exec::MpiWorld>> joined = exec::MpiWorld::Join();
  if (!joined.ok()) return ReportError(kCommand, joined.status(), io);
  exec::MpiWorld& world = **joined;
  const bool root = world.rank() == 0;
  auto fail = [&](const Status& status) {
    if (root) return ReportError(kCommand, status, io);
    return kExitBadInput;
  };
  Result<workload::ModelSpec> model = workload::LoadModel(model_name);
  if (!model.ok()) return fail(model.status());
  Result<workload::PhaseSchedule> schedule = workload::LoadPhasesFile(phases_path);
  if (!schedule.ok()) return fail(schedule.status());
  Status checked = exec::CheckPhases(*model, *schedule, world.size());
  if (!checked.ok()) return fail(checked);

  // The switch cost model's bytes, to print beside the bytes counted.
  const exec::SwitchTrafficModel traffic_model =
      ExecutorSwitchTraffic(*model, options, world.local_size());
  Result<exec::PhasesResult> result =
      exec::RunPhases(world, *model, *schedule, options, traffic_model);
  if (!result.ok()) return fail(result.status());
  if (!root) return kExitOk;

  Json j = PhasesReportJson(*result, *schedule, *model, options.backend, world.size());
  j["slow_ranks"] = SlowRanksJson(options);
  if (!out_path.empty()) {
    Status written = WriteFileAtomically(out_path, DumpJson(j));
    if (!written.ok()) return ReportError(kCommand, written.WithContext("--out"), io);
  }
  if (format == OutputFormat::kJson) {
    io.out << DumpJson(j);
  } else {
    io.out << PhasesReportText(*result, *schedule, *model, options, world.size());
  }
  return kExitOk;
}

}  // namespace

int RunExecute(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("model", po::value<std::string>()->value_name("NAME|FILE"),
       "model preset or HuggingFace config.json (required), e.g. gpt-tiny, llama-tiny")
      ("cluster", po::value<std::string>()->value_name("NAME|FILE"),
       "cluster the plan flags infer dp from (default: the launched ranks)")
      ("nodes", po::value<int>()->value_name("N"), "scale --cluster to N nodes")
      ("backend", po::value<std::string>()->default_value("cpu")->value_name("cpu|cuda"),
       "cpu: Eigen + MPI, one rank per core; cuda: cuBLAS + NCCL, one rank per GPU")
      ("iterations", po::value<int>()->default_value(5)->value_name("N"), "timed steps")
      ("warmup", po::value<int>()->default_value(1)->value_name("W"),
       "untimed steps before them (their losses are reported)")
      ("seed", po::value<uint64_t>()->default_value(1234)->value_name("S"),
       "seed of the initial parameters and of the synthetic tokens")
      ("lr", po::value<float>()->value_name("X"), "AdamW learning rate (default 1e-3)")
      ("bucket-parameters", po::value<int64_t>()->value_name("N"),
       "parameters per data-parallel bucket (default max(4e7, 1e6 × dp), Megatron-LM's)")
      ("trace-out", po::value<std::string>()->value_name("DIR"),
       "write DIR/execution_trace.json and DIR/timeline.json of the traced steps")
      ("trace-iterations", po::value<int>()->value_name("K"),
       "recorded steps after the timed ones (default 1 with --trace-out, else 0)")
      ("save-parameters", po::value<std::string>()->value_name("FILE"),
       "write the full parameter tensors after the last step as JSON")
      ("phases", po::value<std::string>()->value_name("FILE"),
       "run the phases of a phases file, each under its plan, re-sharding at every "
       "switch (replaces --plan and the plan flags)")
      ("out", po::value<std::string>()->value_name("FILE"),
       "also write the JSON report to FILE (atomically)")
      ("slow-rank", po::value<std::vector<std::string>>()->composing()->value_name("RANK:FACTOR"),
       "fault injection: every compute operator of RANK takes FACTOR (>= 1) times as long, "
       "as `orrery simulate --slow-device` models it; repeatable")
      ("replan", po::value<double>()->value_name("MARGIN"),
       "re-plan at run time when a window's median step is more than MARGIN (0.2 = 20%) "
       "slower than predicted on --cluster (needs --cluster)")
      ("replan-window", po::value<int>()->default_value(5)->value_name("K"),
       "steps per window of --replan; the first window after the start and after a "
       "switch is warm-up");
  AddFormatOption(options);
  AddPlanOptions(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  if (vm.count("model") == 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--model is required (e.g. gpt-tiny, llama-tiny)"),
                       io);
  }
  exec::ExecuteOptions exec_options;
  Result<exec::BackendKind> backend = exec::ParseBackendKind(vm["backend"].as<std::string>());
  if (!backend.ok()) {
    return ReportError(kCommand, InvalidArgumentError("--backend: " + backend.status().message()),
                       io);
  }
  exec_options.backend = *backend;
  exec_options.iterations = vm["iterations"].as<int>();
  exec_options.warmup = vm["warmup"].as<int>();
  exec_options.seed = vm["seed"].as<uint64_t>();
  if (vm.count("lr") > 0) exec_options.adam.learning_rate = vm["lr"].as<float>();
  if (vm.count("slow-rank") > 0) {
    for (const std::string& text : vm["slow-rank"].as<std::vector<std::string>>()) {
      Result<sim::SlowDevice> slow = sim::ParseSlowDevice(text);
      if (!slow.ok()) return ReportError(kCommand, slow.status().WithContext("--slow-rank"), io);
      auto [it, inserted] = exec_options.slow_ranks.emplace(slow->rank, slow->factor);
      if (!inserted) it->second *= slow->factor;
    }
  }
  if (vm.count("bucket-parameters") > 0) {
    exec_options.bucket_parameters = vm["bucket-parameters"].as<int64_t>();
  }
  const std::string trace_dir = vm.count("trace-out") > 0 ? vm["trace-out"].as<std::string>() : "";
  exec_options.trace_iterations = vm.count("trace-iterations") > 0
                                      ? vm["trace-iterations"].as<int>()
                                      : (trace_dir.empty() ? 0 : 1);
  if (exec_options.iterations < 1 || exec_options.warmup < 0 ||
      exec_options.trace_iterations < 0) {
    return ReportError(kCommand,
                       InvalidArgumentError("--iterations must be >= 1, --warmup and "
                                            "--trace-iterations >= 0"),
                       io);
  }
  if (!trace_dir.empty() && exec_options.trace_iterations < 1) {
    return ReportError(kCommand,
                       InvalidArgumentError("--trace-out needs --trace-iterations >= 1"), io);
  }
  const std::string parameters_path =
      vm.count("save-parameters") > 0 ? vm["save-parameters"].as<std::string>() : "";
  exec_options.gather_parameters = !parameters_path.empty();
  const std::string out_path = vm.count("out") > 0 ? vm["out"].as<std::string>() : "";
  if (vm.count("phases") > 0) {
    Status alone = PhasesExclusions(vm);
    if (!alone.ok()) return ReportError(kCommand, alone, io);
    return RunExecutePhases(vm["phases"].as<std::string>(), vm["model"].as<std::string>(),
                            exec_options, *format, out_path, io);
  }

  const bool replan = vm.count("replan") > 0;
  if (replan) {
    Status alone = ReplanExclusions(vm);
    if (!alone.ok()) return ReportError(kCommand, alone, io);
  }

  Result<std::unique_ptr<exec::MpiWorld>> joined = exec::MpiWorld::Join();
  if (!joined.ok()) return ReportError(kCommand, joined.status(), io);
  exec::MpiWorld& world = **joined;
  const bool root = world.rank() == 0;
  // Every rank computes the same answers below; only rank 0 speaks.
  auto fail = [&](const Status& status) {
    if (root) return ReportError(kCommand, status, io);
    return kExitBadInput;
  };

  Result<workload::ModelSpec> model = workload::LoadModel(vm["model"].as<std::string>());
  if (!model.ok()) return fail(model.status());
  // Re-planning predicts on --cluster with its calibration, narrowed to the
  // ranks; the plan flags are read against the same cluster.
  std::optional<ClusterInput> replan_cluster;
  if (replan) {
    std::optional<int> nodes;
    if (vm.count("nodes") > 0) nodes = vm["nodes"].as<int>();
    Result<ClusterInput> input = LoadClusterInput(vm["cluster"].as<std::string>(), nodes);
    if (!input.ok()) return fail(input.status().WithContext("--cluster"));
    Result<topology::ClusterSpec> narrowed = ClusterForRanks(*input, world.size(), "--cluster");
    if (!narrowed.ok()) return fail(narrowed.status());
    input->cluster = std::move(*narrowed);
    replan_cluster = std::move(*input);
  }
  Result<topology::ClusterSpec> cluster =
      replan ? Result<topology::ClusterSpec>(replan_cluster->cluster)
             : LaunchedCluster(vm, world.size());
  if (!cluster.ok()) return fail(cluster.status());
  Result<workload::Plan> plan = PlanFromOptions(vm, *model, *cluster);
  if (!plan.ok()) return fail(plan.status());
  if (vm.count("plan") == 0 && vm.count("precision") == 0) {
    plan->precision = topology::Precision::kFp32;  // what the executor runs
  }
  Status executable = exec::CheckExecutable(*model, *plan, world.size());
  if (!executable.ok()) return fail(executable);
  if (replan) {
    ReplanCommand command;
    command.model = *model;
    command.plan = *plan;
    command.cluster = std::move(*replan_cluster);
    command.margin = vm["replan"].as<double>();
    command.window = vm["replan-window"].as<int>();
    command.steps = exec_options.iterations;
    command.options = exec_options;
    command.format = *format;
    command.out_path = out_path;
    return RunExecuteReplan(world, command, io);
  }

  Result<exec::ExecutionResult> result = exec::RunTraining(world, *model, *plan, exec_options);
  if (!result.ok()) return fail(result.status());
  if (!root) return kExitOk;

  if (!trace_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(trace_dir, error);
    Status written = error ? IoError("--trace-out " + trace_dir + ": " + error.message())
                           : Status::Ok();
    if (written.ok()) {
      written = WriteFileAtomically(trace_dir + "/execution_trace.json",
                                    DumpJson(traces::ExecutionTraceToJson(result->trace)));
    }
    if (written.ok()) {
      written = WriteFileAtomically(
          trace_dir + "/timeline.json",
          DumpJson(traces::ExecutionTraceToChromeTrace(result->trace).ToJson()));
    }
    if (!written.ok()) return ReportError(kCommand, written, io);
  }
  if (!parameters_path.empty()) {
    Status written =
        WriteFileAtomically(parameters_path, DumpJson(ParametersJson(result->parameters)));
    if (!written.ok()) return ReportError(kCommand, written, io);
  }
  Json j = ReportJson(*result, *model, *plan, exec_options.backend, world.size());
  j["slow_ranks"] = SlowRanksJson(exec_options);
  j["trace_out"] = trace_dir.empty() ? Json(nullptr) : Json(trace_dir);
  if (!out_path.empty()) {
    Status written = WriteFileAtomically(out_path, DumpJson(j));
    if (!written.ok()) return ReportError(kCommand, written.WithContext("--out"), io);
  }
  if (*format == OutputFormat::kJson) {
    io.out << DumpJson(j);
  } else {
    io.out << ReportText(*result, *model, *plan, exec_options, world.size());
    if (!trace_dir.empty()) {
      io.out << "\n  trace written to " << trace_dir << "/execution_trace.json and "
             << trace_dir << "/timeline.json (open in https://ui.perfetto.dev)\n";
    }
  }
  return kExitOk;
}

}  // namespace orrery::cli
