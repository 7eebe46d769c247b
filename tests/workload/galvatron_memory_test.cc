// The operator decomposition against real memory measurements: Galvatron's
// profiler on Llama-2-7B, bf16, sequence 2048, 8 GPUs, sequence parallelism
// on (../shared/fixtures/galvatron/main_gpt_llama2-7b, "layertype_0_sp").
//
// Galvatron reports, per decoder layer, "parameter_size" (MiB, at 4 bytes a
// parameter) and "tp_activation_per_bsz_dict" (MiB of activations per
// sample for each TP degree). Its measured activations are twice the bf16
// count of Korthikanti's accounting with a fused attention kernel, i.e. they
// match 4-byte activations (its "checkpoint" entry, 32 MiB, is likewise
// 4·s·h bytes of a full-recompute layer input); the test compares with
// activation_bytes = 4 and says so.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "core/json.h"
#include "workload/model_presets.h"
#include "workload/operators.h"

namespace orrery::workload {
namespace {

TEST(GalvatronMemory, Llama2LayerParametersAndActivationsPerSampleWithinTenPercent) {
  const std::string path = std::string(ORRERY_FIXTURES_DIR) +
                           "/galvatron/main_gpt_llama2-7b/memory_profiling_bf16_llama2-7b_all.json";
  Result<Json> doc = ReadJsonFile(path);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  const Json& layer = (*doc)["layertype_0_sp"]["2048"];
  const ModelSpec model = ModelPreset("llama2-7b").value();

  std::printf("Llama-2-7B decoder layer, seq 2048, SP on: Orrery vs Galvatron's measurement\n");
  std::printf("%4s  %22s  %22s\n", "tp", "parameters MiB (err)", "activations/sample MiB (err)");
  for (int tp : {1, 2, 4, 8}) {
    const LayerOperators ops =
        ExpandLayer(model, LayerKind::kDecoderBlock, 1, 2048,
                    {.tp = tp, .sequence_parallel = tp > 1},
                    {.activation_bytes = 4, .flash_attention = true})
            .value();
    const double params_mib = 4.0 * static_cast<double>(ops.Parameters()) / 1048576.0;
    const double measured_params = layer["parameter_size"].get<double>() / tp;
    const double act_mib = ops.SavedActivations().ToMiB();
    const double measured_act = layer["tp_activation_per_bsz_dict"][std::to_string(tp)].get<double>();
    const double params_err = params_mib / measured_params - 1.0;
    const double act_err = act_mib / measured_act - 1.0;
    std::printf("%4d  %8.1f vs %7.1f (%+5.1f%%)  %8.1f vs %7.1f (%+5.1f%%)\n", tp, params_mib,
                measured_params, 100 * params_err, act_mib, measured_act, 100 * act_err);
    EXPECT_LT(std::fabs(params_err), 0.10) << "tp " << tp;
    EXPECT_LT(std::fabs(act_err), 0.10) << "tp " << tp;
  }
}

}  // namespace
}  // namespace orrery::workload
