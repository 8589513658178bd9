#pragma once
// Surgery: the only code that changes tensor shapes. Masks in, a physically smaller model out:
// q/k/v/o sliced by heads and key/value groups, up/gate/down by neurons, attention and MLP blocks
// and whole layers dropped (later layers renumbered), hidden dims sliced out of every tensor that
// has one. The result's ModelConfig.layers records each layer's shape, so a heterogeneous model
// saves with DeciLM-style block_configs and loads back.
//
// Everything goes through model::prunable_structure: surgery deletes exactly the slices the
// structure assigns to the removed groups, so the pruned model computes what the dense model
// computes under Masks::to_gates (tests/surgery checks this for every family).
#include <memory>

#include "model/model.h"
#include "surgery/masks.h"

namespace secateur::surgery {

// A new model (same dtype, device and train/eval mode) holding the kept weights of `source`.
// Throws UserError when the masks are invalid for the model (see Masks::validate).
std::shared_ptr<model::Model> prune(const model::Model& source, const Masks& masks);

}  // namespace secateur::surgery
