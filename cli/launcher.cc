#include "cli/launcher.h"

// Placeholder until it lands (issue #8).
