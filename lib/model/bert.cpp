#include "model/bert.h"

#include "model/tap.h"
#include "util/error.h"

namespace secateur::model {

EncoderModel::EncoderModel(const ModelConfig& config, torch::TensorOptions options) : Model(config, options) {
  const ModelConfig& c = config_;
  set_base_prefix(c.model_type + ".");
  prefix_ = c.task != Task::base ? c.model_type + "." : "";
  const std::string e = prefix_ + "embeddings.";
  word_ = param(e + "word_embeddings.weight", {c.vocab_size, c.hidden_size});
  position_ = param(e + "position_embeddings.weight", {c.max_position_embeddings, c.hidden_size});
  token_type_ = param(e + "token_type_embeddings.weight", {c.type_vocab_size, c.hidden_size});
  emb_ln_w_ = param(e + "LayerNorm.weight", {c.hidden_size}, Init::ones);
  emb_ln_b_ = param(e + "LayerNorm.bias", {c.hidden_size}, Init::zeros);
  for (int64_t l = 0; l < c.num_layers; ++l) layers_.push_back(make_layer(l));
  make_head();
  ignore_suffix("embeddings.position_ids");
  ignore_suffix("embeddings.token_type_ids");
}

EncoderModel::Layer EncoderModel::make_layer(int64_t l) {
  const ModelConfig& c = config_;
  const LayerShape& s = c.layers[l];
  const std::string p = prefix_ + "encoder.layer." + std::to_string(l) + ".";
  const int64_t hidden = c.hidden_size;
  Layer w;
  w.prefix = p;
  if (s.has_attention) {
    const int64_t q = c.q_width(l);
    w.q_w = param(p + "attention.self.query.weight", {q, hidden});
    w.q_b = param(p + "attention.self.query.bias", {q}, Init::zeros);
    w.k_w = param(p + "attention.self.key.weight", {q, hidden});
    w.k_b = param(p + "attention.self.key.bias", {q}, Init::zeros);
    w.v_w = param(p + "attention.self.value.weight", {q, hidden});
    w.v_b = param(p + "attention.self.value.bias", {q}, Init::zeros);
    pack_rows({w.q_w, w.k_w, w.v_w});
    pack_rows({w.q_b, w.k_b, w.v_b});
    w.o_w = param(p + "attention.output.dense.weight", {hidden, q});
    w.o_b = param(p + "attention.output.dense.bias", {hidden}, Init::zeros);
    w.attn_ln_w = param(p + "attention.output.LayerNorm.weight", {hidden}, Init::ones);
    w.attn_ln_b = param(p + "attention.output.LayerNorm.bias", {hidden}, Init::zeros);
  }
  if (s.has_mlp) {
    const int64_t n = s.intermediate;
    w.up_w = param(p + "intermediate.dense.weight", {n, hidden});
    w.up_b = param(p + "intermediate.dense.bias", {n}, Init::zeros);
    w.down_w = param(p + "output.dense.weight", {hidden, n});
    w.down_b = param(p + "output.dense.bias", {hidden}, Init::zeros);
    w.ffn_ln_w = param(p + "output.LayerNorm.weight", {hidden}, Init::ones);
    w.ffn_ln_b = param(p + "output.LayerNorm.bias", {hidden}, Init::zeros);
  }
  return w;
}

void EncoderModel::make_head() {
  const ModelConfig& c = config_;
  const int64_t hidden = c.hidden_size;
  // HF builds the pooler for the bare model and for BERT's classifier, never for masked LM or
  // RoBERTa's classifier (which pools with its own dense layer).
  const bool pooler = c.task == Task::base || (c.task == Task::sequence_classification && !roberta());
  if (pooler) {
    pooler_w_ = param(prefix_ + "pooler.dense.weight", {hidden, hidden});
    pooler_b_ = param(prefix_ + "pooler.dense.bias", {hidden}, Init::zeros);
  }
  const std::string word_name = prefix_ + "embeddings.word_embeddings.weight";
  if (c.task == Task::sequence_classification) {
    const std::string p = roberta() ? "classifier.out_proj." : "classifier.";
    if (roberta()) {
      cls_dense_w_ = param("classifier.dense.weight", {hidden, hidden});
      cls_dense_b_ = param("classifier.dense.bias", {hidden}, Init::zeros);
    }
    cls_out_w_ = param(p + "weight", {c.num_labels, hidden});
    cls_out_b_ = param(p + "bias", {c.num_labels}, Init::zeros);
  } else if (c.task == Task::masked_lm) {
    const std::string p = roberta() ? "lm_head." : "cls.predictions.";
    const std::string dense = roberta() ? "lm_head.dense." : "cls.predictions.transform.dense.";
    const std::string norm = roberta() ? "lm_head.layer_norm." : "cls.predictions.transform.LayerNorm.";
    mlm_dense_w_ = param(dense + "weight", {hidden, hidden});
    mlm_dense_b_ = param(dense + "bias", {hidden}, Init::zeros);
    mlm_ln_w_ = param(norm + "weight", {hidden}, Init::ones);
    mlm_ln_b_ = param(norm + "bias", {hidden}, Init::zeros);
    if (c.tie_word_embeddings) {
      mlm_decoder_w_ = word_;
      tie(p + "decoder.weight", word_name);
    } else {
      mlm_decoder_w_ = param(p + "decoder.weight", {c.vocab_size, hidden});
    }
    mlm_bias_ = param(p + "bias", {c.vocab_size}, Init::zeros);
    tie(p + "decoder.bias", p + "bias");  // the decoder's bias is the same Parameter in HF
  }
}

// LayerNorm(word + token_type + position); RoBERTa counts positions over non-pad tokens from
// padding_idx + 1, as HF's create_position_ids_from_input_ids.
torch::Tensor EncoderModel::embed(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                  const Pass& pass) const {
  const ModelConfig& c = config_;
  torch::Tensor positions;
  if (roberta()) {
    const int64_t pad = c.pad_token_id.value_or(1);
    const torch::Tensor real = input_ids.ne(pad).to(torch::kLong);
    positions = torch::cumsum(real, 1) * real + pad;
  } else {
    positions = torch::arange(input_ids.size(1), input_ids.options().dtype(torch::kLong));
  }
  const torch::Tensor types = token_type_ids.defined() ? token_type_ids.to(input_ids.device())
                                                       : torch::zeros_like(input_ids);
  torch::Tensor x = torch::embedding(word_, input_ids) + torch::embedding(token_type_, types);
  x = x + torch::embedding(position_, positions);
  x = fn::layer_norm(x, emb_ln_w_, emb_ln_b_, c.norm_eps, pass.hidden);
  return fn::dropout(x, c.embedding_dropout, is_training());
}

// LayerNorm(x + dense(attention(x))): the whole post-LN block, so a gate can interpolate it.
torch::Tensor EncoderModel::attention_block(int64_t l, const torch::Tensor& x, const Pass& pass) const {
  const ModelConfig& c = config_;
  const LayerShape& s = c.layers[l];
  const Layer& w = layers_[l];
  const std::vector<torch::Tensor> qkv = fn::linears(x, {{w.q_w, w.q_b, "attention.self.query.weight"},
                                                        {w.k_w, w.k_b, "attention.self.key.weight"},
                                                        {w.v_w, w.v_b, "attention.self.value.weight"}}, pass.weights, w.prefix);
  const torch::Tensor q = split_heads(qkv[0], s.num_heads, c.head_dim);
  const torch::Tensor k = split_heads(qkv[1], s.num_heads, c.head_dim);
  const torch::Tensor v = split_heads(qkv[2], s.num_heads, c.head_dim);
  const double dropout = is_training() ? c.attention_dropout : 0.0;
  const torch::Tensor context = attention(q, k, v, pass.mask, head_gate(pass.gates, l, s), dropout, pass.exact);
  const torch::Tensor out = fn::dropout(fn::linear(context, w.o_w, w.o_b, pass.weights, w.prefix, "attention.output.dense.weight"), c.hidden_dropout, is_training());
  return fn::layer_norm(fn::apply_hidden(out, pass.hidden) + x, w.attn_ln_w, w.attn_ln_b, c.norm_eps, pass.hidden);
}

// LayerNorm(x + down(act(up(x)))), each neuron's activation scaled by its gate.
torch::Tensor EncoderModel::mlp_block(int64_t l, const torch::Tensor& x, const Pass& pass) const {
  const ModelConfig& c = config_;
  const Layer& w = layers_[l];
  const torch::Tensor neurons = fn::activation(fn::linear(x, w.up_w, w.up_b, pass.weights, w.prefix, "intermediate.dense.weight"), c.activation);
  const torch::Tensor gated = pass.gates ? fn::scale(neurons, Gates::at(pass.gates->ffn, l)) : neurons;
  const torch::Tensor out = fn::dropout(fn::linear(gated, w.down_w, w.down_b, pass.weights, w.prefix, "output.dense.weight"), c.hidden_dropout, is_training());
  return fn::layer_norm(fn::apply_hidden(out, pass.hidden) + x, w.ffn_ln_w, w.ffn_ln_b, c.norm_eps, pass.hidden);
}

torch::Tensor EncoderModel::layer_forward(int64_t l, const torch::Tensor& input, const Pass& pass) const {
  const LayerShape& s = config_.layers[l];
  const Gates* g = pass.gates;
  torch::Tensor x = input;
  if (s.has_attention) {
    x = fn::interpolate(x, attention_block(l, x, pass), g ? Gates::at(g->attn_block, l) : torch::Tensor());
    fn::tap_block(l, true, x);
  }
  if (s.has_mlp) {
    x = fn::interpolate(x, mlp_block(l, x, pass), g ? Gates::at(g->mlp_block, l) : torch::Tensor());
    fn::tap_block(l, false, x);
  }
  return g ? fn::interpolate(input, x, Gates::at(g->layer, l)) : x;
}

torch::Tensor EncoderModel::head(const torch::Tensor& last, const Pass& pass) const {
  const ModelConfig& c = config_;
  const bool training = is_training();
  if (c.task == Task::masked_lm) {
    const torch::Tensor h = fn::activation(fn::linear(last, mlm_dense_w_, mlm_dense_b_), c.activation);
    return fn::linear(fn::layer_norm(h, mlm_ln_w_, mlm_ln_b_, c.norm_eps, pass.hidden), mlm_decoder_w_, mlm_bias_);
  }
  if (c.task != Task::sequence_classification) return last;
  const torch::Tensor first = last.select(1, 0);  // [CLS] / <s>
  // The pooled vector is hidden-sized (HF sizes the pooler by hidden_size), so the hidden gate applies.
  if (roberta()) {
    const torch::Tensor dense = fn::linear(fn::dropout(first, c.classifier_dropout, training), cls_dense_w_, cls_dense_b_);
    const torch::Tensor h = fn::apply_hidden(torch::tanh(dense), pass.hidden);
    return fn::linear(fn::dropout(h, c.classifier_dropout, training), cls_out_w_, cls_out_b_);
  }
  const torch::Tensor pooled = fn::apply_hidden(torch::tanh(fn::linear(first, pooler_w_, pooler_b_)), pass.hidden);
  return fn::linear(fn::dropout(pooled, c.classifier_dropout, training), cls_out_w_, cls_out_b_);
}

ForwardOutput EncoderModel::forward(const torch::Tensor& input_ids_in, const torch::Tensor& attention_mask,
                                    const Gates* gates, const ForwardOptions& options) {
  const ModelConfig& c = config_;
  check_runnable();
  if (gates) gates->validate(c);
  const torch::Tensor input_ids = input_ids_in.to(device());
  const int64_t seq_len = input_ids.size(1);
  const int64_t last_position = roberta() ? seq_len + c.pad_token_id.value_or(1) : seq_len - 1;
  if (last_position >= c.max_position_embeddings)
    throw UserError("input of " + std::to_string(seq_len) + " tokens needs position " + std::to_string(last_position) +
                    ", beyond max_position_embeddings = " + std::to_string(c.max_position_embeddings));
  Pass pass;
  pass.gates = gates;
  pass.hidden = fn::HiddenGate::from(gates, dtype());
  pass.exact = options.exact_attention;
  pass.weights = options.weights;
  pass.mask = AttentionMask::build(attention_mask, seq_len, false, 0, dtype(), device(), options.attention_mask_padded);

  ForwardOutput out;
  torch::Tensor x = options.start_hidden.defined() ? options.start_hidden : embed(input_ids, options.token_type_ids, pass);
  if (options.output_hidden_states) out.hidden_states.push_back(x);
  for (int64_t l = resume_layer(options, c); l < c.num_layers; ++l) {
    x = layer_forward(l, x, pass);
    if (options.output_hidden_states) out.hidden_states.push_back(x);
  }
  out.last_hidden = x;
  out.logits = head(x, pass);
  return out;
}

}  // namespace secateur::model
