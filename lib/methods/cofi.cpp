#include "methods/cofi.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/prunable.h"
#include "util/error.h"

namespace secateur::methods {

namespace {

torch::Tensor at(const std::vector<torch::Tensor>& list, int64_t l) {
  return l < static_cast<int64_t>(list.size()) ? list[l] : torch::Tensor();
}

// Σ p·(M·h̄ + V) over one layer's units, times the block's probability (undefined = 1).
torch::Tensor block_size(const torch::Tensor& p, const torch::Tensor& block, const torch::Tensor& matrix,
                         const torch::Tensor& vector, const torch::Tensor& hidden_fraction) {
  torch::Tensor per_unit = matrix * hidden_fraction + vector;
  if (p.defined()) per_unit = per_unit * p.to(torch::kDouble);
  torch::Tensor size = per_unit.sum();
  return block.defined() ? size * block.to(torch::kDouble) : size;
}

// CoFi's deterministic z: the round(Σ p) entries of largest log α (at least `minimum`), ascending.
std::vector<int64_t> keep_top(const torch::Tensor& log_alpha, const torch::Tensor& p, int64_t minimum) {
  const int64_t n = log_alpha.numel();
  const double expected_zeros = n - p.sum().item<double>();
  const int64_t keep = std::max(minimum, n - static_cast<int64_t>(std::llround(expected_zeros)));
  const torch::Tensor order = torch::argsort(log_alpha.detach().cpu().to(torch::kDouble), 0, /*descending=*/true);
  std::vector<int64_t> kept(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + std::min(keep, n));
  std::sort(kept.begin(), kept.end());
  return kept;
}

torch::Tensor indicator(const std::vector<int64_t>& kept, int64_t n) {
  torch::Tensor z = torch::zeros({n}, torch::kDouble);
  for (int64_t i : kept) z[i] = 1.0;
  return z;
}

// Multiplies `slot` by `z` (or sets it): gates earlier extensions set stay in force.
void combine(torch::Tensor& slot, const torch::Tensor& z) {
  if (!z.defined()) return;
  slot = slot.defined() ? slot * z : z;
}

void combine_all(std::vector<torch::Tensor>& into, const std::vector<torch::Tensor>& from, int64_t layers) {
  into.resize(std::max<size_t>(into.size(), layers));
  for (int64_t l = 0; l < layers; ++l) combine(into[l], at(from, l));
}

}  // namespace

Cofi::Cofi(const model::Model& model, CofiOptions options) : config_(model.config()), options_(options) {
  if (!(options_.target_sparsity >= 0 && options_.target_sparsity < 1))
    throw UserError("cofi: target sparsity must be in [0, 1), got " + std::to_string(options_.target_sparsity));
  if (!(options_.droprate_init > 0 && options_.droprate_init < 1))
    throw UserError("cofi: droprate_init must be in (0, 1)");
  const int64_t layers = config_.num_layers;
  const double fine = std::log(1 - options_.droprate_init) - std::log(options_.droprate_init);
  const torch::Device device = model.device();
  log_alpha_.units.resize(layers);
  log_alpha_.ffn.resize(layers);
  log_alpha_.attn.resize(layers);
  log_alpha_.mlp.resize(layers);
  for (int64_t l = 0; l < layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    if (s.has_attention && options_.heads)
      log_alpha_.units[l] = init({grouped() ? s.num_kv_heads : s.num_heads}, options_.open_log_alpha).to(device);
    if (s.has_mlp && options_.ffn) log_alpha_.ffn[l] = init({s.intermediate}, fine).to(device);
    if (s.has_attention && options_.blocks) log_alpha_.attn[l] = init({}, options_.open_log_alpha).to(device);
    if (s.has_mlp && options_.blocks) log_alpha_.mlp[l] = init({}, options_.open_log_alpha).to(device);
  }
  if (options_.hidden) log_alpha_.hidden = init({config_.hidden_size}, options_.open_log_alpha).to(device);
  for (auto* list : {&log_alpha_.units, &log_alpha_.ffn, &log_alpha_.attn, &log_alpha_.mlp})
    for (torch::Tensor& t : *list)
      if (t.defined()) t = t.detach().requires_grad_(true);
  if (log_alpha_.hidden.defined()) log_alpha_.hidden = log_alpha_.hidden.detach().requires_grad_(true);
  lambda1_ = torch::zeros({}, torch::TensorOptions().device(device).requires_grad(true));
  lambda2_ = torch::zeros({}, torch::TensorOptions().device(device).requires_grad(true));
  build_size_model(model);
}

torch::Tensor Cofi::init(std::vector<int64_t> shape, double mean) const {
  return torch::empty(shape, torch::kFloat).normal_(mean, 1e-2);
}

// Matrix and bias parameters of every attention unit and FFN neuron, from the prunable structure
// (so GQA, biases, GPT-2's fused c_attn and SwiGLU's three matrices are counted as they are).
void Cofi::build_size_model(const model::Model& model) {
  const int64_t layers = config_.num_layers;
  auto zeros = [](int64_t n) { return torch::zeros({n}, torch::kDouble); };
  for (int64_t l = 0; l < layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    const int64_t units = s.has_attention ? (grouped() ? s.num_kv_heads : s.num_heads) : 0;
    unit_matrix_.push_back(zeros(units));
    unit_vector_.push_back(zeros(units));
    ffn_matrix_.push_back(zeros(s.has_mlp ? s.intermediate : 0));
    ffn_vector_.push_back(zeros(s.has_mlp ? s.intermediate : 0));
  }
  model::PrunableOptions po;
  po.hidden_dims = false;
  const model::PrunableStructure structure = model::prunable_structure(model, po);
  for (const model::Group& g : structure.groups) {
    torch::Tensor *matrix = nullptr, *vector = nullptr;
    int64_t index = g.index;
    const model::LayerShape& s = config_.layers[std::max<int64_t>(g.layer, 0)];
    if (g.kind == model::GroupKind::head) {
      matrix = &unit_matrix_[g.layer], vector = &unit_vector_[g.layer];
      if (grouped()) index = g.index / (s.num_heads / s.num_kv_heads);
    } else if (g.kind == model::GroupKind::kv_group) {
      matrix = &unit_matrix_[g.layer], vector = &unit_vector_[g.layer];
    } else if (g.kind == model::GroupKind::ffn_neuron) {
      matrix = &ffn_matrix_[g.layer], vector = &ffn_vector_[g.layer];
    } else {
      continue;
    }
    double m = 0, v = 0;
    for (const model::ParamSlice& slice : g.slices) {
      const torch::Tensor t = model.hf_parameter(slice.hf_param_name);
      if (t.dim() == 1) {
        v += static_cast<double>(slice.length);
      } else {
        m += static_cast<double>(t.numel() / t.size(slice.dim) * slice.length);
      }
    }
    (*matrix)[index] += m;
    (*vector)[index] += v;
  }
  for (int64_t l = 0; l < layers; ++l)
    total_ += (unit_matrix_[l] + unit_vector_[l]).sum().item<double>() + (ffn_matrix_[l] + ffn_vector_[l]).sum().item<double>();
  if (total_ <= 0) throw UserError("cofi: the model has no attention head or FFN neuron to prune");
}

std::vector<train::ParamGroup> Cofi::param_groups() {
  train::ParamGroup gates{"cofi.log_alpha", {}, options_.gate_lr, 0.0, false};
  for (auto* list : {&log_alpha_.units, &log_alpha_.ffn, &log_alpha_.attn, &log_alpha_.mlp})
    for (const torch::Tensor& t : *list)
      if (t.defined()) gates.params.push_back(t);
  if (log_alpha_.hidden.defined()) gates.params.push_back(log_alpha_.hidden);
  train::ParamGroup lambdas{"cofi.lambda", {lambda1_, lambda2_}, options_.lambda_lr, 0.0, true};
  return {gates, lambdas};
}

CofiGateValues Cofi::open_probabilities() const {
  const HardConcrete& hc = options_.distribution;
  auto map = [&](const std::vector<torch::Tensor>& list) {
    std::vector<torch::Tensor> out(list.size());
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i].defined()) out[i] = hc.open_probability(list[i]);
    return out;
  };
  CofiGateValues p{map(log_alpha_.units), map(log_alpha_.ffn), map(log_alpha_.attn), map(log_alpha_.mlp), {}};
  if (log_alpha_.hidden.defined()) p.hidden = hc.open_probability(log_alpha_.hidden);
  return p;
}

