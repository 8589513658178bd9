// CoFi: the expected-size model at its extremes, the expected sparsity against the real
// parameter sparsity of the physically pruned model, the Lagrangian's gradient signs, the
// Lagrangian alone steering ŝ to the target, and evaluation gates equal to the pruned model.
#include <gtest/gtest.h>

#include <cmath>

#include "fixture_model_test.h"
#include "methods/cofi.h"
#include "model/prunable.h"
#include "surgery/surgery.h"

namespace secateur::methods {
namespace {


void fill(CofiGateValues& la, double value) {
  torch::NoGradGuard no_grad;
  for (auto* list : {&la.units, &la.ffn, &la.attn, &la.mlp})
    for (torch::Tensor& t : *list)
      if (t.defined()) t.fill_(value);
  if (la.hidden.defined()) la.hidden.fill_(value);
}

// Attention-unit and FFN-neuron parameters of a model, as the prunable structure counts them.
double unit_params(const model::Model& m) {
  model::PrunableOptions po;
  po.hidden_dims = false;
  double total = 0;
  for (const model::Group& g : model::prunable_structure(m, po).groups)
    if (g.kind == model::GroupKind::head || g.kind == model::GroupKind::kv_group ||
        g.kind == model::GroupKind::ffn_neuron)
      total += static_cast<double>(g.params);
  return total;
}

class CofiTest : public testing_support::FixtureModelTest<11> {
};

TEST_P(CofiTest, AllOpenIsDenseAndAllClosedIsEmpty) {
  Cofi cofi(*model_, {});
  EXPECT_DOUBLE_EQ(cofi.prunable_size(), unit_params(*model_));
  fill(cofi.log_alpha(), 30.0);
  EXPECT_NEAR(cofi.expected_sparsity().item<double>(), 0.0, 1e-9);
  fill(cofi.log_alpha(), -30.0);
  EXPECT_NEAR(cofi.expected_sparsity().item<double>(), 1.0, 1e-9);
}

TEST_P(CofiTest, ExpectedSparsityMatchesThePrunedModelWithinRounding) {
  Cofi cofi(*model_, {});
  {
    torch::NoGradGuard no_grad;
    CofiGateValues& la = cofi.log_alpha();
    for (auto* list : {&la.units, &la.ffn})
      for (torch::Tensor& t : *list)
        if (t.defined()) t.normal_(0.0, 3.0);
    la.hidden.normal_(2.0, 3.0);
    for (auto* list : {&la.attn, &la.mlp})
      for (torch::Tensor& t : *list)
        if (t.defined()) t.fill_(30.0);  // blocks stay: their rounding is all or nothing
  }
  const surgery::Masks masks = cofi.masks();
  const std::shared_ptr<model::Model> pruned = surgery::prune(*model_, masks);
  const double real = 1 - unit_params(*pruned) / cofi.prunable_size();
  // The size model is exact on 0/1 gates: it counts what surgery leaves.
  const double at_masks = 1 - cofi.expected_size(cofi.indicators(masks)).item<double>() / cofi.prunable_size();
  EXPECT_NEAR(at_masks, real, 1e-12);
  EXPECT_GT(real, 0.05);
  // The expected sparsity differs from it by rounding only: per layer, half a unit and half a neuron,
  // and half a hidden dim over every kept unit's matrices.
  const model::ModelConfig& c = model_->config();
  double bound = 0;
  model::PrunableOptions po;
  po.hidden_dims = false;
  for (const model::Group& g : model::prunable_structure(*model_, po).groups)
    if (g.kind == model::GroupKind::head || g.kind == model::GroupKind::kv_group || g.kind == model::GroupKind::ffn_neuron)
      bound += 0.5 * static_cast<double>(g.params) / c.hidden_size;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const model::LayerShape& s = c.layers[l];
    bound += 0.5 * cofi.prunable_size() / c.num_layers / (c.family == model::Family::llama ? s.num_kv_heads : s.num_heads);
  }
  const double expected = cofi.expected_sparsity().item<double>();
  EXPECT_LE(std::abs(expected - real), bound / cofi.prunable_size()) << "expected " << expected << ", real " << real;
}

TEST_P(CofiTest, EvalGatesComputeWhatThePrunedModelComputes) {
  Cofi cofi(*model_, {});
  {
    torch::NoGradGuard no_grad;
    cofi.log_alpha().ffn[0].normal_(0.0, 3.0);
    cofi.log_alpha().units[0][0] = -20.0;
    cofi.log_alpha().hidden[3] = -20.0;
    cofi.log_alpha().mlp.back().fill_(-20.0);
  }
  const surgery::Masks masks = cofi.masks();
  EXPECT_FALSE(masks.layers.back().mlp);
  EXPECT_EQ(masks.hidden.size(), static_cast<size_t>(model_->config().hidden_size - 1));
  const torch::Tensor ids = torch::randint(5, 30, {2, 8});
  model::Gates gates;
  model::ForwardOptions options;
  cofi.prepare({0, 1, 0, false}, gates, options);
  torch::NoGradGuard no_grad;
  const torch::Tensor gated = model_->forward(ids, {}, &gates).logits;
  const torch::Tensor pruned = surgery::prune(*model_, masks)->forward(ids).logits;
  EXPECT_LE((gated - pruned).abs().max().item<double>(), 1e-5);
}

TEST_P(CofiTest, TrainingGatesAreSampledPerStructure) {
  Cofi cofi(*model_, {});
  model::Gates gates;
  model::ForwardOptions options;
  cofi.prepare({0, 1, 0, true}, gates, options);
  const model::ModelConfig& c = model_->config();
  const auto& units = c.family == model::Family::llama ? gates.kv_group : gates.head;
  ASSERT_EQ(units.size(), static_cast<size_t>(c.num_layers));
  EXPECT_TRUE(units[0].requires_grad());
  EXPECT_EQ(gates.ffn[0].numel(), c.layers[0].intermediate);
  EXPECT_EQ(gates.hidden.numel(), c.hidden_size);
  EXPECT_EQ(gates.attn_block[0].dim(), 0);
  // FFN gates start at log α ≈ 0, so some samples are exactly 0 and some in (0, 1).
  EXPECT_TRUE(((gates.ffn[0] > 0) & (gates.ffn[0] < 1)).any().item<bool>());
  model_->forward(torch::randint(5, 30, {1, 6}), {}, &gates).logits.sum().backward();
  EXPECT_TRUE(cofi.log_alpha().ffn[0].grad().defined());
}

TEST_P(CofiTest, LagrangianGradientsHaveTheRightSigns) {
  CofiOptions options;
  options.target_sparsity = 0.6;
  Cofi cofi(*model_, options);
  {
    torch::NoGradGuard no_grad;
    cofi.lambda1().fill_(-1.0);
    cofi.lambda2().fill_(1.0);
  }
  const torch::Tensor s = cofi.expected_sparsity();
  const double gap = s.item<double>() - 0.6;
  ASSERT_LT(gap, 0);  // nearly dense at initialisation: below the target
  cofi.lagrangian(s, 0.6).backward();
  EXPECT_NEAR(cofi.lambda1().grad().item<double>(), gap, 1e-6);        // ∂L/∂λ1 = ŝ − t
  EXPECT_NEAR(cofi.lambda2().grad().item<double>(), gap * gap, 1e-6);  // ∂L/∂λ2 = (ŝ − t)²
  // ∂L/∂ŝ = λ1 + 2λ2(ŝ − t) < 0 here, and ŝ falls as log α grows: descent lowers every log α.
  const std::vector<train::ParamGroup> groups = cofi.param_groups();
  for (const torch::Tensor& t : groups[0].params) EXPECT_TRUE((t.grad() > 0).all().item<bool>());
  EXPECT_TRUE(groups[1].maximize);
}

TEST_P(CofiTest, LagrangianAloneReachesTheTarget) {
  CofiOptions options;
  options.target_sparsity = 0.5;
  options.warmup_steps = 50;
  Cofi cofi(*model_, options);
  EXPECT_DOUBLE_EQ(cofi.target_at(0), 0.0);
  EXPECT_DOUBLE_EQ(cofi.target_at(25), 0.25);
  EXPECT_DOUBLE_EQ(cofi.target_at(80), 0.5);
  std::vector<train::ParamGroup> groups = cofi.param_groups();
  torch::optim::Adam gates(groups[0].params, torch::optim::AdamOptions(0.1));
  torch::optim::Adam lambdas(groups[1].params, torch::optim::AdamOptions(0.1));
  for (int64_t step = 0; step < 300; ++step) {
    gates.zero_grad(), lambdas.zero_grad();
    cofi.lagrangian(cofi.expected_sparsity(), cofi.target_at(step)).backward();
    for (torch::Tensor& l : groups[1].params) l.mutable_grad().neg_();  // ascent, as the trainer does
    gates.step(), lambdas.step();
  }
  EXPECT_NEAR(cofi.expected_sparsity().item<double>(), 0.5, 0.03);
}

INSTANTIATE_TEST_SUITE_P(Families, CofiTest, ::testing::Values("bert_cls", "gpt2", "llama_gqa"));

}  // namespace
}  // namespace secateur::methods
