// A recipe that trains its tokenizer: `data: {tokenizer: {train: {...}}}` trains a SentencePiece
// model on the KJV train split, evaluates with it, and a second run reuses the cached model.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "util/fs.h"
#include "support/shell.h"

namespace fsys = secateur::fs;

namespace {

using Result = secateur::testing::ShellResult;

Result run(const std::string& env, const std::string& args) {
  const std::string cmd = env + " " + std::string(SECATEUR_BINARY) + " " + args;
  return secateur::testing::shell(cmd);
}

}  // namespace

TEST(TokenizerTrainingRecipe, TrainsCachesAndEvaluatesWithTheTrainedTokenizer) {
  const std::string dir = fsys::join(fsys::temp_directory(), "secateur-cli-spmtrain-" + std::to_string(::getpid()));
  fsys::remove_all(dir);
  fsys::create_directories(dir);
  const std::string recipe = fsys::join(dir, "r.yaml");
  // The llama_gqa fixture has 128 embedding rows: a 100-piece model fits it.
  fsys::write_atomic(recipe, "name: spm-train\nthreads: 1\nmodel: {path: " + std::string(SECATEUR_FIXTURES) +
                                 "/models/llama_gqa}\n"
                                 "data:\n  name: kjv\n  seq_len: 64\n"
                                 "  tokenizer: {train: {vocab_size: 100, model_type: bpe, max_sentences: 1500}}\n"
                                 "stages:\n  - eval: {split: test, max_tokens: 1024}\n");
  const std::string env = "SECATEUR_CACHE_DIR=" + fsys::join(dir, "cache");
  Result first = run(env, "run " + recipe + " --out " + fsys::join(dir, "a"));
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_NE(first.output.find("training a 100-piece bpe SentencePiece model on the train split of kjv"), std::string::npos)
      << first.output;
  const auto models = fsys::list_directory(fsys::join(dir, "cache/tokenizers"));
  ASSERT_EQ(std::count_if(models.begin(), models.end(), [](const std::string& n) { return n.size() > 6 && n.substr(n.size() - 6) == ".model"; }),
            1);
  auto report = nlohmann::json::parse(fsys::read_file(fsys::join(dir, "a/report.json")));
  EXPECT_EQ(report["status"], "completed");
  EXPECT_GT(report["stages"][0]["results"]["perplexity"].get<double>(), 1.0);

  Result second = run(env, "run " + recipe + " --out " + fsys::join(dir, "b"));
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_NE(second.output.find("data.tokenizer.train: reusing"), std::string::npos) << second.output;
  auto again = nlohmann::json::parse(fsys::read_file(fsys::join(dir, "b/report.json")));
  EXPECT_EQ(again["stages"][0]["results"]["perplexity"], report["stages"][0]["results"]["perplexity"]);
  fsys::remove_all(dir);
}
