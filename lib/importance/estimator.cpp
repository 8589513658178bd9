#include "importance/estimator.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "importance/estimators.h"
#include "util/error.h"
#include "util/strings.h"

namespace secateur::importance {

std::vector<std::string> estimator_names() {
  return {"magnitude", "head_gradient", "taylor", "activation", "fluctuation", "block_influence", "projection",
          "aggregated_activation"};
}

namespace {

// Applies the per-layer post-processing any estimator may ask for, after the estimator proper.
class PostProcessed : public Estimator {
 public:
  PostProcessed(std::unique_ptr<Estimator> inner, const EstimatorOptions& o)
      : inner_(std::move(inner)), normalize_(o.normalize), standardize_(o.standardize) {}
  std::string name() const override { return inner_->name(); }
  bool needs_data() const override { return inner_->needs_data(); }
  std::set<GroupKind> supported() const override { return inner_->supported(); }
  Scores estimate(const Context& ctx) override {
    Scores s = inner_->estimate(ctx);
    for (GroupKind k : ctx.kinds) {
      // Blocks and layers have one score per layer: per-layer statistics of them are meaningless.
      if (k == GroupKind::attn_block || k == GroupKind::mlp_block || k == GroupKind::layer) continue;
      if (normalize_) normalize_per_layer(s, k);
      if (standardize_) standardize_per_layer(s, k);
    }
    return s;
  }

 private:
  std::unique_ptr<Estimator> inner_;
  bool normalize_, standardize_;
};

std::unique_ptr<Estimator> make_plain(const EstimatorOptions& o) {
  auto bad = [&](const std::string& key, const std::string& value, const std::string& expected) {
    return UserError("estimator " + o.name + ": " + key + " '" + value + "' is not supported (expected " + expected + ")");
  };
  if (o.name == "magnitude") {
    if (o.norm != "l1" && o.norm != "l2") throw bad("norm", o.norm, "l1 or l2");
    return make_magnitude(o);
  }
  if (o.name == "head_gradient") return make_head_gradient(o);
  if (o.name == "taylor") {
    if (o.variant != "vector" && o.variant != "element") throw bad("variant", o.variant, "vector or element");
    return make_taylor(o);
  }
  if (o.name == "activation") return make_activation(o);
  if (o.name == "fluctuation") return make_fluctuation(o);
  if (o.name == "projection") return make_projection(o);
  if (o.name == "aggregated_activation") {
    for (const std::string* v : {&o.batch_aggregation, &o.sequence_aggregation})
      if (*v != "mean" && *v != "l2" && *v != "var")
        throw bad(v == &o.batch_aggregation ? "batch_aggregation" : "sequence_aggregation", *v, "mean, l2 or var");
    return make_aggregated_activation(o);
  }
  if (o.name == "block_influence") {
    if (o.metric != "bi" && o.metric != "angular") throw bad("metric", o.metric, "bi or angular");
    if (o.run_length < 1) throw bad("run_length", std::to_string(o.run_length), "an integer ≥ 1");
    return make_block_influence(o);
  }
  const std::string near = strings::closest(o.name, estimator_names());
  throw UserError("unknown estimator '" + o.name + "'" + (near.empty() ? "" : " — did you mean '" + near + "'?") +
                  " (estimators: " + strings::join(estimator_names(), ", ") + ")");
}

}  // namespace

std::unique_ptr<Estimator> make_estimator(const EstimatorOptions& o) {
  return std::make_unique<PostProcessed>(make_plain(o), o);
}

std::set<GroupKind> every_group_kind() {
  return {GroupKind::head, GroupKind::kv_group, GroupKind::ffn_neuron, GroupKind::hidden_dim,
          GroupKind::attn_block, GroupKind::mlp_block, GroupKind::layer};
}

int64_t heads_per_group(const model::ModelConfig& c, int64_t layer) {
  const model::LayerShape& s = c.layers[layer];
  return s.num_kv_heads > 0 ? s.num_heads / s.num_kv_heads : 1;
}

namespace {

// (kind, layer, index) → group, to find a kv group's query heads without rescanning.
class GroupIndex {
 public:
  explicit GroupIndex(const model::PrunableStructure& s) {
    for (const model::Group& g : s.groups) index_[{g.kind, g.layer, g.index}] = &g;
  }
  const model::Group* find(GroupKind kind, int64_t layer, int64_t index) const {
    const auto it = index_.find({kind, layer, index});
    return it == index_.end() ? nullptr : it->second;
  }

