#pragma once
// What a training checkpoint holds besides the model and the extensions (internal to lib/train):
// the optimiser's per-parameter state, and the random generators' states. Both are saved as
// tensors (safetensors) keyed by position, so a resumed run continues bitwise.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <vector>

#include "io/weights.h"
#include "train/trainer.h"

namespace secateur::train::state {

// p<i>.exp_avg / p<i>.exp_avg_sq (AdamW) or p<i>.momentum_buffer (SGD) for every parameter i of
// `params` that has state; `steps` receives AdamW's step count per parameter ("i" → step).
io::TensorMap optimizer_tensors(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& params,
                                OptimizerKind kind, nlohmann::json& steps);
// Replaces the optimiser's state with what optimizer_tensors saved (on each parameter's device).
// UserError when a tensor the steps name is missing.
void load_optimizer(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& params, OptimizerKind kind,
                    const io::TensorMap& tensors, const nlohmann::json& steps);

// rng.cpu and rng.cuda<i> for every visible GPU: torch's default generators.
io::TensorMap rng_tensors();
void load_rng(const io::TensorMap& tensors);

}  // namespace secateur::train::state
