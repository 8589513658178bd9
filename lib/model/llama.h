#pragma once
// Llama, Mistral and Qwen2: pre-RMSNorm decoder with rotary positions, grouped-query attention
// (optional q/k/v bias for Qwen2) and a SwiGLU MLP, as in transformers' modeling_llama.py.
#include "model/attention.h"
#include "model/functional.h"
#include "model/model.h"
#include "model/rope.h"

namespace secateur::model {

class LlamaModel : public Model {
 public:
  LlamaModel(const ModelConfig& config, torch::TensorOptions options);

  ForwardOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        const Gates* gates = nullptr, const ForwardOptions& options = {}) override;

 private:
  struct Attention {
    torch::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  };
  struct Mlp {
    torch::Tensor gate_w, gate_b, up_w, up_b, down_w, down_b;
  };
  struct Layer {
    std::string prefix;       // HF name prefix, "model.layers.3."
    torch::Tensor attn_norm;  // input_layernorm
    Attention attn;
    torch::Tensor mlp_norm;   // post_attention_layernorm
    Mlp mlp;
  };
  // What every layer of one forward pass shares.
  struct Pass {
    const Gates* gates = nullptr;
    fn::HiddenGate hidden;
    AttentionMask mask;
    AttentionMask sliding_mask;
    RopeTables rope;
    bool exact = false;
    const WeightTransform* weights = nullptr;
  };

  Layer make_layer(int64_t l);
  // A block's branch from its normed input h (attention_of, mlp_of), and with its norm (…_branch).
  torch::Tensor attention_of(int64_t l, const torch::Tensor& h, const Pass& pass) const;
  torch::Tensor mlp_of(int64_t l, const torch::Tensor& h, const Pass& pass) const;
  torch::Tensor attention_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const;
  torch::Tensor mlp_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const;
  torch::Tensor layer_forward(int64_t l, torch::Tensor x, const Pass& pass) const;
  // Whether this pass may fuse every residual add with the norm after it (fused_layers).
  bool fuses_residual_norms(const torch::Tensor& x, const Gates* gates, const ForwardOptions& options) const;
  // All layers and the final norm, each residual add fused with the next norm: the final norm's output.
  torch::Tensor fused_layers(torch::Tensor x, const Pass& pass) const;
  torch::Tensor head(const torch::Tensor& last, const torch::Tensor& input_ids, const torch::Tensor& attention_mask) const;

  torch::Tensor embed_tokens_;
  std::vector<Layer> layers_;
  torch::Tensor final_norm_;
  torch::Tensor lm_head_;  // the embedding matrix itself when tied
  torch::Tensor score_;    // sequence classification
  torch::Tensor inv_freq_;  // fp32, as HF computes it; follows the model to its device on the first pass
};

}  // namespace secateur::model
