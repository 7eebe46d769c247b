// CollectiveModel: how long a collective takes on a group of ranks placed on
// a ClusterSpec, choosing its algorithm and protocol as NCCL does.
//
// The nominal model is NCCL's own tuning model (src/graph/tuning.cc at
// NVIDIA/nccl 5067397c, transcribed in ../shared/REFERENCES.md §2): for each
// (algorithm, protocol) pair it estimates
//     time = latency + size / algbw
// from per-level figures — the intra-node fabric (NVLink through NVSwitch, an
// NVLink mesh, PCIe) and, across nodes, the NICs serving the group's devices
// (rails) and the network tiers they cross (oversubscription divides the NIC
// bandwidth, each tier above the leaf adds its latency twice) — and takes the
// pair with the least time. Algorithms: ring (all ops), tree (all-reduce),
// NVLS (all-reduce inside one NVSwitch node on Hopper and later) and NVLSTree
// (the hierarchical all-reduce: NVLS inside each node, a tree across nodes
// over the NICs); all-to-all and send/recv are point-to-point transfers
// bounded by the slower level. docs/costmodel.md writes out every formula.
//
// A CollectiveCalibration (fitted from nccl-tests logs and Galvatron's
// bandwidth tables by costmodel/collective_calibration.h) replaces the
// nominal figures: an op measured inside one node is timed from its fitted
// α-β regimes; across nodes, from its inter-node fit when there is one,
// otherwise the fitted intra-node regime is combined with the nominal
// inter-node level of NCCL's choice (latencies add, the slower level's bus
// bandwidth bounds). Each estimate says which it is.
//
// Sizes follow nccl-tests: `size` is the full array (for all-gather and
// reduce-scatter the gathered buffer), algbw = size/time, busbw = algbw ×
// traces::BusBandwidthFactor(op, ranks).
//
// Thread-safety: a CollectiveModel is immutable after construction; Estimate
// may be called from many threads.
#ifndef ORRERY_COSTMODEL_COLLECTIVE_H_
#define ORRERY_COSTMODEL_COLLECTIVE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/units.h"
#include "topology/cluster_spec.h"
#include "traces/collective_op.h"

namespace orrery::costmodel {

using traces::CollectiveOp;

enum class CollectiveAlgorithm { kRing, kTree, kNvls, kNvlsTree, kPointToPoint };
enum class CollectiveProtocol { kLl, kLl128, kSimple };

std::string_view AlgorithmName(CollectiveAlgorithm a);  // "Ring", "Tree", "NVLS", "NVLSTree", "P2P"
std::string_view ProtocolName(CollectiveProtocol p);    // "LL", "LL128", "Simple"

// Where an estimate's figures come from.
enum class EstimateSource {
  kNominal,  // preset (datasheet) figures through NCCL's tuning model
  kFitted,   // α-β fitted to measurements (nccl-tests logs)
};
std::string_view EstimateSourceName(EstimateSource s);  // "nominal", "fitted"

// Which devices a group of ranks occupies: `ranks_per_node` devices on each
// of `nodes` nodes of the cluster's primary node type.
struct RankGroup {
  enum class Placement {
    kConsecutive,  // devices 0 .. ranks_per_node-1 of each node
    kStrided,      // every (devices_per_node / ranks_per_node)-th device, spreading over rails
  };
  int nodes = 1;
  int ranks_per_node = 1;
  Placement placement = Placement::kConsecutive;

  int Size() const { return nodes * ranks_per_node; }
};

// `ranks` consecutive ranks packed onto whole nodes: one node when they fit,
// otherwise ranks / devices_per_node full nodes. InvalidArgument when ranks
// < 1, when they span several nodes without filling each, or when the
// cluster has fewer nodes than they need.
Result<RankGroup> PackRanks(const topology::ClusterSpec& cluster, int ranks);

// The cost of one collective call.
struct CollectiveEstimate {
  Duration time;
  Bandwidth algbw;  // size / time
  Bandwidth busbw;  // algbw × nccl-tests' factor
  CollectiveAlgorithm algorithm = CollectiveAlgorithm::kRing;
  CollectiveProtocol protocol = CollectiveProtocol::kSimple;
  EstimateSource source = EstimateSource::kNominal;
  // One line on the figures used, e.g. "nominal: dgx-h100 figures, NCCL
  // tuning model" or "fitted: all_reduce of dgxc.log, regime 3 of 4".
  std::string provenance;

