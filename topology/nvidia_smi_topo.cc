#include "topology/nvidia_smi_topo.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <utility>

namespace orrery::topology {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits a line into cells: on tabs when it has any, else on runs of two or
// more spaces. Empty cells are dropped (drivers print "\t\t" before "N/A").
std::vector<std::string> SplitCells(std::string_view line) {
  std::vector<std::string> cells;
  const bool tabs = line.find('\t') != std::string_view::npos;
  size_t i = 0;
  while (i < line.size()) {
    size_t end;
    size_t next;
    if (tabs) {
      end = line.find('\t', i);
      if (end == std::string_view::npos) end = line.size();
      next = end + 1;
    } else {
      end = line.find("  ", i);
      if (end == std::string_view::npos) end = line.size();
      next = end;
      while (next < line.size() && line[next] == ' ') ++next;
    }
    std::string_view cell = Trim(line.substr(i, end - i));
    if (!cell.empty()) cells.emplace_back(cell);
    i = std::max(next, end + 1);
  }
  return cells;
}

std::optional<SmiTopoCell> ParseCell(std::string_view text) {
  if (text == "X") return SmiTopoCell{PathKind::kSelf, 0};
  if (text == "PIX") return SmiTopoCell{PathKind::kPix, 0};
  if (text == "PXB") return SmiTopoCell{PathKind::kPxb, 0};
  if (text == "PHB") return SmiTopoCell{PathKind::kPhb, 0};
  if (text == "NODE") return SmiTopoCell{PathKind::kNode, 0};
  if (text == "SYS" || text == "SOC") return SmiTopoCell{PathKind::kSys, 0};
  if (text.size() > 2 && text.substr(0, 2) == "NV") {
    int n = 0;
    auto [end, ec] = std::from_chars(text.data() + 2, text.data() + text.size(), n);
    if (ec == std::errc() && end == text.data() + text.size() && n > 0) {
      return SmiTopoCell{PathKind::kNvLink, n};
    }
  }
  return std::nullopt;
}

std::optional<int> ParseInt(std::string_view s) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

bool IsGpuLabel(std::string_view label) {
  return label.size() > 3 && label.substr(0, 3) == "GPU" &&
         std::all_of(label.begin() + 3, label.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

bool SmiTopoMatrix::IsGpu(size_t row) const { return IsGpuLabel(labels[row]); }

Result<SmiTopoMatrix> ParseNvidiaSmiTopo(std::string_view text, const std::string& source) {
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos <= text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    pos = end + 1;
  }

  // The header: the first line whose first cell is GPU0.
  size_t header_line = lines.size();
  std::vector<std::string> header;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<std::string> cells = SplitCells(lines[i]);
    if (!cells.empty() && cells[0] == "GPU0") {
      header_line = i;
      header = std::move(cells);
      break;
    }
  }
  if (header_line == lines.size()) {
    return InvalidArgumentError(source +
                                ": no `nvidia-smi topo -m` header (a line of columns starting "
                                "with GPU0) found");
  }

  SmiTopoMatrix m;
  // Rows follow the header until a blank line or the legend.
  std::vector<std::vector<std::string>> rows;
  std::vector<size_t> row_lines;
  size_t i = header_line + 1;
  for (; i < lines.size(); ++i) {
    std::string_view t = Trim(lines[i]);
    if (t.empty() || t.starts_with("Legend")) break;
    rows.push_back(SplitCells(lines[i]));
    row_lines.push_back(i + 1);
  }
  // Device columns: the header's leading cells, which the rows name in order.
  size_t n = 0;
  while (n < header.size() && n < rows.size() && !rows[n].empty() && rows[n][0] == header[n]) {
    ++n;
  }
  if (n < header.size() && n == rows.size()) {
    // Fewer rows than device columns, when the next header cell is one.
    const std::string& next = header[n];
    if (IsGpuLabel(next) || next.starts_with("NIC") || next.starts_with("mlx")) {
      return InvalidArgumentError(source + ": the matrix has " + std::to_string(rows.size()) +
                                  " rows but its header names column '" + next +
                                  "' with no row for it (a truncated copy?)");
    }
  }
  if (n == 0) {
    return InvalidArgumentError(source + ": line " + std::to_string(header_line + 2) +
                                ": expected the row of GPU0 after the header");
  }
  if (n < rows.size()) {
    return InvalidArgumentError(source + ": line " + std::to_string(row_lines[n]) +
                                ": expected the row of '" +
                                (n < header.size() ? header[n] : std::string("(none)")) +
                                "' as the header orders the columns, got '" +
                                (rows[n].empty() ? std::string() : rows[n][0]) + "'");
  }
  const std::vector<std::string> trailing(header.begin() + static_cast<std::ptrdiff_t>(n),
                                          header.end());
  m.labels.assign(header.begin(), header.begin() + static_cast<std::ptrdiff_t>(n));
  for (size_t r = 0; r < n; ++r) {
    const std::vector<std::string>& row = rows[r];
    if (row.size() < n + 1) {
      return InvalidArgumentError(source + ": line " + std::to_string(row_lines[r]) + ": row '" +
                                  row[0] + "' has " + std::to_string(row.size() - 1) +
                                  " cells, expected " + std::to_string(n) +
                                  " (one per column of the header)");
    }
    std::vector<SmiTopoCell> cells;
    for (size_t c = 0; c < n; ++c) {
      std::optional<SmiTopoCell> cell = ParseCell(row[c + 1]);
      if (!cell) {
        return InvalidArgumentError(source + ": line " + std::to_string(row_lines[r]) + ": cell " +
                                    m.labels[r] + "/" + m.labels[c] + " is '" + row[c + 1] +
                                    "', expected one of X, NV#, PIX, PXB, PHB, NODE, SYS");
      }
      if ((cell->path == PathKind::kSelf) != (r == c)) {
        return InvalidArgumentError(source + ": line " + std::to_string(row_lines[r]) + ": cell " +
                                    m.labels[r] + "/" + m.labels[c] + " is '" + row[c + 1] +
                                    "', expected " +
                                    (r == c ? "X on the diagonal" : "X only on the diagonal"));
      }
      cells.push_back(*cell);
    }
    std::map<std::string, std::string> aff;
    for (size_t k = 0; k + n + 1 < row.size() && k < trailing.size(); ++k) {
      aff[trailing[k]] = row[n + 1 + k];
    }
    m.cells.push_back(std::move(cells));
    m.affinity.push_back(std::move(aff));
  }
  for (size_t r = 0; r < n; ++r) {
    for (size_t c = 0; c < r; ++c) {
      const SmiTopoCell& a = m.cells[r][c];
      const SmiTopoCell& b = m.cells[c][r];
      if (a.path != b.path || a.nvlinks != b.nvlinks) {
        return InvalidArgumentError(source + ": line " + std::to_string(row_lines[r]) + ": cell " +
                                    m.labels[r] + "/" + m.labels[c] + " differs from " +
                                    m.labels[c] + "/" + m.labels[r] +
                                    "; expected a symmetric matrix");
      }
    }
  }
  // The NIC legend: "  NIC0: mlx5_bond_0" lines after "NIC Legend:".
  for (; i < lines.size(); ++i) {
    if (Trim(lines[i]) != "NIC Legend:") continue;
    for (size_t j = i + 1; j < lines.size(); ++j) {
      std::string_view t = Trim(lines[j]);
      if (t.empty()) continue;
      const size_t colon = t.find(':');
      if (colon == std::string_view::npos || !t.starts_with("NIC")) break;
      m.nic_legend[std::string(Trim(t.substr(0, colon)))] = std::string(Trim(t.substr(colon + 1)));
    }
    break;
  }
  return m;
}

NodeInventory SmiTopoToInventory(const SmiTopoMatrix& m, const std::string& source) {
  NodeInventory node;
  node.source = source;
  std::vector<size_t> gpu_rows;
  std::vector<size_t> nic_rows;
  for (size_t r = 0; r < m.labels.size(); ++r) (m.IsGpu(r) ? gpu_rows : nic_rows).push_back(r);

  for (size_t r : gpu_rows) {
    FoundGpu gpu;
    gpu.label = m.labels[r];
    auto numa = m.affinity[r].find("NUMA Affinity");
    if (numa != m.affinity[r].end()) gpu.numa_node = ParseInt(numa->second);
    auto cpus = m.affinity[r].find("CPU Affinity");
    if (cpus != m.affinity[r].end()) gpu.cpu_affinity = cpus->second;
    node.gpus.push_back(std::move(gpu));
  }
  const size_t g = gpu_rows.size();
  bool any_nvlink = false;
  node.gpu_paths.assign(g, std::vector<PathKind>(g, PathKind::kSelf));
  std::vector<std::vector<int>> links(g, std::vector<int>(g, 0));
  for (size_t a = 0; a < g; ++a) {
    for (size_t b = 0; b < g; ++b) {
      const SmiTopoCell& cell = m.cells[gpu_rows[a]][gpu_rows[b]];
      node.gpu_paths[a][b] = cell.path;
      links[a][b] = cell.nvlinks;
      any_nvlink = any_nvlink || cell.nvlinks > 0;
    }
  }
  if (any_nvlink) node.nvlink.links = std::move(links);

  std::vector<std::vector<PathKind>> nic_paths;
  for (size_t r : nic_rows) {
    FoundNic nic;
    auto named = m.nic_legend.find(m.labels[r]);
    nic.name = named != m.nic_legend.end() ? named->second : m.labels[r];
    std::vector<PathKind> paths;
    for (size_t gr : gpu_rows) paths.push_back(m.cells[r][gr].path);
    nic_paths.push_back(std::move(paths));
    node.nics.push_back(std::move(nic));
  }
  AssignNearestGpus(nic_paths, node.nics);
  return node;
}

}  // namespace orrery::topology
