#include "methods/loraprune.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "model/prunable.h"
#include "util/error.h"

namespace secateur::methods {

LoraPrune::LoraPrune(const model::Model& model, LoraPruneOptions options)
    : model_(model), config_(model.config()), options_(options), lora_(model, options.lora),
      masks_(surgery::Masks::keep_all(model.config())) {
  if (!(options_.target >= 0 && options_.target < 1)) throw UserError("loraprune: target must be in [0, 1)");
  if (options_.iterations < 1 || options_.prune_every < 1)
    throw UserError("loraprune: iterations and prune_every must be at least 1");
  model::PrunableOptions po;
  po.hidden_dims = false;
  for (const model::Group& g : model::prunable_structure(model, po).groups)
    if (g.kind == model::GroupKind::head || g.kind == model::GroupKind::kv_group || g.kind == model::GroupKind::ffn_neuron)
      groups_.push_back(g);
  for (const model::LayerShape& s : config_.layers) {
    unit_avg_.push_back(torch::zeros({s.has_attention ? (grouped() ? s.num_kv_heads : s.num_heads) : 0}, torch::kDouble));
    ffn_avg_.push_back(torch::zeros({s.has_mlp ? s.intermediate : 0}, torch::kDouble));
  }
  // The trainer zeroes gradients before after_step: hooks keep this step's G_A, G_B.
  const std::vector<torch::Tensor> params = lora_.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    grads_.push_back(torch::zeros_like(params[i]).detach());
    torch::Tensor p = params[i];
    p.register_hook([this, i](const torch::Tensor& g) { grads_[i].add_(g.detach()); });
  }
}

std::vector<train::ParamGroup> LoraPrune::param_groups() {
  return {{"lora", lora_.parameters(), options_.lr, 0.0, false}};
}

void LoraPrune::prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) {
  options.weights = &lora_;
  if (step.training && step.micro_batch == 0) {
    snapshot_.clear();
    for (const torch::Tensor& p : lora_.parameters()) snapshot_.push_back(p.detach().clone());
    for (torch::Tensor& g : grads_) g.zero_();
  }
  // Eq. 13: pruned groups' outputs are masked, here through the structural gates.
  const model::Gates m = masks_.to_gates(config_, model_.device());
  gates.head = m.head, gates.kv_group = m.kv_group, gates.ffn = m.ffn;
}

void LoraPrune::group_importance(std::vector<torch::Tensor>& units, std::vector<torch::Tensor>& ffn) const {
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> current = lora_.parameters();
  const std::vector<torch::Tensor>& values = snapshot_.empty() ? current : snapshot_;
  std::map<std::string, torch::Tensor> per_weight;
  const std::vector<std::string>& names = lora_.names();
  for (size_t i = 0; i < names.size(); ++i)
    per_weight[names[i]] = lora_.importance(names[i], model_.hf_parameter(names[i]).detach(), values[2 * i], values[2 * i + 1],
                                            grads_[2 * i], grads_[2 * i + 1]).to(torch::kDouble).cpu();
  units.clear(), ffn.clear();
  for (size_t l = 0; l < unit_avg_.size(); ++l) {
    units.push_back(torch::zeros_like(unit_avg_[l]));
    ffn.push_back(torch::zeros_like(ffn_avg_[l]));
  }
  for (const model::Group& g : groups_) {
    double sum = 0;  // eq. 4: Σ of Î over the group's weights
    for (const model::ParamSlice& s : g.slices) {
      const auto it = per_weight.find(s.hf_param_name);
      if (it != per_weight.end()) sum += it->second.narrow(s.dim, s.start, s.length).sum().item<double>();
    }
    const model::LayerShape& shape = config_.layers[g.layer];
    if (g.kind == model::GroupKind::ffn_neuron) {
      ffn[g.layer][g.index] += sum;
    } else {
      const int64_t unit = g.kind == model::GroupKind::head && grouped() ? g.index / (shape.num_heads / shape.num_kv_heads) : g.index;
      units[g.layer][unit] += sum;
    }
  }
}

