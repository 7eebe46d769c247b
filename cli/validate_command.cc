#include "cli/subcommands.h"

// Placeholder until it lands (issue #8).
