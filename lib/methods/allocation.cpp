#include "methods/allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "methods/units.h"
#include "util/error.h"
#include "util/strings.h"

namespace secateur::methods {

using model::GroupKind;

const std::vector<TargetKind>& all_target_kinds() {
  static const std::vector<TargetKind> kinds = {TargetKind::layers, TargetKind::attn_blocks, TargetKind::mlp_blocks,
                                                TargetKind::heads, TargetKind::ffn, TargetKind::hidden};
  return kinds;
}

std::string to_string(TargetKind kind) {
  switch (kind) {
    case TargetKind::heads: return "heads";
    case TargetKind::ffn: return "ffn";
    case TargetKind::hidden: return "hidden";
    case TargetKind::attn_blocks: return "attn_blocks";
    case TargetKind::mlp_blocks: return "mlp_blocks";
    case TargetKind::layers: return "layers";
  }
  return "?";
}

TargetKind target_kind(const std::string& name) {
  std::vector<std::string> names;
  for (TargetKind k : all_target_kinds()) {
    if (to_string(k) == name) return k;
    names.push_back(to_string(k));
  }
  throw UserError("unknown pruning target '" + name + "' (expected one of " + strings::join(names, ", ") + ")");
}

namespace {

bool is_width(TargetKind k) { return k == TargetKind::heads || k == TargetKind::ffn || k == TargetKind::hidden; }

GroupKind score_kind(TargetKind k) {
  switch (k) {
    case TargetKind::ffn: return GroupKind::ffn_neuron;
    case TargetKind::hidden: return GroupKind::hidden_dim;
    case TargetKind::attn_blocks: return GroupKind::attn_block;
    case TargetKind::mlp_blocks: return GroupKind::mlp_block;
    case TargetKind::layers: return GroupKind::layer;
    case TargetKind::heads: break;
  }
  return GroupKind::head;
}

int64_t option(const std::map<TargetKind, int64_t>& m, TargetKind k, int64_t fallback) {
  const auto it = m.find(k);
  return it == m.end() ? fallback : it->second;
}

// Reachable totals of removed units when each layer removes a prefix of its steps: the exact
// count a count target is rounded to (the reachable total nearest the request; ties → fewer).
int64_t nearest_reachable(const std::vector<std::vector<Step>>& layers, int64_t request) {
  bool unit_steps = true;
  int64_t total = 0;
  for (const auto& steps : layers)
    for (const Step& s : steps) {
      unit_steps = unit_steps && s.units == 1;
      total += s.units;
    }
  if (unit_steps) return std::min(request, total);
  // Subset sums over "a prefix of each layer's steps" as a bitset: each layer ORs in the
  // reachable set shifted by each of its prefix sums (a few million word operations for an 8B
  // model's FFN at round_to 64).
  const size_t words = static_cast<size_t>(total / 64 + 1);
  std::vector<uint64_t> reach(words, 0);
  reach[0] = 1;
  for (const auto& steps : layers) {
    std::vector<uint64_t> next = reach;
    int64_t shift = 0;
    for (const Step& s : steps) {
      shift += s.units;
      const size_t w = static_cast<size_t>(shift / 64), b = static_cast<size_t>(shift % 64);
      for (size_t i = words; i-- > w;) {
        uint64_t v = reach[i - w] << b;
        if (b && i - w > 0) v |= reach[i - w - 1] >> (64 - b);
        next[i] |= v;
      }
    }
    reach.swap(next);
  }
  int64_t best = 0;
  for (int64_t t = 0; t <= total; ++t)
    if ((reach[static_cast<size_t>(t / 64)] >> (t % 64) & 1) && std::llabs(t - request) < std::llabs(best - request)) best = t;
  return best;
}

// Takes, lowest score first, the next step of any layer that fits in `budget` (units, or
// parameters when by_params), until none fits. Returns what it took.
int64_t take_greedily(std::vector<std::vector<Step>>& layers, int64_t budget, bool by_params, std::vector<Step>& taken) {
  std::vector<size_t> next(layers.size(), 0);
  int64_t used = 0;
  while (true) {
    int64_t best = -1;
    for (size_t l = 0; l < layers.size(); ++l) {
      if (next[l] >= layers[l].size()) continue;
      const Step& s = layers[l][next[l]];
      if (used + (by_params ? s.params : s.units) > budget) continue;
      if (best < 0 || s.score < layers[best][next[best]].score) best = static_cast<int64_t>(l);
    }
    if (best < 0) return used;
    const Step& s = layers[best][next[best]++];
    used += by_params ? s.params : s.units;
    taken.push_back(s);
  }
}

class Allocator {
 public:
  Allocator(const model::Model& model, const model::PrunableStructure& structure, const importance::Scores& scores,
            const AllocationOptions& options, const surgery::Masks& current)
      : config_(model.config()), structure_(structure), params_(param_index(structure)), scores_(scores), options_(options) {
    result_.masks = current;
    if (options.mode == Mode::adaptive)
      for (GroupKind k : {GroupKind::head, GroupKind::kv_group, GroupKind::ffn_neuron, GroupKind::hidden_dim})
        importance::standardize_per_layer(scores_, k);
    result_.params_base = model::parameter_count(model).non_embedding;
  }

