#pragma once
// The data a recipe's `data:` section names, loaded once: the dataset (built-in or files), its
// tokenizer, the token ids (through the on-disk cache) and the fixed or seeded split, with the
// batches every consumer needs — evaluation streams and batches, and calibration_batches() for
// importance estimators.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/batching.h"
#include "data/dataset.h"
#include "data/readers.h"
#include "data/token_cache.h"
#include "data/tokenizer.h"

namespace secateur::data {

// data.tokenizer.train: a SentencePiece model trained on the dataset's training split (through the
// secateur-spm companion) instead of a tokenizer file.
struct TokenizerTraining {
  int vocab_size = 0;                 // 0 = no training: DataConfig::tokenizer names a file
  std::string model_type = "unigram"; // unigram, bpe, char or word
  double character_coverage = 1.0;    // share of characters the vocabulary must cover
  bool byte_fallback = false;         // unknown characters become <0xNN> byte pieces
  int64_t max_sentences = 0;          // train on the first N training examples only (0 = all)
  std::map<std::string, std::string> options;  // further sentencepiece trainer flags, verbatim
};

struct DataConfig {
  std::string name;       // a built-in dataset (kjv, kjv_testament, ...); "" when files are given
  FileOptions files;      // used when name is empty (files.task says which task they hold)
  SplitOptions splits;    // ignored by built-ins, whose split is fixed
  std::string tokenizer;  // tokenizer.json, .model, or a directory holding one
  TokenizerTraining train_tokenizer;  // vocab_size > 0: train one instead (tokenizer is ignored)
  int64_t seq_len = 128;  // LM block / classification maximum length, in tokens
  int64_t batch_size = 8;
  bool truncation = true; // classification: cut longer examples (else UserError)
  double mlm_probability = 0.15;
  TokenizeOptions tokenize;
};

class DataSource {
 public:
  // Reads the dataset, loads the tokenizer and tokenizes (or reads the cache). UserError for
  // anything missing or malformed, naming the recipe key.
  static std::shared_ptr<DataSource> load(const DataConfig& config);
  // From parts already in memory (tests, callers with their own tokenizer).
  DataSource(DataConfig config, Dataset dataset, std::shared_ptr<const Tokenizer> tokenizer);

  const DataConfig& config() const { return config_; }
  const Dataset& dataset() const { return dataset_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const TokenizedDataset& tokens() const { return tokens_; }
  CacheStatus cache_status() const { return cache_status_; }
  TaskKind task() const { return dataset_.task; }

  // The split's example indices; UserError when it holds none.
  std::vector<size_t> indices(Split split) const;
  // Language modelling: the split's documents as one token stream (at most max_tokens when > 0).
  torch::Tensor stream(Split split, int64_t max_tokens = 0) const;
  // Language modelling: the split's stream in blocks of data.seq_len (at most max_blocks when > 0).
  std::vector<Batch> blocks(Split split, int64_t batch_size, int64_t max_blocks = 0) const;
  // Masked LM: blocks() with BERT masking drawn from `seed`; UserError when the tokenizer has no
  // mask token.
  std::vector<Batch> masked_blocks(Split split, int64_t batch_size, uint64_t seed, int64_t max_blocks = 0) const;
  // Classification: the split's examples (at most max_examples when > 0) with labels, padded per batch.
  std::vector<Batch> labelled_batches(Split split, int64_t batch_size, int64_t max_examples = 0) const;

  // The id padding uses: the tokenizer's pad, else its eos, else 0 (masked out either way).
  int32_t pad_id() const;
  // The tokenizer's mask token: special.mask, else a token spelled [MASK] or <mask>; -1 if none.
  int32_t mask_id() const;
  // Every special id the tokenizer declares (never masked, kept at the end of truncated inputs).
  std::vector<int32_t> special_ids() const;
  // What the data is, for reports: "kjv (test split, 1,234 examples)".
  std::string describe(Split split) const;

 private:
  DataConfig config_;
  Dataset dataset_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  TokenizedDataset tokens_;
  CacheStatus cache_status_ = CacheStatus::disabled;
};

// The SentencePiece model `training` describes, trained on the training split of `dataset` (one
// line per example: text, and text_pair on its own line; newlines inside a text become spaces),
// or found in the cache: <cache_dir>/tokenizers/<key>.model, where the key hashes the exact
// training text and every training option, so equal corpora and options train once (a sweep's
// points share one model) and any change trains anew. Written under a temporary name and renamed,
// so concurrent runs never read a half-written model. `reused` says whether the cache had it.
std::string trained_tokenizer(const Dataset& dataset, const SplitOptions& splits, const TokenizerTraining& training,
                              const std::string& cache_dir, bool* reused = nullptr);

// Calibration data for importance estimators: N sequences of L tokens from the training split,
// drawn from options.seed (the same seed gives the same batches).
//   language modelling  windows of L consecutive tokens at random offsets of the split's stream
//   classification      N examples drawn without replacement, cut to L tokens, padded per
//                       batch, with their labels
std::vector<Batch> calibration_batches(const DataSource& data, const CalibrationOptions& options);

}  // namespace secateur::data
