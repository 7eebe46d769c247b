// `orrery profile`: measure this machine for calibration — the compute
// profile of a model's operators on one rank's backend and nccl-tests-style
// collective profiles over the MPI job (exec/profiler.h) — and write them in
// the formats `orrery calibrate` reads (docs/traces.md).
#include <mpi.h>

#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/subcommands.h"
#include "core/file.h"
#include "exec/backend.h"
#include "exec/mpi_world.h"
#include "exec/profiler.h"
#include "traces/compute_profile.h"
#include "workload/hf_import.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;
using traces::CollectiveOp;

constexpr std::string_view kCommand = "profile";

constexpr std::string_view kUsage =
    "orrery profile --backend cpu|cuda --out DIR [--what compute|collectives|all]\n"
    "                      [--model M] [--tp N[,N...]] [--micro-batch B[,B...]] [--seq-len S]\n"
    "                      [--repetitions N] [--ops OP,...] [--min-bytes 8] [--max-bytes SIZE]\n"
    "                      [--iterations 20] [--warmup 5]";

constexpr std::string_view kDescription =
    "Measures what the cost model needs on the machine at hand, with the executor's\n"
    "backends (cpu: Eigen + MPI; cuda: cuBLAS + NCCL), and writes it where\n"
    "`orrery calibrate` reads it. Run it alone (one rank) or under mpirun (one rank\n"
    "per device; on CPUs one rank per core).\n"
    "\n"
    "Compute (every rank at once, as in training; each time written is the slowest\n"
    "rank's, as a synchronous step waits for it):\n"
    "every distinct operator of the model's layers at --tp, --micro-batch and --seq-len (the GEMMs by shape, the\n"
    "attention core, norms, activations, residual adds, embedding lookups and the\n"
    "vocabulary-parallel cross-entropy), forward and backward, the mean of\n"
    "--repetitions after --warmup warm-up calls. --tp and --micro-batch take\n"
    "comma-separated lists (--tp 1,2 --micro-batch 1,4): every combination is\n"
    "swept and an operator they share is measured once. Each entry carries the\n"
    "bytes its operator moves; the attention core lists the operators it covers\n"
    "(attn.qk, attn.softmax, attn.av). Then one AdamW step over the parameters a\n"
    "rank holds at each --tp (and half and twice that). Prints each shape's time\n"
    "and, for GEMMs, GFLOP/s (2mnk per forward, 4mnk per backward); writes\n"
    "DIR/compute_profile.json (docs/compute.md), at fp32.\n"
    "\n"
    "Collectives (all ranks): each --ops collective over the whole job, at sizes\n"
    "from --min-bytes to --max-bytes doubling, timed as nccl-tests does: --warmup\n"
    "calls, a barrier, --iterations calls back to back; time = mean per iteration,\n"
    "maximum over ranks; algbw = size / time, busbw = algbw x 2(n-1)/n for\n"
    "allreduce, (n-1)/n for allgather, reducescatter and alltoall, 1 for sendrecv\n"
    "and broadcast (decimal GB/s). The results are checked (#wrong). Prints\n"
    "nccl-tests' table and writes DIR/<nccl-tests name>.log per collective\n"
    "(all_reduce.log, all_gather.log, ...) in nccl-tests' log format.\n"
    "\n"
    "Sizes take nccl-tests' suffixes, binary multiples: 1K = 1024, 64M, 1G. The\n"
    "default --max-bytes is 4M on the cpu backend (all five collectives on 2 ranks\n"
    "finish in well under a minute) and 1G on cuda; --max-bytes 1G reaches\n"
    "nccl-tests' usual 8 B .. 1 GiB sweep on either. OP: allreduce, allgather,\n"
    "reducescatter, alltoall, sendrecv, broadcast (default: the first five).";

constexpr std::string_view kExamples =
    "  orrery profile --backend cpu --out prof\n"
    "  orrery profile --backend cpu --what compute --model llama-tiny --tp 2 --out prof\n"
    "  orrery profile --backend cpu --what compute --tp 1,2 --micro-batch 1,4 --out prof\n"
    "  mpirun --oversubscribe -np 2 orrery profile --backend cpu --what collectives \\\n"
    "      --max-bytes 64M --out prof\n"
    "  mpirun -np 8 orrery profile --backend cuda --model llama3-8b --tp 8 \\\n"
    "      --micro-batch 1 --seq-len 8192 --min-bytes 8 --max-bytes 1G --out prof\n";

