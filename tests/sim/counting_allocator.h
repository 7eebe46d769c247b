// Counts calls of the global operator new in the sim_test binary, to check
// that the engine and the flow model allocate nothing in the steady state.
// counting_allocator.cc replaces the global operator new and delete.
#ifndef ORRERY_TESTS_SIM_COUNTING_ALLOCATOR_H_
#define ORRERY_TESTS_SIM_COUNTING_ALLOCATOR_H_

#include <cstdint>

namespace orrery::sim::testing {

// Number of global operator new calls (any thread) since the start.
int64_t AllocationCount();

}  // namespace orrery::sim::testing

#endif  // ORRERY_TESTS_SIM_COUNTING_ALLOCATOR_H_
