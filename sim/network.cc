#include "sim/network.h"

#include <cmath>
#include <utility>

#include "core/check.h"

namespace orrery::sim {

LinkId Network::AddLink(Bandwidth capacity, Duration latency, std::string name) {
  const double bps = capacity.BytesPerSecond();
  ORRERY_CHECK(std::isfinite(bps) && bps >= 1.0 && bps < 9.0e18)
      << "link '" << name << "' capacity " << bps << " B/s (expected 1 B/s to 9e18 B/s)";
  ORRERY_CHECK(latency >= Duration::Zero())
      << "link '" << name << "' latency " << latency.picos() << " ps (expected >= 0)";
  ORRERY_CHECK(links_.size() < 0xffffffffu) << "too many links";
  Link link;
  link.name = std::move(name);
  link.capacity = capacity;
  link.latency = latency;
  link.capacity_bytes_per_s = std::llround(bps);
  links_.push_back(std::move(link));
  return LinkId(static_cast<uint32_t>(links_.size() - 1));
}

const Link& Network::link(LinkId id) const {
  ORRERY_CHECK(Contains(id)) << "link " << id.value() << " of a network of " << links_.size();
  return links_[id.value()];
}

}  // namespace orrery::sim
