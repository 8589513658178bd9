#pragma once
// Movement pruning (Sanh, Wolf & Rush 2020, "Movement Pruning: Adaptive Sparsity by Fine-Tuning")
// and block movement pruning (Lagunas, Charlaix, Sanh & Rush 2021, "Block Pruning For Faster
// Transformers"), as a train::Extension computing through model::WeightTransform:
//
//   W' = W ⊙ M(S),  S one learned score per block of W (blocks tile the weight; a block of a
//   whole row or column is the paper's "hybrid" FFN setting that removes whole neurons)
//   topv       M = Top_v(S): the v = (1 − s_t) fraction of blocks of largest score in each matrix
//              (Sanh eq. 3, "hard movement")
//   threshold  M = 1[σ(S) > τ] with the regulariser λ·mean(σ(S)) added to the loss (Sanh §4,
//              "soft movement"); the sparsity follows from λ rather than a schedule
//   gradient   straight-through: ∂L/∂S_b = Σ_{(i,j) ∈ b} ∂L/∂W'_ij · W_ij (Sanh eq. 4, summed over
//              the block as Lagunas §3)
//   schedule   cubic (Zhu & Gupta 2017, eq. 1): s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(nΔt))³ between
//              the warm-up (s_i before) and the cool-down (s_f after)
//
// At the end, heads whose output-projection inputs are all pruned (all heads of a key/value
// group in the llama family) and neurons whose down-projection column is all pruned become
// surgery::Masks, so physical surgery removes them; the other pruned blocks are written into the
// weights as zeros (apply_to_weights) and the model computes exactly what training evaluated.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "model/model.h"
#include "surgery/masks.h"
#include "train/extension.h"

namespace secateur::methods {

enum class MovementMode { topv, threshold };

// A block shape along (units, hidden): units = a head's q/k/v output rows and o input columns,
// or a neuron's up/gate rows and down column; hidden = the other axis. 0 = the whole dimension.
struct BlockShape {
  int64_t units = 32;
  int64_t hidden = 32;
};

// Zhu & Gupta's cubic sparsity schedule over optimiser steps.
struct CubicSchedule {
  double initial = 0.0;   // s_i
  double final = 0.5;     // s_f
  int64_t warmup_steps = 0;
  int64_t cooldown_steps = 0;
  int64_t total_steps = 0;
  double at(int64_t step) const;
};

struct MovementOptions {
  MovementMode mode = MovementMode::topv;
  BlockShape attention{32, 32};
  BlockShape ffn{1, 0};        // hybrid: whole rows of up/gate, whole columns of down
  CubicSchedule schedule;      // topv; total_steps is set from the trainer's when 0
  double threshold = 0.5;      // τ (threshold mode)
  double regularization = 0;   // λ of soft movement
  double score_init = 0.0;     // initial S (threshold mode needs σ(S) > τ to start dense)
  double score_lr = 1e-2;
};

class Movement : public train::Extension, public model::WeightTransform {
 public:
  Movement(const model::Model& model, MovementOptions options);

  std::string name() const override { return "movement"; }
  std::vector<train::ParamGroup> param_groups() override;
  void prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) override;
  torch::Tensor loss(const train::StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                     train::StepMetrics& metrics) override;
  void save(io::TensorMap& tensors, nlohmann::json& state) const override;
  void load(const io::TensorMap& tensors, const nlohmann::json& state) override;

  torch::Tensor apply(const std::string& hf_name, const torch::Tensor& weight) const override;

  // Block mask (0/1 over blocks) of one projection at the current sparsity, and its scores.
  torch::Tensor block_mask(const std::string& hf_name) const;
  torch::Tensor& scores(const std::string& hf_name) { return projections_.at(hf_name).scores; }
  double current_sparsity() const { return sparsity_; }
  void set_sparsity(double s) { sparsity_ = s; }

  // Fraction of projection weights pruned under the current masks.
  double weight_sparsity() const;
  // Heads / groups and neurons left empty by the masks, as surgery masks.
  surgery::Masks structural_masks() const;
  // W ← W ⊙ M for every projection (the blocks surgery does not remove stay as zeros).
  void apply_to_weights(model::Model& model) const;

 private:
  struct Projection {
    int64_t out_dim = 0;          // HF layout: 0 nn.Linear [out, in], 1 Conv1D [in, out]
    int64_t rows = 0, cols = 0;   // logical [out, in]
    int64_t block_rows = 1, block_cols = 1;
    int64_t layer = 0;
    std::string role;             // q k v o qkv up gate down
    torch::Tensor scores;         // [ceil(rows / br), ceil(cols / bc)]
  };
  torch::Tensor expand(const Projection& p, const torch::Tensor& blocks) const;  // blocks → [rows, cols]

  model::ModelConfig config_;
  MovementOptions options_;
  std::map<std::string, Projection> projections_;
  std::vector<std::string> order_;
  double sparsity_ = 0;
};

}  // namespace secateur::methods
