#pragma once
// Which parameters a model should hold packed (issue #8), found by HF name, independently of the
// model's own bookkeeping: q/k/v and gate/up of the LLaMA family, query/key/value of BERT and
// RoBERTa, weights and biases alike.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/model.h"

namespace secateur::model::testing {

// Each layer's packed groups, as HF names in row order. GPT-2 has none (c_attn is fused in HF).
inline std::vector<std::vector<std::string>> packed_name_groups(const Model& model) {
  static const std::vector<std::vector<std::string>> kSuffixes{
      {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"},
      {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"},
      {"mlp.gate_proj.weight", "mlp.up_proj.weight"},
      {"mlp.gate_proj.bias", "mlp.up_proj.bias"},
      {"attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight"},
      {"attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias"}};
  std::vector<std::vector<std::string>> out;
  for (const std::string& name : model.hf_names())
    for (const auto& suffixes : kSuffixes) {
      const std::string& first = suffixes[0];
      if (name.size() < first.size() || name.compare(name.size() - first.size(), first.size(), first) != 0) continue;
      const std::string prefix = name.substr(0, name.size() - first.size());
      std::vector<std::string> group;
      for (const std::string& s : suffixes) group.push_back(prefix + s);
      out.push_back(group);
    }
  return out;
}

inline std::vector<torch::Tensor> parameters_named(const Model& model, const std::vector<std::string>& names) {
  std::vector<torch::Tensor> out;
  for (const std::string& n : names) out.push_back(model.hf_parameter(n));
  return out;
}

// Gives every parameter a buffer of its own again, so that the forward pass runs q/k/v and gate/up
// as separate GEMMs: for tests that compare a plain forward bitwise with one through a weight
// transform (always separate GEMMs), since one wide GEMM rounds differently from narrow ones.
inline void unpack(Model& model) {
  torch::NoGradGuard no_grad;
  for (const std::string& name : model.hf_names()) {
    torch::Tensor t = model.hf_parameter(name);
    t.set_data(t.clone());
  }
}

}  // namespace secateur::model::testing
