// The `cuda` backend against the `cpu` one: every operation on the same
// random inputs, to fp32 tolerances. Labelled "gpu": without a GPU these
// tests skip with ProbeCuda()'s reason; the host-side tests (the factory's
// refusal, the row-major → column-major GEMM mapping) run everywhere.
#include "exec/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "exec/backend.h"
#include "exec/cuda_probe.h"

namespace orrery::exec {
namespace {

// ---- Host-side ----------------------------------------------------------------

TEST(CudaBackendFactory, SaysWhyWhenThereIsNoGpu) {
  if (ProbeCuda().ok()) GTEST_SKIP() << "a GPU is present";
  Result<std::unique_ptr<Backend>> backend = MakeBackend(BackendKind::kCuda, 0);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(backend.status().message().empty());
#ifdef ORRERY_HAVE_CUDA
  Result<std::unique_ptr<Backend>> direct = MakeCudaBackend(3);
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(direct.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(direct.status().message().find("GPU"), std::string::npos)
      << direct.status().message();
#endif
}

TEST(ColumnMajorGemm, PlainProductPutsBFirstAndSwapsTheOutputDimensions) {
  // C (2×3) = A (2×4) · B (4×3), tightly packed: lda 4, ldb 3, ldc 3.
  const ColumnMajorGemm g = MapRowMajorGemm(false, false, 2, 3, 4, 4, 3, 3);
  EXPECT_FALSE(g.transpose_first);
  EXPECT_FALSE(g.transpose_second);
  EXPECT_EQ(g.m, 3);
  EXPECT_EQ(g.n, 2);
  EXPECT_EQ(g.k, 4);
  EXPECT_EQ(g.ld_first, 3);
  EXPECT_EQ(g.ld_second, 4);
  EXPECT_EQ(g.ldc, 3);
}

TEST(ColumnMajorGemm, TransposeFlagsFollowTheirOperands) {
  // dW = Xᵀ·dY: A = X stored 5×2 (transpose_a), B = dY 5×3; C 2×3.
  const ColumnMajorGemm dw = MapRowMajorGemm(true, false, 2, 3, 5, 2, 3, 3);
  EXPECT_FALSE(dw.transpose_first);
  EXPECT_TRUE(dw.transpose_second);
  EXPECT_EQ(dw.ld_first, 3);
  EXPECT_EQ(dw.ld_second, 2);
  // Y = X·Wᵀ: A = X 5×2, B = W stored 3×2 (transpose_b); C 5×3.
  const ColumnMajorGemm y = MapRowMajorGemm(false, true, 5, 3, 2, 2, 2, 3);
  EXPECT_TRUE(y.transpose_first);
  EXPECT_FALSE(y.transpose_second);
  EXPECT_EQ(y.m, 3);
  EXPECT_EQ(y.n, 5);
  EXPECT_EQ(y.k, 2);
  EXPECT_EQ(y.ld_first, 2);
  EXPECT_EQ(y.ld_second, 2);
}

// cublasSgemm's definition (column-major, element (i, j) of X at
// x[i + j·ldx]): C = alpha·op(first)·op(second) + beta·C with C m × n.
void ReferenceColumnMajorSgemm(bool trans_first, bool trans_second, int64_t m, int64_t n,
                               int64_t k, float alpha, const float* first, int64_t ld_first,
                               const float* second, int64_t ld_second, float beta, float* c,
                               int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        const float x = trans_first ? first[p + i * ld_first] : first[i + p * ld_first];
        const float y = trans_second ? second[j + p * ld_second] : second[p + j * ld_second];
        acc += x * y;
      }
      c[i + j * ldc] = alpha * acc + beta * c[i + j * ldc];
    }
  }
}

// Backend::Gemm's definition, row-major.
void ReferenceRowMajorGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                           const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                           float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        const float x = ta ? a[p * lda + i] : a[i * lda + p];
        const float y = tb ? b[j * ldb + p] : b[p * ldb + j];
        acc += x * y;
      }
      c[i * ldc + j] = alpha * acc + beta * c[i * ldc + j];
    }
  }
}

