#include "costmodel/collective.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <set>

#include "core/check.h"

namespace orrery::costmodel {
namespace {

using topology::ClusterSpec;
using topology::FabricKind;
using topology::NodeType;

// NCCL's constants, NVIDIA/nccl @ 5067397c src/graph/tuning.cc, as
// transcribed in ../shared/REFERENCES.md §2. Times in µs, bandwidths in GB/s.
enum Arch { kVolta = 0, kAmpere = 1, kHopper = 2, kBlackwell = 3 };
enum Algo { kTreeA = 0, kRingA = 1, kNvlsA = 2, kNvlsTreeA = 3 };
enum Link { kNvlinkL = 0, kPciL = 1, kNetL = 2 };

constexpr double kBaseLat[4][3] = {{6.8, 14.0, 8.4}, {6.6, 14.0, 8.4}, {0, 0, 0}, {0, 0, 0}};
constexpr double kHwLat[3][4][3] = {
    {{.6, 1.25, 4.0}, {.6, 1.9, 3.4}, {0, 0, 25}, {0, 0, 25}},      // NVLINK
    {{1.0, 1.9, 4.0}, {1.0, 2.5, 5.7}, {0, 0, 0}, {0, 0, 0}},       // PCI
    {{5.0, 8.5, 14}, {2.7, 4.0, 14.0}, {0, 0, 18}, {0, 0, 20.9}}};  // NET
// [arch][nodes index: 1, 2, >=3]
constexpr double kLlMaxBw[4][3] = {{39, 39, 20.4}, {87.7, 22.5, 19.0}, {141, 45, 35},
                                   {282, 90, 70}};
constexpr double kPerChMaxRingLl128[4][3] = {
    {20, 20, 20}, {20, 20, 20}, {36.7, 36.7, 36.7}, {40, 40, 40}};
constexpr double kPerChMaxTreeLl128[4][3] = {
    {20, 20, 20}, {20, 20, 20}, {36.7, 36.7, 29.0}, {55.6, 31.67, 20.0}};
constexpr double kPerChMaxTree[4][3] = {
    {26.5, 18.5, 10}, {24.0, 23.6, 17.8}, {38.7, 41.4, 36.0}, {70, 42.8, 24}};
constexpr double kPerChMaxNvlsTree[4][3] = {
    {26.5, 18.5, 10}, {24.0, 23.6, 17.8}, {0, 57.7, 45.5}, {0, 96, 80}};
constexpr double kNvlsEfficiency[4] = {0, 0, 0.85, 0.74};
constexpr double kTreeCorrection[3][24] = {
    {1, 1, 1, 1, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1, 1, 1, 1, 1},
    {1, 1, 1, 1, 1, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1, 1, 1},
    {.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9,
     .9}};
// NCCL's figure for one NVLink link against its line rate per direction
// (topo.h: SM70/SM80 20 of 25, SM90 20.6 of 25, SM100 40.1 of 50).
constexpr double kNvlinkEfficiency[4] = {20.0 / 25.0, 20.0 / 25.0, 20.6 / 25.0, 40.1 / 50.0};
// PCIe: NCCL counts width × lane rate / 80 (Gen5 x16 = 48 of 64 GB/s).
constexpr double kPcieEfficiency = 48.0 / 64.0;
// Per-channel speed ladders of NCCL's graph search (search.cc).
const std::vector<double> kIntraLadder[4] = {
    {40, 30, 20, 18, 15, 12, 10, 9, 7, 6, 5, 4, 3},
    {40, 30, 20, 18, 15, 12, 10, 9, 7, 6, 5, 4, 3},
    {60, 50, 40, 30, 24, 20, 15, 12, 11, 6, 3},
    {90, 80, 70, 60, 50, 45, 40, 30, 24, 20, 19, 18}};
const std::vector<double> kInterLadder = {96, 48, 40, 30, 24, 20, 18, 15, 12, 10, 9, 7, 6,
                                          5,  4,  3};
// NVLS channels NCCL opens on an NVSwitch node (NCCL_NVLS_NCHANNELS default).
constexpr int kNvlsChannels = 16;
// Per-operation network overhead NCCL puts under multi-node intra latency
// (1 µs on Intel/ARM hosts, ×3 for Simple).
constexpr double kNetOverheadUs = 1.0;

Arch ArchOf(const topology::DeviceType& d) {
  std::string s = d.name + " " + d.model;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* k : {"b200", "b100", "gb200", "blackwell", "b300"}) {
    if (s.find(k) != std::string::npos) return kBlackwell;
  }
  for (const char* k : {"h100", "h200", "h800", "gh200", "hopper"}) {
    if (s.find(k) != std::string::npos) return kHopper;
  }
  if (s.find("v100") != std::string::npos) return kVolta;
  return kAmpere;
}

// Largest ladder value <= bw (bw itself below the ladder).
double Quantize(double bw, const std::vector<double>& ladder) {
  for (double s : ladder) {
    if (s <= bw + 1e-9) return s;
  }
  return bw;
}

int NodesIndex(int nodes) { return nodes <= 1 ? 0 : (nodes == 2 ? 1 : 2); }
int ProtoIndex(CollectiveProtocol p) { return static_cast<int>(p); }

// The figures of one group on the cluster, in NCCL's terms.
struct Levels {
  Arch arch = kAmpere;
  Link intra_link = kNvlinkL;
  bool nvswitch = false;
  bool ll128 = true;
  double path_intra = 0;  // GB/s one device reaches its peers with
  int ring_channels = 1;
  double ring_intra_total = 0;  // nCh × per-channel speed inside a node
  double nvls_intra_per_channel = 0;
  double inter_total = std::numeric_limits<double>::infinity();  // per node, NIC-limited
  double inter_per_rank = std::numeric_limits<double>::infinity();
  double latency_inter = 0;  // µs, NCCL's graph.latencyInter
  int nodes = 1;
  int ppn = 1;
  int n = 1;
};

Levels LevelsOf(const ClusterSpec& cluster, const RankGroup& g) {
  const NodeType& nt = cluster.node_types.front();
  Levels lv;
  lv.arch = ArchOf(nt.device);
  lv.nodes = g.nodes;
  lv.ppn = g.ranks_per_node;
  lv.n = g.Size();
  const double fabric = nt.fabric.bandwidth_per_device.ToGBps();
  switch (nt.fabric.kind) {
    case FabricKind::kNvSwitch:
    case FabricKind::kNvLinkMesh:
      lv.intra_link = kNvlinkL;
      lv.path_intra = fabric * kNvlinkEfficiency[lv.arch];
      break;
    case FabricKind::kPcie:
      lv.intra_link = kPciL;
      lv.ll128 = false;
      lv.path_intra = fabric * kPcieEfficiency;
      break;
    case FabricKind::kSharedMemory:
      lv.intra_link = kPciL;
      lv.ll128 = false;
      lv.path_intra = fabric;
      break;
  }
  lv.nvswitch = nt.fabric.kind == FabricKind::kNvSwitch;
  double s = Quantize(lv.path_intra, kIntraLadder[lv.arch]);
  int ch = std::max(1, static_cast<int>(std::floor(lv.path_intra / s + 1e-9)));
  if (s >= 25.0) {  // ncclTopoDupChannels
    ch *= 2;
    s /= 2;
  }
  lv.ring_channels = ch;
  lv.ring_intra_total = ch * s;
  lv.nvls_intra_per_channel = Quantize(lv.path_intra / kNvlsChannels, kIntraLadder[lv.arch]);

  if (g.nodes > 1) {
    // The NICs serving the group's devices on one node, each counted once.
    int stride = g.placement == RankGroup::Placement::kStrided
                     ? std::max(1, nt.devices_per_node / g.ranks_per_node)
                     : 1;
    std::set<int> devices;
    for (int r = 0; r < g.ranks_per_node; ++r) devices.insert(r * stride);
    double total = 0;
    for (const topology::Nic& nic : nt.nics) {
      bool serves = false;
      for (int d : nic.devices) serves = serves || devices.contains(d);
      if (!serves) continue;
      double q = Quantize(nic.bandwidth.ToGBps(), kInterLadder);
      if (lv.arch != kBlackwell && q > 48) q = 48;
      total += q;
    }
    // Tiers the group climbs: tier i+1 when it spans more nodes than a
    // switch of tier i holds. Each climb divides by the lower tier's
    // oversubscription and adds the upper tier's latency both ways.
    double oversub = 1.0;
    const auto& tiers = cluster.network.tiers;
    for (size_t i = 0; i + 1 < tiers.size(); ++i) {
      if (!tiers[i].nodes_per_switch || g.nodes <= *tiers[i].nodes_per_switch) break;
      oversub *= std::max(1.0, tiers[i].oversubscription);
      lv.latency_inter += 2.0 * tiers[i + 1].latency.ToMicros();
    }
    lv.inter_total = total / oversub;
    lv.inter_per_rank = lv.inter_total / g.ranks_per_node;
  }
  return lv;
}

int Steps(CollectiveOp op, int n) {
  switch (op) {
    case CollectiveOp::kAllReduce: return 2 * (n - 1);
    case CollectiveOp::kAllGather:
    case CollectiveOp::kReduceScatter: return n - 1;
    default: return n;
  }
}

// One (algorithm, protocol) under NCCL's model.
struct Timing {
  CollectiveAlgorithm algorithm;
  CollectiveProtocol protocol;
  double latency_us = 0;
  double inter_latency_us = 0;  // the part of latency_us due to the network
  double algbw = 0;             // GB/s
  double inter_algbw = std::numeric_limits<double>::infinity();  // what the NICs alone allow
  double TimeUs(double bytes) const { return latency_us + bytes / (1e3 * algbw); }
};

// algbw of a ring / tree / NVLS algorithm whose total per-node bandwidth is
// `bus` (GB/s) before protocol caps.
double RingTreeAlgBw(Algo a, CollectiveProtocol p, CollectiveOp op, const Levels& lv,
                     double bus) {
  const int pi = ProtoIndex(p);
  const int ni = NodesIndex(lv.nodes);
  const double nch = lv.ring_channels;
  const double ll_max = lv.nodes == 1 ? kLlMaxBw[lv.arch][0] : kLlMaxBw[0][ni];
  double bw = bus;
  if (a == kRingA) {
    if (p == CollectiveProtocol::kLl) bw = std::min(ll_max, 0.5 * bw);
    if (p == CollectiveProtocol::kLl128) {
      bw = std::min(0.92 * bw, nch * kPerChMaxRingLl128[lv.arch][ni]);
    }
    return bw * lv.n / Steps(op, lv.n);
  }
  // Tree all-reduce.
  if (pi == 2) bw = std::min(0.92 * bw, nch * kPerChMaxTree[lv.arch][ni]);
  if (pi == 0) bw = std::min(bw / 3.8, ll_max);
  if (pi == 1) {
    bw = std::min(bw * (lv.nodes == 1 ? 7.0 / 9.0 : 120.0 / 128.0),
                  nch * kPerChMaxTreeLl128[lv.arch][ni]);
  }
  if (lv.nodes > 1) bw *= 0.85;
  return bw * 0.5;
}

double NvlsAlgBw(Algo a, CollectiveOp op, const Levels& lv, bool intra, bool inter) {
  const double nch = kNvlsChannels;
  double per = std::numeric_limits<double>::infinity();
  if (intra) {
    per = lv.nvls_intra_per_channel * kNvlsEfficiency[lv.arch] * (nch - 1) / nch * 2.0;
  }
  if (inter && lv.nodes > 1) {
    double inter_ch = lv.inter_total / nch;
    if (a == kNvlsTreeA && lv.nodes <= 2) inter_ch *= 2;
    per = std::min(per, inter_ch);
  }
  if (a == kNvlsTreeA) per = std::min(per, kPerChMaxNvlsTree[lv.arch][NodesIndex(lv.nodes)]);
  return nch * per * lv.n / Steps(op, lv.n);
}

std::optional<Timing> Evaluate(Algo a, CollectiveProtocol p, CollectiveOp op, double bytes,
                               const Levels& lv) {
  const int pi = ProtoIndex(p);
  const bool simple = p == CollectiveProtocol::kSimple;
  const int nsteps = Steps(op, lv.n);
  Timing t;
  t.protocol = p;
  const double base = kBaseLat[a][pi];
  double intra_lat = kHwLat[lv.intra_link][a][pi];
  const int net_row = (a == kRingA && lv.ppn == 1) ? kTreeA : a;
  const double inter_lat =
      kHwLat[kNetL][net_row][pi] + lv.latency_inter * (simple ? 2.0 : 1.0);
  const double log_nodes = std::log2(static_cast<double>(lv.nodes));
  switch (a) {
    case kRingA: {
      t.algorithm = CollectiveAlgorithm::kRing;
      const int n_inter =
          op == CollectiveOp::kAllReduce ? 2 * (lv.nodes - 1) : lv.nodes - 1;
      double local = base + nsteps * intra_lat;
      if (lv.nodes > 1) intra_lat = std::max(intra_lat, kNetOverheadUs * (simple ? 3.0 : 1.0));
      double lat = base + (nsteps - n_inter) * intra_lat + n_inter * inter_lat;
      if (lv.nodes > 1 && simple && op == CollectiveOp::kAllReduce) {
        lat *= lv.arch == kVolta ? 1.9 : 1.4;
      }
      t.latency_us = lat;
      t.inter_latency_us = lat - local;
      double bus = std::min(lv.ring_intra_total, lv.inter_total);
      t.algbw = RingTreeAlgBw(a, p, op, lv, bus);
      if (lv.nodes > 1) t.inter_algbw = RingTreeAlgBw(a, p, op, lv, lv.inter_total);
      break;
    }
    case kTreeA: {
      t.algorithm = CollectiveAlgorithm::kTree;
      double local = base + 2.0 * (lv.ppn - 1) * intra_lat;
      t.latency_us = local + 2.0 * log_nodes * inter_lat;
      t.inter_latency_us = t.latency_us - local;
      double bus = std::min(lv.ring_intra_total, lv.inter_total);
      t.algbw = RingTreeAlgBw(a, p, op, lv, bus);
      if (lv.nodes > 1) t.inter_algbw = RingTreeAlgBw(a, p, op, lv, lv.inter_total);
      int idx = static_cast<int>(std::floor(std::log2(std::max(bytes, 64.0) / 64.0)));
      double corr = kTreeCorrection[pi][std::clamp(idx, 0, 23)];
      t.algbw *= corr;
      t.inter_algbw *= corr;
      break;
    }
    case kNvlsA:
    case kNvlsTreeA: {
      t.algorithm = a == kNvlsA ? CollectiveAlgorithm::kNvls : CollectiveAlgorithm::kNvlsTree;
      double local = base + intra_lat;
      t.latency_us = a == kNvlsA ? local + (lv.nodes > 1 ? inter_lat : 0.0)
                                 : local + 2.0 * log_nodes * inter_lat;
      t.inter_latency_us = t.latency_us - local;
      t.algbw = NvlsAlgBw(a, op, lv, true, true);
      if (lv.nodes > 1) t.inter_algbw = NvlsAlgBw(a, op, lv, false, true);
      break;
    }
  }
  if (!(t.algbw > 0) || !std::isfinite(t.algbw)) return std::nullopt;
  return t;
}

// All-to-all and send/recv: point-to-point transfers, Simple protocol.
Timing PointToPoint(CollectiveOp op, double bytes, const Levels& lv) {
  Timing t;
  t.algorithm = CollectiveAlgorithm::kPointToPoint;
  t.protocol = CollectiveProtocol::kSimple;
  const int si = ProtoIndex(CollectiveProtocol::kSimple);
  double local = kBaseLat[kRingA][si] + kHwLat[lv.intra_link][kRingA][si];
  t.latency_us = local;
  if (lv.nodes > 1) t.latency_us += kHwLat[kNetL][kRingA][si] + 2.0 * lv.latency_inter;
  t.inter_latency_us = t.latency_us - local;
  double seconds_per_byte;
  if (op == CollectiveOp::kAllToAll) {
    // Per rank: (ppn-1)/n of the array over the fabric, (n-ppn)/n over NICs.
    double intra = lv.ppn > 1 ? (lv.ppn - 1.0) / lv.n / (lv.path_intra * 1e9) : 0.0;
    double inter = lv.nodes > 1 ? (lv.n - lv.ppn) / static_cast<double>(lv.n) /
                                      (lv.inter_per_rank * 1e9)
                                : 0.0;
    seconds_per_byte = std::max(intra, inter);
    if (lv.nodes > 1) {
      t.inter_algbw = lv.inter_per_rank * lv.n / (lv.n - lv.ppn);
    }
  } else {
    double bw = lv.nodes > 1 ? std::min(lv.path_intra, lv.inter_per_rank) : lv.path_intra;
    if (lv.ppn == 1) bw = lv.inter_per_rank;
    seconds_per_byte = 1.0 / (bw * 1e9);
    if (lv.nodes > 1) t.inter_algbw = lv.inter_per_rank;
  }
  t.algbw = 1e-9 / seconds_per_byte;
  (void)bytes;
  return t;
}

std::vector<Timing> Candidates(CollectiveOp op, double bytes, const Levels& lv) {
  std::vector<Timing> out;
  if (op == CollectiveOp::kAllToAll || op == CollectiveOp::kSendRecv) {
    out.push_back(PointToPoint(op, bytes, lv));
    return out;
  }
  std::vector<CollectiveProtocol> protos = {CollectiveProtocol::kLl, CollectiveProtocol::kSimple};
  if (lv.ll128) protos.insert(protos.begin() + 1, CollectiveProtocol::kLl128);
  std::vector<Algo> algos = {kRingA};
  if (op == CollectiveOp::kAllReduce) {
    algos.push_back(kTreeA);
    bool nvls = lv.nvswitch && lv.arch >= kHopper && lv.ppn >= 2;
    if (nvls) algos.push_back(lv.nodes == 1 ? kNvlsA : kNvlsTreeA);
  }
  for (Algo a : algos) {
    for (CollectiveProtocol p : protos) {
      if ((a == kNvlsA || a == kNvlsTreeA) && p != CollectiveProtocol::kSimple) continue;
      if (std::optional<Timing> t = Evaluate(a, p, op, bytes, lv)) out.push_back(*t);
    }
  }
  std::stable_sort(out.begin(), out.end(), [bytes](const Timing& x, const Timing& y) {
    return x.TimeUs(bytes) < y.TimeUs(bytes);
  });
  return out;
}

CollectiveEstimate MakeEstimate(CollectiveOp op, Bytes size, int n, Duration time,
                                CollectiveAlgorithm a, CollectiveProtocol p, EstimateSource src,
                                std::string provenance) {
  CollectiveEstimate e;
  e.time = time;
  e.algorithm = a;
  e.protocol = p;
  e.source = src;
  e.provenance = std::move(provenance);
  if (time > Duration::Zero()) {
    e.algbw = size / time;
    e.busbw = e.algbw * traces::BusBandwidthFactor(op, n);
  }
  return e;
}

Algo AlgoOf(CollectiveAlgorithm a) {
  switch (a) {
    case CollectiveAlgorithm::kTree: return kTreeA;
    case CollectiveAlgorithm::kNvls: return kNvlsA;
    case CollectiveAlgorithm::kNvlsTree: return kNvlsTreeA;
    default: return kRingA;
  }
}

// Nominal latency (µs) of `a`/`p` (or the point-to-point transfer) on `g`.
std::optional<double> NominalLatency(const ClusterSpec& cluster, CollectiveOp op,
                                     CollectiveAlgorithm a, CollectiveProtocol p,
                                     const RankGroup& g) {
  Levels lv = LevelsOf(cluster, g);
  std::optional<Timing> t;
  if (a == CollectiveAlgorithm::kPointToPoint) {
    t = PointToPoint(op, 0.0, lv);
  } else {
    t = Evaluate(AlgoOf(a), p, op, 0.0, lv);
  }
  if (!t || !(t->latency_us > 0)) return std::nullopt;
  return t->latency_us;
}

// A group that spans nodes, timed from the fit of `op` measured across
// nodes: the regime's latency, scaled by the nominal latency ratio of this
// group to the measured one (fit.ranks over fit.nodes), and its bus
// bandwidth, which nccl-tests' convention keeps comparable across rank
// counts, turned into algbw with this group's factor.
CollectiveEstimate InterNodeEstimate(const ClusterSpec& cluster, CollectiveOp op, Bytes size,
                                     const RankGroup& group, const FittedCollective& fit) {
  const int n = group.Size();
  const FittedRegime& r = fit.RegimeFor(size);
  const size_t index = &r - fit.regimes.data();
  double latency = r.latency.ToMicros();
  const NodeType& nt = cluster.node_types.front();
  if (fit.nodes >= 1 && fit.ranks % fit.nodes == 0) {
    RankGroup measured{fit.nodes, fit.ranks / fit.nodes, RankGroup::Placement::kConsecutive};
    const bool fits = measured.nodes <= nt.count &&
                      measured.ranks_per_node <= nt.devices_per_node && !nt.nics.empty();
    const bool same = measured.nodes == group.nodes &&
                      measured.ranks_per_node == group.ranks_per_node;
    if (fits && !same) {
      std::optional<double> lm = NominalLatency(cluster, op, r.algorithm, r.protocol, measured);
      std::optional<double> lg = NominalLatency(cluster, op, r.algorithm, r.protocol, group);
      if (lm && lg) latency *= *lg / *lm;
    }
  }
  const double bytes = static_cast<double>(size.count());
  const double factor = traces::BusBandwidthFactor(op, n);
  const double time_us = latency + bytes / (1e3 * r.busbw.ToGBps() / factor);
  return MakeEstimate(op, size, n, Micros(time_us), r.algorithm, r.protocol,
                      EstimateSource::kFitted,
                      "fitted across nodes: " + std::string(traces::NcclTestsName(op)) + " of " +
                          fit.source + " (" + std::to_string(fit.ranks) + " ranks on " +
                          std::to_string(fit.nodes) + " nodes), regime " +
                          std::to_string(index + 1) + " of " +
                          std::to_string(fit.regimes.size()));
}

}  // namespace

