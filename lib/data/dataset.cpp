#include "data/dataset.h"

#include <cmath>
#include <cstdio>

#include "data/loaders.h"
#include "util/error.h"

namespace secateur::data {

std::string to_string(TaskKind kind) { return kind == TaskKind::classification ? "classification" : "language_modeling"; }

std::string to_string(Split split) {
  switch (split) {
    case Split::train: return "train";
    case Split::validation: return "validation";
    case Split::test: return "test";
  }
  return "?";
}

Split parse_split(const std::string& name) {
  if (name == "train") return Split::train;
  if (name == "validation") return Split::validation;
  if (name == "test") return Split::test;
  throw UserError("unknown split '" + name + "' (expected train, validation or test)");
}

std::string Dataset::content_hash() const {
  // Length-prefixed fields, so that no two different datasets serialise to the same bytes.
  // The name is left out: the same text read from differently named files shares its cache.
  std::string bytes = "secateur dataset v1\n";
  auto field = [&](const std::string& s) {
    bytes += std::to_string(s.size());
    bytes += ':';
    bytes += s;
  };
  field(to_string(task));
  for (const auto& l : label_names) field(l);
  bytes += '\n';
  for (const auto& e : examples) {
    field(e.text);
    field(e.text_pair);
    bytes += std::to_string(e.label);
    bytes += '\n';
  }
  return sha256_hex(bytes);
}

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t bound) {
  // Rejection sampling: draws in the incomplete last block of size bound would favour small values.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t x;
  do x = next();
  while (x >= limit);
  return x % bound;
}

std::vector<size_t> seeded_permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  SplitMix64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng.below(i)]);
  return p;
}

namespace {

std::string fraction_text(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", f);
  return buf;
}

}  // namespace

std::vector<size_t> split_indices(const Dataset& dataset, Split split, const SplitOptions& options) {
  const size_t n = dataset.examples.size();
  if (n == 0) throw UserError("dataset " + dataset.name + " has no examples");
  std::vector<size_t> out;
  if (!dataset.fixed_split.empty()) {
    for (size_t i = 0; i < n; ++i)
      if (dataset.fixed_split[i] == split) out.push_back(i);
    return out;
  }
  const double v = options.validation, t = options.test;
  if (!(v >= 0 && t >= 0 && v + t < 1))
    throw UserError("data.splits: validation " + fraction_text(v) + " and test " + fraction_text(t) +
                    " must be ≥ 0 and leave a training share (validation + test < 1)");
  const size_t n_test = static_cast<size_t>(std::llround(t * static_cast<double>(n)));
  const size_t n_validation = static_cast<size_t>(std::llround(v * static_cast<double>(n)));
  if (n_test + n_validation >= n)
    throw UserError("dataset " + dataset.name + " has " + std::to_string(n) + " examples: too few for a validation share of " +
                    fraction_text(v) + " and a test share of " + fraction_text(t) + " with any left to train on");
  // Position in the permutation decides the split: [0, n_test) test, then validation, then train.
  const auto perm = seeded_permutation(n, options.seed);
  std::vector<Split> which(n, Split::train);
  for (size_t k = 0; k < n_test; ++k) which[perm[k]] = Split::test;
  for (size_t k = n_test; k < n_test + n_validation; ++k) which[perm[k]] = Split::validation;
  for (size_t i = 0; i < n; ++i)
    if (which[i] == split) out.push_back(i);
  return out;
}

}  // namespace secateur::data
