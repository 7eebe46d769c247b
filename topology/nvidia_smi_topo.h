// The text of `nvidia-smi topo -m`: a matrix of how every GPU and NIC of a
// node reaches every other, with each GPU's CPU and NUMA affinity.
//
//          GPU0    GPU1    mlx5_0  CPU Affinity    NUMA Affinity
//   GPU0    X      NV12    PXB     48-63,176-191   3
//   GPU1   NV12     X      PXB     48-63,176-191   3
//   mlx5_0 PXB     PXB      X
//
// Cells: X (self), NV# (a bonded set of # NVLinks), PIX, PXB, PHB, NODE, SYS
// (SOC in old drivers); see node_inventory.h for their meaning. Columns are
// separated by tabs or, where a document re-typed them, by two or more
// spaces. Newer drivers name NICs NIC0, NIC1 ... and map them to devices in a
// "NIC Legend" ("NIC0: mlx5_bond_0"); older ones print the device names.
// Text before the header (a shell prompt) and after the legend is ignored.
//
// Thread-safety: plain functions.
#ifndef ORRERY_TOPOLOGY_NVIDIA_SMI_TOPO_H_
#define ORRERY_TOPOLOGY_NVIDIA_SMI_TOPO_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "topology/node_inventory.h"

namespace orrery::topology {

struct SmiTopoCell {
  PathKind path = PathKind::kSys;
  int nvlinks = 0;  // the # of NV#; 0 unless path is kNvLink
};

struct SmiTopoMatrix {
  // Row and column labels in order ("GPU0", ..., "mlx5_0" or "NIC0").
  std::vector<std::string> labels;
  std::vector<std::vector<SmiTopoCell>> cells;  // cells[row][column]
  // Per row: the trailing columns by header name ("CPU Affinity" → "0-35");
  // absent where the row leaves them out (NIC rows).
  std::vector<std::map<std::string, std::string>> affinity;
  // "NIC0" → "mlx5_bond_0", from the NIC Legend; empty when there is none.
  std::map<std::string, std::string> nic_legend;

  // True for rows named GPU<n>.
  bool IsGpu(size_t row) const;
};

// Parses the text of `nvidia-smi topo -m`. `source` names it in errors,
// which say the line and what was expected: no header, a cell that is not a
// path, a row with too few cells, a matrix with fewer rows than columns (a
// truncated copy), a diagonal that is not X.
Result<SmiTopoMatrix> ParseNvidiaSmiTopo(std::string_view text, const std::string& source);

// The inventory the matrix describes: GPUs (label, NUMA node, CPU affinity;
// no model — `topo -m` does not name them), NVLink counts, GPU-to-GPU paths,
// and NICs (named through the legend) with their nearest GPUs.
NodeInventory SmiTopoToInventory(const SmiTopoMatrix& matrix, const std::string& source);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_NVIDIA_SMI_TOPO_H_
