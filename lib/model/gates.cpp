#include "model/gates.h"

#include "util/error.h"

namespace secateur::model {

Gates Gates::ones(const ModelConfig& config, torch::Device device, bool requires_grad) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device).requires_grad(requires_grad);
  auto gate = [&](int64_t n) { return torch::ones({n}, options); };
  auto scalar = [&] { return torch::ones({}, options); };
  Gates g;
  for (const LayerShape& s : config.layers) {
    g.head.push_back(s.has_attention ? gate(s.num_heads) : torch::Tensor());
    g.kv_group.push_back(s.has_attention ? gate(s.num_kv_heads) : torch::Tensor());
    g.ffn.push_back(s.has_mlp ? gate(s.intermediate) : torch::Tensor());
    g.attn_block.push_back(s.has_attention ? scalar() : torch::Tensor());
    g.mlp_block.push_back(s.has_mlp ? scalar() : torch::Tensor());
    g.layer.push_back(scalar());
  }
  g.hidden = gate(config.hidden_size);
  return g;
}

namespace {

void check(const torch::Tensor& gate, const std::string& name, int64_t expected, bool scalar) {
  if (!gate.defined()) return;
  const bool ok = scalar ? gate.numel() == 1 : (gate.dim() == 1 && gate.size(0) == expected);
  if (!ok)
    throw UserError("gate " + name + " has shape " + c10::str(gate.sizes()) + ", expected " +
                    (scalar ? std::string("a scalar") : "[" + std::to_string(expected) + "]"));
}

void check_list(const std::vector<torch::Tensor>& list, const std::string& name, int64_t layers) {
  if (static_cast<int64_t>(list.size()) > layers)
    throw UserError("gate " + name + " has " + std::to_string(list.size()) + " entries for a model of " +
                    std::to_string(layers) + " layers");
}

}  // namespace

void Gates::validate(const ModelConfig& config) const {
  const int64_t n = config.num_layers;
  check_list(head, "head", n);
  check_list(kv_group, "kv_group", n);
  check_list(ffn, "ffn", n);
  check_list(attn_block, "attn_block", n);
  check_list(mlp_block, "mlp_block", n);
  check_list(layer, "layer", n);
  for (int64_t l = 0; l < n; ++l) {
    const LayerShape& s = config.layers[l];
    const std::string i = "[" + std::to_string(l) + "]";
    check(at(head, l), "head" + i, s.num_heads, false);
    check(at(kv_group, l), "kv_group" + i, s.num_kv_heads, false);
    check(at(ffn, l), "ffn" + i, s.intermediate, false);
    check(at(attn_block, l), "attn_block" + i, 1, true);
    check(at(mlp_block, l), "mlp_block" + i, 1, true);
    check(at(layer, l), "layer" + i, 1, true);
  }
  check(hidden, "hidden", config.hidden_size, false);
}

std::vector<torch::Tensor> Gates::tensors() const {
  std::vector<torch::Tensor> out;
  for (const auto* list : {&head, &kv_group, &ffn, &attn_block, &mlp_block, &layer})
    for (const torch::Tensor& t : *list)
      if (t.defined()) out.push_back(t);
  if (hidden.defined()) out.push_back(hidden);
  return out;
}

}  // namespace secateur::model
