// Gate semantics: ones change nothing; a zero gate equals the matching weight edit or block
// removal; gradients reach every gate.
#include <gtest/gtest.h>

#include "model/model.h"
#include "model_test_util.h"

namespace secateur::model {
namespace {

using testing::fixture;
using testing::max_diff;

// Per family: the tensors a head or neuron writes through, and the dim holding its inputs.
struct Case {
  std::string name;
  std::string o_proj;   // "{}" stands for the layer index
  int64_t o_in_dim;
  std::string down_proj;
  int64_t down_in_dim;
};

std::string at_layer(const std::string& pattern, int64_t l) {
  std::string s = pattern;
  return s.replace(s.find("{}"), 2, std::to_string(l));
}

const Case kCases[] = {
    {"llama_gqa", "model.layers.{}.self_attn.o_proj.weight", 1, "model.layers.{}.mlp.down_proj.weight", 1},
    {"bert_cls", "bert.encoder.layer.{}.attention.output.dense.weight", 1, "bert.encoder.layer.{}.output.dense.weight", 1},
    {"gpt2", "transformer.h.{}.attn.c_proj.weight", 0, "transformer.h.{}.mlp.c_proj.weight", 0},
    {"qwen2", "model.layers.{}.self_attn.o_proj.weight", 1, "model.layers.{}.mlp.down_proj.weight", 1},
};

class GatesTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    torch::set_num_threads(2);
    model_ = load_model(fixture(GetParam().name));
    ref_ = testing::load_reference(GetParam().name);
  }
  torch::Tensor logits(Model& model, const Gates* gates = nullptr) {
    torch::NoGradGuard no_grad;
    return model.forward(ref_.input_ids, ref_.attention_mask, gates).logits;
  }
  // The fixture with some of its input columns (rows for Conv1D) zeroed.
  std::shared_ptr<Model> with_zeroed_inputs(const std::string& tensor, int64_t dim, int64_t start, int64_t length) {
    std::shared_ptr<Model> edited = load_model(fixture(GetParam().name));
    torch::NoGradGuard no_grad;
    edited->hf_parameter(tensor).narrow(dim, start, length).zero_();
    return edited;
  }
  // The fixture rebuilt with layer `l`'s blocks removed from its config, loaded from the same weights.
  std::shared_ptr<Model> without_blocks(int64_t l, bool attention, bool mlp) {
    ModelConfig config = model_->config();
    if (attention) config.layers[l].has_attention = false;
    if (mlp) config.layers[l].has_mlp = false;
    std::shared_ptr<Model> smaller = build_model(config);
    const LoadReport report = smaller->load_state(model_->state_dict_hf());
    EXPECT_TRUE(report.missing.empty());
    EXPECT_FALSE(report.unexpected.empty());
    smaller->eval();
    return smaller;
  }

  std::shared_ptr<Model> model_;
  testing::Reference ref_;
};

TEST_P(GatesTest, AllOnesChangeNothing) {
  const Gates gates = Gates::ones(model_->config());
  EXPECT_LE(max_diff(logits(*model_, &gates), logits(*model_)), 1e-6);
}

TEST_P(GatesTest, HeadGateAtZeroEqualsZeroedOutputColumns) {
  const Case& c = GetParam();
  const int64_t hd = model_->config().head_dim;
  Gates gates;
  gates.head.resize(2);
  gates.head[1] = torch::ones({model_->config().layers[1].num_heads});
  gates.head[1][2] = 0.0;
  const auto edited = with_zeroed_inputs(at_layer(c.o_proj, 1), c.o_in_dim, 2 * hd, hd);
  const torch::Tensor gated = logits(*model_, &gates);
  EXPECT_LE(max_diff(gated, logits(*edited)), 1e-5);
  EXPECT_GT(max_diff(gated, logits(*model_)), 1e-3);  // the head mattered
}

