#include "methods/units.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "util/error.h"

namespace secateur::methods {

using model::GroupKind;

ParamIndex param_index(const model::PrunableStructure& s) {
  ParamIndex index;
  for (const model::Group& g : s.groups) index[{g.kind, g.layer, g.index}] = g.params;
  return index;
}

namespace {

int64_t params_of(const ParamIndex& p, GroupKind kind, int64_t layer, int64_t index) {
  const auto it = p.find({kind, layer, index});
  return it == p.end() ? 0 : it->second;
}

double score_of(const importance::Scores& s, GroupKind kind, int64_t layer, int64_t index, TargetKind target) {
  const torch::Tensor t = s.of(kind, layer);
  if (!t.defined() || index >= t.numel())
    throw UserError("pruning " + to_string(target) + " needs " + model::to_string(kind) + " scores for layer " +
                    std::to_string(layer) + ", which the estimator did not produce");
  return t.data_ptr<double>()[index];
}

bool grouped(const model::ModelConfig& c) { return c.family == model::Family::llama; }

void heads_of_layer(LayerUnits& out, const model::ModelConfig& c, const ParamIndex& p, const importance::Scores& s,
                    GqaMode gqa, const surgery::LayerMask& m, int64_t l) {
  const model::LayerShape& shape = c.layers[l];
  out.original = shape.num_heads;
  out.kept = static_cast<int64_t>(m.heads.size());
  if (!grouped(c)) {
    for (int64_t h : m.heads)
      out.units.push_back({{h}, {h}, 1, params_of(p, GroupKind::head, l, h), score_of(s, GroupKind::head, l, h, out.kind)});
    return;
  }
  const int64_t per = shape.num_heads / shape.num_kv_heads;
  if (gqa == GqaMode::group || per == 1) {
    for (int64_t g : m.kv_groups) {
      Unit u;
      u.kv_groups = {g};
      u.params = params_of(p, GroupKind::kv_group, l, g);
      for (int64_t h : m.heads)
        if (h / per == g) {
          u.indices.push_back(h);
          u.params += params_of(p, GroupKind::head, l, h);
        }
      u.width = static_cast<int64_t>(u.indices.size());
      u.score = score_of(s, GroupKind::kv_group, l, g, out.kind);
      out.units.push_back(u);
    }
    return;
  }
  // Within groups: slot k removes each group's k-th least important remaining head, so every
  // group keeps the same number of query heads.
  std::vector<std::vector<int64_t>> by_group;
  for (int64_t g : m.kv_groups) {
    std::vector<int64_t> heads;
    for (int64_t h : m.heads)
      if (h / per == g) heads.push_back(h);
    std::stable_sort(heads.begin(), heads.end(), [&](int64_t a, int64_t b) {
      return score_of(s, GroupKind::head, l, a, out.kind) < score_of(s, GroupKind::head, l, b, out.kind);
    });
    by_group.push_back(heads);
  }
  const size_t slots = by_group.empty() ? 0 : by_group.front().size();
  for (size_t k = 0; k < slots; ++k) {
    Unit u;
    double sum = 0;
    for (const auto& heads : by_group) {
      u.indices.push_back(heads[k]);
      u.params += params_of(p, GroupKind::head, l, heads[k]);
      sum += score_of(s, GroupKind::head, l, heads[k], out.kind);
    }
    std::sort(u.indices.begin(), u.indices.end());
    u.width = static_cast<int64_t>(u.indices.size());
    u.score = sum / static_cast<double>(u.width);
    out.units.push_back(u);
  }
}

}  // namespace

std::vector<LayerUnits> layer_units(const model::ModelConfig& c, const ParamIndex& p, const importance::Scores& s,
                                    TargetKind kind, GqaMode gqa, const surgery::Masks& masks) {
  std::vector<LayerUnits> out;
  if (kind == TargetKind::hidden) {
    LayerUnits lu{kind, -1, c.hidden_size, static_cast<int64_t>(masks.hidden.size()), {}};
    for (int64_t d : masks.hidden)
      lu.units.push_back({{d}, {}, 1, params_of(p, GroupKind::hidden_dim, -1, d), score_of(s, GroupKind::hidden_dim, -1, d, kind)});
    out.push_back(lu);
  }
  for (int64_t l = 0; l < c.num_layers && kind != TargetKind::hidden; ++l) {
    const surgery::LayerMask& m = masks.layers[l];
    const model::LayerShape& shape = c.layers[l];
    if (!m.keep) continue;
    LayerUnits lu{kind, l, 1, 1, {}};
    switch (kind) {
      case TargetKind::heads:
        if (!m.attention) continue;
        heads_of_layer(lu, c, p, s, gqa, m, l);
        break;
      case TargetKind::ffn:
        if (!m.mlp) continue;
        lu.original = shape.intermediate;
        lu.kept = static_cast<int64_t>(m.ffn.size());
        for (int64_t i : m.ffn)
          lu.units.push_back({{i}, {}, 1, params_of(p, GroupKind::ffn_neuron, l, i), score_of(s, GroupKind::ffn_neuron, l, i, kind)});
        break;
      case TargetKind::attn_blocks:
        if (!m.attention) continue;
        lu.units.push_back({{0}, {}, 1, params_of(p, GroupKind::attn_block, l, 0), score_of(s, GroupKind::attn_block, l, 0, kind)});
        break;
      case TargetKind::mlp_blocks:
        if (!m.mlp) continue;
        lu.units.push_back({{0}, {}, 1, params_of(p, GroupKind::mlp_block, l, 0), score_of(s, GroupKind::mlp_block, l, 0, kind)});
        break;
      case TargetKind::layers:
        lu.units.push_back({{0}, {}, 1, params_of(p, GroupKind::layer, l, 0), score_of(s, GroupKind::layer, l, 0, kind)});
        break;
      case TargetKind::hidden: break;
    }
    out.push_back(lu);
  }
  // Lowest score first; stable, so ties keep index order and the result is deterministic.
  for (LayerUnits& lu : out)
    std::stable_sort(lu.units.begin(), lu.units.end(), [](const Unit& a, const Unit& b) { return a.score < b.score; });
  return out;
}

std::vector<Step> layer_steps(const LayerUnits& lu, int64_t round_to, int64_t min_kept) {
  std::vector<Step> steps;
  int64_t kept = lu.kept;
  size_t i = 0;
  while (i < lu.units.size()) {
    Step step;
    step.kind = lu.kind;
    step.layer = lu.layer;
    double sum = 0;
    int64_t count = 0;
    int64_t left = kept;
    while (i < lu.units.size()) {
      const Unit& u = lu.units[i++];
      step.indices.insert(step.indices.end(), u.indices.begin(), u.indices.end());
      step.kv_groups.insert(step.kv_groups.end(), u.kv_groups.begin(), u.kv_groups.end());
      step.units += u.width;
      step.params += u.params;
      sum += u.score;
      ++count;
      left -= u.width;
      if (left % round_to == 0) break;
    }
    if (left % round_to != 0 || left < min_kept) break;
    step.score = sum / static_cast<double>(count);
    std::sort(step.indices.begin(), step.indices.end());
    steps.push_back(step);
    kept = left;
  }
  return steps;
}

void apply_steps(surgery::Masks& masks, const model::ModelConfig& c, const std::vector<Step>& steps) {
  // (kind, layer) → indices to drop; the kept lists are filtered once each at the end.
  std::map<std::pair<TargetKind, int64_t>, std::set<int64_t>> gone, gone_kv;
  for (const Step& s : steps) {
    switch (s.kind) {
      case TargetKind::attn_blocks: masks.layers[s.layer].attention = false; break;
      case TargetKind::mlp_blocks: masks.layers[s.layer].mlp = false; break;
      case TargetKind::layers: masks.layers[s.layer].keep = false; break;
      default:
        gone[{s.kind, s.layer}].insert(s.indices.begin(), s.indices.end());
        if (s.kind == TargetKind::heads)
          gone_kv[{s.kind, s.layer}].insert((grouped(c) ? s.kv_groups : s.indices).begin(),
                                            (grouped(c) ? s.kv_groups : s.indices).end());
    }
  }
  auto filter = [](std::vector<int64_t>& kept, const std::set<int64_t>& drop) {
    kept.erase(std::remove_if(kept.begin(), kept.end(), [&](int64_t i) { return drop.count(i) > 0; }), kept.end());
  };
  for (const auto& [key, drop] : gone) {
    const auto& [kind, layer] = key;
    if (kind == TargetKind::hidden) filter(masks.hidden, drop);
    else if (kind == TargetKind::ffn) filter(masks.layers[layer].ffn, drop);
    else filter(masks.layers[layer].heads, drop);
  }
  for (const auto& [key, drop] : gone_kv) filter(masks.layers[key.second].kv_groups, drop);
}

}  // namespace secateur::methods
