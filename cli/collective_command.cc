// `orrery collective`: time a collective on a cluster over a range of sizes
// and print it in nccl-tests' columns, so the estimate can be laid beside a
// real all_reduce_perf log.
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/subcommands.h"
#include "core/json.h"
#include "costmodel/collective.h"
#include "costmodel/collective_calibration.h"
#include "topology/presets.h"
#include "traces/nccl_tests_log.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;
using costmodel::CollectiveEstimate;
using traces::CollectiveOp;

constexpr std::string_view kCommand = "collective";

constexpr std::string_view kUsage =
    "orrery collective --cluster C [--nodes N] --op OP --ranks R [--min-bytes 8]\n"
    "                         [--max-bytes 16G] [--step-factor 2] [--calibration-log FILE...]\n"
    "                         [--format text|json]";

constexpr std::string_view kDescription =
    "Estimates the time of one collective over R ranks of a cluster (a preset or a\n"
    "cluster JSON file, scaled to --nodes) for sizes from --min-bytes to --max-bytes,\n"
    "multiplying by --step-factor, as nccl-tests' -b/-e/-f do. Ranks fill whole\n"
    "nodes: R up to the devices of one node stay inside it, larger R must be a\n"
    "multiple of devices per node.\n"
    "\n"
    "The table has nccl-tests' columns: size (B, the full array as nccl-tests\n"
    "counts it), count (elements of float), type, redop, root, time (us), algbw and\n"
    "busbw (decimal GB/s; busbw = algbw x 2(n-1)/n for allreduce, (n-1)/n for\n"
    "allgather, reducescatter and alltoall, 1 otherwise), then the algorithm and\n"
    "protocol NCCL's tuning model picks (Ring, Tree, NVLS, NVLSTree, P2P; LL, LL128,\n"
    "Simple). Without --calibration-log the figures are nominal (the cluster's\n"
    "datasheet figures through NCCL's model); each --calibration-log (an nccl-tests\n"
    "log measured on this cluster's node type) replaces them by α-β regimes fitted\n"
    "to its tables. docs/costmodel.md gives every formula.\n"
    "\n"
    "Sizes take nccl-tests' suffixes, binary multiples: 1K = 1024, 16M = 16 MiB,\n"
    "16G = 16 GiB. OP: allreduce, allgather, reducescatter, alltoall, broadcast,\n"
    "sendrecv.";

constexpr std::string_view kExamples =
    "  orrery collective --cluster dgx-h100 --op allreduce --ranks 8\n"
    "  orrery collective --cluster dgx-h100 --nodes 2 --op allreduce --ranks 16 \\\n"
    "      --min-bytes 1M --max-bytes 1G\n"
    "  orrery collective --cluster dgx-h100 --op allreduce --ranks 8 \\\n"
    "      --calibration-log ../shared/fixtures/nccl_tests/"
    "nccl_allreduce_1node_8xH100_dgx_nvswitch_dgxc-benchmarking.log\n"
    "  orrery collective --cluster dgx-h100 --nodes 4 --op alltoall --ranks 32 --format json\n";

struct Row {
  Bytes size;
  int64_t count;
  CollectiveEstimate estimate;
};

}  // namespace

