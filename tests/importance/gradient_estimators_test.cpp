// magnitude, head_gradient and taylor against their definitions: norms summed by hand, and
// derivatives of the loss taken by finite differences rather than by autograd.
#include <gtest/gtest.h>

#include <cmath>

#include "importance/loss.h"
#include "importance_test_util.h"
#include "util/error.h"

namespace secateur::importance {
namespace {

using model::GroupKind;
using testing::load;
using testing::reference_batch;

TEST(Magnitude, EqualsTheNormOfTheGroupsSlicesByHand) {
  auto m = load("llama_gqa");
  const int64_t hd = m->config().head_dim;  // 16
  const Scores l2 = testing::run("magnitude", *m, {}, {GroupKind::head, GroupKind::ffn_neuron, GroupKind::layer});
  EstimatorOptions l1_options;
  l1_options.norm = "l1";
  const Scores l1 = testing::run("magnitude", *m, {}, {GroupKind::head}, l1_options);
  auto param = [&](const std::string& n) { return m->hf_parameter(n).to(torch::kDouble); };
  const torch::Tensor q = param("model.layers.1.self_attn.q_proj.weight").narrow(0, 2 * hd, hd);
  const torch::Tensor o = param("model.layers.1.self_attn.o_proj.weight").narrow(1, 2 * hd, hd);
  const double by_hand_l2 = std::sqrt(q.pow(2).sum().item<double>() + o.pow(2).sum().item<double>());
  const double by_hand_l1 = q.abs().sum().item<double>() + o.abs().sum().item<double>();
  // Elements are squared in fp32 (the weights' precision) and summed in float64.
  EXPECT_NEAR(l2.of(GroupKind::head, 1)[2].item<double>(), by_hand_l2, 1e-7 * by_hand_l2);
  EXPECT_NEAR(l1.of(GroupKind::head, 1)[2].item<double>(), by_hand_l1, 1e-7 * by_hand_l1);

  double neuron = 0;
  for (const char* n : {"gate_proj", "up_proj"})
    neuron += param(std::string("model.layers.0.mlp.") + n + ".weight")[7].pow(2).sum().item<double>();
  neuron += param("model.layers.0.mlp.down_proj.weight").select(1, 7).pow(2).sum().item<double>();
  EXPECT_NEAR(l2.of(GroupKind::ffn_neuron, 0)[7].item<double>(), std::sqrt(neuron), 1e-7);

  double layer = 0;
  for (const std::string& name : m->hf_names())
    if (name.rfind("model.layers.1.", 0) == 0) layer += param(name).pow(2).sum().item<double>();
  EXPECT_NEAR(l2.of(GroupKind::layer, 1)[0].item<double>(), std::sqrt(layer), 1e-7 * std::sqrt(layer));
}

TEST(Magnitude, KvUnitsCoverTheirQueryHeads) {
  auto m = load("llama_gqa");  // 6 heads, 2 KV groups: heads 3, 4, 5 read group 1
  EstimatorOptions o;
  o.norm = "l1";
  const Scores heads = testing::run("magnitude", *m, {}, {GroupKind::head, GroupKind::kv_group}, o);
  const Scores units = testing::run("magnitude", *m, {}, {GroupKind::kv_group}, o, /*kv_units=*/true);
  const double expected = heads.of(GroupKind::kv_group, 0)[1].item<double>() +
                          heads.of(GroupKind::head, 0).narrow(0, 3, 3).sum().item<double>();
  EXPECT_NEAR(units.of(GroupKind::kv_group, 0)[1].item<double>(), expected, 1e-9 * expected);
}

// The causal-LM loss in float64 (eval::task_loss computes in fp32, too coarse for finite
// differences): mean next-token cross-entropy over real tokens.
double double_loss(model::Model& m, const data::Batch& b, const model::Gates* gates) {
  const torch::Tensor logits = m.forward(b.input_ids, b.attention_mask, gates).logits.to(torch::kDouble);
  const int64_t t = logits.size(1);
  const torch::Tensor logp = torch::log_softmax(logits.narrow(1, 0, t - 1), -1);
  const torch::Tensor target = b.input_ids.narrow(1, 1, t - 1);
  const torch::Tensor keep = b.attention_mask.narrow(1, 1, t - 1).to(torch::kDouble);
  const torch::Tensor nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1);
  return ((nll * keep).sum() / keep.sum()).item<double>();
}

// L(x) for one example with one gate entry moved to `value`.
double loss_with_gate(model::Model& m, const data::Batch& x, GroupKind kind, int64_t layer, int64_t index, double value) {
  torch::NoGradGuard no_grad;
  model::Gates g = model::Gates::ones(m.config());
  for (auto* list : {&g.head, &g.kv_group, &g.ffn, &g.attn_block, &g.mlp_block, &g.layer})
    for (torch::Tensor& t : *list)
      if (t.defined()) t = t.to(torch::kDouble);  // 1 ± 1e-4 exactly enough for a central difference
  g.hidden = g.hidden.to(torch::kDouble);
  torch::Tensor* t = gate_slot(g, kind, kind == GroupKind::hidden_dim ? 0 : layer);
  if (t->dim() == 0) t->fill_(value);
  else (*t)[index] = value;
  return double_loss(m, x, &g);
}

TEST(HeadGradient, EqualsTheExpectedAbsoluteFiniteDifferenceOfTheLoss) {
  // A double model; attention still takes its softmax in fp32, so the loss is good to ~1e-7 and
  // a step of 1e-2 balances rounding (~1e-5) against truncation (~1e-5).
  auto m = load("gpt2", torch::kDouble);
  const data::Batch batch = reference_batch("gpt2");
  const std::set<GroupKind> kinds{GroupKind::head, GroupKind::ffn_neuron, GroupKind::mlp_block, GroupKind::layer};
  EstimatorOptions per_example;
  per_example.per_example = true;
  const Scores s = testing::run("head_gradient", *m, {batch}, kinds, per_example);
  const double eps = 1e-2;
  struct Probe {
    GroupKind kind;
    int64_t layer, index;
  };
  for (const Probe& p : {Probe{GroupKind::head, 0, 1}, Probe{GroupKind::head, 1, 3}, Probe{GroupKind::ffn_neuron, 1, 17},
                         Probe{GroupKind::mlp_block, 0, 0}, Probe{GroupKind::layer, 1, 0}}) {
    double expected = 0;  // E_x |∂L(x)/∂ξ| over the two examples
    for (int64_t row = 0; row < 2; ++row) {
      const data::Batch x = example(batch, row);
      const double up = loss_with_gate(*m, x, p.kind, p.layer, p.index, 1 + eps);
      const double down = loss_with_gate(*m, x, p.kind, p.layer, p.index, 1 - eps);
      expected += std::fabs((up - down) / (2 * eps)) / 2;
    }
    const double got = s.of(p.kind, p.layer)[p.index].item<double>();
    EXPECT_NEAR(got, expected, 1e-3 * expected + 1e-4) << model::to_string(p.kind) << " " << p.layer << " " << p.index;
    EXPECT_GT(got, 0.0);
  }
}

TEST(HeadGradient, DefaultIsOneBackwardPerBatch) {
  // Michel et al.'s released code: |∂L_batch/∂ξ| accumulated per batch, L_batch the batch's mean loss.
  auto m = load("gpt2", torch::kDouble);
  const data::Batch batch = reference_batch("gpt2");
  const Scores s = testing::run("head_gradient", *m, {batch, batch}, {GroupKind::head});
  const double eps = 1e-2;
  for (int64_t h : {0, 3}) {
    const double up = loss_with_gate(*m, batch, GroupKind::head, 1, h, 1 + eps);
    const double down = loss_with_gate(*m, batch, GroupKind::head, 1, h, 1 - eps);
    const double expected = std::fabs((up - down) / (2 * eps));  // the same batch twice: the mean is one
    EXPECT_NEAR(s.of(GroupKind::head, 1)[h].item<double>(), expected, 1e-3 * expected + 1e-4) << h;
  }
}

TEST(HeadGradient, NormalizeGivesEachLayerUnitNormAndKvGatesScoreGroups) {
  auto m = load("llama_gqa");
  EstimatorOptions o;
  o.normalize = true;
  const Scores s = testing::run("head_gradient", *m, {reference_batch("llama_gqa")}, {GroupKind::head, GroupKind::kv_group}, o);
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_NEAR(s.of(GroupKind::head, l).norm().item<double>(), 1.0, 1e-12);
    EXPECT_EQ(s.of(GroupKind::kv_group, l).numel(), 2);
  }
}