TEST(ColumnMajorGemm, ColumnMajorCallOnTheMappedArgumentsComputesTheRowMajorProduct) {
  // Small integers: every product and sum is exact in float.
  const int64_t m = 3, n = 4, k = 5;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // Padded leading dimensions, so that a swapped ld would read wrong data.
      const int64_t lda = (ta ? m : k) + 2;
      const int64_t ldb = (tb ? k : n) + 1;
      const int64_t ldc = n + 3;
      std::vector<float> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc);
      for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(static_cast<int>(i % 7) - 3);
      for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(static_cast<int>(i % 5) - 2);
      for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<float>(i % 3);
      std::vector<float> expected = c;
      ReferenceRowMajorGemm(ta, tb, m, n, k, 2.0f, a.data(), lda, b.data(), ldb, 0.5f,
                            expected.data(), ldc);
      const ColumnMajorGemm g = MapRowMajorGemm(ta, tb, m, n, k, lda, ldb, ldc);
      ReferenceColumnMajorSgemm(g.transpose_first, g.transpose_second, g.m, g.n, g.k, 2.0f,
                                b.data(), g.ld_first, a.data(), g.ld_second, 0.5f, c.data(),
                                g.ldc);
      EXPECT_EQ(c, expected) << "transpose_a " << ta << " transpose_b " << tb;
    }
  }
}

// ---- The CUDA backend against the CPU backend -----------------------------------

// One tensor on both backends, with the same contents.
template <typename T>
struct Twin {
  DeviceArray<T> cpu;
  DeviceArray<T> gpu;
  T* on(int side) { return side == 0 ? cpu.data() : gpu.data(); }
};

class CudaMatchesCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<CudaEnvironment> env = ProbeCuda();
    if (!env.ok()) GTEST_SKIP() << "no GPU here: " << env.status().message();
    Result<std::unique_ptr<Backend>> gpu = MakeBackend(BackendKind::kCuda, 0);
    ASSERT_TRUE(gpu.ok()) << gpu.status().message();
    Result<std::unique_ptr<Backend>> cpu = MakeBackend(BackendKind::kCpu, 0);
    ASSERT_TRUE(cpu.ok()) << cpu.status().message();
    gpu_ = std::move(*gpu);
    cpu_ = std::move(*cpu);
  }

  Backend& backend(int side) { return side == 0 ? *cpu_ : *gpu_; }

  // Runs `op(backend, side)` on the CPU (side 0) and the GPU (side 1).
  template <typename Op>
  void OnBoth(Op op) {
    op(*cpu_, 0);
    op(*gpu_, 1);
    gpu_->Synchronize();
  }

  template <typename T>
  Twin<T> Upload(const std::vector<T>& host) {
    const int64_t n = static_cast<int64_t>(host.size());
    Twin<T> t{DeviceArray<T>(*cpu_, n), DeviceArray<T>(*gpu_, n)};
    cpu_->CopyFromHost(host.data(), t.cpu.data(), n * int64_t{sizeof(T)});
    gpu_->CopyFromHost(host.data(), t.gpu.data(), n * int64_t{sizeof(T)});
    return t;
  }
  Twin<float> Random(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> host(static_cast<size_t>(n));
    for (float& x : host) x = dist(rng_);
    return Upload(host);
  }
  // Contents unspecified before the operation writes them: NaN on both.
  Twin<float> Uninitialized(int64_t n) {
    return Upload(std::vector<float>(static_cast<size_t>(n),
                                     std::numeric_limits<float>::quiet_NaN()));
  }

  std::vector<float> Read(int side, const DeviceArray<float>& a) {
    std::vector<float> host(static_cast<size_t>(a.size()));
    backend(side).CopyToHost(a.data(), host.data(), a.bytes());
    return host;
  }

  // |gpu − cpu| ≤ atol + rtol·|cpu| element-wise.
  void ExpectClose(Twin<float>& t, const char* what, float atol = 1e-5f, float rtol = 1e-4f) {
    const std::vector<float> c = Read(0, t.cpu);
    const std::vector<float> g = Read(1, t.gpu);
    ASSERT_EQ(c.size(), g.size());
    int reported = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      const bool close = std::abs(g[i] - c[i]) <= atol + rtol * std::abs(c[i]);
      if (!close && reported++ < 5) {
        ADD_FAILURE() << what << "[" << i << "]: cpu " << c[i] << ", cuda " << g[i];
      }
    }
  }

  std::mt19937 rng_{20240611};
  std::unique_ptr<Backend> cpu_;
  std::unique_ptr<Backend> gpu_;
};