  std::vector<LayerUnits> units(TargetKind k) const {
    return layer_units(config_, params_, scores_, k, options_.gqa, result_.masks);
  }
  std::vector<std::vector<Step>> steps(const std::vector<LayerUnits>& layers, TargetKind k) const {
    const int64_t round = is_width(k) ? std::max<int64_t>(1, option(options_.round_to, k, 1)) : 1;
    const int64_t floor = is_width(k) ? std::max<int64_t>(1, option(options_.min_per_layer, k, 1)) : 0;
    std::vector<std::vector<Step>> out;
    for (const LayerUnits& lu : layers) out.push_back(layer_steps(lu, round, floor));
    return out;
  }

  // Records steps and applies them to the masks in one pass.
  void take(const std::vector<Step>& steps) {
    apply_steps(result_.masks, config_, steps);
    result_.steps.insert(result_.steps.end(), steps.begin(), steps.end());
  }

  void count_target(TargetKind k, const Amount& a) {
    std::vector<LayerUnits> layers = units(k);
    KindResult& r = result_.kinds[k];
    r.units = base_units(k, layers);
    int64_t kept = 0;
    for (const LayerUnits& lu : layers) kept += lu.kept;
    const int64_t already = r.units - kept;
    r.requested = a.count >= 0 ? a.count : std::llround(a.fraction * static_cast<double>(r.units));
    if (k == TargetKind::layers && try_run(r)) return;
    std::vector<std::vector<Step>> per_layer = steps(layers, k);
    std::vector<Step> taken;
    if (options_.mode == Mode::uniform && is_width(k)) {
      // Every layer keeps the reachable width nearest original·(1 − f).
      const double f = r.units > 0 ? static_cast<double>(r.requested) / static_cast<double>(r.units) : 0.0;
      for (size_t l = 0; l < layers.size(); ++l) {
        const double want = static_cast<double>(layers[l].original) * (1 - f);
        int64_t width = layers[l].kept;
        size_t best = 0;
        double best_gap = std::fabs(static_cast<double>(width) - want);
        for (size_t s = 0; s < per_layer[l].size(); ++s) {
          width -= per_layer[l][s].units;
          if (std::fabs(static_cast<double>(width) - want) < best_gap - 1e-9) {
            best_gap = std::fabs(static_cast<double>(width) - want);
            best = s + 1;
          }
        }
        taken.insert(taken.end(), per_layer[l].begin(), per_layer[l].begin() + static_cast<std::ptrdiff_t>(best));
      }
      int64_t total = already;
      for (const Step& s : taken) total += s.units;
      r.target = total;
    } else {
      r.target = already + nearest_reachable(per_layer, std::max<int64_t>(r.requested - already, 0));
      take_greedily(per_layer, r.target - already, false, taken);
    }
    take(taken);
    r.removed = already;
    for (const Step& s : taken) r.removed += s.units;
    if (r.removed != r.target) {
      result_.met = false;
      result_.unmet += to_string(k) + ": removed " + std::to_string(r.removed) + " of the " + std::to_string(r.target) +
                       " units rounding allows (requested " + std::to_string(r.requested) + "); ";
    }
  }

