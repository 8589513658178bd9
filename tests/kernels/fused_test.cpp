// kernels::silu_mul, rope, token_cross_entropy and add_rms_norm against float64 references of their formulas,
// on the strided views the model hands them (slices of packed GEMM outputs, transposed heads, the
// causal shift of the logits). On the CPU (and on CUDA without compiled kernels) they are their ATen
// fallbacks, which must also equal those expressions exactly; the *Cuda tests run the CUDA kernels
// where this build has them (kernels::compiled()) and a GPU is present, else they skip.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/fused.h"

namespace secateur::kernels {
namespace {

constexpr int64_t kIgnore = -100;

// In the test's own body: GTEST_SKIP returns from the function it is written in.
#define REQUIRE_CUDA()                                                  \
  do {                                                                  \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (false)

// Every |actual − expected| ≤ atol + rtol·|expected|, expected in float64.
void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, double rtol, double atol) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const torch::Tensor a = actual.detach().to(torch::kCPU, torch::kDouble);
  const torch::Tensor e = expected.detach().to(torch::kCPU, torch::kDouble);
  ASSERT_FALSE(a.isnan().any().item<bool>()) << "NaN in the result";
  const torch::Tensor excess = (a - e).abs() - (e.abs() * rtol + atol);
  const double worst = excess.max().item<double>();
  EXPECT_LE(worst, 0.0) << "max |a − e| = " << (a - e).abs().max().item<double>() << " beyond atol " << atol
                        << " + rtol " << rtol << "·|e|";
}

double relative_error(double actual, double expected) { return std::abs(actual - expected) / std::abs(expected); }

// Tolerances of one result in `dtype` against float64: fp32 to 1e-5, fp16/bf16 to their rounding.
double rtol_of(torch::ScalarType dtype) { return dtype == torch::kFloat ? 1e-5 : 1e-2; }
double atol_of(torch::ScalarType dtype) { return dtype == torch::kFloat ? 1e-6 : 1e-2; }

torch::TensorOptions on(torch::Device device, torch::ScalarType dtype) {
  return torch::TensorOptions().device(device).dtype(dtype);
}

// ---- silu_mul -------------------------------------------------------------------------------------

torch::Tensor silu_mul_reference(const torch::Tensor& gate, const torch::Tensor& up) {
  const torch::Tensor g = gate.detach().to(torch::kCPU, torch::kDouble);
  return g / (1 + torch::exp(-g)) * up.detach().to(torch::kCPU, torch::kDouble);
}

// gate and up as the two halves of a packed gate/up GEMM output [B, T, 2F], sliced along the last dim.
struct GateUp {
  torch::Tensor gate, up;
};
GateUp packed_gate_up(int64_t B, int64_t T, int64_t F, torch::Device device, torch::ScalarType dtype) {
  torch::manual_seed(1);
  const torch::Tensor packed = (torch::randn({B, T, 2 * F}) * 3).to(on(device, dtype));
  return {packed.narrow(-1, 0, F), packed.narrow(-1, F, F)};
}

void check_silu_mul_packed(torch::Device device, torch::ScalarType dtype, int64_t F) {
  const GateUp x = packed_gate_up(3, 5, F, device, dtype);
  ASSERT_FALSE(x.gate.is_contiguous());
  const torch::Tensor out = silu_mul(x.gate, x.up);
  EXPECT_EQ(out.scalar_type(), dtype);
  EXPECT_EQ(out.device().type(), device.type());
  expect_close(out, silu_mul_reference(x.gate, x.up), rtol_of(dtype), atol_of(dtype));
}

TEST(FusedSiluMul, FallbackIsTheAtenExpression) {
  const GateUp x = packed_gate_up(2, 4, 24, torch::kCPU, torch::kFloat);
  EXPECT_TRUE(silu_mul(x.gate, x.up).equal(torch::silu(x.gate) * x.up));
  const GateUp b = packed_gate_up(2, 4, 24, torch::kCPU, torch::kBFloat16);
  EXPECT_TRUE(silu_mul(b.gate, b.up).equal(torch::silu(b.gate) * b.up));
}

// fp16 only on CUDA: LibTorch 1.13's CPU silu and addcmul take no fp16.
TEST(FusedSiluMul, CpuMatchesReferenceOnPackedSlices) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) check_silu_mul_packed(torch::kCPU, dtype, 24);
}

