// The simulator's options on the command line, shared by `simulate` (and
// the commands that simulate for it): how attention runs, whether
// tensor-parallel communication overlaps the GEMMs, the compute model's
// efficiency scale (a calibration knob), the slowdown of compute that
// overlaps data-parallel communication and the bytes per gradient element.
#ifndef ORRERY_CLI_SIM_OPTIONS_H_
#define ORRERY_CLI_SIM_OPTIONS_H_

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>

#include "core/status.h"
#include "sim/iteration.h"
#include "topology/cluster_spec.h"

namespace orrery::cli {

// Adds --attention, --tp-comm-overlap, --compute-efficiency-scale,
// --overlap-slowdown and --grad-reduce-bytes.
void AddSimulationOptions(boost::program_options::options_description& options);

// The IterationOptions they give for a cluster of `device`s.
// InvalidArgument naming the flag when a value is out of range.
Result<sim::IterationOptions> SimulationOptionsFrom(
    const boost::program_options::variables_map& vm, const topology::DeviceType& device);

}  // namespace orrery::cli

#endif  // ORRERY_CLI_SIM_OPTIONS_H_
