// Block search: the greedy step takes the candidate with the lowest criterion (a block zeroed by
// hand changes nothing and goes first under the output-change criterion; under perplexity the pick
// is the brute-force argmin), cached evaluation equals running the whole model, targets are met
// exactly, and one-shot removes the individually best units together.
#include <gtest/gtest.h>

#include <cmath>

#include "methods/block_search.h"
#include "util/error.h"

namespace secateur::methods {
namespace {

std::shared_ptr<model::Model> load(const std::string& name) {
  torch::set_num_threads(2);
  auto m = model::load_model(std::string(SECATEUR_FIXTURES) + "/models/" + name);
  m->eval();
  return m;
}

// Two calibration batches: one padded on the right, one of random ids.
std::vector<data::Batch> batches(const model::Model& m) {
  torch::manual_seed(7);
  const int64_t v = m.config().vocab_size;
  torch::Tensor ids = torch::randint(3, v, {2, 12}, torch::kLong);
  torch::Tensor mask = torch::ones({2, 12}, torch::kLong);
  mask.index_put_({1, torch::indexing::Slice(8)}, 0);
  return {{ids, mask, {}, {}}, {torch::randint(3, v, {3, 10}, torch::kLong), {}, {}, {}}};
}

// Perplexity of the model through `masks`, from a full forward pass (no cache, no evaluator).
double perplexity_by_hand(model::Model& m, const std::vector<data::Batch>& bs, const surgery::Masks& masks) {
  torch::NoGradGuard no_grad;
  const model::Gates gates = masks.to_gates(m.config());
  double nll = 0, n = 0;
  for (const data::Batch& b : bs) {
    const torch::Tensor logits = m.forward(b.input_ids, b.attention_mask, &gates).logits.to(torch::kDouble);
    const int64_t t = b.input_ids.size(1);
    const torch::Tensor lp = torch::log_softmax(logits.narrow(1, 0, t - 1), -1);
    const torch::Tensor tok = lp.gather(-1, b.input_ids.narrow(1, 1, t - 1).unsqueeze(-1)).squeeze(-1);
    const torch::Tensor real = b.attention_mask.defined() ? b.attention_mask.narrow(1, 1, t - 1).ne(0)
                                                          : torch::ones_like(tok).ne(0);
    nll -= tok.index({real}).sum().item<double>();
    n += real.sum().item<double>();
  }
  return std::exp(nll / n);
}

TEST(BlockSearch, OutputChangeRemovesAHandZeroedBlockFirst) {
  auto m = load("llama_gqa");
  {
    torch::NoGradGuard no_grad;
    m->hf_parameter("model.layers.1.mlp.down_proj.weight").zero_();  // the block adds nothing
  }
  const auto bs = batches(*m);
  BlockSearchOptions o;
  o.criterion = SearchCriterion::output_change;
  o.remove = {0, 1};
  const BlockSearchResult r = block_search(*m, bs, o, surgery::Masks::keep_all(m->config()));
  ASSERT_EQ(r.order.size(), 1u);
  EXPECT_EQ(r.order[0].candidate.kind, TargetKind::mlp_blocks);
  EXPECT_EQ(r.order[0].candidate.layer, 1);
  EXPECT_NEAR(r.order[0].score, 0.0, 1e-6);  // JS divergence from an unchanged output
  EXPECT_FALSE(r.masks.layers[1].mlp);
}

TEST(BlockSearch, PerplexityGreedyTakesTheBruteForceArgminEachStep) {
  auto m = load("llama_gqa");
  const auto bs = batches(*m);
  BlockSearchOptions o;
  o.remove = {0, 2};
  const surgery::Masks dense = surgery::Masks::keep_all(m->config());
  const BlockSearchResult r = block_search(*m, bs, o, dense);
  ASSERT_EQ(r.order.size(), 2u);
  EXPECT_NEAR(r.start_score, perplexity_by_hand(*m, bs, dense), 1e-6 * r.start_score);  // fp32 vs fp64 softmax
  surgery::Masks current = dense;
  for (const Removal& step : r.order) {
    double best = INFINITY;
    Candidate pick;
    for (const Candidate& c : candidates(m->config(), current, SearchUnit::blocks)) {
      const double ppl = perplexity_by_hand(*m, bs, with_removal(current, c));
      if (ppl < best) {
        best = ppl;
        pick = c;
      }
    }
    EXPECT_EQ(step.candidate.kind, pick.kind);
    EXPECT_EQ(step.candidate.layer, pick.layer);
    EXPECT_NEAR(step.score, best, 1e-6 * best);
    current = with_removal(current, pick);
  }
  // Two of the four blocks are gone from the masks, exactly.
  int64_t kept = 0;
  for (const surgery::LayerMask& l : r.masks.layers) kept += l.attention + l.mlp;
  EXPECT_EQ(kept, 2);
}

TEST(BlockSearch, CachedEvaluationEqualsRunningTheWholeModel) {
  for (const char* name : {"llama_gqa", "gpt2", "bert_cls"}) {
    auto m = load(name);
    const auto bs = batches(*m);
    const surgery::Masks dense = surgery::Masks::keep_all(m->config());
    CandidateEvaluator cached(*m, bs, SearchCriterion::output_change, dense, true);
    CandidateEvaluator full(*m, bs, SearchCriterion::output_change, dense, false);
    // After a removal in layer 0, candidates in layer 1 resume from the cached layer-1 input.
    const surgery::Masks step = with_removal(dense, {TargetKind::attn_blocks, 0});
    cached.set_current(step, 0);
    full.set_current(step, 0);
    const int64_t cached_before = cached.layers_run(), full_before = full.layers_run();
    for (const Candidate& c : candidates(m->config(), step, SearchUnit::blocks)) {
      const double a = cached.evaluate(c), b = full.evaluate(c);
      EXPECT_NEAR(a, b, 1e-6) << name << " layer " << c.layer;
    }
    // MLP 0 runs both layers, attention 1 and MLP 1 only layer 1: 4 layer passes a batch, not 6.
    EXPECT_EQ(cached.layers_run() - cached_before, 4 * 2) << name;
    EXPECT_EQ(full.layers_run() - full_before, 6 * 2) << name;
  }
}

TEST(BlockSearch, WholeLayersOneShotRemovesTheIndividuallyBestTogether) {
  auto m = load("gpt2");
  const auto bs = batches(*m);
  const surgery::Masks dense = surgery::Masks::keep_all(m->config());
  BlockSearchOptions o;
  o.unit = SearchUnit::layers;
  o.greedy = false;
  o.remove = {0.5, -1};  // of 2 layers: 1
  const BlockSearchResult r = block_search(*m, bs, o, dense);
  ASSERT_EQ(r.order.size(), 1u);
  const double p0 = perplexity_by_hand(*m, bs, with_removal(dense, {TargetKind::layers, 0}));
  const double p1 = perplexity_by_hand(*m, bs, with_removal(dense, {TargetKind::layers, 1}));
  EXPECT_EQ(r.order[0].candidate.layer, p0 <= p1 ? 0 : 1);
  EXPECT_FALSE(r.masks.layers[r.order[0].candidate.layer].keep);
  EXPECT_EQ(r.masks.kept_layers(), 1);
}

TEST(BlockSearch, ImpossibleRequestsAreUserErrors) {
  auto m = load("llama_gqa");
  const auto bs = batches(*m);
  BlockSearchOptions o;
  o.unit = SearchUnit::layers;
  o.remove = {0, 2};  // every layer
  EXPECT_THROW(block_search(*m, bs, o, surgery::Masks::keep_all(m->config())), UserError);
  auto bert = load("bert_cls");
  BlockSearchOptions p;
  p.remove = {0, 1};
  EXPECT_THROW(block_search(*bert, batches(*bert), p, surgery::Masks::keep_all(bert->config())), UserError);
}

}  // namespace
}  // namespace secateur::methods
