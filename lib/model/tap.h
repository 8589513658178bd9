#pragma once
// Activation taps: read-only observation of intermediate activations during a forward pass.
//
// Some importance estimators need more than logits and gradients: Wanda the norms of every
// projection's inputs, FLAP their per-channel mean and variance, ShortGPT the residual stream
// before and after each block. A Tap installed on the current thread with TapScope is told of
// these activations at fixed points of every family's forward pass, so estimators stay
// family-agnostic and no second copy of the forward pass exists. Without a tap the cost is one
// thread-local read per projection.
#include <torch/torch.h>

#include <cstdint>

namespace secateur::model {

class Tap {
 public:
  virtual ~Tap() = default;
  // `x` is the input of a projection whose HF-layout weight is `weight` (the live parameter, so
  // callers may key on its TensorImpl); `in_dim` is the dim of `weight` that indexes x's last dim:
  // 1 for nn.Linear's [out, in], 0 for GPT-2's Conv1D [in, out].
  virtual void projection_input(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) {}
  // The hidden state after layer `layer`'s attention block (attention = true) or MLP block, as the
  // next block of the layer sees it (block gates applied); [B, T, hidden].
  virtual void block_output(int64_t layer, bool attention, const torch::Tensor& x) {}
};

// Installs `tap` for the current thread for the scope's lifetime (nesting restores the outer one).
class TapScope {
 public:
  explicit TapScope(Tap* tap);
  ~TapScope();
  TapScope(const TapScope&) = delete;
  TapScope& operator=(const TapScope&) = delete;

 private:
  Tap* previous_;
};

Tap* current_tap();  // nullptr when none is installed

namespace fn {
inline void tap_projection(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) {
  if (Tap* t = current_tap()) t->projection_input(weight, in_dim, x);
}
inline void tap_block(int64_t layer, bool attention, const torch::Tensor& x) {
  if (Tap* t = current_tap()) t->block_output(layer, attention, x);
}
}  // namespace fn

}  // namespace secateur::model
