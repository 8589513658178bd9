#include "data/batching.h"

#include <algorithm>

#include "util/error.h"

namespace secateur::data {

namespace {

torch::Tensor long_tensor(const std::vector<int64_t>& values, std::vector<int64_t> shape) {
  return torch::tensor(values, torch::kLong).reshape(shape);
}

}  // namespace

torch::Tensor token_stream(const TokenizedDataset& tokens, const std::vector<size_t>& indices, int64_t max_tokens) {
  std::vector<int64_t> out;
  int64_t total = 0;
  for (size_t i : indices) total += tokens.length(i);
  if (max_tokens > 0) total = std::min(total, max_tokens);
  out.reserve(static_cast<size_t>(total));
  for (size_t i : indices) {
    for (const int32_t* p = tokens.begin(i); p != tokens.begin(i) + tokens.length(i); ++p) {
      if (static_cast<int64_t>(out.size()) == total) break;
      out.push_back(*p);
    }
    if (static_cast<int64_t>(out.size()) == total) break;
  }
  return torch::tensor(out, torch::kLong);
}

std::vector<Batch> pack_blocks(const torch::Tensor& stream, int64_t block_len, int64_t batch_size, int64_t max_blocks) {
  if (block_len < 1 || batch_size < 1) throw std::invalid_argument("pack_blocks: block_len and batch_size must be ≥ 1");
  int64_t blocks = stream.size(0) / block_len;
  if (max_blocks > 0) blocks = std::min(blocks, max_blocks);
  auto all = stream.slice(0, 0, blocks * block_len).reshape({blocks, block_len});
  std::vector<Batch> out;
  for (int64_t b = 0; b < blocks; b += batch_size) {
    Batch batch;
    batch.input_ids = all.slice(0, b, std::min(blocks, b + batch_size)).clone();
    batch.attention_mask = torch::ones_like(batch.input_ids);
    out.push_back(std::move(batch));
  }
  return out;
}

Batch pad_sequences(const std::vector<Sequence>& sequences, int32_t pad_id) {
  if (sequences.empty()) throw std::invalid_argument("pad_sequences: no sequences");
  size_t longest = 0;
  bool types = false, labels = true;
  for (const auto& s : sequences) {
    longest = std::max(longest, s.ids.size());
    types = types || !s.type_ids.empty();
    labels = labels && s.label >= 0;
  }
  const auto rows = static_cast<int64_t>(sequences.size()), cols = static_cast<int64_t>(longest);
  std::vector<int64_t> ids(sequences.size() * longest, pad_id), mask(ids.size(), 0), type_ids(ids.size(), 0), label;
  for (size_t r = 0; r < sequences.size(); ++r) {
    const auto& s = sequences[r];
    for (size_t c = 0; c < s.ids.size(); ++c) {
      ids[r * longest + c] = s.ids[c];
      mask[r * longest + c] = 1;
      if (c < s.type_ids.size()) type_ids[r * longest + c] = s.type_ids[c];
    }
    label.push_back(s.label);
  }
  Batch b;
  b.input_ids = long_tensor(ids, {rows, cols});
  b.attention_mask = long_tensor(mask, {rows, cols});
  if (types) b.token_type_ids = long_tensor(type_ids, {rows, cols});
  if (labels) b.labels = long_tensor(label, {rows});
  return b;
}

bool truncate(Sequence& seq, int64_t max_len, const std::vector<int32_t>& keep_last) {
  if (static_cast<int64_t>(seq.ids.size()) <= max_len) return false;
  const size_t n = static_cast<size_t>(max_len);
  const bool keep = n >= 1 && std::find(keep_last.begin(), keep_last.end(), seq.ids.back()) != keep_last.end();
  auto cut = [&](std::vector<int32_t>& v) {
    if (v.empty()) return;
    const int32_t last = v.back();
    v.resize(n);
    if (keep) v.back() = last;
  };
  cut(seq.ids);
  cut(seq.type_ids);
  return true;
}

std::vector<Batch> classification_batches(const Dataset& dataset, const TokenizedDataset& tokens,
                                          const std::vector<size_t>& indices, const ClassificationBatching& o) {
  if (o.batch_size < 1 || o.max_len < 1) throw std::invalid_argument("classification_batches: sizes must be ≥ 1");
  std::vector<Batch> out;
  std::vector<Sequence> pending;
  for (size_t i : indices) {
    Sequence s;
    s.ids.assign(tokens.begin(i), tokens.begin(i) + tokens.length(i));
    if (!tokens.type_ids.empty())
      s.type_ids.assign(tokens.type_ids.begin() + tokens.offsets[i], tokens.type_ids.begin() + tokens.offsets[i + 1]);
    s.label = dataset.examples[i].label;
    if (static_cast<int64_t>(s.ids.size()) > o.max_len && !o.truncation)
      throw UserError(dataset.examples[i].source + ": " + std::to_string(s.ids.size()) + " tokens, longer than data.seq_len " +
                      std::to_string(o.max_len) + " (set data.truncation: true to cut long examples)");
    truncate(s, o.max_len, o.keep_last);
    pending.push_back(std::move(s));
    if (static_cast<int64_t>(pending.size()) == o.batch_size) {
      out.push_back(pad_sequences(pending, o.pad_id));
      pending.clear();
    }
  }
  if (!pending.empty()) out.push_back(pad_sequences(pending, o.pad_id));
  return out;
}

Batch mask_tokens(const Batch& batch, const MaskingOptions& o, uint64_t seed) {
  if (o.mask_id < 0 || o.vocab_size < 1) throw std::invalid_argument("mask_tokens: mask_id and vocab_size must be set");
  auto ids = batch.input_ids.to(torch::kLong).contiguous().clone();
  auto labels = torch::full_like(ids, -100);
  const auto mask = batch.attention_mask.defined() ? batch.attention_mask.to(torch::kLong).contiguous()
                                                   : torch::ones_like(ids);
  int64_t* id = ids.data_ptr<int64_t>();
  int64_t* label = labels.data_ptr<int64_t>();
  const int64_t* keep = mask.data_ptr<int64_t>();
  SplitMix64 rng(seed);
  constexpr double kScale = 1.0 / 18446744073709551616.0;  // 2^-64: a draw in [0, 1)
  for (int64_t k = 0; k < ids.numel(); ++k) {
    // One draw per position whether or not it is eligible, so the choice at a position does not
    // depend on which tokens before it were special.
    const double select = static_cast<double>(rng.next()) * kScale;
    const bool special = std::find(o.special_ids.begin(), o.special_ids.end(), id[k]) != o.special_ids.end();
    if (keep[k] == 0 || special || select >= o.probability) continue;
    label[k] = id[k];
    const double how = static_cast<double>(rng.next()) * kScale;
    if (how < 0.8) id[k] = o.mask_id;
    else if (how < 0.9) id[k] = static_cast<int64_t>(rng.below(static_cast<uint64_t>(o.vocab_size)));
  }
  Batch out = batch;
  out.input_ids = ids;
  out.labels = labels;
  return out;
}

std::vector<Batch> sample_windows(const torch::Tensor& stream, const CalibrationOptions& o, const std::string& what) {
  if (o.num_sequences < 1 || o.seq_len < 1 || o.batch_size < 1)
    throw UserError("calibration: num_sequences, seq_len and batch_size must be ≥ 1");
  const int64_t length = stream.size(0);
  if (length < o.seq_len)
    throw UserError("calibration needs sequences of " + std::to_string(o.seq_len) + " tokens but " + what + " has only " +
                    std::to_string(length) + " tokens");
  SplitMix64 rng(o.seed);
  std::vector<torch::Tensor> rows;
  std::vector<Batch> out;
  for (int64_t n = 0; n < o.num_sequences; ++n) {
    const auto start = static_cast<int64_t>(rng.below(static_cast<uint64_t>(length - o.seq_len + 1)));
    rows.push_back(stream.slice(0, start, start + o.seq_len));
    if (static_cast<int64_t>(rows.size()) == o.batch_size || n + 1 == o.num_sequences) {
      Batch b;
      b.input_ids = torch::stack(rows).clone();
      b.attention_mask = torch::ones_like(b.input_ids);
      out.push_back(std::move(b));
      rows.clear();
    }
  }
  return out;
}

}  // namespace secateur::data
