#pragma once
// BERT and RoBERTa: post-LN encoder with word, position and token-type embeddings, as in
// transformers' modeling_bert.py / modeling_roberta.py. Heads: masked LM (dense + act + LN, decoder
// tied to the word embeddings), sequence classification (BERT: tanh pooler → classifier;
// RoBERTa: <s> token → dense → tanh → out_proj), or none.
#include "model/attention.h"
#include "model/functional.h"
#include "model/model.h"

namespace secateur::model {

class EncoderModel : public Model {
 public:
  EncoderModel(const ModelConfig& config, torch::TensorOptions options);

  ForwardOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        const Gates* gates = nullptr, const ForwardOptions& options = {}) override;

 private:
  struct Layer {
    std::string prefix;  // HF name prefix, "bert.encoder.layer.3."
    torch::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, attn_ln_w, attn_ln_b;  // attention block
    torch::Tensor up_w, up_b, down_w, down_b, ffn_ln_w, ffn_ln_b;                // MLP block
  };
  struct Pass {
    const Gates* gates = nullptr;
    fn::HiddenGate hidden;
    AttentionMask mask;
    bool exact = false;
    const WeightTransform* weights = nullptr;
  };

  bool roberta() const { return config_.model_type == "roberta"; }
  Layer make_layer(int64_t l);
  void make_head();
  torch::Tensor embed(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids, const Pass& pass) const;
  torch::Tensor attention_block(int64_t l, const torch::Tensor& x, const Pass& pass) const;
  torch::Tensor mlp_block(int64_t l, const torch::Tensor& x, const Pass& pass) const;
  torch::Tensor layer_forward(int64_t l, const torch::Tensor& x, const Pass& pass) const;
  torch::Tensor head(const torch::Tensor& last, const Pass& pass) const;

  std::string prefix_;  // "bert." / "roberta." for task models, "" for the bare backbone
  torch::Tensor word_, position_, token_type_, emb_ln_w_, emb_ln_b_;
  std::vector<Layer> layers_;
  torch::Tensor pooler_w_, pooler_b_;
  torch::Tensor cls_dense_w_, cls_dense_b_, cls_out_w_, cls_out_b_;  // classifier (dense: RoBERTa only)
  torch::Tensor mlm_dense_w_, mlm_dense_b_, mlm_ln_w_, mlm_ln_b_, mlm_decoder_w_, mlm_bias_;
};

}  // namespace secateur::model
