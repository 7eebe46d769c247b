#include "costmodel/calibration_json.h"

namespace orrery::costmodel {

// Placeholder until the calibration lands (issue #8).
Json CalibrationToJson(const Calibration&) { return Json::object(); }

Result<Calibration> ParseCalibration(const Json&, const std::string& source) {
  return UnimplementedError(source + ": calibration: not built yet");
}

Result<CalibratedCluster> LoadCalibratedCluster(const std::string& path) {
  return UnimplementedError(path + ": calibration: not built yet");
}

Json CalibratedClusterToJson(const topology::ClusterSpec&, const Calibration&) {
  return Json::object();
}

}  // namespace orrery::costmodel
