#pragma once
// Rotary position embeddings, computed exactly as Hugging Face does (rotate_half convention:
// the two halves of each head's dims form the rotated pairs).
#include <torch/torch.h>

#include "model/config.h"

namespace secateur::model {

// HF's inv_freq: 1 / θ^(2i/d) for i < d/2 in fp32, then the config's scaling ("linear" divides
// by factor; "llama3" divides the low frequencies by factor and blends the middle band).
torch::Tensor rope_inv_freq(const ModelConfig& config);

// cos and sin of position·inv_freq, each [T, head_dim] (the frequencies repeated over both halves),
// computed in fp32 and cast to `dtype` as HF does. The sine carries rotate_half's sign:
// sin_signed = cat(−sin, sin) over the two halves, so that
//   rotate_half(x)·sin = cat(−x₂, x₁)·cat(sin, sin) = cat(x₂, x₁)·cat(−sin, sin),
// products equal bit for bit (negation is exact), and apply_rope needs no negation pass.
struct RopeTables {
  torch::Tensor cos;
  torch::Tensor sin_signed;
};
RopeTables rope_tables(const torch::Tensor& inv_freq, int64_t seq_len, torch::ScalarType dtype);

// x·cos + rotate_half(x)·sin for x [B, H, T, d], computed as x·cos + swap_halves(x)·sin_signed
// in three elementwise passes (swap, multiply, multiply-add) instead of five; in one CUDA kernel
// (kernels::rope, float math, one rounding) on CUDA without gradients where lib/kernels is compiled.
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& tables);

}  // namespace secateur::model