torch::Tensor Cofi::expected_size(const CofiGateValues& values) const {
  const torch::Device device = lambda1_.device();
  const torch::TensorOptions dbl = torch::TensorOptions().dtype(torch::kDouble).device(device);
  const torch::Tensor hidden_fraction =
      values.hidden.defined() ? values.hidden.to(torch::kDouble).mean() : torch::ones({}, dbl);
  torch::Tensor size = torch::zeros({}, dbl);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    if (unit_matrix_[l].numel() > 0)
      size = size + block_size(at(values.units, l), at(values.attn, l), unit_matrix_[l].to(device),
                               unit_vector_[l].to(device), hidden_fraction);
    if (ffn_matrix_[l].numel() > 0)
      size = size + block_size(at(values.ffn, l), at(values.mlp, l), ffn_matrix_[l].to(device), ffn_vector_[l].to(device),
                               hidden_fraction);
  }
  return size;
}

torch::Tensor Cofi::expected_sparsity() const { return 1 - expected_size(open_probabilities()) / total_; }

double Cofi::target_at(int64_t step) const {
  const double t0 = options_.start_sparsity, t1 = options_.target_sparsity;
  if (options_.warmup_steps <= 0) return t1;
  return t0 + (t1 - t0) * std::min(1.0, static_cast<double>(step) / options_.warmup_steps);
}

