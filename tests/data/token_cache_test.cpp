// The on-disk token cache: a miss writes, a hit reads the same ids back, and any damaged, stale or
// foreign file is rebuilt rather than trusted.
#include <gtest/gtest.h>

#include <fstream>

#include "data/kjv.h"
#include "data/readers.h"
#include "data/temp_dir.h"
#include "data/token_cache.h"
#include "util/fs.h"

using namespace secateur::data;
namespace fs = secateur::fs;

namespace {

const std::string kWordPiece = std::string(SECATEUR_FIXTURES) + "/data/kjv_wordpiece128";
const std::string kUnigram = std::string(SECATEUR_FIXTURES) + "/data/kjv_unigram128.model";

Dataset small_dataset() {
  Dataset d;
  d.name = "small";
  for (const char* t : {"In the beginning God created the heaven and the earth.", "Jesus wept.", "And God said, Let there be light."})
    d.examples.push_back({t, "", -1, ""});
  return d;
}

void overwrite(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

}  // namespace

TEST(TokenCache, MissThenHitGiveTheSameIds) {
  TempDir dir;
  const auto tokenizer = load_tokenizer(kWordPiece);
  const Dataset d = small_dataset();
  TokenizeOptions o;
  o.cache_dir = dir.path;
  CacheStatus status;
  const auto first = tokenize_dataset(d, *tokenizer, o, &status);
  EXPECT_EQ(status, CacheStatus::miss);
  const std::string path = token_cache_path(dir.path, d, *tokenizer);
  EXPECT_TRUE(fs::is_regular_file(path));
  EXPECT_EQ(fs::parent_path(path), dir / "tokens");
  ASSERT_EQ(first.size(), 3u);
  // Language modelling encodes each document with the model's template: [CLS] … [SEP].
  EXPECT_EQ(first.begin(1)[0], 2);
  EXPECT_EQ(first.begin(1)[first.length(1) - 1], 3);
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>(first.begin(1), first.begin(1) + first.length(1))), "jesus wept.");

  const auto second = tokenize_dataset(d, *tokenizer, o, &status);
  EXPECT_EQ(status, CacheStatus::hit);
  EXPECT_EQ(second.ids, first.ids);
  EXPECT_EQ(second.offsets, first.offsets);

  o.cache = false;
  const auto uncached = tokenize_dataset(d, *tokenizer, o, &status);
  EXPECT_EQ(status, CacheStatus::disabled);
  EXPECT_EQ(uncached.ids, first.ids);
}

TEST(TokenCache, KeyedByTokenizerAndContent) {
  TempDir dir;
  const auto wordpiece = load_tokenizer(kWordPiece);
  const auto unigram = load_tokenizer(kUnigram);
  Dataset d = small_dataset();
  EXPECT_NE(token_cache_path(dir.path, d, *wordpiece), token_cache_path(dir.path, d, *unigram));
  Dataset changed = d;
  changed.examples[1].text = "Jesus wept!";
  EXPECT_NE(token_cache_path(dir.path, d, *wordpiece), token_cache_path(dir.path, changed, *wordpiece));
  Dataset renamed = d;
  renamed.name = "other name";
  EXPECT_EQ(token_cache_path(dir.path, d, *wordpiece), token_cache_path(dir.path, renamed, *wordpiece));
  // LLaMA-style SentencePiece template: <s> before each document.
  TokenizeOptions o;
  o.cache_dir = dir.path;
  const auto ids = tokenize_dataset(d, *unigram, o);
  EXPECT_EQ(ids.begin(0)[0], 1);
  EXPECT_LT(ids.max_id(), 128);
}

