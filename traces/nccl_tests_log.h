// NcclTestsLog: the output of NVIDIA's nccl-tests (all_reduce_perf and its
// siblings), read into values the calibration can fit.
//
// A log holds one or more tests. Each test prints a header — optionally
// "# nccl-tests version ...", "# Collective test starting: all_reduce_perf",
// then "# nThread 1 nGpus 1 minBytes 8 maxBytes ... step: 2(factor) warmup
// iters: 5 iters: 20 ...", one "#  Rank  0 Group  0 Pid ... on HOST device
// 0 [0000:19:00] NVIDIA H100 80GB HBM3" line per rank — then a table with
// one row per message size:
//
//   size count type redop root | time algbw busbw #wrong | time algbw busbw #wrong
//                                  out-of-place            in-place
//
// and ends with "# Out of bounds values : 0 OK" and "# Avg bus bandwidth : X".
// Lines that are not part of this format (the mpirun command line, MPI
// warnings, "NCCL version 2.26.2+cuda12.8", NCCL INFO debug output) are
// skipped; a line inside a table that starts with a number and is not a
// valid row is an error naming the file and the line. Older nccl-tests print
// no "root" column and no "Group" field; both forms are accepted. "#wrong" is
// "N/A" where nccl-tests does not check (in-place all-to-all, send/recv).
//
// Which collective a table measures is read from "Collective test starting:",
// else from a "<name>_perf" binary on a command line before the table, else
// inferred from the busbw/algbw ratio (2(n-1)/n with a reduction operator is
// all-reduce), else taken from the caller's hint; otherwise it stays unknown.
//
// Units: sizes in bytes, times from the log's microseconds, bandwidths from
// its decimal GB/s (as nccl-tests prints them; see traces/collective_op.h
// for algbw and busbw).
//
// Thread-safety: plain values and pure functions.
#ifndef ORRERY_TRACES_NCCL_TESTS_LOG_H_
#define ORRERY_TRACES_NCCL_TESTS_LOG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "traces/collective_op.h"

namespace orrery::traces {

// One "#  Rank  3 Group  0 Pid 4180129 on cnode3-002 device  3 [0000:61:00]
// NVIDIA H100 80GB HBM3" line.
struct NcclTestsRank {
  int rank = 0;
  std::optional<int> group;  // absent in older nccl-tests
  int64_t pid = 0;
  std::string host;
  int device = 0;
  std::string bus_id;       // "0000:61:00", without brackets
  std::string device_name;  // "NVIDIA H100 80GB HBM3"
};

// One measurement of a row: out-of-place or in-place.
struct NcclTestsMeasurement {
  Duration time;      // average time per iteration
  Bandwidth algbw;    // as printed (rounded to 0.01 GB/s)
  Bandwidth busbw;    // as printed
  std::optional<int64_t> wrong;  // #wrong; absent when printed "N/A"
};

struct NcclTestsRow {
  Bytes size;
  int64_t count = 0;     // elements, per nccl-tests' convention for the op
  std::string type;      // "float", "double", ...
  std::string redop;     // "sum", "none", ...
  std::optional<int> root;  // -1 when the op has none; absent in old logs
  NcclTestsMeasurement out_of_place;
  NcclTestsMeasurement in_place;
  int line = 0;  // 1-based line in the log
};

// One collective test of a log: its header and its table.
struct NcclTestsTable {
  std::optional<CollectiveOp> collective;
  // How `collective` was found: "log header", "command line",
  // "busbw/algbw ratio", "caller", or "" when unknown.
  std::string collective_evidence;
  std::string nccl_tests_version;  // "2.17.8", when printed
  std::string nccl_version;        // "2.26.2+cuda12.8" or "22902", when printed
  // The "# nThread ..." line as key → value ("nThread" → "1", "minBytes" →
  // "8", "step" → "2(factor)", "warmup iters" → "5", ...), in log order of
  // keys sorted by name.
  std::map<std::string, std::string> settings;
  std::optional<int> nthread;
  std::optional<int> ngpus;  // GPUs per process
  std::optional<Bytes> min_bytes;
  std::optional<Bytes> max_bytes;
  std::optional<int> iters;
  std::optional<int> warmup_iters;
  std::vector<NcclTestsRank> ranks;
  std::vector<NcclTestsRow> rows;
  std::optional<double> avg_busbw_gbps;  // "# Avg bus bandwidth : X" (GB/s)
  std::optional<std::string> out_of_bounds;  // "0 OK"
  int first_line = 0;  // 1-based line where the test's header starts

  // Ranks in the test: the number of rank lines.
  int RankCount() const { return static_cast<int>(ranks.size()); }
  // Distinct hosts among the rank lines.
  int NodeCount() const;
};

struct NcclTestsLog {
  std::string source;  // the path or name given to the parser
  std::vector<NcclTestsTable> tables;
};

// Parses the text of a log. `source` names it in errors ("file.log:42: ...").
// `hint` is the collective of tables whose log does not say.
// Fails when a row inside a table is malformed, or when the text holds no
// table at all.
Result<NcclTestsLog> ParseNcclTestsLog(std::string_view text, std::string_view source,
                                       std::optional<CollectiveOp> hint = std::nullopt);

// Reads and parses the log at `path`.
Result<NcclTestsLog> LoadNcclTestsLog(const std::string& path,
                                      std::optional<CollectiveOp> hint = std::nullopt);

}  // namespace orrery::traces

#endif  // ORRERY_TRACES_NCCL_TESTS_LOG_H_
