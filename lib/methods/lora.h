#pragma once
// LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3) on the
// frozen layer projections, through model::WeightTransform: W' = W + (α/r)·B·A with A [r × in]
// (Kaiming-uniform, as peft initialises it), B [out × r] (zeros, so training starts at the base
// model), in the logical nn.Linear layout (transposed for GPT-2's Conv1D weights).
//
// And LoRAPrune's LoRA-guided importance (Zhang et al. 2023, "LoRAPrune: Pruning Meets Low-Rank
// Parameter-Efficient Fine-Tuning", eqs. 9–10): the gradient of the merged weight is estimated
// from the adapters' own, ∂L/∂(BA) ≈ G_B·A + B·G_A − G_B·G_A (η = 1), and each weight's
// importance is Î_ij = [(∂L/∂(BA))_ij · (W_ij + (BA)_ij)]², the first-order Taylor estimate of
// removing W_ij (eq. 3) without ever computing ∂L/∂W.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "model/model.h"

namespace secateur::methods {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
};

class Lora : public model::WeightTransform {
 public:
  Lora(const model::Model& model, LoraOptions options);

  torch::Tensor apply(const std::string& hf_name, const torch::Tensor& weight) const override;

  double scaling() const { return options_.alpha / static_cast<double>(options_.rank); }
  const std::vector<std::string>& names() const { return order_; }
  torch::Tensor& a(const std::string& hf_name) { return adapters_.at(hf_name).a; }
  torch::Tensor& b(const std::string& hf_name) { return adapters_.at(hf_name).b; }
  std::vector<torch::Tensor> parameters() const;

  // (α/r)·B·A in the HF layout of the weight.
  torch::Tensor delta(const std::string& hf_name) const;
  // W ← W + (α/r)·B·A for every adapter, then B ← 0 (the model alone now computes what it did with LoRA).
  void merge_into(model::Model& model);

  // LoRAPrune eq. 10 in the HF layout of the weight, from A, B and the gradients G_A, G_B given
  // (the adapters' own when undefined).
  torch::Tensor importance(const std::string& hf_name, const torch::Tensor& weight, torch::Tensor a = {},
                           torch::Tensor b = {}, torch::Tensor grad_a = {}, torch::Tensor grad_b = {}) const;

 private:
  struct Adapter {
    torch::Tensor a, b;
    int64_t out_dim = 0;
  };
  LoraOptions options_;
  std::map<std::string, Adapter> adapters_;
  std::vector<std::string> order_;
};

}  // namespace secateur::methods