 private:
  std::map<std::tuple<GroupKind, int64_t, int64_t>, const model::Group*> index_;
};

std::vector<const model::ParamSlice*> unit_slices_with(const Context& ctx, const GroupIndex& index, const model::Group& g) {
  std::vector<const model::ParamSlice*> out;
  for (const model::ParamSlice& s : g.slices) out.push_back(&s);
  if (ctx.kv_units && g.kind == GroupKind::kv_group) {
    const int64_t per = heads_per_group(ctx.model.config(), g.layer);
    for (int64_t h = g.index * per; h < (g.index + 1) * per; ++h)
      if (const model::Group* head = index.find(GroupKind::head, g.layer, h))
        for (const model::ParamSlice& s : head->slices) out.push_back(&s);
  }
  return out;
}

}  // namespace

std::vector<const model::ParamSlice*> unit_slices(const Context& ctx, const model::Group& group) {
  // Callers loop over every group (125k on a 1.1B LLaMA): only a KV unit needs the index of its
  // heads, so building it for every call made those loops quadratic (minutes on a 1.1B model).
  if (!(ctx.kv_units && group.kind == GroupKind::kv_group)) {
    std::vector<const model::ParamSlice*> out;
    for (const model::ParamSlice& s : group.slices) out.push_back(&s);
    return out;
  }
  return unit_slices_with(ctx, GroupIndex(ctx.structure), group);
}

Scores sum_over_units(const Context& ctx, const ElementValue& element_value, double (*finish)(double)) {
  const GroupIndex index(ctx.structure);
  // (tensor, dim) → Σ of element_value over every other dim: a [size(dim)] float64 CPU vector.
  std::map<std::pair<std::string, int64_t>, torch::Tensor> reduced;
  auto reduction = [&](const model::ParamSlice& s) -> const torch::Tensor& {
    const auto key = std::make_pair(s.hf_param_name, s.dim);
    auto it = reduced.find(key);
    if (it != reduced.end()) return it->second;
    torch::Tensor v = element_value(s.hf_param_name, s.dim);
    if (v.defined()) {
      std::vector<int64_t> others;
      for (int64_t d = 0; d < v.dim(); ++d)
        if (d != s.dim) others.push_back(d);
      // An empty dim list would reduce everything, so 1-D tensors skip the sum.
      v = others.empty() ? v.to(torch::kDouble) : v.sum(others, false, torch::kDouble);
      v = v.to(torch::kCPU).contiguous();
    }
    return reduced.emplace(key, v).first->second;
  };
  std::map<GroupKind, std::map<int64_t, std::vector<double>>> values;
  for (const model::Group& g : ctx.structure.groups) {
    if (!ctx.kinds.count(g.kind)) continue;
    double sum = 0.0;
    for (const model::ParamSlice* s : unit_slices_with(ctx, index, g)) {
      const torch::Tensor& r = reduction(*s);
      if (!r.defined()) continue;
      const double* p = r.data_ptr<double>();
      for (int64_t i = s->start; i < s->start + s->length; ++i) sum += p[i];
    }
    auto& row = values[g.kind][g.layer];
    if (static_cast<int64_t>(row.size()) <= g.index) row.resize(g.index + 1, 0.0);
    row[g.index] = finish(sum);
  }
  Scores scores;
  for (auto& [kind, layers] : values)
    for (auto& [layer, row] : layers) scores.set(kind, layer, torch::tensor(row, torch::kDouble));
  return scores;
}

data::Batch example(const data::Batch& batch, int64_t row) {
  auto one = [&](const torch::Tensor& t) { return t.defined() ? t.narrow(0, row, 1) : t; };
  return {one(batch.input_ids), one(batch.attention_mask), one(batch.token_type_ids), one(batch.labels)};
}

namespace {

// One body for the const and non-const gate_slot.
template <class G>
auto slot_of(G& g, GroupKind kind, int64_t layer) -> decltype(&g.hidden) {
  decltype(&g.head) list = nullptr;
  switch (kind) {
    case GroupKind::hidden_dim: return &g.hidden;
    case GroupKind::head: list = &g.head; break;
    case GroupKind::kv_group: list = &g.kv_group; break;
    case GroupKind::ffn_neuron: list = &g.ffn; break;
    case GroupKind::attn_block: list = &g.attn_block; break;
    case GroupKind::mlp_block: list = &g.mlp_block; break;
    case GroupKind::layer: list = &g.layer; break;
  }
  if (list == nullptr || layer < 0 || layer >= static_cast<int64_t>(list->size())) return nullptr;
  return &(*list)[layer];
}

}  // namespace

torch::Tensor* gate_slot(model::Gates& g, GroupKind kind, int64_t layer) { return slot_of(g, kind, layer); }
const torch::Tensor* gate_slot(const model::Gates& g, GroupKind kind, int64_t layer) { return slot_of(g, kind, layer); }

model::Gates leaf_gates(const Context& ctx, bool requires_grad) {
  const model::ModelConfig& c = ctx.model.config();
  model::Gates g = model::Gates::ones(c, ctx.model.device());
  if (ctx.gates) {
    for (GroupKind kind : {GroupKind::head, GroupKind::kv_group, GroupKind::ffn_neuron, GroupKind::hidden_dim,
                           GroupKind::attn_block, GroupKind::mlp_block, GroupKind::layer})
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const torch::Tensor* src = gate_slot(*ctx.gates, kind, l);
        torch::Tensor* dst = gate_slot(g, kind, l);
        if (src && dst && src->defined() && dst->defined())
          *dst = src->detach().to(dst->device(), torch::kFloat).reshape(dst->sizes()).clone();
      }
  }
  if (requires_grad)
    for (GroupKind kind : ctx.kinds)
      for (int64_t l = 0; l < std::max<int64_t>(c.num_layers, 1); ++l) {
        torch::Tensor* t = gate_slot(g, kind, l);
        if (t && t->defined() && !t->requires_grad()) t->requires_grad_(true);
      }
  return g;
}

void check_request(const Estimator& e, const Context& ctx) {
  const std::set<GroupKind> ok = e.supported();
  std::vector<std::string> names;
  for (GroupKind k : ok) names.push_back(model::to_string(k));
  for (GroupKind k : ctx.kinds)
    if (!ok.count(k))
      throw UserError("estimator " + e.name() + " cannot score " + model::to_string(k) + " groups (it scores: " +
                      strings::join(names, ", ") + ")");
  if (e.needs_data() && ctx.batches.empty())
    throw UserError("estimator " + e.name() + " needs calibration data: add a `calibration:` section to the prune stage");
}

}  // namespace secateur::importance
