#pragma once
// A human-readable summary of a model, printed by `secateur inspect MODEL`.
#include <string>

#include "model/model.h"

namespace secateur::model {

// Family, task, dtype and device, per-layer shapes (heads / KV heads / FFN width / blocks, runs
// of identical layers folded), parameter counts, prunable groups per kind, and FLOPs per token
// at `seq_len` (default: min(max_position_embeddings, 2048)).
std::string describe(const Model& model, int64_t seq_len = 0);

}  // namespace secateur::model