TEST_F(CudaMatchesCpu, NamesItsDeviceAndAccountsItsMemory) {
  EXPECT_EQ(gpu_->kind(), BackendKind::kCuda);
  EXPECT_NE(gpu_->device_name().find("cuBLAS"), std::string::npos) << gpu_->device_name();
  const int64_t before = gpu_->allocated_bytes();
  {
    DeviceArray<float> a(*gpu_, 1000);
    EXPECT_EQ(gpu_->allocated_bytes(), before + 4000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 256, 0u);
  }
  EXPECT_EQ(gpu_->allocated_bytes(), before);
  EXPECT_GE(gpu_->peak_allocated_bytes(), before + 4000);
}

TEST_F(CudaMatchesCpu, CopiesFillsAndElementWiseOperations) {
  const int64_t n = 100003;  // not a multiple of a block
  Twin<float> a = Random(n);
  Twin<float> b = Random(n);
  Twin<float> out = Uninitialized(n);
  Twin<float> filled = Uninitialized(n);
  Twin<float> copy = Uninitialized(n);
  OnBoth([&](Backend& be, int s) {
    be.Add(a.on(s), b.on(s), out.on(s), n);
    be.Axpy(0.75f, a.on(s), out.on(s), n);
    be.Scale(out.on(s), n, -1.5f);
    be.Add(out.on(s), b.on(s), out.on(s), n);  // aliasing
    be.Fill(filled.on(s), n, 2.5f);
    be.CopyOnDevice(out.on(s), copy.on(s), n * 4);
  });
  ExpectClose(out, "elementwise");
  ExpectClose(filled, "fill", 0, 0);
  ExpectClose(copy, "copy");
}

TEST_F(CudaMatchesCpu, GemmInEveryTransposeWithPaddedLeadingDimensions) {
  const int64_t m = 37, n = 53, k = 71;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int64_t lda = (ta ? m : k) + 3;
      const int64_t ldb = (tb ? k : n) + 5;
      const int64_t ldc = n + 7;
      Twin<float> a = Random((ta ? k : m) * lda);
      Twin<float> b = Random((tb ? n : k) * ldb);
      Twin<float> c = Random(m * ldc);
      Twin<float> c0 = Uninitialized(m * ldc);
      OnBoth([&](Backend& be, int s) {
        be.Gemm(ta, tb, m, n, k, 0.5f, a.on(s), lda, b.on(s), ldb, 2.0f, c.on(s), ldc);
        // beta = 0 ignores C's NaNs (the padding stays NaN on both sides).
        be.Gemm(ta, tb, m, n, k, 1.0f, a.on(s), lda, b.on(s), ldb, 0.0f, c0.on(s), ldc);
      });
      const std::string what = "gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb);
      ExpectClose(c, what.c_str(), 1e-4f, 1e-4f);
      std::vector<float> g = Read(1, c0.gpu);
      std::vector<float> cc = Read(0, c0.cpu);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          const size_t idx = static_cast<size_t>(i * ldc + j);
          EXPECT_NEAR(g[idx], cc[idx], 1e-4f) << what << " beta=0 at " << i << "," << j;
        }
      }
    }
  }
}

