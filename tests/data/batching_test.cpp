// From token ids to batches: packing, dynamic padding, truncation, MLM masking, calibration
// sampling, and DataSource end to end on the built-in corpus.
#include <gtest/gtest.h>

#include <functional>

#include "data/batching.h"
#include "data/source.h"
#include "data/temp_dir.h"
#include "util/error.h"

using namespace secateur::data;
using secateur::UserError;

namespace {

const std::string kWordPiece = std::string(SECATEUR_FIXTURES) + "/data/kjv_wordpiece128";
const std::string kUnigram = std::string(SECATEUR_FIXTURES) + "/data/kjv_unigram128.model";

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

TokenizedDataset tokens_of(std::vector<std::vector<int32_t>> examples) {
  TokenizedDataset t;
  for (const auto& e : examples) {
    t.ids.insert(t.ids.end(), e.begin(), e.end());
    t.offsets.push_back(static_cast<int64_t>(t.ids.size()));
  }
  return t;
}

DataConfig config(const std::string& name, const std::string& tokenizer, const TempDir& cache) {
  DataConfig c;
  c.name = name;
  c.tokenizer = tokenizer;
  c.seq_len = 32;
  c.tokenize.cache_dir = cache.path;
  return c;
}

}  // namespace

TEST(Batching, StreamsAndPackedBlocks) {
  const auto t = tokens_of({{1, 2, 3}, {4, 5}, {6, 7, 8, 9}});
  const auto stream = token_stream(t, {2, 0});
  EXPECT_TRUE(stream.equal(torch::tensor({6, 7, 8, 9, 1, 2, 3}, torch::kLong)));
  EXPECT_EQ(token_stream(t, {0, 1, 2}, 4).size(0), 4);
  const auto blocks = pack_blocks(token_stream(t, {0, 1, 2}), 2, 3);  // 9 tokens → 4 blocks of 2, 1 dropped
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].input_ids.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(blocks[1].input_ids.sizes(), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(blocks[1].input_ids.equal(torch::tensor({{7, 8}}, torch::kLong)));
  EXPECT_EQ(blocks[0].attention_mask.sum().item<int64_t>(), 6);
  EXPECT_FALSE(blocks[0].labels.defined());
  EXPECT_EQ(pack_blocks(token_stream(t, {0, 1, 2}), 2, 3, 1).size(), 1u);
}

TEST(Batching, DynamicPaddingAndTruncation) {
  std::vector<Sequence> seqs = {{{2, 10, 11, 3}, {}, 1}, {{2, 12, 3}, {}, 0}};
  const Batch b = pad_sequences(seqs, 0);
  EXPECT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{2, 4}));  // padded to the longest, not to a fixed length
  EXPECT_TRUE(b.input_ids[1].equal(torch::tensor({2, 12, 3, 0}, torch::kLong)));
  EXPECT_TRUE(b.attention_mask.equal(torch::tensor({{1, 1, 1, 1}, {1, 1, 1, 0}}, torch::kLong)));
  EXPECT_TRUE(b.labels.equal(torch::tensor({1, 0}, torch::kLong)));
  EXPECT_FALSE(b.token_type_ids.defined());
  seqs[0].type_ids = {0, 0, 1, 1};
  EXPECT_TRUE(pad_sequences(seqs, 0).token_type_ids.equal(torch::tensor({{0, 0, 1, 1}, {0, 0, 0, 0}}, torch::kLong)));
  seqs[1].label = -1;
  EXPECT_FALSE(pad_sequences(seqs, 0).labels.defined());

  Sequence s{{2, 10, 11, 12, 13, 3}, {0, 0, 0, 1, 1, 1}, 0};
  EXPECT_TRUE(truncate(s, 4, {3}));
  EXPECT_EQ(s.ids, (std::vector<int32_t>{2, 10, 11, 3}));  // the final [SEP] survives
  EXPECT_EQ(s.type_ids, (std::vector<int32_t>{0, 0, 0, 1}));
  Sequence plain{{5, 6, 7}, {}, 0};
  EXPECT_TRUE(truncate(plain, 2, {3}));
  EXPECT_EQ(plain.ids, (std::vector<int32_t>{5, 6}));
  EXPECT_FALSE(truncate(plain, 2, {3}));

  Dataset d;
  d.task = TaskKind::classification;
  for (int i = 0; i < 5; ++i) d.examples.push_back({"x", "", i % 2, "f.tsv:" + std::to_string(i + 2)});
  const auto t = tokens_of({{2, 9, 3}, {2, 9, 9, 9, 9, 3}, {2, 3}, {2, 9, 3}, {2, 9, 9, 3}});
  ClassificationBatching o;
  o.batch_size = 2;
  o.max_len = 4;
  o.keep_last = {3};
  const auto batches = classification_batches(d, t, {0, 1, 2, 3, 4}, o);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].input_ids.sizes(), (std::vector<int64_t>{2, 4}));  // example 1 cut to 4
  EXPECT_EQ(batches[1].input_ids.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(batches[2].input_ids.sizes(), (std::vector<int64_t>{1, 4}));
  EXPECT_TRUE(batches[0].labels.equal(torch::tensor({0, 1}, torch::kLong)));
  o.truncation = false;
  EXPECT_EQ(error_of([&] { classification_batches(d, t, {0, 1}, o); }),
            "f.tsv:3: 6 tokens, longer than data.seq_len 4 (set data.truncation: true to cut long examples)");
}

