#pragma once
// LoRAPrune (Zhang et al. 2023, "LoRAPrune: Pruning Meets Low-Rank Parameter-Efficient
// Fine-Tuning", §3.2, Algorithm 1) as a train::Extension: the model is frozen and trains LoRA
// adapters (lib/methods/lora.h); after every optimiser step each group's importance is the sum of
// its weights' LoRA-guided importance (eq. 10 summed as eq. 4) and enters a moving average
// Ḡ_t = λ·Ḡ_{t−1} + (1 − λ)·Ĝ_t (eq. 11); every `prune_every` steps the lowest-Ḡ groups of each
// layer are masked (eqs. 12–13, through the head / kv-group / neuron gates) until `target` of them
// are gone after `iterations` rounds, LoRA fine-tuning the survivors in between. At the end the
// adapters are merged into the weights and the masks go to surgery.
#include <torch/torch.h>

#include <vector>

#include "methods/lora.h"
#include "model/model.h"
#include "model/prunable.h"
#include "surgery/masks.h"
#include "train/extension.h"

namespace secateur::methods {

struct LoraPruneOptions {
  LoraOptions lora;
  double target = 0.5;        // fraction of each layer's heads (key/value groups, llama) and neurons removed
  int64_t iterations = 5;     // pruning rounds; round k leaves target·k/iterations removed
  int64_t prune_every = 10;   // optimiser steps between rounds
  double beta = 0.9;          // λ of the moving average (eq. 11)
  bool heads = true, ffn = true;
  double lr = -1;             // adapters' learning rate (< 0: the trainer's)
};

class LoraPrune : public train::Extension {
 public:
  LoraPrune(const model::Model& model, LoraPruneOptions options);

  std::string name() const override { return "loraprune"; }
  std::vector<train::ParamGroup> param_groups() override;
  void prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) override;
  void after_step(const train::StepInfo& step, train::StepMetrics& metrics) override;
  void save(io::TensorMap& tensors, nlohmann::json& state) const override;
  void load(const io::TensorMap& tensors, const nlohmann::json& state) override;

  Lora& lora() { return lora_; }
  const surgery::Masks& masks() const { return masks_; }
  int64_t rounds_done() const { return rounds_; }
  // Per layer: the moving-average importance of each unit (head or group) and neuron.
  const std::vector<torch::Tensor>& unit_importance() const { return unit_avg_; }
  const std::vector<torch::Tensor>& ffn_importance() const { return ffn_avg_; }
  // One step's group importance (eq. 4 over eq. 10) from the adapters' current values and grads.
  void group_importance(std::vector<torch::Tensor>& units, std::vector<torch::Tensor>& ffn) const;
  // Masks the lowest-importance units so that `fraction` of each layer's are removed.
  void prune_to(double fraction);

 private:
  bool grouped() const { return config_.family == model::Family::llama; }

  const model::Model& model_;
  model::ModelConfig config_;
  LoraPruneOptions options_;
  Lora lora_;
  surgery::Masks masks_;
  std::vector<model::Group> groups_;           // head / kv_group / ffn_neuron groups of the model
  std::vector<torch::Tensor> unit_avg_, ffn_avg_;
  std::vector<torch::Tensor> snapshot_;        // A, B before this step's update (eq. 9's t − 1)
  std::vector<torch::Tensor> grads_;           // G_A, G_B summed over the step's micro-batches
  int64_t rounds_ = 0;
  int64_t updates_ = 0;
};

}  // namespace secateur::methods
