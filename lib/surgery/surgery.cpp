#include "surgery/surgery.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <stdexcept>

#include "model/prunable.h"

namespace secateur::surgery {

namespace {

using model::Group;
using model::GroupKind;

bool contains(const std::vector<int64_t>& sorted, int64_t i) { return std::binary_search(sorted.begin(), sorted.end(), i); }

// Whether the masks remove this width group (blocks and layers are handled by renaming: their
// tensors are simply never copied).
bool removed(const Group& g, const Masks& m) {
  if (g.kind == GroupKind::hidden_dim) return !contains(m.hidden, g.index);
  const LayerMask& l = m.layers[g.layer];
  switch (g.kind) {
    case GroupKind::head: return !contains(l.heads, g.index);
    case GroupKind::kv_group: return !contains(l.kv_groups, g.index);
    case GroupKind::ffn_neuron: return !contains(l.ffn, g.index);
    default: return false;
  }
}

// Replaces every run of digits with '#': two names of the same tensor in different layers agree.
std::string shape_of_name(const std::string& name) {
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(name[i]))) {
      if (out.empty() || out.back() != '#') out += '#';
    } else {
      out += name[i];
    }
  }
  return out;
}

const Group* find(const model::PrunableStructure& s, GroupKind kind, int64_t layer) {
  for (const Group& g : s.groups)
    if (g.kind == kind && g.layer == layer) return &g;
  return nullptr;
}

// New name → source name for the tensors of every kept block, matched slice by slice: a block
// group lists its whole tensors in a fixed order, so the i-th tensor of source block (l, kind)
// is the i-th of target block (j, kind).
std::map<std::string, std::string> rename_layers(const model::PrunableStructure& from, const model::PrunableStructure& to,
                                                 const Masks& masks) {
  std::map<std::string, std::string> names;
  int64_t j = 0;
  for (int64_t l = 0; l < static_cast<int64_t>(masks.layers.size()); ++l) {
    if (!masks.layers[l].keep) continue;
    for (GroupKind kind : {GroupKind::attn_block, GroupKind::mlp_block}) {
      const Group* a = find(from, kind, l);
      const Group* b = find(to, kind, j);
      if (!b) continue;
      if (!a || a->slices.size() != b->slices.size())
        throw std::logic_error("surgery: block " + model::to_string(kind) + " of layer " + std::to_string(l) +
                               " does not match its pruned counterpart");
      for (size_t i = 0; i < a->slices.size(); ++i) {
        const std::string& old_name = a->slices[i].hf_param_name;
        const std::string& new_name = b->slices[i].hf_param_name;
        if (shape_of_name(old_name) != shape_of_name(new_name))
          throw std::logic_error("surgery: " + old_name + " would become " + new_name);
        names[new_name] = old_name;
      }
    }
    ++j;
  }
  return names;
}

}  // namespace

std::shared_ptr<model::Model> prune(const model::Model& source, const Masks& masks) {
  const model::ModelConfig& c = source.config();
  const model::ModelConfig pruned = masks.pruned_config(c);  // validates
  const bool hidden = static_cast<int64_t>(masks.hidden.size()) < c.hidden_size;
  model::PrunableOptions options;
  options.hidden_dims = hidden;
  const model::PrunableStructure structure = model::prunable_structure(source, options);

  // (tensor, dim) → indices to delete, from every removed width group in a kept layer and block.
  std::map<std::pair<std::string, int64_t>, std::set<int64_t>> doomed;
  for (const Group& g : structure.groups) {
    if (g.kind != GroupKind::hidden_dim && g.kind != GroupKind::head && g.kind != GroupKind::kv_group &&
        g.kind != GroupKind::ffn_neuron)
      continue;
    if (g.layer >= 0) {
      const LayerMask& l = masks.layers[g.layer];
      if (!l.keep || (g.kind == GroupKind::ffn_neuron ? !l.mlp : !l.attention)) continue;
    }
    if (!removed(g, masks)) continue;
    for (const model::ParamSlice& s : g.slices)
      for (int64_t i = s.start; i < s.start + s.length; ++i) doomed[{s.hf_param_name, s.dim}].insert(i);
  }

  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> kept;  // source name → sliced tensor
  for (const auto& [name, tensor] : source.state_dict_hf()) kept[name] = tensor;
  for (const auto& [key, indices] : doomed) {
    const auto& [name, dim] = key;
    torch::Tensor& t = kept.at(name);
    std::vector<int64_t> keep;
    for (int64_t i = 0; i < t.size(dim); ++i)
      if (!indices.count(i)) keep.push_back(i);
    t = t.index_select(dim, torch::tensor(keep, torch::TensorOptions().dtype(torch::kLong).device(t.device())));
  }

  std::shared_ptr<model::Model> out =
      model::build_model(pruned, torch::TensorOptions().dtype(source.dtype()).device(source.device()));
  const model::PrunableStructure target = model::prunable_structure(*out, {structure.seq_len, false});
  const std::map<std::string, std::string> renamed = rename_layers(structure, target, masks);
  io::TensorMap weights;
  for (const std::string& name : out->hf_names()) {
    const auto it = renamed.find(name);
    const std::string& from = it == renamed.end() ? name : it->second;
    const auto t = kept.find(from);
    if (t == kept.end()) throw std::logic_error("surgery: the pruned model needs " + name + ", which " + from + " should provide");
    weights[name] = t->second.contiguous();
  }
  const model::LoadReport report = out->load_state(weights, "surgery");
  if (!report.missing.empty()) throw std::logic_error("surgery left " + report.missing.front() + " unset");
  out->train(source.is_training());
  return out;
}

}  // namespace secateur::surgery
