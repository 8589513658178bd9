#include "methods/hard_concrete.h"

#include <cmath>

namespace secateur::methods {

torch::Tensor HardConcrete::transform(const torch::Tensor& u, const torch::Tensor& log_alpha) const {
  const torch::Tensor s = torch::sigmoid((torch::log(u) - torch::log(1 - u) + log_alpha) / beta);
  return torch::clamp(s * (r - l) + l, 0.0, 1.0);
}

torch::Tensor HardConcrete::sample(const torch::Tensor& log_alpha) const {
  const torch::Tensor u = torch::empty(log_alpha.sizes(), log_alpha.options().requires_grad(false)).uniform_(eps, 1 - eps);
  return transform(u, log_alpha);
}

torch::Tensor HardConcrete::open_probability(const torch::Tensor& log_alpha) const {
  return torch::sigmoid(log_alpha - beta * std::log(-l / r));
}

torch::Tensor HardConcrete::zero_probability(const torch::Tensor& log_alpha) const {
  return torch::sigmoid(beta * std::log(-l / r) - log_alpha);
}

torch::Tensor HardConcrete::one_probability(const torch::Tensor& log_alpha) const {
  return torch::sigmoid(log_alpha - beta * std::log((1 - l) / (r - 1)));
}

torch::Tensor HardConcrete::deterministic(const torch::Tensor& log_alpha) const {
  return torch::clamp(torch::sigmoid(log_alpha) * (r - l) + l, 0.0, 1.0);
}

}  // namespace secateur::methods
