// Every family's outputs against Hugging Face's own (tests/fixtures/models, made by transformers).
#include <gtest/gtest.h>

#include <fstream>

#include "model/model.h"
#include "model_test_util.h"

namespace secateur::model {
namespace {

using testing::fixture;
using testing::load_reference;
using testing::max_diff_on_tokens;

class FixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { torch::set_num_threads(2); }

  // Logits and last hidden state of `model` on the reference batch, within `tolerance` of HF's.
  void expect_matches_reference(Model& model, const std::string& name, double tolerance, bool exact) {
    const testing::Reference ref = load_reference(name);
    torch::NoGradGuard no_grad;
    ForwardOptions options;
    options.exact_attention = exact;
    const ForwardOutput out = model.forward(ref.input_ids, ref.attention_mask, nullptr, options);
    EXPECT_EQ(out.logits.sizes(), ref.logits.sizes());
    EXPECT_LE(max_diff_on_tokens(out.logits, ref.logits, ref.attention_mask), tolerance) << name << " logits";
    EXPECT_LE(max_diff_on_tokens(out.last_hidden, ref.last_hidden_state, ref.attention_mask), tolerance)
        << name << " last hidden state";
  }
};

TEST_P(FixtureTest, SafetensorsMatchesHuggingFace) {
  const std::string name = GetParam();
  const std::shared_ptr<Model> model = load_model(fixture(name));
  EXPECT_EQ(model->dtype(), torch::kFloat32);
  expect_matches_reference(*model, name, 1e-4, false);
}

TEST_P(FixtureTest, ExactAttentionMatchesHuggingFace) {
  const std::string name = GetParam();
  expect_matches_reference(*load_model(fixture(name)), name, 1e-4, true);
}

TEST_P(FixtureTest, TorchScriptMatchesHuggingFace) {
  const std::string name = GetParam();
  const std::string pt = fixture(name) + "/model.pt";
  ASSERT_TRUE(std::ifstream(pt).good()) << pt;
  expect_matches_reference(*load_model(pt), name, 1e-4, false);
}

TEST_P(FixtureTest, HiddenStatesEndWithLastHidden) {
  const std::string name = GetParam();
  const std::shared_ptr<Model> model = load_model(fixture(name));
  const testing::Reference ref = load_reference(name);
  torch::NoGradGuard no_grad;
  ForwardOptions options;
  options.output_hidden_states = true;
  const ForwardOutput out = model->forward(ref.input_ids, ref.attention_mask, nullptr, options);
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), model->config().num_layers + 1);
  EXPECT_TRUE(out.hidden_states.back().equal(out.last_hidden));
}

INSTANTIATE_TEST_SUITE_P(Families, FixtureTest,
                         ::testing::Values("bert_mlm", "bert_cls", "roberta_cls", "gpt2", "llama_gqa",
                                           "llama3_rope", "qwen2", "mistral"));

TEST(Fixtures, Bfloat16WeightsRunInBfloat16) {
  torch::set_num_threads(2);
  const std::shared_ptr<Model> model = load_model(fixture("llama_bf16"));
  EXPECT_EQ(model->dtype(), torch::kBFloat16);
  const testing::Reference ref = load_reference("llama_bf16");
  torch::NoGradGuard no_grad;
  const ForwardOutput out = model->forward(ref.input_ids, ref.attention_mask);
  EXPECT_EQ(out.logits.scalar_type(), torch::kBFloat16);
  // bf16 keeps 8 bits of mantissa: logits of magnitude ~4 round to steps of ~0.03, and two
  // implementations may round differently along the way.
  EXPECT_LE(max_diff_on_tokens(out.logits, ref.logits, ref.attention_mask), 0.1);
  EXPECT_LE(max_diff_on_tokens(out.last_hidden, ref.last_hidden_state, ref.attention_mask), 0.1);
}

TEST(Fixtures, Bfloat16CheckpointLoadsAsFloat32OnRequest) {
  LoadOptions options;
  options.dtype = torch::kFloat32;
  const std::shared_ptr<Model> model = load_model(fixture("llama_bf16"), options);
  EXPECT_EQ(model->dtype(), torch::kFloat32);
  const std::shared_ptr<Model> gqa = load_model(fixture("llama_gqa"));
  // The bf16 weights are llama_gqa's rounded: equal within bf16's relative precision.
  const torch::Tensor a = model->hf_parameter("model.layers.0.self_attn.q_proj.weight");
  const torch::Tensor b = gqa->hf_parameter("model.layers.0.self_attn.q_proj.weight");
  EXPECT_TRUE(torch::allclose(a, b, 1e-2, 1e-3));
  EXPECT_FALSE(a.equal(b));
}

TEST(Fixtures, ShardedEqualsUnsharded) {
  torch::set_num_threads(2);
  const std::shared_ptr<Model> sharded = load_model(fixture("llama_sharded"));
  const std::shared_ptr<Model> single = load_model(fixture("llama_gqa"));
  const io::TensorMap a = sharded->state_dict_hf(), b = single->state_dict_hf();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(t.equal(b.at(name))) << name;
  const testing::Reference ref = load_reference("llama_gqa");
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(sharded->forward(ref.input_ids, ref.attention_mask).logits.equal(
      single->forward(ref.input_ids, ref.attention_mask).logits));
}

}  // namespace
}  // namespace secateur::model
