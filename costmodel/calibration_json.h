// The JSON form of a Calibration and of a cluster spec file that carries
// one (docs/calibration-format.md documents every field). Kept apart from
// calibration.h so that users of a calibration do not pull in the JSON
// library.
#ifndef ORRERY_COSTMODEL_CALIBRATION_JSON_H_
#define ORRERY_COSTMODEL_CALIBRATION_JSON_H_

#include <optional>
#include <string>

#include "core/json.h"
#include "core/status.h"
#include "costmodel/calibration.h"
#include "topology/cluster_spec.h"

namespace orrery::costmodel {

// The JSON form (the "calibration" member of a calibrated cluster spec);
// ParseCalibration(CalibrationToJson(c)) gives c back.
Json CalibrationToJson(const Calibration& calibration);
// Reads the "calibration" member; `source` names the file in errors, whose
// fields are named from "calibration." down. Unknown fields are errors.
Result<Calibration> ParseCalibration(const Json& json, const std::string& source);

// A cluster spec file that may carry a calibration: the spec (read by
// topology::ParseClusterSpec, which ignores the "calibration" member) and,
// when present, its parsed calibration.
struct CalibratedCluster {
  topology::ClusterSpec cluster;
  std::optional<Calibration> calibration;
};
Result<CalibratedCluster> LoadCalibratedCluster(const std::string& path);
// The file `orrery calibrate` writes: ClusterSpecToJson(cluster) with a
// "calibration" member.
Json CalibratedClusterToJson(const topology::ClusterSpec& cluster,
                             const Calibration& calibration);

}  // namespace orrery::costmodel

#endif  // ORRERY_COSTMODEL_CALIBRATION_JSON_H_
