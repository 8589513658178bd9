#pragma once
// Masks: which structures of a model survive pruning, in the source model's indexing. The one
// description of a pruning decision shared by allocation (which writes it), gates (a mask is a
// 0/1 gate setting), surgery (which makes it physical) and pruning.json (which stores it so the
// same pruning can be applied to another checkpoint of the same architecture).
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/gates.h"

namespace secateur::surgery {

struct LayerMask {
  bool keep = true;                // false: the whole layer goes (its index disappears)
  bool attention = true;           // the attention block stays
  bool mlp = true;                 // the MLP block stays
  std::vector<int64_t> heads;      // kept query heads, ascending
  std::vector<int64_t> kv_groups;  // kept key/value groups, ascending (llama family; else = heads)
  std::vector<int64_t> ffn;        // kept FFN neurons, ascending
};

struct Masks {
  std::vector<LayerMask> layers;  // one per layer of the source model
  std::vector<int64_t> hidden;    // kept hidden dims, ascending

  // Everything kept: the identity pruning of `config`.
  static Masks keep_all(const model::ModelConfig& config);

  // Throws UserError naming the layer when the masks do not describe a model `config`'s family can
  // hold: indices out of range or unsorted, an attention block with no head, a kept key/value group
  // whose query heads are all gone or a removed one with query heads left, kept groups with
  // unequal numbers of query heads (attention needs H = KV·(H/KV)), an MLP with no neuron, or
  // a model without layers.
  void validate(const model::ModelConfig& config, const std::string& source = "masks") const;

  // The gates that make the dense model compute what the pruned one will: 1 for kept, 0 for
  // removed entries (fp32, on `device`); gates that would be all ones are left undefined.
  model::Gates to_gates(const model::ModelConfig& config, torch::Device device = torch::kCPU) const;

  // The configuration of the physically pruned model (per-layer shapes, layer count, hidden size).
  model::ModelConfig pruned_config(const model::ModelConfig& config) const;

  // Kept counts summed over layers, for reports.
  int64_t kept_layers() const;

  // {"layers": [{"keep", "attention", "mlp", "heads", "kv_groups", "ffn"}...], "hidden": [...]}.
  nlohmann::json to_json() const;
  // Reads to_json()'s form for a model of `config`, validating it; UserError names `source`.
  static Masks from_json(const nlohmann::json& j, const model::ModelConfig& config, const std::string& source);
};

// Removes, from `into`, what `also` removes: the union of two prunings of the same model.
void intersect(Masks& into, const Masks& also);

}  // namespace secateur::surgery
