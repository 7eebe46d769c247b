#include "cli/subcommands.h"

namespace orrery::cli {

int RunQuickstart(const std::vector<std::string>& /*args*/, CommandIo& io) {
  io.err << "orrery quickstart: being written\n";
  return kExitBadInput;
}

}  // namespace orrery::cli
