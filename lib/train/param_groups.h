#pragma once
// Which tensors a training stage optimises, and in which optimiser groups: the model's HF-named
// parameters that the freeze options leave trainable, split into weight-decayed and not (biases,
// norms and, unless asked, embeddings: decays()), then each extension's own groups (gates,
// scores, LoRA adapters, Lagrange multipliers) with their learning rates and `maximize` flags.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/extension.h"
#include "train/trainer.h"

namespace secateur::train {

struct OptimizerGroup {
  std::string name;                  // "model.decay", "model.no_decay", "<extension>.<group>"
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;    // HF names for the model's, "<group>.<i>" for an extension's
  double lr = 0, weight_decay = 0;
  bool maximize = false;             // gradient ascent (Lagrange multipliers)
};

struct TrainableParameters {
  std::vector<OptimizerGroup> groups;            // non-empty groups, model's first
  std::vector<torch::Tensor> all_params;     // every group's tensors, in group order
  std::vector<std::string> all_names;
  std::vector<std::string> model_trainable;  // the model's trainable HF names
};

// Sets requires_grad on every model parameter from options.freeze (UserError on a bad pattern,
// on an extension tensor that does not require grad, or when nothing would train).
TrainableParameters make_param_groups(model::Model& model, const TrainOptions& options,
                                      const std::vector<std::shared_ptr<Extension>>& extensions);

// The optimiser over `groups`, one torch param group each with its lr and weight decay: AdamW
// (train::FusedAdamW) or SGD with momentum.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<OptimizerGroup>& groups,
                                                        const OptimizerOptions& options);

}  // namespace secateur::train
