#pragma once
// Text datasets before tokenization: language-modelling corpora (documents) and sequence
// classification tasks (text, optional second text, label), with deterministic
// train / validation / test splits. Torch-free.
//
// Sources: the built-in King James Bible corpus and tasks (data/kjv.h), or files
// (data/readers.h): plain text (one document per non-empty line, as HF datasets' `text` loader),
// directories of them, JSONL, TSV and CSV.
#include <cstdint>
#include <string>
#include <vector>

namespace secateur::data {

enum class TaskKind { language_modeling, classification };
std::string to_string(TaskKind kind);

enum class Split { train, validation, test };
std::string to_string(Split split);
Split parse_split(const std::string& name);  // UserError naming the accepted names

struct Example {
  std::string text;
  std::string text_pair;  // second sequence of a pair task; empty for single sequences
  int32_t label = -1;     // class id (classification); -1 for language modelling
  std::string source;     // where it came from, for messages: "a.tsv:12", "Ge1:1"
};

struct Dataset {
  std::string name;  // "kjv", "kjv_genre", or the files it was read from
  TaskKind task = TaskKind::language_modeling;
  std::vector<Example> examples;         // in source order
  std::vector<std::string> label_names;  // class id → name (classification)
  bool has_pairs = false;
  // Built-in datasets fix their split (so that every paper-style table uses the same test set):
  // one Split per example. Empty → split_indices() draws the split from SplitOptions.
  std::vector<Split> fixed_split;

  // SHA-256 over the task, label names and every example's text, pair and label (not the name):
  // identical data gives an identical hash whatever files it came from; it keys the token cache.
  std::string content_hash() const;
};

struct SplitOptions {
  double validation = 0.05;  // fractions of the examples; train gets the rest
  double test = 0.05;
  uint64_t seed = 0;
};

// Indices of the examples in `split`, in source order (so that language-modelling text stays in
// reading order within a split). For datasets without a fixed split, a permutation drawn from
// options.seed assigns round(n·test) examples to test, round(n·validation) to validation and the
// rest to train: the three are disjoint, cover every example, and depend only on n and the seed.
// UserError when the fractions are out of range or a requested split ends up empty.
std::vector<size_t> split_indices(const Dataset& dataset, Split split, const SplitOptions& options);

// The permutation behind split_indices(): a Fisher–Yates shuffle driven by SplitMix64, written
// out so that it is identical on every platform and standard library (std::shuffle is not).
std::vector<size_t> seeded_permutation(size_t n, uint64_t seed);

// SplitMix64: a small, well-mixed generator for the deterministic choices lib/data makes.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t below(uint64_t bound);  // uniform in [0, bound), bound > 0, without modulo bias
 private:
  uint64_t state_;
};

}  // namespace secateur::data