  void params_target(const Targets& t) {
    result_.params_target = std::llround(t.params * static_cast<double>(result_.params_base));
    const int64_t already = methods::removed_params(structure_, result_.masks);
    std::vector<std::vector<Step>> all;
    for (TargetKind k : t.params_kinds) {
      if (k == TargetKind::hidden)
        throw UserError("a params target cannot use hidden dims (their parameters overlap every other kind's)");
      std::vector<LayerUnits> layers = units(k);
      std::vector<std::vector<Step>> per_layer = steps(layers, k);
      if (options_.mode == Mode::uniform && is_width(k)) {
        // Each layer gives up the same fraction of its width.
        for (size_t l = 0; l < layers.size(); ++l) {
          const double want = static_cast<double>(layers[l].original) * (1 - t.params);
          int64_t width = layers[l].kept;
          std::vector<Step> taken;
          for (const Step& s : per_layer[l]) {
            if (std::fabs(static_cast<double>(width - s.units) - want) >= std::fabs(static_cast<double>(width) - want)) break;
            width -= s.units;
            taken.push_back(s);
          }
          take(taken);
        }
        continue;
      }
      all.insert(all.end(), per_layer.begin(), per_layer.end());
    }
    std::vector<Step> taken;
    take_greedily(all, std::max<int64_t>(result_.params_target - already, 0), true, taken);
    take(taken);
  }

  Allocation finish() {
    result_.params_removed = methods::removed_params(structure_, result_.masks);
    return result_;
  }

 private:
  // The base of a kind's fractions: all its units in the layers and blocks that remain.
  int64_t base_units(TargetKind k, const std::vector<LayerUnits>& layers) const {
    if (k == TargetKind::layers) return config_.num_layers;
    if (k == TargetKind::attn_blocks || k == TargetKind::mlp_blocks) {
      int64_t n = 0;
      for (const model::LayerShape& s : config_.layers) n += k == TargetKind::attn_blocks ? s.has_attention : s.has_mlp;
      return n;
    }
    int64_t n = 0;
    for (const LayerUnits& lu : layers) n += lu.original;
    return n;
  }

  // Gromov et al.: drop the run of n layers whose ends are least apart.
  bool try_run(KindResult& r) {
    if (scores_.run_length != r.requested || scores_.layer_runs.empty() || result_.masks.kept_layers() != config_.num_layers)
      return false;
    const auto best = std::min_element(scores_.layer_runs.begin(), scores_.layer_runs.end());
    const int64_t start = best - scores_.layer_runs.begin();
    std::vector<Step> run;
    for (int64_t l = start; l < start + r.requested; ++l) {
      Step s;
      s.kind = TargetKind::layers;
      s.layer = l;
      s.indices = {0};
      s.units = 1;
      s.params = params_.count({GroupKind::layer, l, 0}) ? params_.at({GroupKind::layer, l, 0}) : 0;
      s.score = *best;
      run.push_back(s);
    }
    take(run);
    r.target = r.removed = r.requested;
    return true;
  }

