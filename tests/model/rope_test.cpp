// apply_rope computes HF's x·cos + rotate_half(x)·sin (rotate_half(x) = cat(−x₂, x₁)) in fewer
// passes, as x·cos + cat(x₂, x₁)·sin_signed: bit for bit in fp32, within bf16 rounding in bf16,
// with the same gradient.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/rope.h"
#include "model_test_util.h"

namespace secateur::model {
namespace {

constexpr int64_t kHeadDim = 16;

torch::Tensor inv_freq() {
  return rope_inv_freq(testing::config_from(R"({"model_type": "llama", "vocab_size": 50, "hidden_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48})"));
}

// HF's formula, verbatim: cos and sin of cat(freqs, freqs), then x·cos + rotate_half(x)·sin.
torch::Tensor hf_rope(const torch::Tensor& x, const torch::Tensor& inv_freq, torch::ScalarType dtype) {
  const torch::Tensor positions = torch::arange(x.size(-2), inv_freq.options());
  const torch::Tensor freqs = positions.unsqueeze(1) * inv_freq.unsqueeze(0);
  const torch::Tensor angles = torch::cat({freqs, freqs}, -1);
  const torch::Tensor cos = angles.cos().to(dtype), sin = angles.sin().to(dtype);
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

// q as the model makes it: [B, T, H·d] split into heads, a transposed (non-contiguous) view.
torch::Tensor heads(torch::ScalarType dtype) {
  torch::manual_seed(11);
  const torch::Tensor projected = torch::randn({2, 9, 4 * kHeadDim}).to(dtype);
  return projected.view({2, 9, 4, kHeadDim}).transpose(1, 2);
}

TEST(Rope, SignedSineTableIsRotateHalfsSignOnHfsSine) {
  const torch::Tensor f = inv_freq();
  ASSERT_EQ(f.size(0), kHeadDim / 2);
  const RopeTables t = rope_tables(f, 9, torch::kFloat);
  const torch::Tensor angles = torch::arange(9, torch::kFloat).unsqueeze(1) * f.unsqueeze(0);
  EXPECT_TRUE(t.sin_signed.narrow(-1, 0, kHeadDim / 2).equal(-angles.sin()));
  EXPECT_TRUE(t.sin_signed.narrow(-1, kHeadDim / 2, kHeadDim / 2).equal(angles.sin()));
  EXPECT_TRUE(t.cos.equal(torch::cat({angles.cos(), angles.cos()}, -1)));
}

TEST(Rope, EqualsHfFormulaInFp32) {
  const torch::Tensor x = heads(torch::kFloat);
  const torch::Tensor ours = apply_rope(x, rope_tables(inv_freq(), 9, torch::kFloat));
  EXPECT_LE(testing::max_diff(ours, hf_rope(x, inv_freq(), torch::kFloat)), 1e-6);
}

TEST(Rope, MatchesHfFormulaInBf16WithinItsRounding) {
  // Both from the same bf16 inputs; the fp32 result of HF's formula on them is the reference.
  const torch::Tensor x = heads(torch::kBFloat16);
  const torch::Tensor ours = apply_rope(x, rope_tables(inv_freq(), 9, torch::kBFloat16));
  EXPECT_EQ(ours.scalar_type(), torch::kBFloat16);
  const RopeTables t = rope_tables(inv_freq(), 9, torch::kBFloat16);
  const torch::Tensor sin = t.sin_signed.narrow(-1, kHeadDim / 2, kHeadDim / 2).repeat({1, 2}).to(torch::kFloat);
  const torch::Tensor xf = x.to(torch::kFloat);
  const int64_t half = kHeadDim / 2;
  const torch::Tensor exact = xf * t.cos.to(torch::kFloat) +
                              torch::cat({-xf.narrow(-1, half, half), xf.narrow(-1, 0, half)}, -1) * sin;
  // |x·cos + r·sin| ≤ √2·max|x| ≲ 6: two bf16 roundings (2⁻⁸ relative each) stay under 0.05.
  EXPECT_LE(testing::max_diff(ours, exact), 0.05);
  EXPECT_LE(testing::max_diff(ours, hf_rope(x, inv_freq(), torch::kBFloat16)), 0.05);
}

TEST(Rope, GradientEqualsHfFormulasGradient) {
  // apply_rope adds in place into x·cos: autograd must still see x through both terms.
  const torch::Tensor weights = torch::randn({2, 4, 9, kHeadDim});
  torch::Tensor x = heads(torch::kFloat).detach().requires_grad_(true);
  (apply_rope(x, rope_tables(inv_freq(), 9, torch::kFloat)) * weights).sum().backward();
  const torch::Tensor ours = x.grad().clone();
  x.grad().zero_();
  (hf_rope(x, inv_freq(), torch::kFloat) * weights).sum().backward();
  EXPECT_LE(testing::max_diff(ours, x.grad()), 1e-6);
}

}  // namespace
}  // namespace secateur::model
