#include "model/rope.h"

#include <cmath>

namespace secateur::model {

namespace {

// Llama 3.1's scaling, operation for operation as transformers' _compute_llama3_parameters
// (Python's `scalar / tensor` is tensor.reciprocal() * scalar, so the same is done here).
torch::Tensor llama3_scaled(const torch::Tensor& inv_freq, const RopeScaling& s) {
  const double old_context = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  const torch::Tensor wavelen = inv_freq.reciprocal() * (2.0 * M_PI);
  torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  const torch::Tensor smooth =
      (wavelen.reciprocal() * old_context - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const torch::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  const torch::Tensor medium = (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
  return torch::where(medium, smoothed, scaled);
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

torch::Tensor rope_inv_freq(const ModelConfig& config) {
  const int64_t dim = config.head_dim;
  const torch::Tensor exponent = torch::arange(0, dim, 2, torch::kLong).to(torch::kFloat32) / dim;
  const torch::Tensor inv_freq = torch::pow(config.rope_theta, exponent).reciprocal();
  const RopeScaling& s = config.rope_scaling;
  if (s.type == "linear") return inv_freq / s.factor;
  if (s.type == "llama3") return llama3_scaled(inv_freq, s);
  return inv_freq;
}

RopeTables rope_tables(const torch::Tensor& inv_freq, int64_t seq_len, torch::ScalarType dtype) {
  const torch::Tensor positions = torch::arange(seq_len, inv_freq.options());
  const torch::Tensor freqs = positions.unsqueeze(1) * inv_freq.unsqueeze(0);  // [T, d/2]
  const torch::Tensor angles = torch::cat({freqs, freqs}, -1);
  return {angles.cos().to(dtype), angles.sin().to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& tables) {
  return x * tables.cos + rotate_half(x) * tables.sin;
}

}  // namespace secateur::model
