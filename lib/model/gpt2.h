#pragma once
// GPT-2: pre-LN decoder with learned positions, a fused qkv projection and gelu_new, as in
// transformers' modeling_gpt2.py. Its Conv1D weights keep HF's [in, out] layout: x·W + b.
#include "model/attention.h"
#include "model/functional.h"
#include "model/model.h"

namespace secateur::model {

class Gpt2Model : public Model {
 public:
  Gpt2Model(const ModelConfig& config, torch::TensorOptions options);

  ForwardOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        const Gates* gates = nullptr, const ForwardOptions& options = {}) override;

 private:
  struct Layer {
    std::string prefix;  // HF name prefix, "transformer.h.3."
    torch::Tensor ln_1_w, ln_1_b, c_attn_w, c_attn_b, c_proj_w, c_proj_b;  // attention block
    torch::Tensor ln_2_w, ln_2_b, c_fc_w, c_fc_b, mlp_proj_w, mlp_proj_b;  // MLP block
  };
  struct Pass {
    const Gates* gates = nullptr;
    fn::HiddenGate hidden;
    AttentionMask mask;
    bool exact = false;
    const WeightTransform* weights = nullptr;
  };

  Layer make_layer(int64_t l);
  torch::Tensor attention_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const;
  torch::Tensor mlp_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const;
  torch::Tensor layer_forward(int64_t l, torch::Tensor x, const Pass& pass) const;
  torch::Tensor head(const torch::Tensor& last, const torch::Tensor& input_ids, const torch::Tensor& attention_mask) const;

  torch::Tensor wte_, wpe_;
  std::vector<Layer> layers_;
  torch::Tensor ln_f_w_, ln_f_b_;
  torch::Tensor lm_head_;  // wte itself when tied
  torch::Tensor score_;
};

}  // namespace secateur::model
