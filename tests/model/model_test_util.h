#pragma once
// Helpers shared by the model tests.
#include <torch/torch.h>

#include <string>

#include "io/weights.h"
#include "model/config.h"
#include "model/model.h"
#include "util/error.h"

namespace secateur::model::testing {

inline std::string fixture(const std::string& name) { return std::string(SECATEUR_FIXTURES) + "/models/" + name; }

struct Reference {
  torch::Tensor input_ids, attention_mask, logits, last_hidden_state;
};

inline Reference load_reference(const std::string& name) {
  const io::TensorMap t = io::load_safetensors(fixture(name) + "/reference.safetensors");
  return {t.at("input_ids"), t.at("attention_mask"), t.at("logits"), t.at("last_hidden_state")};
}

// Largest |a − b| over the positions the attention mask keeps (per-token outputs [B, T, ...]),
// or over everything for per-sequence outputs [B, L].
inline double max_diff_on_tokens(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  const torch::Tensor da = a.to(torch::kFloat32).cpu(), db = b.to(torch::kFloat32).cpu();
  if (da.sizes() != db.sizes()) return INFINITY;
  torch::Tensor diff = (da - db).abs();
  if (diff.dim() >= 3) diff = diff.index({mask.cpu().to(torch::kBool)});
  return diff.max().item<double>();
}

inline double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  return (a.to(torch::kFloat32).cpu() - b.to(torch::kFloat32).cpu()).abs().max().item<double>();
}

// A small config of any family from JSON text, for tests that need no fixture.
inline ModelConfig config_from(const std::string& json_text) {
  return ModelConfig::from_json(nlohmann::json::parse(json_text), "config.json");
}

}  // namespace secateur::model::testing

#include <ftw.h>
#include <stdlib.h>

#include <cstdio>
#include <set>
#include <stdexcept>

#include "model/prunable.h"

namespace secateur::model::testing {

// What surgery does, through the prunable view only: deletes the given groups' slices from an
// HF state dict. A slice covering a whole tensor deletes the tensor.
inline io::TensorMap remove_groups(const io::TensorMap& state, const std::vector<const Group*>& groups) {
  std::map<std::pair<std::string, int64_t>, std::set<int64_t>> doomed;  // (tensor, dim) → indices
  for (const Group* g : groups)
    for (const ParamSlice& s : g->slices)
      for (int64_t i = s.start; i < s.start + s.length; ++i) doomed[{s.hf_param_name, s.dim}].insert(i);
  io::TensorMap out = state;
  for (const auto& [key, indices] : doomed) {
    const auto& [name, dim] = key;
    if (!out.count(name)) continue;  // a whole tensor already deleted along another dim
    const torch::Tensor t = out.at(name);
    std::vector<int64_t> keep;
    for (int64_t i = 0; i < t.size(dim); ++i)
      if (!indices.count(i)) keep.push_back(i);
    if (keep.empty()) {
      out.erase(name);
      continue;
    }
    out[name] = t.index_select(dim, torch::tensor(keep, torch::kLong)).contiguous();
  }
  return out;
}

// A fresh empty directory under /tmp, removed with the object. POSIX calls on purpose: with the
// PyTorch 2.11 wheel, std::filesystem::remove_all binds to libtorch.so's own copy and crashes.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/secateur-model-test-XXXXXX";
    if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    nftw(path_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& str() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace secateur::model::testing
