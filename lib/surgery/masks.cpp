#include "surgery/masks.h"

#include <algorithm>
#include <numeric>

#include "util/error.h"

namespace secateur::surgery {

namespace {

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(std::max<int64_t>(n, 0));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

bool grouped(const model::ModelConfig& c) { return c.family == model::Family::llama; }

void check_indices(const std::vector<int64_t>& v, int64_t n, const std::string& what) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0 || v[i] >= n)
      throw UserError(what + " keeps index " + std::to_string(v[i]) + ", outside 0.." + std::to_string(n - 1));
    if (i > 0 && v[i] <= v[i - 1]) throw UserError(what + " must list kept indices once each, in ascending order");
  }
}

torch::Tensor keep_gate(const std::vector<int64_t>& kept, int64_t n, torch::Device device) {
  if (static_cast<int64_t>(kept.size()) == n) return {};
  torch::Tensor g = torch::zeros({n}, torch::TensorOptions().dtype(torch::kFloat));
  for (int64_t i : kept) g[i] = 1.0;
  return g.to(device);
}

torch::Tensor switch_gate(bool on, torch::Device device) {
  return on ? torch::Tensor() : torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device));
}

}  // namespace

Masks Masks::keep_all(const model::ModelConfig& c) {
  Masks m;
  for (const model::LayerShape& s : c.layers) {
    LayerMask l;
    l.attention = s.has_attention;
    l.mlp = s.has_mlp;
    if (s.has_attention) {
      l.heads = iota(s.num_heads);
      l.kv_groups = iota(grouped(c) ? s.num_kv_heads : s.num_heads);
    }
    if (s.has_mlp) l.ffn = iota(s.intermediate);
    m.layers.push_back(l);
  }
  m.hidden = iota(c.hidden_size);
  return m;
}

void Masks::validate(const model::ModelConfig& c, const std::string& source) const {
  if (static_cast<int64_t>(layers.size()) != c.num_layers)
    throw UserError(source + ": " + std::to_string(layers.size()) + " layer masks for a model of " +
                    std::to_string(c.num_layers) + " layers");
  check_indices(hidden, c.hidden_size, source + ": hidden");
  if (hidden.empty()) throw UserError(source + ": every hidden dim removed");
  if (kept_layers() == 0) throw UserError(source + ": every layer removed");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerMask& m = layers[l];
    const model::LayerShape& s = c.layers[l];
    const std::string where = source + ": layer " + std::to_string(l);
    if (!m.keep) continue;
    if (m.attention && !s.has_attention) throw UserError(where + " keeps an attention block the model does not have");
    if (m.mlp && !s.has_mlp) throw UserError(where + " keeps an MLP block the model does not have");
    if (m.attention) {
      check_indices(m.heads, s.num_heads, where + " heads");
      if (m.heads.empty()) throw UserError(where + " keeps its attention block but no head (remove the block instead)");
      if (grouped(c)) {
        check_indices(m.kv_groups, s.num_kv_heads, where + " kv_groups");
        const int64_t per = s.num_heads / s.num_kv_heads;
        int64_t expected = -1;
        for (int64_t g = 0; g < s.num_kv_heads; ++g) {
          const bool kept = std::binary_search(m.kv_groups.begin(), m.kv_groups.end(), g);
          const int64_t heads = std::count_if(m.heads.begin(), m.heads.end(), [&](int64_t h) { return h / per == g; });
          if (!kept && heads > 0)
            throw UserError(where + " removes key/value group " + std::to_string(g) + " but keeps " +
                            std::to_string(heads) + " of its query heads");
          if (kept && heads == 0)
            throw UserError(where + " keeps key/value group " + std::to_string(g) + " but none of its query heads");
          if (kept && expected >= 0 && heads != expected)
            throw UserError(where + " keeps " + std::to_string(expected) + " and " + std::to_string(heads) +
                            " query heads in two key/value groups; grouped-query attention needs the same number in each");
          if (kept) expected = heads;
        }
      }
    }
    if (m.mlp) {
      check_indices(m.ffn, s.intermediate, where + " ffn");
      if (m.ffn.empty()) throw UserError(where + " keeps its MLP block but no neuron (remove the block instead)");
    }
  }
}

