#include "model/llama.h"

#include "kernels/fused.h"
#include "model/tap.h"
#include "util/error.h"

namespace secateur::model {

LlamaModel::LlamaModel(const ModelConfig& config, torch::TensorOptions options) : Model(config, options) {
  const ModelConfig& c = config_;
  const bool has_head = c.task != Task::base;
  set_base_prefix("model.");
  const std::string p = has_head ? "model." : "";
  embed_tokens_ = param(p + "embed_tokens.weight", {c.vocab_size, c.hidden_size});
  for (int64_t l = 0; l < c.num_layers; ++l) layers_.push_back(make_layer(l));
  final_norm_ = param(p + "norm.weight", {c.hidden_size}, Init::ones);
  if (c.task == Task::causal_lm) {
    if (c.tie_word_embeddings) {
      lm_head_ = embed_tokens_;
      tie("lm_head.weight", p + "embed_tokens.weight");
    } else {
      lm_head_ = param("lm_head.weight", {c.vocab_size, c.hidden_size});
    }
  } else if (c.task == Task::sequence_classification) {
    score_ = param("score.weight", {c.num_labels, c.hidden_size});
  } else if (c.task != Task::base) {
    throw UserError("config.json: " + c.model_type + " has no " + to_string(c.task) + " head");
  }
  ignore_suffix("rotary_emb.inv_freq");
  ignore_suffix("rotary_emb.original_inv_freq");
  inv_freq_ = rope_inv_freq(c);
}

LlamaModel::Layer LlamaModel::make_layer(int64_t l) {
  const ModelConfig& c = config_;
  const LayerShape& s = c.layers[l];
  const std::string p = (c.task != Task::base ? "model.layers." : "layers.") + std::to_string(l) + ".";
  const int64_t hidden = c.hidden_size;
  auto bias = [&](bool present, const std::string& name, int64_t n) {
    return present ? param(p + name, {n}, Init::zeros) : torch::Tensor();
  };
  Layer layer;
  layer.prefix = p;
  if (s.has_attention) {
    const int64_t q = c.q_width(l), kv = c.kv_width(l);
    layer.attn_norm = param(p + "input_layernorm.weight", {hidden}, Init::ones);
    Attention& a = layer.attn;
    a.q_w = param(p + "self_attn.q_proj.weight", {q, hidden});
    a.q_b = bias(c.qkv_bias, "self_attn.q_proj.bias", q);
    a.k_w = param(p + "self_attn.k_proj.weight", {kv, hidden});
    a.k_b = bias(c.qkv_bias, "self_attn.k_proj.bias", kv);
    a.v_w = param(p + "self_attn.v_proj.weight", {kv, hidden});
    a.v_b = bias(c.qkv_bias, "self_attn.v_proj.bias", kv);
    a.o_w = param(p + "self_attn.o_proj.weight", {hidden, q});
    a.o_b = bias(c.o_bias, "self_attn.o_proj.bias", hidden);
    pack_rows({a.q_w, a.k_w, a.v_w});
    pack_rows({a.q_b, a.k_b, a.v_b});
  }
  if (s.has_mlp) {
    const int64_t n = s.intermediate;
    layer.mlp_norm = param(p + "post_attention_layernorm.weight", {hidden}, Init::ones);
    Mlp& m = layer.mlp;
    m.gate_w = param(p + "mlp.gate_proj.weight", {n, hidden});
    m.gate_b = bias(c.mlp_bias, "mlp.gate_proj.bias", n);
    m.up_w = param(p + "mlp.up_proj.weight", {n, hidden});
    m.up_b = bias(c.mlp_bias, "mlp.up_proj.bias", n);
    m.down_w = param(p + "mlp.down_proj.weight", {hidden, n});
    m.down_b = bias(c.mlp_bias, "mlp.down_proj.bias", hidden);
    pack_rows({m.gate_w, m.up_w});
    pack_rows({m.gate_b, m.up_b});
  }
  return layer;
}

torch::Tensor LlamaModel::attention_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const {
  return attention_of(l, fn::rms_norm(x, layers_[l].attn_norm, config_.norm_eps, pass.hidden), pass);
}

torch::Tensor LlamaModel::mlp_branch(int64_t l, const torch::Tensor& x, const Pass& pass) const {
  return mlp_of(l, fn::rms_norm(x, layers_[l].mlp_norm, config_.norm_eps, pass.hidden), pass);
}

torch::Tensor LlamaModel::attention_of(int64_t l, const torch::Tensor& h, const Pass& pass) const {
  const ModelConfig& c = config_;
  const LayerShape& s = c.layers[l];
  const Attention& a = layers_[l].attn;
  const std::string& p = layers_[l].prefix;
  const std::vector<torch::Tensor> qkv = fn::linears(h, {{a.q_w, a.q_b, "self_attn.q_proj.weight"},
                                                        {a.k_w, a.k_b, "self_attn.k_proj.weight"},
                                                        {a.v_w, a.v_b, "self_attn.v_proj.weight"}}, pass.weights, p);
  const torch::Tensor q = apply_rope(split_heads(qkv[0], s.num_heads, c.head_dim), pass.rope);
  const torch::Tensor k = apply_rope(split_heads(qkv[1], s.num_kv_heads, c.head_dim), pass.rope);
  const torch::Tensor v = split_heads(qkv[2], s.num_kv_heads, c.head_dim);
  const AttentionMask& mask = c.sliding_layers[l] ? pass.sliding_mask : pass.mask;
  const double dropout = is_training() ? c.attention_dropout : 0.0;
  const torch::Tensor context = attention(q, k, v, mask, head_gate(pass.gates, l, s), dropout, pass.exact);
  return fn::apply_hidden(fn::linear(context, a.o_w, a.o_b, pass.weights, p, "self_attn.o_proj.weight"), pass.hidden);
}

// down(act(gate(h)) · up(h)), each neuron's activation scaled by its gate.
torch::Tensor LlamaModel::mlp_of(int64_t l, const torch::Tensor& h, const Pass& pass) const {
  const ModelConfig& c = config_;
  const Mlp& m = layers_[l].mlp;
  const std::string& p = layers_[l].prefix;
  const std::vector<torch::Tensor> gate_up = fn::linears(h, {{m.gate_w, m.gate_b, "mlp.gate_proj.weight"},
                                                            {m.up_w, m.up_b, "mlp.up_proj.weight"}}, pass.weights, p);
  // SwiGLU in one pass over the gate/up halves of the packed GEMM output where the CUDA kernel runs
  // (kernels::silu_mul; elsewhere the same silu(gate)·up as below).
  const bool swiglu = c.activation == "silu" || c.activation == "swish";
  const torch::Tensor neurons = swiglu ? kernels::silu_mul(gate_up[0], gate_up[1])
                                       : fn::activation(gate_up[0], c.activation) * gate_up[1];
  const torch::Tensor gated = pass.gates ? fn::scale(neurons, Gates::at(pass.gates->ffn, l)) : neurons;
  return fn::apply_hidden(fn::linear(gated, m.down_w, m.down_b, pass.weights, p, "mlp.down_proj.weight"), pass.hidden);
}

torch::Tensor LlamaModel::layer_forward(int64_t l, torch::Tensor x, const Pass& pass) const {
  return fn::pre_norm_layer(
      l, std::move(x), config_.layers[l], pass.gates, [&](const torch::Tensor& h) { return attention_branch(l, h, pass); },
      [&](const torch::Tensor& h) { return mlp_branch(l, h, pass); });
}

bool LlamaModel::fuses_residual_norms(const torch::Tensor& x, const Gates* gates, const ForwardOptions& options) const {
  // Only plain inference: gates scale the branches and hidden dims, taps and hidden states observe
  // the stream between the add and the norm, a resumed pass starts mid-stream, and a pass with
  // gradients (say, of LoRA weights under autocast while the model is frozen) keeps autograd's ops.
  if (torch::GradMode::is_enabled() || gates || options.output_hidden_states || options.start_hidden.defined() ||
      current_tap())
    return false;
  std::vector<torch::Tensor> inputs{x, final_norm_};
  for (const Layer& layer : layers_)
    for (const torch::Tensor& w : {layer.attn_norm, layer.mlp_norm})
      if (w.defined()) {
        if (w.scalar_type() != x.scalar_type()) return false;
        inputs.push_back(w);
      }
  return kernels::supports(x.scalar_type()) && final_norm_.scalar_type() == x.scalar_type() && kernels::launches(inputs);
}

// The same blocks as layer_forward's, in the same order, with x + branch and the next block's norm
// computed by one kernel (kernels::add_rms_norm): the residual stream is read and written once per
// block instead of once by the add and again by the norm. `pending` is the branch output not yet
// added to x.
torch::Tensor LlamaModel::fused_layers(torch::Tensor x, const Pass& pass) const {
  const double eps = config_.norm_eps;
  torch::Tensor pending;
  auto add_and_norm = [&](const torch::Tensor& weight) {
    if (pending.defined() && pending.scalar_type() != x.scalar_type()) {  // autocast: the add promotes
      x = x + pending;
      pending = torch::Tensor();
    }
    if (!pending.defined()) return fn::rms_norm(x, weight, eps);
    kernels::AddRmsNorm r = kernels::add_rms_norm(x, pending, weight, eps);
    x = std::move(r.sum);
    pending = torch::Tensor();
    return r.normed;
  };
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    const LayerShape& s = config_.layers[l];
    if (s.has_attention) pending = attention_of(l, add_and_norm(layers_[l].attn_norm), pass);
    if (s.has_mlp) pending = mlp_of(l, add_and_norm(layers_[l].mlp_norm), pass);
  }
  return add_and_norm(final_norm_);
}

