#include "model/gpt2.h"

#include "model/tap.h"
#include "util/error.h"

namespace secateur::model {

namespace {

// HF's Conv1D: x·W + b with W stored [in, out].
// With a weight transform, W is replaced by its image (taps still see the live parameter).
torch::Tensor conv1d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                     const WeightTransform* transform, const std::string& prefix, const char* suffix) {
  fn::tap_projection(w, 0, x);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = w.size(1);
  return torch::addmm(b, x.reshape({-1, x.size(-1)}), fn::weight(transform, w, prefix, suffix)).view(out_shape);
}

}  // namespace

Gpt2Model::Gpt2Model(const ModelConfig& config, torch::TensorOptions options) : Model(config, options) {
  const ModelConfig& c = config_;
  const std::string p = c.task != Task::base ? "transformer." : "";
  set_base_prefix("transformer.");
  wte_ = param(p + "wte.weight", {c.vocab_size, c.hidden_size});
  wpe_ = param(p + "wpe.weight", {c.max_position_embeddings, c.hidden_size});
  for (int64_t l = 0; l < c.num_layers; ++l) layers_.push_back(make_layer(l));
  ln_f_w_ = param(p + "ln_f.weight", {c.hidden_size}, Init::ones);
  ln_f_b_ = param(p + "ln_f.bias", {c.hidden_size}, Init::zeros);
  if (c.task == Task::causal_lm) {
    if (c.tie_word_embeddings) {
      lm_head_ = wte_;
      tie("lm_head.weight", p + "wte.weight");
    } else {
      lm_head_ = param("lm_head.weight", {c.vocab_size, c.hidden_size});
    }
  } else if (c.task == Task::sequence_classification) {
    score_ = param("score.weight", {c.num_labels, c.hidden_size});
  } else if (c.task != Task::base) {
    throw UserError("config.json: gpt2 has no " + to_string(c.task) + " head");
  }
  // Older checkpoints store the causal mask as buffers.
  ignore_suffix(".attn.bias");
  ignore_suffix(".attn.masked_bias");
}

Gpt2Model::Layer Gpt2Model::make_layer(int64_t l) {
  const ModelConfig& c = config_;
  const LayerShape& s = c.layers[l];
  const std::string p = (c.task != Task::base ? "transformer.h." : "h.") + std::to_string(l) + ".";
  const int64_t hidden = c.hidden_size;
  Layer layer;
  layer.prefix = p;
  if (s.has_attention) {
    const int64_t q = c.q_width(l);
    layer.ln_1_w = param(p + "ln_1.weight", {hidden}, Init::ones);
    layer.ln_1_b = param(p + "ln_1.bias", {hidden}, Init::zeros);
    layer.c_attn_w = param(p + "attn.c_attn.weight", {hidden, 3 * q});
    layer.c_attn_b = param(p + "attn.c_attn.bias", {3 * q}, Init::zeros);
    layer.c_proj_w = param(p + "attn.c_proj.weight", {q, hidden});
    layer.c_proj_b = param(p + "attn.c_proj.bias", {hidden}, Init::zeros);
  }
  if (s.has_mlp) {
    const int64_t n = s.intermediate;
    layer.ln_2_w = param(p + "ln_2.weight", {hidden}, Init::ones);
    layer.ln_2_b = param(p + "ln_2.bias", {hidden}, Init::zeros);
    layer.c_fc_w = param(p + "mlp.c_fc.weight", {hidden, n});
    layer.c_fc_b = param(p + "mlp.c_fc.bias", {n}, Init::zeros);
    layer.mlp_proj_w = param(p + "mlp.c_proj.weight", {n, hidden});
    layer.mlp_proj_b = param(p + "mlp.c_proj.bias", {hidden}, Init::zeros);
  }
  return layer;
}

