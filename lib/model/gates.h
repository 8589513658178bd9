#pragma once
// Structural gates: multiplicative masks over a model's prunable structures.
//
// Every gate is optional: an undefined tensor (or an empty vector) means "absent", and an absent
// gate costs nothing in the forward pass. Gates are ordinary tensors, so they can require grad:
// gradient-based importance (∂loss/∂gate at gate = 1) and learned masks (L0, CoFi) train them.
//
// What each gate multiplies, and what a 0 means:
//   head[l]       [num_heads_l]     that head's attention context, before the output projection
//                                   (0 ≡ deleting the head's q rows and o columns)
//   kv_group[l]   [num_kv_heads_l]  the context of every query head reading that k/v group
//                                   (0 ≡ deleting the group's k/v rows and its query heads)
//   ffn[l]        [intermediate_l]  the activation of each neuron, before the down projection
//   hidden        [hidden]          the residual stream, CoFi-style: the embedding output and every
//                                   block's output (and an encoder's pooled vector) are multiplied
//                                   by it, and norms normalise over the dims whose gate is non-zero
//                                   (0 ≡ deleting that hidden dim)
//   attn_block[l], mlp_block[l]     scalars: a block computes x + g·(block(x) − x), so 0 skips it
//   layer[l]                        scalar: the same interpolation over the whole layer
#include <torch/torch.h>

#include <vector>

#include "model/config.h"

namespace secateur::model {

struct Gates {
  std::vector<torch::Tensor> head;
  std::vector<torch::Tensor> kv_group;
  std::vector<torch::Tensor> ffn;
  torch::Tensor hidden;
  std::vector<torch::Tensor> attn_block;
  std::vector<torch::Tensor> mlp_block;
  std::vector<torch::Tensor> layer;

  // All gates present and equal to one (fp32, on `device`), each a leaf that requires grad
  // when asked: the starting point of importance estimation and mask learning.
  static Gates ones(const ModelConfig& config, torch::Device device = torch::kCPU, bool requires_grad = false);

  // The gate of `layer` in `list`, or an undefined tensor when absent.
  static torch::Tensor at(const std::vector<torch::Tensor>& list, int64_t layer) {
    return layer < static_cast<int64_t>(list.size()) ? list[layer] : torch::Tensor();
  }

  // Throws UserError naming the gate when a present gate has the wrong size for `config`.
  void validate(const ModelConfig& config) const;

  // All defined gate tensors, e.g. to hand them to an optimizer or read their grads.
  std::vector<torch::Tensor> tensors() const;
};

}  // namespace secateur::model
