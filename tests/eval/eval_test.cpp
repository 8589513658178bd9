#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "eval/classification.h"
#include "eval/cost.h"
#include "eval/loss.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "util/error.h"

using namespace secateur;

namespace {

std::shared_ptr<model::Model> fixture(const std::string& name) {
  torch::set_num_threads(2);
  return model::load_model(std::string(SECATEUR_FIXTURES) + "/models/" + name);
}

// NLL of token t given all tokens from `begin` up to t-1, computed one token at a time: the
// definition the sliding-window method must reproduce.
double nll_of_token(model::Model& m, const torch::Tensor& tokens, int64_t begin, int64_t t) {
  auto input = tokens.slice(0, begin, t).unsqueeze(0);
  auto logits = m.forward(input).logits[0][-1].to(torch::kDouble);
  return -torch::log_softmax(logits, 0)[tokens[t].item<int64_t>()].item<double>();
}

}  // namespace

TEST(Perplexity, SlidingWindowEqualsPerTokenDefinition) {
  torch::NoGradGuard no_grad;
  auto m = fixture("llama_gqa");
  torch::manual_seed(0);
  auto tokens = torch::randint(0, m->config().vocab_size, {23}, torch::kLong);
  const int64_t context = 8, stride = 3;
  // Reference: walk HF's windows by hand; each newly covered token is scored with the context
  // from its window's start.
  double nll = 0;
  int64_t n = 0, previous_end = 0;
  for (int64_t begin = 0; begin < 23; begin += stride) {
    int64_t end = std::min<int64_t>(begin + context, 23);
    for (int64_t t = std::max(previous_end, begin + 1); t < end; ++t, ++n) nll += nll_of_token(*m, tokens, begin, t);
    previous_end = end;
    if (end == 23) break;
  }
  auto r = eval::perplexity(*m, tokens, {context, stride, 4});
  EXPECT_EQ(r.tokens_scored, n);
  EXPECT_EQ(r.tokens_scored, 22);  // every token but the first
  EXPECT_NEAR(r.mean_nll, nll / n, 1e-5);
  EXPECT_NEAR(r.perplexity, std::exp(nll / n), 1e-3 * r.perplexity);
  EXPECT_EQ(r.protocol(), "sliding window, context 8, stride 3, 22 tokens");
}

TEST(Perplexity, DisjointWindowsDropEachWindowsFirstToken) {
  torch::NoGradGuard no_grad;
  auto m = fixture("gpt2");
  auto tokens = torch::arange(0, 20, torch::kLong) % m->config().vocab_size;
  auto r = eval::perplexity(*m, tokens, {5, 5, 8});
  EXPECT_EQ(r.windows, 4);
  EXPECT_EQ(r.tokens_scored, 16);  // 4 windows × (5 − 1)
  EXPECT_TRUE(std::isfinite(r.perplexity));
  EXPECT_THROW(eval::perplexity(*m, tokens, {5, 6, 8}), UserError);
  EXPECT_THROW(eval::perplexity(*fixture("bert_mlm"), tokens, {5, 5, 8}), UserError);
}

TEST(Loss, CausalLossIgnoresPaddingAndMatchesManualCrossEntropy) {
  torch::NoGradGuard no_grad;
  auto m = fixture("llama_gqa");
  data::Batch batch;
  batch.input_ids = torch::tensor({{5, 7, 9, 11}, {3, 4, 0, 0}}, torch::kLong);
  batch.attention_mask = torch::tensor({{1, 1, 1, 1}, {1, 1, 0, 0}}, torch::kLong);
  auto logits = m->forward(batch.input_ids, batch.attention_mask).logits;
  auto s = eval::task_loss_sum(model::Task::causal_lm, logits, batch);
  EXPECT_EQ(s.count.item<int64_t>(), 4);  // 3 predictions in row 0, 1 in row 1
  auto lp = torch::log_softmax(logits.to(torch::kDouble), -1);
  double manual = -(lp[0][0][7] + lp[0][1][9] + lp[0][2][11] + lp[1][0][4]).item<double>();
  EXPECT_NEAR(s.sum.item<double>(), manual, 1e-4);
  EXPECT_NEAR(eval::task_loss(model::Task::causal_lm, logits, batch).item<double>(), manual / 4, 1e-5);
}

TEST(Classification, AccuracyAndMacroF1ByHand) {
  eval::ClassificationMetrics metrics(3);
  // truth:     0 0 1 1 2 2   predicted: 0 1 1 1 0 2
  auto logits = torch::zeros({6, 3});
  std::vector<int64_t> predicted = {0, 1, 1, 1, 0, 2};
  for (int i = 0; i < 6; ++i) logits[i][predicted[i]] = 1.0;
  metrics.add(logits, torch::tensor({0, 0, 1, 1, 2, 2}, torch::kLong));
  metrics.add(torch::zeros({1, 3}), torch::tensor({-100}, torch::kLong));  // ignored
  EXPECT_EQ(metrics.examples(), 6);
  EXPECT_NEAR(metrics.accuracy(), 4.0 / 6.0, 1e-12);
  // F1: class 0 P=1/2 R=1/2 → 1/2; class 1 P=2/3 R=1 → 0.8; class 2 P=1 R=1/2 → 2/3.
  EXPECT_NEAR(metrics.macro_f1(), (0.5 + 0.8 + 2.0 / 3.0) / 3.0, 1e-12);
  EXPECT_THROW(metrics.add(torch::zeros({1, 3}), torch::tensor({3}, torch::kLong)), UserError);
}

TEST(Cost, LatencyIsMeasuredWithMedianAndThroughput) {
  auto m = fixture("llama_gqa");
  auto r = eval::measure_latency(*m, {2, 16, 1, 5});
  EXPECT_GT(r.median_ms, 0);
  EXPECT_LE(r.min_ms, r.median_ms);
  EXPECT_GE(r.max_ms, r.median_ms);
  EXPECT_NEAR(r.tokens_per_s, 32.0 / (r.median_ms / 1000.0), 1e-6 * r.tokens_per_s);
  EXPECT_EQ(r.peak_memory_bytes, -1);  // CPU
  EXPECT_EQ(eval::median({3, 1, 2}), 2);
  EXPECT_EQ(eval::median({4, 1, 2, 3}), 2.5);
  EXPECT_THROW(eval::measure_latency(*m, {1, 1000000, 0, 1}), UserError);
}