constexpr std::string_view kCpuDefaultMaxBytes = "4M";
constexpr std::string_view kCudaDefaultMaxBytes = "1G";

Result<std::vector<CollectiveOp>> ParseOps(const std::string& text) {
  std::vector<CollectiveOp> ops;
  std::stringstream in(text);
  std::string name;
  while (std::getline(in, name, ',')) {
    if (name.empty()) continue;
    Result<CollectiveOp> op = traces::ParseCollectiveOp(name);
    if (!op.ok()) return op.status().WithContext("--ops");
    if (*op == CollectiveOp::kReduce) {
      return InvalidArgumentError("--ops: reduce cannot be profiled (the executor's "
                                  "communicators have no reduce)");
    }
    ops.push_back(*op);
  }
  if (ops.empty()) return InvalidArgumentError("--ops: expected a list like allreduce,allgather");
  return ops;
}

// "1,2,4" → {1, 2, 4}: integers >= 1, distinct, in the order given.
Result<std::vector<int64_t>> ParsePositiveList(const po::variables_map& vm, const char* flag) {
  const std::string text = vm[flag].as<std::string>();
  std::vector<int64_t> values;
  std::stringstream in(text);
  std::string item;
  auto bad = [&] {
    return InvalidArgumentError(std::string("--") + flag +
                                ": expected an integer >= 1 or a comma-separated list of them "
                                "(1,2,4), got '" + text + "'");
  };
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      return bad();
    }
    if (used != item.size() || v < 1 || v > (int64_t{1} << 30)) return bad();
    if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
  }
  if (values.empty() || text.back() == ',') return bad();
  return values;
}

Status Positive(const po::variables_map& vm, const char* flag, int64_t minimum) {
  const int64_t v = vm[flag].as<int64_t>();
  if (v < minimum) {
    return InvalidArgumentError(std::string("--") + flag + ": expected an integer >= " +
                                std::to_string(minimum) + ", got " + std::to_string(v));
  }
  return Status::Ok();
}

// This process's rank as the launcher's environment gives it, before MPI
// is initialized (0 when run alone): only rank 0 reports bad flags.
int LauncherRank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return 0;
}

// A barrier that sleeps while it waits, so that a rank that finishes its
// compute sweep first does not spin on a core the others are timing on
// (MPI_Barrier polls).
void SleepingBarrier() {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  int done = 0;
  while (true) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) break;
    const timespec pause{0, 1'000'000};  // 1 ms
    nanosleep(&pause, nullptr);
  }
}

struct Settings {
  exec::BackendKind backend = exec::BackendKind::kCpu;
  std::string out;
  bool compute = true;
  bool collectives = true;
  workload::ModelSpec model;
  exec::ComputeProfileOptions compute_options;
  std::vector<int> tps;
  std::vector<int64_t> micro_batches;
  exec::CollectiveProfileOptions collective_options;
};

