#include "cli/subcommands.h"

namespace orrery::cli {

// Placeholder until it lands (issue #8).
int RunCalibrate(const std::vector<std::string>&, CommandIo& io) {
  io.err << "orrery calibrate: not built yet (issue #8)\n";
  return 2;
}

}  // namespace orrery::cli