// L with the group's slices scaled by (1 + t): d/dt at 0 is Σ_{w∈g} w·∂L/∂w.
double loss_with_scaled_group(model::Model& m, const data::Batch& b, const model::Group& g, double t) {
  torch::NoGradGuard no_grad;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved;
  for (const model::ParamSlice& s : g.slices) {
    torch::Tensor view = m.hf_parameter(s.hf_param_name).narrow(s.dim, s.start, s.length);
    saved.emplace_back(view, view.clone());
    view.mul_(1 + t);
  }
  const double loss = double_loss(m, b, nullptr);
  for (auto& [view, copy] : saved) view.copy_(copy);
  return loss;
}

TEST(Taylor, VectorWiseEqualsTheDirectionalDerivativeAlongTheGroup) {
  auto m = load("gpt2", torch::kDouble);  // as above: fp32 softmax, so a step of 1e-2
  const data::Batch batch = reference_batch("gpt2");
  const Scores s = testing::run("taylor", *m, {batch}, {GroupKind::head, GroupKind::ffn_neuron, GroupKind::attn_block});
  const model::PrunableStructure structure = model::prunable_structure(*m);
  const double eps = 1e-2;
  for (const auto* g : {&testing::group(structure, GroupKind::head, 1, 2), &testing::group(structure, GroupKind::ffn_neuron, 0, 77),
                        &testing::group(structure, GroupKind::attn_block, 1, 0)}) {
    const double fd = (loss_with_scaled_group(*m, batch, *g, eps) - loss_with_scaled_group(*m, batch, *g, -eps)) / (2 * eps);
    EXPECT_NEAR(s.at(*g), std::fabs(fd), 1e-3 * std::fabs(fd) + 1e-4) << model::to_string(g->kind);
    EXPECT_GT(s.at(*g), 0.0);
  }
}