std::string_view AlgorithmName(CollectiveAlgorithm a) {
  switch (a) {
    case CollectiveAlgorithm::kRing: return "Ring";
    case CollectiveAlgorithm::kTree: return "Tree";
    case CollectiveAlgorithm::kNvls: return "NVLS";
    case CollectiveAlgorithm::kNvlsTree: return "NVLSTree";
    case CollectiveAlgorithm::kPointToPoint: return "P2P";
  }
  return "?";
}

std::string_view ProtocolName(CollectiveProtocol p) {
  switch (p) {
    case CollectiveProtocol::kLl: return "LL";
    case CollectiveProtocol::kLl128: return "LL128";
    case CollectiveProtocol::kSimple: return "Simple";
  }
  return "?";
}

std::string_view EstimateSourceName(EstimateSource s) {
  return s == EstimateSource::kNominal ? "nominal" : "fitted";
}

std::string CollectiveEstimate::AlgorithmLabel() const {
  return std::string(AlgorithmName(algorithm)) + "/" + std::string(ProtocolName(protocol));
}

Result<RankGroup> PackRanks(const ClusterSpec& cluster, int ranks) {
  if (cluster.node_types.empty()) return InvalidArgumentError("the cluster has no nodes");
  const NodeType& nt = cluster.node_types.front();
  if (ranks < 1) {
    return InvalidArgumentError("ranks: expected a positive count, got " +
                                std::to_string(ranks));
  }
  RankGroup g;
  if (ranks <= nt.devices_per_node) {
    g.ranks_per_node = ranks;
    return g;
  }
  if (ranks % nt.devices_per_node != 0) {
    return InvalidArgumentError("ranks: " + std::to_string(ranks) + " ranks do not fill whole " +
                                std::to_string(nt.devices_per_node) + "-device nodes");
  }
  g.nodes = ranks / nt.devices_per_node;
  g.ranks_per_node = nt.devices_per_node;
  if (g.nodes > nt.count) {
    return InvalidArgumentError("ranks: " + std::to_string(ranks) + " ranks need " +
                                std::to_string(g.nodes) + " nodes, the cluster has " +
                                std::to_string(nt.count));
  }
  return g;
}

