#include "topology/infiniband_sysfs.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <tuple>

namespace orrery::topology {
namespace {

namespace fs = std::filesystem;

// The first line of a small sysfs file, trimmed; empty when unreadable.
std::string ReadLine(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\r')) {
    line.pop_back();
  }
  return line;
}

// "4: ACTIVE" → "ACTIVE".
std::string AfterColon(const std::string& s) {
  const size_t colon = s.find(':');
  if (colon == std::string::npos) return s;
  size_t start = colon + 1;
  while (start < s.size() && s[start] == ' ') ++start;
  return s.substr(start);
}

}  // namespace

std::optional<Bandwidth> ParseInfinibandRate(const std::string& text) {
  std::istringstream in(text);
  double value = 0;
  std::string unit;
  if (!(in >> value >> unit) || value <= 0) return std::nullopt;
  if (unit == "Gb/sec" || unit == "Gb/s") return Gbps(value);
  if (unit == "Mb/sec" || unit == "Mb/s") return Gbps(value / 1000.0);
  return std::nullopt;
}

Result<std::vector<InfinibandPort>> ReadInfinibandPorts(const std::string& root) {
  std::vector<InfinibandPort> ports;
  std::error_code ec;
  if (!fs::exists(root, ec)) return ports;
  fs::directory_iterator adapters(root, ec);
  if (ec) return IoError(root + ": cannot list InfiniBand adapters: " + ec.message());
  for (const fs::directory_entry& adapter : adapters) {
    const fs::path dir = adapter.path();
    std::string busid;
    std::optional<int> numa;
    const fs::path device = dir / "device";
    if (fs::exists(device, ec)) {
      const fs::path target = fs::canonical(device, ec);
      if (!ec) busid = target.filename().string();
      const std::string n = ReadLine(device / "numa_node");
      if (!n.empty()) {
        char* end = nullptr;
        const long v = std::strtol(n.c_str(), &end, 10);
        if (end != n.c_str() && v >= 0) numa = static_cast<int>(v);
      }
    }
    fs::directory_iterator port_dirs(dir / "ports", ec);
    if (ec) continue;
    for (const fs::directory_entry& port_dir : port_dirs) {
      InfinibandPort port;
      port.adapter = dir.filename().string();
      port.port = std::atoi(port_dir.path().filename().c_str());
      port.rate_text = ReadLine(port_dir.path() / "rate");
      port.rate = ParseInfinibandRate(port.rate_text);
      port.state = AfterColon(ReadLine(port_dir.path() / "state"));
      port.physical_state = AfterColon(ReadLine(port_dir.path() / "phys_state"));
      port.link_layer = ReadLine(port_dir.path() / "link_layer");
      port.pci_busid = busid;
      port.numa_node = numa;
      ports.push_back(std::move(port));
    }
  }
  // Natural order: mlx5_2 before mlx5_10.
  auto key = [](const InfinibandPort& p) {
    const size_t us = p.adapter.rfind('_');
    const std::string stem = us == std::string::npos ? p.adapter : p.adapter.substr(0, us);
    const long number = us == std::string::npos ? -1 : std::atol(p.adapter.c_str() + us + 1);
    return std::make_tuple(stem, number, p.adapter, p.port);
  };
  std::sort(ports.begin(), ports.end(),
            [&](const InfinibandPort& a, const InfinibandPort& b) { return key(a) < key(b); });
  return ports;
}

}  // namespace orrery::topology
