// LoRAPrune: a hand-driven loop (prepare → forward → backward → zero_grad → after_step, as the
// trainer calls them) prunes the scheduled fraction of each layer in rounds, by the moving
// average of the LoRA-guided importance; merging LoRA and pruning physically computes what the
// masked model with adapters did.
#include <gtest/gtest.h>

#include "methods/loraprune.h"
#include "surgery/surgery.h"

namespace secateur::methods {
namespace {

std::string fixture(const std::string& name) { return std::string(SECATEUR_FIXTURES) + "/models/" + name; }

class LoraPruneTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraPruneTest, RoundsPruneByMovingAverageImportanceAndMergeMatches) {
  torch::set_num_threads(2);
  torch::manual_seed(4);
  auto model = model::load_model(fixture(GetParam()));
  model->eval();
  LoraPruneOptions o;
  o.target = 0.5;
  o.iterations = 2;
  o.prune_every = 2;
  LoraPrune lp(*model, o);
  {
    torch::NoGradGuard no_grad;
    for (const std::string& n : lp.lora().names()) lp.lora().b(n).normal_(0, 0.02);  // non-zero ∂L/∂A too
  }
  std::vector<torch::Tensor> params = lp.param_groups()[0].params;
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(1e-2));
  for (int64_t step = 0; step < 4; ++step) {
    model::Gates gates;
    model::ForwardOptions options;
    lp.prepare({step, 4, 0, true}, gates, options);
    const torch::Tensor ids = torch::randint(5, 30, {2, 8});
    model->forward(ids, {}, &gates, options).logits.pow(2).mean().backward();
    sgd.step();
    sgd.zero_grad();
    train::StepMetrics metrics;
    lp.after_step({step, 4, 0, true}, metrics);
    if (step == 1) {
      EXPECT_EQ(lp.rounds_done(), 1);
      // The first round removed a quarter of each layer's neurons: the lowest moving averages.
      const auto& m = lp.masks().layers[0];
      const int64_t n = model->config().layers[0].intermediate;
      EXPECT_EQ(static_cast<int64_t>(m.ffn.size()), n - std::llround(0.25 * n));
      const torch::Tensor avg = lp.ffn_importance()[0];
      double kept_min = INFINITY, removed_max = -INFINITY;
      for (int64_t i = 0; i < n; ++i) {
        const bool kept = std::binary_search(m.ffn.begin(), m.ffn.end(), i);
        const double v = avg[i].item<double>();
        if (kept) kept_min = std::min(kept_min, v);
        else removed_max = std::max(removed_max, v);
      }
      EXPECT_GE(kept_min, removed_max);
    }
  }
  EXPECT_EQ(lp.rounds_done(), 2);
  const surgery::Masks masks = lp.masks();
  masks.validate(model->config());
  for (size_t l = 0; l < masks.layers.size(); ++l)
    EXPECT_EQ(masks.layers[l].ffn.size() * 2, static_cast<size_t>(model->config().layers[l].intermediate));
  // Masked model with adapters == merged, physically pruned model.
  const torch::Tensor ids = torch::randint(5, 30, {2, 8});
  torch::Tensor before;
  {
    torch::NoGradGuard no_grad;
    model::Gates gates;
    model::ForwardOptions options;
    lp.prepare({4, 4, 0, false}, gates, options);
    before = model->forward(ids, {}, &gates, options).logits;
  }
  lp.lora().merge_into(*model);
  torch::NoGradGuard no_grad;
  const torch::Tensor after = surgery::prune(*model, masks)->forward(ids).logits;
  EXPECT_LE((before - after).abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Families, LoraPruneTest, ::testing::Values("bert_cls", "llama_gqa"));

}  // namespace
}  // namespace secateur::methods
