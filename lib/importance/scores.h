#pragma once
// Importance scores: one number per prunable group, higher meaning more important (more harmful
// to remove). Laid out like model::Gates: per group kind, per layer, a 1-D float64 CPU tensor
// indexed by Group::index, so allocation can rank within or across layers and a gate vector and
// its scores line up entry for entry.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/prunable.h"

namespace secateur::importance {

using model::GroupKind;

struct Scores {
  // kind → [layer] → [groups of that kind in the layer]; undefined where the layer has none.
  // hidden_dim groups (Group::layer == -1) are stored as layer 0 of their kind.
  std::map<GroupKind, std::vector<torch::Tensor>> per_layer;

  // Gromov et al. 2024's angular distance d(x^(l), x^(l+n)) for every start l = 0..L−n, where
  // x^(l) is the input of layer l; filled by block_influence with metric `angular`.
  std::vector<double> layer_runs;
  int64_t run_length = 0;

  // Per input channel of a projection (HF weight name → [in features], float64 CPU): the mean of
  // that input over the calibration tokens. FLAP's bias compensation folds the mean of removed
  // channels into the projection's bias; estimators that see activations fill it.
  std::map<std::string, torch::Tensor> channel_means;
  // The weight dim indexing each of those projections' input channels (1 Linear, 0 Conv1D).
  std::map<std::string, int64_t> channel_in_dim;

  bool has(GroupKind kind) const { return per_layer.count(kind) > 0; }
  // The scores of `kind` in `layer` (−1 or 0 for hidden dims); undefined when absent.
  torch::Tensor of(GroupKind kind, int64_t layer) const;
  void set(GroupKind kind, int64_t layer, torch::Tensor values);
  double at(const model::Group& g) const;  // std::out_of_range when the group was not scored

  // {"head": [[layer 0 scores], [layer 1 scores]], ..., "layer_runs": [...]} for pruning.json.
  nlohmann::json to_json() const;
};

// Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"), importance score
// normalization: each layer's scores divided by their ℓ2 norm, I_h ← I_h / (Σ_{h' ∈ layer} I_{h'}²)^{1/2}, so that one global ranking compares
// layers whose gradients differ in scale.
void normalize_per_layer(Scores& scores, GroupKind kind);

// FLAP (An et al. 2024), adaptive structure search: Ŝ = (S − E[S]) / √(E[(S − E[S])²]) within each layer, so that
// attention and MLP scores of every layer share one scale for the global (adaptive) ranking.
// A layer whose scores are all equal (or that has a single group) maps to zeros.
void standardize_per_layer(Scores& scores, GroupKind kind);

}  // namespace secateur::importance
