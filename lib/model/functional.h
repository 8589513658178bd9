#pragma once
// Stateless building blocks shared by the model families: projections, activations, norms and
// the gate arithmetic. Weights are passed in, so a layer reads like its equations.
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "model/gates.h"
#include "model/tap.h"
#include "model/weight_transform.h"

namespace secateur::model::fn {

// x·Wᵀ + b (nn.Linear layout [out, in]); `b` may be undefined.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

// The weight a layer projection computes with: `w` itself without a transform (no name is built),
// else transform->apply(prefix + suffix, w), prefix + suffix being w's HF name.
torch::Tensor weight(const WeightTransform* transform, const torch::Tensor& w, const std::string& prefix,
                     const char* suffix);

// linear(x, weight(transform, w, prefix, suffix), b), with taps told of the live parameter `w`.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                     const WeightTransform* transform, const std::string& prefix, const char* suffix);

// One projection of a group that shares its input (q/k/v, gate/up): see linears.
struct Projection {
  torch::Tensor w, b;  // nn.Linear layout [out, in]; b may be undefined
  const char* suffix;  // w's HF name after the layer prefix
};

// The matrix (or vector) whose consecutive row blocks are `parts`, as a zero-copy view of their
// one storage: [Σ rows, in] for matrices, [Σ n] for vectors. Undefined unless they lie so: same
// storage, dtype and device, each contiguous and starting where the previous one ends (Model
// packs q/k/v and gate/up weights this way).
torch::Tensor row_span(const std::vector<torch::Tensor>& parts);

// linear(x, wᵢ, bᵢ, transform, prefix, suffixᵢ) for each projection, in order. When the weights
// (and biases) have a row_span, that is one GEMM whose output is split along the last dim: on a
// GPU one wide GEMM beats three narrow ones. Taps are told of each projection's input either way.
// Separate GEMMs under a transform (each weight is transformed by name) and when the weights need
// gradients (autograd then reaches each parameter as its own leaf, as without packing). The two
// agree to rounding, not bitwise: a BLAS blocks a wide GEMM's reduction differently.
std::vector<torch::Tensor> linears(const torch::Tensor& x, const std::vector<Projection>& projections,
                                   const WeightTransform* transform, const std::string& prefix);

// HF's hidden_act by name: gelu (erf), gelu_new / gelu_pytorch_tanh / gelu_fast (tanh), silu, relu.
torch::Tensor activation(const torch::Tensor& x, const std::string& name);

// The hidden-dim gate of one forward pass, with the active dims (gate ≠ 0) found once: norms
// normalise over those dims only, so a gate at 0 behaves exactly like a deleted hidden dim.
struct HiddenGate {
  torch::Tensor gate;    // [hidden] in the compute dtype; undefined when absent
  torch::Tensor active;  // int64 indices of the non-zero entries
  bool all_active = true;

  static HiddenGate from(const Gates* gates, torch::ScalarType dtype);
  bool defined() const { return gate.defined(); }
};

// x·z over the last dim when a hidden gate is present, else x itself (no multiply by ones).
torch::Tensor apply_hidden(const torch::Tensor& x, const HiddenGate& hidden);

// LayerNorm over the active hidden dims, then the hidden gate.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, double eps,
                         const HiddenGate& hidden = {});

// HF's LlamaRMSNorm: statistics in fp32, the weight applied in the input dtype.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps, const HiddenGate& hidden = {});

// x·g for an optional gate g broadcast over the last dim ([n]) or a scalar; g in x's dtype.
torch::Tensor scale(const torch::Tensor& x, const torch::Tensor& gate);

// a·b for optional scalars: the one that is defined, or undefined when neither is.
torch::Tensor product(const torch::Tensor& a, const torch::Tensor& b);

// Pre-LN residual: x + g·branch (x + branch without a gate). Exact at g = 0 and g = 1.
torch::Tensor residual(const torch::Tensor& x, const torch::Tensor& branch, const torch::Tensor& gate);

// One pre-LN layer (GPT-2 and the LLaMA family share it): x + g_attn·attn(x), then
// x + g_mlp·mlp(x), where each block gate is multiplied by the layer gate and an absent block is
// skipped. `attn` and `mlp` are the family's branches (norm included), called as f(x).
template <class Attention, class Mlp>
torch::Tensor pre_norm_layer(int64_t l, torch::Tensor x, const LayerShape& shape, const Gates* g, Attention&& attn, Mlp&& mlp) {
  const torch::Tensor layer_gate = g ? Gates::at(g->layer, l) : torch::Tensor();
  if (shape.has_attention) {
    x = residual(x, attn(x), product(layer_gate, g ? Gates::at(g->attn_block, l) : torch::Tensor()));
    tap_block(l, true, x);
  }
  if (shape.has_mlp) {
    x = residual(x, mlp(x), product(layer_gate, g ? Gates::at(g->mlp_block, l) : torch::Tensor()));
    tap_block(l, false, x);
  }
  return x;
}

// Post-LN interpolation g·f + (1 − g)·x, i.e. x + g·(f − x), exact at g = 0 and g = 1.
torch::Tensor interpolate(const torch::Tensor& x, const torch::Tensor& f, const torch::Tensor& gate);

torch::Tensor dropout(const torch::Tensor& x, double p, bool training);

// Decoder sequence classification: each row's logits [B, T, L] at its last real token, as HF
// pools: the last token that is not pad_token_id; without a pad id, the last one the attention
// mask keeps (HF refuses batches there). Returns [B, L].
torch::Tensor pool_last_token(const torch::Tensor& logits, const torch::Tensor& input_ids,
                              const torch::Tensor& attention_mask, std::optional<int64_t> pad_token_id);

}  // namespace secateur::model::fn