TEST(FusedSiluMul, CpuGradientsFlowThroughTheFallback) {
  torch::manual_seed(2);
  const torch::Tensor g = torch::randn({4, 6}, torch::requires_grad());
  const torch::Tensor u = torch::randn({4, 6}, torch::requires_grad());
  EXPECT_FALSE(launches({g, u}));
  silu_mul(g, u).sum().backward();
  const torch::Tensor g2 = g.detach().clone().requires_grad_(), u2 = u.detach().clone().requires_grad_();
  (torch::silu(g2) * u2).sum().backward();
  EXPECT_TRUE(g.grad().allclose(g2.grad()));
  EXPECT_TRUE(u.grad().allclose(u2.grad()));
}

TEST(FusedSiluMul, RejectsMismatchedInputs) {
  EXPECT_THROW(silu_mul(torch::zeros({2, 3}), torch::zeros({2, 4})), c10::Error);
  EXPECT_THROW(silu_mul(torch::zeros({2, 3}), torch::zeros({2, 3}, torch::kDouble)), c10::Error);
  EXPECT_THROW(silu_mul(torch::zeros({}), torch::zeros({})), c10::Error);
}

TEST(FusedSiluMul, CudaMatchesReferenceOnPackedSlices) {
  REQUIRE_CUDA();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_silu_mul_packed(torch::kCUDA, dtype, 64);  // 16-byte accesses
    check_silu_mul_packed(torch::kCUDA, dtype, 13);  // odd width: one element at a time
  }
}

TEST(FusedSiluMul, CudaRowsBeyondGridLimits) {
  REQUIRE_CUDA();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    torch::manual_seed(3);
    const torch::Tensor packed = torch::randn({70000, 16}).to(on(torch::kCUDA, dtype));
    const torch::Tensor gate = packed.narrow(1, 0, 8), up = packed.narrow(1, 8, 8);
    const torch::Tensor out = silu_mul(gate, up);
    expect_close(out, silu_mul_reference(gate, up), rtol_of(dtype), atol_of(dtype));
    // The last rows too (a grid over rows capped at 65535 would leave them unwritten).
    expect_close(out.narrow(0, 69990, 10), silu_mul_reference(gate, up).narrow(0, 69990, 10), rtol_of(dtype),
                 atol_of(dtype));
  }
}

TEST(FusedSiluMul, CudaUncollapsibleAndMisalignedInputs) {
  REQUIRE_CUDA();
  torch::manual_seed(4);
  // A transposed gate (leading dims do not collapse into rows) and an up starting one element in.
  const torch::Tensor gate = torch::randn({16, 8}, on(torch::kCUDA, torch::kBFloat16)).t();
  const torch::Tensor up = torch::randn({8, 17}, on(torch::kCUDA, torch::kBFloat16)).narrow(1, 1, 16);
  expect_close(silu_mul(gate, up), silu_mul_reference(gate, up), 1e-2, 1e-2);
  expect_close(silu_mul(gate.narrow(0, 0, 1), up.narrow(0, 0, 1)),
               silu_mul_reference(gate.narrow(0, 0, 1), up.narrow(0, 0, 1)), 1e-2, 1e-2);
  // Empty input: nothing launched.
  EXPECT_EQ(silu_mul(gate.narrow(0, 0, 0), up.narrow(0, 0, 0)).numel(), 0);
}

TEST(FusedSiluMul, CudaAgreesWithAtenWithinOneRounding) {
  REQUIRE_CUDA();
  const GateUp x = packed_gate_up(4, 16, 128, torch::kCUDA, torch::kBFloat16);
  const torch::Tensor ours = silu_mul(x.gate, x.up).to(torch::kFloat);
  const torch::Tensor aten = (torch::silu(x.gate) * x.up).to(torch::kFloat);
  // Two roundings (ATen) against one (kernel): at most about one bf16 ulp apart.
  EXPECT_TRUE(ours.allclose(aten, 1e-2, 1e-2));
}