TEST_F(CudaMatchesCpu, BiasAndReductions) {
  const int64_t rows = 301, cols = 67;
  Twin<float> y = Random(rows * cols);
  Twin<float> bias = Random(cols);
  Twin<float> dbias = Random(cols);
  OnBoth([&](Backend& be, int s) {
    be.BiasAdd(y.on(s), bias.on(s), rows, cols);
    be.BiasGradient(y.on(s), rows, cols, dbias.on(s));
  });
  ExpectClose(y, "bias add");
  ExpectClose(dbias, "bias gradient", 1e-4f, 1e-4f);
  Twin<float> x = Random(1 << 20);
  EXPECT_NEAR(gpu_->Sum(x.gpu.data(), x.gpu.size()), cpu_->Sum(x.cpu.data(), x.cpu.size()),
              1e-6);
  const double cpu_sq = cpu_->SumOfSquares(x.cpu.data(), x.cpu.size());
  EXPECT_NEAR(gpu_->SumOfSquares(x.gpu.data(), x.gpu.size()), cpu_sq, 1e-9 * cpu_sq);
  EXPECT_EQ(gpu_->Sum(x.gpu.data(), 0), 0.0);
}

TEST_F(CudaMatchesCpu, LayerNormForwardAndBackward) {
  const int64_t rows = 45, cols = 300;  // cols > one block of threads
  Twin<float> x = Random(rows * cols, -2.0f, 3.0f);
  Twin<float> gamma = Random(cols);
  Twin<float> beta = Random(cols);
  Twin<float> y = Uninitialized(rows * cols);
  Twin<float> mean = Uninitialized(rows);
  Twin<float> rstd = Uninitialized(rows);
  Twin<float> dy = Random(rows * cols);
  Twin<float> dx = Uninitialized(rows * cols);
  Twin<float> dgamma = Random(cols);
  Twin<float> dbeta = Random(cols);
  OnBoth([&](Backend& be, int s) {
    be.LayerNormForward(x.on(s), gamma.on(s), beta.on(s), rows, cols, 1e-5f, y.on(s), mean.on(s),
                        rstd.on(s));
    be.LayerNormBackward(dy.on(s), x.on(s), gamma.on(s), mean.on(s), rstd.on(s), rows, cols,
                         dx.on(s), dgamma.on(s), dbeta.on(s));
  });
  ExpectClose(y, "layernorm y", 1e-4f, 1e-4f);
  ExpectClose(mean, "layernorm mean", 1e-5f, 1e-4f);
  ExpectClose(rstd, "layernorm rstd", 1e-5f, 1e-4f);
  ExpectClose(dx, "layernorm dx", 1e-4f, 1e-3f);
  ExpectClose(dgamma, "layernorm dgamma", 1e-3f, 1e-4f);
  ExpectClose(dbeta, "layernorm dbeta", 1e-3f, 1e-4f);
}

TEST_F(CudaMatchesCpu, RmsNormForwardAndBackward) {
  const int64_t rows = 33, cols = 515;
  Twin<float> x = Random(rows * cols, -2.0f, 2.0f);
  Twin<float> gamma = Random(cols);
  Twin<float> y = Uninitialized(rows * cols);
  Twin<float> rstd = Uninitialized(rows);
  Twin<float> dy = Random(rows * cols);
  Twin<float> dx = Uninitialized(rows * cols);
  Twin<float> dgamma = Random(cols);
  OnBoth([&](Backend& be, int s) {
    be.RmsNormForward(x.on(s), gamma.on(s), rows, cols, 1e-6f, y.on(s), rstd.on(s));
    be.RmsNormBackward(dy.on(s), x.on(s), gamma.on(s), rstd.on(s), rows, cols, dx.on(s),
                       dgamma.on(s));
  });
  ExpectClose(y, "rmsnorm y", 1e-4f, 1e-4f);
  ExpectClose(rstd, "rmsnorm rstd", 1e-5f, 1e-4f);
  ExpectClose(dx, "rmsnorm dx", 1e-4f, 1e-3f);
  ExpectClose(dgamma, "rmsnorm dgamma", 1e-3f, 1e-4f);
}

