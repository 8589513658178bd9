#pragma once
// The prune stage's options, from its validated recipe entry (schema in prune_options.cpp).
#include <cstdint>
#include <string>

#include "importance/estimator.h"
#include "methods/allocation.h"
#include "methods/block_search.h"
#include "recipe/schema.h"
#include "recipe/value.h"
#include "stages/eval_metrics.h"

namespace secateur::stages {

struct PruneOptions {
  importance::EstimatorOptions estimator;
  bool run_length_given = false;  // block_influence angular: else n = the layers target
  methods::Targets targets;
  methods::AllocationOptions allocation;
  double step = 0;                // iterative schedule: fraction of each kind removed per round; 0 = one-shot
  bool round_eval = false;        // iterative schedule: evaluate through the masks after round 0 and every round
  TaskEvalOptions round_eval_options;
  bool bias_compensation = false;
  std::string from;               // re-apply the masks of this pruning.json instead of estimating
  bool search = false;            // remove blocks / layers by block search instead of estimator + allocation
  methods::BlockSearchOptions search_options;
  recipe::Value calibration;
};

recipe::SchemaPtr prune_schema();
// UserError for combinations the schema cannot express (a target of ≥ 1 that is not a count...).
PruneOptions parse_prune_options(const recipe::Value& options);

}  // namespace secateur::stages
