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

}  // namespace
}  // namespace secateur::model
