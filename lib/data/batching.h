#pragma once
// From token ids to model batches: language-modelling streams and fixed-length blocks, dynamic
// padding with attention masks, truncation, masked-LM masking and calibration sampling. Every
// random choice comes from SplitMix64 seeded by the caller, so results are identical on every
// platform and LibTorch version.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/dataset.h"
#include "data/token_cache.h"

namespace secateur::data {

// The examples `indices` of `tokens` concatenated in order as one 1-D int64 stream (HF run_clm's
// concatenation), cut to `max_tokens` when that is > 0.
torch::Tensor token_stream(const TokenizedDataset& tokens, const std::vector<size_t>& indices, int64_t max_tokens = 0);

// Consecutive blocks of `block_len` tokens (the last partial block is dropped, as run_clm's
// group_texts does), `batch_size` blocks per batch; attention masks all ones, labels undefined.
// At most `max_blocks` blocks when that is > 0.
std::vector<Batch> pack_blocks(const torch::Tensor& stream, int64_t block_len, int64_t batch_size, int64_t max_blocks = 0);

// One example of a batch before padding.
struct Sequence {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;  // empty = all zeros
  int64_t label = -1;             // classification label; -1 = none
};

// Right-pads to the longest sequence (dynamic padding) with `pad_id`; attention_mask 1 on tokens,
// 0 on padding; token_type_ids when any sequence has them; labels [B] when every sequence has one.
Batch pad_sequences(const std::vector<Sequence>& sequences, int32_t pad_id);

// Cuts `seq` to `max_len` tokens. A sequence that ends in one of `keep_last` (the [SEP] / </s>
// its template appended) keeps that token, so truncated inputs still look like the model's
// inputs. Returns whether it cut anything.
bool truncate(Sequence& seq, int64_t max_len, const std::vector<int32_t>& keep_last);

struct ClassificationBatching {
  int64_t batch_size = 8;
  int64_t max_len = 128;
  bool truncation = true;              // false: a longer example is a UserError naming it
  int32_t pad_id = 0;
  std::vector<int32_t> keep_last;      // see truncate()
};

// The examples `indices` (in that order) in batches of batch_size, padded per batch.
std::vector<Batch> classification_batches(const Dataset& dataset, const TokenizedDataset& tokens,
                                          const std::vector<size_t>& indices, const ClassificationBatching& options);

// BERT's masking (HF DataCollatorForLanguageModeling): each token that is not special or padding
// is selected with `probability`; a selected token becomes mask_id with probability 0.8, a
// uniformly random id in [0, vocab_size) with probability 0.1, and stays itself otherwise.
// labels = the original id at selected positions, -100 elsewhere.
struct MaskingOptions {
  double probability = 0.15;
  int32_t mask_id = -1;
  int64_t vocab_size = 0;
  std::vector<int32_t> special_ids;  // never selected
};
Batch mask_tokens(const Batch& batch, const MaskingOptions& options, uint64_t seed);

struct CalibrationOptions {
  int64_t num_sequences = 128;  // N
  int64_t seq_len = 128;        // L
  int64_t batch_size = 8;
  uint64_t seed = 0;
};

// N windows of L consecutive tokens at uniformly drawn offsets of `stream` (the sampling of
// SparseGPT, Wanda and LLM-Pruner), batch_size per batch; labels undefined. UserError when the
// stream is shorter than L.
std::vector<Batch> sample_windows(const torch::Tensor& stream, const CalibrationOptions& options,
                                  const std::string& what);

}  // namespace secateur::data
