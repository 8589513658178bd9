#pragma once
// Data parallelism for train::Trainer: every rank holds the whole model and trains on its share
// of each global batch (BatchSourceOptions{rank, world_size}: EpochSampler deals examples out
// like torch's DistributedSampler); before each optimiser step the gradients are averaged over
// ranks, so every rank takes the same step as one process on the whole global batch would:
//   g = (1/W) Σ_r g_r, where g_r is rank r's gradient of its own micro-batch mean loss.
// With equal token counts per micro-batch (fixed-length blocks), the mean over ranks of the
// per-rank means is the mean over the global batch, hence the same update.
//
// Wiring in a training stage (the only lines it needs):
//   auto sync = dist::make_gradient_sync(model);      // broadcasts rank 0's weights; alone: no-op
//   batch_options.rank = sync->rank();
//   batch_options.world_size = sync->world_size();
//   Trainer trainer(model, options, make_batch_source(data, batch_options), ..., sync);
#include <memory>
#include <vector>

#include "dist/process_group.h"
#include "train/trainer.h"

namespace secateur::model {
class Model;
}

namespace secateur::dist {

class DataParallelSync : public train::GradientSync {
 public:
  explicit DataParallelSync(std::shared_ptr<ProcessGroup> group);

  int64_t rank() const override;
  int64_t world_size() const override;

  // Averages the gradients of `params` (every parameter that trains: the model's and the
  // extensions' gates / mask scores) over ranks, in buckets of the group's bucket size, all
  // launched before the first is waited for.
  //
  // A parameter that received no gradient on one rank but did on another (a branch this rank's
  // micro-batches never reached) gets a zero gradient there before the sum, as one process that
  // saw all micro-batches would have a gradient; one that no rank touched keeps no gradient, so
  // the optimiser skips it as it would on one process. Agreeing on that costs one small
  // all-reduce (one flag per parameter) and one host sync per step.
  //
  // The reduction starts after the whole backward pass. Overlapping it with the backward pass
  // (as PyTorch's DDP reducer does) needs a hook that fires once a parameter's gradient is
  // accumulated — Tensor::register_post_accumulate_grad_hook, added in PyTorch 2.1 and absent
  // from LibTorch 1.13 — and lets the last buckets' communication hide behind the first layers'
  // backward; without it the all-reduce time adds to the step.
  void synchronize(const std::vector<torch::Tensor>& params) override;

  // Every rank's value, indexed by rank: one all-reduce of a world-sized vector that holds each
  // rank's value in its own slot (a host sync on GPUs).
  std::vector<double> all_values(double value) override;

  // Overwrites `params` with rank 0's values, so that all ranks start identical (a model loaded
  // from the same file already is; freshly initialised extension parameters may not be).
  void broadcast_from_main(const std::vector<torch::Tensor>& params);

  ProcessGroup& group() const { return *group_; }

 private:
  std::shared_ptr<ProcessGroup> group_;
};

// The GradientSync for a training stage: a DataParallelSync over dist::current() after
// broadcasting the model's parameters from rank 0, or the one-process no-op
// (rank 0 of 1) when this process is alone.
std::shared_ptr<train::GradientSync> make_gradient_sync(model::Model& model);

}  // namespace secateur::dist