int RunCollective(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()
      ("cluster", po::value<std::string>(), "cluster preset or cluster JSON file (required)")
      ("nodes", po::value<int>(), "number of nodes of the cluster (default: as given)")
      ("op", po::value<std::string>(), "the collective (required): allreduce, allgather, "
                                        "reducescatter, alltoall, broadcast, sendrecv")
      ("ranks", po::value<int>(), "number of ranks taking part (required)")
      ("min-bytes", po::value<std::string>()->default_value("8"), "smallest size")
      ("max-bytes", po::value<std::string>()->default_value("16G"), "largest size")
      ("step-factor", po::value<int>()->default_value(2), "multiply the size by this each row")
      ("calibration-log", po::value<std::vector<std::string>>()->multitoken(),
       "nccl-tests log(s) measured on this cluster's node type: fit the model to them");
  AddFormatOption(options);
  po::variables_map vm;
  if (std::optional<int> code =
          ParseOptions(kCommand, kUsage, kDescription, kExamples, options, args, vm, io)) {
    return *code;
  }
  for (const char* required : {"cluster", "op", "ranks"}) {
    if (!vm.count(required)) {
      return ReportError(kCommand,
                         InvalidArgumentError(std::string("--") + required + " is required"), io);
    }
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);
  Result<CollectiveOp> op = traces::ParseCollectiveOp(vm["op"].as<std::string>());
  if (!op.ok()) return ReportError(kCommand, op.status().WithContext("--op"), io);
  Result<int64_t> min_bytes =
      traces::ParseNcclTestsSize("--min-bytes", vm["min-bytes"].as<std::string>());
  if (!min_bytes.ok()) return ReportError(kCommand, min_bytes.status(), io);
  Result<int64_t> max_bytes =
      traces::ParseNcclTestsSize("--max-bytes", vm["max-bytes"].as<std::string>());
  if (!max_bytes.ok()) return ReportError(kCommand, max_bytes.status(), io);
  const Bytes min_size(*min_bytes);
  const Bytes max_size(*max_bytes);
  if (min_size < Bytes(1) || max_size < min_size) {
    return ReportError(kCommand,
                       InvalidArgumentError("--min-bytes and --max-bytes: expected 1 <= min <= "
                                            "max, got " + vm["min-bytes"].as<std::string>() +
                                            " and " + vm["max-bytes"].as<std::string>()),
                       io);
  }
  const int factor = vm["step-factor"].as<int>();
  if (factor < 2) {
    return ReportError(kCommand,
                       InvalidArgumentError("--step-factor: expected an integer >= 2, got " +
                                            std::to_string(factor)),
                       io);
  }
  std::optional<int> nodes;
  if (vm.count("nodes")) nodes = vm["nodes"].as<int>();
  Result<topology::ClusterSpec> cluster =
      topology::ResolveCluster(vm["cluster"].as<std::string>(), nodes);
  if (!cluster.ok()) return ReportError(kCommand, cluster.status(), io);
  const int ranks = vm["ranks"].as<int>();
  Result<costmodel::RankGroup> group = costmodel::PackRanks(*cluster, ranks);
  if (!group.ok()) return ReportError(kCommand, group.status(), io);

  Result<costmodel::CollectiveModel> nominal = costmodel::CollectiveModel::Create(*cluster);
  if (!nominal.ok()) return ReportError(kCommand, nominal.status(), io);
  costmodel::CollectiveCalibration calibration;
  if (vm.count("calibration-log")) {
    for (const std::string& path : vm["calibration-log"].as<std::vector<std::string>>()) {
      Result<traces::NcclTestsLog> log = traces::LoadNcclTestsLog(path);
      if (!log.ok()) return ReportError(kCommand, log.status(), io);
      Status s = costmodel::CalibrateFromLog(*log, *nominal, calibration);
      if (!s.ok()) return ReportError(kCommand, s, io);
    }
  }
  Result<costmodel::CollectiveModel> model =
      costmodel::CollectiveModel::Create(*cluster, calibration);
  if (!model.ok()) return ReportError(kCommand, model.status(), io);

  std::vector<Row> rows;
  for (Bytes size = min_size; size <= max_size; size = size * factor) {
    Result<CollectiveEstimate> e = model->Estimate(*op, size, *group);
    if (!e.ok()) return ReportError(kCommand, e.status(), io);
    rows.push_back({size, traces::NcclTestsCount(*op, size.count(), ranks, 4), *e});
    if (size.count() > (int64_t{1} << 50) / factor) break;
  }

  if (*format == OutputFormat::kJson) {
    Json doc;
    doc["cluster"] = cluster->name;
    doc["op"] = std::string(traces::CollectiveOpName(*op));
    doc["ranks"] = ranks;
    doc["nodes"] = group->nodes;
    doc["ranks_per_node"] = group->ranks_per_node;
    Json out_rows = Json::array();
    for (const Row& r : rows) {
      Json j;
      j["size_bytes"] = r.size.count();
      j["count"] = r.count;
      j["type"] = "float";
      j["time_us"] = r.estimate.time.ToMicros();
      j["algbw_gbps"] = r.estimate.algbw.ToGBps();
      j["busbw_gbps"] = r.estimate.busbw.ToGBps();
      j["algorithm"] = r.estimate.AlgorithmLabel();
      j["source"] = std::string(costmodel::EstimateSourceName(r.estimate.source));
      j["provenance"] = r.estimate.provenance;
      out_rows.push_back(j);
    }
    doc["rows"] = out_rows;
    io.out << DumpJson(doc);
    return kExitOk;
  }
  std::ostringstream out;
  out << "# orrery collective: " << traces::NcclTestsName(*op) << " over " << ranks
      << " ranks on " << cluster->name << " (" << group->nodes
      << (group->nodes == 1 ? " node" : " nodes") << ", " << group->ranks_per_node
      << " ranks per node)\n#\n";
  out << "#       size         count      type   redop    root     time   algbw   busbw  "
         "algorithm\n";
  out << "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)\n";
  std::vector<std::string> provenances;
  for (const Row& r : rows) {
    char line[256];
    std::snprintf(line, sizeof line, "%12lld  %12lld  %8s  %6s  %6d  %s %7.2f %7.2f  %s\n",
                  static_cast<long long>(r.size.count()), static_cast<long long>(r.count),
                  "float", std::string(traces::NcclTestsRedOp(*op)).c_str(),
                  traces::NcclTestsRoot(*op),
                  traces::NcclTestsTime(r.estimate.time.ToMicros()).c_str(),
                  r.estimate.algbw.ToGBps(),
                  r.estimate.busbw.ToGBps(), r.estimate.AlgorithmLabel().c_str());
    out << line;
    bool seen = false;
    for (const std::string& p : provenances) seen = seen || p == r.estimate.provenance;
    if (!seen) provenances.push_back(r.estimate.provenance);
  }
  out << "#\n";
  for (const std::string& p : provenances) out << "# " << p << "\n";
  io.out << out.str();
  return kExitOk;
}

}  // namespace orrery::cli
