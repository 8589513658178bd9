// Surgery's contract: for any valid masks, the physically pruned model computes exactly what the
// dense model computes through Masks::to_gates, on every family; and it saves and loads back.
#include <gtest/gtest.h>

#include "model/config.h"
#include "model/prunable.h"
#include "surgery/surgery.h"
#include "surgery_test_util.h"
#include "util/error.h"

namespace secateur::surgery {
namespace {

using testing::fixture;

const char* kFamilies[] = {"bert_mlm", "bert_cls", "roberta_cls", "gpt2", "llama_gqa", "llama3_rope", "qwen2", "mistral", "llama_sharded"};

struct Case {
  std::string name;
  testing::MaskOptions options;
  std::string label;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const char* f : kFamilies) {
    out.push_back({f, {false, false}, std::string(f) + "_widths"});
    out.push_back({f, {true, false}, std::string(f) + "_blocks"});
    out.push_back({f, {true, true}, std::string(f) + "_hidden"});
  }
  return out;
}

class SurgeryEquality : public ::testing::TestWithParam<Case> {};

TEST_P(SurgeryEquality, PrunedLogitsEqualGatedLogits) {
  torch::set_num_threads(2);
  const Case& c = GetParam();
  const auto dense = model::load_model(fixture(c.name));
  dense->eval();
  const testing::Reference ref = testing::reference(c.name);
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    const Masks masks = testing::random_masks(dense->config(), seed * 7919 + c.name.size(), c.options);
    const model::Gates gates = masks.to_gates(dense->config());
    const auto pruned = prune(*dense, masks);
    torch::NoGradGuard no_grad;
    const torch::Tensor gated = dense->forward(ref.input_ids, ref.attention_mask, &gates).logits;
    const torch::Tensor physical = pruned->forward(ref.input_ids, ref.attention_mask).logits;
    const double scale = std::max(1.0, gated.abs().max().item<double>());
    EXPECT_LE(testing::max_diff_on_tokens(gated, physical, ref.attention_mask), 1e-5 * scale) << "seed " << seed;
    // The pruning did something the logits can see, and shrank the model.
    EXPECT_GT((gated - dense->forward(ref.input_ids, ref.attention_mask).logits).abs().max().item<double>(), 1e-4);
    EXPECT_LT(model::parameter_count(*pruned).total, model::parameter_count(*dense).total);
    EXPECT_EQ(pruned->config().num_layers, masks.kept_layers());
    int64_t j = 0;
    for (const LayerMask& l : masks.layers) {
      if (!l.keep) continue;
      const model::LayerShape& s = pruned->config().layers[j++];
      EXPECT_EQ(s.has_attention, l.attention);
      EXPECT_EQ(s.has_mlp, l.mlp);
      if (l.attention) EXPECT_EQ(s.num_heads, static_cast<int64_t>(l.heads.size()));
      if (l.mlp) EXPECT_EQ(s.intermediate, static_cast<int64_t>(l.ffn.size()));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, SurgeryEquality, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.label; });

TEST(Surgery, HeterogeneousResultSavesAndLoadsBack) {
  torch::set_num_threads(2);
  const auto dense = model::load_model(fixture("llama_gqa"));
  Masks masks = Masks::keep_all(dense->config());
  masks.layers[0].kv_groups = {1};
  masks.layers[0].heads = {3, 5};
  masks.layers[1].ffn = {0, 5, 9, 100, 199};
  masks.layers[1].attention = false;
  const auto pruned = prune(*dense, masks);
  EXPECT_FALSE(pruned->config().is_uniform());
  testing::TempDir dir;
  io::save_weights(dir.str(), pruned->state_dict_hf());
  pruned->config().save(dir.str());
  const auto reloaded = model::load_model(dir.str());
  EXPECT_EQ(reloaded->config().layers, pruned->config().layers);
  const testing::Reference ref = testing::reference("llama_gqa");
  torch::NoGradGuard no_grad;
  EXPECT_LE((reloaded->forward(ref.input_ids, ref.attention_mask).logits -
             pruned->forward(ref.input_ids, ref.attention_mask).logits).abs().max().item<double>(), 0.0);
  EXPECT_EQ(reloaded->config().layers[0].num_heads, 2);
  EXPECT_EQ(reloaded->config().layers[0].num_kv_heads, 1);
  EXPECT_FALSE(reloaded->config().layers[1].has_attention);
}

TEST(Surgery, DroppingALayerRenumbersTheRest) {
  const auto dense = model::load_model(fixture("gpt2"));
  Masks masks = Masks::keep_all(dense->config());
  masks.layers[0].keep = false;
  const auto pruned = prune(*dense, masks);
  ASSERT_EQ(pruned->config().num_layers, 1);
  EXPECT_TRUE(pruned->config().is_uniform());  // one layer left: plain HF keys, no block_configs
  EXPECT_TRUE(torch::equal(pruned->hf_parameter("transformer.h.0.mlp.c_fc.weight"),
                           dense->hf_parameter("transformer.h.1.mlp.c_fc.weight")));
}

TEST(Masks, InvalidMasksAreUserErrorsNamingTheLayer) {
  const model::ModelConfig c = model::ModelConfig::load(fixture("llama_gqa"));  // 6 heads, 2 groups
  auto expect_error = [&](Masks m, const std::string& text) {
    try {
      m.validate(c);
      FAIL() << "expected: " << text;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  Masks m = Masks::keep_all(c);
  m.layers[1].heads = {0, 1, 3};  // group 0 keeps 2 heads, group 1 keeps 1
  expect_error(m, "layer 1 keeps 2 and 1 query heads in two key/value groups");
  m = Masks::keep_all(c);
  m.layers[0].kv_groups = {0};  // group 1 removed, its heads 3-5 kept
  expect_error(m, "layer 0 removes key/value group 1 but keeps 3 of its query heads");
  m = Masks::keep_all(c);
  m.layers[0].ffn = {5, 3};
  expect_error(m, "layer 0 ffn must list kept indices once each, in ascending order");
  m = Masks::keep_all(c);
  m.layers[0].heads.clear();
  m.layers[0].kv_groups.clear();
  expect_error(m, "keeps its attention block but no head");
  m = Masks::keep_all(c);
  m.layers[0].keep = m.layers[1].keep = false;
  expect_error(m, "every layer removed");
}

TEST(Masks, JsonRoundTripAndGates) {
  const model::ModelConfig c = model::ModelConfig::load(fixture("llama_gqa"));
  const Masks m = testing::random_masks(c, 5, {true, true});
  const Masks back = Masks::from_json(nlohmann::json::parse(m.to_json().dump()), c, "pruning.json");
  EXPECT_EQ(back.to_json(), m.to_json());
  EXPECT_THROW(Masks::from_json(nlohmann::json{{"layers", 3}}, c, "pruning.json"), UserError);
  const model::Gates all = Masks::keep_all(c).to_gates(c);
  EXPECT_TRUE(all.tensors().empty());  // the identity pruning needs no gate at all
}

}  // namespace
}  // namespace secateur::surgery
