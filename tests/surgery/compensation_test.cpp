// FLAP's bias compensation: folding removed channels' means into the output bias keeps each
// pruned projection's mean output, the compensated gated model equals the physically pruned one,
// and a LLaMA model that gained biases exports and reloads with them.
#include <gtest/gtest.h>

#include "model/tap.h"
#include "surgery/compensation.h"
#include "surgery/surgery.h"
#include "surgery_test_util.h"
#include "util/error.h"

namespace secateur::surgery {
namespace {

using testing::fixture;

// Every projection input of one forward pass, by weight name.
class Inputs : public model::Tap {
 public:
  explicit Inputs(const model::Model& m) {
    for (const std::string& n : m.hf_names()) names_[m.hf_parameter(n).unsafeGetTensorImpl()] = n;
  }
  void projection_input(const torch::Tensor& w, int64_t in_dim, const torch::Tensor& x) override {
    const auto it = names_.find(w.unsafeGetTensorImpl());
    if (it == names_.end()) return;
    seen[it->second] = x.detach().clone();
    dims[it->second] = in_dim;
  }
  std::map<std::string, torch::Tensor> seen;
  std::map<std::string, int64_t> dims;

 private:
  std::map<const void*, std::string> names_;
};

Inputs capture(model::Model& m, const testing::Reference& ref, const model::Gates* gates = nullptr) {
  Inputs in(m);
  torch::NoGradGuard no_grad;
  model::TapScope scope(&in);
  m.forward(ref.input_ids, ref.attention_mask, gates);
  return in;
}

// Per-channel means over real tokens, as the estimators collect them.
ChannelMeans means_of(const Inputs& in, const torch::Tensor& mask) {
  ChannelMeans means;
  for (const auto& [name, x] : in.seen) {
    if (x.dim() != 3) continue;
    means.mean[name] = x.index({mask.ne(0)}).to(torch::kDouble).mean(0);
    means.in_dim[name] = in.dims.at(name);
  }
  return means;
}

struct Case {
  std::string name;
  std::string o_proj, down_proj;  // layer 1's
  std::vector<int64_t> heads, kv_groups;  // kept in layer 1
};

// 1 for the input channels of `w` that the masks keep, 0 for those they remove.
torch::Tensor kept_channels(const Case& c, const Masks& m, const model::ModelConfig& config, const std::string& w) {
  if (w == c.down_proj) {
    torch::Tensor k = torch::zeros({config.layers[1].intermediate});
    for (int64_t i : m.layers[1].ffn) k[i] = 1;
    return k;
  }
  torch::Tensor k = torch::zeros({config.q_width(1)});
  for (int64_t h : m.layers[1].heads) k.narrow(0, h * config.head_dim, config.head_dim).fill_(1);
  return k;
}

class CompensationTest : public ::testing::TestWithParam<Case> {};

TEST_P(CompensationTest, KeepsTheMeanOutputAndEqualsThePrunedModel) {
  torch::set_num_threads(2);
  const Case& c = GetParam();
  auto dense = model::load_model(fixture(c.name));
  auto original = model::load_model(fixture(c.name));  // compensate() edits existing biases in place
  dense->eval();
  original->eval();
  const testing::Reference ref = testing::reference(c.name);
  const Inputs before = capture(*dense, ref);
  Masks masks = Masks::keep_all(dense->config());
  masks.layers[1].heads = c.heads;
  masks.layers[1].kv_groups = c.kv_groups;
  masks.layers[1].ffn.clear();
  for (int64_t i = 0; i < dense->config().layers[1].intermediate; i += 3) masks.layers[1].ffn.push_back(i);
  const Compensation comp = compensate(dense, Masks::keep_all(dense->config()), masks, means_of(before, ref.attention_mask));
  EXPECT_EQ(comp.biases.size(), 2u);
  torch::NoGradGuard no_grad;
  // For the calibration inputs x, mean_t(W·(x ⊙ kept) + b') = mean_t(W·x + b): the removed
  // channels' contribution is restored on average.
  for (const std::string& w : {c.o_proj, c.down_proj}) {
    const std::string b = w.substr(0, w.size() - 7) + ".bias";
    const int64_t in_dim = before.dims.at(w);
    auto mean_output = [&](const model::Model& m, const torch::Tensor& x) {
      const torch::Tensor weight = m.hf_parameter(w);
      torch::Tensor y = in_dim == 1 ? torch::matmul(x, weight.t()) : torch::matmul(x, weight);
      if (m.has_hf_parameter(b)) y = y + m.hf_parameter(b);
      return y.index({ref.attention_mask.ne(0)}).to(torch::kDouble).mean(0);
    };
    const torch::Tensor x = before.seen.at(w);
    const torch::Tensor dense_mean = mean_output(*original, x);
    const torch::Tensor pruned_mean = mean_output(*comp.model, x * kept_channels(c, masks, dense->config(), w));
    EXPECT_LE((dense_mean - pruned_mean).abs().max().item<double>(), 1e-5) << w;
    EXPECT_GT((dense_mean - mean_output(*original, x * kept_channels(c, masks, dense->config(), w))).abs().max().item<double>(), 1e-3);
  }
  const model::Gates gates = masks.to_gates(comp.model->config());
  const auto pruned = prune(*comp.model, masks);
  const torch::Tensor gated = comp.model->forward(ref.input_ids, ref.attention_mask, &gates).logits;
  EXPECT_LE((gated - pruned->forward(ref.input_ids, ref.attention_mask).logits).abs().max().item<double>(), 1e-5);
  // Compensation changed the function: it is not the uncompensated pruning.
  EXPECT_GT((gated - original->forward(ref.input_ids, ref.attention_mask, &gates).logits).abs().max().item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Families, CompensationTest,
    ::testing::Values(Case{"llama_gqa", "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.down_proj.weight", {0, 2, 3, 5}, {0, 1}},
                      Case{"mistral", "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.down_proj.weight", {1, 3}, {0}},
                      Case{"gpt2", "transformer.h.1.attn.c_proj.weight", "transformer.h.1.mlp.c_proj.weight", {0, 3}, {0, 3}},
                      Case{"bert_cls", "bert.encoder.layer.1.attention.output.dense.weight",
                           "bert.encoder.layer.1.output.dense.weight", {0, 3}, {0, 3}}),
    [](const auto& info) { return info.param.name; });

TEST(Compensation, LlamaGainsBiasesThatSurviveExportAndReload) {
  torch::set_num_threads(2);
  auto dense = model::load_model(fixture("llama_gqa"));
  const testing::Reference ref = testing::reference("llama_gqa");
  const Masks masks = testing::random_masks(dense->config(), 3);
  const Compensation comp = compensate(dense, Masks::keep_all(dense->config()), masks, means_of(capture(*dense, ref), ref.attention_mask));
  EXPECT_TRUE(comp.hf_exact);
  EXPECT_EQ(comp.added.size(), 4u);  // o_proj and down_proj biases of both layers
  EXPECT_TRUE(comp.model->config().o_bias && comp.model->config().mlp_bias);
  const auto pruned = prune(*comp.model, masks);
  testing::TempDir dir;
  io::save_weights(dir.str(), pruned->state_dict_hf());
  pruned->config().save(dir.str());
  const auto reloaded = model::load_model(dir.str());
  ASSERT_TRUE(reloaded->has_hf_parameter("model.layers.0.self_attn.o_proj.bias"));
  ASSERT_TRUE(reloaded->has_hf_parameter("model.layers.1.mlp.down_proj.bias"));
  torch::NoGradGuard no_grad;
  EXPECT_LE((reloaded->forward(ref.input_ids, ref.attention_mask).logits -
             pruned->forward(ref.input_ids, ref.attention_mask).logits).abs().max().item<double>(), 0.0);
  EXPECT_GT(reloaded->hf_parameter("model.layers.1.mlp.down_proj.bias").abs().max().item<double>(), 0.0);
}

TEST(Compensation, Qwen2AttentionHasNoBiasToCompensateInto) {
  auto dense = model::load_model(fixture("qwen2"));
  const testing::Reference ref = testing::reference("qwen2");
  const ChannelMeans means = means_of(capture(*dense, ref), ref.attention_mask);
  Masks heads = Masks::keep_all(dense->config());
  heads.layers[0].heads = {0, 2};  // 4 heads in 2 groups: one head from each
  EXPECT_THROW(compensate(dense, Masks::keep_all(dense->config()), heads, means), UserError);
  Masks neurons = Masks::keep_all(dense->config());
  neurons.layers[0].ffn = {1, 2, 3};
  const Compensation comp = compensate(dense, Masks::keep_all(dense->config()), neurons, means);
  EXPECT_FALSE(comp.hf_exact);  // transformers' Qwen2 MLP has no bias: only secateur reloads it exactly
  EXPECT_TRUE(comp.model->has_hf_parameter("model.layers.0.mlp.down_proj.bias"));
}

TEST(Compensation, MissingMeansAreAUserError) {
  auto dense = model::load_model(fixture("llama_gqa"));
  Masks masks = Masks::keep_all(dense->config());
  masks.layers[0].ffn = {0, 1};
  EXPECT_THROW(compensate(dense, Masks::keep_all(dense->config()), masks, {}), UserError);
}

}  // namespace
}  // namespace secateur::surgery
