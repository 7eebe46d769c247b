// Tests of the `cpu` backend (exec/cpu/cpu_backend.h) against the contracts
// of exec/backend.h: GEMM against a naive triple loop; every backward pass
// against central finite differences of its forward; attention against a
// naive double-precision reference; the vocabulary-parallel cross-entropy
// split in two against the unsplit one; AdamW against a hand-computed
// update; memory accounting; the backend factory.
#include "exec/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "exec/backend.h"

namespace orrery::exec {
namespace {

using Vector = std::vector<float>;

std::unique_ptr<Backend> Cpu() { return MakeCpuBackend(); }

Vector RandomVector(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vector v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

template <typename T>
DeviceArray<T> Upload(Backend& backend, const std::vector<T>& host) {
  DeviceArray<T> d(backend, static_cast<int64_t>(host.size()));
  backend.CopyFromHost(host.data(), d.data(), d.bytes());
  return d;
}

template <typename T>
std::vector<T> Download(Backend& backend, const DeviceArray<T>& d) {
  std::vector<T> host(d.size());
  backend.CopyToHost(d.data(), host.data(), d.bytes());
  return host;
}

double Dot(const Vector& a, const Vector& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Central differences (f(x + h·e_i) − f(x − h·e_i)) / 2h for every i.
std::vector<double> NumericGradient(Vector x, float h,
                                    const std::function<double(const Vector&)>& f) {
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + h;
    const double plus = f(x);
    x[i] = saved - h;
    const double minus = f(x);
    x[i] = saved;
    grad[i] = (plus - minus) / (2.0 * static_cast<double>(h));
  }
  return grad;
}

// |analytic − numeric| <= atol + rtol·|numeric| element-wise.
void ExpectGradientsNear(const Vector& analytic, const std::vector<double>& numeric, double atol,
                         double rtol, const std::string& what) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  for (size_t i = 0; i < numeric.size(); ++i) {
    EXPECT_NEAR(analytic[i], numeric[i], atol + rtol * std::abs(numeric[i]))
        << what << " element " << i;
  }
}

// ---- Dense algebra ----------------------------------------------------------

// C = alpha·op(A)·op(B) + beta·C in double, with the storage conventions of
// Backend::Gemm.
std::vector<double> NaiveGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                              const Vector& a, int64_t lda, const Vector& b, int64_t ldb,
                              float beta, const Vector& c, int64_t ldc) {
  std::vector<double> out(c.begin(), c.end());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double aip = ta ? a[p * lda + i] : a[i * lda + p];
        const double bpj = tb ? b[j * ldb + p] : b[p * ldb + j];
        s += aip * bpj;
      }
      const double prior = beta == 0.0f ? 0.0 : beta * static_cast<double>(c[i * ldc + j]);
      out[i * ldc + j] = alpha * s + prior;
    }
  }
  return out;
}

TEST(CpuBackend, GemmMatchesANaiveTripleLoopForEveryTransposeAndBeta) {
  auto backend = Cpu();
  const int64_t m = 13, n = 11, k = 9;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (float beta : {0.0f, 1.0f, 0.5f}) {
        const int64_t lda = (ta ? m : k) + 3;
        const int64_t ldb = (tb ? k : n) + 2;
        const int64_t ldc = n + 5;
        const Vector a = RandomVector((ta ? k : m) * lda, 1);
        const Vector b = RandomVector((tb ? n : k) * ldb, 2);
        Vector c = RandomVector(m * ldc, 3);
        if (beta == 0.0f) {
          // beta = 0 ignores C's contents, NaN included, but leaves the
          // columns past n alone.
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j)
              c[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
          }
        }
        const float alpha = 0.75f;
        DeviceArray<float> da = Upload(*backend, a);
        DeviceArray<float> db = Upload(*backend, b);
        DeviceArray<float> dc = Upload(*backend, c);
        backend->Gemm(ta, tb, m, n, k, alpha, da.data(), lda, db.data(), ldb, beta, dc.data(), ldc);
        const Vector got = Download(*backend, dc);
        const std::vector<double> want =
            NaiveGemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < ldc; ++j) {
            const int64_t x = i * ldc + j;
            if (j < n) {
              EXPECT_NEAR(got[x], want[x], 1e-5)
                  << "ta=" << ta << " tb=" << tb << " beta=" << beta << " at " << i << "," << j;
            } else {
              EXPECT_EQ(got[x], c[x]) << "padding column written at " << i << "," << j;
            }
          }
        }
      }
    }
  }
}

