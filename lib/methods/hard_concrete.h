#pragma once
// The Hard-Concrete distribution (Louizos, Welling & Kingma 2018, "Learning Sparse Neural
// Networks through L0 Regularization", §4.1, eqs. 10–13), with the constants CoFi uses:
// temperature β = 2/3, stretch interval (l, r) = (−0.1, 1.1).
//
//   u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α) / β),  s̄ = s·(r − l) + l,  z = min(1, max(0, s̄))
//
// z is exactly 0 or 1 with positive probability and differentiable in log α in between, so a
// gate z per structure learns an L0 penalty through the reparameterisation. Closed forms:
//   P(z ≠ 0) = σ(log α − β·log(−l/r))                      (eq. 12, the expected L0 norm)
//   P(z = 0) = σ(β·log(−l/r) − log α)
//   P(z = 1) = σ(log α − β·log((1 − l)/(r − 1)))
#include <torch/torch.h>

namespace secateur::methods {

struct HardConcrete {
  double beta = 2.0 / 3.0;
  double l = -0.1;
  double r = 1.1;
  // u is drawn from [eps, 1 − eps] so that log u and log(1 − u) stay finite (CoFi's 1e-6).
  double eps = 1e-6;

  // One z per entry of log_alpha (same shape, fp32), differentiable in log_alpha; u from torch's
  // generator (seeded by the trainer).
  torch::Tensor sample(const torch::Tensor& log_alpha) const;
  // z for a given u (the reparameterisation itself; sample() draws u).
  torch::Tensor transform(const torch::Tensor& u, const torch::Tensor& log_alpha) const;

  torch::Tensor open_probability(const torch::Tensor& log_alpha) const;  // P(z ≠ 0), differentiable
  torch::Tensor zero_probability(const torch::Tensor& log_alpha) const;  // P(z = 0)
  torch::Tensor one_probability(const torch::Tensor& log_alpha) const;   // P(z = 1)

  // Louizos et al.'s test-time gate (eq. 13): min(1, max(0, σ(log α)·(r − l) + l)).
  torch::Tensor deterministic(const torch::Tensor& log_alpha) const;
};

}  // namespace secateur::methods
