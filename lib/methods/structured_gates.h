#pragma once
// What the learned structural-gate methods share (CoFi's Hard-Concrete gates, VTrans' VIB gates):
// gate values laid out as a model's attention units, FFN neurons, hidden dims and blocks; the
// expected size of the model under soft gates; and the Lagrangian that drives it to a target.
//
//   size       Ŝ = Σ_l E[z_MHA]·Σ_u E[z_u]·(M_u·h̄ + V_u)  +  Σ_l E[z_FFN]·Σ_i E[z_i]·(M_i·h̄ + V_i)
//              (CoFi, Xia et al. 2022, §3 and its l0_module), with E[z] a gate's keep probability
//              (or 0/1 indicator), h̄ = Σ_d E[z_d] / hidden the expected kept fraction of hidden dims,
//              and per unit u (a head; a key/value group with its query heads in the llama family,
//              whose groups must keep equal query heads) or neuron i:
//                params  M = its matrix parameters (which all span the hidden size: q/k/v rows,
//                        o columns, up/gate rows, down columns), V = its bias entries
//                flops   M = 2·its matrix parameters (a projection's multiply-adds per token scale
//                        with the hidden size), V = its attention products q·kᵀ and p·v per token
//                        (they do not), as model::flops_per_token counts them
//   sparsity   ŝ = 1 − Ŝ / S, S the same count with every gate open: the prunable size (attention
//              and MLP units; embeddings and norms are not counted, as in CoFi)
//   Lagrangian λ1·(ŝ − t) + λ2·(ŝ − t)², λ1 and λ2 trained by gradient ascent (CoFi appendix A), the
//              target t = t0 + (t_final − t0)·min(1, step / warm-up) ramped linearly
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "io/weights.h"
#include "model/gates.h"
#include "model/model.h"
#include "surgery/masks.h"
#include "train/extension.h"

namespace secateur::methods {

// Per-structure values (probabilities, indicators, log α, ...): undefined = that gate is absent
// (open, 1).
struct GateValues {
  std::vector<torch::Tensor> units, ffn, attn, mlp;  // per layer: [units], [neurons], scalar, scalar
  torch::Tensor hidden;                               // [hidden]

  // Applies `f` to every defined tensor.
  GateValues map(const std::function<torch::Tensor(const torch::Tensor&)>& f) const;
  // Every defined tensor, in a fixed order (units, ffn, attn, mlp by layer, then hidden).
  std::vector<torch::Tensor> tensors() const;
};

// Attention gates are per key/value group in the llama family (a group's query heads go with it).
inline bool grouped_units(const model::ModelConfig& c) { return c.family == model::Family::llama; }

// Multiplies the model gates by `values` (units into kv_group or head): gates earlier extensions
// set stay in force.
void multiply_into(model::Gates& gates, const GateValues& values, const model::ModelConfig& config);
// Multiplies `gates` by every gate `by` holds.
void multiply_into(model::Gates& gates, const model::Gates& by, int64_t layers);

// The 0/1 indicators of what `masks` keep, laid out as GateValues (fp64, on `device`).
GateValues indicators(const model::ModelConfig& config, const surgery::Masks& masks, torch::Device device);

// Masks keeping the `kept` units (heads, or key/value groups with their query heads) of one layer.
void keep_units(surgery::LayerMask& mask, const model::LayerShape& shape, const std::vector<int64_t>& kept, bool grouped);

enum class SizeMeasure { params, flops };

class SizeModel {
 public:
  // `seq_len`: the context length attention products are counted at (flops only).
  SizeModel(const model::Model& model, SizeMeasure measure = SizeMeasure::params, int64_t seq_len = 512);

  torch::Tensor expected(const GateValues& values) const;  // Ŝ (fp64 scalar on the model's device)
  double total() const { return total_; }                 // S

  // Per layer, per unit / neuron: the hidden-scaled part M and the fixed part V (fp64, CPU).
  const torch::Tensor& unit_scaled(int64_t l) const { return unit_scaled_[l]; }
  const torch::Tensor& unit_fixed(int64_t l) const { return unit_fixed_[l]; }
  const torch::Tensor& ffn_scaled(int64_t l) const { return ffn_scaled_[l]; }
  const torch::Tensor& ffn_fixed(int64_t l) const { return ffn_fixed_[l]; }

 private:
  model::ModelConfig config_;
  torch::Device device_;
  std::vector<torch::Tensor> unit_scaled_, unit_fixed_, ffn_scaled_, ffn_fixed_;
  double total_ = 0;
};

class SparsityLagrangian {
 public:
  SparsityLagrangian(double target, double start, int64_t warmup_steps, torch::Device device);

  double target_at(int64_t step) const;  // t at an optimiser step
  torch::Tensor term(const torch::Tensor& expected_sparsity, double target) const;
  torch::Tensor& lambda1() { return lambda1_; }
  torch::Tensor& lambda2() { return lambda2_; }
  train::ParamGroup param_group(const std::string& name, double lr) const;  // ascent
  // Adds λ1, λ2 and the term's parts to a step's metrics.
  void report(const torch::Tensor& expected_sparsity, double target, const torch::Tensor& term, train::StepMetrics& m) const;
  void save(io::TensorMap& tensors) const;
  void load(const io::TensorMap& tensors, const std::string& method);

 private:
  double target_, start_;
  int64_t warmup_;
  torch::Tensor lambda1_, lambda2_;
};

// Checkpoint entries "<name>.units.<layer>", "<name>.ffn.<layer>", "<name>.attn.<layer>",
// "<name>.mlp.<layer>" and "<name>.hidden" for every defined tensor; load copies them back in place
// (UserError naming `method` when one is missing or misshapen).
void save_values(io::TensorMap& tensors, const std::string& name, const GateValues& values);
void load_values(const io::TensorMap& tensors, const std::string& name, GateValues& values, const std::string& method);
void load_tensor(const io::TensorMap& tensors, const std::string& name, torch::Tensor& into, const std::string& method);

}  // namespace secateur::methods
