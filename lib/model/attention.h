#pragma once
// Multi-head attention shared by all families: masks, grouped-query attention, head gates.
//
// On LibTorch ≥ 2 the product runs through at::scaled_dot_product_attention (fused kernels);
// LibTorch 1.13 has none, so the exact matmul-softmax path is used there, and anywhere the
// caller asks for it. Head gates scale each head's output context, which both paths support.
#include <torch/torch.h>

#include <optional>

#include "model/config.h"
#include "model/gates.h"

namespace secateur::model {

// Which keys each query may see, built once per forward pass and shared by the layers.
struct AttentionMask {
  bool causal = false;
  // [B, 1, T, T] in the compute dtype: 0 where allowed, the dtype's lowest value where not (a
  // finite value, as HF uses: a fully padded row then averages instead of producing NaN).
  // Undefined when nothing but the causal rule applies.
  torch::Tensor additive;

  // attention_mask: [B, T] with 1 = token, 0 = padding, or undefined for no padding.
  // sliding_window > 0 also hides keys more than sliding_window − 1 positions back (Mistral).
  // padded: whether attention_mask hides some token, when the caller knows; otherwise the mask is
  // read to find out (a device-to-host read when it lives on the GPU).
  static AttentionMask build(const torch::Tensor& attention_mask, int64_t seq_len, bool causal,
                             int64_t sliding_window, torch::ScalarType dtype, torch::Device device,
                             std::optional<bool> padded = std::nullopt);
};

// [B, T, n·d] ↔ [B, n, T, d].
torch::Tensor split_heads(const torch::Tensor& x, int64_t num_heads, int64_t head_dim);
torch::Tensor merge_heads(const torch::Tensor& x);

// The per-query-head gate of layer `layer`: head[l] ⊙ kv_group[l] repeated over each group's
// heads (a group gate at 0 silences every head that reads the group). Undefined when both are.
torch::Tensor head_gate(const Gates* gates, int64_t layer, const LayerShape& shape);

// softmax(q·kᵀ/√d + mask)·v. q: [B, H, T, d]; k, v: [B, KV, T, d] with KV dividing H, consecutive
// query heads sharing a group as HF's repeat_kv does. Each head's context is scaled by `gate`
// ([H], optional). Returns the merged context [B, T, H·d]. `exact` forces matmul-softmax.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionMask& mask, const torch::Tensor& gate, double dropout_p, bool exact);

}  // namespace secateur::model
