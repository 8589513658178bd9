#include "data/source.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "data/kjv.h"
#include "data/loaders.h"
#include "util/fs.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strings.h"

namespace secateur::data {

std::shared_ptr<DataSource> DataSource::load(const DataConfig& config) {
  if (config.seq_len < 1) throw UserError("data.seq_len must be ≥ 1");
  if (config.name.empty() && config.files.files.empty())
    throw UserError("data: name a built-in dataset (data.name: " + strings::join(builtin_dataset_names(), ", ") +
                    ") or files (data.files: [...])");
  if (!config.name.empty() && !config.files.files.empty())
    throw UserError("data: give either data.name or data.files, not both");
  Dataset dataset = config.name.empty() ? read_files(config.files) : kjv_dataset(config.name);
  DataConfig resolved = config;
  if (config.train_tokenizer.vocab_size > 0)
    resolved.tokenizer = trained_tokenizer(dataset, config.splits, config.train_tokenizer, config.tokenize.cache_dir);
  if (resolved.tokenizer.empty()) throw UserError("data.tokenizer: no tokenizer given");
  std::shared_ptr<const Tokenizer> tokenizer = load_tokenizer(resolved.tokenizer);
  return std::make_shared<DataSource>(resolved, std::move(dataset), std::move(tokenizer));
}

DataSource::DataSource(DataConfig config, Dataset dataset, std::shared_ptr<const Tokenizer> tokenizer)
    : config_(std::move(config)), dataset_(std::move(dataset)), tokenizer_(std::move(tokenizer)) {
  if (dataset_.examples.empty()) throw UserError("dataset " + dataset_.name + " has no examples");
  tokens_ = tokenize_dataset(dataset_, *tokenizer_, config_.tokenize, &cache_status_);
  log::info("data " + dataset_.name + ": " + std::to_string(dataset_.examples.size()) + " examples, " +
            strings::human_count(static_cast<double>(tokens_.ids.size())) + " tokens (token cache " +
            to_string(cache_status_) + ")");
}

std::vector<size_t> DataSource::indices(Split split) const {
  auto out = split_indices(dataset_, split, config_.splits);
  if (out.empty())
    throw UserError("data: the " + to_string(split) + " split of " + dataset_.name + " is empty" +
                    (dataset_.fixed_split.empty() ? " (raise data.splits." + to_string(split) + ")" : ""));
  return out;
}

torch::Tensor DataSource::stream(Split split, int64_t max_tokens) const {
  return token_stream(tokens_, indices(split), max_tokens);
}

std::vector<Batch> DataSource::blocks(Split split, int64_t batch_size, int64_t max_blocks) const {
  const auto s = stream(split, max_blocks > 0 ? max_blocks * config_.seq_len : 0);
  if (s.size(0) < config_.seq_len)
    throw UserError("data: the " + to_string(split) + " split of " + dataset_.name + " has " + std::to_string(s.size(0)) +
                    " tokens, fewer than one block of data.seq_len " + std::to_string(config_.seq_len));
  return pack_blocks(s, config_.seq_len, batch_size, max_blocks);
}

std::vector<Batch> DataSource::masked_blocks(Split split, int64_t batch_size, uint64_t seed, int64_t max_blocks) const {
  MaskingOptions m;
  m.probability = config_.mlm_probability;
  m.mask_id = mask_id();
  m.vocab_size = tokenizer_->vocab_size();
  m.special_ids = special_ids();
  if (m.mask_id < 0)
    throw UserError("data.tokenizer " + config_.tokenizer + " has no mask token ([MASK] or <mask>): masked-LM evaluation needs one");
  auto out = blocks(split, batch_size, max_blocks);
  // One seed per batch, derived from the caller's: batch k's masks do not depend on batch sizes before it.
  for (size_t k = 0; k < out.size(); ++k) out[k] = mask_tokens(out[k], m, seed * 1000003u + k);
  return out;
}

std::vector<Batch> DataSource::labelled_batches(Split split, int64_t batch_size, int64_t max_examples) const {
  if (dataset_.task != TaskKind::classification)
    throw UserError("data: " + dataset_.name + " is a language-modelling dataset; a classifier needs a classification "
                    "dataset (data.name: kjv_testament, kjv_genre, kjv_books, or data.files with data.task: classification)");
  auto idx = indices(split);
  if (max_examples > 0 && static_cast<int64_t>(idx.size()) > max_examples) {
    // A seeded subset, kept in source order: the first examples of a file are often one class.
    auto perm = seeded_permutation(idx.size(), config_.splits.seed + 1);
    perm.resize(static_cast<size_t>(max_examples));
    std::sort(perm.begin(), perm.end());
    std::vector<size_t> subset;
    for (size_t p : perm) subset.push_back(idx[p]);
    idx = std::move(subset);
  }
  ClassificationBatching b;
  b.batch_size = batch_size;
  b.max_len = config_.seq_len;
  b.truncation = config_.truncation;
  b.pad_id = pad_id();
  for (const auto& id : {tokenizer_->special.sep, tokenizer_->special.eos})
    if (id) b.keep_last.push_back(*id);
  return classification_batches(dataset_, tokens_, idx, b);
}

int32_t DataSource::pad_id() const {
  if (tokenizer_->special.pad) return *tokenizer_->special.pad;
  if (tokenizer_->special.eos) return *tokenizer_->special.eos;
  return 0;
}

int32_t DataSource::mask_id() const {
  if (tokenizer_->special.mask) return *tokenizer_->special.mask;
  for (const char* spelling : {"[MASK]", "<mask>"})
    if (auto id = tokenizer_->token_to_id(spelling)) return *id;
  return -1;
}

std::vector<int32_t> DataSource::special_ids() const {
  std::vector<int32_t> out;
  const auto& s = tokenizer_->special;
  for (const auto& id : {s.pad, s.bos, s.eos, s.unk, s.cls, s.sep, s.mask})
    if (id && std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
  return out;
}

std::string DataSource::describe(Split split) const {
  return dataset_.name + " (" + to_string(split) + " split, " + std::to_string(split_indices(dataset_, split, config_.splits).size()) +
         " examples)";
}

namespace {

// What the trainer reads: one sentence per line, from the training split in source order.
std::string training_text(const Dataset& dataset, const SplitOptions& splits, int64_t max_sentences) {
  auto one_line = [](std::string t) {
    for (char& c : t)
      if (c == '\n' || c == '\r') c = ' ';
    return t;
  };
  std::string text;
  int64_t sentences = 0;
  for (size_t i : split_indices(dataset, Split::train, splits)) {
    if (max_sentences > 0 && sentences >= max_sentences) break;
    for (const std::string* t : {&dataset.examples[i].text, &dataset.examples[i].text_pair})
      if (!t->empty()) text += one_line(*t) + "\n";
    ++sentences;
  }
  return text;
}

}  // namespace

std::string trained_tokenizer(const Dataset& dataset, const SplitOptions& splits, const TokenizerTraining& t,
                              const std::string& cache_dir, bool* reused) {
  const std::string text = training_text(dataset, splits, t.max_sentences);
  if (text.empty()) throw UserError("data.tokenizer.train: the training split of " + dataset.name + " holds no text");
  std::map<std::string, std::string> options = t.options;
  options["character_coverage"] = strings::format_number(t.character_coverage);
  options["byte_fallback"] = t.byte_fallback ? "true" : "false";
  // Everything that decides the model: the exact text and every option (format version first).
  std::string key = "secateur.spm-train/1 corpus=" + sha256_hex(text) + " vocab_size=" + std::to_string(t.vocab_size) +
                    " model_type=" + t.model_type;
  for (const auto& [k, v] : options) key += " " + k + "=" + v;
  const std::string dir = fs::join(cache_dir.empty() ? default_cache_dir() : cache_dir, "tokenizers");
  const std::string name = sha256_hex(key).substr(0, 32);
  const std::string model = fs::join(dir, name + ".model");
  if (reused) *reused = fs::is_regular_file(model);
  if (fs::is_regular_file(model)) {
    log::info("data.tokenizer.train: reusing " + model);
    return model;
  }
  fs::create_directories(dir);
  const std::string tmp = fs::join(dir, name + ".tmp" + std::to_string(::getpid()));
  fs::write_atomic(tmp + ".txt", text);
  log::info("data.tokenizer.train: training a " + std::to_string(t.vocab_size) + "-piece " + t.model_type +
            " SentencePiece model on the train split of " + dataset.name);
  try {
    train_sentencepiece({tmp + ".txt"}, tmp, t.vocab_size, t.model_type, options);
  } catch (...) {
    fs::remove_all(tmp + ".txt");
    throw;
  }
  fs::remove_all(tmp + ".txt");
  fs::write_atomic(fs::join(dir, name + ".key"), key + "\n");
  // .vocab first: a reader that sees the .model sees a complete pair.
  if (std::rename((tmp + ".vocab").c_str(), fs::join(dir, name + ".vocab").c_str()) != 0 ||
      std::rename((tmp + ".model").c_str(), model.c_str()) != 0)
    throw UserError("data.tokenizer.train: cannot move the trained model into " + dir);
  return model;
}

std::vector<Batch> calibration_batches(const DataSource& data, const CalibrationOptions& options) {
  if (options.num_sequences < 1 || options.seq_len < 1 || options.batch_size < 1)
    throw UserError("calibration: num_sequences, seq_len and batch_size must be ≥ 1");
  if (data.task() == TaskKind::language_modeling)
    return sample_windows(data.stream(Split::train), options, "the train split of " + data.dataset().name);
  const auto idx = data.indices(Split::train);
  if (static_cast<int64_t>(idx.size()) < options.num_sequences)
    throw UserError("calibration asks for " + std::to_string(options.num_sequences) + " sequences but the train split of " +
                    data.dataset().name + " has " + std::to_string(idx.size()) + " examples");
  auto perm = seeded_permutation(idx.size(), options.seed);
  std::vector<size_t> chosen;
  for (int64_t k = 0; k < options.num_sequences; ++k) chosen.push_back(idx[perm[static_cast<size_t>(k)]]);
  ClassificationBatching b;
  b.batch_size = options.batch_size;
  b.max_len = options.seq_len;
  b.pad_id = data.pad_id();
  for (const auto& id : {data.tokenizer().special.sep, data.tokenizer().special.eos})
    if (id) b.keep_last.push_back(*id);
  return classification_batches(data.dataset(), data.tokens(), chosen, b);
}

}  // namespace secateur::data
