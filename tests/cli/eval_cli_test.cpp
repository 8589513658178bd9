// The `eval` stage and the `data:` section through the secateur binary, on the fixture models
// with the KJV tokenizers of tests/fixtures/data: what each kind of model records, and the exact
// message for each mistake a recipe can make.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "util/fs.h"
#include "support/shell.h"

namespace fsys = secateur::fs;

namespace {

using Result = secateur::testing::ShellResult;

Result run(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + std::string(SECATEUR_BINARY) + " " + args;
  return secateur::testing::shell(cmd);
}

const std::string kFixtures = SECATEUR_FIXTURES;
const std::string kUnigram = kFixtures + "/data/kjv_unigram128.model";
const std::string kWordPiece = kFixtures + "/data/kjv_wordpiece128";

// A scratch directory per test: recipes, run directories and the token cache.
struct Scratch {
  std::string dir;
  Scratch() {
    std::string tmpl = fsys::join(fsys::temp_directory(), "secateur-eval-cli-XXXXXX");
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
  }
  ~Scratch() { fsys::remove_all(dir); }
  std::string recipe(const std::string& name, const std::string& text) const {
    const std::string p = fsys::join(dir, name + ".yaml");
    std::ofstream(p) << text;
    return p;
  }
  std::string cache() const { return fsys::join(dir, "cache"); }
  nlohmann::json report(const std::string& run_dir) const {
    return nlohmann::json::parse(fsys::read_file(fsys::join(run_dir, "report.json")));
  }
};

std::string data_section(const Scratch& s, const std::string& name, const std::string& tokenizer, int seq_len) {
  return "data: {name: " + name + ", tokenizer: " + tokenizer + ", seq_len: " + std::to_string(seq_len) +
         ", batch_size: 4, cache_dir: " + s.cache() + "}\n";
}

}  // namespace