torch::Tensor LlamaModel::head(const torch::Tensor& last, const torch::Tensor& input_ids,
                               const torch::Tensor& attention_mask) const {
  switch (config_.task) {
    case Task::causal_lm: return fn::linear(last, lm_head_);
    case Task::sequence_classification:
      return fn::pool_last_token(fn::linear(last, score_), input_ids, attention_mask, config_.pad_token_id);
    default: return last;
  }
}

ForwardOutput LlamaModel::forward(const torch::Tensor& input_ids_in, const torch::Tensor& attention_mask,
                                  const Gates* gates, const ForwardOptions& options) {
  const ModelConfig& c = config_;
  check_runnable();
  if (gates) gates->validate(c);
  const torch::Tensor input_ids = input_ids_in.to(device());
  const int64_t seq_len = input_ids.size(1);
  const torch::ScalarType dtype = this->dtype();
  Pass pass;
  pass.gates = gates;
  pass.hidden = fn::HiddenGate::from(gates, dtype);
  pass.exact = options.exact_attention;
  pass.weights = options.weights;
  pass.mask = AttentionMask::build(attention_mask, seq_len, true, 0, dtype, device(), options.attention_mask_padded);
  if (c.sliding_window > 0)
    pass.sliding_mask = AttentionMask::build(attention_mask, seq_len, true, c.sliding_window, dtype, device(),
                                             options.attention_mask_padded);
  // Kept on the model's device once moved: a host-to-device copy per pass would be a sync that a
  // captured CUDA graph cannot hold (the fp32 values are the same wherever they live).
  if (inv_freq_.device() != device()) inv_freq_ = inv_freq_.to(device());
  pass.rope = rope_tables(inv_freq_, seq_len, dtype);

  ForwardOutput out;
  torch::Tensor x = options.start_hidden.defined() ? options.start_hidden
                                                  : fn::apply_hidden(torch::embedding(embed_tokens_, input_ids), pass.hidden);
  const int64_t first_layer = resume_layer(options, c);
  if (fuses_residual_norms(x, gates, options)) {
    out.last_hidden = fused_layers(std::move(x), pass);
  } else {
    for (int64_t l = first_layer; l < c.num_layers; ++l) {
      if (options.output_hidden_states) out.hidden_states.push_back(x);
      x = layer_forward(l, x, pass);
    }
    out.last_hidden = fn::rms_norm(x, final_norm_, c.norm_eps, pass.hidden);
    if (options.output_hidden_states) out.hidden_states.push_back(out.last_hidden);
  }
  out.logits = head(out.last_hidden, input_ids, attention_mask);
  return out;
}

}  // namespace secateur::model
