#include "sim/faults.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <system_error>

namespace orrery::sim {

namespace {

// "RANK:FACTOR" / "LINK:FACTOR" split at the last ':'. False when there is
// no ':'.
bool SplitAtLastColon(std::string_view text, std::string_view* head, std::string_view* tail) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  *head = text.substr(0, colon);
  *tail = text.substr(colon + 1);
  return true;
}

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// A factor: the whole text a number, finite, in [1, kMaxFaultFactor].
// `what` is the fault's kind and text, for the message.
Result<double> ParseFactor(std::string_view what, std::string_view text) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return InvalidArgumentError(std::string(what) + ": factor " + Quoted(text) +
                                " is not a number");
  }
  if (!std::isfinite(value) || value < 1.0 || value > kMaxFaultFactor) {
    return InvalidArgumentError(std::string(what) + ": factor " + Quoted(text) +
                                " is out of range, expected a number from 1 to " +
                                FaultFactorText(kMaxFaultFactor));
  }
  return value;
}

Status CheckFactor(std::string_view what, double factor) {
  if (!std::isfinite(factor) || factor < 1.0 || factor > kMaxFaultFactor) {
    return InvalidArgumentError(std::string(what) + ": factor " + FaultFactorText(factor) +
                                " is out of range, expected a number from 1 to " +
                                FaultFactorText(kMaxFaultFactor));
  }
  return Status::Ok();
}

// The part of a name that places it: "node3/" of "node3/nic2->leaf0",
// "leaf0" of "leaf0.rail2"; the whole name when it has neither '/' nor '.'.
std::string_view PlacePrefix(std::string_view name) {
  const size_t slash = name.find('/');
  if (slash != std::string_view::npos) return name.substr(0, slash + 1);
  const size_t dot = name.find('.');
  if (dot != std::string_view::npos) return name.substr(0, dot);
  const size_t arrow = name.find("->");
  if (arrow != std::string_view::npos) return name.substr(0, arrow);
  return name;
}

// The leading letters of a name: "node" of "node12/nic0", "leaf" of "leaf3".
std::string_view Stem(std::string_view name) {
  size_t n = 0;
  while (n < name.size() && std::isalpha(static_cast<unsigned char>(name[n]))) ++n;
  return name.substr(0, n);
}

}  // namespace

std::string FaultFactorText(double factor) {
  // std::to_chars without a precision writes the shortest text that reads
  // back as the same double ("1.5", "2", "1.2000000000000002").
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), factor);
  if (ec != std::errc()) return std::to_string(factor);
  return std::string(buf, ptr);
}

Result<SlowDevice> ParseSlowDevice(std::string_view text) {
  const std::string what = "slow device " + Quoted(text);
  std::string_view rank_text;
  std::string_view factor_text;
  if (!SplitAtLastColon(text, &rank_text, &factor_text)) {
    return InvalidArgumentError(what + ": expected RANK:FACTOR, e.g. \"0:1.5\"");
  }
  SlowDevice s;
  const char* end = rank_text.data() + rank_text.size();
  const auto [ptr, ec] = std::from_chars(rank_text.data(), end, s.rank);
  if (rank_text.empty() || ec != std::errc() || ptr != end || s.rank < 0) {
    return InvalidArgumentError(what + ": rank " + Quoted(rank_text) +
                                " is not an integer >= 0 (expected RANK:FACTOR, e.g. \"0:1.5\")");
  }
  Result<double> factor = ParseFactor(what, factor_text);
  if (!factor.ok()) return factor.status();
  s.factor = *factor;
  return s;
}

Result<DegradedLink> ParseDegradedLink(std::string_view text) {
  const std::string what = "degraded link " + Quoted(text);
  std::string_view link_text;
  std::string_view factor_text;
  if (!SplitAtLastColon(text, &link_text, &factor_text)) {
    return InvalidArgumentError(what + ": expected LINK:FACTOR, e.g. \"node0/nic0:2\"");
  }
  if (link_text.empty()) {
    return InvalidArgumentError(what + ": no link name before ':' (expected LINK:FACTOR, e.g. "
                                       "\"node0/nic0:2\")");
  }
  Result<double> factor = ParseFactor(what, factor_text);
  if (!factor.ok()) return factor.status();
  return DegradedLink{std::string(link_text), *factor};
}

std::string SlowDeviceText(const SlowDevice& s) {
  return std::to_string(s.rank) + ":" + FaultFactorText(s.factor);
}

