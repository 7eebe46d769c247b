#include "topology/node_inventory.h"

#include <algorithm>
#include <cstddef>

namespace orrery::topology {

std::string_view PathKindName(PathKind kind) {
  switch (kind) {
    case PathKind::kSelf:
      return "X";
    case PathKind::kNvLink:
      return "NV";
    case PathKind::kPix:
      return "PIX";
    case PathKind::kPxb:
      return "PXB";
    case PathKind::kPhb:
      return "PHB";
    case PathKind::kNode:
      return "NODE";
    case PathKind::kSys:
      return "SYS";
  }
  return "?";
}

std::vector<std::vector<int>> PcieSwitchGroups(const NodeInventory& node) {
  const size_t n = node.gpu_paths.size();
  std::vector<int> group(n, -1);
  std::vector<std::vector<int>> groups;
  for (size_t start = 0; start < n; ++start) {
    if (group[start] >= 0) continue;
    const int id = static_cast<int>(groups.size());
    groups.emplace_back();
    std::vector<size_t> stack = {start};
    group[start] = id;
    while (!stack.empty()) {
      const size_t i = stack.back();
      stack.pop_back();
      groups[id].push_back(static_cast<int>(i));
      for (size_t j = 0; j < n && j < node.gpu_paths[i].size(); ++j) {
        const PathKind p = node.gpu_paths[i][j];
        if (group[j] < 0 && (p == PathKind::kPix || p == PathKind::kPxb)) {
          group[j] = id;
          stack.push_back(j);
        }
      }
    }
    std::sort(groups[id].begin(), groups[id].end());
  }
  return groups;
}

void AssignNearestGpus(const std::vector<std::vector<PathKind>>& nic_paths,
                       std::vector<FoundNic>& nics) {
  for (size_t k = 0; k < nics.size() && k < nic_paths.size(); ++k) {
    FoundNic& nic = nics[k];
    if (!nic.nearest_gpus.empty() || nic_paths[k].empty()) continue;
    const PathKind best = *std::min_element(nic_paths[k].begin(), nic_paths[k].end());
    if (best == PathKind::kSys) continue;
    nic.nearest_path = best;
    for (size_t g = 0; g < nic_paths[k].size(); ++g) {
      if (nic_paths[k][g] == best) nic.nearest_gpus.push_back(static_cast<int>(g));
    }
  }
}

}  // namespace orrery::topology
