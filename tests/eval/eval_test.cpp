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

namespace {

// Logits [3, 9, 50] (×4: a spread like a trained LM's) and next-token labels with ignored positions.
struct LossCase {
  torch::Tensor logits;
  data::Batch batch;
};

LossCase loss_case(torch::ScalarType dtype) {
  torch::manual_seed(17);
  LossCase c;
  c.logits = (torch::randn({3, 9, 50}, torch::kDouble) * 4).to(dtype);
  c.batch.labels = torch::randint(0, 50, {3, 9}, torch::kLong);
  c.batch.labels.index_put_({0, torch::indexing::Slice(0, 4)}, -100);
  c.batch.labels.index_put_({2, 5}, -100);
  c.batch.labels.index_put_({2, 8}, -100);
  return c;
}

// Σ −log softmax(logits[b, t])[labels[b, t+1]] in float64 from the same logits.
double nll_sum_fp64(const LossCase& c) {
  const torch::Tensor lp = torch::log_softmax(c.logits.to(torch::kDouble), -1);
  double sum = 0;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t + 1 < 9; ++t) {
      const int64_t label = c.batch.labels[b][t + 1].item<int64_t>();
      if (label != -100) sum -= lp[b][t][label].item<double>();
    }
  return sum;
}

// The differentiable path (logits that require grad), as before the chunked one existed.
eval::LossSum with_grad_path(const LossCase& c) {
  const torch::Tensor logits = c.logits.detach().clone().requires_grad_(true);
  eval::LossSum s = eval::task_loss_sum(model::Task::causal_lm, logits, c.batch);
  EXPECT_TRUE(s.sum.requires_grad());
  return {s.sum.detach(), s.count};
}

}  // namespace

TEST(Loss, ChunkedCrossEntropyEqualsTheDifferentiablePathInFp32) {
  const LossCase c = loss_case(torch::kFloat);
  const eval::LossSum reference = with_grad_path(c);
  EXPECT_EQ(reference.count.item<int64_t>(), 3 * 8 - 3 - 2);  // row 0 ignores 3 targets, row 2 two
  torch::NoGradGuard no_grad;
  const eval::LossSum s = eval::task_loss_sum(model::Task::causal_lm, c.logits, c.batch);
  EXPECT_FALSE(s.sum.requires_grad());
  EXPECT_EQ(s.sum.scalar_type(), torch::kFloat);
  EXPECT_EQ(s.count.item<int64_t>(), reference.count.item<int64_t>());
  EXPECT_TRUE(torch::allclose(s.sum, reference.sum, 1e-6, 1e-6))
      << s.sum.item<double>() << " vs " << reference.sum.item<double>();
  // Chunks of 1, 2 and 3 rows (chunk_elements below a row, 2 rows, 3.5 rows): the same sum.
  const torch::Tensor shifted = c.logits.slice(1, 0, 8), targets = c.batch.labels.slice(1, 1, 9);
  for (int64_t chunk_elements : {int64_t{1}, int64_t{100}, int64_t{175}}) {
    const eval::LossSum chunked = eval::token_cross_entropy_chunked(shifted, targets, chunk_elements);
    EXPECT_TRUE(torch::allclose(chunked.sum, reference.sum, 1e-6, 1e-6)) << chunk_elements;
    EXPECT_EQ(chunked.count.item<int64_t>(), reference.count.item<int64_t>());
  }
  EXPECT_NEAR(s.sum.item<double>(), nll_sum_fp64(c), 1e-5 * nll_sum_fp64(c));
}

TEST(Loss, ChunkedCrossEntropyOfBf16LogitsIsAsAccurateAsTheFp32Copy) {
  // bf16 logits are read as they are and reduced in fp32: against a float64 reference on the same
  // bf16 values, the chunked sum is as close as the differentiable path's fp32 copy.
  const LossCase c = loss_case(torch::kBFloat16);
  const double exact = nll_sum_fp64(c);
  const double copied = with_grad_path(c).sum.item<double>();
  torch::NoGradGuard no_grad;
  const double chunked = eval::task_loss_sum(model::Task::causal_lm, c.logits, c.batch).sum.item<double>();
  EXPECT_NEAR(chunked, exact, 1e-5 * exact);
  EXPECT_LE(std::abs(chunked - exact), std::abs(copied - exact) + 1e-6 * exact);
}

TEST(Loss, ChunkedCrossEntropyTakesFlatLogitsAndAllIgnoredTargets) {
  torch::manual_seed(3);
  const torch::Tensor logits = torch::randn({5, 7});
  const torch::Tensor none = torch::full({5}, -100, torch::kLong);
  const eval::LossSum empty = eval::token_cross_entropy_chunked(logits, none, 14);
  EXPECT_EQ(empty.sum.item<double>(), 0.0);
  EXPECT_EQ(empty.count.item<int64_t>(), 0);
  const torch::Tensor targets = torch::tensor({1, -100, 6, 0, 3}, torch::kLong);
  const torch::Tensor expected = torch::nn::functional::cross_entropy(
      logits, targets, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
  EXPECT_TRUE(torch::allclose(eval::token_cross_entropy_chunked(logits, targets, 14).sum, expected, 1e-6, 1e-6));
}