  // "NVLS/Simple".
  std::string AlgorithmLabel() const;
};

// One α-β regime fitted to a contiguous range of measured sizes:
//   time(size) = latency + size / (busbw / factor(op, ranks)).
struct FittedRegime {
  Bytes min_size;  // smallest and largest measured size of the regime
  Bytes max_size;
  Duration latency;
  Bandwidth busbw;  // nccl-tests bus bandwidth the regime tends to
  // NCCL's choice for these sizes under the nominal model, for labels and for
  // scaling the latency to other rank counts.
  CollectiveAlgorithm algorithm = CollectiveAlgorithm::kRing;
  CollectiveProtocol protocol = CollectiveProtocol::kSimple;
  int points = 0;
  double max_relative_error = 0;  // of the fit over its own points
};

// The fit of one op measured on one group.
struct FittedCollective {
  CollectiveOp op = CollectiveOp::kAllReduce;
  int ranks = 1;
  int nodes = 1;
  std::string source;  // "file.log" (table k)
  // Ordered by size; the regime of a size is the one whose range holds it,
  // with boundaries at the geometric mean of neighbouring ranges.
  std::vector<FittedRegime> regimes;

  // REQUIRES: regimes is non-empty.
  const FittedRegime& RegimeFor(Bytes size) const;
};

// Fitted collectives by op and topology level: at most one per op measured
// inside one node (nodes == 1) and one per op measured across nodes
// (nodes > 1); the last added wins.
class CollectiveCalibration {
 public:
  void Add(FittedCollective fit);
  // The fit of `op` measured inside one node, if any.
  const FittedCollective* Find(CollectiveOp op) const;
  // The fit of `op` measured across nodes, if any. CollectiveModel times a
  // group that spans nodes from it (its latency, and its bus bandwidth,
  // which nccl-tests' convention keeps comparable across rank counts) in
  // place of the nominal inter-node level.
  const FittedCollective* FindInterNode(CollectiveOp op) const;
  const std::vector<FittedCollective>& fits() const { return fits_; }
  bool empty() const { return fits_.empty(); }

 private:
  std::vector<FittedCollective> fits_;
};

class CollectiveModel {
 public:
  // A nominal model of `cluster` (its primary node type and network).
  // InvalidArgument when the cluster has no node type or a figure the model
  // needs is not positive (fabric bandwidth, device count).
  static Result<CollectiveModel> Create(const topology::ClusterSpec& cluster);
  // The same, with measured figures replacing the nominal intra-node ones.
  static Result<CollectiveModel> Create(const topology::ClusterSpec& cluster,
                                        CollectiveCalibration calibration);

  // The estimate NCCL's selection would make: the (algorithm, protocol) of
  // least time. InvalidArgument when the group does not fit the cluster
  // (ranks_per_node above devices_per_node, more nodes than the cluster
  // has) or size is negative. A group of one rank costs nothing.
  Result<CollectiveEstimate> Estimate(CollectiveOp op, Bytes size, const RankGroup& group) const;

  // Every (algorithm, protocol) pair NCCL would consider for this call,
  // timed by the nominal model, fastest first.
  Result<std::vector<CollectiveEstimate>> NominalCandidates(CollectiveOp op, Bytes size,
                                                            const RankGroup& group) const;

  const topology::ClusterSpec& cluster() const { return cluster_; }
  const CollectiveCalibration& calibration() const { return calibration_; }

 private:
  CollectiveModel(topology::ClusterSpec cluster, CollectiveCalibration calibration)
      : cluster_(std::move(cluster)), calibration_(std::move(calibration)) {}
  Status CheckGroup(const RankGroup& group) const;

  topology::ClusterSpec cluster_;
  CollectiveCalibration calibration_;
};

// Closed-form ring all-reduce on one level, the textbook α-β model:
//   2(n-1)·α + 2(n-1)/n · size / bw      (Thakur, Rabenseifner & Gropp 2005)
// where `bw` is the per-rank link bandwidth (one direction) and α the latency
// of one step. REQUIRES: n >= 1, bw > 0.
Duration RingAllReduceTime(Bytes size, int n, Duration step_latency, Bandwidth bw);

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_COLLECTIVE_H_
