// The simulator's options on the command line, shared by `simulate` (and
// the commands that simulate for it): how attention runs, whether
// tensor-parallel communication overlaps the GEMMs, the compute model's
// efficiency scale (a calibration knob), the slowdown of compute that
// overlaps data-parallel communication and the bytes per gradient element.
//
// With a calibrated cluster (cli/plan_options.h ClusterInput, costmodel/
// calibration.h) the options carry the calibration: the simulator then
// builds its compute and collective models and the optimizer step from it.
// --compute-efficiency-scale scales the calibration's refitted roofline
// figures of the plan's precision (the device's defaults where it refitted
// none); --overlap-slowdown, when given, replaces the calibration's σ.
#ifndef ORRERY_CLI_SIM_OPTIONS_H_
#define ORRERY_CLI_SIM_OPTIONS_H_

#include <memory>

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>

#include "core/status.h"
#include "costmodel/calibration.h"
#include "sim/iteration.h"
#include "topology/cluster_spec.h"

namespace orrery::cli {

// Adds --attention, --tp-comm-overlap, --compute-efficiency-scale,
// --overlap-slowdown and --grad-reduce-bytes.
void AddSimulationOptions(boost::program_options::options_description& options);

// The IterationOptions they give for a plan at `precision` on a cluster of
// `device`s with `calibration` (nullptr: the nominal models):
//   * calibration: set, so that SimulateIteration uses its models;
//   * compute: unset unless --compute-efficiency-scale S != 1, then the
//     calibration's figures for `precision` (else the device's defaults,
//     costmodel::DefaultComputeOptions) with the GEMM and fused-attention
//     ceilings × S;
//   * overlap_slowdown: --overlap-slowdown, else the calibration's σ, else 0;
//   * graph.gradient_bytes_per_parameter: --grad-reduce-bytes, else 4 for
//     fp32 and tf32 plans (their gradients are fp32: the executor reduces
//     fp32 gradients; Megatron-LM keeps main_grad in fp32) and 2 otherwise.
// InvalidArgument naming the flag when a value is out of range.
Result<sim::IterationOptions> SimulationOptionsFrom(
    const boost::program_options::variables_map& vm, const topology::DeviceType& device,
    topology::Precision precision, std::shared_ptr<const costmodel::Calibration> calibration);

// The same for a bf16 plan without a calibration.
Result<sim::IterationOptions> SimulationOptionsFrom(
    const boost::program_options::variables_map& vm, const topology::DeviceType& device);

}  // namespace orrery::cli

#endif  // ORRERY_CLI_SIM_OPTIONS_H_