TEST(Taylor, KvUnitsOfGqaModelsMatchTheirDirectionalDerivative) {
  // RMSNorm computes its statistics in fp32 even for a double model: a looser tolerance.
  auto m = load("llama_gqa", torch::kDouble);
  const data::Batch batch = reference_batch("llama_gqa");
  const Scores s = testing::run("taylor", *m, {batch}, {GroupKind::kv_group}, {}, /*kv_units=*/true);
  const model::PrunableStructure structure = model::prunable_structure(*m);
  model::Group unit = testing::group(structure, GroupKind::kv_group, 0, 1);
  for (int64_t h = 3; h < 6; ++h)
    for (const model::ParamSlice& p : testing::group(structure, GroupKind::head, 0, h).slices) unit.slices.push_back(p);
  const double eps = 1e-2;
  const double fd = (loss_with_scaled_group(*m, batch, unit, eps) - loss_with_scaled_group(*m, batch, unit, -eps)) / (2 * eps);
  EXPECT_NEAR(s.of(GroupKind::kv_group, 0)[1].item<double>(), std::fabs(fd), 1e-3 * std::fabs(fd) + 1e-4);
  EXPECT_GT(std::fabs(fd), 1e-3);
}

TEST(Taylor, ElementWiseSumsEachWeightsOwnEstimate) {
  auto m = load("qwen2");
  const data::Batch batch = reference_batch("qwen2");
  EstimatorOptions o;
  o.variant = "element";
  const Scores s = testing::run("taylor", *m, {batch}, {GroupKind::head}, o);
  for (const std::string& n : m->hf_names()) m->hf_parameter(n).mutable_grad() = torch::Tensor();
  calibration_loss(*m, batch, nullptr).backward();
  const int64_t hd = m->config().head_dim;
  double expected = 0;
  for (const std::string& n : {"q_proj.weight", "q_proj.bias"}) {
    const torch::Tensor w = m->hf_parameter("model.layers.0.self_attn." + n);
    expected += (w * w.grad()).narrow(0, hd, hd).abs().sum().item<double>();
  }
  const torch::Tensor o_w = m->hf_parameter("model.layers.0.self_attn.o_proj.weight");
  expected += (o_w * o_w.grad()).narrow(1, hd, hd).abs().sum().item<double>();
  EXPECT_NEAR(s.of(GroupKind::head, 0)[1].item<double>(), expected, 1e-5 * expected);
}

TEST(Estimators, RequestsTheyCannotServeAreUserErrors) {
  auto m = load("llama_gqa");
  EXPECT_THROW(testing::run("fluctuation", *m, {reference_batch("llama_gqa")}, {GroupKind::layer}), UserError);
  EXPECT_THROW(testing::run("taylor", *m, {}, {GroupKind::head}), UserError);  // needs data
  try {
    testing::run("magnitud", *m, {}, {GroupKind::head});
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'magnitude'"), std::string::npos) << e.what();
  }
  EstimatorOptions bad;
  bad.norm = "l3";
  EXPECT_THROW(testing::run("magnitude", *m, {}, {GroupKind::head}, bad), UserError);
}

TEST(Estimators, GradientEstimatorsNeedAHead) {
  auto m = load("bert_mlm");
  // A masked LM without labels is scored by reconstructing its input: a finite, positive loss.
  const torch::Tensor loss = calibration_loss(*m, reference_batch("bert_mlm"), nullptr);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  EXPECT_GT(loss.item<double>(), 0.0);
}

}  // namespace
}  // namespace secateur::importance
