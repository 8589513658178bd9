// Hard-Concrete (Louizos et al. 2018): sample statistics against the closed forms of P(z ≠ 0),
// P(z = 0) and P(z = 1), the deterministic gate, and the reparameterisation gradient.
#include <gtest/gtest.h>

#include <cmath>

#include "methods/hard_concrete.h"

namespace secateur::methods {
namespace {

// |p̂ − p| ≤ 3σ of a Bernoulli mean over n draws (plus a hair for p near 0 or 1).
void expect_within_3_sigma(double estimate, double p, int64_t n, const std::string& what) {
  const double sigma = std::sqrt(p * (1 - p) / n);
  EXPECT_LE(std::abs(estimate - p), 3 * sigma + 1e-4) << what << ": estimate " << estimate << ", closed form " << p;
}

TEST(HardConcreteTest, SampleFrequenciesMatchClosedForms) {
  torch::manual_seed(7);
  const HardConcrete hc;
  const int64_t n = 200000;
  for (double log_alpha : {-3.0, -1.0, 0.0, 0.5, 2.0, 4.0}) {
    const torch::Tensor la = torch::full({n}, log_alpha);
    const torch::Tensor z = hc.sample(la);
    const auto scalar = torch::full({}, log_alpha);
    const std::string at = "log α = " + std::to_string(log_alpha);
    expect_within_3_sigma((z > 0).to(torch::kDouble).mean().item<double>(), hc.open_probability(scalar).item<double>(), n,
                          "P(z ≠ 0) " + at);
    expect_within_3_sigma((z == 0).to(torch::kDouble).mean().item<double>(), hc.zero_probability(scalar).item<double>(), n,
                          "P(z = 0) " + at);
    expect_within_3_sigma((z == 1).to(torch::kDouble).mean().item<double>(), hc.one_probability(scalar).item<double>(), n,
                          "P(z = 1) " + at);
    EXPECT_TRUE(((z >= 0) & (z <= 1)).all().item<bool>());
  }
}

TEST(HardConcreteTest, ClosedFormsAgreeWithEachOtherAndTheQuantile) {
  const HardConcrete hc;
  const torch::Tensor la = torch::linspace(-5, 5, 11);
  EXPECT_TRUE(torch::allclose(hc.open_probability(la) + hc.zero_probability(la), torch::ones({11})));
  // z = 0 exactly when s̄ ≤ 0, i.e. when u is below P(z = 0): the transform at that u is the boundary.
  for (double v : {-2.0, 0.0, 3.0}) {
    const torch::Tensor a = torch::full({1}, v);
    const double p0 = hc.zero_probability(a).item<double>();
    EXPECT_EQ(hc.transform(torch::full({1}, p0 * 0.999), a).item<double>(), 0.0);
    EXPECT_GT(hc.transform(torch::full({1}, p0 * 1.001), a).item<double>(), 0.0);
    const double p1 = hc.one_probability(a).item<double>();
    EXPECT_EQ(hc.transform(torch::full({1}, 1 - p1 * 0.999), a).item<double>(), 1.0);
    EXPECT_LT(hc.transform(torch::full({1}, 1 - p1 * 1.001), a).item<double>(), 1.0);
  }
  // The numbers CoFi's constants give: P(z ≠ 0) at log α = 0 is σ(−(2/3)·log(1/11)) ≈ 0.8320.
  EXPECT_NEAR(hc.open_probability(torch::zeros({})).item<double>(), 1 / (1 + std::pow(11.0, -2.0 / 3.0)), 1e-6);
}

TEST(HardConcreteTest, DeterministicGateIsLouizosEq13) {
  const HardConcrete hc;
  EXPECT_EQ(hc.deterministic(torch::full({}, 10.0)).item<double>(), 1.0);
  EXPECT_EQ(hc.deterministic(torch::full({}, -10.0)).item<double>(), 0.0);
  EXPECT_NEAR(hc.deterministic(torch::zeros({})).item<double>(), 0.5 * 1.2 - 0.1, 1e-7);
}

TEST(HardConcreteTest, GradientReachesLogAlpha) {
  torch::manual_seed(3);
  const HardConcrete hc;
  const torch::Tensor la = torch::zeros({64}, torch::requires_grad());
  hc.sample(la).sum().backward();
  ASSERT_TRUE(la.grad().defined());
  // ∂z/∂log α ≥ 0 everywhere (z is monotone in log α) and > 0 where z is inside (0, 1).
  EXPECT_TRUE((la.grad() >= 0).all().item<bool>());
  EXPECT_GT(la.grad().sum().item<double>(), 0.0);
  // The expected-L0 term is differentiable too: ∂P(z≠0)/∂log α = p(1 − p).
  const torch::Tensor one = torch::zeros({}, torch::requires_grad());
  const torch::Tensor p = hc.open_probability(one);
  p.backward();
  EXPECT_NEAR(one.grad().item<double>(), p.item<double>() * (1 - p.item<double>()), 1e-6);
}

}  // namespace
}  // namespace secateur::methods