TEST(FusedSiluMul, CudaWithGradientsUsesAutograd) {
  REQUIRE_CUDA();
  torch::manual_seed(5);
  const torch::Tensor g = torch::randn({4, 8}, on(torch::kCUDA, torch::kFloat)).requires_grad_();
  const torch::Tensor u = torch::randn({4, 8}, on(torch::kCUDA, torch::kFloat)).requires_grad_();
  EXPECT_FALSE(launches({g, u}));
  silu_mul(g, u).sum().backward();
  ASSERT_TRUE(g.grad().defined());
  ASSERT_TRUE(u.grad().defined());
  const torch::Tensor gd = g.detach().to(torch::kDouble), ud = u.detach().to(torch::kDouble);
  const torch::Tensor sig = torch::sigmoid(gd);
  expect_close(u.grad(), gd * sig, 1e-5, 1e-6);
  expect_close(g.grad(), ud * sig * (1 + gd * (1 - sig)), 1e-5, 1e-6);
}

// ---- rope -----------------------------------------------------------------------------------------

struct Tables {
  torch::Tensor cos, sin, sin_signed;  // float64 [T, D]
};

Tables tables(int64_t T, int64_t D) {
  const torch::Tensor inv_freq = torch::pow(10000.0, -torch::arange(0, D, 2, torch::kDouble) / D);
  const torch::Tensor freqs = torch::arange(T, torch::kDouble).unsqueeze(1) * inv_freq.unsqueeze(0);
  const torch::Tensor angles = torch::cat({freqs, freqs}, -1);
  const torch::Tensor sin = angles.sin();
  const int64_t half = D / 2;
  return {angles.cos(), sin, torch::cat({-sin.narrow(1, 0, half), sin.narrow(1, half, half)}, 1)};
}

// HF's formula in float64 from x [B, T, H, D] and the unsigned tables (given in `table_dtype`):
// x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x₂, x₁).
torch::Tensor rope_reference(const torch::Tensor& x_bthd, const Tables& t, torch::ScalarType table_dtype) {
  const torch::Tensor x = x_bthd.detach().to(torch::kCPU, torch::kDouble);
  const torch::Tensor cos = t.cos.to(table_dtype).to(torch::kDouble).unsqueeze(1);
  const torch::Tensor sin = t.sin.to(table_dtype).to(torch::kDouble).unsqueeze(1);
  const int64_t half = x.size(3) / 2;
  const torch::Tensor rotated = torch::cat({-x.narrow(3, half, half), x.narrow(3, 0, half)}, 3);
  return x * cos + rotated * sin;
}

// q and k as the model makes them: views [B, T, H, D] of a packed q/k/v GEMM output [B, T, (H+2K)·D].
struct Qk {
  torch::Tensor q, k;
};
Qk packed_qk(int64_t B, int64_t T, int64_t H, int64_t K, int64_t D, torch::Device device, torch::ScalarType dtype) {
  torch::manual_seed(6);
  const torch::Tensor packed = torch::randn({B, T, (H + 2 * K) * D}).to(on(device, dtype));
  return {packed.narrow(2, 0, H * D).view({B, T, H, D}), packed.narrow(2, H * D, K * D).view({B, T, K, D})};
}

void check_rope(torch::Device device, torch::ScalarType dtype, torch::ScalarType table_dtype, int64_t D) {
  const int64_t B = 2, T = 7, H = 4, K = 2;
  const Qk x = packed_qk(B, T, H, K, D, device, dtype);
  const Tables t = tables(T, D);
  const torch::Tensor cos = t.cos.to(on(device, table_dtype)), sin_signed = t.sin_signed.to(on(device, table_dtype));
  for (const torch::Tensor& heads : {x.q, x.k}) {
    ASSERT_FALSE(heads.is_contiguous());
    const torch::Tensor out = rope(heads, cos, sin_signed);
    EXPECT_EQ(out.scalar_type(), dtype);
    EXPECT_EQ(out.sizes(), heads.sizes());
    if (launches({heads, cos, sin_signed})) {
      EXPECT_TRUE(out.is_contiguous());
    }
    expect_close(out, rope_reference(heads, t, table_dtype), rtol_of(dtype), atol_of(dtype));
  }
  // A transposed [B, H, T, D] tensor seen as [B, T, H, D], and the result transposed back.
  torch::manual_seed(7);
  const torch::Tensor bhtd = torch::randn({B, H, T, D}).to(on(device, dtype));
  const torch::Tensor out = rope(bhtd.transpose(1, 2), cos, sin_signed).transpose(1, 2);
  expect_close(out, rope_reference(bhtd.transpose(1, 2), t, table_dtype).transpose(1, 2), rtol_of(dtype),
               atol_of(dtype));
}

