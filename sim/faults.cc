#include "sim/faults.h"

// Placeholder: built by the fault-injection work of issue 9.

namespace orrery::sim {

Result<SlowDevice> ParseSlowDevice(std::string_view text) {
  return UnimplementedError("--slow-device " + std::string(text) + ": not built yet");
}
Result<DegradedLink> ParseDegradedLink(std::string_view text) {
  return UnimplementedError("--degrade-link " + std::string(text) + ": not built yet");
}
std::string SlowDeviceText(const SlowDevice& s) { return std::to_string(s.rank); }
std::string DegradedLinkText(const DegradedLink& d) { return d.link; }
Result<std::vector<topology::LinkId>> ResolveDegradedLink(const topology::Topology&,
                                                         const DegradedLink& d) {
  return UnimplementedError("--degrade-link " + d.link + ": not built yet");
}
Status CheckFaults(const Faults& faults, const topology::Topology&) {
  if (faults.empty()) return Status::Ok();
  return UnimplementedError("faults: not built yet");
}

}  // namespace orrery::sim