TEST(TokenCache, CorruptTruncatedOrForeignFilesAreRebuilt) {
  TempDir dir;
  const auto tokenizer = load_tokenizer(kWordPiece);
  const Dataset d = small_dataset();
  TokenizeOptions o;
  o.cache_dir = dir.path;
  const auto reference = tokenize_dataset(d, *tokenizer, o);
  const std::string path = token_cache_path(dir.path, d, *tokenizer);
  const std::string good = fs::read_file(path);

  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x01;  // one bit inside the ids
  const std::vector<std::pair<std::string, std::string>> damaged = {
      {"flipped bit", flipped}, {"truncated", good.substr(0, good.size() - 7)}, {"empty", ""}, {"garbage", "not a cache file"}};
  for (const auto& [what, bytes] : damaged) {
    overwrite(path, bytes);
    CacheStatus status;
    const auto again = tokenize_dataset(d, *tokenizer, o, &status);
    EXPECT_EQ(status, CacheStatus::rebuilt) << what;
    EXPECT_EQ(again.ids, reference.ids) << what;
    EXPECT_EQ(fs::read_file(path), good) << what << ": the rebuilt file replaces the damaged one";
  }
  std::string why;
  EXPECT_FALSE(parse_tokens(flipped, "k", &why));
  EXPECT_EQ(why, "made for another tokenizer or dataset");
  TokenizedDataset t;
  t.ids = {5, 6, 7};
  t.offsets = {0, 2, 3};
  std::string bytes = serialize_tokens(t, "k");
  auto parsed = parse_tokens(bytes, "k", &why);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->ids, t.ids);
  EXPECT_EQ(parsed->offsets, t.offsets);
  bytes[bytes.size() - 70] ^= 0x10;
  EXPECT_FALSE(parse_tokens(bytes, "k", &why));
  EXPECT_EQ(why, "checksum mismatch");
  EXPECT_FALSE(parse_tokens(serialize_tokens(t, "k"), "other", &why));
  EXPECT_EQ(why, "made for another tokenizer or dataset");
}

TEST(TokenCache, PairsKeepTypeIdsAndAnUnwritableDirectoryOnlyWarns) {
  TempDir dir;
  const auto tokenizer = load_tokenizer(kWordPiece);
  Dataset d;
  d.name = "pairs";
  d.task = TaskKind::classification;
  d.has_pairs = true;
  d.label_names = {"a", "b"};
  d.examples.push_back({"the lord", "is my shepherd", 1, ""});
  TokenizeOptions o;
  o.cache_dir = dir.file("not-a-directory", "x");  // tokens/ cannot be created under a file
  CacheStatus status;
  const auto t = tokenize_dataset(d, *tokenizer, o, &status);
  EXPECT_EQ(status, CacheStatus::miss);
  ASSERT_EQ(t.type_ids.size(), t.ids.size());
  // [CLS] the lord [SEP] is my shepherd [SEP]: types 0 up to the first [SEP], 1 after.
  EXPECT_EQ(t.type_ids.front(), 0);
  EXPECT_EQ(t.type_ids.back(), 1);
  o.cache_dir = dir.path;
  tokenize_dataset(d, *tokenizer, o);
  const auto cached = tokenize_dataset(d, *tokenizer, o, &status);
  EXPECT_EQ(status, CacheStatus::hit);
  EXPECT_EQ(cached.type_ids, t.type_ids);
}

TEST(TokenCache, WholeKjvTokenizesOnceThenReadsBack) {
  TempDir dir;
  const auto tokenizer = load_tokenizer(kUnigram);
  const Dataset d = kjv_dataset("kjv");
  TokenizeOptions o;
  o.cache_dir = dir.path;
  CacheStatus status;
  const auto first = tokenize_dataset(d, *tokenizer, o, &status);
  EXPECT_EQ(status, CacheStatus::miss);
  EXPECT_EQ(first.size(), 31102u);
  EXPECT_GT(first.ids.size(), 31102u * 10);
  const auto second = tokenize_dataset(d, *tokenizer, o, &status);
  EXPECT_EQ(status, CacheStatus::hit);
  EXPECT_EQ(second.ids, first.ids);
}