TEST(FusedRope, FallbackIsTheAtenExpression) {
  const Qk x = packed_qk(2, 5, 4, 2, 16, torch::kCPU, torch::kBFloat16);
  const Tables t = tables(5, 16);
  const torch::Tensor cos = t.cos.to(torch::kBFloat16), sin_signed = t.sin_signed.to(torch::kBFloat16);
  // model::apply_rope's passes on [B, H, T, D]: x·cos, then + swap_halves(x)·sin_signed.
  const torch::Tensor bhtd = x.q.transpose(1, 2);
  torch::Tensor expected = bhtd * cos;
  expected.addcmul_(torch::cat({bhtd.narrow(3, 8, 8), bhtd.narrow(3, 0, 8)}, 3), sin_signed);
  EXPECT_TRUE(rope(x.q, cos, sin_signed).transpose(1, 2).equal(expected));
}

TEST(FusedRope, CpuMatchesHfFormula) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_rope(torch::kCPU, dtype, dtype, 16);
    check_rope(torch::kCPU, dtype, torch::kFloat, 16);
  }
}

TEST(FusedRope, CpuGradientsFlowThroughTheFallback) {
  const Tables t = tables(5, 8);
  torch::manual_seed(8);
  const torch::Tensor x = torch::randn({2, 5, 3, 8}, torch::requires_grad());
  const torch::Tensor w = torch::randn({2, 5, 3, 8});
  (rope(x, t.cos.to(torch::kFloat), t.sin_signed.to(torch::kFloat)) * w).sum().backward();
  // d/dx of Σ w·(x·cos + rotate_half(x)·sin) = w·cos + rotate_halfᵀ(w·sin), rotate_halfᵀ(y) = cat(y₂, −y₁).
  const torch::Tensor ws = w.to(torch::kDouble) * t.sin.unsqueeze(1);
  const torch::Tensor expected =
      w.to(torch::kDouble) * t.cos.unsqueeze(1) + torch::cat({ws.narrow(3, 4, 4), -ws.narrow(3, 0, 4)}, 3);
  expect_close(x.grad(), expected, 1e-5, 1e-6);
}

TEST(FusedRope, RejectsBadShapes) {
  const Tables t = tables(5, 8);
  const torch::Tensor cos = t.cos.to(torch::kFloat), sin = t.sin_signed.to(torch::kFloat);
  EXPECT_THROW(rope(torch::zeros({2, 5, 8}), cos, sin), c10::Error);                        // not 4-D
  EXPECT_THROW(rope(torch::zeros({2, 6, 3, 8}), cos, sin), c10::Error);                     // T ≠ table rows
  EXPECT_THROW(rope(torch::zeros({2, 5, 3, 7}), cos.narrow(1, 0, 7), sin.narrow(1, 0, 7)), c10::Error);  // odd D
  EXPECT_THROW(rope(torch::zeros({2, 5, 3, 8}), cos, sin.to(torch::kDouble)), c10::Error);  // table dtypes differ
  EXPECT_THROW(rope(torch::zeros({2, 5, 3, 8}, torch::kBFloat16), cos.to(torch::kHalf), sin.to(torch::kHalf)),
               c10::Error);  // tables neither x's dtype nor fp32
}

TEST(FusedRope, CudaMatchesHfFormula) {
  REQUIRE_CUDA();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_rope(torch::kCUDA, dtype, dtype, 64);          // 16-byte accesses (LLaMA's head dim)
    check_rope(torch::kCUDA, dtype, torch::kFloat, 64);  // fp32 tables
    check_rope(torch::kCUDA, dtype, dtype, 6);           // half = 3: one element at a time
  }
}

TEST(FusedRope, CudaAgreesWithTheFallback) {
  REQUIRE_CUDA();
  const Qk x = packed_qk(2, 33, 8, 2, 64, torch::kCUDA, torch::kBFloat16);
  const Tables t = tables(33, 64);
  const torch::Tensor cos = t.cos.to(on(torch::kCUDA, torch::kBFloat16));
  const torch::Tensor sin_signed = t.sin_signed.to(on(torch::kCUDA, torch::kBFloat16));
  const torch::Tensor ours = rope(x.q, cos, sin_signed).to(torch::kFloat);
  const torch::Tensor cpu = rope(x.q.cpu(), cos.cpu(), sin_signed.cpu()).to(torch::kFloat);
  EXPECT_TRUE(ours.cpu().allclose(cpu, 1e-2, 2e-2));
}