TEST(Batching, MaskingFollowsBertsRecipe) {
  const int64_t rows = 64, cols = 256;
  Batch b;
  b.input_ids = torch::randint(10, 100, {rows, cols}, torch::kLong);
  b.input_ids.select(1, 0).fill_(2);  // [CLS]
  b.attention_mask = torch::ones({rows, cols}, torch::kLong);
  b.attention_mask.slice(1, cols - 16).fill_(0);  // padding
  MaskingOptions o;
  o.mask_id = 4;
  o.vocab_size = 128;
  o.special_ids = {0, 2, 3, 4};
  const Batch m = mask_tokens(b, o, 7);
  const auto selected = m.labels != -100;
  const double eligible = static_cast<double>(rows * (cols - 17));
  const double share = selected.sum().item<double>() / eligible;
  EXPECT_NEAR(share, 0.15, 0.01);
  EXPECT_EQ(selected.select(1, 0).sum().item<int64_t>(), 0);                // special never selected
  EXPECT_EQ(selected.slice(1, cols - 16).sum().item<int64_t>(), 0);         // padding never selected
  EXPECT_TRUE(m.labels.masked_select(selected).equal(b.input_ids.masked_select(selected)));
  const auto masked = (m.input_ids == 4) & selected;
  const auto kept = (m.input_ids == b.input_ids) & selected;
  const double n = selected.sum().item<double>();
  EXPECT_NEAR(masked.sum().item<double>() / n, 0.8, 0.02);
  EXPECT_NEAR(kept.sum().item<double>() / n, 0.1 + 0.1 / 128, 0.02);  // random draws can repeat the token
  EXPECT_TRUE((m.input_ids == b.input_ids).logical_or(selected).all().item<bool>());  // nothing else changes
  EXPECT_TRUE(mask_tokens(b, o, 7).input_ids.equal(m.input_ids));  // deterministic per seed
  EXPECT_FALSE(mask_tokens(b, o, 8).labels.equal(m.labels));
}

TEST(Batching, CalibrationWindowsAreDeterministicPerSeed) {
  const auto stream = torch::arange(1000, torch::kLong);
  CalibrationOptions o;
  o.num_sequences = 10;
  o.seq_len = 16;
  o.batch_size = 4;
  o.seed = 3;
  const auto a = sample_windows(stream, o, "s");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].input_ids.sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(a[2].input_ids.sizes(), (std::vector<int64_t>{2, 16}));
  const auto row = a[1].input_ids[0];
  EXPECT_TRUE(row.equal(torch::arange(row[0].item<int64_t>(), row[0].item<int64_t>() + 16, torch::kLong)));  // consecutive
  const auto again = sample_windows(stream, o, "s");
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(a[k].input_ids.equal(again[k].input_ids));
  o.seed = 4;
  EXPECT_FALSE(sample_windows(stream, o, "s")[0].input_ids.equal(a[0].input_ids));
  o.seq_len = 2000;
  EXPECT_EQ(error_of([&] { sample_windows(stream, o, "the train split of x"); }),
            "calibration needs sequences of 2000 tokens but the train split of x has only 1000 tokens");
}

