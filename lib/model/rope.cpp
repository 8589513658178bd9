#include "model/rope.h"

#include <cmath>
#include <vector>

#include "kernels/fused.h"

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

// cat(x₂, x₁) for x = cat(x₁, x₂) along the last dim: one flip of the [..., 2, d/2] view, a single
// strided copy even when x is a transposed view (a cat of the two halves is two copies there).
torch::Tensor swap_halves(const torch::Tensor& x) {
  std::vector<int64_t> pairs = x.sizes().vec();
  pairs.back() /= 2;
  pairs.insert(pairs.end() - 1, 2);
  return torch::flip(x.reshape(pairs), {-2}).reshape(x.sizes());
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
  // Negate the first half of HF's sin table (rather than recompute sin of freqs), so each
  // element is the very value HF's rotate_half multiplies by.
  const torch::Tensor sin = angles.sin();
  const int64_t half = freqs.size(-1);
  const torch::Tensor sin_signed = torch::cat({-sin.narrow(-1, 0, half), sin.narrow(-1, half, half)}, -1);
  return {angles.cos().to(dtype), sin_signed.to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& tables) {
  // Heads [B, H, T, d] seen as the [B, T, H, d] they were split from: kernels::rope runs one CUDA
  // pass over them where its kernel runs (no gradient needed), and elsewhere the same two ATen
  // passes as below. Tables of another dtype than x (autocast) keep ATen's type promotion here.
  if (x.dim() == 4 && tables.cos.scalar_type() == x.scalar_type())
    return kernels::rope(x.transpose(1, 2), tables.cos, tables.sin_signed).transpose(1, 2);
  // x·cos is a fresh tensor that autograd does not save (mul saves its inputs), so adding the
  // rotated part in place is safe with gradients.
  torch::Tensor out = x * tables.cos;
  return out.addcmul_(swap_halves(x), tables.sin_signed);
}

}  // namespace secateur::model
