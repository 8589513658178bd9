// tokenize_dataset's worker threads: any thread count gives exactly the ids of one thread, for a
// native tokenizer (HF WordPiece, shared read-only by the workers) and for SentencePiece (one
// companion process serving all workers through a mutex). The ThreadSanitizer build runs these
// (docs/security.md): they are the data-loader threads, and they need no LibTorch.
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "data/token_cache.h"
#include "data/tokenizer.h"

using namespace secateur::data;

namespace {

const std::string kWordPiece = std::string(SECATEUR_FIXTURES) + "/data/kjv_wordpiece128";
const std::string kUnigram = std::string(SECATEUR_FIXTURES) + "/data/kjv_unigram128.model";

// `n` sentences of Bible words in a seeded order (no corpus needed, so the ThreadSanitizer build
// runs this anywhere), with a pair task's second text on every example when `pairs`.
Dataset sentences(size_t n, bool pairs) {
  static const char* const kWords[] = {"In", "the", "beginning", "God", "created", "heaven", "and", "earth.",
                                       "Jesus", "wept;", "LORD", "said,", "Let", "there", "be", "light:",
                                       "unto", "them", "of", "Israel", "éléphant", "日本", "\xff"};
  SplitMix64 rng(42);
  const auto sentence = [&] {
    std::string text;
    for (uint64_t k = 0, words = 1 + rng.below(24); k < words; ++k)
      text += (k ? " " : "") + std::string(kWords[rng.below(sizeof kWords / sizeof *kWords)]);
    return text;
  };
  Dataset d;
  d.name = "sentences";
  d.has_pairs = pairs;
  for (size_t i = 0; i < n; ++i) d.examples.push_back({sentence(), pairs ? sentence() : "", -1, ""});
  return d;
}

TokenizedDataset tokenize(const Dataset& d, const Tokenizer& tokenizer, int threads) {
  TokenizeOptions o;
  o.cache = false;
  o.threads = threads;
  return tokenize_dataset(d, tokenizer, o);
}

void expect_same_for_every_thread_count(const Dataset& d, const Tokenizer& tokenizer) {
  const auto one = tokenize(d, tokenizer, 1);
  ASSERT_EQ(one.size(), d.examples.size());
  for (int threads : {2, 3, 8}) {
    const auto many = tokenize(d, tokenizer, threads);
    EXPECT_EQ(many.offsets, one.offsets) << threads << " threads";
    EXPECT_EQ(many.ids, one.ids) << threads << " threads";
    EXPECT_EQ(many.type_ids, one.type_ids) << threads << " threads";
  }
}

}  // namespace

// 2048 examples: chunks of 256, so 8 threads each get one.
TEST(ParallelTokenize, WordPieceIdsDoNotDependOnTheThreadCount) {
  const auto tokenizer = load_tokenizer(kWordPiece);
  expect_same_for_every_thread_count(sentences(2048, false), *tokenizer);
  expect_same_for_every_thread_count(sentences(2048, true), *tokenizer);
}

TEST(ParallelTokenize, SentencePieceCompanionServesEveryThread) {
  const auto tokenizer = load_tokenizer(kUnigram);
  expect_same_for_every_thread_count(sentences(2048, false), *tokenizer);
}
