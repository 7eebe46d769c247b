#include "cli/subcommands.h"

namespace orrery::cli {

// Placeholder until it lands (issue #8).
int RunTune(const std::vector<std::string>&, CommandIo& io) {
  io.err << "orrery tune: not built yet (issue #8)\n";
  return 2;
}

}  // namespace orrery::cli
