// Saving through state_dict_hf + to_json and loading back changes nothing, and what is saved
// is what Hugging Face saved: the same tensor names (tied copies left out) and the same config.
#include <gtest/gtest.h>

#include "io/weights.h"
#include "model/model.h"
#include "model_test_util.h"

namespace secateur::model {
namespace {

using testing::fixture;

class RoundTripTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { torch::set_num_threads(2); }
};

TEST_P(RoundTripTest, StateDictHasHuggingFaceNamesAndTensors) {
  const std::string name = GetParam();
  const std::shared_ptr<Model> model = load_model(fixture(name));
  const io::TensorMap hf = io::load_weights(fixture(name));
  const io::TensorMap ours = model->state_dict_hf();
  std::set<std::string> hf_names, our_names;
  for (const auto& [n, t] : hf) hf_names.insert(n);
  for (const auto& [n, t] : ours) our_names.insert(n);
  EXPECT_EQ(our_names, hf_names);
  for (const auto& [n, t] : ours) {
    if (!hf.count(n)) continue;
    EXPECT_TRUE(t.equal(hf.at(n))) << n;
  }
}

TEST_P(RoundTripTest, ConfigJsonRoundTripsUnchanged) {
  const ModelConfig config = ModelConfig::load(fixture(GetParam()));
  EXPECT_EQ(config.to_json(), config.raw);
  const ModelConfig again = ModelConfig::from_json(config.to_json());
  EXPECT_EQ(again.layers, config.layers);
  EXPECT_EQ(again.head_dim, config.head_dim);
  EXPECT_EQ(again.task, config.task);
}

TEST_P(RoundTripTest, SaveThenLoadGivesIdenticalOutputs) {
  const std::string name = GetParam();
  const std::shared_ptr<Model> model = load_model(fixture(name));
  testing::TempDir dir;
  io::save_weights(dir.str(), model->state_dict_hf(), 200'000);  // small shards: the index path too
  model->config().save(dir.str());
  const std::shared_ptr<Model> loaded = load_model(dir.str());
  const testing::Reference ref = testing::load_reference(name);
  torch::NoGradGuard no_grad;
  ForwardOptions options;
  options.output_hidden_states = true;
  const ForwardOutput a = model->forward(ref.input_ids, ref.attention_mask, nullptr, options);
  const ForwardOutput b = loaded->forward(ref.input_ids, ref.attention_mask, nullptr, options);
  EXPECT_TRUE(a.logits.equal(b.logits));
  ASSERT_EQ(a.hidden_states.size(), b.hidden_states.size());
  for (size_t i = 0; i < a.hidden_states.size(); ++i) EXPECT_TRUE(a.hidden_states[i].equal(b.hidden_states[i])) << i;
}

INSTANTIATE_TEST_SUITE_P(Families, RoundTripTest,
                         ::testing::Values("bert_mlm", "bert_cls", "roberta_cls", "gpt2", "llama_gqa",
                                           "llama3_rope", "qwen2", "mistral", "llama_bf16"));

TEST(RoundTrip, Bfloat16StaysBfloat16) {
  const std::shared_ptr<Model> model = load_model(fixture("llama_bf16"));
  testing::TempDir dir;
  io::save_weights(dir.str(), model->state_dict_hf());
  model->config().save(dir.str());
  const io::TensorMap saved = io::load_weights(dir.str());
  for (const auto& [name, t] : saved) EXPECT_EQ(t.scalar_type(), torch::kBFloat16) << name;
  EXPECT_EQ(load_model(dir.str())->dtype(), torch::kBFloat16);
}

TEST(RoundTrip, UntiedHeadIsSavedTiedHeadIsNot) {
  EXPECT_TRUE(load_model(fixture("llama_gqa"))->state_dict_hf().count("lm_head.weight"));
  EXPECT_FALSE(load_model(fixture("llama3_rope"))->state_dict_hf().count("lm_head.weight"));
  EXPECT_FALSE(load_model(fixture("gpt2"))->state_dict_hf().count("lm_head.weight"));
  const auto bert = load_model(fixture("bert_mlm"));
  EXPECT_FALSE(bert->state_dict_hf().count("cls.predictions.decoder.weight"));
  EXPECT_TRUE(bert->state_dict_hf().count("cls.predictions.bias"));
}

}  // namespace
}  // namespace secateur::model
