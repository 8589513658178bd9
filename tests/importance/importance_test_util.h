#pragma once
// Helpers for the estimator tests: fixture models, their reference batch, and a tap that keeps
// every activation so tests can recompute each estimator's formula by hand.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "data/batch.h"
#include "importance/estimator.h"
#include "io/weights.h"
#include "model/model.h"
#include "model/prunable.h"
#include "model/tap.h"

namespace secateur::importance::testing {

inline std::string fixture(const std::string& name) { return std::string(SECATEUR_FIXTURES) + "/models/" + name; }

inline std::shared_ptr<model::Model> load(const std::string& name, torch::ScalarType dtype = torch::kFloat) {
  torch::set_num_threads(2);
  model::LoadOptions o;
  o.dtype = dtype;
  auto m = model::load_model(fixture(name), o);
  m->eval();
  return m;
}

// The fixture's reference batch ([2, 12]; row 1 right-padded by 4), as calibration data.
inline data::Batch reference_batch(const std::string& name) {
  const io::TensorMap t = io::load_safetensors(fixture(name) + "/reference.safetensors");
  return {t.at("input_ids"), t.at("attention_mask"), {}, {}};
}

// Keeps a copy of every projection input (keyed by weight name) and block output.
class Recorder : public model::Tap {
 public:
  explicit Recorder(const model::Model& m) {
    for (const std::string& n : m.hf_names()) names_[m.hf_parameter(n).unsafeGetTensorImpl()] = n;
  }
  void projection_input(const torch::Tensor& w, int64_t in_dim, const torch::Tensor& x) override {
    const auto it = names_.find(w.unsafeGetTensorImpl());
    if (it != names_.end()) inputs[it->second] = x.detach().clone();
  }
  void block_output(int64_t layer, bool attention, const torch::Tensor& x) override {
    blocks[{layer, attention}] = x.detach().clone();
  }
  std::map<std::string, torch::Tensor> inputs;
  std::map<std::pair<int64_t, bool>, torch::Tensor> blocks;

 private:
  std::map<const void*, std::string> names_;
};

// Every projection input and block output of one forward pass over `b`.
inline Recorder record(model::Model& m, const data::Batch& b) {
  Recorder r(m);
  torch::NoGradGuard no_grad;
  model::TapScope scope(&r);
  m.forward(b.input_ids, b.attention_mask);
  return r;
}

// The real-token rows of a [B, T, n] activation as [N, n].
inline torch::Tensor real_tokens(const torch::Tensor& x, const torch::Tensor& mask) {
  return x.index({mask.ne(0)}).to(torch::kDouble);
}

inline Scores run(const std::string& estimator, model::Model& m, const std::vector<data::Batch>& batches,
                  std::set<model::GroupKind> kinds, EstimatorOptions options = {}, bool kv_units = false,
                  const model::Gates* gates = nullptr) {
  options.name = estimator;
  const model::PrunableStructure s = model::prunable_structure(m);
  Context ctx{m, s, batches, gates, std::move(kinds), kv_units};
  return make_estimator(options)->estimate(ctx);
}

inline const model::Group& group(const model::PrunableStructure& s, model::GroupKind kind, int64_t layer, int64_t index) {
  for (const model::Group& g : s.groups)
    if (g.kind == kind && g.layer == layer && g.index == index) return g;
  throw std::out_of_range("no such group");
}

}  // namespace secateur::importance::testing
