#pragma once
// Helpers shared by the model tests.
#include <torch/torch.h>

#include <string>

#include "io/weights.h"
#include "model/config.h"
#include "model/model.h"

namespace secateur::model::testing {

inline std::string fixture(const std::string& name) { return std::string(SECATEUR_FIXTURES) + "/models/" + name; }

struct Reference {
  torch::Tensor input_ids, attention_mask, logits, last_hidden_state;
};

inline Reference load_reference(const std::string& name) {
  const io::TensorMap t = io::load_safetensors(fixture(name) + "/reference.safetensors");
  return {t.at("input_ids"), t.at("attention_mask"), t.at("logits"), t.at("last_hidden_state")};
}

// Largest |a − b| over the positions the attention mask keeps (per-token outputs [B, T, ...]),
// or over everything for per-sequence outputs [B, L].
inline double max_diff_on_tokens(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  const torch::Tensor da = a.to(torch::kFloat32).cpu(), db = b.to(torch::kFloat32).cpu();
  if (da.sizes() != db.sizes()) return INFINITY;
  torch::Tensor diff = (da - db).abs();
  if (diff.dim() >= 3) diff = diff.index({mask.cpu().to(torch::kBool)});
  return diff.max().item<double>();
}

inline double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  return (a.to(torch::kFloat32).cpu() - b.to(torch::kFloat32).cpu()).abs().max().item<double>();
}

// A small config of any family from JSON text, for tests that need no fixture.
inline ModelConfig config_from(const std::string& json_text) {
  return ModelConfig::from_json(nlohmann::json::parse(json_text), "config.json");
}

}  // namespace secateur::model::testing
