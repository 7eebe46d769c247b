// Placeholder: being written.
#include "cli/subcommands.h"

namespace orrery::cli {

int RunProfile(const std::vector<std::string>& /*args*/, CommandIo& io) {
  io.err << "orrery profile: not built yet\n";
  return 2;
}

}  // namespace orrery::cli
