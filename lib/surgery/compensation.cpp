#include "surgery/compensation.h"

#include <algorithm>
#include <stdexcept>

#include "util/error.h"
#include "util/strings.h"

namespace secateur::surgery {

namespace {

using model::Group;
using model::GroupKind;

bool contains(const std::vector<int64_t>& sorted, int64_t i) { return std::binary_search(sorted.begin(), sorted.end(), i); }

// The group is kept by `before` and removed by `removed`, in a layer and block that both keep.
bool newly_removed(const Group& g, const Masks& before, const Masks& removed) {
  const LayerMask& a = before.layers[g.layer];
  const LayerMask& b = removed.layers[g.layer];
  const bool attention = g.kind == GroupKind::head;
  if (!a.keep || !b.keep || !(attention ? a.attention && b.attention : a.mlp && b.mlp)) return false;
  const auto& was = attention ? a.heads : a.ffn;
  const auto& now = attention ? b.heads : b.ffn;
  return contains(was, g.index) && !contains(now, g.index);
}

std::string bias_of(const std::string& weight) {
  if (!strings::ends_with(weight, ".weight")) throw std::logic_error("compensation: " + weight + " is not a weight");
  return weight.substr(0, weight.size() - 7) + ".bias";
}

// Rebuilds `m` with the config flags that create the missing biases. Returns the new model and
// whether transformers' class for the family has the same flags.
std::shared_ptr<model::Model> with_biases(const model::Model& m, const std::set<std::string>& missing, bool* hf_exact) {
  model::ModelConfig c = m.config();
  if (c.family != model::Family::llama)
    throw std::logic_error("compensation: " + c.model_type + " lacks a bias its config says it has");
  for (const std::string& name : missing) {
    if (strings::ends_with(name, "self_attn.o_proj.bias")) {
      if (c.model_type == "qwen2")
        throw UserError("bias compensation of attention heads needs an o_proj bias, which a Qwen2 checkpoint cannot "
                        "hold (Qwen2's o_proj has no bias in transformers or in config.json); prune heads without "
                        "bias_compensation, or compensate FFN neurons only");
      // HF's attention_bias gives q, k, v and o biases together; q/k/v ones stay zero.
      c.qkv_bias = c.o_bias = true;
      c.raw["attention_bias"] = true;
    } else if (strings::ends_with(name, "mlp.down_proj.bias")) {
      c.mlp_bias = true;  // and zero gate/up biases, as HF's mlp_bias creates them
      c.raw["mlp_bias"] = true;
    } else {
      throw std::logic_error("compensation: no config flag creates " + name);
    }
  }
  *hf_exact = *hf_exact && c.model_type == "llama";
  std::shared_ptr<model::Model> out = model::build_model(c, torch::TensorOptions().dtype(m.dtype()).device(m.device()));
  torch::NoGradGuard no_grad;
  const model::LoadReport report = out->load_state(m.state_dict_hf(), "compensation");
  for (const std::string& name : report.missing) out->hf_parameter(name).zero_();
  out->train(m.is_training());
  return out;
}

}  // namespace

Compensation compensate(std::shared_ptr<model::Model> model, const Masks& before, const Masks& removed,
                        const ChannelMeans& means) {
  model::PrunableOptions options;
  options.hidden_dims = false;
  const model::PrunableStructure structure = model::prunable_structure(*model, options);
  torch::NoGradGuard no_grad;
  Compensation result;
  std::map<std::string, torch::Tensor> delta;  // bias name → Σ W_{:,k}·x̄_k (float64)
  for (const Group& g : structure.groups) {
    if ((g.kind != GroupKind::head && g.kind != GroupKind::ffn_neuron) || !newly_removed(g, before, removed)) continue;
    bool folded = false;
    for (const model::ParamSlice& s : g.slices) {
      const auto mean = means.mean.find(s.hf_param_name);
      if (mean == means.mean.end() || means.in_dim.at(s.hf_param_name) != s.dim) continue;
      const torch::Tensor w = model->hf_parameter(s.hf_param_name).detach().to(torch::kDouble).narrow(s.dim, s.start, s.length);
      const torch::Tensor x = mean->second.to(w.device(), torch::kDouble).narrow(0, s.start, s.length);
      const torch::Tensor d = s.dim == 1 ? torch::mv(w, x) : torch::mv(w.t(), x);
      torch::Tensor& sum = delta[bias_of(s.hf_param_name)];
      sum = sum.defined() ? sum + d : d;
      result.channels += s.length;
      folded = true;
    }
    if (!folded)
      throw UserError("bias compensation: no calibration mean for the output projection of " + model::to_string(g.kind) +
                      " " + std::to_string(g.index) + " in layer " + std::to_string(g.layer) +
                      " (use an estimator that measures activations: fluctuation or activation)");
  }
  std::set<std::string> missing;
  for (const auto& [bias, d] : delta)
    if (!model->has_hf_parameter(bias)) missing.insert(bias);
  if (!missing.empty()) {
    model = with_biases(*model, missing, &result.hf_exact);
    result.added.assign(missing.begin(), missing.end());
  }
  for (const auto& [bias, d] : delta) {
    torch::Tensor b = model->hf_parameter(bias);
    b.add_(d.to(b.device(), b.scalar_type()));
    result.biases.push_back(bias);
  }
  result.model = model;
  return result;
}

}  // namespace secateur::surgery