TEST_P(GatesTest, FfnGateAtZeroEqualsZeroedDownColumn) {
  const Case& c = GetParam();
  Gates gates;
  gates.ffn.resize(1);
  gates.ffn[0] = torch::ones({model_->config().layers[0].intermediate});
  gates.ffn[0].narrow(0, 7, 3).fill_(0.0);
  const auto edited = with_zeroed_inputs(at_layer(c.down_proj, 0), c.down_in_dim, 7, 3);
  const torch::Tensor gated = logits(*model_, &gates);
  EXPECT_LE(max_diff(gated, logits(*edited)), 1e-5);
  EXPECT_GT(max_diff(gated, logits(*model_)), 1e-4);
}

TEST_P(GatesTest, AttentionBlockGateAtZeroSkipsTheBlock) {
  Gates gates;
  gates.attn_block = {torch::Tensor(), torch::zeros({})};
  EXPECT_LE(max_diff(logits(*model_, &gates), logits(*without_blocks(1, true, false))), 1e-5);
  EXPECT_GT(max_diff(logits(*model_, &gates), logits(*model_)), 1e-3);
}

TEST_P(GatesTest, MlpBlockGateAtZeroSkipsTheBlock) {
  Gates gates;
  gates.mlp_block = {torch::zeros({})};
  EXPECT_LE(max_diff(logits(*model_, &gates), logits(*without_blocks(0, false, true))), 1e-5);
  EXPECT_GT(max_diff(logits(*model_, &gates), logits(*model_)), 1e-3);
}

TEST_P(GatesTest, LayerGateAtZeroSkipsTheLayer) {
  Gates gates;
  gates.layer = {torch::zeros({}), torch::ones({})};
  EXPECT_LE(max_diff(logits(*model_, &gates), logits(*without_blocks(0, true, true))), 1e-5);
  EXPECT_GT(max_diff(logits(*model_, &gates), logits(*model_)), 1e-3);
}

TEST_P(GatesTest, GradientsReachEveryGate) {
  const Gates gates = Gates::ones(model_->config(), torch::kCPU, /*requires_grad=*/true);
  const torch::Tensor out = model_->forward(ref_.input_ids, ref_.attention_mask, &gates).logits;
  torch::manual_seed(0);
  (out * torch::randn(out.sizes())).sum().backward();
  const std::vector<torch::Tensor> all = gates.tensors();
  EXPECT_EQ(all.size(), 6u * 2 + 1);
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_TRUE(all[i].grad().defined()) << i;
    EXPECT_GT(all[i].grad().abs().sum().item<double>(), 0.0) << i;
  }
}

TEST_P(GatesTest, HalfGatesInterpolate) {
  // A block gate of 0.5 lies between skipping and keeping the block: not a hard switch.
  Gates half, zero;
  half.mlp_block = {torch::full({}, 0.5)};
  zero.mlp_block = {torch::zeros({})};
  const torch::Tensor full = logits(*model_), skipped = logits(*model_, &zero), mid = logits(*model_, &half);
  EXPECT_GT(max_diff(mid, full), 1e-4);
  EXPECT_GT(max_diff(mid, skipped), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Families, GatesTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

TEST(Gates, KvGroupGateAtZeroSilencesItsHeads) {
  torch::set_num_threads(2);
  const auto model = load_model(fixture("llama_gqa"));  // 6 heads, 2 groups: heads 3-5 read group 1
  const testing::Reference ref = testing::load_reference("llama_gqa");
  Gates gates;
  gates.kv_group = {torch::tensor({1.0f, 0.0f})};
  const auto edited = load_model(fixture("llama_gqa"));
  torch::NoGradGuard no_grad;
  edited->hf_parameter("model.layers.0.self_attn.o_proj.weight").narrow(1, 3 * 16, 3 * 16).zero_();
  EXPECT_LE(max_diff(model->forward(ref.input_ids, ref.attention_mask, &gates).logits,
                     edited->forward(ref.input_ids, ref.attention_mask).logits), 1e-5);
}

TEST(Gates, WrongSizeIsAUserError) {
  const auto model = load_model(fixture("llama_gqa"));
  Gates gates;
  gates.head = {torch::ones({5})};
  const testing::Reference ref = testing::load_reference("llama_gqa");
  try {
    model->forward(ref.input_ids, ref.attention_mask, &gates);
    FAIL() << "expected UserError";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "gate head[0] has shape [5], expected [6]");
  }
}

}  // namespace
}  // namespace secateur::model
