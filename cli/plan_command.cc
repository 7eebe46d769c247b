#include "cli/subcommands.h"

namespace orrery::cli {

int RunPlan(const std::vector<std::string>& /*args*/, CommandIo& io) {
  io.err << "orrery plan: being written\n";
  return kExitBadInput;
}

}  // namespace orrery::cli
