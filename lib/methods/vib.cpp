#include "methods/vib.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "model/prunable.h"
#include "util/error.h"

namespace secateur::methods {

namespace {

constexpr double kEpsilon = 1e-8;  // VIBNet's guard in log(μ² + ε)

// f(a, b) entry by entry where both are defined.
GateValues zip(const GateValues& a, const GateValues& b,
               const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& f) {
  auto each = [&](const std::vector<torch::Tensor>& x, const std::vector<torch::Tensor>& y) {
    std::vector<torch::Tensor> out(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i].defined() && y[i].defined()) out[i] = f(x[i], y[i]);
    return out;
  };
  GateValues v{each(a.units, b.units), each(a.ffn, b.ffn), each(a.attn, b.attn), each(a.mlp, b.mlp), {}};
  if (a.hidden.defined() && b.hidden.defined()) v.hidden = f(a.hidden, b.hidden);
  return v;
}

std::vector<int64_t> all_of(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

// A head (or key/value group) or neuron that target mode may remove.
struct Candidate {
  double log_alpha;
  int64_t layer;
  bool attention;
  int64_t index;
  double size;
};

}  // namespace

Vib::Vib(const model::Model& model, VibOptions options)
    : config_(model.config()),
      device_(model.device()),
      options_(options),
      size_(model, options.measure, options.seq_len),
      lagrangian_(options.target_sparsity, options.start_sparsity, options.warmup_steps, model.device()) {
  if (!(options_.threshold > 0)) throw UserError("vib: threshold must be positive");
  const int64_t layers = config_.num_layers;
  for (GateValues* v : {&mean_, &log_var_}) v->units.resize(layers), v->ffn.resize(layers), v->attn.resize(layers), v->mlp.resize(layers);
  const torch::Tensor one = torch::ones({}, torch::TensorOptions().device(device_));
  for (int64_t l = 0; l < layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    if (s.has_attention && options_.heads) {
      const int64_t n = grouped_units(config_) ? s.num_kv_heads : s.num_heads;
      mean_.units[l] = leaf({n}, options_.init_mean);
      log_var_.units[l] = leaf({n}, options_.init_log_variance);
    }
    if (s.has_mlp && options_.ffn) {
      mean_.ffn[l] = leaf({s.intermediate}, options_.init_mean);
      log_var_.ffn[l] = leaf({s.intermediate}, options_.init_log_variance);
    }
    if (s.has_attention && options_.blocks) mean_.attn[l] = one, log_var_.attn[l] = leaf({}, options_.init_log_variance);
    if (s.has_mlp && options_.blocks) mean_.mlp[l] = one, log_var_.mlp[l] = leaf({}, options_.init_log_variance);
  }
  if (options_.hidden) {
    mean_.hidden = torch::ones({config_.hidden_size}, torch::TensorOptions().device(device_));
    log_var_.hidden = leaf({config_.hidden_size}, options_.init_log_variance);
  }
}

// A trainable leaf on the model's device, ~ N(mean, 0.01) (VIBNet's init_var).
torch::Tensor Vib::leaf(std::vector<int64_t> shape, double mean) const {
  return torch::empty(shape, torch::kFloat).normal_(mean, 1e-2).to(device_).requires_grad_(true);
}

std::vector<train::ParamGroup> Vib::param_groups() {
  train::ParamGroup gates{"vib.gates", {}, options_.gate_lr, 0.0, false};
  // μ of hidden dims and blocks is the constant 1: only heads' and neurons' means train.
  for (const auto* list : {&mean_.units, &mean_.ffn})
    for (const torch::Tensor& t : *list)
      if (t.defined()) gates.params.push_back(t);
  for (const torch::Tensor& t : log_var_.tensors()) gates.params.push_back(t);
  return {gates, lagrangian_.param_group("vib.lambda", options_.lambda_lr)};
}

GateValues Vib::log_alpha() const {
  return zip(mean_, log_var_, [](const torch::Tensor& mu, const torch::Tensor& log_var) {
    return torch::log(mu * mu + kEpsilon) - log_var;
  });
}

GateValues Vib::keep_probabilities() const {
  const double log_threshold = std::log(options_.threshold);
  return log_alpha().map([&](const torch::Tensor& la) { return torch::sigmoid(options_.sharpness * (la - log_threshold)); });
}

// ½·log(1 + μ²/σ²) = ½·softplus(log α): no overflow when σ² is tiny (α ≈ 8·10³ at the start).
torch::Tensor Vib::kl() const {
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().device(device_));
  for (const torch::Tensor& la : log_alpha().tensors()) total = total + 0.5 * torch::softplus(la).sum();
  return total;
}

