// Movement and block movement pruning: the straight-through gradient against its closed form,
// the cubic schedule's values, the final sparsity against the schedule's target, and empty
// heads / neurons becoming surgery masks with the pruned model computing what the masked one did.
#include <gtest/gtest.h>

#include <cmath>

#include "fixture_model_test.h"
#include "methods/movement.h"
#include "surgery/surgery.h"

namespace secateur::methods {
namespace {


TEST(CubicScheduleTest, ZhuGuptaValues) {
  CubicSchedule s{0.0, 0.9, 10, 10, 120};  // nΔt = 120 − 10 − 10 = 100 steps
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(10), 0.0);
  EXPECT_NEAR(s.at(60), 0.9 - 0.9 * 0.125, 1e-12);  // halfway: s_f + (s_i − s_f)·0.5³
  EXPECT_NEAR(s.at(35), 0.9 - 0.9 * std::pow(0.75, 3), 1e-12);
  EXPECT_DOUBLE_EQ(s.at(110), 0.9);
  EXPECT_DOUBLE_EQ(s.at(500), 0.9);
  for (int64_t t = 10; t < 110; ++t) EXPECT_LE(s.at(t), s.at(t + 1));  // monotone
}

class MovementTest : public testing_support::FixtureModelTest<5> {
};

TEST_P(MovementTest, StraightThroughGradientIsTheBlockSumOfGradTimesWeight) {
  MovementOptions o;
  o.attention = {16, 16};
  Movement mv(*model_, o);
  const model::ProjectionWeight first = model::projection_weights(*model_).front();
  {
    torch::NoGradGuard no_grad;
    mv.scores(first.name).normal_();
  }
  mv.set_sparsity(0.5);
  const torch::Tensor w = model_->hf_parameter(first.name).detach();
  const torch::Tensor g = torch::randn(w.sizes());  // ∂L/∂W' for L = Σ W'·G
  (mv.apply(first.name, w) * g).sum().backward();
  // Closed form in the logical [out, in] layout: per 16×16 block, Σ G ⊙ W.
  torch::Tensor gw = g * w;
  if (first.out_dim == 1) gw = gw.t();
  const int64_t rows = gw.size(0), cols = gw.size(1);
  const torch::Tensor expected = gw.view({rows / 16, 16, cols / 16, 16}).sum({1, 3});
  EXPECT_TRUE(torch::allclose(mv.scores(first.name).grad(), expected, 1e-5, 1e-5));
  // The forward value is W ⊙ M: exactly half the blocks zeroed.
  torch::NoGradGuard no_grad;
  const torch::Tensor out = mv.apply(first.name, w);
  EXPECT_NEAR((out == 0).to(torch::kDouble).mean().item<double>(), 0.5, 1e-9);
}

TEST_P(MovementTest, FinalSparsityMatchesTheScheduleTarget) {
  MovementOptions o;
  o.attention = {16, 16};
  o.schedule = {0.0, 0.75, 2, 2, 20};
  Movement mv(*model_, o);
  {
    torch::NoGradGuard no_grad;
    for (const auto& pw : model::projection_weights(*model_)) mv.scores(pw.name).normal_();
  }
  model::Gates gates;
  model::ForwardOptions options;
  mv.prepare({20, 20, 0, true}, gates, options);
  EXPECT_EQ(options.weights, &mv);
  EXPECT_DOUBLE_EQ(mv.current_sparsity(), 0.75);
  // Every matrix's block count is a multiple of 4 here, so Top-v keeps exactly a quarter.
  EXPECT_NEAR(mv.weight_sparsity(), 0.75, 1e-9);
}

TEST_P(MovementTest, EmptyHeadsAndNeuronsAreRemovedAndThePrunedModelMatches) {
  const model::ModelConfig& c = model_->config();
  MovementOptions o;
  o.attention = {c.head_dim, 0};  // whole head rows / columns: a pruned block is a pruned head
  Movement mv(*model_, o);
  mv.set_sparsity(0.5);
  {
    torch::NoGradGuard no_grad;
    for (const auto& pw : model::projection_weights(*model_)) mv.scores(pw.name).normal_();
  }
  const surgery::Masks masks = mv.structural_masks();
  int64_t heads = 0, neurons = 0;
  for (const auto& l : masks.layers) heads += l.attention ? l.heads.size() : 0, neurons += l.mlp ? l.ffn.size() : 0;
  int64_t all_heads = 0, all_neurons = 0;
  for (const auto& s : c.layers) all_heads += s.num_heads, all_neurons += s.intermediate;
  EXPECT_LE(heads, all_heads);
  EXPECT_EQ(neurons * 2, all_neurons);  // half of each layer's down columns pruned, rows hybrid
  const torch::Tensor ids = torch::randint(5, 30, {2, 8});
  torch::Tensor masked;
  {
    torch::NoGradGuard no_grad;
    model::ForwardOptions fo;
    fo.weights = &mv;
    masked = model_->forward(ids, {}, nullptr, fo).logits;
  }
  mv.apply_to_weights(*model_);
  torch::NoGradGuard no_grad;
  const torch::Tensor pruned = surgery::prune(*model_, masks)->forward(ids).logits;
  EXPECT_LE((masked - pruned).abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Families, MovementTest, ::testing::Values("bert_cls", "gpt2", "llama_gqa"));

}  // namespace
}  // namespace secateur::methods