// ---- token cross-entropy ----------------------------------------------------------------------

// Σ −log softmax(logits)[target] over targets ≠ −100 in float64, and their count.
std::pair<double, int64_t> cross_entropy_reference(const torch::Tensor& logits, const torch::Tensor& targets) {
  const torch::Tensor l = logits.detach().to(torch::kCPU, torch::kDouble).reshape({-1, logits.size(-1)});
  const torch::Tensor t = targets.cpu().reshape({-1});
  const torch::Tensor kept = t != kIgnore;
  const torch::Tensor log_probs = torch::log_softmax(l, -1);
  const torch::Tensor picked = log_probs.gather(1, t.clamp_min(0).unsqueeze(1)).squeeze(1);
  return {-(picked * kept.to(torch::kDouble)).sum().item<double>(), kept.sum().item<int64_t>()};
}

// Causal-LM logits [B, T, V] and labels [B, T] with some −100s; the loss reads logits[:, :−1]
// against labels[:, 1:], both strided views.
struct Shifted {
  torch::Tensor logits, labels;
};
Shifted shifted(int64_t B, int64_t T, int64_t V, torch::Device device, torch::ScalarType dtype) {
  torch::manual_seed(9);
  const torch::Tensor logits = (torch::randn({B, T, V}) * 4).to(on(device, dtype));
  torch::Tensor labels = torch::randint(V, {B, T}, torch::kLong);
  labels.index_put_({0, torch::indexing::Slice(T - 3, torch::indexing::None)}, kIgnore);  // padding
  labels.index_put_({B - 1, 2}, kIgnore);
  labels = labels.to(device);
  return {logits.narrow(1, 0, T - 1), labels.narrow(1, 1, T - 1)};
}

void check_cross_entropy(torch::Device device, torch::ScalarType dtype, int64_t V) {
  const Shifted s = shifted(3, 11, V, device, dtype);
  ASSERT_FALSE(s.logits.is_contiguous());
  ASSERT_FALSE(s.labels.is_contiguous());
  const CrossEntropySum ours = token_cross_entropy(s.logits, s.labels);
  const auto [sum, count] = cross_entropy_reference(s.logits, s.labels);
  EXPECT_EQ(ours.sum.scalar_type(), torch::kFloat);
  EXPECT_EQ(ours.sum.dim(), 0);
  EXPECT_EQ(ours.count.scalar_type(), torch::kLong);
  EXPECT_EQ(ours.count.item<int64_t>(), count);
  EXPECT_EQ(count, 3 * 10 - 3 - 1);  // the ignored targets are not counted
  EXPECT_LE(relative_error(ours.sum.item<double>(), sum), 1e-4) << ours.sum.item<double>() << " vs " << sum;
}

TEST(FusedCrossEntropy, FallbackIsTheAtenExpression) {
  const Shifted s = shifted(2, 6, 40, torch::kCPU, torch::kBFloat16);
  const CrossEntropySum ours = token_cross_entropy(s.logits, s.labels);
  const torch::Tensor expected = torch::nll_loss(torch::log_softmax(s.logits.reshape({-1, 40}), -1, torch::kFloat),
                                                 s.labels.reshape({-1}), {}, at::Reduction::Sum, kIgnore);
  EXPECT_TRUE(ours.sum.equal(expected));
}

TEST(FusedCrossEntropy, CpuMatchesReference) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_cross_entropy(torch::kCPU, dtype, 96);
  }
}

TEST(FusedCrossEntropy, CpuGradientsFlowThroughTheFallback) {
  torch::manual_seed(10);
  const torch::Tensor logits = torch::randn({2, 3, 5}, torch::requires_grad());
  const torch::Tensor targets = torch::tensor(std::vector<int64_t>{0, 4, kIgnore, 2, 1, 3}).view({2, 3});
  token_cross_entropy(logits, targets).sum.backward();
  const torch::Tensor expected = torch::softmax(logits.detach(), -1) -
                                 torch::one_hot(targets.clamp_min(0), 5).to(torch::kFloat);
  const torch::Tensor kept = (targets != kIgnore).unsqueeze(-1).to(torch::kFloat);
  expect_close(logits.grad(), expected * kept, 1e-5, 1e-6);
}

