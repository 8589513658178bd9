#include "importance/scores.h"

#include <stdexcept>

namespace secateur::importance {

namespace {
int64_t slot(GroupKind kind, int64_t layer) { return kind == GroupKind::hidden_dim ? 0 : layer; }
}  // namespace

torch::Tensor Scores::of(GroupKind kind, int64_t layer) const {
  const auto it = per_layer.find(kind);
  const int64_t l = slot(kind, layer);
  if (it == per_layer.end() || l < 0 || l >= static_cast<int64_t>(it->second.size())) return {};
  return it->second[l];
}

void Scores::set(GroupKind kind, int64_t layer, torch::Tensor values) {
  auto& list = per_layer[kind];
  const int64_t l = slot(kind, layer);
  if (static_cast<int64_t>(list.size()) <= l) list.resize(l + 1);
  list[l] = values.detach().to(torch::kCPU, torch::kDouble).contiguous();
}

double Scores::at(const model::Group& g) const {
  const torch::Tensor t = of(g.kind, g.layer);
  if (!t.defined() || g.index >= t.numel())
    throw std::out_of_range("no " + model::to_string(g.kind) + " score for layer " + std::to_string(g.layer) +
                            " index " + std::to_string(g.index));
  return t.data_ptr<double>()[g.index];
}

nlohmann::json Scores::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [kind, layers] : per_layer) {
    nlohmann::json list = nlohmann::json::array();
    for (const torch::Tensor& t : layers) {
      if (!t.defined()) {
        list.push_back(nullptr);
        continue;
      }
      const double* p = t.data_ptr<double>();
      list.push_back(std::vector<double>(p, p + t.numel()));
    }
    j[model::to_string(kind)] = kind == GroupKind::hidden_dim && !list.empty() ? list[0] : list;
  }
  if (run_length > 0) j["layer_runs"] = {{"length", run_length}, {"angular_distance", layer_runs}};
  return j;
}

void normalize_per_layer(Scores& scores, GroupKind kind) {
  auto it = scores.per_layer.find(kind);
  if (it == scores.per_layer.end()) return;
  for (torch::Tensor& t : it->second) {
    if (!t.defined()) continue;
    const double norm = t.norm().item<double>();
    if (norm > 0) t = t / norm;
  }
}

void standardize_per_layer(Scores& scores, GroupKind kind) {
  auto it = scores.per_layer.find(kind);
  if (it == scores.per_layer.end()) return;
  for (torch::Tensor& t : it->second) {
    if (!t.defined()) continue;
    if (t.numel() < 2) {
      t = torch::zeros_like(t);
      continue;
    }
    // FLAP standardises with torch.std (Bessel-corrected); the ranking is the same either way.
    const double sd = t.std().item<double>();
    t = sd > 0 ? (t - t.mean()) / sd : torch::zeros_like(t);
  }
}

}  // namespace secateur::importance
