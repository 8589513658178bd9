// model::fn::rms_norm is LLaMA's RMSNorm, w · x / √(mean(x²) + ε), on every path: the fused GPU
// kernel (LibTorch ≥ 2.4) and the element-wise fallback agree with the formula.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/functional.h"

namespace secateur::model {
namespace {

torch::Tensor reference_rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  const torch::Tensor xd = x.to(torch::kDouble), wd = w.to(torch::kDouble);
  return wd * xd / torch::sqrt(xd.pow(2).mean(-1, true) + eps);
}

void expect_matches_formula(torch::Device device, torch::ScalarType dtype, double tolerance) {
  torch::manual_seed(3);
  const torch::Tensor x = (torch::randn({2, 5, 96}) * 3).to(device, dtype);
  const torch::Tensor w = torch::randn({96}).to(device, dtype);
  const torch::Tensor y = fn::rms_norm(x, w, 1e-5, fn::HiddenGate{});
  EXPECT_EQ(y.scalar_type(), dtype);
  const double err = (y.to(torch::kDouble).cpu() - reference_rms_norm(x, w, 1e-5).cpu()).abs().max().item<double>();
  EXPECT_LT(err, tolerance) << device << " " << dtype;
}

TEST(RmsNorm, MatchesTheFormulaOnTheCpu) {
  expect_matches_formula(torch::kCPU, torch::kFloat, 1e-5);
}

TEST(RmsNorm, MatchesTheFormulaOnAGpuInFp32AndBf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_matches_formula(torch::kCUDA, torch::kFloat, 1e-5);
  expect_matches_formula(torch::kCUDA, torch::kBFloat16, 0.1);  // bf16 keeps 8 bits of |y| ≲ 10
}

// x + h·Wᵀ: on the CPU exactly the sum of the two ops; on a GPU in inference one GEMM whose
// epilogue adds x, equal to the float64 formula within the dtype's rounding.
void expect_linear_residual(torch::Device device, torch::ScalarType dtype, double tolerance) {
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({2, 7, 64}).to(device, dtype);
  const torch::Tensor h = torch::randn({2, 7, 96}).to(device, dtype);
  const torch::Tensor w = (torch::randn({64, 96}) * 0.1).to(device, dtype);
  torch::NoGradGuard no_grad;
  const torch::Tensor y = fn::linear_residual(x, h, w, {});
  EXPECT_EQ(y.sizes(), x.sizes());
  const torch::Tensor reference = x.to(torch::kDouble) + torch::matmul(h.to(torch::kDouble), w.to(torch::kDouble).t());
  const double err = (y.to(torch::kDouble) - reference).abs().max().item<double>();
  EXPECT_LT(err, tolerance) << device << " " << dtype;
}

TEST(LinearResidual, IsExactlyTheSumOnTheCpu) {
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({3, 64}), h = torch::randn({3, 96}), w = torch::randn({64, 96}), b = torch::randn({64});
  EXPECT_TRUE(torch::equal(fn::linear_residual(x, h, w, {}), x + torch::nn::functional::linear(h, w)));
  EXPECT_TRUE(torch::equal(fn::linear_residual(x, h, w, b), x + torch::nn::functional::linear(h, w, b)));
  expect_linear_residual(torch::kCPU, torch::kFloat, 1e-4);
}

TEST(LinearResidual, MatchesTheFormulaOnAGpuInFp32AndBf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_linear_residual(torch::kCUDA, torch::kFloat, 1e-2);   // TF32 GEMMs
  expect_linear_residual(torch::kCUDA, torch::kBFloat16, 0.1);  // |y| ≲ 10 in bf16
}

}  // namespace
}  // namespace secateur::model