TEST(FusedCrossEntropy, RejectsBadInputs) {
  EXPECT_THROW(token_cross_entropy(torch::zeros({2, 3, 5}), torch::zeros({2, 4}, torch::kLong)), c10::Error);
  EXPECT_THROW(token_cross_entropy(torch::zeros({2, 3, 5}), torch::zeros({2, 3}, torch::kInt)), c10::Error);
  EXPECT_THROW(token_cross_entropy(torch::zeros({2, 3, 0}), torch::zeros({2, 3}, torch::kLong)), c10::Error);
}

TEST(FusedCrossEntropy, CudaMatchesReference) {
  REQUIRE_CUDA();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_cross_entropy(torch::kCUDA, dtype, 1000);  // 16-byte accesses
    check_cross_entropy(torch::kCUDA, dtype, 997);   // odd vocabulary: rows start unaligned
    check_cross_entropy(torch::kCUDA, dtype, 4);     // fewer logits than threads
  }
}

TEST(FusedCrossEntropy, CudaLargeRowsAndFlatLogits) {
  REQUIRE_CUDA();
  torch::manual_seed(12);
  // A LLaMA-sized vocabulary, as [N, V] (no batch dim), bf16.
  const torch::Tensor logits = (torch::randn({37, 32000}) * 3).to(on(torch::kCUDA, torch::kBFloat16));
  torch::Tensor targets = torch::randint(32000, {37}, torch::kLong);
  targets.index_put_({5}, kIgnore);
  targets = targets.cuda();
  const CrossEntropySum ours = token_cross_entropy(logits, targets);
  const auto [sum, count] = cross_entropy_reference(logits, targets);
  EXPECT_EQ(ours.count.item<int64_t>(), count);
  EXPECT_LE(relative_error(ours.sum.item<double>(), sum), 1e-4);
}

TEST(FusedCrossEntropy, CudaExtremeLogits) {
  REQUIRE_CUDA();
  // Large magnitudes (a naive Σ exp would overflow) and −inf logits (masked vocabulary) stay finite.
  torch::Tensor logits = torch::randn({4, 64}, torch::kDouble) * 30;
  logits.index_put_({0, 0}, 1e4);
  logits.index_put_({1, torch::indexing::Slice(0, 32)}, -std::numeric_limits<double>::infinity());
  const torch::Tensor targets = torch::tensor({0, 40, 7, 63}, torch::kLong);
  const auto [sum, count] = cross_entropy_reference(logits, targets);
  ASSERT_TRUE(std::isfinite(sum));
  const CrossEntropySum ours = token_cross_entropy(logits.to(on(torch::kCUDA, torch::kFloat)), targets.cuda());
  EXPECT_EQ(ours.count.item<int64_t>(), count);
  EXPECT_LE(relative_error(ours.sum.item<double>(), sum), 1e-4) << ours.sum.item<double>() << " vs " << sum;
}

TEST(FusedCrossEntropy, CudaAllIgnoredAndOutOfRangeTargets) {
  REQUIRE_CUDA();
  const torch::Tensor logits = torch::randn({2, 3, 8}, on(torch::kCUDA, torch::kFloat));
  const CrossEntropySum none = token_cross_entropy(logits, torch::full({2, 3}, kIgnore, torch::kLong).cuda());
  EXPECT_EQ(none.sum.item<float>(), 0.0f);
  EXPECT_EQ(none.count.item<int64_t>(), 0);
  if (launches({logits})) {  // the kernel writes NaN where the fallback would raise
    torch::Tensor targets = torch::zeros({2, 3}, torch::kLong);
    targets.index_put_({1, 1}, 8);
    EXPECT_TRUE(std::isnan(token_cross_entropy(logits, targets.cuda()).sum.item<float>()));
  }
}

TEST(FusedCrossEntropy, CudaWithGradientsUsesAutograd) {
  REQUIRE_CUDA();
  const torch::Tensor logits = torch::randn({2, 3, 5}, on(torch::kCUDA, torch::kFloat)).requires_grad_();
  const torch::Tensor targets = torch::tensor(std::vector<int64_t>{0, 4, kIgnore, 2, 1, 3}).view({2, 3}).cuda();
  EXPECT_FALSE(launches({logits, targets}));
  token_cross_entropy(logits, targets).sum.backward();
  ASSERT_TRUE(logits.grad().defined());
}

