#include "model/prunable.h"

#include <algorithm>
#include <set>
#include <stdexcept>

namespace secateur::model {

std::string to_string(GroupKind kind) {
  switch (kind) {
    case GroupKind::head: return "head";
    case GroupKind::kv_group: return "kv_group";
    case GroupKind::ffn_neuron: return "ffn_neuron";
    case GroupKind::hidden_dim: return "hidden_dim";
    case GroupKind::attn_block: return "attn_block";
    case GroupKind::mlp_block: return "mlp_block";
    case GroupKind::layer: return "layer";
  }
  return "?";
}

size_t PrunableStructure::count(GroupKind kind) const {
  size_t n = 0;
  for (const Group& g : groups) n += g.kind == kind;
  return n;
}

std::vector<const Group*> PrunableStructure::of_kind(GroupKind kind) const {
  std::vector<const Group*> out;
  for (const Group& g : groups)
    if (g.kind == kind) out.push_back(&g);
  return out;
}

namespace {

// One projection as the structure sees it: its HF tensors, the dim holding its outputs (0 for
// Linear [out, in], 1 for Conv1D [in, out]) and where its part of a fused tensor begins
// (GPT-2's c_attn holds q, k and v side by side).
struct Projection {
  std::string weight, bias;  // bias empty when absent
  int64_t out_dim = 0;
  int64_t offset = 0;
  int64_t in_dim() const { return 1 - out_dim; }
};

struct LayerTensors {
  std::vector<Projection> qkv;        // q, k, v (the same tensor thrice for GPT-2)
  Projection o;
  std::vector<std::string> attn_norm;  // the attention block's hidden-sized norm vectors
  std::vector<Projection> up;          // up (and gate): their outputs are the neurons
  Projection down;
  std::vector<std::string> mlp_norm;
};

// Where a family keeps each role's tensors: the only family-specific part of this file.
struct ModelTensors {
  bool grouped_kv = false;                  // k/v belong to kv_group groups (llama family)
  std::vector<std::string> embeddings;      // [rows, hidden] lookup tables
  std::vector<std::string> hidden_vectors;  // hidden-sized vectors outside the layers
  std::vector<Projection> readers;          // head projections reading the residual stream
  std::vector<Projection> writers;          // head projections producing hidden-sized outputs
  std::set<std::string> per_token_matmuls;  // weights multiplied once per token (FLOPs)
  std::vector<LayerTensors> layers;
};

Projection linear(const std::string& name, bool bias) { return {name + ".weight", bias ? name + ".bias" : "", 0, 0}; }

ModelTensors llama_tensors(const ModelConfig& c) {
  ModelTensors t;
  t.grouped_kv = true;
  const std::string p = c.task == Task::base ? "" : "model.";
  t.embeddings = {p + "embed_tokens.weight"};
  t.hidden_vectors = {p + "norm.weight"};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string n = p + "layers." + std::to_string(l) + ".";
    LayerTensors lt;
    lt.qkv = {linear(n + "self_attn.q_proj", c.qkv_bias), linear(n + "self_attn.k_proj", c.qkv_bias),
              linear(n + "self_attn.v_proj", c.qkv_bias)};
    lt.o = linear(n + "self_attn.o_proj", c.o_bias);
    lt.attn_norm = {n + "input_layernorm.weight"};
    lt.up = {linear(n + "mlp.gate_proj", c.mlp_bias), linear(n + "mlp.up_proj", c.mlp_bias)};
    lt.down = linear(n + "mlp.down_proj", c.mlp_bias);
    lt.mlp_norm = {n + "post_attention_layernorm.weight"};
    t.layers.push_back(lt);
  }
  if (c.task == Task::causal_lm && c.tie_word_embeddings) t.per_token_matmuls.insert(t.embeddings[0]);
  if (c.task == Task::causal_lm && !c.tie_word_embeddings) t.readers.push_back(linear("lm_head", false));
  if (c.task == Task::sequence_classification) t.readers.push_back(linear("score", false));
  return t;
}

ModelTensors gpt2_tensors(const ModelConfig& c) {
  ModelTensors t;
  const std::string p = c.task == Task::base ? "" : "transformer.";
  t.embeddings = {p + "wte.weight", p + "wpe.weight"};
  t.hidden_vectors = {p + "ln_f.weight", p + "ln_f.bias"};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string n = p + "h." + std::to_string(l) + ".";
    const int64_t q = c.q_width(l);
    const Projection c_attn{n + "attn.c_attn.weight", n + "attn.c_attn.bias", 1, 0};
    LayerTensors lt;
    lt.qkv = {c_attn, c_attn, c_attn};
    lt.qkv[1].offset = q;
    lt.qkv[2].offset = 2 * q;
    lt.o = {n + "attn.c_proj.weight", n + "attn.c_proj.bias", 1, 0};
    lt.attn_norm = {n + "ln_1.weight", n + "ln_1.bias"};
    lt.up = {{n + "mlp.c_fc.weight", n + "mlp.c_fc.bias", 1, 0}};
    lt.down = {n + "mlp.c_proj.weight", n + "mlp.c_proj.bias", 1, 0};
    lt.mlp_norm = {n + "ln_2.weight", n + "ln_2.bias"};
    t.layers.push_back(lt);
  }
  if (c.task == Task::causal_lm && c.tie_word_embeddings) t.per_token_matmuls.insert(t.embeddings[0]);
  if (c.task == Task::causal_lm && !c.tie_word_embeddings) t.readers.push_back(linear("lm_head", false));
  if (c.task == Task::sequence_classification) t.readers.push_back(linear("score", false));
  return t;
}

