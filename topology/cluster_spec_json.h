// The JSON form of ClusterSpec (documented in docs/cluster-spec.md).
// Kept apart from cluster_spec.h so that users of the spec do not pull in
// the JSON library.
#ifndef ORRERY_TOPOLOGY_CLUSTER_SPEC_JSON_H_
#define ORRERY_TOPOLOGY_CLUSTER_SPEC_JSON_H_

#include <string>

#include "core/json.h"
#include "core/status.h"
#include "topology/cluster_spec.h"

namespace orrery::topology {

// Reads a spec from parsed JSON; `source` names it in errors (a path). Checks
// every field (types, ranges, NIC device indices, tier order) and rejects
// unknown fields, naming the field and what was expected, then runs
// ValidateClusterSpec (its messages prefixed with `source`). A node's
// "device" is a device preset name or a full object. A top-level "summary"
// object (what `orrery clusters --format json` adds) and a "calibration"
// object (what `orrery calibrate` adds; costmodel/calibration_json.h reads
// it) are accepted and ignored.
Result<ClusterSpec> ParseClusterSpec(const Json& json, const std::string& source);
Result<ClusterSpec> LoadClusterSpecFile(const std::string& path);

// The JSON form; ParseClusterSpec(ClusterSpecToJson(s)) gives back s
// exactly (operator==) for every valid spec whose quantities are values of
// the JSON's units (TFlops(x), GBps(x), Gbps(x), GiBf(x), Micros(x): any
// spec read from JSON, every preset). A quantity no decimal in those units
// reaches (a FlopRate built from raw FLOP/s) comes back within one ulp.
// Numbers are written as the shortest decimal (up to 12 significant digits)
// that reads back exactly: 989.5, not 989.49999999999989.
Json ClusterSpecToJson(const ClusterSpec& spec);
Json DeviceTypeToJson(const DeviceType& device);

}  // namespace orrery::topology

#endif  // ORRERY_TOPOLOGY_CLUSTER_SPEC_JSON_H_
