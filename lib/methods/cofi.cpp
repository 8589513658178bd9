#include "methods/cofi.h"

#include <algorithm>
#include <cmath>

#include "model/prunable.h"
#include "util/error.h"

namespace secateur::methods {

namespace {

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

}  // namespace

Cofi::Cofi(const model::Model& model, CofiOptions options)
    : config_(model.config()),
      device_(model.device()),
      options_(options),
      size_(model),
      lagrangian_(options.target_sparsity, options.start_sparsity, options.warmup_steps, model.device()) {
  if (!(options_.droprate_init > 0 && options_.droprate_init < 1))
    throw UserError("cofi: droprate_init must be in (0, 1)");
  const int64_t layers = config_.num_layers;
  const double fine = std::log(1 - options_.droprate_init) - std::log(options_.droprate_init);
  log_alpha_.units.resize(layers);
  log_alpha_.ffn.resize(layers);
  log_alpha_.attn.resize(layers);
  log_alpha_.mlp.resize(layers);
  for (int64_t l = 0; l < layers; ++l) {
    const model::LayerShape& s = config_.layers[l];
    if (s.has_attention && options_.heads)
      log_alpha_.units[l] = init({grouped() ? s.num_kv_heads : s.num_heads}, options_.open_log_alpha);
    if (s.has_mlp && options_.ffn) log_alpha_.ffn[l] = init({s.intermediate}, fine);
    if (s.has_attention && options_.blocks) log_alpha_.attn[l] = init({}, options_.open_log_alpha);
    if (s.has_mlp && options_.blocks) log_alpha_.mlp[l] = init({}, options_.open_log_alpha);
  }
  if (options_.hidden) log_alpha_.hidden = init({config_.hidden_size}, options_.open_log_alpha);
}

// A leaf on the model's device, ~ N(mean, 0.01).
torch::Tensor Cofi::init(std::vector<int64_t> shape, double mean) const {
  return torch::empty(shape, torch::kFloat).normal_(mean, 1e-2).to(device_).requires_grad_(true);
}

std::vector<train::ParamGroup> Cofi::param_groups() {
  train::ParamGroup gates{"cofi.log_alpha", log_alpha_.tensors(), options_.gate_lr, 0.0, false};
  return {gates, lagrangian_.param_group("cofi.lambda", options_.lambda_lr)};
}

CofiGateValues Cofi::open_probabilities() const {
  const HardConcrete& hc = options_.distribution;
  return log_alpha_.map([&](const torch::Tensor& la) { return hc.open_probability(la); });
}

torch::Tensor Cofi::expected_sparsity() const { return 1 - expected_size(open_probabilities()) / prunable_size(); }

void Cofi::prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) {
  (void)options;
  if (!step.training) {
    multiply_into(gates, eval_gates(), config_.num_layers);
    return;
  }
  const HardConcrete& hc = options_.distribution;
  multiply_into(gates, log_alpha_.map([&](const torch::Tensor& la) { return hc.sample(la); }), config_);
}

torch::Tensor Cofi::loss(const train::StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                         train::StepMetrics& metrics) {
  (void)batch, (void)output;
  const torch::Tensor sparsity = expected_sparsity();
  const double target = target_at(step.step);
  const torch::Tensor term = lagrangian(sparsity, target);
  lagrangian_.report(sparsity, target, term, metrics);
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
      if (log_alpha_.units[l].defined()) keep_units(lm, s, keep_top(log_alpha_.units[l], p.units[l], 0), grouped());
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
  return methods::indicators(config_, masks, device_);
}

model::Gates Cofi::eval_gates() const { return masks().to_gates(config_, device_); }

void Cofi::save(io::TensorMap& tensors, nlohmann::json& state) const {
  save_values(tensors, "log_alpha", log_alpha_);
  lagrangian_.save(tensors);
  state["prunable_size"] = prunable_size();
}

void Cofi::load(const io::TensorMap& tensors, const nlohmann::json& state) {
  (void)state;
  load_values(tensors, "log_alpha", log_alpha_, "cofi");
  lagrangian_.load(tensors, "cofi");
}

}  // namespace secateur::methods