ModelTensors encoder_tensors(const ModelConfig& c) {
  ModelTensors t;
  const bool roberta = c.model_type == "roberta";
  const std::string p = c.task == Task::base ? "" : c.model_type + ".";
  const std::string e = p + "embeddings.";
  t.embeddings = {e + "word_embeddings.weight", e + "position_embeddings.weight", e + "token_type_embeddings.weight"};
  t.hidden_vectors = {e + "LayerNorm.weight", e + "LayerNorm.bias"};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string n = p + "encoder.layer." + std::to_string(l) + ".";
    LayerTensors lt;
    lt.qkv = {linear(n + "attention.self.query", true), linear(n + "attention.self.key", true),
              linear(n + "attention.self.value", true)};
    lt.o = linear(n + "attention.output.dense", true);
    lt.attn_norm = {n + "attention.output.LayerNorm.weight", n + "attention.output.LayerNorm.bias"};
    lt.up = {linear(n + "intermediate.dense", true)};
    lt.down = linear(n + "output.dense", true);
    lt.mlp_norm = {n + "output.LayerNorm.weight", n + "output.LayerNorm.bias"};
    t.layers.push_back(lt);
  }
  // The pooler (or RoBERTa's classifier dense) is hidden × hidden in HF, so a hidden dim owns its
  // row, column and bias entry, and the classifier's column. They run once per sequence:
  // parameters, not per-token FLOPs.
  std::vector<Projection> square;
  if (c.task == Task::base || (c.task == Task::sequence_classification && !roberta))
    square.push_back(linear(p + "pooler.dense", true));
  if (c.task == Task::sequence_classification) {
    square.push_back(linear(roberta ? "classifier.dense" : p + "pooler.dense", true));
    t.readers.push_back(linear(roberta ? "classifier.out_proj" : "classifier", true));
  }
  for (const Projection& q : square) {
    if (std::any_of(t.readers.begin(), t.readers.end(), [&](const Projection& r) { return r.weight == q.weight; })) continue;
    t.readers.push_back(q);
    t.writers.push_back(q);
  }
  if (c.task == Task::masked_lm) {
    const std::string h = roberta ? "lm_head." : "cls.predictions.";
    const Projection dense = linear(roberta ? "lm_head.dense" : "cls.predictions.transform.dense", true);
    const std::string norm = roberta ? "lm_head.layer_norm." : "cls.predictions.transform.LayerNorm.";
    t.readers.push_back(dense);
    t.writers.push_back(dense);
    t.hidden_vectors.push_back(norm + "weight");
    t.hidden_vectors.push_back(norm + "bias");
    t.per_token_matmuls.insert(dense.weight);
    if (c.tie_word_embeddings) {
      t.per_token_matmuls.insert(t.embeddings[0]);
    } else {
      t.readers.push_back(linear(h + "decoder", false));
      t.per_token_matmuls.insert(h + "decoder.weight");
    }
  }
  return t;
}

