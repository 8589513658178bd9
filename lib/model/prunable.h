#pragma once
// The prunable structure of a model: every group of parameters that structured pruning can
// remove as a unit, with the exact slices of HF-named tensors each group owns. Importance
// estimators and surgery work through this view only, never through family-specific code.
//
// Slices index tensors in their HF layout (Model::hf_parameter(name), identical to the
// checkpoint), so GPT-2's Conv1D weights [in, out] are sliced on dim 1 for output units.
//
//   head        (layer, h):  q rows of head h (and k/v rows where a family has no GQA: encoder,
//                            gpt2), the matching q/k/v bias entries, o columns of head h
//   kv_group    (layer, g):  k and v rows (and bias entries) of key/value group g (llama family)
//   ffn_neuron  (layer, i):  row i of up (and gate) with bias entries, column i of down
//   hidden_dim  (-1, d):     entry d of every hidden-sized tensor: embedding columns, norm
//                            entries, input columns of every projection reading the residual
//                            stream, output rows (and bias entries) of every projection writing
//                            it, the LM head's column; for encoders also the pooler's (or
//                            RoBERTa classifier dense's) row, column and bias entry and the
//                            classifier's column, since HF sizes those by hidden_size.
//   attn_block / mlp_block (layer, 0): every tensor of the block, its norm included
//   layer       (layer, 0):  every tensor of the layer
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model.h"

namespace secateur::model {

enum class GroupKind { head, kv_group, ffn_neuron, hidden_dim, attn_block, mlp_block, layer };
constexpr int kGroupKinds = 7;
std::string to_string(GroupKind kind);

struct ParamSlice {
  std::string hf_param_name;
  int64_t dim = 0;     // the sliced dimension of the HF-layout tensor
  int64_t start = 0;
  int64_t length = 0;  // a whole tensor is {dim 0, start 0, length size(0)}
};

struct Group {
  GroupKind kind = GroupKind::head;
  int64_t layer = -1;  // -1 for hidden_dim
  int64_t index = 0;
  std::vector<ParamSlice> slices;
  int64_t params = 0;           // scalars in the slices
  int64_t flops_per_token = 0;  // forward FLOPs the group costs per token (see flops_per_token)
};

struct PrunableStructure {
  std::vector<Group> groups;
  int64_t seq_len = 0;  // the context length the FLOPs were counted at

  size_t count(GroupKind kind) const;
  std::vector<const Group*> of_kind(GroupKind kind) const;
};

struct PrunableOptions {
  int64_t seq_len = 512;
  // hidden_dim groups hold one slice per hidden-sized tensor for every dim (hidden × ~9·layers
  // slices in all): large for billion-parameter models, so callers that never prune the hidden
  // size may leave them out.
  bool hidden_dims = true;
};

PrunableStructure prunable_structure(const Model& model, const PrunableOptions& options = {});

struct ParameterCount {
  int64_t total = 0;
  int64_t non_embedding = 0;  // without the word / position / token-type tables, as HF counts
};
ParameterCount parameter_count(const Model& model);

// Forward FLOPs per token, averaged over a sequence of seq_len tokens: 2 per multiply-add of
// every projection and of the LM / classifier head, plus the attention products q·kᵀ and p·v
// over the keys each query sees (seq_len for encoders, (seq_len + 1) / 2 on average for causal
// models). Norms, softmax, activations and embedding lookups are not counted.
int64_t flops_per_token(const ModelConfig& config, int64_t seq_len);

}  // namespace secateur::model