TEST_F(CudaMatchesCpu, GeluAndSwiGluForwardAndBackward) {
  const int64_t rows = 29, cols = 211;
  Twin<float> x = Random(rows * cols, -4.0f, 4.0f);
  Twin<float> dy = Random(rows * cols);
  Twin<float> y = Uninitialized(rows * cols);
  Twin<float> dx = Uninitialized(rows * cols);
  Twin<float> gate_up = Random(rows * 2 * cols, -4.0f, 4.0f);
  Twin<float> out = Uninitialized(rows * cols);
  Twin<float> dgate_up = Uninitialized(rows * 2 * cols);
  OnBoth([&](Backend& be, int s) {
    be.GeluForward(x.on(s), y.on(s), rows * cols);
    be.GeluBackward(x.on(s), dy.on(s), dx.on(s), rows * cols);
    be.SwiGluForward(gate_up.on(s), rows, cols, out.on(s));
    be.SwiGluBackward(gate_up.on(s), dy.on(s), rows, cols, dgate_up.on(s));
  });
  ExpectClose(y, "gelu");
  ExpectClose(dx, "gelu backward");
  ExpectClose(out, "swiglu");
  ExpectClose(dgate_up, "swiglu backward");
}

TEST_F(CudaMatchesCpu, RopeForwardAndBackwardOnAColumnBlock) {
  const int64_t sequence = 17, batch = 3, heads = 4, head_dim = 16;
  const int64_t row_stride = 3 * heads * head_dim + 5;  // a q block inside a fused QKV
  Twin<float> x = Random(sequence * batch * row_stride);
  Twin<float> dx = Random(sequence * batch * row_stride);
  OnBoth([&](Backend& be, int s) {
    be.RopeForward(x.on(s) + heads * head_dim, sequence, batch, heads, head_dim, row_stride,
                   10000.0f);
    be.RopeBackward(dx.on(s) + heads * head_dim, sequence, batch, heads, head_dim, row_stride,
                    10000.0f);
  });
  ExpectClose(x, "rope", 1e-5f, 1e-4f);
  ExpectClose(dx, "rope backward", 1e-5f, 1e-4f);
}

TEST_F(CudaMatchesCpu, CausalGroupedQueryAttentionForwardAndBackward) {
  AttentionShape shape;
  shape.batch = 2;
  shape.sequence = 19;
  shape.heads = 4;
  shape.kv_heads = 2;
  shape.head_dim = 8;
  const int64_t q_cols = shape.heads * shape.head_dim;
  const int64_t kv_cols = shape.kv_heads * shape.head_dim;
  shape.row_stride = q_cols + 2 * kv_cols;
  const int64_t rows = shape.rows();
  Twin<float> qkv = Random(rows * shape.row_stride, -2.0f, 2.0f);
  Twin<float> out = Uninitialized(rows * q_cols);
  Twin<float> probs = Uninitialized(shape.probs_elements());
  Twin<float> dout = Random(rows * q_cols);
  Twin<float> dqkv = Uninitialized(rows * shape.row_stride);
  OnBoth([&](Backend& be, int s) {
    const float* q = qkv.on(s);
    be.AttentionForward(shape, q, q + q_cols, q + q_cols + kv_cols, out.on(s), probs.on(s));
    float* dq = dqkv.on(s);
    be.AttentionBackward(shape, q, q + q_cols, q + q_cols + kv_cols, probs.on(s), dout.on(s), dq,
                         dq + q_cols, dq + q_cols + kv_cols);
  });
  ExpectClose(out, "attention out", 1e-5f, 1e-4f);
  ExpectClose(probs, "attention probs", 1e-6f, 1e-4f);
  ExpectClose(dqkv, "attention dqkv", 1e-5f, 1e-3f);
}

