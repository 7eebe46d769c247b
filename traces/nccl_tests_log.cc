#include "traces/nccl_tests_log.h"

#include <charconv>
#include <cmath>
#include <set>
#include <sstream>

#include "core/file.h"

namespace orrery::traces {
namespace {

std::vector<std::string_view> Tokens(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

template <typename T>
std::optional<T> ParseInt(std::string_view s) {
  T v{};
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> ParseDouble(std::string_view s) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool IsDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// The text after "#", with leading blanks removed.
std::string_view CommentBody(std::string_view line) {
  line.remove_prefix(1);
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  return line;
}

// "nThread 1 nGpus 1 minBytes 8 ... step: 2(factor) warmup iters: 5 ..." →
// key/value pairs. A key is the words before a token ending in ':' joined
// with it, or one of nccl-tests' colon-less keys.
std::map<std::string, std::string> ParseSettings(std::string_view body) {
  static const std::set<std::string_view> kBareKeys = {"nThread", "nGpus", "minBytes",
                                                       "maxBytes"};
  std::map<std::string, std::string> out;
  std::vector<std::string_view> t = Tokens(body);
  std::string pending;
  for (size_t i = 0; i < t.size(); ++i) {
    std::string_view tok = t[i];
    bool colon = tok.size() > 1 && tok.back() == ':';
    if ((colon || kBareKeys.contains(tok)) && i + 1 < t.size()) {
      std::string key = pending.empty() ? "" : pending + " ";
      key += colon ? tok.substr(0, tok.size() - 1) : tok;
      out[key] = std::string(t[i + 1]);
      pending.clear();
      ++i;
    } else {
      pending = pending.empty() ? std::string(tok) : pending + " " + std::string(tok);
    }
  }
  return out;
}

std::optional<int> SettingInt(const std::map<std::string, std::string>& s, const std::string& k) {
  auto it = s.find(k);
  if (it == s.end()) return std::nullopt;
  return ParseInt<int>(it->second);
}

// "#  Rank  0 Group  0 Pid 1006102 on pool0-01806 device  0 [0000:19:00] NVIDIA H100 80GB HBM3"
std::optional<NcclTestsRank> ParseRankLine(std::string_view body) {
  std::vector<std::string_view> t = Tokens(body);
  NcclTestsRank r;
  size_t i = 0;
  auto expect = [&](std::string_view word) { return i < t.size() && t[i++] == word; };
  if (!expect("Rank") || i >= t.size()) return std::nullopt;
  auto rank = ParseInt<int>(t[i++]);
  if (!rank) return std::nullopt;
  r.rank = *rank;
  if (i < t.size() && t[i] == "Group") {
    ++i;
    if (i >= t.size()) return std::nullopt;
    r.group = ParseInt<int>(t[i++]);
    if (!r.group) return std::nullopt;
  }
  if (!expect("Pid") || i >= t.size()) return std::nullopt;
  auto pid = ParseInt<int64_t>(t[i++]);
  if (!pid) return std::nullopt;
  r.pid = *pid;
  if (!expect("on") || i >= t.size()) return std::nullopt;
  r.host = std::string(t[i++]);
  if (!expect("device") || i >= t.size()) return std::nullopt;
  auto dev = ParseInt<int>(t[i++]);
  if (!dev) return std::nullopt;
  r.device = *dev;
  if (i < t.size() && t[i].size() >= 2 && t[i].front() == '[' && t[i].back() == ']') {
    r.bus_id = std::string(t[i].substr(1, t[i].size() - 2));
    ++i;
  }
  for (; i < t.size(); ++i) {
    if (!r.device_name.empty()) r.device_name += " ";
    r.device_name += t[i];
  }
  return r;
}

// A collective named by a "<name>_perf[_mpi]" token of a command line.
std::optional<CollectiveOp> CommandLineOp(std::string_view line) {
  for (std::string_view tok : Tokens(line)) {
    size_t slash = tok.rfind('/');
    if (slash != std::string_view::npos) tok.remove_prefix(slash + 1);
    if (tok.find("_perf") == std::string_view::npos) continue;
    Result<CollectiveOp> op = ParseCollectiveOp(tok);
    if (op.ok()) return *op;
  }
  return std::nullopt;
}

class Parser {
 public:
  Parser(std::string_view source, std::optional<CollectiveOp> hint)
      : source_(source), hint_(hint) {}

  Status Line(int no, std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    if (line.empty()) return Status::Ok();
    if (line.front() != '#') return NonComment(no, line);
    std::string_view body = CommentBody(line);
    if (body.starts_with("nccl-tests version")) {
      std::vector<std::string_view> t = Tokens(body);
      pending_version_ = t.size() > 2 ? std::string(t[2]) : "";
      for (std::string_view tok : t) {
        if (tok.starts_with("nccl-library=")) {
          pending_nccl_ = std::string(tok.substr(13));
        }
      }
      return Status::Ok();
    }
    if (body.starts_with("Collective test starting:")) {
      Start(no);
      std::vector<std::string_view> t = Tokens(body);
      if (!t.empty()) {
        Result<CollectiveOp> op = ParseCollectiveOp(t.back());
        if (op.ok()) {
          Current().collective = *op;
          Current().collective_evidence = "log header";
        }
      }
      return Status::Ok();
    }
    if (body.starts_with("nThread ")) {
      if (!have_current_ || !Current().rows.empty() || !Current().settings.empty()) Start(no);
      NcclTestsTable& t = Current();
      t.settings = ParseSettings(body);
      t.nthread = SettingInt(t.settings, "nThread");
      t.ngpus = SettingInt(t.settings, "nGpus");
      t.iters = SettingInt(t.settings, "iters");
      t.warmup_iters = SettingInt(t.settings, "warmup iters");
      for (const char* k : {"minBytes", "maxBytes"}) {
        auto it = t.settings.find(k);
        if (it == t.settings.end()) continue;
        auto v = ParseInt<int64_t>(it->second);
        if (!v) return Error(no, std::string("expected an integer after '") + k + "', got '" +
                                     it->second + "'");
        (std::string_view(k) == "minBytes" ? t.min_bytes : t.max_bytes) = Bytes(*v);
      }
      return Status::Ok();
    }
    if (body.starts_with("Rank ")) {
      std::optional<NcclTestsRank> r = ParseRankLine(body);
      if (!r) {
        return Error(no, "expected a rank line '# Rank <r> [Group <g>] Pid <pid> on <host> "
                         "device <d> [<bus id>] <name>'");
      }
      if (!have_current_ || !Current().rows.empty()) Start(no);
      Current().ranks.push_back(*r);
      return Status::Ok();
    }
    std::vector<std::string_view> t = Tokens(body);
    if (t.size() >= 3 && t[0] == "size" && t[1] == "count" && t[2] == "type") {
      if (!have_current_ || !Current().rows.empty()) Start(no);
      in_table_ = true;
      return Status::Ok();
    }
    if (body.starts_with("Out of bounds values")) {
      if (have_current_) Current().out_of_bounds = std::string(AfterColon(body));
      return Status::Ok();
    }
    if (body.starts_with("Avg bus bandwidth")) {
      if (!have_current_) return Status::Ok();
      std::optional<double> v = ParseDouble(AfterColon(body));
      if (!v) return Error(no, "expected a number after 'Avg bus bandwidth :'");
      Current().avg_busbw_gbps = *v;
      in_table_ = false;
      return Status::Ok();
    }
    return Status::Ok();
  }

  Result<NcclTestsLog> Finish() {
    NcclTestsLog log;
    log.source = std::string(source_);
    for (NcclTestsTable& t : tables_) {
      if (t.rows.empty()) continue;
      if (!t.collective) InferCollective(t);
      log.tables.push_back(std::move(t));
    }
    if (log.tables.empty()) {
      return InvalidArgumentError(std::string(source_) +
                                  ": no nccl-tests table found (expected rows after a "
                                  "'#  size  count  type ...' header line)");
    }
    return log;
  }

 private:
  NcclTestsTable& Current() { return tables_.back(); }

  void Start(int no) {
    tables_.emplace_back();
    have_current_ = true;
    in_table_ = false;
    NcclTestsTable& t = Current();
    t.first_line = no;
    t.nccl_tests_version = pending_version_;
    t.nccl_version = pending_nccl_;
    pending_version_.clear();
    if (pending_op_) {
      t.collective = pending_op_;
      t.collective_evidence = "command line";
    }
  }

  static std::string_view AfterColon(std::string_view body) {
    size_t c = body.find(':');
    std::string_view v = c == std::string_view::npos ? "" : body.substr(c + 1);
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    return v;
  }

  Status Error(int no, std::string_view what) const {
    return InvalidArgumentError(std::string(source_) + ":" + std::to_string(no) + ": " +
                                std::string(what));
  }

  Status NonComment(int no, std::string_view line) {
    std::vector<std::string_view> t = Tokens(line);
    if (t.size() >= 3 && t[0] == "NCCL" && t[1] == "version") {
      if (have_current_) {
        Current().nccl_version = std::string(t[2]);
      } else {
        pending_nccl_ = std::string(t[2]);
      }
      return Status::Ok();
    }
    if (!in_table_ || !IsDigits(t[0])) {
      if (std::optional<CollectiveOp> op = CommandLineOp(line)) pending_op_ = op;
      return Status::Ok();
    }
    return Row(no, t);
  }

  Status Row(int no, const std::vector<std::string_view>& t) {
    if (t.size() != 13 && t.size() != 12) {
      return Error(no, "expected a table row of 13 columns (size count type redop root, then "
                       "time algbw busbw #wrong out-of-place and in-place) or 12 without root, "
                       "got " + std::to_string(t.size()));
    }
    NcclTestsRow row;
    row.line = no;
    auto size = ParseInt<int64_t>(t[0]);
    auto count = ParseInt<int64_t>(t[1]);
    if (!size) {
      return Error(no, "expected an integer size in bytes, got '" + std::string(t[0]) + "'");
    }
    if (!count) return Error(no, "expected an integer count, got '" + std::string(t[1]) + "'");
    row.size = Bytes(*size);
    row.count = *count;
    row.type = std::string(t[2]);
    row.redop = std::string(t[3]);
    size_t i = 4;
    if (t.size() == 13) {
      row.root = ParseInt<int>(t[4]);
      if (!row.root) return Error(no, "expected an integer root, got '" + std::string(t[4]) + "'");
      i = 5;
    }
    for (NcclTestsMeasurement* m : {&row.out_of_place, &row.in_place}) {
      static const char* kNames[] = {"time (us)", "algbw (GB/s)", "busbw (GB/s)"};
      double v[3];
      for (int k = 0; k < 3; ++k) {
        std::optional<double> d = ParseDouble(t[i + k]);
        if (!d || *d < 0) {
          return Error(no, std::string("column ") + std::to_string(i + k + 1) + ": expected a " +
                               "non-negative " + kNames[k] + ", got '" + std::string(t[i + k]) +
                               "'");
        }
        v[k] = *d;
      }
      m->time = Micros(v[0]);
      m->algbw = GBps(v[1]);
      m->busbw = GBps(v[2]);
      std::string_view w = t[i + 3];
      if (w != "N/A") {
        m->wrong = ParseInt<int64_t>(w);
        if (!m->wrong) {
          return Error(no, "column " + std::to_string(i + 4) +
                               ": expected #wrong as an integer or N/A, got '" + std::string(w) +
                               "'");
        }
      }
      i += 4;
    }
    Current().rows.push_back(std::move(row));
    return Status::Ok();
  }

  void InferCollective(NcclTestsTable& t) const {
    int n = t.RankCount();
    const NcclTestsRow* best = nullptr;
    for (const NcclTestsRow& r : t.rows) {
      if (best == nullptr || r.out_of_place.algbw > best->out_of_place.algbw) best = &r;
    }
    if (n >= 2 && best != nullptr && best->out_of_place.algbw > GBps(1) &&
        best->redop != "none") {
      double ratio = best->out_of_place.busbw / best->out_of_place.algbw;
      if (std::abs(ratio / BusBandwidthFactor(CollectiveOp::kAllReduce, n) - 1.0) < 0.01) {
        t.collective = CollectiveOp::kAllReduce;
        t.collective_evidence = "busbw/algbw ratio";
        return;
      }
    }
    if (hint_) {
      t.collective = hint_;
      t.collective_evidence = "caller";
    }
  }

  std::string_view source_;
  std::optional<CollectiveOp> hint_;
  std::vector<NcclTestsTable> tables_;
  bool have_current_ = false;
  bool in_table_ = false;
  std::string pending_version_;
  std::string pending_nccl_;
  std::optional<CollectiveOp> pending_op_;
};

}  // namespace

int NcclTestsTable::NodeCount() const {
  std::set<std::string> hosts;
  for (const NcclTestsRank& r : ranks) hosts.insert(r.host);
  return static_cast<int>(hosts.size());
}

Result<NcclTestsLog> ParseNcclTestsLog(std::string_view text, std::string_view source,
                                       std::optional<CollectiveOp> hint) {
  Parser parser(source, hint);
  int no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    ++no;
    ORRERY_RETURN_IF_ERROR(parser.Line(no, text.substr(pos, end - pos)));
    pos = end + 1;
  }
  return parser.Finish();
}

Result<NcclTestsLog> LoadNcclTestsLog(const std::string& path, std::optional<CollectiveOp> hint) {
  ORRERY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseNcclTestsLog(text, path, hint);
}

}  // namespace orrery::traces