ModelTensors tensors_of(const ModelConfig& c) {
  ModelTensors t;
  switch (c.family) {
    case Family::encoder: t = encoder_tensors(c); break;
    case Family::gpt2: t = gpt2_tensors(c); break;
    case Family::llama: t = llama_tensors(c); break;
  }
  for (const LayerTensors& lt : t.layers) {
    for (const Projection& p : lt.qkv) t.per_token_matmuls.insert(p.weight);
    t.per_token_matmuls.insert(lt.o.weight);
    for (const Projection& p : lt.up) t.per_token_matmuls.insert(p.weight);
    t.per_token_matmuls.insert(lt.down.weight);
  }
  if (c.family != Family::encoder)
    for (const Projection& r : t.readers) t.per_token_matmuls.insert(r.weight);
  return t;
}

// Appends slices to one group, counting its parameters and per-token FLOPs from the live tensors.
class GroupBuilder {
 public:
  GroupBuilder(const Model& model, const ModelTensors& tensors) : model_(model), tensors_(tensors) {}

  Group start(GroupKind kind, int64_t layer, int64_t index) const { return Group{kind, layer, index, {}, 0, 0}; }

  void slice(Group& g, const std::string& name, int64_t dim, int64_t start, int64_t length) const {
    if (name.empty()) return;
    if (!model_.has_hf_parameter(name))
      throw std::logic_error("prunable structure names '" + name + "', which the model does not have");
    const torch::Tensor t = model_.hf_parameter(name);
    const int64_t params = length * (t.numel() / t.size(dim));
    g.slices.push_back({name, dim, start, length});
    g.params += params;
    if (tensors_.per_token_matmuls.count(name)) g.flops_per_token += 2 * params;
  }
  void whole(Group& g, const std::string& name) const {
    if (!name.empty()) slice(g, name, 0, 0, model_.hf_parameter(name).size(0));
  }
  // Output units [start, start + length) of a projection: weight rows (columns for Conv1D), bias entries.
  void outputs(Group& g, const Projection& p, int64_t start, int64_t length) const {
    slice(g, p.weight, p.out_dim, p.offset + start, length);
    slice(g, p.bias, 0, p.offset + start, length);
  }
  void inputs(Group& g, const Projection& p, int64_t start, int64_t length) const {
    slice(g, p.weight, p.in_dim(), start, length);
  }

 private:
  const Model& model_;
  const ModelTensors& tensors_;
};

// q·kᵀ and p·v for one head, per token: over seq_len keys, or (seq_len + 1) / 2 on average when causal.
int64_t attention_flops_per_head(const ModelConfig& c, int64_t seq_len) {
  return c.is_causal() ? 2 * c.head_dim * (seq_len + 1) : 4 * c.head_dim * seq_len;
}

void add_layer_groups(PrunableStructure& s, const GroupBuilder& b, const ModelConfig& c, const ModelTensors& t, int64_t l) {
  const LayerShape& shape = c.layers[l];
  const LayerTensors& lt = t.layers[l];
  const int64_t hd = c.head_dim;
  const int64_t attention_flops = attention_flops_per_head(c, s.seq_len);
  Group layer = b.start(GroupKind::layer, l, 0);
  if (shape.has_attention) {
    for (int64_t h = 0; h < shape.num_heads; ++h) {
      Group g = b.start(GroupKind::head, l, h);
      b.outputs(g, lt.qkv[0], h * hd, hd);
      if (!t.grouped_kv) {
        b.outputs(g, lt.qkv[1], h * hd, hd);
        b.outputs(g, lt.qkv[2], h * hd, hd);
      }
      b.inputs(g, lt.o, h * hd, hd);
      g.flops_per_token += attention_flops;
      s.groups.push_back(std::move(g));
    }
    for (int64_t kv = 0; t.grouped_kv && kv < shape.num_kv_heads; ++kv) {
      Group g = b.start(GroupKind::kv_group, l, kv);
      b.outputs(g, lt.qkv[1], kv * hd, hd);
      b.outputs(g, lt.qkv[2], kv * hd, hd);
      s.groups.push_back(std::move(g));
    }
    Group block = b.start(GroupKind::attn_block, l, 0);
    for (Group* g : {&block, &layer}) {
      std::set<std::string> seen;  // GPT-2's q, k and v share one tensor
      for (const Projection& p : lt.qkv) {
        if (!seen.insert(p.weight).second) continue;
        b.whole(*g, p.weight);
        b.whole(*g, p.bias);
      }
      b.whole(*g, lt.o.weight);
      b.whole(*g, lt.o.bias);
      for (const std::string& n : lt.attn_norm) b.whole(*g, n);
      g->flops_per_token += shape.num_heads * attention_flops;
    }
    s.groups.push_back(std::move(block));
  }
  if (shape.has_mlp) {
    for (int64_t i = 0; i < shape.intermediate; ++i) {
      Group g = b.start(GroupKind::ffn_neuron, l, i);
      for (const Projection& p : lt.up) b.outputs(g, p, i, 1);
      b.inputs(g, lt.down, i, 1);
      s.groups.push_back(std::move(g));
    }
    Group block = b.start(GroupKind::mlp_block, l, 0);
    for (Group* g : {&block, &layer}) {
      for (const Projection& p : lt.up) {
        b.whole(*g, p.weight);
        b.whole(*g, p.bias);
      }
      b.whole(*g, lt.down.weight);
      b.whole(*g, lt.down.bias);
      for (const std::string& n : lt.mlp_norm) b.whole(*g, n);
    }
    s.groups.push_back(std::move(block));
  }
  s.groups.push_back(std::move(layer));
}

