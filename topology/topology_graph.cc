#include "topology/topology_graph.h"

#include <algorithm>
#include <string>
#include <utility>

#include <boost/graph/adjacency_list.hpp>

#include "core/check.h"

namespace orrery::topology {

// The adjacency of the directed links: vertex ids are the Topology's, each
// edge carries its LinkId value. Out-edges are kept in a set, so the link
// between two vertices is found in O(log degree) (there are no parallel
// links: every pair of vertices is joined at most once per direction).
struct Topology::Graph {
  using Adjacency = boost::adjacency_list<boost::setS, boost::vecS, boost::directedS,
                                          boost::no_property, uint32_t>;
  Adjacency adjacency;
};

std::string_view VertexKindName(VertexKind kind) {
  switch (kind) {
    case VertexKind::kDevice: return "device";
    case VertexKind::kNvSwitch: return "nvswitch";
    case VertexKind::kPcieHostBridge: return "pcie-host-bridge";
    case VertexKind::kMemoryBus: return "memory-bus";
    case VertexKind::kNic: return "nic";
    case VertexKind::kNetworkSwitch: return "network-switch";
  }
  return "unknown";
}

Topology::Topology() : graph_(std::make_unique<Graph>()) {}
Topology::Topology(Topology&&) noexcept = default;
Topology& Topology::operator=(Topology&&) noexcept = default;
Topology::~Topology() = default;

VertexId Topology::AddVertex(Vertex v) {
  const VertexId id(static_cast<uint32_t>(vertices_.size()));
  vertices_.push_back(std::move(v));
  boost::add_vertex(graph_->adjacency);
  return id;
}

LinkId Topology::AddLink(LinkKind kind, VertexId from, VertexId to, Bandwidth bandwidth,
                         Duration latency) {
  ORRERY_CHECK(bandwidth > Bandwidth::Zero()) << "link " << vertices_[from.value()].name
                                              << "->" << vertices_[to.value()].name;
  const LinkId id(static_cast<uint32_t>(links_.size()));
  Link link;
  link.kind = kind;
  link.from = from;
  link.to = to;
  link.bandwidth = bandwidth;
  link.latency = latency;
  link.name = vertices_[from.value()].name + "->" + vertices_[to.value()].name;
  links_.push_back(std::move(link));
  const auto [edge, inserted] =
      boost::add_edge(from.value(), to.value(), id.value(), graph_->adjacency);
  (void)edge;
  ORRERY_CHECK(inserted) << "parallel link " << links_.back().name;
  return id;
}

void Topology::AddDuplex(LinkKind kind, VertexId a, VertexId b, Bandwidth bandwidth,
                         Duration into_b, Duration into_a) {
  AddLink(kind, a, b, bandwidth, into_b);
  AddLink(kind, b, a, bandwidth, into_a);
}

namespace {

std::string NodeName(int node) { return "node" + std::to_string(node); }

}  // namespace

Result<Topology> Topology::Build(const ClusterSpec& spec) {
  ORRERY_RETURN_IF_ERROR(ValidateClusterSpec(spec));
  Topology t;
  t.rail_optimized_ = spec.network.rail_optimized;

  // Nodes and devices, in rank order.
  std::vector<const NodeType*> node_type;
  for (const NodeType& type : spec.node_types) {
    for (int i = 0; i < type.count; ++i) node_type.push_back(&type);
  }
  const int num_nodes = static_cast<int>(node_type.size());
  int max_nics = 0;
  for (int n = 0; n < num_nodes; ++n) {
    t.node_first_rank_.push_back(static_cast<int>(t.device_node_.size()));
    t.node_fabric_.push_back(node_type[n]->fabric.kind);
    for (int d = 0; d < node_type[n]->devices_per_node; ++d) {
      t.device_node_.push_back(n);
      t.device_local_.push_back(d);
    }
    max_nics = std::max(max_nics, static_cast<int>(node_type[n]->nics.size()));
  }
  for (int rank = 0; rank < t.num_devices(); ++rank) {
    Vertex v;
    v.kind = VertexKind::kDevice;
    v.node = t.device_node_[rank];
    v.rank = rank;
    v.local = t.device_local_[rank];
    v.name = NodeName(*v.node) + "/dev" + std::to_string(*v.local);
    t.AddVertex(std::move(v));
  }

  // Per node: the fabric and its links, the NICs and their device links.
  t.node_fabric_vertex_.resize(num_nodes);
  t.node_nics_.resize(num_nodes);
  t.node_nic_devices_.resize(num_nodes);
  for (int n = 0; n < num_nodes; ++n) {
    const NodeType& type = *node_type[n];
    const IntraNodeFabric& fabric = type.fabric;
    const int first = t.node_first_rank_[n];
    const int d = type.devices_per_node;
    if (fabric.kind == FabricKind::kNvLinkMesh) {
      if (d > 1) {
        const Bandwidth per_peer = fabric.bandwidth_per_device / static_cast<double>(d - 1);
        for (int i = 0; i < d; ++i) {
          for (int j = 0; j < d; ++j) {
            if (i == j) continue;
            t.AddLink(LinkKind::kFabric, t.DeviceVertex(first + i), t.DeviceVertex(first + j),
                      per_peer, fabric.latency);
          }
        }
      }
    } else {
      Vertex v;
      v.node = n;
      switch (fabric.kind) {
        case FabricKind::kNvSwitch:
          v.kind = VertexKind::kNvSwitch;
          v.name = NodeName(n) + "/nvswitch";
          break;
        case FabricKind::kPcie:
          v.kind = VertexKind::kPcieHostBridge;
          v.name = NodeName(n) + "/pcie";
          break;
        default:
          v.kind = VertexKind::kMemoryBus;
          v.name = NodeName(n) + "/memory";
          break;
      }
      const VertexId sw = t.AddVertex(std::move(v));
      t.node_fabric_vertex_[n] = sw;
      for (int i = 0; i < d; ++i) {
        t.AddDuplex(LinkKind::kFabric, t.DeviceVertex(first + i), sw,
                    fabric.bandwidth_per_device, fabric.latency, Duration::Zero());
      }
    }
    for (size_t k = 0; k < type.nics.size(); ++k) {
      const Nic& nic = type.nics[k];
      Vertex v;
      v.kind = VertexKind::kNic;
      v.node = n;
      v.local = static_cast<int>(k);
      v.name = NodeName(n) + "/nic" + std::to_string(k);
      const VertexId nic_vertex = t.AddVertex(std::move(v));
      t.node_nics_[n].push_back(nic_vertex);
      t.node_nic_devices_[n].push_back(nic.devices);
      for (int local : nic.devices) {
        t.AddDuplex(LinkKind::kDeviceNic, t.DeviceVertex(first + local), nic_vertex,
                    nic.bandwidth, Duration::Zero(), Duration::Zero());
      }
    }
  }

  const std::vector<NetworkTier>& tiers = spec.network.tiers;
  if (tiers.empty() || max_nics == 0) return t;
  const int num_tiers = static_cast<int>(tiers.size());
  if (t.rail_optimized_ && num_tiers == 1 && num_nodes > 1 && max_nics > 1) {
    return InvalidArgumentError(
        "cluster '" + spec.name +
        "': network: a rail-optimized network of several rails needs a tier above the "
        "leaves (network.tiers has only '" + tiers[0].name + "'), or no route joins "
        "different rails of different nodes");
  }

  // Planes: the most NICs a node has, but no more than a full leaf's uplink
  // ports at NIC rate, so that one trunk carries at least one port's rate.
  if (num_tiers >= 2) {
    const double leaf_ports =
        *tiers[0].nodes_per_switch * (t.rail_optimized_ ? 1 : max_nics) / tiers[0].oversubscription;
    t.planes_ = std::clamp(static_cast<int>(leaf_ports), 1, max_nics);
  }

  // Groups: tier 0 by consecutive nodes; tier t's group of a tier t-1 group
  // is the one holding that group's first node (the last tier is one group).
  t.node_group_.assign(num_tiers, std::vector<int>(num_nodes, 0));
  std::vector<int> num_groups(num_tiers, 1);
  for (int n = 0; n < num_nodes; ++n) {
    t.node_group_[0][n] = tiers[0].nodes_per_switch ? n / *tiers[0].nodes_per_switch : 0;
  }
  num_groups[0] = t.node_group_[0][num_nodes - 1] + 1;
  for (int tier = 1; tier < num_tiers; ++tier) {
    for (int n = 0; n < num_nodes; ++n) {
      const int below = t.node_group_[tier - 1][n];
      t.node_group_[tier][n] =
          tiers[tier].nodes_per_switch
              ? below * *tiers[tier - 1].nodes_per_switch / *tiers[tier].nodes_per_switch
              : 0;
    }
    num_groups[tier] = t.node_group_[tier][num_nodes - 1] + 1;
  }

  // Switches.
  t.tier_switches_.resize(num_tiers);
  for (int tier = 0; tier < num_tiers; ++tier) {
    const bool leaf = tier == 0;
    const int per_group = leaf ? (t.rail_optimized_ ? max_nics : 1) : t.planes_;
    t.tier_switches_[tier].resize(num_groups[tier]);
    for (int g = 0; g < num_groups[tier]; ++g) {
      for (int lane = 0; lane < per_group; ++lane) {
        Vertex v;
        v.kind = VertexKind::kNetworkSwitch;
        v.tier = tier;
        v.group = g;
        v.name = tiers[tier].name + std::to_string(g);
        if (!leaf || t.rail_optimized_) {
          v.lane = lane;
          v.name += (leaf ? ".rail" : ".plane") + std::to_string(lane);
        }
        t.tier_switches_[tier][g].push_back(t.AddVertex(std::move(v)));
      }
    }
  }

  // NIC <-> leaf; the leaves' attached bandwidth and nodes per group.
  std::vector<Bandwidth> down(t.vertices_.size(), Bandwidth::Zero());
  std::vector<int> nodes_in_leaf_group(num_groups[0], 0);
  for (int n = 0; n < num_nodes; ++n) {
    const int g = t.node_group_[0][n];
    ++nodes_in_leaf_group[g];
    const std::vector<Nic>& nics = node_type[n]->nics;
    for (size_t k = 0; k < nics.size(); ++k) {
      const VertexId leaf = t.tier_switches_[0][g][t.rail_optimized_ ? k : 0];
      t.AddDuplex(LinkKind::kNicLeaf, t.node_nics_[n][k], leaf, nics[k].bandwidth,
                  tiers[0].latency, Duration::Zero());
      down[leaf.value()] = down[leaf.value()] + nics[k].bandwidth;
    }
  }

  // Uplinks, tier by tier: a full switch's downlink capacity over the
  // tier's oversubscription.
  std::vector<int> groups_below;  // per group of `tier`: groups of tier-1 under it
  for (int tier = 0; tier + 1 < num_tiers; ++tier) {
    const double nodes_per_switch = *tiers[tier].nodes_per_switch;
    std::vector<int> parent(num_groups[tier], 0);
    for (int n = 0; n < num_nodes; ++n) parent[t.node_group_[tier][n]] = t.node_group_[tier + 1][n];
    std::vector<int> children(num_groups[tier + 1], 0);
    for (int g = 0; g < num_groups[tier]; ++g) ++children[parent[g]];
    for (int g = 0; g < num_groups[tier]; ++g) {
      // Scale from what is present to a full switch of this tier.
      const double scale =
          tier == 0 ? nodes_per_switch / nodes_in_leaf_group[g]
                    : nodes_per_switch / *tiers[tier - 1].nodes_per_switch / groups_below[g];
      const std::vector<VertexId>& above = t.tier_switches_[tier + 1][parent[g]];
      for (const VertexId sw : t.tier_switches_[tier][g]) {
        const Bandwidth up = down[sw.value()] * scale / tiers[tier].oversubscription;
        if (tier == 0) {
          const Bandwidth trunk = up / static_cast<double>(above.size());
          for (const VertexId a : above) {
            t.AddDuplex(LinkKind::kTier, sw, a, trunk, tiers[tier + 1].latency,
                        tiers[tier].latency);
            down[a.value()] = down[a.value()] + trunk;
          }
        } else {
          const VertexId a = above[*t.vertices_[sw.value()].lane];
          t.AddDuplex(LinkKind::kTier, sw, a, up, tiers[tier + 1].latency,
                      tiers[tier].latency);
          down[a.value()] = down[a.value()] + up;
        }
      }
    }
    groups_below = std::move(children);
  }
  return t;
}

int Topology::CountVertices(VertexKind kind) const {
  return static_cast<int>(std::count_if(vertices_.begin(), vertices_.end(),
                                        [kind](const Vertex& v) { return v.kind == kind; }));
}

int Topology::CountNetworkSwitches(int tier) const {
  if (tier < 0 || tier >= static_cast<int>(tier_switches_.size())) return 0;
  int count = 0;
  for (const std::vector<VertexId>& group : tier_switches_[tier]) {
    count += static_cast<int>(group.size());
  }
  return count;
}

int Topology::CountLinks(LinkKind kind) const {
  return static_cast<int>(std::count_if(links_.begin(), links_.end(),
                                        [kind](const Link& l) { return l.kind == kind; }));
}

const Vertex& Topology::vertex(VertexId id) const {
  ORRERY_CHECK_LT(id.value(), vertices_.size());
  return vertices_[id.value()];
}

const Link& Topology::link(LinkId id) const {
  ORRERY_CHECK_LT(id.value(), links_.size());
  return links_[id.value()];
}

std::optional<LinkId> Topology::FindLink(VertexId from, VertexId to) const {
  if (from.value() >= vertices_.size() || to.value() >= vertices_.size()) return std::nullopt;
  const auto [edge, found] = boost::edge(from.value(), to.value(), graph_->adjacency);
  if (!found) return std::nullopt;
  return LinkId(graph_->adjacency[edge]);
}

LinkId Topology::MustFindLink(VertexId from, VertexId to) const {
  const std::optional<LinkId> link = FindLink(from, to);
  ORRERY_CHECK(link.has_value()) << "no link " << vertices_[from.value()].name << "->"
                                 << vertices_[to.value()].name;
  return *link;
}

VertexId Topology::DeviceVertex(int rank) const {
  ORRERY_CHECK(rank >= 0 && rank < num_devices()) << "rank " << rank;
  return VertexId(static_cast<uint32_t>(rank));
}

int Topology::NodeOfRank(int rank) const {
  ORRERY_CHECK(rank >= 0 && rank < num_devices()) << "rank " << rank;
  return device_node_[rank];
}

uint64_t Topology::EcmpHash(int src, int dst, uint64_t salt) {
  uint64_t z = ((static_cast<uint64_t>(static_cast<uint32_t>(src)) << 32) |
                static_cast<uint32_t>(dst)) ^
               (salt * 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<LinkId> Topology::Route(int src, int dst) const {
  std::vector<LinkId> route;
  RouteInto(src, dst, &route);
  return route;
}

void Topology::RouteInto(int src, int dst, std::vector<LinkId>* route) const {
  route->clear();
  const VertexId a = DeviceVertex(src);
  const VertexId b = DeviceVertex(dst);
  if (src == dst) return;
  const int na = device_node_[src];
  const int nb = device_node_[dst];
  if (na == nb) {
    if (const std::optional<VertexId> sw = node_fabric_vertex_[na]) {
      route->push_back(MustFindLink(a, *sw));
      route->push_back(MustFindLink(*sw, b));
    } else {
      route->push_back(MustFindLink(a, b));
    }
    return;
  }

  // NICs: a rail both devices have, else the source's and the destination's
  // own, each picked by the hash among the candidates.
  const uint64_t h = EcmpHash(src, dst, 0);
  const auto serves = [this](int node, size_t nic, int local) {
    const std::vector<int>& devices = node_nic_devices_[node][nic];
    return std::find(devices.begin(), devices.end(), local) != devices.end();
  };
  const int la = device_local_[src];
  const int lb = device_local_[dst];
  int common = 0;
  int src_count = 0;
  int dst_count = 0;
  for (size_t k = 0; k < node_nics_[na].size(); ++k) {
    if (!serves(na, k, la)) continue;
    ++src_count;
    if (k < node_nics_[nb].size() && serves(nb, k, lb)) ++common;
  }
  for (size_t k = 0; k < node_nics_[nb].size(); ++k) dst_count += serves(nb, k, lb) ? 1 : 0;
  ORRERY_CHECK(src_count > 0 && dst_count > 0)
      << "no NIC serves rank " << (src_count == 0 ? src : dst);
  // The `pick`-th NIC of `node` serving `local` (and, if `both`, also a rail of the other).
  const auto nth = [&](int node, int local, int pick, bool both) {
    for (size_t k = 0; k < node_nics_[node].size(); ++k) {
      if (!serves(node, k, local)) continue;
      if (both && !(k < node_nics_[nb].size() && serves(nb, k, lb))) continue;
      if (pick-- == 0) return k;
    }
    ORRERY_CHECK(false) << "NIC choice out of range";
    return size_t{0};
  };
  size_t ka = 0;
  size_t kb = 0;
  if (common > 0) {
    ka = kb = nth(na, la, static_cast<int>(h % common), /*both=*/true);
  } else {
    ka = nth(na, la, static_cast<int>(h % src_count), false);
    kb = nth(nb, lb, static_cast<int>((h >> 32) % dst_count), false);
  }
  const VertexId nic_a = node_nics_[na][ka];
  const VertexId nic_b = node_nics_[nb][kb];
  const VertexId leaf_a = tier_switches_[0][node_group_[0][na]][rail_optimized_ ? ka : 0];
  const VertexId leaf_b = tier_switches_[0][node_group_[0][nb]][rail_optimized_ ? kb : 0];

  route->push_back(MustFindLink(a, nic_a));
  route->push_back(MustFindLink(nic_a, leaf_a));
  if (leaf_a != leaf_b) {
    ORRERY_CHECK_GE(node_group_.size(), 2u) << "no tier joins " << vertices_[leaf_a.value()].name
                                            << " and " << vertices_[leaf_b.value()].name;
    int top = 1;
    while (node_group_[top][na] != node_group_[top][nb]) ++top;
    const size_t plane = EcmpHash(src, dst, 1) % static_cast<uint64_t>(planes_);
    VertexId at = leaf_a;
    for (int tier = 1; tier <= top; ++tier) {
      const VertexId next = tier_switches_[tier][node_group_[tier][na]][plane];
      route->push_back(MustFindLink(at, next));
      at = next;
    }
    for (int tier = top - 1; tier >= 1; --tier) {
      const VertexId next = tier_switches_[tier][node_group_[tier][nb]][plane];
      route->push_back(MustFindLink(at, next));
      at = next;
    }
    route->push_back(MustFindLink(at, leaf_b));
  }
  route->push_back(MustFindLink(leaf_b, nic_b));
  route->push_back(MustFindLink(nic_b, b));
}

Duration Topology::PathLatency(std::span<const LinkId> path) const {
  Duration total = Duration::Zero();
  for (const LinkId id : path) total += link(id).latency;
  return total;
}

std::optional<Bandwidth> Topology::PathBottleneck(std::span<const LinkId> path) const {
  std::optional<Bandwidth> least;
  for (const LinkId id : path) {
    const Bandwidth b = link(id).bandwidth;
    if (!least || b < *least) least = b;
  }
  return least;
}

}  // namespace orrery::topology