// ---- add_rms_norm ---------------------------------------------------------------------------------

// The normed half of add_rms_norm in float64 from the rounded sum s: s·rsqrt(mean(s²) + eps)·w.
torch::Tensor rms_norm_reference(const torch::Tensor& sum, const torch::Tensor& weight, double eps) {
  const torch::Tensor s = sum.detach().to(torch::kCPU, torch::kDouble);
  return s * torch::rsqrt(s.pow(2).mean(-1, true) + eps) * weight.detach().to(torch::kCPU, torch::kDouble);
}

struct Residual {
  torch::Tensor x, branch, weight;
};
Residual residual_inputs(int64_t rows, int64_t hidden, torch::Device device, torch::ScalarType dtype) {
  torch::manual_seed(6);
  // A residual stream of large values with a small branch on top, as deep in a decoder, and a
  // weight away from 1 so that a missing multiply shows.
  return {(torch::randn({rows, hidden}) * 4).to(on(device, dtype)), torch::randn({rows, hidden}).to(on(device, dtype)),
          (torch::rand({hidden}) + 0.5).to(on(device, dtype))};
}

// sum is exactly ATen's x + branch (one rounding of the float sum either way); normed is the formula
// applied to that rounded sum, to the storage dtype's rounding.
void check_add_rms_norm(const Residual& in, double eps) {
  const AddRmsNorm out = add_rms_norm(in.x, in.branch, in.weight, eps);
  EXPECT_EQ(out.sum.scalar_type(), in.x.scalar_type());
  EXPECT_EQ(out.normed.device().type(), in.x.device().type());
  EXPECT_TRUE(out.sum.equal(in.x + in.branch));
  expect_close(out.normed, rms_norm_reference(out.sum, in.weight, eps), rtol_of(in.x.scalar_type()),
               atol_of(in.x.scalar_type()));
}

TEST(FusedAddRmsNorm, CpuMatchesReference) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_add_rms_norm(residual_inputs(7, 48, torch::kCPU, dtype), 1e-5);
  }
}