torch::Tensor Gpt2Model::attention_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const {
  const ModelConfig& c = config_;
  const LayerShape& s = c.layers[l];
  const Layer& w = layers_[l];
  const torch::Tensor h = fn::layer_norm(x, w.ln_1_w, w.ln_1_b, c.norm_eps, pass.hidden);
  const std::vector<torch::Tensor> qkv = conv1d(h, w.c_attn_w, w.c_attn_b, pass.weights, w.prefix, "attn.c_attn.weight").chunk(3, -1);
  const torch::Tensor q = split_heads(qkv[0], s.num_heads, c.head_dim);
  const torch::Tensor k = split_heads(qkv[1], s.num_heads, c.head_dim);
  const torch::Tensor v = split_heads(qkv[2], s.num_heads, c.head_dim);
  const double dropout = is_training() ? c.attention_dropout : 0.0;
  const torch::Tensor context = attention(q, k, v, pass.mask, head_gate(pass.gates, l, s), dropout, pass.exact);
  const torch::Tensor out = fn::dropout(conv1d(context, w.c_proj_w, w.c_proj_b, pass.weights, w.prefix, "attn.c_proj.weight"), c.hidden_dropout, is_training());
  return fn::apply_hidden(out, pass.hidden);
}

torch::Tensor Gpt2Model::mlp_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const {
  const ModelConfig& c = config_;
  const Layer& w = layers_[l];
  const torch::Tensor h = fn::layer_norm(x, w.ln_2_w, w.ln_2_b, c.norm_eps, pass.hidden);
  const torch::Tensor neurons = fn::activation(conv1d(h, w.c_fc_w, w.c_fc_b, pass.weights, w.prefix, "mlp.c_fc.weight"), c.activation);
  const torch::Tensor gated = pass.gates ? fn::scale(neurons, Gates::at(pass.gates->ffn, l)) : neurons;
  const torch::Tensor out = fn::dropout(conv1d(gated, w.mlp_proj_w, w.mlp_proj_b, pass.weights, w.prefix, "mlp.c_proj.weight"), c.hidden_dropout, is_training());
  return fn::apply_hidden(out, pass.hidden);
}

torch::Tensor Gpt2Model::layer_forward(int64_t l, torch::Tensor x, const Pass& pass) const {
  return fn::pre_norm_layer(
      l, std::move(x), config_.layers[l], pass.gates, [&](const torch::Tensor& h) { return attention_branch(l, h, pass); },
      [&](const torch::Tensor& h) { return mlp_branch(l, h, pass); });
}

torch::Tensor Gpt2Model::head(const torch::Tensor& last, const torch::Tensor& input_ids,
                              const torch::Tensor& attention_mask) const {
  switch (config_.task) {
    case Task::causal_lm: return fn::linear(last, lm_head_);
    case Task::sequence_classification:
      return fn::pool_last_token(fn::linear(last, score_), input_ids, attention_mask, config_.pad_token_id);
    default: return last;
  }
}

ForwardOutput Gpt2Model::forward(const torch::Tensor& input_ids_in, const torch::Tensor& attention_mask,
                                 const Gates* gates, const ForwardOptions& options) {
  const ModelConfig& c = config_;
  check_runnable();
  if (gates) gates->validate(c);
  const torch::Tensor input_ids = input_ids_in.to(device());
  const int64_t seq_len = input_ids.size(1);
  if (seq_len > c.max_position_embeddings)
    throw UserError("input of " + std::to_string(seq_len) + " tokens exceeds n_positions = " +
                    std::to_string(c.max_position_embeddings));
  Pass pass;
  pass.gates = gates;
  pass.hidden = fn::HiddenGate::from(gates, dtype());
  pass.exact = options.exact_attention;
  pass.weights = options.weights;
  pass.mask = AttentionMask::build(attention_mask, seq_len, true, 0, dtype(), device(), options.attention_mask_padded);

  const torch::Tensor positions = torch::arange(seq_len, input_ids.options().dtype(torch::kLong));
  torch::Tensor x = options.start_hidden;
  if (!x.defined()) {
    x = torch::embedding(wte_, input_ids) + torch::embedding(wpe_, positions);
    x = fn::apply_hidden(fn::dropout(x, c.embedding_dropout, is_training()), pass.hidden);
  }
  ForwardOutput out;
  for (int64_t l = resume_layer(options, c); l < c.num_layers; ++l) {
    if (options.output_hidden_states) out.hidden_states.push_back(x);
    x = layer_forward(l, x, pass);
  }
  out.last_hidden = fn::layer_norm(x, ln_f_w_, ln_f_b_, c.norm_eps, pass.hidden);
  if (options.output_hidden_states) out.hidden_states.push_back(out.last_hidden);
  out.logits = head(out.last_hidden, input_ids, attention_mask);
  return out;
}

}  // namespace secateur::model