  const model::ModelConfig& config_;
  const model::PrunableStructure& structure_;
  ParamIndex params_;
  importance::Scores scores_;
  AllocationOptions options_;
  Allocation result_;
};

}  // namespace

int64_t removed_params(const model::PrunableStructure& structure, const surgery::Masks& masks) {
  auto gone = [](const std::vector<int64_t>& kept, int64_t i) { return !std::binary_search(kept.begin(), kept.end(), i); };
  int64_t n = 0;
  for (const model::Group& g : structure.groups) {
    if (g.layer < 0 || g.layer >= static_cast<int64_t>(masks.layers.size())) continue;  // hidden dims overlap the rest
    const surgery::LayerMask& m = masks.layers[g.layer];
    bool removed = false;
    switch (g.kind) {
      case GroupKind::layer: removed = !m.keep; break;
      case GroupKind::attn_block: removed = m.keep && !m.attention; break;
      case GroupKind::mlp_block: removed = m.keep && !m.mlp; break;
      case GroupKind::head: removed = m.keep && m.attention && gone(m.heads, g.index); break;
      case GroupKind::kv_group: removed = m.keep && m.attention && gone(m.kv_groups, g.index); break;
      case GroupKind::ffn_neuron: removed = m.keep && m.mlp && gone(m.ffn, g.index); break;
      case GroupKind::hidden_dim: break;
    }
    if (removed) n += g.params;
  }
  return n;
}

ScoreRequest score_request(const model::ModelConfig& c, const Targets& t, const AllocationOptions& o) {
  ScoreRequest r;
  std::set<TargetKind> kinds;
  for (const auto& [k, amount] : t.per_kind) kinds.insert(k);
  if (t.params >= 0) kinds.insert(t.params_kinds.begin(), t.params_kinds.end());
  for (TargetKind k : kinds) {
    if (k != TargetKind::heads) {
      r.kinds.insert(score_kind(k));
      continue;
    }
    if (c.family != model::Family::llama) {
      r.kinds.insert(GroupKind::head);
      continue;
    }
    // Groups are scored as whole units; within-group pruning ranks heads (and still needs group
    // scores for layers with one query head per group, where a head is a group).
    r.kinds.insert(GroupKind::kv_group);
    r.kv_units = true;
    if (o.gqa == GqaMode::within) r.kinds.insert(GroupKind::head);
  }
  return r;
}

Allocation allocate(const model::Model& model, const model::PrunableStructure& structure, const importance::Scores& scores,
                    const Targets& targets, const AllocationOptions& options, const surgery::Masks& current) {
  current.validate(model.config(), "current masks");
  if (targets.params >= 0)
    for (TargetKind k : targets.params_kinds)
      if (targets.per_kind.count(k))
        throw UserError("target sets both params and " + to_string(k) + ": give " + to_string(k) +
                        " either its own amount or a share of the parameter budget, not both");
  Allocator a(model, structure, scores, options, current);
  for (TargetKind k : all_target_kinds()) {  // layers and blocks first, then widths
    const auto it = targets.per_kind.find(k);
    if (it != targets.per_kind.end()) a.count_target(k, it->second);
  }
  if (targets.params >= 0) a.params_target(targets);
  return a.finish();
}

nlohmann::json Allocation::to_json() const {
  nlohmann::json kinds_json = nlohmann::json::object();
  for (const auto& [k, r] : kinds)
    kinds_json[to_string(k)] = {{"units", r.units}, {"requested", r.requested}, {"target", r.target}, {"removed", r.removed}};
  nlohmann::json order = nlohmann::json::array();
  for (const Step& s : steps) {
    nlohmann::json j = {{"round", s.round}, {"kind", to_string(s.kind)}, {"layer", s.layer}, {"indices", s.indices},
                        {"units", s.units}, {"params", s.params}, {"score", s.score}};
    if (!s.kv_groups.empty()) j["kv_groups"] = s.kv_groups;
    order.push_back(j);
  }
  nlohmann::json j = {{"kinds", kinds_json}, {"steps", order}, {"params_base", params_base},
                      {"params_removed", params_removed}, {"met", met}};
  if (params_target >= 0) j["params_target"] = params_target;
  if (!met) j["unmet"] = unmet;
  return j;
}

}  // namespace secateur::methods
