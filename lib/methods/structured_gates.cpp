#include "methods/structured_gates.h"

#include <algorithm>

#include "model/prunable.h"
#include "util/error.h"

namespace secateur::methods {

namespace {

torch::Tensor at(const std::vector<torch::Tensor>& list, int64_t l) {
  return l < static_cast<int64_t>(list.size()) ? list[l] : torch::Tensor();
}

void multiply(torch::Tensor& slot, const torch::Tensor& z) {
  if (!z.defined()) return;
  slot = slot.defined() ? slot * z : z;
}

void multiply_all(std::vector<torch::Tensor>& into, const std::vector<torch::Tensor>& from, int64_t layers) {
  into.resize(std::max<size_t>(into.size(), static_cast<size_t>(layers)));
  for (int64_t l = 0; l < layers; ++l) multiply(into[l], at(from, l));
}

torch::Tensor indicator(const std::vector<int64_t>& kept, int64_t n) {
  torch::Tensor z = torch::zeros({n}, torch::kDouble);
  for (int64_t i : kept) z[i] = 1.0;
  return z;
}

// Σ p·(M·h̄ + V) over one layer's units, times the block's probability (undefined = 1).
torch::Tensor block_size(const torch::Tensor& p, const torch::Tensor& block, const torch::Tensor& scaled,
                         const torch::Tensor& fixed, const torch::Tensor& hidden_fraction) {
  torch::Tensor per_unit = scaled * hidden_fraction + fixed;
  if (p.defined()) per_unit = per_unit * p.to(torch::kDouble);
  torch::Tensor size = per_unit.sum();
  return block.defined() ? size * block.to(torch::kDouble) : size;
}

}  // namespace

GateValues GateValues::map(const std::function<torch::Tensor(const torch::Tensor&)>& f) const {
  auto each = [&](const std::vector<torch::Tensor>& list) {
    std::vector<torch::Tensor> out(list.size());
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i].defined()) out[i] = f(list[i]);
    return out;
  };
  GateValues v{each(units), each(ffn), each(attn), each(mlp), {}};
  if (hidden.defined()) v.hidden = f(hidden);
  return v;
}

std::vector<torch::Tensor> GateValues::tensors() const {
  std::vector<torch::Tensor> out;
  for (const auto* list : {&units, &ffn, &attn, &mlp})
    for (const torch::Tensor& t : *list)
      if (t.defined()) out.push_back(t);
  if (hidden.defined()) out.push_back(hidden);
  return out;
}

void multiply_into(model::Gates& gates, const GateValues& values, const model::ModelConfig& config) {
  const int64_t layers = config.num_layers;
  multiply_all(grouped_units(config) ? gates.kv_group : gates.head, values.units, layers);
  multiply_all(gates.ffn, values.ffn, layers);
  multiply_all(gates.attn_block, values.attn, layers);
  multiply_all(gates.mlp_block, values.mlp, layers);
  multiply(gates.hidden, values.hidden);
}

void multiply_into(model::Gates& gates, const model::Gates& by, int64_t layers) {
  multiply_all(gates.head, by.head, layers);
  multiply_all(gates.kv_group, by.kv_group, layers);
  multiply_all(gates.ffn, by.ffn, layers);
  multiply_all(gates.attn_block, by.attn_block, layers);
  multiply_all(gates.mlp_block, by.mlp_block, layers);
  multiply_all(gates.layer, by.layer, layers);
  multiply(gates.hidden, by.hidden);
}

GateValues indicators(const model::ModelConfig& config, const surgery::Masks& masks, torch::Device device) {
  GateValues z;
  const int64_t layers = config.num_layers;
  z.units.resize(layers), z.ffn.resize(layers), z.attn.resize(layers), z.mlp.resize(layers);
  for (int64_t l = 0; l < layers; ++l) {
    const model::LayerShape& s = config.layers[l];
    const surgery::LayerMask& lm = masks.layers[l];
    if (s.has_attention) {
      z.units[l] = grouped_units(config) ? indicator(lm.kv_groups, s.num_kv_heads) : indicator(lm.heads, s.num_heads);
      z.attn[l] = torch::full({}, lm.keep && lm.attention ? 1.0 : 0.0, torch::kDouble);
    }
    if (s.has_mlp) {
      z.ffn[l] = indicator(lm.ffn, s.intermediate);
      z.mlp[l] = torch::full({}, lm.keep && lm.mlp ? 1.0 : 0.0, torch::kDouble);
    }
  }
  z.hidden = indicator(masks.hidden, config.hidden_size);
  return z.map([&](const torch::Tensor& t) { return t.to(device); });
}

