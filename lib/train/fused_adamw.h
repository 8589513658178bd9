#pragma once
// AdamW whose step on a GPU is one multi-tensor kernel launch per parameter group
// (at::_fused_adamw_, LibTorch ≥ 2.1) instead of ~10 element-wise kernels per parameter, which on
// a BERT-base step is ~2,000 launches and the optimiser's whole cost. Same update as
// torch::optim::AdamW (Loshchilov & Hutter, decoupled decay):
//   p ← p·(1 − lr·λ);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
//   p ← p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
// and the same per-parameter state (AdamWParamState: step, exp_avg, exp_avg_sq), so checkpoints
// and resume are unchanged. On the CPU, on older LibTorch, or for tensors the kernel cannot take
// (mixed devices or dtypes, non-dense gradients) it is torch::optim::AdamW's own step.
#include <torch/torch.h>
#include <torch/version.h>

#include <vector>

namespace secateur::train {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  // Whether this LibTorch has the fused kernel at all (2.1 and later).
  static bool kernel_available();

  torch::Tensor step(LossClosure closure = nullptr) override;

  // How the last step() ran: true when every group with gradients went through the fused kernel.
  bool last_step_fused() const { return last_step_fused_; }

 private:
  bool fused_step();
  bool last_step_fused_ = false;
};

#if TORCH_VERSION_MAJOR >= 2
// The AdamW state of `p` in `optimizer` (keyed by TensorImpl), created as torch::optim::AdamW
// creates it (step 0, zero moments) when absent.
torch::optim::AdamWParamState& adamw_state(torch::optim::Optimizer& optimizer, const torch::Tensor& p);
#endif

// torch.nn.utils.clip_grad_norm_: the global L2 norm of `grads` (as a 0-d float tensor, no host
// sync) and, when max_norm > 0, every gradient scaled in place by min(1, max_norm / (norm + 1e-6)).
// Multi-tensor kernels (_foreach_norm / _foreach_mul_) on LibTorch ≥ 2.1, a loop before.
torch::Tensor clip_grad_norm(std::vector<torch::Tensor>& grads, double max_norm);

}  // namespace secateur::train
