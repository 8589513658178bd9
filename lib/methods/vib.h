#pragma once
// VTrans (Dutta, Gupta & Agarwal 2024, "VTrans: Accelerating Transformer Compression with
// Variational Information Bottleneck based Pruning", arXiv:2406.05276): variational information
// bottleneck (VIB) gates on the hidden dims (the embeddings' width, shared by every layer as the
// residual stream), attention heads (key/value groups in the llama family), FFN neurons and whole
// attention / MLP blocks, trained with the model under the VIB compression term and a Lagrangian
// size constraint; deterministic masks from the information ratio α, then surgery.
//
//   gates      z = μ + σ·ε, ε ~ N(0, 1), one draw per gate and forward pass: the reparameterised
//              multiplicative noise of Dai et al. 2018 ("Compressing Neural Networks using the
//              Variational Information Bottleneck", §3), with μ and log σ² learned. μ starts at 1
//              and log σ² at −9 (N(·, 0.01) jitter, VIBNet's InformationBottleneck init).
//   KL         L_KL = γ·Σ_i ½·log(1 + μ_i²/σ_i²): Dai et al.'s closed-form upper bound on the
//              information I(h_i; h_{i−1}) a gated unit passes (Gaussian prior of optimal variance),
//              with the ½ of their released kl_closed_form; γ is VTrans' KL factor (1e-6 in the
//              authors' released scripts, oshindutta/TVAprune tva_prune.sh). Computed as
//              ½·softplus(log α), which is the same value without overflow.
//   criterion  α_i = μ_i²/σ_i² (Dai et al.: a unit with α below the threshold carries no information
//              and is pruned; VIBNet keeps log(σ²/μ²) < 0, i.e. τ = 1)
//   size       VTrans meets a parameter or FLOPs budget with CoFi's Lagrangian λ1(ŝ − t) + λ2(ŝ − t)²
//              on the expected sparsity ŝ (methods/structured_gates.h), where a gate's keep
//              probability is the soft threshold P_i = sigmoid(β·(log α_i − log τ)), β = 10 (the
//              authors' released VIB layer, get_sparse)
//   loss       task (or distillation) loss + L_KL + λ1(ŝ − t) + λ2(ŝ − t)², t ramped from t0 over the
//              warm-up
//   masks      threshold: keep exactly the gates with α > τ (the paper's rule; the Lagrangian is what
//              makes them meet the budget). target: hidden dims and blocks by the threshold, then
//              heads and neurons removed in ascending α across all layers until the size budget
//              (1 − t)·S is met — the fewest removals that meet it. A block left with no unit goes.
//   evaluation the mean network at the masks: a kept head's or neuron's gate is its μ (E[z]), which
//              fold_means() moves into the output projection's input columns so that the physically
//              pruned model computes exactly what evaluation measured. A hidden dim's or block's
//              scale cannot be folded (norms re-normalise the residual stream; post-LN blocks
//              interpolate through a norm), so those gates keep μ ≡ 1 and learn only σ: their mean
//              is their 0/1 mask.
//   variants   Fast-VTrans (a small fraction of the training data, 3% in the paper) and
//              Faster-VTrans (only the masks train, the model frozen) are options of the learn_masks
//              stage: they change what the trainer feeds and trains, not this extension.
#include <torch/torch.h>

#include <vector>

#include "methods/structured_gates.h"
#include "model/model.h"
#include "surgery/masks.h"
#include "train/extension.h"

namespace secateur::methods {

enum class VibMaskRule { threshold, target };

struct VibOptions {
  double target_sparsity = 0.5;  // t_final, of the prunable size S (parameters or FLOPs)
  double start_sparsity = 0.0;   // t0
  int64_t warmup_steps = 0;      // steps over which t ramps from t0 to t_final (0: t_final at once)
  bool heads = true, ffn = true, hidden = true, blocks = true;  // which gates exist
  SizeMeasure measure = SizeMeasure::params;
  int64_t seq_len = 512;         // context length attention FLOPs are counted at (measure flops)
  double kl_weight = 1e-6;       // γ
  double init_mean = 1.0;        // μ at the start (heads and neurons)
  double init_log_variance = -9.0;
  double threshold = 1.0;        // τ on α = μ²/σ²
  double sharpness = 10.0;       // β of the soft keep probability
  VibMaskRule rule = VibMaskRule::threshold;
  double gate_lr = 0.1;          // learning rate of μ and log σ²
  double lambda_lr = 0.1;        // learning rate of λ1, λ2 (ascent)
};

class Vib : public train::Extension {
 public:
  Vib(const model::Model& model, VibOptions options);

  std::string name() const override { return "vib"; }
  std::vector<train::ParamGroup> param_groups() override;
  void prepare(const train::StepInfo& step, model::Gates& gates, model::ForwardOptions& options) override;
  torch::Tensor loss(const train::StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                     train::StepMetrics& metrics) override;
  void save(io::TensorMap& tensors, nlohmann::json& state) const override;
  void load(const io::TensorMap& tensors, const nlohmann::json& state) override;

  // μ (leaves for heads and neurons, constant ones for hidden dims and blocks) and log σ² (leaves).
  GateValues& mean() { return mean_; }
  GateValues& log_variance() { return log_var_; }
  SparsityLagrangian& lagrangian() { return lagrangian_; }
  const SizeModel& size_model() const { return size_; }

  GateValues log_alpha() const;         // log α = log(μ² + 1e-8) − log σ², differentiable
  GateValues keep_probabilities() const;  // sigmoid(β·(log α − log τ)), differentiable
  torch::Tensor kl() const;             // Σ_i ½·log(1 + μ_i²/σ_i²) over every gate (fp32 scalar)
  torch::Tensor expected_sparsity() const;  // 1 − Ŝ(keep probabilities) / S
  double sparsity(const surgery::Masks& masks) const;  // 1 − Ŝ(indicators) / S: what surgery removes

  surgery::Masks masks() const;
  // The evaluation gates: the masks, with μ on kept heads / key-value groups and neurons.
  model::Gates eval_gates() const;
  // Multiplies the output projections' input columns of every head (or key/value group) and neuron
  // by its μ, so that `model` under masks().to_gates() computes what it did under eval_gates().
  void fold_means(model::Model& model) const;

 private:
  torch::Tensor leaf(std::vector<int64_t> shape, double mean) const;
  std::vector<int64_t> above_threshold(const torch::Tensor& log_alpha, int64_t minimum) const;
  void remove_to_target(surgery::Masks& masks, const GateValues& log_alpha) const;

  model::ModelConfig config_;
  torch::Device device_;
  VibOptions options_;
  GateValues mean_, log_var_;
  SizeModel size_;
  SparsityLagrangian lagrangian_;
};

}  // namespace secateur::methods
