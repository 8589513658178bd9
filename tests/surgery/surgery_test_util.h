#pragma once
// Random masks for any model, temp directories and fixture loading for the surgery tests.
#include <ftw.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>

#include "io/weights.h"
#include "model/model.h"
#include "surgery/masks.h"

namespace secateur::surgery::testing {

inline std::string fixture(const std::string& name) { return std::string(SECATEUR_FIXTURES) + "/models/" + name; }

struct Reference {
  torch::Tensor input_ids, attention_mask;
};
inline Reference reference(const std::string& name) {
  const io::TensorMap t = io::load_safetensors(fixture(name) + "/reference.safetensors");
  return {t.at("input_ids"), t.at("attention_mask")};
}

// `k` distinct indices of 0..n−1, ascending.
inline std::vector<int64_t> pick(std::mt19937_64& rng, int64_t n, int64_t k) {
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(k);
  std::sort(all.begin(), all.end());
  return all;
}

struct MaskOptions {
  bool blocks = false;  // may drop attention / MLP blocks and one layer
  bool hidden = false;  // may drop hidden dims
};

// Random masks that any family can hold: GQA groups keep equal numbers of query heads.
inline Masks random_masks(const model::ModelConfig& c, uint64_t seed, MaskOptions o = {}) {
  std::mt19937_64 rng(seed);
  auto coin = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto between = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Masks m = Masks::keep_all(c);
  const bool grouped = c.family == model::Family::llama;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerMask& lm = m.layers[l];
    const model::LayerShape& s = c.layers[l];
    if (s.has_attention) {
      const int64_t groups = grouped ? s.num_kv_heads : s.num_heads;
      const int64_t per = s.num_heads / groups;
      lm.kv_groups = pick(rng, groups, between(1, groups));
      const int64_t keep_per = between(1, per);
      lm.heads.clear();
      for (int64_t g : lm.kv_groups)
        for (int64_t h : pick(rng, per, keep_per)) lm.heads.push_back(g * per + h);
      if (!grouped) {
        lm.heads = pick(rng, s.num_heads, between(1, s.num_heads));
        lm.kv_groups = lm.heads;
      }
    }
    if (s.has_mlp) lm.ffn = pick(rng, s.intermediate, between(1, s.intermediate));
    if (o.blocks) {
      if (coin(0.3)) lm.attention = false;
      if (coin(0.3)) lm.mlp = false;
    }
  }
  if (o.blocks) m.layers[between(0, c.num_layers - 1)].keep = false;
  if (o.hidden) m.hidden = pick(rng, c.hidden_size, between(c.hidden_size / 2, c.hidden_size - 1));
  return m;
}

// A fresh empty directory, removed with the object (POSIX: std::filesystem crashes under the
// PyTorch 2.11 wheel).
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/secateur-surgery-test-XXXXXX";
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

 private:
  std::string path_;
};

inline double max_diff_on_tokens(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  if (a.sizes() != b.sizes()) return INFINITY;
  torch::Tensor d = (a.to(torch::kFloat) - b.to(torch::kFloat)).abs();
  if (d.dim() >= 3) d = d.index({mask.ne(0)});  // padded positions are undefined in both
  return d.max().item<double>();
}

}  // namespace secateur::surgery::testing