void LoraPrune::after_step(const train::StepInfo& step, train::StepMetrics& metrics) {
  std::vector<torch::Tensor> units, ffn;
  group_importance(units, ffn);
  const double beta = updates_ == 0 ? 0.0 : options_.beta;  // the first estimate starts the average
  for (size_t l = 0; l < units.size(); ++l) {
    unit_avg_[l] = beta * unit_avg_[l] + (1 - beta) * units[l];
    ffn_avg_[l] = beta * ffn_avg_[l] + (1 - beta) * ffn[l];
  }
  ++updates_;
  if ((step.step + 1) % options_.prune_every == 0 && rounds_ < options_.iterations) {
    ++rounds_;
    prune_to(options_.target * static_cast<double>(rounds_) / static_cast<double>(options_.iterations));
  }
  metrics["loraprune_rounds"] = static_cast<double>(rounds_);
}

namespace {

// The `keep` indices of largest importance among `kept`, ascending.
std::vector<int64_t> keep_best(const torch::Tensor& importance, const std::vector<int64_t>& kept, int64_t keep) {
  std::vector<int64_t> order = kept;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return importance[a].item<double>() > importance[b].item<double>();
  });
  order.resize(std::max<int64_t>(1, std::min<int64_t>(keep, order.size())));
  std::sort(order.begin(), order.end());
  return order;
}

}  // namespace

void LoraPrune::prune_to(double fraction) {
  for (size_t l = 0; l < masks_.layers.size(); ++l) {
    const model::LayerShape& s = config_.layers[l];
    surgery::LayerMask& m = masks_.layers[l];
    if (s.has_attention && options_.heads) {
      const int64_t n = grouped() ? s.num_kv_heads : s.num_heads;
      const int64_t keep = n - static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
      const std::vector<int64_t> units = keep_best(unit_avg_[l], grouped() ? m.kv_groups : m.heads, keep);
      if (grouped()) {
        const int64_t per = s.num_heads / s.num_kv_heads;
        m.kv_groups = units;
        m.heads.clear();
        for (int64_t g : units)
          for (int64_t h = g * per; h < (g + 1) * per; ++h) m.heads.push_back(h);
      } else {
        m.heads = m.kv_groups = units;
      }
    }
    if (s.has_mlp && options_.ffn) {
      const int64_t keep = s.intermediate - static_cast<int64_t>(std::llround(fraction * static_cast<double>(s.intermediate)));
      m.ffn = keep_best(ffn_avg_[l], m.ffn, keep);
    }
  }
}

void LoraPrune::save(io::TensorMap& tensors, nlohmann::json& state) const {
  const std::vector<std::string>& names = lora_.names();
  const std::vector<torch::Tensor> params = lora_.parameters();
  for (size_t i = 0; i < names.size(); ++i) {
    tensors["lora_A." + names[i]] = params[2 * i].detach().cpu().clone();
    tensors["lora_B." + names[i]] = params[2 * i + 1].detach().cpu().clone();
  }
  for (size_t l = 0; l < unit_avg_.size(); ++l) {
    tensors["avg.units." + std::to_string(l)] = unit_avg_[l].clone();
    tensors["avg.ffn." + std::to_string(l)] = ffn_avg_[l].clone();
  }
  state["rounds"] = rounds_;
  state["updates"] = updates_;
  state["masks"] = masks_.to_json();
}

void LoraPrune::load(const io::TensorMap& tensors, const nlohmann::json& state) {
  torch::NoGradGuard no_grad;
  auto get = [&](const std::string& name) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw UserError("loraprune checkpoint: missing tensor " + name);
    return it->second;
  };
  for (const std::string& n : lora_.names()) {
    lora_.a(n).copy_(get("lora_A." + n));
    lora_.b(n).copy_(get("lora_B." + n));
  }
  for (size_t l = 0; l < unit_avg_.size(); ++l) {
    unit_avg_[l] = get("avg.units." + std::to_string(l)).clone();
    ffn_avg_[l] = get("avg.ffn." + std::to_string(l)).clone();
  }
  rounds_ = state.value("rounds", 0);
  updates_ = state.value("updates", 0);
  masks_ = surgery::Masks::from_json(state.at("masks"), config_, "loraprune checkpoint");
}

}  // namespace secateur::methods
