#include "exec/cuda_probe.h"

#include <gtest/gtest.h>

namespace orrery::exec {
namespace {

// Labelled "gpu": runs everywhere, skips (never passes silently) without a GPU.
TEST(CudaProbe, FindsEveryVisibleGpu) {
  Result<CudaEnvironment> env = ProbeCuda();
  if (!env.ok()) GTEST_SKIP() << "no GPU here: " << env.status().message();
  ASSERT_FALSE(env->devices.empty());
  for (const CudaDeviceInfo& d : env->devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.memory.count(), 0);
    EXPECT_GE(d.compute_capability_major, 7);
  }
  EXPECT_GT(env->nccl_version, 0);
}

TEST(CudaProbe, SaysWhyWhenUnavailable) {
  Result<CudaEnvironment> env = ProbeCuda();
  if (env.ok()) GTEST_SKIP() << "a GPU is present";
  EXPECT_EQ(env.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(env.status().message().empty());
}

}  // namespace
}  // namespace orrery::exec