torch::Tensor Vib::expected_sparsity() const { return 1 - size_.expected(keep_probabilities()) / size_.total(); }

double Vib::sparsity(const surgery::Masks& masks) const {
  torch::NoGradGuard no_grad;
  return 1 - size_.expected(indicators(config_, masks, device_)).item<double>() / size_.total();
}

void Vib::prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) {
  (void)options;
  if (!step.training) {
    multiply_into(gates, eval_gates(), config_.num_layers);
    return;
  }
  // z = μ + σ·ε (reparameterised: differentiable in μ and log σ²).
  multiply_into(gates, zip(mean_, log_var_, [](const torch::Tensor& mu, const torch::Tensor& log_var) {
                  return mu + torch::exp(0.5 * log_var) * torch::randn_like(log_var);
                }),
                config_);
}

torch::Tensor Vib::loss(const train::StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                        train::StepMetrics& metrics) {
  (void)batch, (void)output;
  const torch::Tensor information = kl();
  const torch::Tensor sparsity = expected_sparsity();
  const double target = lagrangian_.target_at(step.step);
  const torch::Tensor term = lagrangian_.term(sparsity, target);
  if (step.logging) {
    lagrangian_.report(sparsity, target, term, metrics);
    metrics["vib_kl"] = information.item<double>();
  }
  return options_.kl_weight * information + term.to(torch::kFloat);
}

// Indices whose log α exceeds log τ, ascending; the `minimum` most informative when fewer do.
std::vector<int64_t> Vib::above_threshold(const torch::Tensor& log_alpha, int64_t minimum) const {
  const torch::Tensor la = log_alpha.detach().cpu().to(torch::kDouble);
  const double log_threshold = std::log(options_.threshold);
  const torch::Tensor above = torch::nonzero(la > log_threshold).flatten().contiguous();
  std::vector<int64_t> kept(above.data_ptr<int64_t>(), above.data_ptr<int64_t>() + above.numel());
  if (static_cast<int64_t>(kept.size()) >= minimum) return kept;
  const torch::Tensor order = torch::argsort(la, 0, /*descending=*/true);
  kept.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + std::min(minimum, la.numel()));
  std::sort(kept.begin(), kept.end());
  return kept;
}

surgery::Masks Vib::masks() const {
  torch::NoGradGuard no_grad;
  const GateValues la = log_alpha();
  const double log_threshold = std::log(options_.threshold);
  const bool by_threshold = options_.rule == VibMaskRule::threshold;
  auto closed = [&](const torch::Tensor& block) { return block.defined() && block.item<double>() <= log_threshold; };
  surgery::Masks m = surgery::Masks::keep_all(config_);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    surgery::LayerMask& lm = m.layers[l];
    if (s.has_attention) {
      if (la.units[l].defined() && by_threshold) keep_units(lm, s, above_threshold(la.units[l], 0), grouped_units(config_));
      if (lm.heads.empty() || closed(la.attn[l])) lm.attention = false;
    }
    if (s.has_mlp) {
      if (la.ffn[l].defined() && by_threshold) lm.ffn = above_threshold(la.ffn[l], 0);
      if (lm.ffn.empty() || closed(la.mlp[l])) lm.mlp = false;
    }
  }
  if (la.hidden.defined()) m.hidden = above_threshold(la.hidden, 1);
  if (!by_threshold) remove_to_target(m, la);
  return m;
}

