#include "traces/galvatron_profiles.h"

// Placeholder until the readers land (issue #8).