TEST(CpuBackend, ElementwiseOperationsAndReductionsFollowTheirFormulas) {
  auto backend = Cpu();
  const Vector a = {1, 2, 3, 4, 5, 6};
  const Vector b = {0.5f, -1, 2, 0, -3, 1};
  DeviceArray<float> da = Upload(*backend, a);
  DeviceArray<float> db = Upload(*backend, b);
  DeviceArray<float> out(*backend, 6);

  backend->Add(da.data(), db.data(), out.data(), 6);
  EXPECT_EQ(Download(*backend, out), (Vector{1.5f, 1, 5, 4, 2, 7}));
  backend->Add(out.data(), db.data(), out.data(), 6);  // out aliases a
  EXPECT_EQ(Download(*backend, out), (Vector{2, 0, 7, 4, -1, 8}));

  backend->Axpy(2.0f, da.data(), out.data(), 6);
  EXPECT_EQ(Download(*backend, out), (Vector{4, 4, 13, 12, 9, 20}));
  backend->Scale(out.data(), 6, 0.5f);
  EXPECT_EQ(Download(*backend, out), (Vector{2, 2, 6.5f, 6, 4.5f, 10}));
  backend->Fill(out.data(), 6, -2.5f);
  EXPECT_EQ(Download(*backend, out), Vector(6, -2.5f));
  backend->CopyOnDevice(da.data(), out.data(), 3 * sizeof(float));
  EXPECT_EQ(Download(*backend, out), (Vector{1, 2, 3, -2.5f, -2.5f, -2.5f}));

  // a as 2 × 3: rows {1,2,3} and {4,5,6}.
  DeviceArray<float> y = Upload(*backend, a);
  DeviceArray<float> bias = Upload(*backend, Vector{10, 20, 30});
  backend->BiasAdd(y.data(), bias.data(), 2, 3);
  EXPECT_EQ(Download(*backend, y), (Vector{11, 22, 33, 14, 25, 36}));
  backend->BiasGradient(da.data(), 2, 3, bias.data());  // += column sums {5, 7, 9}
  EXPECT_EQ(Download(*backend, bias), (Vector{15, 27, 39}));

  EXPECT_DOUBLE_EQ(backend->Sum(da.data(), 6), 21.0);
  EXPECT_DOUBLE_EQ(backend->SumOfSquares(db.data(), 6), 0.25 + 1 + 4 + 0 + 9 + 1);
  backend->Synchronize();
}

TEST(CpuBackend, SumAccumulatesInDouble) {
  auto backend = Cpu();
  // 2^24 + 1 + 1 + ...: float accumulation would stall at 2^24.
  Vector x(1001, 1.0f);
  x[0] = 16777216.0f;
  DeviceArray<float> d = Upload(*backend, x);
  EXPECT_DOUBLE_EQ(backend->Sum(d.data(), 1001), 16777216.0 + 1000.0);
}

// ---- Normalization ----------------------------------------------------------

TEST(CpuBackend, LayerNormForwardNormalizesEachRowAndSavesItsStatistics) {
  auto backend = Cpu();
  const int64_t rows = 3, cols = 8;
  const Vector x = RandomVector(rows * cols, 4, -2.0f, 3.0f);
  DeviceArray<float> dx = Upload(*backend, x);
  DeviceArray<float> gamma = Upload(*backend, Vector(cols, 1.0f));
  DeviceArray<float> beta = Upload(*backend, Vector(cols, 0.0f));
  DeviceArray<float> y(*backend, rows * cols), mean(*backend, rows), rstd(*backend, rows);
  backend->LayerNormForward(dx.data(), gamma.data(), beta.data(), rows, cols, 1e-5f, y.data(),
                            mean.data(), rstd.data());
  const Vector hy = Download(*backend, y);
  const Vector hmean = Download(*backend, mean);
  const Vector hrstd = Download(*backend, rstd);
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0.0, var = 0.0, ymean = 0.0, yvar = 0.0;
    for (int64_t c = 0; c < cols; ++c) mu += x[r * cols + c] / static_cast<double>(cols);
    for (int64_t c = 0; c < cols; ++c) {
      var += std::pow(x[r * cols + c] - mu, 2) / static_cast<double>(cols);
      ymean += hy[r * cols + c] / static_cast<double>(cols);
    }
    for (int64_t c = 0; c < cols; ++c) yvar += std::pow(hy[r * cols + c] - ymean, 2) / cols;
    EXPECT_NEAR(hmean[r], mu, 1e-6);
    EXPECT_NEAR(hrstd[r], 1.0 / std::sqrt(var + 1e-5), 1e-5);
    EXPECT_NEAR(ymean, 0.0, 1e-6);
    EXPECT_NEAR(yvar, var / (var + 1e-5), 1e-5);
  }
}

// Finite-difference steps and tolerances: the forwards run in fp32, so a
// step of 1e-2 keeps the rounding error of a difference quotient (about
// n·6e-8/h) near 1e-4 while the O(h²) truncation error stays below 1e-3 for
// these smooth functions of O(1) inputs.
constexpr float kStep = 1e-2f;