TEST(DataSource, KjvLanguageModellingEndToEnd) {
  TempDir cache;
  const auto d = DataSource::load(config("kjv", kUnigram, cache));
  EXPECT_EQ(d->cache_status(), CacheStatus::miss);
  EXPECT_EQ(d->task(), TaskKind::language_modeling);
  const auto test = d->stream(Split::test);
  EXPECT_GT(test.size(0), 40000);
  EXPECT_EQ(test[0].item<int64_t>(), 1);  // <s> opens Genesis 20:1
  const auto blocks = d->blocks(Split::validation, 8, 3);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].input_ids.sizes(), (std::vector<int64_t>{3, 32}));
  CalibrationOptions o;
  o.num_sequences = 5;
  o.seq_len = 24;
  o.batch_size = 2;
  o.seed = 11;
  const auto calib = calibration_batches(*d, o);
  ASSERT_EQ(calib.size(), 3u);
  EXPECT_EQ(calib[0].input_ids.sizes(), (std::vector<int64_t>{2, 24}));
  EXPECT_FALSE(calib[0].labels.defined());
  const auto reloaded = DataSource::load(config("kjv", kUnigram, cache));
  EXPECT_EQ(reloaded->cache_status(), CacheStatus::hit);
  const auto again = calibration_batches(*reloaded, o);
  for (size_t k = 0; k < calib.size(); ++k) EXPECT_TRUE(calib[k].input_ids.equal(again[k].input_ids));
  EXPECT_EQ(error_of([&] { d->masked_blocks(Split::test, 8, 0); }),
            "data.tokenizer " + kUnigram + " has no mask token ([MASK] or <mask>): masked-LM evaluation needs one");
  EXPECT_NE(error_of([&] { d->labelled_batches(Split::test, 8); }).find("is a language-modelling dataset"), std::string::npos);
}

TEST(DataSource, KjvClassificationAndMaskedBlocks) {
  TempDir cache;
  const auto d = DataSource::load(config("kjv_testament", kWordPiece, cache));
  const auto batches = d->labelled_batches(Split::test, 16, 40);
  int64_t examples = 0;
  for (const auto& b : batches) {
    examples += b.size();
    EXPECT_LE(b.input_ids.size(1), 32);
    EXPECT_EQ(b.labels.size(0), b.size());
    // Every row starts with [CLS] and its last real token is [SEP] (kept through truncation).
    const auto lengths = b.attention_mask.sum(1);
    for (int64_t r = 0; r < b.size(); ++r) {
      EXPECT_EQ(b.input_ids[r][0].item<int64_t>(), 2);
      EXPECT_EQ(b.input_ids[r][lengths[r].item<int64_t>() - 1].item<int64_t>(), 3);
    }
  }
  EXPECT_EQ(examples, 40);
  CalibrationOptions o;
  o.num_sequences = 6;
  o.seq_len = 16;
  o.batch_size = 4;
  const auto calib = calibration_batches(*d, o);
  ASSERT_EQ(calib.size(), 2u);
  EXPECT_TRUE(calib[0].labels.defined());
  EXPECT_LE(calib[0].input_ids.size(1), 16);
  o.num_sequences = 1000000;
  EXPECT_EQ(error_of([&] { calibration_batches(*d, o); }),
            "calibration asks for 1000000 sequences but the train split of kjv_testament has 28045 examples");

  const auto lm = DataSource::load(config("kjv", kWordPiece, cache));
  const auto masked = lm->masked_blocks(Split::test, 4, 5, 8);
  ASSERT_EQ(masked.size(), 2u);
  EXPECT_GT((masked[0].labels != -100).sum().item<int64_t>(), 0);
  EXPECT_TRUE(masked[0].input_ids.eq(4).any().item<bool>());
}

TEST(DataSource, BadConfigurations) {
  TempDir cache;
  DataConfig c = config("", kUnigram, cache);
  EXPECT_EQ(error_of([&] { DataSource::load(c); }),
            "data: name a built-in dataset (data.name: kjv, kjv_testament, kjv_genre, kjv_books) or files (data.files: [...])");
  c.files.files = {cache.file("one.txt", "only one line\n")};
  c.splits = {0.0, 0.0, 0};
  const auto d = DataSource::load(c);
  EXPECT_EQ(error_of([&] { d->indices(Split::test); }), "data: the test split of " + c.files.files[0] + " is empty (raise data.splits.test)");
  EXPECT_EQ(error_of([&] { d->blocks(Split::train, 8); }),
            "data: the train split of " + c.files.files[0] + " has 12 tokens, fewer than one block of data.seq_len 32");
  c.tokenizer = cache / "no-tokenizer";
  EXPECT_EQ(error_of([&] { DataSource::load(c); }),
            c.tokenizer + ": no such file or directory (expected a tokenizer.json, a SentencePiece .model, or a directory holding one)");
}
