// Placeholder: being written.
#include "cli/subcommands.h"

namespace orrery::cli {

int RunExecute(const std::vector<std::string>& /*args*/, CommandIo& io) {
  io.err << "orrery execute: not built yet\n";
  return 2;
}

}  // namespace orrery::cli