TEST(CpuBackend, LayerNormBackwardMatchesFiniteDifferencesAndAccumulatesParameters) {
  auto backend = Cpu();
  const int64_t rows = 3, cols = 6;
  const Vector x = RandomVector(rows * cols, 5, -2.0f, 2.0f);
  const Vector gamma = RandomVector(cols, 6, 0.5f, 1.5f);
  const Vector beta = RandomVector(cols, 7);
  const Vector w = RandomVector(rows * cols, 8);  // dy: the loss is Σ w·y
  const float eps = 1e-5f;

  auto loss = [&](const Vector& xv, const Vector& gv, const Vector& bv) {
    DeviceArray<float> dx = Upload(*backend, xv), dg = Upload(*backend, gv),
                       db = Upload(*backend, bv);
    DeviceArray<float> y(*backend, rows * cols), mean(*backend, rows), rstd(*backend, rows);
    backend->LayerNormForward(dx.data(), dg.data(), db.data(), rows, cols, eps, y.data(),
                              mean.data(), rstd.data());
    return Dot(Download(*backend, y), w);
  };

  DeviceArray<float> dx = Upload(*backend, x), dg = Upload(*backend, gamma),
                     db = Upload(*backend, beta);
  DeviceArray<float> y(*backend, rows * cols), mean(*backend, rows), rstd(*backend, rows);
  backend->LayerNormForward(dx.data(), dg.data(), db.data(), rows, cols, eps, y.data(), mean.data(),
                            rstd.data());
  DeviceArray<float> dy = Upload(*backend, w);
  DeviceArray<float> grad_x = Upload(*backend, Vector(rows * cols, std::nanf("")));
  DeviceArray<float> grad_gamma = Upload(*backend, Vector(cols, 1.0f));  // += onto 1
  DeviceArray<float> grad_beta = Upload(*backend, Vector(cols, 1.0f));
  backend->LayerNormBackward(dy.data(), dx.data(), dg.data(), mean.data(), rstd.data(), rows, cols,
                             grad_x.data(), grad_gamma.data(), grad_beta.data());

  ExpectGradientsNear(
      Download(*backend, grad_x),
      NumericGradient(x, kStep, [&](const Vector& v) { return loss(v, gamma, beta); }), 2e-3, 1e-2,
      "dx");
  std::vector<double> ng =
      NumericGradient(gamma, kStep, [&](const Vector& v) { return loss(x, v, beta); });
  std::vector<double> nb =
      NumericGradient(beta, kStep, [&](const Vector& v) { return loss(x, gamma, v); });
  for (double& g : ng) g += 1.0;
  for (double& g : nb) g += 1.0;
  ExpectGradientsNear(Download(*backend, grad_gamma), ng, 2e-3, 1e-2, "dgamma");
  ExpectGradientsNear(Download(*backend, grad_beta), nb, 2e-3, 1e-2, "dbeta");
}

TEST(CpuBackend, RmsNormForwardScalesRowsToUnitRootMeanSquare) {
  auto backend = Cpu();
  const int64_t rows = 2, cols = 4;
  const Vector x = {1, -2, 3, -4, 0.5f, 0.5f, 0.5f, 0.5f};
  DeviceArray<float> dx = Upload(*backend, x);
  DeviceArray<float> gamma = Upload(*backend, Vector{1, 2, 1, 1});
  DeviceArray<float> y(*backend, rows * cols), rstd(*backend, rows);
  backend->RmsNormForward(dx.data(), gamma.data(), rows, cols, 0.0f, y.data(), rstd.data());
  const Vector hy = Download(*backend, y);
  const Vector hrstd = Download(*backend, rstd);
  EXPECT_NEAR(hrstd[0], 1.0 / std::sqrt(30.0 / 4.0), 1e-6);  // mean(x²) = 30/4
  EXPECT_NEAR(hrstd[1], 2.0, 1e-6);                          // mean(x²) = 1/4
  EXPECT_NEAR(hy[1], -2.0 * 2.0 / std::sqrt(7.5), 1e-6);
  EXPECT_NEAR(hy[5], 2.0, 1e-6);
}

TEST(CpuBackend, RmsNormBackwardMatchesFiniteDifferencesAndAccumulatesGamma) {
  auto backend = Cpu();
  const int64_t rows = 3, cols = 6;
  const Vector x = RandomVector(rows * cols, 9, -2.0f, 2.0f);
  const Vector gamma = RandomVector(cols, 10, 0.5f, 1.5f);
  const Vector w = RandomVector(rows * cols, 11);
  const float eps = 1e-5f;
  auto loss = [&](const Vector& xv, const Vector& gv) {
    DeviceArray<float> dx = Upload(*backend, xv), dg = Upload(*backend, gv);
    DeviceArray<float> y(*backend, rows * cols), rstd(*backend, rows);
    backend->RmsNormForward(dx.data(), dg.data(), rows, cols, eps, y.data(), rstd.data());
    return Dot(Download(*backend, y), w);
  };
  DeviceArray<float> dx = Upload(*backend, x), dg = Upload(*backend, gamma);
  DeviceArray<float> y(*backend, rows * cols), rstd(*backend, rows);
  backend->RmsNormForward(dx.data(), dg.data(), rows, cols, eps, y.data(), rstd.data());
  DeviceArray<float> dy = Upload(*backend, w);
  DeviceArray<float> grad_x = Upload(*backend, Vector(rows * cols, std::nanf("")));
  DeviceArray<float> grad_gamma = Upload(*backend, Vector(cols, -1.0f));
  backend->RmsNormBackward(dy.data(), dx.data(), dg.data(), rstd.data(), rows, cols, grad_x.data(),
                           grad_gamma.data());
  ExpectGradientsNear(Download(*backend, grad_x),
                      NumericGradient(x, kStep, [&](const Vector& v) { return loss(v, gamma); }),
                      2e-3, 1e-2, "dx");
  std::vector<double> ng =
      NumericGradient(gamma, kStep, [&](const Vector& v) { return loss(x, v); });
  for (double& g : ng) g -= 1.0;
  ExpectGradientsNear(Download(*backend, grad_gamma), ng, 2e-3, 1e-2, "dgamma");
}

// ---- Activations --------------------------------------------------------------