std::string DegradedLinkText(const DegradedLink& d) {
  return d.link + ":" + FaultFactorText(d.factor);
}

Result<std::vector<topology::LinkId>> ResolveDegradedLink(const topology::Topology& topology,
                                                         const DegradedLink& d) {
  std::vector<topology::LinkId> links;
  // A link's name.
  for (size_t i = 0; i < topology.num_links(); ++i) {
    const topology::LinkId id(static_cast<uint32_t>(i));
    if (topology.link(id).name == d.link) {
      links.push_back(id);
      return links;
    }
  }
  // A vertex's name: every link into and out of it, in link order.
  std::optional<topology::VertexId> vertex;
  for (size_t v = 0; v < topology.num_vertices(); ++v) {
    const topology::VertexId id(static_cast<uint32_t>(v));
    if (topology.vertex(id).name == d.link) {
      vertex = id;
      break;
    }
  }
  if (vertex.has_value()) {
    for (size_t i = 0; i < topology.num_links(); ++i) {
      const topology::LinkId id(static_cast<uint32_t>(i));
      const topology::Link& link = topology.link(id);
      if (link.from == *vertex || link.to == *vertex) links.push_back(id);
    }
    if (!links.empty()) return links;
  }

  // Not found: up to five names that begin as the text does without its
  // trailing digits ("node3/nic" of "node3/nic9"), else share its place
  // ("node3/", "leaf0"), else its stem ("node"): link names when the text
  // is one, vertex names otherwise.
  constexpr size_t kCandidates = 5;
  const bool is_link = d.link.find("->") != std::string::npos;
  auto candidates = [&](std::string_view prefix) {
    std::vector<std::string> names;
    if (prefix.empty()) return names;
    if (is_link) {
      for (size_t i = 0; i < topology.num_links() && names.size() < kCandidates; ++i) {
        const std::string& name = topology.link(topology::LinkId(static_cast<uint32_t>(i))).name;
        if (name.starts_with(prefix)) names.push_back(name);
      }
    } else {
      for (size_t v = 0; v < topology.num_vertices() && names.size() < kCandidates; ++v) {
        const std::string& name =
            topology.vertex(topology::VertexId(static_cast<uint32_t>(v))).name;
        if (name.starts_with(prefix)) names.push_back(name);
      }
    }
    return names;
  };
  std::string_view text = d.link;
  std::string_view kind = text;  // "node1/nic" of "node1/nic9"
  while (!kind.empty() && std::isdigit(static_cast<unsigned char>(kind.back()))) {
    kind.remove_suffix(1);
  }
  std::vector<std::string> names;
  for (const std::string_view prefix : {kind == text ? std::string_view() : kind,
                                        PlacePrefix(text), Stem(text)}) {
    if (names.empty()) names = candidates(prefix);
  }
  std::string message = "degraded link " + Quoted(d.link) +
                        ": no link or vertex of that name in the cluster's topology (" +
                        std::to_string(topology.num_nodes()) + " node(s), " +
                        std::to_string(topology.num_devices()) + " devices, " +
                        std::to_string(topology.num_links()) + " directed links)";
  if (!names.empty()) {
    message += "; names like it: ";
    for (size_t i = 0; i < names.size(); ++i) message += (i == 0 ? "" : ", ") + names[i];
  }
  return NotFoundError(std::move(message));
}

Status CheckFaults(const Faults& faults, const topology::Topology& topology) {
  for (const SlowDevice& s : faults.slow_devices) {
    const std::string what = "slow device " + Quoted(SlowDeviceText(s));
    if (s.rank < 0 || s.rank >= topology.num_devices()) {
      return InvalidArgumentError(what + ": rank " + std::to_string(s.rank) +
                                  " is outside the cluster's devices [0, " +
                                  std::to_string(topology.num_devices()) + ")");
    }
    ORRERY_RETURN_IF_ERROR(CheckFactor(what, s.factor));
  }
  for (const DegradedLink& d : faults.degraded_links) {
    ORRERY_RETURN_IF_ERROR(CheckFactor("degraded link " + Quoted(DegradedLinkText(d)), d.factor));
    Result<std::vector<topology::LinkId>> links = ResolveDegradedLink(topology, d);
    if (!links.ok()) return links.status();
  }
  return Status::Ok();
}

}  // namespace orrery::sim
