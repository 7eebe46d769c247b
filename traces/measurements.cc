#include "traces/measurements.h"

// Placeholder until the loader lands (issue #8).
