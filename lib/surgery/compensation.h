#pragma once
// FLAP's bias compensation (An et al. 2024): a removed input channel k of an output projection
// (o_proj for heads, down_proj for FFN neurons) is replaced by its calibration mean x̄_k instead
// of by zero, which a projection y = W·x + b absorbs exactly into its bias:
//   b ← b + Σ_{k removed} W_{:,k} · x̄_k
// so the pruned layer's output keeps its mean over the calibration tokens. The compensation is
// applied to the dense model before surgery, so the compensated gated model and the physically
// pruned model are the same function.
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "model/model.h"
#include "model/prunable.h"
#include "surgery/masks.h"

namespace secateur::surgery {

// Input channel statistics of projections: HF weight name → per-input-channel mean, and the
// weight dim that indexes input channels (1 for nn.Linear [out, in], 0 for Conv1D [in, out]).
struct ChannelMeans {
  std::map<std::string, torch::Tensor> mean;
  std::map<std::string, int64_t> in_dim;
};

struct Compensation {
  std::shared_ptr<model::Model> model;  // the compensated model (a new one when biases were added)
  int64_t channels = 0;                 // input channels folded into biases
  std::vector<std::string> biases;      // the biases changed
  std::vector<std::string> added;       // biases that did not exist before (LLaMA-family o/down)
  // False when a bias was added to a family whose Hugging Face class cannot hold it (Mistral,
  // Qwen2 MLPs): secateur loads such an export exactly, transformers would drop the bias.
  bool hf_exact = true;
};

// Folds the means of the channels that `removed` removes but `before` still had (the head and
// FFN-neuron groups of layers and blocks that stay) into their projections' biases. A Llama
// model gains attention_bias / mlp_bias (zero q/k/v and gate/up biases come with them, as HF's
// flags create them all); Qwen2's o_proj cannot take a bias in any checkpoint format, which is a
// UserError. Throws UserError when a needed channel mean is missing.
// Existing biases are edited in place (`model` itself changes); when biases must be added, a new
// model holds the result and `model` is left as it was.
Compensation compensate(std::shared_ptr<model::Model> model, const Masks& before, const Masks& removed,
                        const ChannelMeans& means);

}  // namespace secateur::surgery
