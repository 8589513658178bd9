#pragma once
// A training step replayed as CUDA graphs (issue #8). A BERT-base step at batch 32 × 128 is
// ~1,400 kernels whose launches cost the host more than the GPU spends running them (Kineto: the
// GPU busy 17% of the step), so the step is captured once and replayed: one graph for a
// micro-batch's forward, loss and backward (gradients accumulate in place), one for clipping,
// AdamW (at::_fused_adamw_ with the learning rate and step counts as device tensors, so a replay
// sees this step's values) and zeroing the gradients. The arithmetic is the eager step's: the
// same kernels on the same tensors, only launched by the driver.
//
// Life of a run: the first two steps run eagerly on a side stream (cuBLAS and autograd set
// themselves up; the first one also checks that nothing in the step reads the device from the
// host, which a capture cannot contain), the third is captured, every later one replays. A step
// whose batches have other shapes than the captured ones runs eagerly through the same code. The
// caller falls back to its own loop when the check fails (usable() turns false).
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/batch.h"

namespace secateur::train {

// Per-step sums a micro-batch adds to, kept on the device.
struct StepSums {
  torch::Tensor loss;       // double: Σ task loss of the micro-batches
  torch::Tensor tokens;     // int64: Σ tokens
  torch::Tensor nonfinite;  // bool: some micro-batch's loss was NaN or inf
};

class CudaGraphStep {
 public:
  // Forward, loss, backward of one micro-batch (already on the device), adding to `sums`. It must
  // not synchronise with the host; it runs eagerly, under capture, and is then replayed.
  using MicroStep = std::function<void(const data::Batch&, StepSums&)>;

  struct Result {
    torch::Tensor loss, tokens, nonfinite;  // this step's sums (valid until the next step)
    torch::Tensor grad_norm;                // the global gradient norm before clipping
  };

  // Whether this build can capture: LibTorch ≥ 2.4 built with CUDA.
  static bool compiled();

  // What decides whether a trainer's step can be captured at all.
  struct StepTraits {
    torch::Device device;
    bool extensions;     // learned masks / distillation change the step from the host
    int64_t world_size;  // other ranks synchronise gradients
    bool adamw;          // only AdamW has a capturable fused kernel
    bool maximize;       // a group does gradient ascent
  };
  // Why such a step cannot be replayed as CUDA graphs; "" when it can.
  static std::string obstacle(const StepTraits& step);

  // `optimizer` must be train::FusedAdamW over the parameters MicroStep trains (no amsgrad).
  CudaGraphStep(torch::optim::Optimizer& optimizer, double max_grad_norm, int64_t accumulation, MicroStep micro,
                torch::Device device);
  ~CudaGraphStep();

  // One optimiser step over the step's micro-batches (host or device tensors), at the learning
  // rates the optimiser's groups hold now. nullopt when the first step found the work cannot be
  // captured: nothing was applied and usable() is false from then on (the reason says why).
  std::optional<Result> step(const std::vector<data::Batch>& micro_batches);

  bool usable() const;
  bool replaying() const;  // captured, and the last step was a replay
  const std::string& reason() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace secateur::train
