// Placeholder until implemented.
#include "cli/subcommands.h"
namespace orrery::cli {
int RunSearch(const std::vector<std::string>&, CommandIo&) { return 2; }
}  // namespace orrery::cli