const FittedRegime& FittedCollective::RegimeFor(Bytes size) const {
  ORRERY_CHECK(!regimes.empty());
  for (size_t i = 0; i + 1 < regimes.size(); ++i) {
    double boundary = std::sqrt(static_cast<double>(regimes[i].max_size.count()) *
                                static_cast<double>(regimes[i + 1].min_size.count()));
    if (static_cast<double>(size.count()) < boundary) return regimes[i];
  }
  return regimes.back();
}

void CollectiveCalibration::Add(FittedCollective fit) {
  const bool inter = fit.nodes > 1;
  for (FittedCollective& f : fits_) {
    if (f.op == fit.op && (f.nodes > 1) == inter) {
      f = std::move(fit);
      return;
    }
  }
  fits_.push_back(std::move(fit));
}

const FittedCollective* CollectiveCalibration::Find(CollectiveOp op) const {
  for (const FittedCollective& f : fits_) {
    if (f.op == op && f.nodes == 1) return &f;
  }
  return nullptr;
}

const FittedCollective* CollectiveCalibration::FindInterNode(CollectiveOp op) const {
  for (const FittedCollective& f : fits_) {
    if (f.op == op && f.nodes > 1) return &f;
  }
  return nullptr;
}

Result<CollectiveModel> CollectiveModel::Create(const ClusterSpec& cluster) {
  return Create(cluster, CollectiveCalibration());
}

