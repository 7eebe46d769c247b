#include "cli/subcommands.h"

namespace orrery::cli {

int RunModels(const std::vector<std::string>& /*args*/, CommandIo& io) {
  io.err << "orrery models: being written\n";
  return kExitBadInput;
}

}  // namespace orrery::cli
