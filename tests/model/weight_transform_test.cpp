// ForwardOptions::weights: the hook movement pruning and LoRA compute through. An identity
// transform changes nothing bitwise; zeroing a head's output-projection inputs through the
// transform equals that head's gate at 0; every family lists its layer projections.
#include <gtest/gtest.h>

#include <map>

#include "model/model.h"
#include "model_test_util.h"
#include "packing_test_util.h"

namespace secateur::model {
namespace {

using testing::fixture;
using testing::max_diff;

// Records the names it saw; returns a copy of each weight (or the weight with a slice zeroed).
class RecordingTransform : public WeightTransform {
 public:
  std::string zero_name;
  int64_t zero_dim = 0, zero_start = 0, zero_length = 0;
  mutable std::vector<std::string> seen;

  torch::Tensor apply(const std::string& name, const torch::Tensor& weight) const override {
    seen.push_back(name);
    torch::Tensor out = weight.clone();
    if (name == zero_name) out.narrow(zero_dim, zero_start, zero_length).zero_();
    return out;
  }
};

struct Case {
  std::string name;
  std::string o_proj;  // layer 0's attention output projection
  int64_t o_in_dim;    // its dim indexing the attention context
  size_t projections_per_layer;
};

const Case kCases[] = {
    {"llama_gqa", "model.layers.0.self_attn.o_proj.weight", 1, 7},
    {"bert_cls", "bert.encoder.layer.0.attention.output.dense.weight", 1, 6},
    {"gpt2", "transformer.h.0.attn.c_proj.weight", 0, 4},
    {"qwen2", "model.layers.0.self_attn.o_proj.weight", 1, 7},
};

class WeightTransformTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    torch::set_num_threads(2);
    model_ = load_model(fixture(GetParam().name));
    testing::unpack(*model_);  // plain and transformed forwards then run the same GEMMs
    ref_ = testing::load_reference(GetParam().name);
  }
  torch::Tensor logits(const Gates* gates, const WeightTransform* transform) {
    torch::NoGradGuard no_grad;
    ForwardOptions options;
    options.weights = transform;
    return model_->forward(ref_.input_ids, ref_.attention_mask, gates, options).logits;
  }
  std::shared_ptr<Model> model_;
  testing::Reference ref_;
};

TEST_P(WeightTransformTest, IdentityIsBitwiseThePlainForward) {
  RecordingTransform identity;
  const torch::Tensor plain = logits(nullptr, nullptr);
  const torch::Tensor through = logits(nullptr, &identity);
  EXPECT_TRUE(torch::equal(plain, through));
  // It was applied to every layer projection, each once, and to nothing else.
  std::vector<std::string> expected;
  for (const ProjectionWeight& p : projection_weights(*model_)) expected.push_back(p.name);
  std::sort(expected.begin(), expected.end());
  std::sort(identity.seen.begin(), identity.seen.end());
  EXPECT_EQ(identity.seen, expected);
  EXPECT_EQ(expected.size(), GetParam().projections_per_layer * model_->config().num_layers);
}

TEST_P(WeightTransformTest, ZeroingAHeadsOutputInputsEqualsItsGateAtZero) {
  const int64_t head = 1, head_dim = model_->config().head_dim;
  RecordingTransform zero;
  zero.zero_name = GetParam().o_proj;
  zero.zero_dim = GetParam().o_in_dim;
  zero.zero_start = head * head_dim;
  zero.zero_length = head_dim;
  Gates gates;
  gates.head.push_back(torch::ones({model_->config().layers[0].num_heads}));
  gates.head[0][head] = 0;
  const torch::Tensor gated = logits(&gates, nullptr);
  const torch::Tensor transformed = logits(nullptr, &zero);
  EXPECT_LE(max_diff(gated, transformed), 1e-6);
  EXPECT_GT(max_diff(gated, logits(nullptr, nullptr)), 1e-4);  // the head mattered
}

TEST_P(WeightTransformTest, GradientsReachWhatTheTransformUses) {
  // A scalar factor per projection, trained through the transform: every factor gets a gradient.
  struct Scale : WeightTransform {
    std::map<std::string, torch::Tensor> factors;
    torch::Tensor apply(const std::string& name, const torch::Tensor& w) const override { return w * factors.at(name); }
  } scale;
  for (const ProjectionWeight& p : projection_weights(*model_)) scale.factors[p.name] = torch::ones({}, torch::requires_grad());
  ForwardOptions options;
  options.weights = &scale;
  model_->forward(ref_.input_ids, ref_.attention_mask, nullptr, options).logits.to(torch::kFloat).pow(2).sum().backward();
  for (const auto& [name, factor] : scale.factors) {
    ASSERT_TRUE(factor.grad().defined()) << name;
    EXPECT_NE(factor.grad().item<double>(), 0.0) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, WeightTransformTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace secateur::model