TEST(CpuBackend, GeluIsTheTanhApproximationAndItsBackwardMatchesFiniteDifferences) {
  auto backend = Cpu();
  const Vector x = {-3.0f, -1.0f, -0.1f, 0.0f, 0.3f, 1.0f, 2.5f, 6.0f};
  const int64_t n = static_cast<int64_t>(x.size());
  auto forward = [&](const Vector& xv) {
    DeviceArray<float> dx = Upload(*backend, xv);
    DeviceArray<float> y(*backend, n);
    backend->GeluForward(dx.data(), y.data(), n);
    return Download(*backend, y);
  };
  const Vector y = forward(x);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double want =
        0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    EXPECT_NEAR(y[i], want, 1e-6) << "x = " << v;
  }
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_NEAR(y[7], 6.0f, 1e-6);

  const Vector w = RandomVector(n, 12);
  DeviceArray<float> dx = Upload(*backend, x), dy = Upload(*backend, w);
  DeviceArray<float> grad(*backend, n);
  backend->GeluBackward(dx.data(), dy.data(), grad.data(), n);
  ExpectGradientsNear(
      Download(*backend, grad),
      NumericGradient(x, 1e-3f, [&](const Vector& v) { return Dot(forward(v), w); }), 1e-3, 1e-2,
      "gelu dx");
}

TEST(CpuBackend, SwiGluIsSiluOfTheGateTimesUpAndItsBackwardMatchesFiniteDifferences) {
  auto backend = Cpu();
  const int64_t rows = 3, cols = 4;
  const Vector gate_up = RandomVector(rows * 2 * cols, 13, -3.0f, 3.0f);
  auto forward = [&](const Vector& gu) {
    DeviceArray<float> d = Upload(*backend, gu);
    DeviceArray<float> out(*backend, rows * cols);
    backend->SwiGluForward(d.data(), rows, cols, out.data());
    return Download(*backend, out);
  };
  const Vector out = forward(gate_up);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double g = gate_up[r * 2 * cols + c];
      const double u = gate_up[r * 2 * cols + cols + c];
      EXPECT_NEAR(out[r * cols + c], g / (1.0 + std::exp(-g)) * u, 1e-5);
    }
  }
  const Vector w = RandomVector(rows * cols, 14);
  DeviceArray<float> d = Upload(*backend, gate_up), dout = Upload(*backend, w);
  DeviceArray<float> grad = Upload(*backend, Vector(rows * 2 * cols, std::nanf("")));
  backend->SwiGluBackward(d.data(), dout.data(), rows, cols, grad.data());
  ExpectGradientsNear(
      Download(*backend, grad),
      NumericGradient(gate_up, kStep, [&](const Vector& v) { return Dot(forward(v), w); }), 2e-3,
      1e-2, "dgate_up");
}

// ---- Rotary embedding --------------------------------------------------------------

TEST(CpuBackend, RopeRotatesHalvesByPositionTimesFrequencyAndLeavesOtherColumns) {
  auto backend = Cpu();
  const int64_t sequence = 3, batch = 2, heads = 2, head_dim = 4, row_stride = 11;
  const float theta = 10000.0f;
  const Vector x = RandomVector(sequence * batch * row_stride, 15);
  DeviceArray<float> d = Upload(*backend, x);
  backend->RopeForward(d.data(), sequence, batch, heads, head_dim, row_stride, theta);
  const Vector y = Download(*backend, d);
  for (int64_t r = 0; r < sequence * batch; ++r) {
    const double position = static_cast<double>(r / batch);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < head_dim / 2; ++i) {
        const double angle = position * std::pow(theta, -2.0 * i / head_dim);
        const int64_t lo = r * row_stride + h * head_dim + i;
        const int64_t hi = lo + head_dim / 2;
        EXPECT_NEAR(y[lo], x[lo] * std::cos(angle) - x[hi] * std::sin(angle), 1e-6);
        EXPECT_NEAR(y[hi], x[hi] * std::cos(angle) + x[lo] * std::sin(angle), 1e-6);
      }
    }
    for (int64_t c = heads * head_dim; c < row_stride; ++c) {
      EXPECT_EQ(y[r * row_stride + c], x[r * row_stride + c]) << "column " << c << " touched";
    }
  }
}

TEST(CpuBackend, RopeBackwardUndoesTheForwardAndIsItsTranspose) {
  auto backend = Cpu();
  const int64_t sequence = 5, batch = 2, heads = 3, head_dim = 8, row_stride = 30;
  const int64_t n = sequence * batch * row_stride;
  const Vector x = RandomVector(n, 16);
  const Vector g = RandomVector(n, 17);
  DeviceArray<float> dx = Upload(*backend, x);
  backend->RopeForward(dx.data(), sequence, batch, heads, head_dim, row_stride, 500000.0f);
  const Vector rx = Download(*backend, dx);
  backend->RopeBackward(dx.data(), sequence, batch, heads, head_dim, row_stride, 500000.0f);
  const Vector back = Download(*backend, dx);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(back[i], x[i], 1e-6) << i;

  // RoPE is linear, so its finite differences are exact: the backward is
  // the gradient iff <g, R·x> = <Rᵀ·g, x>.
  DeviceArray<float> dg = Upload(*backend, g);
  backend->RopeBackward(dg.data(), sequence, batch, heads, head_dim, row_stride, 500000.0f);
  EXPECT_NEAR(Dot(g, rx), Dot(Download(*backend, dg), x), 1e-4);
}