void keep_units(surgery::LayerMask& mask, const model::LayerShape& shape, const std::vector<int64_t>& kept, bool grouped) {
  if (!grouped) {
    mask.heads = mask.kv_groups = kept;
    return;
  }
  const int64_t per = shape.num_heads / shape.num_kv_heads;
  mask.kv_groups = kept;
  mask.heads.clear();
  for (int64_t g : kept)
    for (int64_t h = g * per; h < (g + 1) * per; ++h) mask.heads.push_back(h);
}

// Matrix and bias parameters (or FLOPs) of every attention unit and FFN neuron, from the prunable
// structure (so GQA, biases, GPT-2's fused c_attn and SwiGLU's three matrices count as they are).
SizeModel::SizeModel(const model::Model& model, SizeMeasure measure, int64_t seq_len)
    : config_(model.config()), device_(model.device()) {
  const int64_t layers = config_.num_layers;
  auto zeros = [](int64_t n) { return torch::zeros({n}, torch::kDouble); };
  for (int64_t l = 0; l < layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    const int64_t units = s.has_attention ? (grouped_units(config_) ? s.num_kv_heads : s.num_heads) : 0;
    unit_scaled_.push_back(zeros(units));
    unit_fixed_.push_back(zeros(units));
    ffn_scaled_.push_back(zeros(s.has_mlp ? s.intermediate : 0));
    ffn_fixed_.push_back(zeros(s.has_mlp ? s.intermediate : 0));
  }
  model::PrunableOptions po;
  po.hidden_dims = false;
  po.seq_len = seq_len;
  const model::PrunableStructure structure = model::prunable_structure(model, po);
  for (const model::Group& g : structure.groups) {
    torch::Tensor *scaled = nullptr, *fixed = nullptr;
    int64_t index = g.index;
    const model::LayerShape& s = config_.layers[std::max<int64_t>(g.layer, 0)];
    if (g.kind == model::GroupKind::head || g.kind == model::GroupKind::kv_group) {
      scaled = &unit_scaled_[g.layer], fixed = &unit_fixed_[g.layer];
      if (g.kind == model::GroupKind::head && grouped_units(config_)) index = g.index / (s.num_heads / s.num_kv_heads);
    } else if (g.kind == model::GroupKind::ffn_neuron) {
      scaled = &ffn_scaled_[g.layer], fixed = &ffn_fixed_[g.layer];
    } else {
      continue;
    }
    double matrix = 0;
    for (const model::ParamSlice& slice : g.slices) {
      const torch::Tensor t = model.hf_parameter(slice.hf_param_name);
      if (t.dim() > 1) matrix += static_cast<double>(t.numel() / t.size(slice.dim) * slice.length);
    }
    if (measure == SizeMeasure::params) {
      (*scaled)[index] += matrix;
      (*fixed)[index] += static_cast<double>(g.params) - matrix;
    } else {
      (*scaled)[index] += 2 * matrix;
      (*fixed)[index] += static_cast<double>(g.flops_per_token) - 2 * matrix;
    }
  }
  for (int64_t l = 0; l < layers; ++l)
    total_ += (unit_scaled_[l] + unit_fixed_[l]).sum().item<double>() + (ffn_scaled_[l] + ffn_fixed_[l]).sum().item<double>();
  if (total_ <= 0) throw UserError("the model has no attention head or FFN neuron to prune");
}

torch::Tensor SizeModel::expected(const GateValues& values) const {
  const torch::TensorOptions dbl = torch::TensorOptions().dtype(torch::kDouble).device(device_);
  const torch::Tensor hidden_fraction =
      values.hidden.defined() ? values.hidden.to(torch::kDouble).mean() : torch::ones({}, dbl);
  torch::Tensor size = torch::zeros({}, dbl);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    if (unit_scaled_[l].numel() > 0)
      size = size + block_size(at(values.units, l), at(values.attn, l), unit_scaled_[l].to(device_),
                               unit_fixed_[l].to(device_), hidden_fraction);
    if (ffn_scaled_[l].numel() > 0)
      size = size + block_size(at(values.ffn, l), at(values.mlp, l), ffn_scaled_[l].to(device_), ffn_fixed_[l].to(device_),
                               hidden_fraction);
  }
  return size;
}

