// LoRA through the weight transform: B = 0 is the base model bitwise, merging equals the
// unmerged forward, and LoRAPrune's LoRA-guided importance (eq. 10) on a hand-computed case.
#include <gtest/gtest.h>

#include "fixture_model_test.h"
#include "methods/lora.h"
#include "model/packing_test_util.h"

namespace secateur::methods {
namespace {

std::string fixture(const std::string& name) { return testing_support::fixture_model_path(name); }

class LoraTest : public testing_support::FixtureModelTest<9> {
 protected:
  void SetUp() override {
    FixtureModelTest::SetUp();
    // A forward through LoRA runs q/k/v as separate GEMMs; so must the plain forward it is
    // compared with, bitwise, rather than one packed GEMM that rounds differently.
    model::testing::unpack(*model_);
    ids_ = torch::randint(5, 30, {2, 8});
  }
  torch::Tensor logits(const model::WeightTransform* t) {
    torch::NoGradGuard no_grad;
    model::ForwardOptions o;
    o.weights = t;
    return model_->forward(ids_, {}, nullptr, o).logits;
  }
  torch::Tensor ids_;
};

TEST_P(LoraTest, ZeroBIsTheBaseModel) {
  Lora lora(*model_, {4, 8});
  EXPECT_TRUE(torch::equal(logits(&lora), logits(nullptr)));
  EXPECT_EQ(lora.parameters().size(), 2 * model::projection_weights(*model_).size());
}

TEST_P(LoraTest, MergedEqualsUnmerged) {
  Lora lora(*model_, {4, 8});
  {
    torch::NoGradGuard no_grad;
    for (const std::string& n : lora.names()) lora.b(n).normal_(0, 0.05);
  }
  const torch::Tensor unmerged = logits(&lora);
  EXPECT_GT((unmerged - logits(nullptr)).abs().max().item<double>(), 1e-4);  // the adapters matter
  lora.merge_into(*model_);
  EXPECT_LE((logits(nullptr) - unmerged).abs().max().item<double>(), 1e-6);
  EXPECT_LE((logits(&lora) - unmerged).abs().max().item<double>(), 1e-6);  // B is zero after merging
}

TEST_P(LoraTest, GradientsReachTheAdapters) {
  Lora lora(*model_, {2, 2});
  model::ForwardOptions o;
  o.weights = &lora;
  model_->forward(ids_, {}, nullptr, o).logits.pow(2).sum().backward();
  for (const std::string& n : lora.names()) {
    ASSERT_TRUE(lora.b(n).grad().defined()) << n;
    EXPECT_GT(lora.b(n).grad().abs().sum().item<double>(), 0.0) << n;  // ∂L/∂B ≠ 0 at B = 0
  }
}

INSTANTIATE_TEST_SUITE_P(Families, LoraTest, ::testing::Values("bert_cls", "gpt2", "llama_gqa"));

TEST(LoraImportance, Eq10OnAHandComputedCase) {
  torch::set_num_threads(2);
  auto model = model::load_model(fixture("bert_cls"));
  Lora lora(*model, {1, 1.0});  // α/r = 1
  const std::string name = lora.names().front();  // an nn.Linear weight: [out, in] as given
  const torch::Tensor a = torch::tensor({{1.0f, 2.0f}});
  const torch::Tensor b = torch::tensor({{3.0f}, {4.0f}});
  const torch::Tensor ga = torch::tensor({{0.5f, -1.0f}});
  const torch::Tensor gb = torch::tensor({{2.0f}, {1.0f}});
  const torch::Tensor w = torch::eye(2);
  // ∂L/∂(BA) ≈ G_B·A + B·G_A − G_B·G_A = [[2.5, 3], [2.5, −1]]; W + BA = [[4, 6], [4, 9]].
  const torch::Tensor expected = torch::tensor({{100.0f, 324.0f}, {100.0f, 81.0f}});
  EXPECT_TRUE(torch::allclose(lora.importance(name, w, a, b, ga, gb), expected));
}

}  // namespace
}  // namespace secateur::methods
