#pragma once
// Per-channel statistics of projection inputs over calibration tokens, gathered through a
// model::Tap in ordinary forward passes: Σx² (Wanda's ‖X_j‖₂²), and the mean and the sample
// variance (FLAP's baseline and fluctuation). Everything accumulates on the model's device in
// float64; only the final [in_features] vectors are ever copied to the host. Under data
// parallelism each rank runs the batches it owns (dist::owns) and the ranks' statistics are
// pooled into those of every token, so all ranks hold what one process would.
#include <torch/torch.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/batch.h"
#include "model/gates.h"
#include "model/model.h"
#include "model/tap.h"

namespace secateur::importance {

class ActivationStats : public model::Tap {
 public:
  struct Channel {
    int64_t in_dim = 1;      // the weight dim indexing input features (1 Linear, 0 Conv1D)
    double count = 0;        // tokens seen
    torch::Tensor mean;      // [in] running mean
    torch::Tensor m2;        // [in] Σ (x − mean)², combined across batches (Chan et al.)
    torch::Tensor sum_sq;    // [in] Σ x²
  };

  // Watches the projections whose HF weights are `weights` (names of `model`'s parameters).
  ActivationStats(const model::Model& model, const std::set<std::string>& weights);

  // Runs every batch through the model (no grad, eval mode, through `gates`) with this tap
  // installed; padding tokens (attention_mask 0) are left out of every statistic. Under data
  // parallelism every rank must call it with the same batches: each runs its own share, then
  // the statistics are pooled over ranks.
  void collect(model::Model& model, const std::vector<data::Batch>& batches, const model::Gates* gates,
               const std::string& label);

  void projection_input(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) override;

  bool seen(const std::string& weight) const;
  const Channel& channel(const std::string& weight) const;  // std::out_of_range when never seen
  // Unbiased sample variance Σ(x − x̄)² / (N − 1), as torch.var.
  torch::Tensor variance(const std::string& weight) const;

 private:
  void run_batches(model::Model& model, const std::vector<data::Batch>& batches, const model::Gates* gates,
                   const std::string& label);
  // Alone: nothing. Under data parallelism: the statistics of every rank's tokens on all ranks.
  void pool_over_ranks(torch::Device device);
  void agree_on_channels(torch::Device device);

  std::map<const void*, std::string> names_;  // TensorImpl of a watched weight → its HF name
  std::map<std::string, Channel> channels_;
  torch::Tensor token_mask_;  // [B, T] bool for the batch being run; undefined = all tokens
  // q/k/v (gate/up) projections read one input tensor, one after another: its statistics are
  // taken once and copied to the others when collection ends. The last input is held so that
  // its TensorImpl cannot be freed and reused by a different tensor in between.
  torch::Tensor last_input_;
  std::string last_input_weight_;
  std::map<std::string, std::string> same_input_as_;  // weight → the weight whose statistics it shares
};

struct Context;
struct Scores;

// What activation and fluctuation share: the 2-D projection weights the requested groups' units
// have slices of, their statistics from one pass over ctx.batches (through ctx.gates), and the
// channel means FLAP's bias compensation folds in, copied into `scores`.
struct UnitActivations {
  std::set<std::string> weights;
  ActivationStats stats;
  void record_channel_means(Scores& scores) const;
};
UnitActivations unit_activations(const Context& ctx, const std::string& label);

}  // namespace secateur::importance