SparsityLagrangian::SparsityLagrangian(double target, double start, int64_t warmup_steps, torch::Device device)
    : target_(target), start_(start), warmup_(warmup_steps) {
  if (!(target >= 0 && target < 1)) throw UserError("target sparsity must be in [0, 1), got " + std::to_string(target));
  lambda1_ = torch::zeros({}, torch::TensorOptions().device(device).requires_grad(true));
  lambda2_ = torch::zeros({}, torch::TensorOptions().device(device).requires_grad(true));
}

double SparsityLagrangian::target_at(int64_t step) const {
  if (warmup_ <= 0) return target_;
  return start_ + (target_ - start_) * std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup_));
}

// CoFi appendix A: L = λ1·(ŝ − t) + λ2·(ŝ − t)²; minimised in the gates, maximised in λ1, λ2.
torch::Tensor SparsityLagrangian::term(const torch::Tensor& expected_sparsity, double target) const {
  const torch::Tensor gap = expected_sparsity - target;
  return lambda1_.to(torch::kDouble) * gap + lambda2_.to(torch::kDouble) * gap * gap;
}

train::ParamGroup SparsityLagrangian::param_group(const std::string& name, double lr) const {
  return train::ParamGroup{name, {lambda1_, lambda2_}, lr, 0.0, true};
}

void SparsityLagrangian::report(const torch::Tensor& expected_sparsity, double target, const torch::Tensor& term,
                                train::StepMetrics& m) const {
  m["expected_sparsity"] = expected_sparsity.item<double>();
  m["target_sparsity"] = target;
  m["lagrangian"] = term.item<double>();
  m["lambda1"] = lambda1_.item<double>();
  m["lambda2"] = lambda2_.item<double>();
}

void SparsityLagrangian::save(io::TensorMap& tensors) const {
  tensors["lambda1"] = lambda1_.detach().cpu().clone();
  tensors["lambda2"] = lambda2_.detach().cpu().clone();
}

void SparsityLagrangian::load(const io::TensorMap& tensors, const std::string& method) {
  load_tensor(tensors, "lambda1", lambda1_, method);
  load_tensor(tensors, "lambda2", lambda2_, method);
}

namespace {

// The per-layer lists of `values` with their checkpoint names.
template <class V>
auto named_lists(V& values) {
  using List = decltype(&values.units);
  return std::vector<std::pair<std::string, List>>{{"units", &values.units}, {"ffn", &values.ffn}, {"attn", &values.attn}, {"mlp", &values.mlp}};
}

}  // namespace

void save_values(io::TensorMap& tensors, const std::string& name, const GateValues& values) {
  for (const auto& [kind, list] : named_lists(values))
    for (size_t l = 0; l < list->size(); ++l)
      if ((*list)[l].defined()) tensors[name + "." + kind + "." + std::to_string(l)] = (*list)[l].detach().cpu().clone();
  if (values.hidden.defined()) tensors[name + ".hidden"] = values.hidden.detach().cpu().clone();
}

void load_values(const io::TensorMap& tensors, const std::string& name, GateValues& values, const std::string& method) {
  for (const auto& [kind, list] : named_lists(values))
    for (size_t l = 0; l < list->size(); ++l)
      if ((*list)[l].defined()) load_tensor(tensors, name + "." + kind + "." + std::to_string(l), (*list)[l], method);
  if (values.hidden.defined()) load_tensor(tensors, name + ".hidden", values.hidden, method);
}

void load_tensor(const io::TensorMap& tensors, const std::string& name, torch::Tensor& into, const std::string& method) {
  torch::NoGradGuard no_grad;
  const auto it = tensors.find(name);
  if (it == tensors.end()) throw UserError(method + " checkpoint: missing tensor " + name);
  if (!it->second.sizes().equals(into.sizes())) throw UserError(method + " checkpoint: " + name + " has the wrong shape");
  into.copy_(it->second);
}

}  // namespace secateur::methods