Result<CollectiveModel> CollectiveModel::Create(const ClusterSpec& cluster,
                                                CollectiveCalibration calibration) {
  if (cluster.node_types.empty()) {
    return InvalidArgumentError("cluster '" + cluster.name + "': no node types");
  }
  const NodeType& nt = cluster.node_types.front();
  if (nt.devices_per_node < 1) {
    return InvalidArgumentError("cluster '" + cluster.name +
                                "': devices_per_node: expected a positive count");
  }
  if (!(nt.fabric.bandwidth_per_device > Bandwidth::Zero())) {
    return InvalidArgumentError("cluster '" + cluster.name +
                                "': fabric bandwidth per device: expected a positive bandwidth");
  }
  return CollectiveModel(cluster, std::move(calibration));
}

Status CollectiveModel::CheckGroup(const RankGroup& g) const {
  const NodeType& nt = cluster_.node_types.front();
  if (g.nodes < 1 || g.ranks_per_node < 1) {
    return InvalidArgumentError("rank group: expected positive nodes and ranks per node");
  }
  if (g.ranks_per_node > nt.devices_per_node) {
    return InvalidArgumentError("rank group: " + std::to_string(g.ranks_per_node) +
                                " ranks per node, the node has " +
                                std::to_string(nt.devices_per_node) + " devices");
  }
  if (g.nodes > nt.count) {
    return InvalidArgumentError("rank group: spans " + std::to_string(g.nodes) +
                                " nodes, cluster '" + cluster_.name + "' has " +
                                std::to_string(nt.count));
  }
  if (g.nodes > 1 && nt.nics.empty()) {
    return InvalidArgumentError("rank group: spans " + std::to_string(g.nodes) +
                                " nodes, but node type '" + nt.name + "' has no NICs");
  }
  return Status::Ok();
}