TEST(FusedAddRmsNorm, CpuGradientsFlowThroughTheFallback) {
  Residual in = residual_inputs(3, 16, torch::kCPU, torch::kFloat);
  for (torch::Tensor* t : {&in.x, &in.branch, &in.weight}) t->requires_grad_();
  EXPECT_FALSE(launches({in.x, in.branch, in.weight}));
  const AddRmsNorm out = add_rms_norm(in.x, in.branch, in.weight, 1e-6);
  (out.normed * out.normed + out.sum).sum().backward();
  // The same loss through an add and HF's RMSNorm formula.
  const torch::Tensor x2 = in.x.detach().clone().requires_grad_(), b2 = in.branch.detach().clone().requires_grad_();
  const torch::Tensor w2 = in.weight.detach().clone().requires_grad_();
  const torch::Tensor s = x2 + b2;
  const torch::Tensor n = s * torch::rsqrt(s.pow(2).mean(-1, true) + 1e-6) * w2;
  (n * n + s).sum().backward();
  EXPECT_TRUE(in.x.grad().allclose(x2.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(in.branch.grad().allclose(b2.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(in.weight.grad().allclose(w2.grad(), 1e-5, 1e-6));
}

TEST(FusedAddRmsNorm, RejectsMismatchedInputs) {
  EXPECT_THROW(add_rms_norm(torch::zeros({2, 4}), torch::zeros({2, 3}), torch::ones({4}), 1e-6), c10::Error);
  EXPECT_THROW(add_rms_norm(torch::zeros({2, 4}), torch::zeros({2, 4}), torch::ones({3}), 1e-6), c10::Error);
  EXPECT_THROW(add_rms_norm(torch::zeros({2, 4}), torch::zeros({2, 4}, torch::kDouble), torch::ones({4}), 1e-6),
               c10::Error);
  EXPECT_THROW(add_rms_norm(torch::zeros({}), torch::zeros({}), torch::ones({1}), 1e-6), c10::Error);
}

TEST(FusedAddRmsNorm, CudaMatchesReference) {
  REQUIRE_CUDA();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_add_rms_norm(residual_inputs(33, 2048, torch::kCUDA, dtype), 1e-5);  // 16-byte accesses, 1 pack/thread
    check_add_rms_norm(residual_inputs(5, 4096 + 64, torch::kCUDA, dtype), 1e-6);  // several packs per thread
    check_add_rms_norm(residual_inputs(9, 13, torch::kCUDA, dtype), 1e-5);     // odd width: one element at a time
  }
}

TEST(FusedAddRmsNorm, CudaRowsBeyondTheGridAndOddLayouts) {
  REQUIRE_CUDA();
  // More rows than the grid's 2^20 blocks: the last rows come from the grid-stride loop.
  check_add_rms_norm(residual_inputs((int64_t{1} << 20) + 3, 8, torch::kCUDA, torch::kBFloat16), 1e-5);
  // A transposed branch (copied first), a contiguous x starting one element in (unaligned: one element
  // at a time), [B, T, H] inputs.
  torch::manual_seed(7);
  const torch::Tensor x = torch::randn({6 * 64 + 1}, on(torch::kCUDA, torch::kBFloat16)).narrow(0, 1, 6 * 64).view({6, 64});
  const torch::Tensor branch = torch::randn({64, 6}, on(torch::kCUDA, torch::kBFloat16)).t();
  const torch::Tensor weight = torch::rand({64}, on(torch::kCUDA, torch::kBFloat16)) + 0.5;
  check_add_rms_norm({x, branch, weight}, 1e-5);
  check_add_rms_norm({x.reshape({2, 3, 64}), branch.reshape({2, 3, 64}), weight}, 1e-5);
  const torch::Tensor none = x.narrow(0, 0, 0);
  EXPECT_EQ(add_rms_norm(none, none, weight, 1e-5).normed.numel(), 0);
}

TEST(FusedAddRmsNorm, CudaAgreesWithAddThenRmsNorm) {
  REQUIRE_CUDA();
  const Residual in = residual_inputs(64, 2048, torch::kCUDA, torch::kBFloat16);
  const AddRmsNorm ours = add_rms_norm(in.x, in.branch, in.weight, 1e-5);
  const AddRmsNorm aten = add_rms_norm(in.x.cpu(), in.branch.cpu(), in.weight.cpu(), 1e-5);  // the fallback
  EXPECT_TRUE(ours.sum.cpu().equal(aten.sum));
  // Both round the same float formula once; only the order of the float sums differs.
  EXPECT_TRUE(ours.normed.cpu().to(torch::kFloat).allclose(aten.normed.to(torch::kFloat), 1e-2, 1e-2));
}

TEST(FusedAddRmsNorm, CudaWithGradientsUsesAutograd) {
  REQUIRE_CUDA();
  Residual in = residual_inputs(4, 32, torch::kCUDA, torch::kFloat);
  in.branch.requires_grad_();
  EXPECT_FALSE(launches({in.x, in.branch, in.weight}));
  add_rms_norm(in.x, in.branch, in.weight, 1e-6).normed.sum().backward();
  ASSERT_TRUE(in.branch.grad().defined());
}

// ---- dispatch ---------------------------------------------------------------------------------------

TEST(FusedKernels, SupportedDtypes) {
  EXPECT_TRUE(supports(torch::kFloat));
  EXPECT_TRUE(supports(torch::kBFloat16));
  EXPECT_TRUE(supports(torch::kHalf));
  EXPECT_FALSE(supports(torch::kDouble));
  EXPECT_FALSE(supports(torch::kLong));
}

TEST(FusedKernels, LaunchOnlyForCudaInputsWithoutGradients) {
  EXPECT_FALSE(launches({torch::zeros({2})}));
  EXPECT_FALSE(launches({}));
  if (!torch::cuda::is_available()) return;
  const torch::Tensor x = torch::zeros({2}, torch::kCUDA);
  EXPECT_EQ(launches({x}), compiled());
  EXPECT_FALSE(launches({x, torch::zeros({2})}));  // one CPU input
  const torch::Tensor w = torch::zeros({2}, torch::kCUDA).requires_grad_();
  EXPECT_FALSE(launches({x, w}));
  torch::NoGradGuard no_grad;
  EXPECT_EQ(launches({x, w}), compiled());
  std::cout << "kernels::compiled() = " << compiled() << "\n";
}

}  // namespace
}  // namespace secateur::kernels