TEST_F(CudaMatchesCpu, VocabularyParallelEmbeddingAndCrossEntropy) {
  const int64_t rows = 23, hidden = 40, vocab_start = 100, vocab_local = 300;
  std::vector<int32_t> ids(rows);
  std::uniform_int_distribution<int32_t> id_dist(0, 500);  // some outside this rank's range
  for (int32_t& id : ids) id = id_dist(rng_);
  ids[3] = ids[7] = 150;  // a repeated id accumulates
  ids[5] = 99;            // just below the range
  ids[6] = 400;           // just above it
  Twin<int32_t> token_ids = Upload(ids);
  Twin<float> table = Random(vocab_local * hidden);
  Twin<float> embedded = Uninitialized(rows * hidden);
  Twin<float> dout = Random(rows * hidden);
  Twin<float> dtable = Random(vocab_local * hidden);
  OnBoth([&](Backend& be, int s) {
    be.EmbeddingForward(token_ids.on(s), rows, table.on(s), vocab_start, vocab_local, hidden,
                        embedded.on(s));
    be.EmbeddingBackward(token_ids.on(s), rows, dout.on(s), vocab_start, vocab_local, hidden,
                         dtable.on(s));
  });
  ExpectClose(embedded, "embedding", 0, 0);
  ExpectClose(dtable, "embedding backward");

  Twin<float> logits = Random(rows * vocab_local, -5.0f, 5.0f);
  Twin<float> row_max = Uninitialized(rows);
  Twin<float> sum_exp = Uninitialized(rows);
  Twin<float> target_logit = Uninitialized(rows);
  Twin<float> loss = Uninitialized(rows);
  Twin<float> dlogits = Uninitialized(rows * vocab_local);
  OnBoth([&](Backend& be, int s) {
    be.LogitsRowMax(logits.on(s), rows, vocab_local, row_max.on(s));
    be.CrossEntropyPartials(logits.on(s), rows, vocab_local, row_max.on(s), token_ids.on(s),
                            vocab_start, sum_exp.on(s), target_logit.on(s));
    be.CrossEntropyLoss(row_max.on(s), sum_exp.on(s), target_logit.on(s), rows, loss.on(s));
    be.CrossEntropyBackward(logits.on(s), rows, vocab_local, row_max.on(s), sum_exp.on(s),
                            token_ids.on(s), vocab_start, 0.25f, dlogits.on(s));
  });
  ExpectClose(row_max, "row max", 0, 0);
  ExpectClose(sum_exp, "sum exp", 1e-5f, 1e-4f);
  ExpectClose(target_logit, "target logit", 0, 0);
  ExpectClose(loss, "loss", 1e-5f, 1e-4f);
  ExpectClose(dlogits, "dlogits", 1e-6f, 1e-4f);
}

TEST_F(CudaMatchesCpu, AdamWStepsWithBiasCorrection) {
  const int64_t n = 5000;
  Twin<float> param = Random(n);
  Twin<float> grad = Random(n);
  Twin<float> m = Upload(std::vector<float>(n, 0.0f));
  Twin<float> v = Upload(std::vector<float>(n, 0.0f));
  AdamHyperparameters hyper;
  hyper.learning_rate = 1e-2f;
  hyper.weight_decay = 0.1f;
  OnBoth([&](Backend& be, int s) {
    for (int64_t step = 1; step <= 3; ++step) {
      be.AdamStep(param.on(s), grad.on(s), m.on(s), v.on(s), n, hyper, step);
    }
  });
  ExpectClose(param, "param", 1e-6f, 1e-4f);
  ExpectClose(m, "m", 1e-7f, 1e-5f);
  ExpectClose(v, "v", 1e-8f, 1e-5f);
}

}  // namespace
}  // namespace orrery::exec