Result<Settings> ReadSettings(const po::variables_map& vm) {
  Settings s;
  for (const char* required : {"backend", "out"}) {
    if (!vm.count(required)) {
      return InvalidArgumentError(std::string("--") + required + " is required");
    }
  }
  Result<exec::BackendKind> backend = exec::ParseBackendKind(vm["backend"].as<std::string>());
  if (!backend.ok()) return backend.status().WithContext("--backend");
  s.backend = *backend;
  s.out = vm["out"].as<std::string>();
  const std::string what = vm["what"].as<std::string>();
  if (what != "compute" && what != "collectives" && what != "all") {
    return InvalidArgumentError("--what: expected compute, collectives or all, got '" + what +
                                "'");
  }
  s.compute = what != "collectives";
  s.collectives = what != "compute";
  ORRERY_ASSIGN_OR_RETURN(std::vector<int64_t> tps, ParsePositiveList(vm, "tp"));
  for (int64_t tp : tps) s.tps.push_back(static_cast<int>(tp));
  ORRERY_ASSIGN_OR_RETURN(s.micro_batches, ParsePositiveList(vm, "micro-batch"));
  ORRERY_RETURN_IF_ERROR(Positive(vm, "seq-len", 0));
  ORRERY_RETURN_IF_ERROR(Positive(vm, "repetitions", 1));
  ORRERY_RETURN_IF_ERROR(Positive(vm, "iterations", 1));
  ORRERY_RETURN_IF_ERROR(Positive(vm, "warmup", 0));
  Result<workload::ModelSpec> model = workload::LoadModel(vm["model"].as<std::string>());
  if (!model.ok()) return model.status().WithContext("--model");
  s.model = *model;
  s.compute_options.tp = s.tps.front();
  s.compute_options.micro_batch = s.micro_batches.front();
  s.compute_options.sequence_length = vm["seq-len"].as<int64_t>();
  s.compute_options.warmup = static_cast<int>(vm["warmup"].as<int64_t>());
  s.compute_options.repetitions = static_cast<int>(vm["repetitions"].as<int64_t>());
  const std::string max_text =
      vm.count("max-bytes") ? vm["max-bytes"].as<std::string>()
                            : std::string(s.backend == exec::BackendKind::kCpu
                                              ? kCpuDefaultMaxBytes
                                              : kCudaDefaultMaxBytes);
  ORRERY_ASSIGN_OR_RETURN(int64_t min_bytes,
                          traces::ParseNcclTestsSize("--min-bytes", vm["min-bytes"].as<std::string>()));
  ORRERY_ASSIGN_OR_RETURN(int64_t max_bytes, traces::ParseNcclTestsSize("--max-bytes", max_text));
  if (min_bytes < 1 || max_bytes < min_bytes) {
    return InvalidArgumentError("--min-bytes and --max-bytes: expected 1 <= min <= max, got " +
                                vm["min-bytes"].as<std::string>() + " and " + max_text);
  }
  s.collective_options.min_bytes = min_bytes;
  s.collective_options.max_bytes = max_bytes;
  s.collective_options.warmup = s.compute_options.warmup;
  if (vm["warmup"].defaulted()) s.collective_options.warmup = 5;  // nccl-tests' -w 5
  s.collective_options.iterations = static_cast<int>(vm["iterations"].as<int64_t>());
  if (vm.count("ops")) {
    ORRERY_ASSIGN_OR_RETURN(s.collective_options.ops, ParseOps(vm["ops"].as<std::string>()));
  }
  return s;
}

std::string JoinList(const auto& values) {
  std::string out;
  for (const auto& v : values) out += (out.empty() ? "" : ",") + std::to_string(v);
  return out;
}

// Rank 0's output: each line as soon as it is measured.
void PrintLine(CommandIo& io, const std::string& line) { io.out << line << std::endl; }