// Target mode: with hidden dims and blocks decided, remove heads and neurons in ascending log α
// across layers while the size exceeds (1 − t)·S. Removing a unit saves (M·h̄ + V), h̄ the kept
// hidden fraction, so the size after each removal is exact and the last removal is the first
// that meets the budget.
void Vib::remove_to_target(surgery::Masks& m, const GateValues& la) const {
  const double hidden_fraction = static_cast<double>(m.hidden.size()) / static_cast<double>(config_.hidden_size);
  std::vector<Candidate> candidates;
  auto add = [&](const torch::Tensor& log_alpha, const torch::Tensor& scaled, const torch::Tensor& fixed, int64_t l,
                 bool attention) {
    const torch::Tensor a = log_alpha.detach().cpu().to(torch::kDouble).contiguous();
    const auto la_i = a.accessor<double, 1>();
    const auto m_i = scaled.accessor<double, 1>();
    const auto v_i = fixed.accessor<double, 1>();
    for (int64_t i = 0; i < a.numel(); ++i) candidates.push_back({la_i[i], l, attention, i, m_i[i] * hidden_fraction + v_i[i]});
  };
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    const surgery::LayerMask& lm = m.layers[l];
    if (lm.attention && config_.layers[l].has_attention && la.units[l].defined())
      add(la.units[l], size_.unit_scaled(l), size_.unit_fixed(l), l, true);
    if (lm.mlp && config_.layers[l].has_mlp && la.ffn[l].defined()) add(la.ffn[l], size_.ffn_scaled(l), size_.ffn_fixed(l), l, false);
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(a.log_alpha, a.layer, a.attention, a.index) < std::tie(b.log_alpha, b.layer, b.attention, b.index);
  });
  double size = (1 - sparsity(m)) * size_.total();
  const double budget = (1 - options_.target_sparsity) * size_.total();
  std::vector<std::vector<bool>> removed_units(config_.num_layers), removed_ffn(config_.num_layers);
  for (const Candidate& c : candidates) {
    if (size <= budget) break;
    auto& removed = c.attention ? removed_units[c.layer] : removed_ffn[c.layer];
    removed.resize(static_cast<size_t>(c.attention ? la.units[c.layer].numel() : la.ffn[c.layer].numel()), false);
    removed[static_cast<size_t>(c.index)] = true;
    size -= c.size;
  }
  auto survivors = [](const std::vector<bool>& removed, int64_t n) {
    std::vector<int64_t> kept;
    for (int64_t i : all_of(n))
      if (removed.empty() || !removed[static_cast<size_t>(i)]) kept.push_back(i);
    return kept;
  };
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    surgery::LayerMask& lm = m.layers[l];
    const model::LayerShape& s = config_.layers[l];
    if (lm.attention && la.units[l].defined()) {
      keep_units(lm, s, survivors(removed_units[l], la.units[l].numel()), grouped_units(config_));
      if (lm.heads.empty()) lm.attention = false;
    }
    if (lm.mlp && la.ffn[l].defined()) {
      lm.ffn = survivors(removed_ffn[l], s.intermediate);
      if (lm.ffn.empty()) lm.mlp = false;
    }
  }
}

model::Gates Vib::eval_gates() const {
  torch::NoGradGuard no_grad;
  model::Gates gates = masks().to_gates(config_, device_);
  GateValues means;
  means.units = mean_.units, means.ffn = mean_.ffn;
  multiply_into(gates, means.map([](const torch::Tensor& mu) { return mu.detach(); }), config_);
  return gates;
}

void Vib::fold_means(model::Model& model) const {
  torch::NoGradGuard no_grad;
  model::PrunableOptions po;
  po.hidden_dims = false;
  // The dim of an HF weight that indexes its inputs: 0 for GPT-2's Conv1D [in, out], 1 for Linear.
  const int64_t input_dim = config_.family == model::Family::gpt2 ? 0 : 1;
  for (const model::Group& g : model::prunable_structure(model, po).groups) {
    torch::Tensor mu;
    if (g.kind == model::GroupKind::head && mean_.units[g.layer].defined()) {
      const model::LayerShape& s = config_.layers[g.layer];
      const int64_t unit = grouped_units(config_) ? g.index / (s.num_heads / s.num_kv_heads) : g.index;
      mu = mean_.units[g.layer][unit];
    } else if (g.kind == model::GroupKind::ffn_neuron && mean_.ffn[g.layer].defined()) {
      mu = mean_.ffn[g.layer][g.index];
    } else {
      continue;
    }
    for (const model::ParamSlice& slice : g.slices) {
      torch::Tensor w = model.hf_parameter(slice.hf_param_name);
      if (w.dim() == 2 && slice.dim == input_dim) w.narrow(slice.dim, slice.start, slice.length).mul_(mu.to(w.dtype()));
    }
  }
}

void Vib::save(io::TensorMap& tensors, nlohmann::json& state) const {
  save_values(tensors, "mean", mean_);  // hidden dims' and blocks' constant 1 included: one layout
  save_values(tensors, "log_variance", log_var_);
  lagrangian_.save(tensors);
  state["prunable_size"] = size_.total();
}

void Vib::load(const io::TensorMap& tensors, const nlohmann::json& state) {
  (void)state;
  load_values(tensors, "mean", mean_, "vib");
  load_values(tensors, "log_variance", log_var_, "vib");
  lagrangian_.load(tensors, "vib");
}

}  // namespace secateur::methods
