#include "methods/movement.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace secateur::methods {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// q/k/v/qkv/up/gate write units along their output rows; o and down read them along their input columns.
std::string role_of(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> roles = {
      {"q_proj.weight", "q"}, {"k_proj.weight", "k"}, {"v_proj.weight", "v"}, {"o_proj.weight", "o"},
      {"gate_proj.weight", "gate"}, {"up_proj.weight", "up"}, {"down_proj.weight", "down"},
      {"attn.c_attn.weight", "qkv"}, {"attn.c_proj.weight", "o"}, {"mlp.c_fc.weight", "up"}, {"mlp.c_proj.weight", "down"},
      {"attention.self.query.weight", "q"}, {"attention.self.key.weight", "k"}, {"attention.self.value.weight", "v"},
      {"attention.output.dense.weight", "o"}, {"intermediate.dense.weight", "up"}, {"output.dense.weight", "down"}};
  for (const auto& [suffix, role] : roles)
    if (ends_with(name, suffix)) return role;
  throw std::logic_error("movement: no role for projection " + name);
}

int64_t layer_of(const std::string& name) {
  for (const char* marker : {"layers.", "h.", "layer."}) {
    const size_t at = name.find(marker);
    if (at != std::string::npos) return std::stoll(name.substr(at + std::string(marker).size()));
  }
  throw std::logic_error("movement: no layer index in " + name);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

double CubicSchedule::at(int64_t step) const {
  if (step < warmup_steps) return initial;
  const int64_t span = total_steps - warmup_steps - cooldown_steps;
  if (span <= 0 || step >= warmup_steps + span) return final;
  const double progress = 1.0 - static_cast<double>(step - warmup_steps) / static_cast<double>(span);
  return final + (initial - final) * progress * progress * progress;
}

Movement::Movement(const model::Model& model, MovementOptions options) : config_(model.config()), options_(options) {
  if (!(options_.schedule.final >= 0 && options_.schedule.final < 1))
    throw UserError("movement: final sparsity must be in [0, 1)");
  for (const model::ProjectionWeight& pw : model::projection_weights(model)) {
    const torch::Tensor w = model.hf_parameter(pw.name);
    Projection p;
    p.out_dim = pw.out_dim;
    p.rows = w.size(pw.out_dim);
    p.cols = w.size(1 - pw.out_dim);
    p.layer = layer_of(pw.name);
    p.role = role_of(pw.name);
    const bool ffn = p.role == "up" || p.role == "gate" || p.role == "down";
    const BlockShape& shape = ffn ? options_.ffn : options_.attention;
    const bool units_on_rows = p.role != "o" && p.role != "down";
    const int64_t units = units_on_rows ? p.rows : p.cols, hidden = units_on_rows ? p.cols : p.rows;
    const int64_t bu = shape.units > 0 ? std::min(shape.units, units) : units;
    const int64_t bh = shape.hidden > 0 ? std::min(shape.hidden, hidden) : hidden;
    p.block_rows = units_on_rows ? bu : bh;
    p.block_cols = units_on_rows ? bh : bu;
    p.scores = torch::full({ceil_div(p.rows, p.block_rows), ceil_div(p.cols, p.block_cols)}, options_.score_init,
                           torch::TensorOptions().dtype(torch::kFloat).device(model.device()))
                   .requires_grad_(true);
    projections_[pw.name] = p;
    order_.push_back(pw.name);
  }
  if (projections_.empty()) throw UserError("movement: the model has no layer projection to prune");
}

std::vector<train::ParamGroup> Movement::param_groups() {
  train::ParamGroup g{"movement.scores", {}, options_.score_lr, 0.0, false};
  for (const std::string& name : order_) g.params.push_back(projections_.at(name).scores);
  return {g};
}

torch::Tensor Movement::expand(const Projection& p, const torch::Tensor& blocks) const {
  return blocks.repeat_interleave(p.block_rows, 0).repeat_interleave(p.block_cols, 1).narrow(0, 0, p.rows).narrow(1, 0, p.cols);
}

torch::Tensor Movement::block_mask(const std::string& hf_name) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor s = projections_.at(hf_name).scores.detach();
  if (options_.mode == MovementMode::threshold) return (torch::sigmoid(s) > options_.threshold).to(torch::kFloat);
  const int64_t n = s.numel();
  const int64_t keep = n - static_cast<int64_t>(std::llround(sparsity_ * static_cast<double>(n)));
  torch::Tensor mask = torch::zeros({n}, s.options());
  if (keep > 0) mask.index_fill_(0, std::get<1>(torch::topk(s.flatten(), keep)), 1.0);
  return mask.view(s.sizes());
}