// ---- Attention ----------------------------------------------------------------------

// A fused QKV matrix [rows, row_stride] with q, k, v at column offsets 0,
// heads·d and (heads + kv_heads)·d, and padding columns after them.
struct Qkv {
  AttentionShape shape;
  int64_t k_offset() const { return shape.heads * shape.head_dim; }
  int64_t v_offset() const { return (shape.heads + shape.kv_heads) * shape.head_dim; }
  int64_t elements() const { return shape.rows() * shape.row_stride; }
  int64_t out_elements() const { return shape.rows() * shape.heads * shape.head_dim; }
};

Qkv GqaShape() {
  Qkv qkv;
  qkv.shape.batch = 2;
  qkv.shape.sequence = 4;
  qkv.shape.heads = 4;
  qkv.shape.kv_heads = 2;
  qkv.shape.head_dim = 3;
  qkv.shape.row_stride = (4 + 2 + 2) * 3 + 5;  // 5 padding columns
  return qkv;
}

void RunAttention(Backend& backend, const Qkv& qkv, const Vector& host, Vector* out,
                  Vector* probs) {
  DeviceArray<float> d = Upload(backend, host);
  DeviceArray<float> o(backend, qkv.out_elements());
  DeviceArray<float> p(backend, qkv.shape.probs_elements());
  backend.AttentionForward(qkv.shape, d.data(), d.data() + qkv.k_offset(),
                           d.data() + qkv.v_offset(), o.data(), p.data());
  *out = Download(backend, o);
  if (probs != nullptr) *probs = Download(backend, p);
}

TEST(CpuBackend, AttentionForwardMatchesANaiveCausalGroupedQueryReference) {
  auto backend = Cpu();
  const Qkv qkv = GqaShape();
  const AttentionShape& s = qkv.shape;
  const Vector x = RandomVector(qkv.elements(), 18, -2.0f, 2.0f);
  Vector out, probs;
  RunAttention(*backend, qkv, x, &out, &probs);

  const int64_t d = s.head_dim;
  const int64_t out_cols = s.heads * d;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / (s.heads / s.kv_heads);
      for (int64_t i = 0; i < s.sequence; ++i) {
        const int64_t qrow = (i * s.batch + b) * s.row_stride;
        std::vector<double> score(s.sequence, 0.0);
        double max_score = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          const int64_t krow = (j * s.batch + b) * s.row_stride;
          for (int64_t c = 0; c < d; ++c) {
            score[j] += static_cast<double>(x[qrow + h * d + c]) *
                        x[krow + qkv.k_offset() + g * d + c] / std::sqrt(static_cast<double>(d));
          }
          max_score = std::max(max_score, score[j]);
        }
        double z = 0.0;
        for (int64_t j = 0; j <= i; ++j) z += std::exp(score[j] - max_score);
        const float* prow = probs.data() + ((b * s.heads + h) * s.sequence + i) * s.sequence;
        for (int64_t j = 0; j < s.sequence; ++j) {
          const double p = j <= i ? std::exp(score[j] - max_score) / z : 0.0;
          EXPECT_NEAR(prow[j], p, 1e-6) << "b" << b << " h" << h << " i" << i << " j" << j;
        }
        for (int64_t c = 0; c < d; ++c) {
          double o = 0.0;
          for (int64_t j = 0; j <= i; ++j) {
            const int64_t vrow = (j * s.batch + b) * s.row_stride;
            o += std::exp(score[j] - max_score) / z * x[vrow + qkv.v_offset() + g * d + c];
          }
          EXPECT_NEAR(out[(i * s.batch + b) * out_cols + h * d + c], o, 1e-5);
        }
      }
    }
  }
}

TEST(CpuBackend, AttentionIsCausalAFutureKeyOrValueLeavesEarlierOutputsUnchanged) {
  auto backend = Cpu();
  const Qkv qkv = GqaShape();
  const AttentionShape& s = qkv.shape;
  const Vector x = RandomVector(qkv.elements(), 19);
  Vector before, after;
  RunAttention(*backend, qkv, x, &before, nullptr);
  // Change position 2's keys and values (both samples).
  Vector changed = x;
  const int64_t future = 2;
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t row = (future * s.batch + b) * s.row_stride;
    for (int64_t c = qkv.k_offset(); c < qkv.v_offset() + s.kv_heads * s.head_dim; ++c) {
      changed[row + c] += 1.5f;
    }
  }
  RunAttention(*backend, qkv, changed, &after, nullptr);
  const int64_t out_cols = s.heads * s.head_dim;
  for (int64_t r = 0; r < future * s.batch; ++r) {
    for (int64_t c = 0; c < out_cols; ++c) {
      EXPECT_EQ(after[r * out_cols + c], before[r * out_cols + c]) << "row " << r;
    }
  }
  bool later_changed = false;
  for (int64_t r = future * s.batch; r < s.rows(); ++r) {
    for (int64_t c = 0; c < out_cols; ++c) {
      later_changed |= after[r * out_cols + c] != before[r * out_cols + c];
    }
  }
  EXPECT_TRUE(later_changed);
}

