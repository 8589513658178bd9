#pragma once
// Fixed-shape evaluation passes replayed as CUDA graphs. An evaluation forward of a small model,
// or of a large one at a small batch, is thousands of kernels whose launches cost the host more
// than the GPU spends running them; a captured graph launches them all at once. The arithmetic is
// the eager pass's: the same kernels on the same values, so the results are bitwise equal.
//
// A GraphedForward wraps a function of a batch (forward, or forward and loss). Per shape of batch
// (which inputs exist, their sizes and dtypes): the first call runs it eagerly on a side stream as
// a warm-up (cuBLAS handles and workspaces, lazy initialisation) with host synchronisation turned
// into an error, the second captures it into a graph of its own (own memory pool, inputs copied
// into static buffers), every later one copies the batch into those buffers and replays. A shape
// whose warm-up synchronised with the host gets one more checked warm-up (a buffer moved to the
// device on the first forward reads the host once); a second synchronisation, or a failed capture,
// makes every later call eager (reason() says why). At most kMaxShapes shapes are graphed (an
// evaluation set has one full shape and an odd last batch); batches of other shapes run eagerly.
//
// Everywhere else (the CPU, a build without CUDA graphs, turned off) a call is the function's call.
//
// Results of a replay are the graph's own output tensors: they are overwritten by the next call,
// so a caller consumes them (or clones them) before calling again. Work is ordered through CUDA
// events, so consuming them asynchronously on the caller's stream is enough.
//
// Calls run without gradients (the wrapper sets torch::NoGradGuard itself). An enclosing
// c10::InferenceMode is fine, and calls inside and outside one may be mixed: the static input
// buffers are normal tensors, and outputs captured under InferenceMode are inference tensors,
// which callers only read.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"

namespace secateur::eval {

class GraphedForward {
 public:
  // Inputs → outputs, on the wrapper's device. Under capture it must not synchronise with the
  // host, allocate outside LibTorch's allocator or change host state the next call depends on.
  using Function = std::function<std::vector<torch::Tensor>(const data::Batch&)>;

  static constexpr size_t kMaxShapes = 2;

  // Whether this build can capture: LibTorch >= 2.4 built with CUDA.
  static bool compiled();

  // `device`: where the function computes (the model's device). enabled = false: always eager.
  GraphedForward(Function function, torch::Device device, bool enabled = true);
  ~GraphedForward();
  GraphedForward(const GraphedForward&) = delete;
  GraphedForward& operator=(const GraphedForward&) = delete;

  // The function's outputs for `batch` (already on the device).
  std::vector<torch::Tensor> operator()(const data::Batch& batch);

  // Calls answered by a graph replay (the capturing call included: its replay computes them).
  int64_t replays() const;
  // Why every call runs eagerly: turned off, not a GPU, no CUDA graphs in this build, the function
  // synchronises with the host, the capture failed; "" while graphs are in use.
  const std::string& reason() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace secateur::eval