// W' = W ⊙ M with the straight-through estimator: M + S − sg(S) has M's value and passes ∂L/∂W'·W
// to each score, summed over its block by repeat_interleave's backward (Sanh eq. 4, Lagunas §3).
torch::Tensor Movement::apply(const std::string& hf_name, const torch::Tensor& weight) const {
  const auto it = projections_.find(hf_name);
  if (it == projections_.end()) return weight;
  const Projection& p = it->second;
  const torch::Tensor ste = block_mask(hf_name) + p.scores - p.scores.detach();
  const torch::Tensor mask = expand(p, ste).to(weight.dtype());
  return p.out_dim == 0 ? weight * mask : weight * mask.t();
}

void Movement::prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) {
  (void)gates;
  if (step.training && options_.mode == MovementMode::topv) {
    CubicSchedule s = options_.schedule;
    if (s.total_steps <= 0) s.total_steps = step.total_steps;
    sparsity_ = s.at(step.step);
  }
  options.weights = this;
}

torch::Tensor Movement::loss(const train::StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                             train::StepMetrics& metrics) {
  (void)step, (void)batch, (void)output;
  if (options_.mode == MovementMode::topv) {
    metrics["movement_sparsity"] = sparsity_;
    return {};
  }
  // Soft movement: λ·mean σ(S) over every score (Sanh §4's L1 on the sigmoid of the scores).
  std::vector<torch::Tensor> all;
  for (const std::string& name : order_) all.push_back(torch::sigmoid(projections_.at(name).scores).flatten());
  const torch::Tensor reg = torch::cat(all).mean();
  metrics["movement_mean_sigmoid"] = reg.item<double>();
  return reg * options_.regularization;
}

double Movement::weight_sparsity() const {
  double pruned = 0, total = 0;
  for (const std::string& name : order_) {
    const Projection& p = projections_.at(name);
    const double n = static_cast<double>(p.rows * p.cols);
    pruned += n - expand(p, block_mask(name)).sum().item<double>();
    total += n;
  }
  return pruned / total;
}

surgery::Masks Movement::structural_masks() const {
  surgery::Masks m = surgery::Masks::keep_all(config_);
  const bool grouped = config_.family == model::Family::llama;
  for (const std::string& name : order_) {
    const Projection& p = projections_.at(name);
    surgery::LayerMask& lm = m.layers[p.layer];
    const model::LayerShape& s = config_.layers[p.layer];
    const torch::Tensor alive = expand(p, block_mask(name)).sum(0) > 0;  // per input column
    if (p.role == "o") {
      const torch::Tensor head_alive = alive.view({s.num_heads, config_.head_dim}).any(1);
      std::vector<int64_t> heads, groups;
      if (grouped) {
        const int64_t per = s.num_heads / s.num_kv_heads;
        const torch::Tensor group_alive = head_alive.view({s.num_kv_heads, per}).any(1);
        for (int64_t g = 0; g < s.num_kv_heads; ++g)
          if (group_alive[g].item<bool>()) {
            groups.push_back(g);
            for (int64_t h = g * per; h < (g + 1) * per; ++h) heads.push_back(h);
          }
      } else {
        for (int64_t h = 0; h < s.num_heads; ++h)
          if (head_alive[h].item<bool>()) heads.push_back(h);
        groups = heads;
      }
      lm.heads = heads, lm.kv_groups = groups;
      if (heads.empty()) lm.attention = false;
    } else if (p.role == "down") {
      lm.ffn.clear();
      for (int64_t i = 0; i < p.cols; ++i)
        if (alive[i].item<bool>()) lm.ffn.push_back(i);
      if (lm.ffn.empty()) lm.mlp = false;
    }
  }
  return m;
}

void Movement::apply_to_weights(model::Model& model) const {
  torch::NoGradGuard no_grad;
  for (const std::string& name : order_) {
    torch::Tensor w = model.hf_parameter(name);
    w.copy_(apply(name, w));
  }
}

void Movement::save(io::TensorMap& tensors, nlohmann::json& state) const {
  for (const std::string& name : order_) tensors["scores." + name] = projections_.at(name).scores.detach().cpu().clone();
  state["sparsity"] = sparsity_;
}

void Movement::load(const io::TensorMap& tensors, const nlohmann::json& state) {
  torch::NoGradGuard no_grad;
  for (const std::string& name : order_) {
    const auto it = tensors.find("scores." + name);
    if (it == tensors.end()) throw UserError("movement checkpoint: missing scores of " + name);
    projections_.at(name).scores.copy_(it->second);
  }
  sparsity_ = state.value("sparsity", 0.0);
}

}  // namespace secateur::methods