Group hidden_dim_group(const GroupBuilder& b, const ModelConfig& c, const ModelTensors& t, int64_t d) {
  Group g = b.start(GroupKind::hidden_dim, -1, d);
  for (const std::string& n : t.embeddings) b.slice(g, n, 1, d, 1);
  for (const std::string& n : t.hidden_vectors) b.slice(g, n, 0, d, 1);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerTensors& lt = t.layers[l];
    if (c.layers[l].has_attention) {
      std::set<std::string> seen;
      for (const Projection& p : lt.qkv)
        if (seen.insert(p.weight).second) b.inputs(g, p, d, 1);
      b.outputs(g, lt.o, d, 1);
      for (const std::string& n : lt.attn_norm) b.slice(g, n, 0, d, 1);
    }
    if (c.layers[l].has_mlp) {
      for (const Projection& p : lt.up) b.inputs(g, p, d, 1);
      b.outputs(g, lt.down, d, 1);
      for (const std::string& n : lt.mlp_norm) b.slice(g, n, 0, d, 1);
    }
  }
  for (const Projection& p : t.readers) b.inputs(g, p, d, 1);
  for (const Projection& p : t.writers) b.outputs(g, p, d, 1);
  return g;
}

}  // namespace

PrunableStructure prunable_structure(const Model& model, const PrunableOptions& options) {
  const ModelConfig& c = model.config();
  const ModelTensors tensors = tensors_of(c);
  const GroupBuilder builder(model, tensors);
  PrunableStructure s;
  s.seq_len = options.seq_len;
  for (int64_t l = 0; l < c.num_layers; ++l) add_layer_groups(s, builder, c, tensors, l);
  if (options.hidden_dims)
    for (int64_t d = 0; d < c.hidden_size; ++d) s.groups.push_back(hidden_dim_group(builder, c, tensors, d));
  return s;
}

ParameterCount parameter_count(const Model& model) {
  const ModelTensors tensors = tensors_of(model.config());
  ParameterCount count;
  for (const std::string& name : model.hf_names()) count.total += model.hf_parameter(name).numel();
  count.non_embedding = count.total;
  for (const std::string& name : tensors.embeddings) count.non_embedding -= model.hf_parameter(name).numel();
  return count;
}

int64_t flops_per_token(const ModelConfig& c, int64_t seq_len) {
  const int64_t hidden = c.hidden_size;
  int64_t flops = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerShape& s = c.layers[l];
    if (s.has_attention) {
      const int64_t q = c.q_width(l), kv = c.kv_width(l);
      flops += 2 * hidden * (q + 2 * kv) + 2 * q * hidden;
      flops += s.num_heads * attention_flops_per_head(c, seq_len);
    }
    if (s.has_mlp) flops += 2 * hidden * s.intermediate * (c.family == Family::llama ? 3 : 2);
  }
  if (c.task == Task::masked_lm) flops += 2 * hidden * hidden + 2 * hidden * c.vocab_size;
  if (c.task == Task::causal_lm) flops += 2 * hidden * c.vocab_size;
  if (c.task == Task::sequence_classification && c.family != Family::encoder) flops += 2 * hidden * c.num_labels;
  return flops;
}

}  // namespace secateur::model