// CoFi appendix A: L = λ1·(ŝ − t) + λ2·(ŝ − t)²; minimised in log α, maximised in λ1, λ2.
torch::Tensor Cofi::lagrangian(const torch::Tensor& expected_sparsity, double target) const {
  const torch::Tensor gap = expected_sparsity - target;
  return lambda1_.to(torch::kDouble) * gap + lambda2_.to(torch::kDouble) * gap * gap;
}

void Cofi::prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) {
  (void)options;
  const int64_t layers = config_.num_layers;
  if (!step.training) {
    const model::Gates fixed = eval_gates();
    combine_all(gates.head, fixed.head, layers);
    combine_all(gates.kv_group, fixed.kv_group, layers);
    combine_all(gates.ffn, fixed.ffn, layers);
    combine_all(gates.attn_block, fixed.attn_block, layers);
    combine_all(gates.mlp_block, fixed.mlp_block, layers);
    combine_all(gates.layer, fixed.layer, layers);
    combine(gates.hidden, fixed.hidden);
    return;
  }
  const HardConcrete& hc = options_.distribution;
  auto sample = [&](const std::vector<torch::Tensor>& list) {
    std::vector<torch::Tensor> out(list.size());
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i].defined()) out[i] = hc.sample(list[i]);
    return out;
  };
  combine_all(grouped() ? gates.kv_group : gates.head, sample(log_alpha_.units), layers);
  combine_all(gates.ffn, sample(log_alpha_.ffn), layers);
  combine_all(gates.attn_block, sample(log_alpha_.attn), layers);
  combine_all(gates.mlp_block, sample(log_alpha_.mlp), layers);
  if (log_alpha_.hidden.defined()) combine(gates.hidden, hc.sample(log_alpha_.hidden));
}

torch::Tensor Cofi::loss(const train::StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                         train::StepMetrics& metrics) {
  (void)batch, (void)output;
  const torch::Tensor sparsity = expected_sparsity();
  const double target = target_at(step.step);
  const torch::Tensor term = lagrangian(sparsity, target);
  metrics["expected_sparsity"] = sparsity.item<double>();
  metrics["target_sparsity"] = target;
  metrics["lagrangian"] = term.item<double>();
  metrics["lambda1"] = lambda1_.item<double>();
  metrics["lambda2"] = lambda2_.item<double>();
  return term.to(torch::kFloat);
}

