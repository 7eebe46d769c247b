#include "costmodel/calibration.h"

namespace orrery::costmodel {

// Placeholder until the calibration lands (issue #8).
Result<Calibration> Calibrate(const CalibrationRequest&) {
  return UnimplementedError("calibration: not built yet");
}

Result<ComputeModel> CalibratedComputeModel(const topology::DeviceType& device,
                                            topology::Precision precision,
                                            const Calibration*,
                                            std::optional<ComputeOptions> options) {
  return ComputeModel::Create(device, precision, std::move(options));
}

Result<CollectiveModel> CalibratedCollectiveModel(const topology::ClusterSpec& cluster,
                                                  const Calibration*) {
  return CollectiveModel::Create(cluster);
}

std::vector<CalibrationChange> DescribeChanges(const topology::ClusterSpec&, const Calibration*,
                                               const Calibration&) {
  return {};
}

}  // namespace orrery::costmodel
