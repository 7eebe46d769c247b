// `orrery quickstart`: the default job of the README's first command — find
// the best plan for a preset model on a preset cluster, simulate it, report.
//
// It runs as much of that path as is built and says what is not: today it
// enumerates the uniform Megatron-style plans (TP × PP × DP, micro-batch,
// ZeRO, recomputation), checks each against the model and the cluster,
// estimates its memory (costmodel/memory.h), simulates every plan that fits
// (sim/iteration.h) and reports the fastest — an exhaustive search over
// uniform plans — and writes the chosen plan's simulated iteration as a
// Chrome trace (--timeline, sim/chrome_timeline.h). The layer-wise search
// (issue #6) lives in `orrery search`.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/subcommands.h"
#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "costmodel/memory.h"
#include "sim/chrome_timeline.h"
#include "sim/iteration.h"
#include "topology/presets.h"
#include "workload/hf_import.h"
#include "workload/operators.h"
#include "workload/plan_json.h"
#include "workload/plan.h"

namespace orrery::cli {

namespace po = boost::program_options;

namespace {

struct Candidate {
  workload::Plan plan;
  workload::PlanCheck check;
  std::optional<costmodel::MemoryEstimate> memory;  // for plans that pass the check
  std::optional<sim::IterationReport> simulated;     // for plans that fit
};

std::string DescribePlan(const workload::Plan& plan) {
  const workload::LayerStrategy& l = plan.layers.front();
  char text[256];
  std::snprintf(text, sizeof(text),
                "TP %d x PP %d x DP %d, micro-batch %d (%d micro-batches), %s, %srecompute "
                "%s, %s",
                l.tp, plan.pp, l.dp, plan.micro_batch_size, plan.NumMicroBatches(),
                l.zero_stage > 0 ? ("ZeRO-" + std::to_string(l.zero_stage)).c_str() : "DDP",
                l.sequence_parallel ? "sequence parallel, " : "",
                std::string(workload::RecomputeName(l.recompute)).c_str(),
                std::string(workload::PipelineScheduleName(plan.schedule)).c_str());
  return text;
}

// FlashAttention, as Megatron-LM and every current training stack use.
costmodel::MemoryOptions MemoryAssumptions() {
  costmodel::MemoryOptions options;
  options.flash_attention = true;
  return options;
}

// Every uniform plan of Megatron-style degrees for `devices` devices.
std::vector<Candidate> EnumerateUniformPlans(const workload::ModelSpec& model,
                                             const topology::ClusterSpec& cluster,
                                             int global_batch, int sequence_length) {
  const int devices = cluster.TotalDevices();
  const int per_node = cluster.PrimaryNodeType().devices_per_node;
  std::vector<Candidate> out;
  for (int tp = 1; tp <= per_node; tp *= 2) {
    for (int pp = 1; pp <= std::min(devices / tp, model.total_layers()); pp *= 2) {
      if (devices % (tp * pp) != 0) continue;
      const int dp = devices / (tp * pp);
      for (int micro : {1, 2, 4}) {
        for (int zero : {0, 1}) {
          for (workload::Recompute r : {workload::Recompute::kNone, workload::Recompute::kSelective,
                                        workload::Recompute::kFull}) {
            workload::LayerStrategy layer;
            layer.tp = tp;
            layer.dp = dp;
            layer.zero_stage = dp > 1 ? zero : 0;
            if (dp == 1 && zero == 1) continue;
            layer.sequence_parallel = tp > 1;
            layer.recompute = r;
            workload::Plan plan = workload::Plan::Uniform(model, pp, layer, global_batch, micro);
            plan.sequence_length = sequence_length;
            Candidate c{plan, workload::CheckPlan(plan, model, cluster), std::nullopt,
                        std::nullopt};
            if (c.check.ok()) {
              Result<costmodel::MemoryEstimate> memory =
                  costmodel::EstimateMemory(model, plan, cluster, MemoryAssumptions());
              if (memory.ok()) c.memory = *memory;
            }
            out.push_back(std::move(c));
          }
        }
      }
    }
  }
  return out;
}

}  // namespace

int RunQuickstart(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("model", po::value<std::string>()->default_value("llama3-70b"),
       "model preset or HuggingFace config.json")
      ("cluster", po::value<std::string>()->default_value("dgx-h100"),
       "cluster preset or cluster JSON file")
      ("nodes", po::value<int>()->default_value(8), "number of nodes")
      ("global-batch", po::value<int>()->default_value(512), "sequences per iteration")
      ("seq-len", po::value<int>(), "tokens per sequence (default: the model's)")
      ("timeline", po::value<std::string>()->default_value("quickstart-timeline.json"),
       "write the chosen plan's simulated iteration as a Chrome trace (Perfetto) to FILE "
       "('' writes none)");
  AddFormatOption(options);
  po::variables_map vm;
  if (auto exit = ParseOptions(
          "quickstart", "orrery quickstart [--model M] [--cluster C] [--nodes N] [options]",
          "The default job: search the best plan for a model on a cluster, simulate it, and\n"
          "report the plan, its throughput and memory, and where its timeline is written.\n"
          "Runs as much of that path as is built and says what is not.",
          "  orrery quickstart\n"
          "  orrery quickstart --model gpt3-175b --cluster dgx-a100-80gb --nodes 128\n"
          "  orrery quickstart --model ../shared/fixtures/hf_configs/"
          "meta-llama--Meta-Llama-3.1-8B_config.json --nodes 1 --format json\n",
          options, args, vm, io)) {
    return *exit;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError("quickstart", format.status(), io);
  Result<workload::ModelSpec> model = workload::LoadModel(vm["model"].as<std::string>());
  if (!model.ok()) return ReportError("quickstart", model.status(), io);
  Result<topology::ClusterSpec> cluster =
      topology::ResolveCluster(vm["cluster"].as<std::string>(), vm["nodes"].as<int>());
  if (!cluster.ok()) return ReportError("quickstart", cluster.status(), io);
  const int global_batch = vm["global-batch"].as<int>();
  if (global_batch < 1) {
    return ReportError("quickstart", InvalidArgumentError("--global-batch must be positive"), io);
  }
  const int seq = vm.count("seq-len") ? vm["seq-len"].as<int>() : model->default_sequence_length;
  if (seq < 1) return ReportError("quickstart", InvalidArgumentError("--seq-len must be positive"), io);

  const std::vector<Candidate> candidates =
      EnumerateUniformPlans(*model, *cluster, global_batch, seq);
  const int valid = static_cast<int>(
      std::count_if(candidates.begin(), candidates.end(), [](const Candidate& c) { return c.check.ok(); }));
  const int fit = static_cast<int>(std::count_if(
      candidates.begin(), candidates.end(),
      [](const Candidate& c) { return c.memory.has_value() && c.memory->Fits(); }));
  // Simulate every plan that fits; the fastest wins (ties: enumeration order).
  std::vector<Candidate> simulated = candidates;
  const Candidate* best = nullptr;
  {
    ProgressLine progress("quickstart: simulating", fit, "plans");
    int done = 0;
    for (Candidate& c : simulated) {
      if (!c.memory || !c.memory->Fits()) continue;
      Result<sim::IterationReport> report = sim::SimulateIteration(*model, c.plan, *cluster);
      progress.Update(++done);
      if (!report.ok()) continue;
      c.simulated = *report;
      if (best == nullptr || report->iteration_time < best->simulated->iteration_time) best = &c;
    }
  }

  // The chosen plan, simulated again with its timeline recorded.
  const std::string timeline_path = vm["timeline"].as<std::string>();
  bool timeline_written = false;
  if (best != nullptr && !timeline_path.empty()) {
    sim::IterationTrace trace;
    Result<sim::IterationReport> again =
        sim::SimulateIteration(*model, best->plan, *cluster, {}, &trace);
    if (!again.ok()) return ReportError("quickstart", again.status(), io);
    Status written = WriteFileAtomically(timeline_path, DumpJson(sim::TraceToChromeTrace(trace)));
    if (!written.ok()) return ReportError("quickstart", written, io);
    timeline_written = true;
  }

  // The compute bound: every device at its dense bf16 peak, model FLOPs only.
  const topology::DeviceType& device = cluster->PrimaryNodeType().device;
  const workload::FlopsPerToken per_token =
      workload::TrainingFlopsPerToken(*model, seq, workload::RecomputeAccounting::kNone);
  const std::optional<FlopRate> peak = device.Peak(topology::Precision::kBf16);
  const double bound_tokens_per_s =
      peak ? peak->FlopsPerSecond() * cluster->TotalDevices() / per_token.model.count() : 0.0;

  const char* kMissing[] = {
      "quickstart tries uniform 1F1B plans only; `orrery search` searches layer-wise "
      "plans, stage partitions and schedules",
  };
  if (*format == OutputFormat::kJson) {
    Json out;
    out["model"] = {{"name", model->name}, {"parameters", model->ParameterCount()}};
    out["cluster"] = {{"name", cluster->name},
                      {"nodes", cluster->TotalNodes()},
                      {"devices", cluster->TotalDevices()},
                      {"device", device.name}};
    out["global_batch"] = global_batch;
    out["sequence_length"] = seq;
    out["model_flops_per_token"] = per_token.model.count();
    out["compute_bound_tokens_per_s"] = bound_tokens_per_s;
    out["uniform_plans"] = {
        {"enumerated", candidates.size()}, {"valid", valid}, {"fit_memory", fit}};
    out["uniform_plans"]["simulated"] = std::count_if(
        simulated.begin(), simulated.end(), [](const Candidate& c) { return c.simulated.has_value(); });
    if (best != nullptr) {
      out["plan"] = PlanToJson(best->plan);
      out["plan_summary"] = DescribePlan(best->plan);
      out["predicted"] = {
          {"iteration_time_s", best->simulated->iteration_time.ToSeconds()},
          {"tokens_per_s", best->simulated->tokens_per_s},
          {"mfu", best->simulated->mfu},
          {"peak_memory_gib", best->memory->Peak().Total().ToGiB()},
          {"timeline", timeline_written ? Json(timeline_path) : Json(nullptr)}};
    } else {
      out["plan"] = nullptr;
    }
    out["not_built"] = Json::array();
    for (const char* m : kMissing) out["not_built"].push_back(m);
    io.out << DumpJson(out);
    return kExitOk;
  }

  std::ostringstream o;
  char line[256];
  o << "Orrery quickstart\n\n";
  std::snprintf(line, sizeof(line), "  model    %s: %.2fB parameters (%lld), %d layers, hidden %d\n",
                model->name.c_str(), static_cast<double>(model->ParameterCount()) * 1e-9,
                static_cast<long long>(model->ParameterCount()), model->total_layers(),
                model->hidden_size);
  o << line;
  std::snprintf(line, sizeof(line), "  cluster  %s: %d nodes x %d = %d x %s\n",
                cluster->name.c_str(), cluster->TotalNodes(),
                cluster->PrimaryNodeType().devices_per_node, cluster->TotalDevices(),
                device.name.c_str());
  o << line;
  std::snprintf(line, sizeof(line), "  batch    %d sequences of %d tokens (%.1fM tokens per iteration)\n\n",
                global_batch, seq, global_batch * static_cast<double>(seq) * 1e-6);
  o << line;
  std::snprintf(line, sizeof(line),
                "Training FLOPs per token (PaLM: 6N + 12LHQT): %.3g\n"
                "Compute bound: %.0f tokens/s if all %d devices ran at the %.0f TFLOP/s bf16 peak\n\n",
                per_token.model.count(), bound_tokens_per_s, cluster->TotalDevices(),
                peak ? peak->ToTFlops() : 0.0);
  o << line;
  std::snprintf(line, sizeof(line),
                "Uniform plans (TP x PP x DP, micro-batch 1/2/4, ZeRO 0/1, recompute none/selective/full):\n"
                "  %zu enumerated, %d pass every rule of the plan checker (orrery plan --help),\n"
                "  %d of those fit in %s per device (%s less a %s reserve)\n\n",
                candidates.size(), valid, fit,
                FormatBytes(device.memory - MemoryAssumptions().reserve).c_str(),
                FormatBytes(device.memory).c_str(),
                FormatBytes(MemoryAssumptions().reserve).c_str());
  o << line;
  if (best == nullptr) {
    o << "No uniform plan fits and simulates: try more nodes (--nodes) or a smaller batch.\n\n";
  } else {
    const sim::IterationReport& r = *best->simulated;
    o << "Fastest of the " << fit << " simulated (exhaustive search over uniform plans):\n  "
      << DescribePlan(best->plan) << "\n\n";
    std::snprintf(line, sizeof(line),
                  "  iteration   %s\n  throughput  %.0f tokens/s (%.1f%% of the compute bound)\n"
                  "  MFU         %.1f%% (%.0f model TFLOP/s per device)\n"
                  "  memory      %s at the peak stage, of %s usable\n\n",
                  FormatDuration(r.iteration_time).c_str(), r.tokens_per_s,
                  bound_tokens_per_s > 0 ? 100.0 * r.tokens_per_s / bound_tokens_per_s : 0.0,
                  100.0 * r.mfu, r.model_flops_per_device.ToTFlops(),
                  FormatBytes(best->memory->Peak().Total()).c_str(),
                  FormatBytes(best->memory->Usable()).c_str());
    o << line << costmodel::FormatMemoryTable(*best->memory) << "\n";
    if (timeline_written) {
      o << "Timeline: written to " << timeline_path << " (open in https://ui.perfetto.dev)\n";
    } else {
      o << "Timeline: none written (--timeline '').\n";
    }
    o << "The cost model is uncalibrated: datasheet peaks with stated efficiencies\n"
         "(docs/compute.md, docs/costmodel.md); `orrery calibrate` fits it to\n"
         "measurements (docs/calibration.md).\n\n";
  }
  o << "Not here:\n";
  for (const char* m : kMissing) o << "  - " << m << "\n";
  if (best != nullptr) {
    const workload::LayerStrategy& l = best->plan.layers.front();
    o << "\nSimulate it, or a variant, by hand:\n"
      << "  orrery simulate --model " << model->name << " --cluster "
      << vm["cluster"].as<std::string>() << " --nodes " << cluster->TotalNodes() << " --tp "
      << l.tp << " --pp " << best->plan.pp << " --micro-batch " << best->plan.micro_batch_size
      << " --global-batch " << global_batch << (l.sequence_parallel ? " --sequence-parallel" : "")
      << " --recompute " << workload::RecomputeName(l.recompute)
      << (l.zero_stage > 0 ? " --zero " + std::to_string(l.zero_stage) : std::string()) << "\n";
  }
  io.out << o.str();
  return kExitOk;
}

}  // namespace orrery::cli
