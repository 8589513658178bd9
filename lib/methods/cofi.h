#pragma once
// CoFi (Xia, Zhong & Chen 2022, "Structured Pruning Learns Compact and Accurate Models", §3 and
// appendix A): Hard-Concrete L0 gates at several granularities, trained with the model under a
// Lagrangian that drives the expected sparsity to a target.
//
//   gates      z_head (per head; per key/value group in the llama family, whose groups must keep
//              equal query heads), z_int (per FFN neuron), z_hidden (per hidden dim, shared by all
//              layers), z_MHA and z_FFN (per layer, a whole attention / MLP block)
//   size       Ŝ = Σ_l E[z_MHA]·Σ_u E[z_u]·(M_u·h̄ + V_u)  +  Σ_l E[z_FFN]·Σ_i E[z_i]·(M_i·h̄ + V_i)
//              with E[z] = P(z ≠ 0) (Hard-Concrete eq. 12), h̄ = Σ_d E[z_d] / hidden the expected kept
//              fraction of hidden dims, M the unit's matrix parameters (which all span the hidden
//              size: q/k/v rows, o columns, up/gate rows, down columns) and V its bias entries. This is
//              CoFi's l0_module count (heads × per-head params scaled by the kept hidden fraction,
//              block gates multiplying their units) with biases counted exactly instead of dropped.
//   sparsity   ŝ = 1 − Ŝ / S, S = the same count with every gate open (the prunable size: attention
//              and MLP unit parameters; embeddings and norms are not counted, as in CoFi)
//   loss       λ1·(ŝ − t) + λ2·(ŝ − t)², λ1 and λ2 trained by gradient ascent (appendix A), the target
//              t = t0 + (t_final − t0)·min(1, step / warm-up) ramped linearly (CoFi's lagrangian_warmup)
//   masks      per layer and structure, keep the round(Σ E[z]) gates of largest log α (CoFi's
//              deterministic z, after FLOP's hardconcrete); a block stays when E[z] ≥ 0.5; a block
//              left with no unit goes. Evaluation gates are these masks as 0/1 gates, so the
//              physically pruned model computes exactly what evaluation measured.
#include <torch/torch.h>

#include <vector>

#include "methods/hard_concrete.h"
#include "model/model.h"
#include "surgery/masks.h"
#include "train/extension.h"

namespace secateur::methods {

struct CofiOptions {
  double target_sparsity = 0.5;  // t_final, of the prunable size S
  double start_sparsity = 0.0;   // t0
  int64_t warmup_steps = 0;      // optimiser steps over which t ramps from t0 to t_final (0: t_final at once)
  // Which gates exist (CoFi's pruning_type "structured_heads+structured_mlp+hidden+layer").
  bool heads = true, ffn = true, hidden = true, blocks = true;
  // Initial log α ~ N(mean, 0.01): fine-grained FFN gates start at log((1 − d)/d) with d the
  // droprate (0.5 → 0); heads, hidden dims and blocks at 10 (open), as CoFi's reset_loga.
  double droprate_init = 0.5;
  double open_log_alpha = 10.0;
  double gate_lr = 0.1;     // learning rate of log α (CoFi's reg_learning_rate)
  double lambda_lr = 0.1;   // learning rate of λ1, λ2 (ascent)
  HardConcrete distribution;
};

// Probabilities (or 0/1 indicators) per gate, laid out as the gates: undefined = open (1).
struct CofiGateValues {
  std::vector<torch::Tensor> units, ffn, attn, mlp;  // per layer: [units], [neurons], scalar, scalar
  torch::Tensor hidden;                               // [hidden]
};

class Cofi : public train::Extension {
 public:
  Cofi(const model::Model& model, CofiOptions options);

  std::string name() const override { return "cofi"; }
  std::vector<train::ParamGroup> param_groups() override;
  void prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) override;
  torch::Tensor loss(const train::StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                     train::StepMetrics& metrics) override;
  void save(io::TensorMap& tensors, nlohmann::json& state) const override;
  void load(const io::TensorMap& tensors, const nlohmann::json& state) override;

  // The gates' log α, laid out as CofiGateValues (undefined where that gate does not exist).
  CofiGateValues& log_alpha() { return log_alpha_; }
  torch::Tensor& lambda1() { return lambda1_; }
  torch::Tensor& lambda2() { return lambda2_; }

  CofiGateValues open_probabilities() const;  // P(z ≠ 0) per gate, differentiable
  torch::Tensor expected_size(const CofiGateValues& values) const;  // Ŝ (fp64 scalar)
  double prunable_size() const { return total_; }                    // S
  torch::Tensor expected_sparsity() const;                           // ŝ = 1 − Ŝ(P(z ≠ 0)) / S
  double target_at(int64_t step) const;                              // t at an optimiser step
  torch::Tensor lagrangian(const torch::Tensor& expected_sparsity, double target) const;

  // CoFi's deterministic masks, the 0/1 indicators they set, and the gates that apply them.
  surgery::Masks masks() const;
  CofiGateValues indicators(const surgery::Masks& masks) const;
  model::Gates eval_gates() const;

 private:
  bool grouped() const { return config_.family == model::Family::llama; }
  torch::Tensor init(std::vector<int64_t> shape, double mean) const;
  void build_size_model(const model::Model& model);

  model::ModelConfig config_;
  CofiOptions options_;
  CofiGateValues log_alpha_;
  torch::Tensor lambda1_, lambda2_;
  // Per layer and unit (head or key/value group) / neuron: matrix and bias parameter counts (fp64).
  std::vector<torch::Tensor> unit_matrix_, unit_vector_, ffn_matrix_, ffn_vector_;
  double total_ = 0;
};

}  // namespace secateur::methods
