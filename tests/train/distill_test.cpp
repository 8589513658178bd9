// Distillation: the KD loss against hand-computed values, zero for identical models, CoFi's
// dynamic layer matching on constructed cases, and a distilled student moving toward its teacher.
#include <gtest/gtest.h>

#include <cmath>

#include "train/distill.h"
#include "train/trainer.h"

namespace secateur::train {
namespace {

std::shared_ptr<model::Model> load(const std::string& name) {
  return model::load_model(std::string(SECATEUR_FIXTURES) + "/models/" + name);
}

TEST(KdLoss, EqualsTheClosedFormOnHandComputedLogits) {
  // One position, two classes. T = 2: p_t = softmax([2, 0]/2) = softmax([1, 0]),
  // p_s = softmax([0, 0]) = (1/2, 1/2). KL = Σ p_t log(p_t / p_s); loss = T²·KL.
  const double e = std::exp(1.0);
  const double pt0 = e / (e + 1), pt1 = 1 / (e + 1);
  const double kl = pt0 * std::log(pt0 / 0.5) + pt1 * std::log(pt1 / 0.5);
  const auto s = torch::tensor({0.0f, 0.0f}).view({1, 2});
  const auto t = torch::tensor({2.0f, 0.0f}).view({1, 2});
  EXPECT_NEAR(kd_loss(s, t, 2.0).item<double>(), 4 * kl, 1e-6);
  // Masked mean over positions: a masked-out position with a large KL does not count.
  const auto s2 = torch::tensor({0.0f, 0.0f, 9.0f, -9.0f}).view({1, 2, 2});
  const auto t2 = torch::tensor({2.0f, 0.0f, -9.0f, 9.0f}).view({1, 2, 2});
  const auto mask = torch::tensor({1, 0}).view({1, 2});
  EXPECT_NEAR(kd_loss(s2, t2, 2.0, mask).item<double>(), 4 * kl, 1e-6);
}

TEST(KdLoss, ZeroWhenStudentEqualsTeacherAndGradientPointsToTheTeacher) {
  auto g = torch::make_generator<at::CPUGeneratorImpl>(3);
  const auto t = torch::randn({2, 5, 11}, g);
  EXPECT_NEAR(kd_loss(t, t, 3.0).item<double>(), 0.0, 1e-7);
  // ∂/∂z_s of T²·KL at temperature T is T·(p_s − p_t) / positions.
  auto s = torch::randn({1, 1, 4}, g).set_requires_grad(true);
  const auto tt = torch::randn({1, 1, 4}, g);
  kd_loss(s, tt, 2.0).backward();
  const auto expected = 2.0 * (torch::softmax(s.detach() / 2.0, -1) - torch::softmax(tt / 2.0, -1));
  EXPECT_TRUE(torch::allclose(s.grad(), expected, 1e-5, 1e-6));
}

TEST(HiddenMse, IgnoresPaddingAndEqualsMseLossWithout) {
  auto g = torch::make_generator<at::CPUGeneratorImpl>(5);
  const auto a = torch::randn({2, 3, 4}, g), b = torch::randn({2, 3, 4}, g);
  EXPECT_NEAR(hidden_mse(a, b).item<double>(), torch::mse_loss(a, b).item<double>(), 1e-6);
  const auto mask = torch::tensor({1, 1, 0, 1, 0, 0}).view({2, 3});
  const auto expected = ((a - b).pow(2).sum(-1) * mask).sum() / (3.0 * 4.0);
  EXPECT_NEAR(hidden_mse(a, b, mask).item<double>(), expected.item<double>(), 1e-6);
}

TEST(LayerMatching, EachTeacherLayerTakesTheClosestRemainingStudentLayer) {
  // Rows: teacher layers; columns: student layers. Teacher 0 → student 1 (smallest);
  // teacher 1's smallest is student 0, but matches never go backwards: student 2 (0.3) wins
  // among 1..3; teacher 2 → student 3.
  const auto losses = torch::tensor({0.5, 0.1, 0.9, 0.8,    //
                                     0.05, 0.6, 0.3, 0.7,   //
                                     0.9, 0.9, 0.8, 0.2}).view({3, 4});
  EXPECT_EQ(match_layers(losses), (std::vector<int64_t>{1, 2, 3}));
  // A later teacher layer may share the previous match (CoFi allows j ≥ previous).
  EXPECT_EQ(match_layers(torch::tensor({0.9, 0.1, 0.5, 0.2, 0.1, 0.3}).view({2, 3})), (std::vector<int64_t>{1, 1}));
}

TEST(LayerMatching, FindsTheStudentLayersThatReproduceTheTeachersOnAConstructedModel) {
  // Student layer outputs 1..4: noise, teacher layer 2 (+0.01), noise, teacher layer 4 (−0.01).
  // Matching teacher layer 2 must pick the student's second layer output (index 1 among the
  // layer outputs) with MSE 0.01² — not the embeddings, which are shared but never matched.
  auto teacher = load("llama_gqa");
  auto g = torch::make_generator<at::CPUGeneratorImpl>(9);
  std::vector<torch::Tensor> th, sh;
  for (int i = 0; i <= 4; ++i) th.push_back(torch::randn({1, 3, teacher->config().hidden_size}, g));
  sh = {th[0], torch::randn_like(th[1]), th[2] + 0.01, torch::randn_like(th[1]), th[4] - 0.01};
  DistillOptions o;
  o.alpha_logits = 0;
  o.alpha_hidden = 1;
  o.projection = false;
  o.teacher_layers = {2};
  Distillation d(teacher, teacher->config(), o);
  const auto loss = d.layer_loss(sh, th, {});
  EXPECT_EQ(d.last_matching(), (std::vector<int64_t>{1}));
  EXPECT_NEAR(loss.item<double>(), 1e-4, 1e-7);
}

TEST(Distillation, StudentEqualToTeacherHasZeroLossAndMatchesItsOwnLayers) {
  auto teacher = load("gpt2");
  auto student = load("gpt2");
  DistillOptions o;
  o.alpha_logits = 1;
  o.alpha_hidden = 1;
  o.temperature = 2;
  auto d = std::make_shared<Distillation>(teacher, student->config(), o);
  data::Batch b;
  b.input_ids = torch::randint(128, {2, 8}, torch::kLong);
  b.attention_mask = torch::ones_like(b.input_ids);
  model::ForwardOptions f;
  f.output_hidden_states = true;
  student->eval();
  StepMetrics metrics;
  StepInfo info;
  info.logging = true;
  const auto out = student->forward(b.input_ids, b.attention_mask, nullptr, f);
  EXPECT_NEAR(d->loss(info, b, out, metrics).item<double>(), 0.0, 1e-6);
  EXPECT_EQ(d->last_matching(), (std::vector<int64_t>{0, 1}));  // identical layers match themselves
}

}  // namespace
}  // namespace secateur::train
