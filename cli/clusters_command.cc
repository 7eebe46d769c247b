#include "cli/subcommands.h"

namespace orrery::cli {

int RunClusters(const std::vector<std::string>& /*args*/, CommandIo& io) {
  io.err << "orrery clusters: being written\n";
  return kExitBadInput;
}

}  // namespace orrery::cli
