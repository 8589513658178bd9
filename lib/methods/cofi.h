#pragma once
// CoFi (Xia, Zhong & Chen 2022, "Structured Pruning Learns Compact and Accurate Models", §3 and
// appendix A): Hard-Concrete L0 gates at several granularities, trained with the model under a
// Lagrangian that drives the expected sparsity to a target.
//
//   gates      z_head (per head; per key/value group in the llama family, whose groups must keep
//              equal query heads), z_int (per FFN neuron), z_hidden (per hidden dim, shared by all
//              layers), z_MHA and z_FFN (per layer, a whole attention / MLP block)
//   size       Ŝ, the expected size under the gates' open probabilities, and the sparsity
//              ŝ = 1 − Ŝ / S (methods/structured_gates.h: CoFi's l0_module count, biases counted
//              exactly instead of dropped)
//   loss       λ1·(ŝ − t) + λ2·(ŝ − t)², λ1 and λ2 trained by gradient ascent (appendix A), the target
//              t ramped linearly from t0 over the warm-up (CoFi's lagrangian_warmup)
//   masks      per layer and structure, keep the round(Σ E[z]) gates of largest log α (CoFi's
//              deterministic z, after FLOP's hardconcrete); a block stays when E[z] ≥ 0.5; a block
//              left with no unit goes. Evaluation gates are these masks as 0/1 gates, so the
//              physically pruned model computes exactly what evaluation measured.
#include <torch/torch.h>

#include <vector>

#include "methods/hard_concrete.h"
#include "methods/structured_gates.h"
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
using CofiGateValues = GateValues;

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
  torch::Tensor& lambda1() { return lagrangian_.lambda1(); }
  torch::Tensor& lambda2() { return lagrangian_.lambda2(); }

  CofiGateValues open_probabilities() const;  // P(z ≠ 0) per gate, differentiable
  torch::Tensor expected_size(const CofiGateValues& values) const { return size_.expected(values); }  // Ŝ (fp64)
  double prunable_size() const { return size_.total(); }                                             // S
  torch::Tensor expected_sparsity() const;  // ŝ = 1 − Ŝ(P(z ≠ 0)) / S
  double target_at(int64_t step) const { return lagrangian_.target_at(step); }
  torch::Tensor lagrangian(const torch::Tensor& expected_sparsity, double target) const {
    return lagrangian_.term(expected_sparsity, target);
  }

  // CoFi's deterministic masks, the 0/1 indicators they set, and the gates that apply them.
  surgery::Masks masks() const;
  CofiGateValues indicators(const surgery::Masks& masks) const;
  model::Gates eval_gates() const;

 private:
  bool grouped() const { return grouped_units(config_); }
  torch::Tensor init(std::vector<int64_t> shape, double mean) const;

  model::ModelConfig config_;
  torch::Device device_;
  CofiOptions options_;
  CofiGateValues log_alpha_;
  SizeModel size_;
  SparsityLagrangian lagrangian_;
};

}  // namespace secateur::methods
