#pragma once
// What secateur's CUDA-graph captures share (train::CudaGraphStep, eval::GraphedForward): the
// shape a graph is recorded for, copying a batch into a graph's input buffers, and the scope a
// capture and its checked warm-up run in. Include it only where LibTorch's CUDA headers are on the
// include path (SECATEUR_TORCH_CUDA with LibTorch >= 2.4, as both users guard it).
#include <torch/torch.h>

#include <ATen/autocast_mode.h>
#include <c10/cuda/CUDAFunctions.h>

#include <array>
#include <cstdint>
#include <vector>

#include "data/batch.h"

namespace secateur::eval::graph_capture {

inline std::array<const torch::Tensor*, 4> inputs_of(const data::Batch& b) {
  return {&b.input_ids, &b.attention_mask, &b.token_type_ids, &b.labels};
}

// What a graph is recorded for: which inputs exist, their dtypes and sizes.
inline std::vector<int64_t> signature(const data::Batch& b) {
  std::vector<int64_t> s;
  for (const torch::Tensor* t : inputs_of(b)) {
    s.push_back(t->defined() ? t->dim() : -1);
    if (!t->defined()) continue;
    s.push_back(static_cast<int64_t>(t->scalar_type()));
    for (int64_t d : t->sizes()) s.push_back(d);
  }
  return s;
}

// A graph's input buffers: clones of the batch, normal tensors even under InferenceMode (a later
// call outside it copies into them, which an inference tensor refuses), made without gradients.
inline data::Batch input_buffers(const data::Batch& b) {
  c10::InferenceMode normal_tensors(false);
  torch::NoGradGuard no_grad;  // InferenceMode(false) turns grad mode on
  auto c = [](const torch::Tensor& t) { return t.defined() ? t.clone() : t; };
  return {c(b.input_ids), c(b.attention_mask), c(b.token_type_ids), c(b.labels)};
}

// The batch into a graph's input buffers (same signature), asynchronously on the current stream.
inline void copy_into(data::Batch& to, const data::Batch& from) {
  auto copy = [](torch::Tensor& dst, const torch::Tensor& src) {
    if (src.defined()) dst.copy_(src, /*non_blocking=*/true);
  };
  copy(to.input_ids, from.input_ids);
  copy(to.attention_mask, from.attention_mask);
  copy(to.token_type_ids, from.token_type_ids);
  copy(to.labels, from.labels);
}

// What a capture records must run the same way eagerly: no autocast cast cache (a cast cached
// during capture would outlive the graph's memory), and, when asked, host syncs raise an error
// (a checked eager run proves the work has none, which a capture cannot contain).
class SafeScope {
 public:
  explicit SafeScope(bool error_on_sync) : cache_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
    sync_mode_ = c10::cuda::warning_state().get_sync_debug_mode();
    if (error_on_sync) c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  }
  ~SafeScope() {
    c10::cuda::warning_state().set_sync_debug_mode(sync_mode_);
    at::autocast::set_autocast_cache_enabled(cache_);
  }
  SafeScope(const SafeScope&) = delete;
  SafeScope& operator=(const SafeScope&) = delete;

 private:
  bool cache_;
  c10::cuda::SyncDebugMode sync_mode_;
};

}  // namespace secateur::eval::graph_capture
