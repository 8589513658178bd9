#include "model/attention.h"

#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

namespace secateur::model {

namespace {

double lowest(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kBFloat16: return static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
    case torch::kHalf: return static_cast<double>(std::numeric_limits<c10::Half>::lowest());
    case torch::kDouble: return std::numeric_limits<double>::lowest();
    default: return static_cast<double>(std::numeric_limits<float>::lowest());
  }
}

// [T, T] bool: key j visible from query i under the causal and sliding-window rules.
torch::Tensor visible_keys(int64_t seq_len, bool causal, int64_t sliding_window, torch::Device device) {
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  const torch::Tensor i = torch::arange(seq_len, opts).unsqueeze(1);
  const torch::Tensor j = torch::arange(seq_len, opts).unsqueeze(0);
  torch::Tensor ok = torch::ones({seq_len, seq_len}, opts.dtype(torch::kBool));
  if (causal) ok = ok & (j <= i);
  if (sliding_window > 0) ok = ok & (i - j < sliding_window);
  return ok;
}

torch::Tensor to_additive(const torch::Tensor& allowed, torch::ScalarType dtype) {
  return torch::zeros(allowed.sizes(), allowed.options().dtype(dtype)).masked_fill(allowed.logical_not(), lowest(dtype));
}

// The exact path: what HF's eager attention computes (softmax in fp32, then the input dtype).
torch::Tensor matmul_softmax(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const AttentionMask& mask, double dropout_p) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
  if (mask.additive.defined()) {
    scores = scores + mask.additive;
  } else if (mask.causal) {
    const int64_t t = q.size(-2);
    scores = scores + to_additive(visible_keys(t, true, 0, q.device()), scores.scalar_type());
  }
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  if (dropout_p > 0.0) probs = torch::dropout(probs, dropout_p, /*train=*/true);
  return torch::matmul(probs, v);
}

torch::Tensor fused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                    const AttentionMask& mask, double dropout_p) {
#if TORCH_VERSION_MAJOR >= 2
  if (mask.additive.defined()) return at::scaled_dot_product_attention(q, k, v, mask.additive, dropout_p, false);
  return at::scaled_dot_product_attention(q, k, v, {}, dropout_p, mask.causal);
#else
  return matmul_softmax(q, k, v, mask, dropout_p);
#endif
}

// K and V repeated to one head per query head (HF's repeat_kv: query head h reads group h / group).
torch::Tensor repeat_groups(const torch::Tensor& kv, int64_t group) {
  return group == 1 ? kv : kv.repeat_interleave(group, 1);
}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define SECATEUR_HAS_SDPA_GQA 1

// SECATEUR_SDPA_GQA=0 turns native GQA off (to compare both on a GPU); on by default.
bool sdpa_gqa_enabled() {
  const char* env = std::getenv("SECATEUR_SDPA_GQA");
  return env == nullptr || std::string(env) != "0";
}

// Whether SDPA runs this call on a fused kernel that reads grouped K/V as they are (flash
// attention: query head h → group h / group, as repeat_kv). Backends without GQA support
// (memory-efficient, CPU flash) send enable_gqa with fewer KV heads to the math backend, slower
// than repeating K/V here, so the dispatcher is asked first; SDPBackend::math is 0, error −1.
bool fused_kernel_takes_groups(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const AttentionMask& mask, double dropout_p) {
  if (mask.additive.defined()) return false;  // flash takes no mask: keep the masked calls as they were
  const int64_t backend = at::_fused_sdp_choice(q, k, v, {}, dropout_p, mask.causal, {}, /*enable_gqa=*/true);
  return backend > 0;
}

// softmax(q·kᵀ/√d)·v with K/V left grouped: no copy of K and V per query head.
torch::Tensor fused_grouped(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const AttentionMask& mask, double dropout_p) {
  return at::scaled_dot_product_attention(q, k, v, {}, dropout_p, mask.causal, {}, /*enable_gqa=*/true);
}
#endif

// The fused product, K/V grouped when SDPA can take them so, else repeated first.
torch::Tensor fused_any_group(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const AttentionMask& mask, double dropout_p) {
  const int64_t group = q.size(1) / k.size(1);
#ifdef SECATEUR_HAS_SDPA_GQA
  if (group > 1 && sdpa_gqa_enabled() && fused_kernel_takes_groups(q, k, v, mask, dropout_p))
    return fused_grouped(q, k, v, mask, dropout_p);
#endif
  return fused(q, repeat_groups(k, group), repeat_groups(v, group), mask, dropout_p);
}

}  // namespace

AttentionMask AttentionMask::build(const torch::Tensor& attention_mask, int64_t seq_len, bool causal,
                                   int64_t sliding_window, torch::ScalarType dtype, torch::Device device,
                                   std::optional<bool> padded_hint) {
  AttentionMask mask;
  mask.causal = causal;
  const bool padded =
      attention_mask.defined() && (padded_hint ? *padded_hint : !attention_mask.all().item<bool>());
  const bool windowed = sliding_window > 0 && seq_len > sliding_window;
  if (!padded && !windowed) return mask;
  torch::Tensor allowed = visible_keys(seq_len, causal, windowed ? sliding_window : 0, device).unsqueeze(0).unsqueeze(0);
  if (padded) allowed = allowed & attention_mask.to(device).to(torch::kBool).unsqueeze(1).unsqueeze(1);
  mask.additive = to_additive(allowed, dtype);
  return mask;
}

torch::Tensor split_heads(const torch::Tensor& x, int64_t num_heads, int64_t head_dim) {
  return x.view({x.size(0), x.size(1), num_heads, head_dim}).transpose(1, 2);
}

torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

torch::Tensor head_gate(const Gates* gates, int64_t layer, const LayerShape& shape) {
  if (gates == nullptr) return {};
  const torch::Tensor head = Gates::at(gates->head, layer);
  const torch::Tensor group = Gates::at(gates->kv_group, layer);
  if (!group.defined()) return head;
  const torch::Tensor per_head = group.repeat_interleave(shape.num_heads / shape.num_kv_heads);
  return head.defined() ? head * per_head : per_head;
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionMask& mask, const torch::Tensor& gate, double dropout_p, bool exact) {
  const int64_t group = q.size(1) / k.size(1);
  torch::Tensor context = exact ? matmul_softmax(q, repeat_groups(k, group), repeat_groups(v, group), mask, dropout_p)
                                : fused_any_group(q, k, v, mask, dropout_p);
  if (gate.defined()) context = context * gate.to(context.scalar_type()).view({1, -1, 1, 1});
  return merge_heads(context);
}

}  // namespace secateur::model
