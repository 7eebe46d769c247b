#include "cli/sim_options.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include <boost/program_options.hpp>

#include "costmodel/compute.h"

namespace orrery::cli {

namespace po = boost::program_options;

void AddSimulationOptions(po::options_description& options) {
  po::options_description sim("Simulation");
  sim.add_options()
      ("attention", po::value<std::string>()->default_value("flash")->value_name("KIND"),
       "flash: a fused kernel that never stores the s×s scores (FlashAttention, "
       "Megatron-Core's default); unfused: softmax over materialised scores "
       "(Megatron-LM before FlashAttention, 2021)")
      ("tp-comm-overlap", po::bool_switch(),
       "tensor-parallel collectives overlap the layer's GEMMs (Transformer Engine's "
       "userbuffers, Megatron's --tp-comm-overlap) instead of running between them")
      ("compute-efficiency-scale", po::value<double>()->default_value(1.0)->value_name("S"),
       "multiply the compute model's tensor-core efficiency ceilings (GEMM, fused "
       "attention; the calibrated ones on a calibrated cluster) by S, in (0, 1/ceiling]: "
       "a calibration knob")
      ("overlap-slowdown", po::value<double>()->value_name("F"),
       "compute overlapped with data-parallel communication runs (1 + F) times longer "
       "(default: the calibrated cluster's, else 0)")
      ("grad-reduce-bytes", po::value<int>()->value_name("N"),
       "bytes per gradient element the data-parallel group reduces: 2 (bf16/fp16) or 4 "
       "(fp32, Megatron's --accumulate-allreduce-grads-in-fp32); default 4 for fp32 and "
       "tf32 plans, 2 otherwise");
  options.add(sim);
}

Result<sim::IterationOptions> SimulationOptionsFrom(const po::variables_map& vm,
                                                    const topology::DeviceType& device) {
  return SimulationOptionsFrom(vm, device, topology::Precision::kBf16, nullptr);
}

Result<sim::IterationOptions> SimulationOptionsFrom(
    const po::variables_map& vm, const topology::DeviceType& device,
    topology::Precision precision, std::shared_ptr<const costmodel::Calibration> calibration) {
  sim::IterationOptions options;
  const std::string attention = vm["attention"].as<std::string>();
  if (attention == "flash") {
    options.graph.stage.flash_attention = true;
  } else if (attention == "unfused") {
    options.graph.stage.flash_attention = false;
  } else {
    return InvalidArgumentError("--attention: expected flash or unfused, got '" + attention +
                                "'");
  }
  options.graph.tp_comm_overlap = vm["tp-comm-overlap"].as<bool>();
  const double scale = vm["compute-efficiency-scale"].as<double>();
  costmodel::ComputeOptions compute = costmodel::DefaultComputeOptions(device);
  if (calibration != nullptr) {
    const auto fitted = calibration->compute.find(precision);
    if (fitted != calibration->compute.end()) compute = fitted->second;
  }
  const double ceiling = std::max({compute.gemm_max_efficiency,
                                   compute.attention_forward_efficiency,
                                   compute.attention_backward_efficiency});
  if (!(scale > 0) || scale * ceiling > 1.0 || !std::isfinite(scale)) {
    return InvalidArgumentError("--compute-efficiency-scale: expected a value in (0, " +
                                std::to_string(1.0 / ceiling) + "], got " +
                                std::to_string(scale));
  }
  if (scale != 1.0) {
    compute.gemm_max_efficiency *= scale;
    compute.attention_forward_efficiency *= scale;
    compute.attention_backward_efficiency *= scale;
    options.compute = compute;
  }
  if (vm.count("overlap-slowdown") > 0) {
    const double f = vm["overlap-slowdown"].as<double>();
    if (!(f >= 0) || !std::isfinite(f)) {
      return InvalidArgumentError("--overlap-slowdown: expected a value >= 0, got " +
                                  std::to_string(f));
    }
    options.overlap_slowdown = f;
  } else if (calibration != nullptr && calibration->overlap_slowdown.has_value()) {
    options.overlap_slowdown = *calibration->overlap_slowdown;
  }
  const bool fp32_gradients =
      precision == topology::Precision::kFp32 || precision == topology::Precision::kTf32;
  const int bytes = vm.count("grad-reduce-bytes") > 0 ? vm["grad-reduce-bytes"].as<int>()
                                                     : (fp32_gradients ? 4 : 2);
  if (bytes != 2 && bytes != 4) {
    return InvalidArgumentError("--grad-reduce-bytes: expected 2 or 4, got " +
                                std::to_string(bytes));
  }
  options.graph.gradient_bytes_per_parameter = bytes;
  options.calibration = std::move(calibration);
  return options;
}

}  // namespace orrery::cli
