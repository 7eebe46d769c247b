// Placeholder until implemented.
#include "cli/subcommands.h"
namespace orrery::cli {
int RunExport(const std::vector<std::string>&, CommandIo&) { return 2; }
}  // namespace orrery::cli