surgery::Masks Cofi::masks() const {
  torch::NoGradGuard no_grad;
  const CofiGateValues p = open_probabilities();
  surgery::Masks m = surgery::Masks::keep_all(config_);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    surgery::LayerMask& lm = m.layers[l];
    if (s.has_attention) {
      if (log_alpha_.units[l].defined()) {
        const std::vector<int64_t> kept = keep_top(log_alpha_.units[l], p.units[l], 0);
        if (grouped()) {
          const int64_t per = s.num_heads / s.num_kv_heads;
          lm.kv_groups = kept;
          lm.heads.clear();
          for (int64_t g : kept)
            for (int64_t h = g * per; h < (g + 1) * per; ++h) lm.heads.push_back(h);
        } else {
          lm.heads = lm.kv_groups = kept;
        }
      }
      if (lm.heads.empty() || (p.attn[l].defined() && p.attn[l].item<double>() < 0.5)) lm.attention = false;
    }
    if (s.has_mlp) {
      if (log_alpha_.ffn[l].defined()) lm.ffn = keep_top(log_alpha_.ffn[l], p.ffn[l], 0);
      if (lm.ffn.empty() || (p.mlp[l].defined() && p.mlp[l].item<double>() < 0.5)) lm.mlp = false;
    }
  }
  if (log_alpha_.hidden.defined()) m.hidden = keep_top(log_alpha_.hidden, p.hidden, 1);
  return m;
}

CofiGateValues Cofi::indicators(const surgery::Masks& masks) const {
  CofiGateValues z;
  const int64_t layers = config_.num_layers;
  z.units.resize(layers), z.ffn.resize(layers), z.attn.resize(layers), z.mlp.resize(layers);
  for (int64_t l = 0; l < layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    const surgery::LayerMask& lm = masks.layers[l];
    if (s.has_attention) {
      z.units[l] = grouped() ? indicator(lm.kv_groups, s.num_kv_heads) : indicator(lm.heads, s.num_heads);
      z.attn[l] = torch::full({}, lm.keep && lm.attention ? 1.0 : 0.0, torch::kDouble);
    }
    if (s.has_mlp) {
      z.ffn[l] = indicator(lm.ffn, s.intermediate);
      z.mlp[l] = torch::full({}, lm.keep && lm.mlp ? 1.0 : 0.0, torch::kDouble);
    }
  }
  z.hidden = indicator(masks.hidden, config_.hidden_size);
  const torch::Device device = lambda1_.device();
  for (auto* list : {&z.units, &z.ffn, &z.attn, &z.mlp})
    for (torch::Tensor& t : *list)
      if (t.defined()) t = t.to(device);
  z.hidden = z.hidden.to(device);
  return z;
}

model::Gates Cofi::eval_gates() const { return masks().to_gates(config_, lambda1_.device()); }

void Cofi::save(io::TensorMap& tensors, nlohmann::json& state) const {
  auto put = [&](const std::string& name, const std::vector<torch::Tensor>& list) {
    for (size_t l = 0; l < list.size(); ++l)
      if (list[l].defined()) tensors[name + "." + std::to_string(l)] = list[l].detach().cpu().clone();
  };
  put("log_alpha.units", log_alpha_.units);
  put("log_alpha.ffn", log_alpha_.ffn);
  put("log_alpha.attn", log_alpha_.attn);
  put("log_alpha.mlp", log_alpha_.mlp);
  if (log_alpha_.hidden.defined()) tensors["log_alpha.hidden"] = log_alpha_.hidden.detach().cpu().clone();
  tensors["lambda1"] = lambda1_.detach().cpu().clone();
  tensors["lambda2"] = lambda2_.detach().cpu().clone();
  state["prunable_size"] = total_;
}

void Cofi::load(const io::TensorMap& tensors, const nlohmann::json& state) {
  (void)state;
  torch::NoGradGuard no_grad;
  auto get = [&](const std::string& name, torch::Tensor& into) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw UserError("cofi checkpoint: missing tensor " + name);
    if (!it->second.sizes().equals(into.sizes())) throw UserError("cofi checkpoint: " + name + " has the wrong shape");
    into.copy_(it->second);
  };
  auto get_all = [&](const std::string& name, std::vector<torch::Tensor>& list) {
    for (size_t l = 0; l < list.size(); ++l)
      if (list[l].defined()) get(name + "." + std::to_string(l), list[l]);
  };
  get_all("log_alpha.units", log_alpha_.units);
  get_all("log_alpha.ffn", log_alpha_.ffn);
  get_all("log_alpha.attn", log_alpha_.attn);
  get_all("log_alpha.mlp", log_alpha_.mlp);
  if (log_alpha_.hidden.defined()) get("log_alpha.hidden", log_alpha_.hidden);
  get("lambda1", lambda1_);
  get("lambda2", lambda2_);
}

}  // namespace secateur::methods
