#pragma once
// The removable units of one kind in one layer, and the steps they are removed in (internal to
// allocation; exposed for its tests).
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "methods/allocation.h"

namespace secateur::methods {

struct Unit {
  std::vector<int64_t> indices;  // heads / neurons / dims (0 for a block or layer)
  std::vector<int64_t> kv_groups;
  int64_t width = 1;             // units of the kind's count (heads, neurons, ...)
  int64_t params = 0;
  double score = 0;
};

// One layer's candidates for one kind, lowest score first.
struct LayerUnits {
  TargetKind kind = TargetKind::heads;
  int64_t layer = -1;
  int64_t original = 0;  // width in the model (heads, neurons, dims; 1 for a block or layer)
  int64_t kept = 0;      // width under the current masks
  std::vector<Unit> units;
};

// Group parameters by (kind, layer, index), from the structure.
using ParamIndex = std::map<std::tuple<model::GroupKind, int64_t, int64_t>, int64_t>;
ParamIndex param_index(const model::PrunableStructure& structure);

// Candidates of `kind` under `masks`, in every layer (or the hidden "layer" −1) where the kind
// still exists. UserError when `scores` lacks what the kind needs.
std::vector<LayerUnits> layer_units(const model::ModelConfig& config, const ParamIndex& params,
                                    const importance::Scores& scores, TargetKind kind, GqaMode gqa,
                                    const surgery::Masks& masks);

// Consecutive units merged into steps: each step removes the fewest next units that leave the
// kept width a multiple of `round_to` and at least `min_kept`; units that cannot are not offered.
std::vector<Step> layer_steps(const LayerUnits& layer, int64_t round_to, int64_t min_kept);

// Applies steps to masks (a group removes its key/value groups and query heads; a block or a
// layer switches off). One pass per touched layer, so allocating 10⁵ neurons stays linear.
void apply_steps(surgery::Masks& masks, const model::ModelConfig& config, const std::vector<Step>& steps);

}  // namespace secateur::methods