TEST(EvalCli, CausalLmPerplexityWithItsProtocolAndLatency) {
  Scratch s;
  const std::string recipe = s.recipe(
      "causal", "name: eval-causal\nmodel: {path: " + kFixtures + "/models/llama_gqa}\n" + data_section(s, "kjv", kUnigram, 32) +
                    "stages:\n  - inspect: {}\n"
                    "  - eval: {split: test, stride: 16, max_tokens: 2000, latency: {batch_size: 2, repeats: 2, warmup: 1},"
                    " note: untrained fixture}\n");
  const std::string out = fsys::join(s.dir, "run");
  auto r = run("run " + recipe + " --out " + out + " --threads 1");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto report = s.report(out);
  const auto results = report["stages"][1]["results"];
  const double ppl = results["perplexity"].get<double>();
  EXPECT_TRUE(std::isfinite(ppl) && ppl > 1) << results.dump();
  EXPECT_NEAR(std::log(ppl), results["loss"].get<double>(), 1e-9);
  EXPECT_EQ(results["tokens_scored"], 1999);  // every token but the first has a prediction
  EXPECT_EQ(results["protocol"], "sliding window, context 32, stride 16, 1999 tokens");
  EXPECT_EQ(results["split"], "test");
  EXPECT_EQ(results["dataset"], "kjv (test split, 1573 examples)");
  EXPECT_EQ(results["params"], report["stages"][0]["results"]["params"]);  // as inspect counts them
  EXPECT_GT(results["flops_per_token"].get<double>(), 0);
  EXPECT_EQ(results["flops_seq_len"], 32);
  EXPECT_EQ(results["per_layer"].size(), 2u);
  EXPECT_EQ(results["per_layer"][0]["heads"], 6);
  EXPECT_GT(results["tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(results["latency_seq_len"], 32);
  EXPECT_EQ(results["note"], "untrained fixture");
  EXPECT_NE(fsys::read_file(fsys::join(out, "report.md")).find("note: untrained fixture"), std::string::npos);

  // Same recipe, same numbers (and the second run reads the token cache).
  const std::string out2 = fsys::join(s.dir, "run2");
  r = run("run " + recipe + " --out " + out2 + " --threads 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("token cache hit"), std::string::npos) << r.output;
  EXPECT_EQ(s.report(out2)["stages"][1]["results"]["perplexity"].get<double>(), ppl);
  r = run("report " + out + " " + out2);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("perplexity"), std::string::npos) << r.output;
}

TEST(EvalCli, MaskedLmAndClassifier) {
  Scratch s;
  std::string recipe = s.recipe("mlm", "model: {path: " + kFixtures + "/models/bert_mlm}\n" + data_section(s, "kjv", kWordPiece, 32) +
                                           "stages:\n  - eval: {max_examples: 6}\n");
  std::string out = fsys::join(s.dir, "mlm");
  auto r = run("run " + recipe + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  auto results = s.report(out)["stages"][0]["results"];
  EXPECT_GT(results["masked_tokens"].get<int64_t>(), 0);
  EXPECT_LE(results["masked_tokens"].get<int64_t>(), 6 * 32);
  EXPECT_GE(results["accuracy"].get<double>(), 0);
  EXPECT_LE(results["accuracy"].get<double>(), 1);
  EXPECT_GT(results["loss"].get<double>(), 0);
  EXPECT_EQ(results["protocol"], "masked LM, 15% of tokens selected (80% [MASK] / 10% random / 10% kept), blocks of 32, seed 0");
  EXPECT_EQ(results["split"], "validation");

  recipe = s.recipe("cls", "model: {path: " + kFixtures + "/models/bert_cls}\n" + data_section(s, "kjv_testament", kWordPiece, 24) +
                               "stages:\n  - eval: {split: test, max_examples: 50}\n");
  out = fsys::join(s.dir, "cls");
  r = run("run " + recipe + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  results = s.report(out)["stages"][0]["results"];
  EXPECT_EQ(results["examples"], 50);
  EXPECT_GE(results["accuracy"].get<double>(), 0);
  EXPECT_LE(results["accuracy"].get<double>(), 1);
  EXPECT_GE(results["macro_f1"].get<double>(), 0);
  EXPECT_LE(results["macro_f1"].get<double>(), 1);
  EXPECT_GT(results["loss"].get<double>(), 0);
  EXPECT_EQ(results["flops_seq_len"], 24);
}

TEST(EvalCli, ClassificationFromATsvFile) {
  Scratch s;
  std::string rows = "sentence\tlabel\n";
  for (int i = 0; i < 40; ++i) rows += std::string(i % 3 == 0 ? "the lord is my shepherd" : "and god said") + "\t" + std::to_string(i % 3) + "\n";
  const std::string tsv = fsys::join(s.dir, "train.tsv");
  std::ofstream(tsv) << rows;
  const std::string recipe = s.recipe(
      "tsv", "model: {path: " + kFixtures + "/models/bert_cls}\ndata: {files: [" + tsv + "], text_field: sentence, tokenizer: " +
                 kWordPiece + ", seq_len: 16, splits: {validation: 0.25, test: 0.25}, cache: false}\nstages:\n  - eval: {split: test}\n");
  const std::string out = fsys::join(s.dir, "run");
  auto r = run("run " + recipe + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(s.report(out)["stages"][0]["results"]["examples"], 10);
}

TEST(EvalCli, RecipeMistakesAreOneLineUserErrors) {
  Scratch s;
  const std::string llama = "model: {path: " + kFixtures + "/models/llama_gqa}\n";
  auto expect_error = [&](const std::string& name, const std::string& text, const std::string& message) {
    const std::string recipe = s.recipe(name, text);
    const auto r = run("run " + recipe + " --out " + fsys::join(s.dir, name + "-run"));
    EXPECT_EQ(r.code, 1) << name << ": " << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << name << ": " << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  };
  expect_error("too-long", llama + data_section(s, "kjv", kUnigram, 128) + "stages: [eval: {}]\n",
               "data.seq_len 128 is longer than the 64 positions of model " + kFixtures +
                   "/models/llama_gqa (config.json max_position_embeddings)");
  expect_error("no-data", llama + "stages: [eval: {}]\n",
               "[1/1] eval needs data: add a `data:` section to the recipe (e.g. `data: {name: kjv}`; `secateur help "
               "section data` lists its keys)");
  expect_error("no-tokenizer", llama + "data: {name: kjv}\nstages: [eval: {}]\n",
               "data.tokenizer is not set and the model directory " + kFixtures +
                   "/models/llama_gqa holds no tokenizer.json or SentencePiece .model: set data.tokenizer to the model's tokenizer");
  expect_error("big-vocab", llama + data_section(s, "kjv", kFixtures + "/tokenizers/gpt2_bytelevel", 32) + "stages: [eval: {}]\n",
               "has a vocabulary of 128 (config.json vocab_size): use the model's own tokenizer");
  expect_error("wrong-task", "model: {path: " + kFixtures + "/models/bert_cls}\n" + data_section(s, "kjv", kWordPiece, 16) +
                                 "stages: [eval: {}]\n",
               "data kjv is a language_modeling dataset but model " + kFixtures +
                   "/models/bert_cls is a sequence_classification model (use a classification dataset");
  expect_error("missing-file", llama + "data: {files: [/nonexistent/corpus.txt], tokenizer: " + kUnigram + "}\nstages: [eval: {}]\n",
               "data.files: /nonexistent/corpus.txt: no such file or directory");
  const std::string empty = fsys::join(s.dir, "empty.txt");
  std::ofstream(empty) << "\n\n";
  expect_error("empty", llama + "data: {files: [" + empty + "], tokenizer: " + kUnigram + "}\nstages: [eval: {}]\n",
               "data.files: " + empty + " holds no examples (every line is empty or blank)");
  const std::string tsv = fsys::join(s.dir, "cls.tsv");
  std::ofstream(tsv) << "sentence\tlabel\nx\t0\n";
  expect_error("column", "model: {path: " + kFixtures + "/models/bert_cls}\ndata: {files: [" + tsv + "], tokenizer: " + kWordPiece +
                             "}\nstages: [eval: {}]\n",
               tsv + ": no column 'text' (columns: sentence, label) — set data.text_field");
  expect_error("stride", llama + data_section(s, "kjv", kUnigram, 32) + "stages: [eval: {stride: 40}]\n",
               "[1/1] eval: stride 40 is larger than context 32 (tokens between windows would never be scored)");
  expect_error("both", llama + "data: {name: kjv, files: [a.txt]}\nstages: [eval: {}]\n",
               "data: expected exactly one of data.name or data.files, got");
  expect_error("unknown-name", llama + "data: {name: kjv_bookz}\nstages: [eval: {}]\n", "did you mean 'kjv_books'?");
}

TEST(EvalCli, HelpDocumentsTheDataSectionAndTheStage) {
  auto r = run("help section data");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("name: one of kjv, kjv_testament, kjv_genre, kjv_books"), std::string::npos) << r.output;
  for (const char* key : {"name:", "files:", "tokenizer:", "seq_len:", "splits:", "batch_size:", "text_field:", "label_field:",
                          "text_pair_field:", "cache_dir:"})
    EXPECT_NE(r.output.find(key), std::string::npos) << key << "\n" << r.output;
  r = run("help stage eval");
  EXPECT_EQ(r.code, 0);
  for (const char* key : {"split:", "context:", "stride:", "latency:", "repeats:"})
    EXPECT_NE(r.output.find(key), std::string::npos) << key << "\n" << r.output;
}

TEST(EvalCli, QuickstartRecipeRunsOnTheTrainedDefaultModel) {
  Scratch s;
  const std::string out = fsys::join(s.dir, "quickstart");
  // Run from the source tree, as README's command does (the token cache goes to the scratch dir),
  // with each perplexity cut to 4096 test tokens and one latency repeat to keep the suite quick.
  const auto r = run("run recipes/quickstart.yaml --out " + out + " --threads 2 --set stages.1.eval.max_tokens=4096"
                     " --set stages.3.eval.max_tokens=4096 --set stages.1.eval.latency.repeats=1 --set stages.3.eval.latency.repeats=1",
                     "cd " + std::string(SECATEUR_SOURCE_DIR) + " && SECATEUR_CACHE_DIR=" + s.cache() + " ");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto report = s.report(out);
  ASSERT_EQ(report["stages"].size(), 5u);
  const auto& dense = report["stages"][1]["results"];
  const auto& pruned = report["stages"][3]["results"];
  EXPECT_EQ(report["stages"][2]["kind"], "prune");
  // data/models/kjv_gpt is trained (test perplexity 26.4 on the whole split), far below the
  // uniform 4096 of its vocabulary; pruning half of it costs perplexity, not sense.
  EXPECT_EQ(dense["params"].get<double>(), 4000000.0);
  EXPECT_LT(dense["perplexity"].get<double>(), 40.0);
  EXPECT_GT(pruned["perplexity"].get<double>(), dense["perplexity"].get<double>());
  EXPECT_LT(pruned["perplexity"].get<double>(), 400.0);
  EXPECT_LT(pruned["params"].get<double>(), dense["params"].get<double>());
  EXPECT_EQ(pruned["protocol"], dense["protocol"]);  // the same test tokens before and after
  EXPECT_GT(pruned["tokens_per_s"].get<double>(), 0);
  const std::string md = fsys::read_file(fsys::join(out, "report.md"));
  EXPECT_NE(md.find("| 4. eval |"), std::string::npos) << md;
}
