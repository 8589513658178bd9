#pragma once
// Allocation: importance scores and targets in, masks out. Decides how many heads, neurons,
// hidden dims, blocks and layers each layer loses, and which ones.
//
//   uniform   every layer loses the same fraction of its units (rounded per layer)
//   global    one ranking of all layers' units by score (Michel et al.'s global head pruning)
//   adaptive  as global, on scores standardised within each layer and kind (FLAP's adaptive
//             structure search), so heads and neurons of every layer compete on one scale
//
// Units are what is removed at once: a head; in LLaMA-family models with grouped-query attention,
// either a whole key/value group with its query heads (gqa: group) or, per step, one query head
// from every group (gqa: within), so every group keeps the same number of query heads; an FFN
// neuron; a hidden dim; an attention or MLP block; a layer. Kept widths can be rounded to a
// multiple (round_to) and bounded below (min_per_layer). Removal proceeds in steps, lowest score
// first; a step removes the fewest units that land a layer's kept width on an allowed value, and
// scores as the mean of its units' scores.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "importance/scores.h"
#include "model/model.h"
#include "model/prunable.h"
#include "surgery/masks.h"

namespace secateur::methods {

enum class TargetKind { heads, ffn, hidden, attn_blocks, mlp_blocks, layers };
std::string to_string(TargetKind kind);
TargetKind target_kind(const std::string& name);  // UserError for an unknown name
const std::vector<TargetKind>& all_target_kinds();

struct Amount {
  double fraction = 0;  // of the kind's units (heads, neurons, dims, blocks, layers)
  int64_t count = -1;   // ≥ 0: this many units instead
};

struct Targets {
  std::map<TargetKind, Amount> per_kind;
  // ≥ 0: remove this fraction of the model's non-embedding parameters, taking units of
  // `params_kinds` in score order (the kinds compete, so use adaptive allocation).
  double params = -1;
  std::vector<TargetKind> params_kinds = {TargetKind::heads, TargetKind::ffn};
};

enum class Mode { uniform, global, adaptive };
enum class GqaMode { group, within };

struct AllocationOptions {
  Mode mode = Mode::uniform;
  GqaMode gqa = GqaMode::group;
  std::map<TargetKind, int64_t> round_to;       // kept width multiple per kind (default 1)
  std::map<TargetKind, int64_t> min_per_layer;  // kept width floor per kind (default 1, never 0)
};

// The scores allocation reads for `targets`: which kinds, and whether kv_group scores must cover
// whole GQA units (the estimator's Context::kv_units).
struct ScoreRequest {
  std::set<model::GroupKind> kinds;
  bool kv_units = false;
};
ScoreRequest score_request(const model::ModelConfig& config, const Targets& targets, const AllocationOptions& options);

// One removal decision, in the order allocation took them.
struct Step {
  TargetKind kind = TargetKind::heads;
  int64_t layer = -1;                // −1: hidden dims
  std::vector<int64_t> indices;      // heads / neurons / dims removed (0 for a block or layer)
  std::vector<int64_t> kv_groups;    // key/value groups removed with them (gqa: group)
  int64_t units = 0;                 // heads, neurons, dims, blocks or layers removed
  int64_t params = 0;
  double score = 0;
  int round = 0;                     // the iterative schedule's round (set by the caller)
};

struct KindResult {
  int64_t units = 0;      // the kind's units in the model (the base of fractions)
  int64_t requested = 0;  // units the target asks to have removed (cumulative)
  int64_t target = 0;     // the nearest count that rounding and minimums allow
  int64_t removed = 0;    // units removed in all (cumulative)
};

struct Allocation {
  surgery::Masks masks;                   // current masks with this allocation's removals applied
  std::vector<Step> steps;                // this allocation's removals, in order
  std::map<TargetKind, KindResult> kinds;
  int64_t params_base = 0;                // non-embedding parameters of the model
  int64_t params_target = -1;             // parameters to remove (params targets)
  int64_t params_removed = 0;             // by all masks (cumulative)
  bool met = true;                        // every count target removed exactly `target` units
  std::string unmet;                      // why not, when !met
  nlohmann::json to_json() const;
};

// Removes units from `current` (masks in `model`'s indexing; keep_all for one-shot pruning)
// until the cumulative `targets` are met. `structure` is `model`'s (hidden dims included when
// hidden is a target); `scores` must hold what score_request() asked for. Layers and blocks are
// decided first; width fractions then count over the blocks that remain. A layers target equal
// to scores.run_length removes the contiguous run with the smallest angular distance.
Allocation allocate(const model::Model& model, const model::PrunableStructure& structure,
                    const importance::Scores& scores, const Targets& targets, const AllocationOptions& options,
                    const surgery::Masks& current);

// Parameters that `masks` remove, from the group sizes of the model's `structure` (hidden dims
// are not counted: their slices overlap every other group's).
int64_t removed_params(const model::PrunableStructure& structure, const surgery::Masks& masks);

}  // namespace secateur::methods
