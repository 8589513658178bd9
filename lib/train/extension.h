#pragma once
// The trainer's one extension point. Everything a method adds to a training loop — learned masks
// (CoFi L0, VIB, movement, LoRAPrune), distillation from a teacher, Lagrangian sparsity control —
// is an Extension: it owns its trainable tensors, chooses the gates and weight transform of each
// forward pass, adds terms to the loss, acts after the optimiser step, and saves its state in the
// trainer's checkpoints. The trainer (lib/train/trainer.h) knows no method by name.
//
// Order within one optimiser step (k micro-batches of gradient accumulation):
//   for each micro-batch: prepare() → forward → task loss + Σ loss() → backward
//   clip, step, zero_grad → after_step()
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "data/batch.h"
#include "io/weights.h"
#include "model/gates.h"
#include "model/model.h"

namespace secateur::train {

struct StepInfo {
  int64_t step = 0;         // optimiser steps done before this one (0-based)
  int64_t total_steps = 0;  // the run's planned optimiser steps
  int64_t micro_batch = 0;  // index within the accumulation window
  bool training = true;     // false during evaluation passes (deterministic gates)
  // This step's metrics reach metrics.jsonl: fill StepMetrics (which reads values back to the
  // host, a GPU sync) only when set.
  bool logging = false;
};

// Tensors an extension trains, with their own learning rate and weight decay.
struct ParamGroup {
  std::string name;                   // "cofi.log_alpha", "cofi.lambda", "lora"
  std::vector<torch::Tensor> params;  // leaves that require grad
  double lr = -1;                     // < 0: the trainer's learning rate
  double weight_decay = 0;
  // Gradient ascent (Lagrange multipliers, CoFi's λ1, λ2): the trainer negates these gradients
  // before the optimiser step, so the optimiser's descent is an ascent on them.
  bool maximize = false;
};

// Scalars an extension reports for one step (written to metrics.jsonl with the loss).
using StepMetrics = std::map<std::string, double>;

class Extension {
 public:
  virtual ~Extension() = default;
  virtual std::string name() const = 0;

  virtual std::vector<ParamGroup> param_groups() { return {}; }

  // Before each forward pass: set the gates (sampled in training, deterministic in evaluation)
  // and forward options (e.g. a weight transform) this pass uses. `gates` arrives holding what
  // earlier extensions set (or nothing, meaning dense).
  virtual void prepare(const StepInfo& step, model::Gates& gates, model::ForwardOptions& options) {
    (void)step, (void)gates, (void)options;
  }

  // A term added to the task loss of one micro-batch (undefined = none). Called only in training.
  virtual torch::Tensor loss(const StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                             StepMetrics& metrics) {
    (void)step, (void)batch, (void)output, (void)metrics;
    return {};
  }

  // After the optimiser step (score/top-v updates, pruning iterations, moving averages).
  virtual void after_step(const StepInfo& step, StepMetrics& metrics) { (void)step, (void)metrics; }

  // Whether the forward pass must return hidden states (layer-wise distillation).
  virtual bool needs_hidden_states() const { return false; }

  // Checkpoint state, restored exactly on resume: tensors under names the extension chooses
  // (the trainer prefixes them with name() + "."), and anything else as JSON.
  virtual void save(io::TensorMap& tensors, nlohmann::json& state) const { (void)tensors, (void)state; }
  virtual void load(const io::TensorMap& tensors, const nlohmann::json& state) { (void)tensors, (void)state; }
};

}  // namespace secateur::train