int Profile(const Settings& s, CommandIo& io) {
  Result<std::unique_ptr<exec::MpiWorld>> joined = exec::MpiWorld::Join();
  if (!joined.ok()) return ReportError(kCommand, joined.status(), io);
  exec::MpiWorld& world = **joined;
  const bool root = world.rank() == 0;
  std::ostringstream discard;
  CommandIo quiet{discard, discard};
  CommandIo& rank_io = root ? io : quiet;

  Status made_dir = Status::Ok();
  if (root) {
    std::error_code ec;
    std::filesystem::create_directories(s.out, ec);
    if (ec) {
      made_dir = InvalidArgumentError("--out: cannot create directory '" + s.out +
                                      "': " + ec.message());
    }
  }
  Result<std::unique_ptr<exec::Backend>> backend =
      exec::MakeBackend(s.backend, world.local_rank());
  Status ready = world.AgreeOnStatus(backend.ok() ? made_dir : backend.status());
  if (!ready.ok()) return ReportError(kCommand, ready, rank_io);

  if (s.compute) {
    // Every rank runs the same sweep at the same time, and each time
    // written is the slowest rank's (exec::TakeSlowestRank): the ranks share
    // the node as they do in training (on CPUs the cores share caches,
    // memory bandwidth and, on SMT siblings, execution units — on this
    // project's 2-vCPU machines a GEMM beside another rank's GEMM takes
    // ~20% longer than alone), so a profile taken with the other ranks
    // asleep would time an idle node, and a synchronous step waits for its
    // slowest rank.
    exec::ComputeProfileOptions o = s.compute_options;
    if (world.size() > 1) o.align = [] { MPI_Barrier(MPI_COMM_WORLD); };
    if (root) {
      PrintLine(io, "# orrery profile: compute of " + s.model.name + " (tp " +
                        JoinList(s.tps) + ", micro-batch " + JoinList(s.micro_batches) +
                        ", sequence " +
                        std::to_string(o.sequence_length > 0 ? o.sequence_length
                                                             : s.model.default_sequence_length) +
                        ") on " + (*backend)->device_name() + ", all " +
                        std::to_string(world.size()) +
                        " ranks at once, each time the slowest rank's");
    }
    Result<traces::ComputeProfile> profile = exec::ProfileComputeSweep(
        **backend, s.model, o, s.tps, s.micro_batches, [&](const std::string& line) {
          if (root) PrintLine(io, line);
        });
    Status status = world.AgreeOnStatus(profile.ok() ? Status::Ok() : profile.status());
    if (status.ok() && world.size() > 1) status = exec::TakeSlowestRank(world, *profile);
    if (status.ok() && root) {
      const std::string path = (std::filesystem::path(s.out) / "compute_profile.json").string();
      status = WriteFileAtomically(path, traces::ComputeProfileToJson(*profile));
      if (status.ok()) {
        PrintLine(io, "# wrote " + path + " (" + std::to_string(profile->entries.size()) +
                          " entries, " + std::to_string(profile->optimizer.size()) +
                          " optimizer steps)");
      }
    }
    SleepingBarrier();
    status = world.AgreeOnStatus(status);
    if (!status.ok()) return ReportError(kCommand, status, rank_io);
  }

  if (s.collectives) {
    if (root && s.compute) PrintLine(io, "#");
    Result<exec::CollectiveProfile> profile = exec::ProfileCollectives(
        world, **backend, s.collective_options,
        [&](const std::string& line) { PrintLine(io, line); });
    Status status = profile.ok() ? Status::Ok() : profile.status();
    if (root && status.ok()) {
      for (const auto& [op, log] : profile->logs) {
        const std::string path =
            (std::filesystem::path(s.out) / (std::string(traces::NcclTestsName(op)) + ".log"))
                .string();
        status = WriteFileAtomically(path, log);
        if (!status.ok()) break;
        PrintLine(io, "# wrote " + path);
      }
    }
    status = world.AgreeOnStatus(status);
    if (!status.ok()) return ReportError(kCommand, status, rank_io);
  }
  return kExitOk;
}

}  // namespace

int RunProfile(const std::vector<std::string>& args, CommandIo& io) {
  std::ostringstream discard;
  CommandIo quiet{discard, discard};
  CommandIo& launch_io = LauncherRank() == 0 ? io : quiet;
  po::options_description options("Options");
  options.add_options()
      ("backend", po::value<std::string>(), "cpu or cuda (required)")
      ("out", po::value<std::string>(), "directory for the profiles (required; created)")
      ("what", po::value<std::string>()->default_value("all"), "compute, collectives or all")
      ("model", po::value<std::string>()->default_value("gpt-tiny"),
       "compute: a model preset or a HuggingFace config.json")
      ("tp", po::value<std::string>()->default_value("1"),
       "compute: tensor-parallel degree, or a comma-separated list (1,2)")
      ("micro-batch", po::value<std::string>()->default_value("1"),
       "compute: micro-batch size, or a comma-separated list (1,4)")
      ("seq-len", po::value<int64_t>()->default_value(0),
       "compute: sequence length (0: the model's default)")
      ("repetitions", po::value<int64_t>()->default_value(10),
       "compute: timed calls per shape (their mean is kept: a step pays for the slow calls too)")
      ("ops", po::value<std::string>(),
       "collectives: comma-separated list (default allreduce,allgather,reducescatter,"
       "alltoall,sendrecv)")
      ("min-bytes", po::value<std::string>()->default_value("8"), "collectives: smallest size")
      ("max-bytes", po::value<std::string>(),
       "collectives: largest size (default 4M on cpu, 1G on cuda)")
      ("iterations", po::value<int64_t>()->default_value(20),
       "collectives: timed calls per size")
      ("warmup", po::value<int64_t>()->default_value(2),
       "untimed calls first (compute: default 2; collectives: default 5)");
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, launch_io)) {
    return *code;
  }
  Result<Settings> settings = ReadSettings(vm);
  if (!settings.ok()) return ReportError(kCommand, settings.status(), launch_io);
  return Profile(*settings, io);
}

}  // namespace orrery::cli
