#pragma once
// Importance estimators: each turns a model (and, for most, calibration batches) into Scores over
// the groups of its PrunableStructure. One file per estimator; make_estimator() picks by name.
//
//   magnitude        ‖W_g‖₁ or ‖W_g‖₂ over the group's slices                       (no data)
//   head_gradient    E_x |∂L(x)/∂ξ_g| at gates ξ = 1 (Michel et al. 2019)
//   taylor           |Σ_{w∈g} w·∂L/∂w| or Σ_{w∈g} |w·∂L/∂w| (LLM-Pruner, Ma et al. 2023)
//   activation       Σ_{(i,j)∈g} |W_ij|·‖X_j‖₂ (Wanda, Sun et al. 2023, summed per group)
//   fluctuation      Σ_{k∈g} Var[X_k]·‖W_{:,k}‖₂² over the group's output-projection inputs (FLAP)
//   block_influence  1 − E[cos(h_in, h_out)] per layer or block (ShortGPT), or the angular
//                    distance arccos(cos)/π between layers l and l+n (Gromov et al. 2024)
//   projection       ‖h_n W_n^O‖₁ per head, mean |activation| per FFN neuron (AMP, Mugnaini et al. 2025)
//   aggregated_activation  head output norms, neuron pre-activations and normed hidden channels,
//                    aggregated over sequence then batch (mean | l2 | var; Minitron, Muralidharan et al. 2024)
//
// Under data parallelism every rank holds the whole calibration set and calls estimate() with it;
// a data-driven estimator runs only the batches its rank owns (dist::owned) and sums its
// sufficient statistics over ranks (sums, sums of squares, counts, gradient sums; never means)
// before they become scores, so every rank gets the scores of one process on the whole set.
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "data/batch.h"
#include "importance/scores.h"
#include "model/gates.h"
#include "model/model.h"
#include "model/prunable.h"

namespace secateur::importance {

struct EstimatorOptions {
  std::string name = "magnitude";
  std::string norm = "l2";          // magnitude: l1 | l2
  bool normalize = false;           // ℓ2-normalise each layer's scores (Michel et al.)
  std::string variant = "vector";   // taylor: vector (|Σ w·g|) | element (Σ |w·g|)
  bool standardize = false;         // standardise each layer's scores (FLAP)
  std::string metric = "bi";        // block_influence: bi (1 − cos, all tokens) | angular
  int64_t run_length = 1;           // block_influence angular: n, the layers removed as one run
  bool per_example = false;         // head_gradient: one backward per example instead of per batch
  std::string batch_aggregation = "l2";       // aggregated_activation: over sequences (mean | l2 | var)
  std::string sequence_aggregation = "mean";  // aggregated_activation: over a sequence's tokens
};

struct Context {
  model::Model& model;
  const model::PrunableStructure& structure;
  const std::vector<data::Batch>& batches;  // calibration data; empty for data-free estimators
  // The masks pruning has applied so far (iterative schedules), as gates; null means dense.
  // Estimators run the model through them, so scores describe the model being pruned.
  const model::Gates* gates = nullptr;
  std::set<GroupKind> kinds;  // what to score
  // GQA "group" mode: a kv_group's score covers the whole unit removed with it, its k/v rows and
  // every query head reading it (q rows, o columns), not just the k/v rows.
  bool kv_units = false;
};

class Estimator {
 public:
  virtual ~Estimator() = default;
  virtual std::string name() const = 0;
  virtual bool needs_data() const = 0;
  virtual std::set<GroupKind> supported() const = 0;
  // Scores every kind in ctx.kinds; UserError when one is unsupported or data is missing.
  virtual Scores estimate(const Context& ctx) = 0;
};

// UserError naming the estimator and the accepted names when `options.name` is unknown, or
// when an option value is not one the estimator accepts.
std::unique_ptr<Estimator> make_estimator(const EstimatorOptions& options);
std::vector<std::string> estimator_names();

// ---- shared machinery (used by the estimator files and their tests) ----------------------------

// Every group kind: what estimators that score any gate or slice support.
std::set<GroupKind> every_group_kind();

// The slices a scored unit covers: the group's own, plus (kv_units, kv_group) its query heads'.
std::vector<const model::ParamSlice*> unit_slices(const Context& ctx, const model::Group& group);

// For every group of the requested kinds, Σ over its unit slices of Σ over the slice of the
// tensor element_value(name, dim) (shaped like the HF parameter `name`, for slices along `dim`;
// undefined skips those slices). Each tensor is reduced once per sliced dim, so this costs one
// pass over the weights. `finish` maps each group's sum to its score (sqrt for ℓ2, abs for
// vector-wise Taylor, identity).
using ElementValue = std::function<torch::Tensor(const std::string& name, int64_t dim)>;
Scores sum_over_units(const Context& ctx, const ElementValue& element_value, double (*finish)(double));

// Throws UserError when ctx asks for a kind the estimator does not support, or needs data it lacks.
void check_request(const Estimator& e, const Context& ctx);

// Puts the model in eval mode (no dropout: scores must be deterministic) for the scope's
// lifetime and restores the previous mode after.
class EvalScope {
 public:
  explicit EvalScope(model::Model& m) : model_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalScope() { model_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  model::Model& model_;
  bool was_training_;
};

// One batch row as a batch of one (head_gradient's per-example expectation).
data::Batch example(const data::Batch& batch, int64_t row);

// The gates a forward pass should use: ctx.gates (or ones) as fresh fp32 leaves on the model's
// device, requiring grad for the requested kinds only.
model::Gates leaf_gates(const Context& ctx, bool requires_grad);

// The gate tensor of `kind`'s groups in `layer` (hidden dims: gates.hidden, any layer), or null
// when the gates have no entry there.
torch::Tensor* gate_slot(model::Gates& gates, GroupKind kind, int64_t layer);
const torch::Tensor* gate_slot(const model::Gates& gates, GroupKind kind, int64_t layer);

// Number of query heads sharing one key/value head in `layer`.
int64_t heads_per_group(const model::ModelConfig& c, int64_t layer);

}  // namespace secateur::importance