Result<std::vector<CollectiveEstimate>> CollectiveModel::NominalCandidates(
    CollectiveOp op, Bytes size, const RankGroup& group) const {
  ORRERY_RETURN_IF_ERROR(CheckGroup(group));
  if (size < Bytes(0)) return InvalidArgumentError("size: expected a non-negative byte count");
  std::vector<CollectiveEstimate> out;
  if (group.Size() == 1) return out;
  Levels lv = LevelsOf(cluster_, group);
  double bytes = static_cast<double>(size.count());
  std::string prov = "nominal: " + cluster_.name + " figures through NCCL's tuning model";
  for (const Timing& t : Candidates(op, bytes, lv)) {
    out.push_back(MakeEstimate(op, size, group.Size(), Micros(t.TimeUs(bytes)), t.algorithm,
                               t.protocol, EstimateSource::kNominal, prov));
  }
  return out;
}

Result<CollectiveEstimate> CollectiveModel::Estimate(CollectiveOp op, Bytes size,
                                                     const RankGroup& group) const {
  ORRERY_RETURN_IF_ERROR(CheckGroup(group));
  if (size < Bytes(0)) return InvalidArgumentError("size: expected a non-negative byte count");
  const int n = group.Size();
  if (n == 1) {
    return MakeEstimate(op, size, n, Duration::Zero(), CollectiveAlgorithm::kRing,
                        CollectiveProtocol::kSimple, EstimateSource::kNominal,
                        "one rank: no communication");
  }
  Levels lv = LevelsOf(cluster_, group);
  const double bytes = static_cast<double>(size.count());
  std::vector<Timing> nominal = Candidates(op, bytes, lv);
  ORRERY_CHECK(!nominal.empty());
  const Timing& best = nominal.front();
  const FittedCollective* inter = group.nodes > 1 ? calibration_.FindInterNode(op) : nullptr;
  if (inter != nullptr) return InterNodeEstimate(cluster_, op, size, group, *inter);
  const FittedCollective* fit = calibration_.Find(op);
  if (fit == nullptr) {
    return MakeEstimate(op, size, n, Micros(best.TimeUs(bytes)), best.algorithm, best.protocol,
                        EstimateSource::kNominal,
                        "nominal: " + cluster_.name + " figures through NCCL's tuning model");
  }
  const FittedRegime& r = fit->RegimeFor(size);
  size_t index = &r - fit->regimes.data();
  std::string prov = "fitted: " + std::string(traces::NcclTestsName(op)) + " of " + fit->source +
                     ", regime " + std::to_string(index + 1) + " of " +
                     std::to_string(fit->regimes.size());
  // The fitted latency, scaled by the nominal model from the measured group
  // (fit->ranks on one node) to this one's ranks per node.
  double latency = r.latency.ToMicros();
  RankGroup measured{1, fit->ranks, RankGroup::Placement::kConsecutive};
  RankGroup local{1, group.ranks_per_node, RankGroup::Placement::kConsecutive};
  if (fit->ranks != group.ranks_per_node && group.ranks_per_node > 1 &&
      fit->ranks <= cluster_.node_types.front().devices_per_node) {
    Levels lm = LevelsOf(cluster_, measured);
    Levels ll = LevelsOf(cluster_, local);
    CollectiveProtocol p = r.protocol;
    std::optional<Timing> tm, tl;
    if (r.algorithm == CollectiveAlgorithm::kPointToPoint) {
      tm = PointToPoint(op, bytes, lm);
      tl = PointToPoint(op, bytes, ll);
    } else {
      tm = Evaluate(AlgoOf(r.algorithm), p, op, bytes, lm);
      tl = Evaluate(AlgoOf(r.algorithm), p, op, bytes, ll);
    }
    if (tm && tl && tm->latency_us > 0) latency *= tl->latency_us / tm->latency_us;
  }
  double busbw = r.busbw.ToGBps();
  const double factor = traces::BusBandwidthFactor(op, n);
  if (group.nodes == 1) {
    double time_us = latency + bytes / (1e3 * busbw / factor);
    return MakeEstimate(op, size, n, Micros(time_us), r.algorithm, r.protocol,
                        EstimateSource::kFitted, prov);
  }
  // Across nodes: NCCL's nominal choice for the network level, the fitted
  // regime for the node level. Latencies add; the slower level bounds.
  double inter_busbw = best.inter_algbw * factor;
  double time_us = latency + best.inter_latency_us +
                   bytes / (1e3 * std::min(busbw, inter_busbw) / factor);
  return MakeEstimate(op, size, n, Micros(time_us), best.algorithm, best.protocol,
                      EstimateSource::kFitted,
                      prov + " inside nodes; nominal " +
                          std::string(AlgorithmName(best.algorithm)) + "/" +
                          std::string(ProtocolName(best.protocol)) + " across " +
                          std::to_string(group.nodes) + " nodes");
}

Duration RingAllReduceTime(Bytes size, int n, Duration step_latency, Bandwidth bw) {
  ORRERY_CHECK(n >= 1) << "ring of " << n << " ranks";
  ORRERY_CHECK(bw > Bandwidth::Zero());
  if (n == 1) return Duration::Zero();
  Duration latency = step_latency * (2 * (n - 1));
  Bytes moved = size * (2.0 * (n - 1) / n);
  return latency + moved / bw;
}

}  // namespace orrery::costmodel
