#pragma once
// bf16 autocast of CUDA ops for a training step's forward pass and loss (internal to lib/train).
// The backward runs in the dtypes the forward chose. LibTorch 2.4 replaced the CUDA-only API with
// a per-device one; both are covered here so the trainer has no version guards.
#include <torch/version.h>

#include <ATen/autocast_mode.h>

namespace secateur::train {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SECATEUR_AUTOCAST_PER_DEVICE 1
#endif
// Autocast on for the scope's lifetime when `on`; off (and its cast cache cleared) after.
class AutocastScope {
 public:
  explicit AutocastScope(bool on) : on_(on) {
    if (!on_) return;
#ifdef SECATEUR_AUTOCAST_PER_DEVICE
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
  }
  ~AutocastScope() {
    if (!on_) return;
#ifdef SECATEUR_AUTOCAST_PER_DEVICE
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
    at::autocast::clear_cache();
  }

 private:
  bool on_;
};

}  // namespace secateur::train
