// `orrery execute`: run real training iterations of a plan on the ranks of
// an MPI job (exec/runtime.h), one process per rank: MPI + Eigen on CPU
// cores (--backend cpu) or NCCL + cuBLAS on GPUs (--backend cuda). Rank 0
// prints the per-step losses, the iteration times, tokens/s and every
// rank's peak memory; --trace-out writes the recorded operators as an
// execution trace and a Chrome timeline. docs/executor.md has the details.
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
#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "exec/runtime.h"
#include "topology/cluster_spec.h"
#include "topology/presets.h"
#include "traces/execution_trace.h"
#include "workload/hf_import.h"
#include "workload/model_spec.h"
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
    "                   [--format text|json]";

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
    "The backend runs in fp32 whatever the plan's precision. Gradients are not\n"
    "clipped. A rank that fails during the run takes the whole job down.";

constexpr std::string_view kExamples =
    "  orrery execute --model gpt-tiny --backend cpu --iterations 5 --global-batch 8 \\\n"
    "      --seq-len 32\n"
    "  mpirun -np 8 orrery execute --model gpt-tiny --tp 2 --pp 2 --micro-batch 1 \\\n"
    "      --global-batch 8 --seq-len 32 --backend cpu --iterations 5\n"
    "  mpirun -np 4 orrery execute --model llama-tiny --pp 2 --zero 1 --global-batch 8 \\\n"
    "      --seq-len 32 --backend cpu --iterations 5 --trace-out trace/ --format json\n"
    "  srun -N 2 --ntasks-per-node 8 orrery execute --model gpt-1.7b --tp 4 --pp 2 \\\n"
    "      --micro-batch 2 --global-batch 64 --backend cuda --iterations 10\n";

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string Mib(int64_t bytes) { return Fixed(static_cast<double>(bytes) / (1 << 20), 1); }

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
      << "), fp32, AdamW lr " << options.adam.learning_rate << "\n\n";
  out << "  step  loss       grad norm\n";
  for (size_t i = 0; i < r.losses.size(); ++i) {
    std::string label = std::to_string(i);
    label.resize(6, ' ');
    out << "  " << label << Fixed(r.losses[i], 6) << "   " << Fixed(r.grad_norms[i], 6);
    if (static_cast<int>(i) < options.warmup) {
      out << "  (warm-up)";
    } else if (static_cast<int>(i) >= options.warmup + options.iterations) {
      out << "  (traced)";
    }
    out << "\n";
  }
  out << "\n  iteration time  median " << Fixed(1e3 * r.median_iteration_seconds, 3)
      << " ms (min " << Fixed(1e3 * r.min_iteration_seconds, 3) << ", max "
      << Fixed(1e3 * r.max_iteration_seconds, 3) << ") over " << r.iteration_seconds.size()
      << " timed step" << (r.iteration_seconds.size() == 1 ? "" : "s") << "\n";
  out << "  throughput      " << Fixed(r.tokens_per_second, 0) << " tokens/s\n";
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
       "write the full parameter tensors after the last step as JSON");
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
  Result<topology::ClusterSpec> cluster = LaunchedCluster(vm, world.size());
  if (!cluster.ok()) return fail(cluster.status());
  Result<workload::Plan> plan = PlanFromOptions(vm, *model, *cluster);
  if (!plan.ok()) return fail(plan.status());
  if (vm.count("plan") == 0 && vm.count("precision") == 0) {
    plan->precision = topology::Precision::kFp32;  // what the executor runs
  }
  Status executable = exec::CheckExecutable(*model, *plan, world.size());
  if (!executable.ok()) return fail(executable);

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
  if (*format == OutputFormat::kJson) {
    Json j = ReportJson(*result, *model, *plan, exec_options.backend, world.size());
    j["trace_out"] = trace_dir.empty() ? Json(nullptr) : Json(trace_dir);
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