TEST(CpuBackend, AttentionBackwardMatchesFiniteDifferencesWithGroupedQueries) {
  auto backend = Cpu();
  const Qkv qkv = GqaShape();
  const AttentionShape& s = qkv.shape;
  const Vector x = RandomVector(qkv.elements(), 20);
  const Vector w = RandomVector(qkv.out_elements(), 21);
  auto loss = [&](const Vector& v) {
    Vector out;
    RunAttention(*backend, qkv, v, &out, nullptr);
    return Dot(out, w);
  };

  DeviceArray<float> d = Upload(*backend, x);
  DeviceArray<float> out(*backend, qkv.out_elements());
  DeviceArray<float> probs(*backend, s.probs_elements());
  backend->AttentionForward(s, d.data(), d.data() + qkv.k_offset(), d.data() + qkv.v_offset(),
                            out.data(), probs.data());
  DeviceArray<float> dout = Upload(*backend, w);
  // The q, k and v blocks are overwritten; the padding is not written.
  DeviceArray<float> grad = Upload(*backend, Vector(qkv.elements(), 7.0f));
  backend->AttentionBackward(s, d.data(), d.data() + qkv.k_offset(), d.data() + qkv.v_offset(),
                             probs.data(), dout.data(), grad.data(), grad.data() + qkv.k_offset(),
                             grad.data() + qkv.v_offset());
  Vector analytic = Download(*backend, grad);
  const int64_t used = qkv.v_offset() + s.kv_heads * s.head_dim;
  for (int64_t r = 0; r < s.rows(); ++r) {
    for (int64_t c = used; c < s.row_stride; ++c) {
      EXPECT_EQ(analytic[r * s.row_stride + c], 7.0f);
      analytic[r * s.row_stride + c] = 0.0f;  // and the loss does not depend on it
    }
  }
  ExpectGradientsNear(analytic, NumericGradient(x, kStep, loss), 2e-3, 1e-2, "dqkv");
}

// ---- Embedding and loss -------------------------------------------------------------

TEST(CpuBackend, EmbeddingLooksUpThisRanksVocabularyRowsAndScattersGradients) {
  auto backend = Cpu();
  const int64_t hidden = 3, vocab_start = 4, vocab_local = 3;  // ids 4, 5, 6
  const Vector table = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<int32_t> ids = {5, 0, 6, 5, 7};
  DeviceArray<float> dtable = Upload(*backend, table);
  DeviceArray<int32_t> dids = Upload(*backend, ids);
  DeviceArray<float> out = Upload(*backend, Vector(5 * hidden, std::nanf("")));
  backend->EmbeddingForward(dids.data(), 5, dtable.data(), vocab_start, vocab_local, hidden,
                            out.data());
  EXPECT_EQ(Download(*backend, out), (Vector{4, 5, 6, 0, 0, 0, 7, 8, 9, 4, 5, 6, 0, 0, 0}));

  // The lookup is linear in the table: its gradient is the scatter-add.
  const Vector dout = RandomVector(5 * hidden, 22);
  DeviceArray<float> ddout = Upload(*backend, dout);
  DeviceArray<float> grad = Upload(*backend, Vector(9, 1.0f));
  backend->EmbeddingBackward(dids.data(), 5, ddout.data(), vocab_start, vocab_local, hidden,
                             grad.data());
  const Vector g = Download(*backend, grad);
  for (int64_t c = 0; c < hidden; ++c) {
    EXPECT_FLOAT_EQ(g[0 * hidden + c], 1.0f);  // id 4: unused
    EXPECT_FLOAT_EQ(g[1 * hidden + c], 1.0f + dout[0 * hidden + c] + dout[3 * hidden + c]);
    EXPECT_FLOAT_EQ(g[2 * hidden + c], 1.0f + dout[2 * hidden + c]);
  }
}

struct CrossEntropyResult {
  Vector row_max, sum_exp, target_logit, loss, dlogits;
};

CrossEntropyResult RunCrossEntropy(Backend& backend, const Vector& logits,
                                   const std::vector<int32_t>& targets, int64_t vocab,
                                   float scale) {
  const int64_t rows = static_cast<int64_t>(targets.size());
  DeviceArray<float> dl = Upload(backend, logits);
  DeviceArray<int32_t> dt = Upload(backend, targets);
  DeviceArray<float> max(backend, rows), sum(backend, rows), target(backend, rows),
      loss(backend, rows), grad(backend, rows * vocab);
  backend.LogitsRowMax(dl.data(), rows, vocab, max.data());
  backend.CrossEntropyPartials(dl.data(), rows, vocab, max.data(), dt.data(), 0, sum.data(),
                               target.data());
  backend.CrossEntropyLoss(max.data(), sum.data(), target.data(), rows, loss.data());
  backend.CrossEntropyBackward(dl.data(), rows, vocab, max.data(), sum.data(), dt.data(), 0, scale,
                               grad.data());
  return {Download(backend, max), Download(backend, sum), Download(backend, target),
          Download(backend, loss), Download(backend, grad)};
}