model::Gates Masks::to_gates(const model::ModelConfig& c, torch::Device device) const {
  model::Gates g;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerMask& m = layers[l];
    const model::LayerShape& s = c.layers[l];
    g.head.push_back(s.has_attention && m.attention ? keep_gate(m.heads, s.num_heads, device) : torch::Tensor());
    g.kv_group.push_back(s.has_attention && m.attention && grouped(c) ? keep_gate(m.kv_groups, s.num_kv_heads, device)
                                                                      : torch::Tensor());
    g.ffn.push_back(s.has_mlp && m.mlp ? keep_gate(m.ffn, s.intermediate, device) : torch::Tensor());
    g.attn_block.push_back(s.has_attention ? switch_gate(m.attention, device) : torch::Tensor());
    g.mlp_block.push_back(s.has_mlp ? switch_gate(m.mlp, device) : torch::Tensor());
    g.layer.push_back(switch_gate(m.keep, device));
  }
  g.hidden = keep_gate(hidden, c.hidden_size, device);
  return g;
}

model::ModelConfig Masks::pruned_config(const model::ModelConfig& c) const {
  validate(c);
  model::ModelConfig out = c;
  out.layers.clear();
  out.sliding_layers.clear();
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerMask& m = layers[l];
    if (!m.keep) continue;
    model::LayerShape s = c.layers[l];
    s.has_attention = m.attention;
    s.has_mlp = m.mlp;
    if (m.attention) {
      s.num_heads = static_cast<int64_t>(m.heads.size());
      s.num_kv_heads = grouped(c) ? static_cast<int64_t>(m.kv_groups.size()) : s.num_heads;
    }
    if (m.mlp) s.intermediate = static_cast<int64_t>(m.ffn.size());
    out.layers.push_back(s);
    out.sliding_layers.push_back(c.sliding_layers[l]);
  }
  out.num_layers = static_cast<int64_t>(out.layers.size());
  out.hidden_size = static_cast<int64_t>(hidden.size());
  out.validate("pruned config");
  return out;
}

int64_t Masks::kept_layers() const {
  return std::count_if(layers.begin(), layers.end(), [](const LayerMask& m) { return m.keep; });
}

nlohmann::json Masks::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const LayerMask& m : layers)
    list.push_back({{"keep", m.keep}, {"attention", m.attention}, {"mlp", m.mlp}, {"heads", m.heads},
                    {"kv_groups", m.kv_groups}, {"ffn", m.ffn}});
  return {{"layers", list}, {"hidden", hidden}};
}

Masks Masks::from_json(const nlohmann::json& j, const model::ModelConfig& c, const std::string& source) {
  Masks m;
  try {
    for (const auto& l : j.at("layers")) {
      LayerMask lm;
      lm.keep = l.at("keep").get<bool>();
      lm.attention = l.at("attention").get<bool>();
      lm.mlp = l.at("mlp").get<bool>();
      lm.heads = l.at("heads").get<std::vector<int64_t>>();
      lm.kv_groups = l.at("kv_groups").get<std::vector<int64_t>>();
      lm.ffn = l.at("ffn").get<std::vector<int64_t>>();
      m.layers.push_back(lm);
    }
    m.hidden = j.at("hidden").get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw UserError(source + ": malformed masks (" + e.what() + "); expected {\"layers\": [{\"keep\", \"attention\", "
                    "\"mlp\", \"heads\", \"kv_groups\", \"ffn\"}...], \"hidden\": [...]}");
  }
  m.validate(c, source);
  return m;
}

namespace {
std::vector<int64_t> both(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}
}  // namespace

void intersect(Masks& into, const Masks& also) {
  for (size_t l = 0; l < into.layers.size() && l < also.layers.size(); ++l) {
    LayerMask& a = into.layers[l];
    const LayerMask& b = also.layers[l];
    a.keep = a.keep && b.keep;
    a.attention = a.attention && b.attention;
    a.mlp = a.mlp && b.mlp;
    a.heads = both(a.heads, b.heads);
    a.kv_groups = both(a.kv_groups, b.kv_groups);
    a.ffn = both(a.ffn, b.ffn);
  }
  into.hidden = both(into.hidden, also.hidden);
}

}  // namespace secateur::surgery
