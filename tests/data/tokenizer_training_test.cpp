// data.tokenizer.train: a SentencePiece model trained on a dataset's train split through the
// secateur-spm companion, cached by (training text, options), and used by DataSource.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "data/kjv.h"
#include "data/source.h"
#include "data/temp_dir.h"
#include "util/fs.h"

using namespace secateur;

namespace {

long long mtime_ns(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

data::TokenizerTraining tiny() {
  data::TokenizerTraining t;
  t.vocab_size = 100;
  t.model_type = "unigram";
  t.max_sentences = 1500;  // the first 1,500 train verses: seconds to train
  return t;
}

}  // namespace

TEST(TokenizerTraining, TrainsOnTheTrainSplitAndCachesByCorpusAndOptions) {
  TempDir cache;
  const data::Dataset kjv = data::kjv_dataset("kjv");
  bool reused = true;
  const std::string model = data::trained_tokenizer(kjv, {}, tiny(), cache.path, &reused);
  EXPECT_FALSE(reused);
  ASSERT_TRUE(fs::is_regular_file(model));
  EXPECT_EQ(fs::parent_path(model), fs::join(cache.path, "tokenizers"));
  const auto tok = data::load_tokenizer(model);
  EXPECT_EQ(tok->vocab_size(), 100);
  const std::string verse = "And God said, Let there be light: and there was light.";
  EXPECT_EQ(tok->decode(tok->encode(verse, false)), verse);

  // The same corpus and options: the cached file, untouched.
  const long long before = mtime_ns(model);
  EXPECT_EQ(data::trained_tokenizer(kjv, {}, tiny(), cache.path, &reused), model);
  EXPECT_TRUE(reused);
  EXPECT_EQ(mtime_ns(model), before);

  // Any option or a different corpus: another model.
  auto bpe = tiny();
  bpe.model_type = "bpe";
  const std::string bpe_model = data::trained_tokenizer(kjv, {}, bpe, cache.path, &reused);
  EXPECT_FALSE(reused);
  EXPECT_NE(bpe_model, model);
  auto fewer = tiny();
  fewer.max_sentences = 1000;
  EXPECT_NE(data::trained_tokenizer(kjv, {}, fewer, cache.path), model);
  auto flags = tiny();
  flags.options["split_digits"] = "true";
  EXPECT_NE(data::trained_tokenizer(kjv, {}, flags, cache.path), model);
  // Nothing half-written is left behind.
  for (const auto& name : fs::list_directory(fs::join(cache.path, "tokenizers")))
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
}

TEST(TokenizerTraining, DataSourceUsesTheTrainedModel) {
  TempDir cache;
  data::DataConfig config;
  config.name = "kjv";
  config.train_tokenizer = tiny();
  config.tokenize.cache_dir = cache.path;
  config.seq_len = 32;
  const auto source = data::DataSource::load(config);
  EXPECT_EQ(source->tokenizer().vocab_size(), 100);
  EXPECT_EQ(fs::parent_path(source->config().tokenizer), fs::join(cache.path, "tokenizers"));
  EXPECT_LT(source->tokens().max_id(), 100);
  EXPECT_GT(source->tokens().ids.size(), 100000u);  // the whole corpus, tokenized with it
}