TEST(CpuBackend, CrossEntropyIsLogSumExpMinusTheTargetLogit) {
  auto backend = Cpu();
  const int64_t rows = 4, vocab = 10;
  Vector logits = RandomVector(rows * vocab, 23, -3.0f, 3.0f);
  logits[5] = 80.0f;  // exp(80) overflows fp32 without the max subtracted
  const std::vector<int32_t> targets = {5, 0, 9, 3};
  const CrossEntropyResult r = RunCrossEntropy(*backend, logits, targets, vocab, 1.0f);
  for (int64_t i = 0; i < rows; ++i) {
    double max = -1e300, z = 0.0;
    for (int64_t c = 0; c < vocab; ++c) max = std::max<double>(max, logits[i * vocab + c]);
    for (int64_t c = 0; c < vocab; ++c) z += std::exp(logits[i * vocab + c] - max);
    EXPECT_EQ(r.row_max[i], static_cast<float>(max));
    EXPECT_NEAR(r.loss[i], std::log(z) + max - logits[i * vocab + targets[i]], 1e-5);
  }
}

TEST(CpuBackend, CrossEntropyBackwardMatchesFiniteDifferences) {
  auto backend = Cpu();
  const int64_t rows = 3, vocab = 7;
  const Vector logits = RandomVector(rows * vocab, 24, -2.0f, 2.0f);
  const std::vector<int32_t> targets = {6, 0, 2};
  const float scale = 1.0f / rows;  // the mean loss
  const CrossEntropyResult r = RunCrossEntropy(*backend, logits, targets, vocab, scale);
  auto mean_loss = [&](const Vector& v) {
    const Vector loss = RunCrossEntropy(*backend, v, targets, vocab, scale).loss;
    return Dot(loss, Vector(rows, scale));
  };
  ExpectGradientsNear(r.dlogits, NumericGradient(logits, kStep, mean_loss), 1e-3, 1e-2, "dlogits");
}

TEST(CpuBackend, CrossEntropySplitOverTwoVocabularyHalvesEqualsTheUnsplitOne) {
  auto backend = Cpu();
  const int64_t rows = 4, vocab = 10, half = 5;
  const Vector logits = RandomVector(rows * vocab, 25, -4.0f, 4.0f);
  const std::vector<int32_t> targets = {1, 7, 4, 5};  // both halves' ids
  const float scale = 0.25f;
  const CrossEntropyResult whole = RunCrossEntropy(*backend, logits, targets, vocab, scale);

  // Each "rank" holds columns [start, start + half) as its own rows × half.
  DeviceArray<int32_t> dt = Upload(*backend, targets);
  std::vector<DeviceArray<float>> part_logits, part_max;
  for (int64_t part = 0; part < 2; ++part) {
    Vector cols(rows * half);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t c = 0; c < half; ++c) cols[i * half + c] = logits[i * vocab + part * half + c];
    }
    part_logits.push_back(Upload(*backend, cols));
    part_max.emplace_back(*backend, rows);
    backend->LogitsRowMax(part_logits[part].data(), rows, half, part_max[part].data());
  }
  // The all-reduce (max) by hand.
  Vector max0 = Download(*backend, part_max[0]), max1 = Download(*backend, part_max[1]);
  Vector max(rows);
  for (int64_t i = 0; i < rows; ++i) max[i] = std::max(max0[i], max1[i]);
  DeviceArray<float> dmax = Upload(*backend, max);
  Vector sum(rows, 0.0f), target(rows, 0.0f);
  for (int64_t part = 0; part < 2; ++part) {
    DeviceArray<float> s(*backend, rows), t(*backend, rows);
    backend->CrossEntropyPartials(part_logits[part].data(), rows, half, dmax.data(), dt.data(),
                                  part * half, s.data(), t.data());
    // The all-reduce (sum) by hand.
    const Vector hs = Download(*backend, s), ht = Download(*backend, t);
    for (int64_t i = 0; i < rows; ++i) {
      sum[i] += hs[i];
      target[i] += ht[i];
    }
  }
  DeviceArray<float> dsum = Upload(*backend, sum), dtarget = Upload(*backend, target);
  DeviceArray<float> loss(*backend, rows);
  backend->CrossEntropyLoss(dmax.data(), dsum.data(), dtarget.data(), rows, loss.data());
  const Vector split_loss = Download(*backend, loss);
  for (int64_t i = 0; i < rows; ++i) {
    EXPECT_EQ(max[i], whole.row_max[i]);
    EXPECT_NEAR(split_loss[i], whole.loss[i], 1e-5) << "row " << i;
  }
  for (int64_t part = 0; part < 2; ++part) {
    DeviceArray<float> grad(*backend, rows * half);
    backend->CrossEntropyBackward(part_logits[part].data(), rows, half, dmax.data(), dsum.data(),
                                  dt.data(), part * half, scale, grad.data());
    const Vector g = Download(*backend, grad);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t c = 0; c < half; ++c) {
        EXPECT_NEAR(g[i * half + c], whole.dlogits[i * vocab + part * half + c], 1e-6);
      }
    }
  }
}

// ---- Optimizer ----------------------------------------------------------------------

