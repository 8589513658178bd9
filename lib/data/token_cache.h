#pragma once
// Tokenized datasets, cached on disk so that a sweep of runs over one corpus tokenizes it once.
// Torch-free.
//
// A cache file is keyed by the tokenizer's fingerprint, the dataset's content hash and the
// encoding mode; its name is a hash of that key and the key is stored inside it as well. Files
// are written atomically (fs::write_atomic) and carry a SHA-256 of their contents: a file that is
// truncated, altered, of another format version or for another key is rebuilt, never trusted.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/tokenizer.h"

namespace secateur::data {

// Every example's ids in one flat array: example i is ids[offsets[i], offsets[i+1]).
struct TokenizedDataset {
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;  // parallel to ids for pair tasks; empty otherwise

  size_t size() const { return offsets.size() - 1; }
  int64_t length(size_t i) const { return offsets[i + 1] - offsets[i]; }
  const int32_t* begin(size_t i) const { return ids.data() + offsets[i]; }
  int32_t max_id() const;  // -1 when empty
};

enum class CacheStatus { disabled, hit, miss, rebuilt };  // rebuilt: a corrupt or stale file was replaced
std::string to_string(CacheStatus status);

struct TokenizeOptions {
  std::string cache_dir;  // "" = default_cache_dir()
  bool cache = true;
  int threads = 0;        // 0 = hardware concurrency (at most 8)
};

// Encodes every example as HF's example scripts do:
//   language modelling  tokenizer(text): the model's template around each document (LLaMA's <s>,
//                       BERT's [CLS] … [SEP], nothing for GPT-2), documents then concatenated
//                       (run_clm / run_mlm's group_texts)
//   classification      tokenizer(text) or tokenizer(text, text_pair), with type ids for pairs
// Identical inputs give identical ids with or without the cache.
TokenizedDataset tokenize_dataset(const Dataset& dataset, const Tokenizer& tokenizer, const TokenizeOptions& options,
                                  CacheStatus* status = nullptr);

// $SECATEUR_CACHE_DIR, else $XDG_CACHE_HOME/secateur, else $HOME/.cache/secateur, else
// <temp>/secateur-cache; token files live in its tokens/ subdirectory.
std::string default_cache_dir();

// The cache file tokenize_dataset() uses for this dataset and tokenizer.
std::string token_cache_path(const std::string& cache_dir, const Dataset& dataset, const Tokenizer& tokenizer);

// The file format (exposed for tests). parse returns nullopt, with the reason in `why`, for any
// file that is not a complete, checksummed token file for exactly `key`.
std::string serialize_tokens(const TokenizedDataset& tokens, const std::string& key);
std::optional<TokenizedDataset> parse_tokens(const std::string& bytes, const std::string& key, std::string* why);

}  // namespace secateur::data