TEST(CpuBackend, AdamStepMatchesAHandComputedTwoStepAdamWUpdate) {
  auto backend = Cpu();
  AdamHyperparameters hyper;
  hyper.learning_rate = 0.1f;
  hyper.beta1 = 0.9f;
  hyper.beta2 = 0.999f;
  hyper.epsilon = 1e-8f;
  hyper.weight_decay = 0.01f;
  DeviceArray<float> param = Upload(*backend, Vector{1.0f, -2.0f});
  DeviceArray<float> m = Upload(*backend, Vector{0.0f, 0.0f});
  DeviceArray<float> v = Upload(*backend, Vector{0.0f, 0.0f});

  // Step 1, g = 0.5: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25,
  //   p = 1 − 0.1·(0.5/(0.5 + 1e-8) + 0.01·1) = 0.899000002.
  // Parameter 2 has g = 0: m = v = 0, only weight decay: p = −2·(1 − 0.001).
  DeviceArray<float> grad = Upload(*backend, Vector{0.5f, 0.0f});
  backend->AdamStep(param.data(), grad.data(), m.data(), v.data(), 2, hyper, 1);
  Vector p = Download(*backend, param);
  EXPECT_NEAR(p[0], 0.899000002, 1e-6);
  EXPECT_NEAR(p[1], -1.998, 1e-6);
  // The moments to fp32 precision of the hyperparameters: 1 − 0.999f is
  // 0.001 only to a relative 1.3e-5.
  EXPECT_NEAR(Download(*backend, m)[0], 0.05, 1e-7);
  EXPECT_NEAR(Download(*backend, v)[0], 0.00025, 1e-8);

  // Step 2, g = −0.25: m = 0.045 − 0.025 = 0.02, v = 0.00024975 + 0.0000625
  //   = 0.00031225, m̂ = 0.02/0.19, v̂ = 0.00031225/0.001999,
  //   p = 0.899000002 − 0.1·(m̂/(√v̂ + 1e-8) + 0.01·0.899000002) = 0.8714672987.
  backend->Fill(grad.data(), 1, -0.25f);
  backend->AdamStep(param.data(), grad.data(), m.data(), v.data(), 2, hyper, 2);
  p = Download(*backend, param);
  EXPECT_NEAR(p[0], 0.8714672987, 1e-6);
  EXPECT_NEAR(p[1], -1.998 * 0.999, 1e-6);
  EXPECT_NEAR(Download(*backend, m)[0], 0.02, 1e-7);
  EXPECT_NEAR(Download(*backend, v)[0], 0.00031225, 1e-8);
}

// ---- Memory and the factory ---------------------------------------------------------

TEST(CpuBackendMemory, AccountsAllocationsFreesAndThePeak) {
  auto backend = Cpu();
  EXPECT_EQ(backend->allocated_bytes(), 0);
  EXPECT_EQ(backend->peak_allocated_bytes(), 0);
  {
    DeviceArray<float> a(*backend, 100);
    DeviceArray<int32_t> b(*backend, 10);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 256, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 256, 0u);
    EXPECT_EQ(backend->allocated_bytes(), 440);
    EXPECT_EQ(backend->peak_allocated_bytes(), 440);
    a.Reset();
    EXPECT_EQ(backend->allocated_bytes(), 40);
    EXPECT_EQ(backend->peak_allocated_bytes(), 440);
    backend->ResetPeak();
    EXPECT_EQ(backend->peak_allocated_bytes(), 40);
    DeviceArray<int32_t> moved = std::move(b);  // a move allocates nothing
    EXPECT_EQ(backend->allocated_bytes(), 40);
    DeviceArray<float> c(*backend, 25);
    EXPECT_EQ(backend->peak_allocated_bytes(), 140);
    DeviceArray<float> empty(*backend, 0);
    EXPECT_EQ(backend->allocated_bytes(), 140);
  }
  EXPECT_EQ(backend->allocated_bytes(), 0);
  EXPECT_EQ(backend->peak_allocated_bytes(), 140);

  void* raw = backend->Allocate(1000);
  EXPECT_EQ(backend->allocated_bytes(), 1000);
  backend->Free(raw, 1000);
  EXPECT_EQ(backend->allocated_bytes(), 0);
  EXPECT_EQ(backend->peak_allocated_bytes(), 1000);
}

TEST(CpuBackendFactory, NamesTheBackendKindsAndParsesThemBack) {
  for (BackendKind kind : {BackendKind::kCpu, BackendKind::kCuda}) {
    Result<BackendKind> parsed = ParseBackendKind(BackendKindName(kind));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_EQ(BackendKindName(BackendKind::kCpu), "cpu");
  EXPECT_EQ(BackendKindName(BackendKind::kCuda), "cuda");
  Result<BackendKind> bad = ParseBackendKind("tpu");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "unknown backend 'tpu': expected 'cpu' or 'cuda'");
}

TEST(CpuBackendFactory, MakesACpuBackendNamingTheCpuAndEigen) {
  Result<std::unique_ptr<Backend>> backend = MakeBackend(BackendKind::kCpu, 0);
  ASSERT_TRUE(backend.ok());
  EXPECT_EQ((*backend)->kind(), BackendKind::kCpu);
  const std::string name = (*backend)->device_name();
  EXPECT_NE(name.find(" (1 thread, Eigen 3."), std::string::npos) << name;
  EXPECT_FALSE(name.starts_with(" ")) << name;
}

TEST(CpuBackendFactory, CudaBackendIsAnErrorWithAReasonWhereThereIsNoGpu) {
  Result<std::unique_ptr<Backend>> backend = MakeBackend(BackendKind::kCuda, 0);
  if (backend.ok()) GTEST_SKIP() << "a GPU is visible here: " << (*backend)->device_name();
  EXPECT_FALSE(backend.status().message().empty());
}

}  // namespace
}  // namespace orrery::exec
