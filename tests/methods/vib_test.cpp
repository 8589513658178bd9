// VTrans' VIB gates: the KL term and its gradients against Dai et al.'s closed form, the expected
// size against a hand count at known keep probabilities, threshold masks keeping exactly the gates
// with α > τ, target masks meeting the budget with the fewest removals, the pruned model (means
// folded) equal to the evaluated one, and the Lagrangian's gradients closing gates below the target.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "fixture_model_test.h"
#include "methods/vib.h"
#include "model/prunable.h"
#include "surgery/surgery.h"

namespace secateur::methods {
namespace {

std::string fixture(const std::string& name) { return testing_support::fixture_model_path(name); }

// Sets every gate's log σ² (and the trainable μ) by `f(tensor)` in place.
void set_all(GateValues& values, const std::function<void(torch::Tensor&)>& f) {
  torch::NoGradGuard no_grad;
  for (auto* list : {&values.units, &values.ffn, &values.attn, &values.mlp})
    for (torch::Tensor& t : *list)
      if (t.defined() && t.requires_grad()) f(t);
  if (values.hidden.defined() && values.hidden.requires_grad()) f(values.hidden);
}

// Σ over head / key-value group / neuron groups of their matrix (2-D slice) and bias parameters.
std::pair<double, double> unit_matrix_and_bias(const model::Model& m) {
  model::PrunableOptions po;
  po.hidden_dims = false;
  double matrix = 0, bias = 0;
  for (const model::Group& g : model::prunable_structure(m, po).groups) {
    if (g.kind != model::GroupKind::head && g.kind != model::GroupKind::kv_group && g.kind != model::GroupKind::ffn_neuron) continue;
    for (const model::ParamSlice& s : g.slices) {
      const torch::Tensor t = m.hf_parameter(s.hf_param_name);
      (t.dim() > 1 ? matrix : bias) += static_cast<double>(t.numel() / t.size(s.dim) * s.length);
    }
  }
  return {matrix, bias};
}

std::vector<int64_t> indices_above(const torch::Tensor& log_alpha, double log_threshold) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < log_alpha.numel(); ++i)
    if (log_alpha[i].item<double>() > log_threshold) out.push_back(i);
  return out;
}

class VibTest : public testing_support::FixtureModelTest<5> {
 protected:
  // Random μ ~ N(1, 0.3) and log σ² ~ N(0, 2): some gates fall below τ = 1, most do not.
  void randomise(Vib& vib) {
    set_all(vib.mean(), [](torch::Tensor& t) { t.normal_(1.0, 0.3); });
    set_all(vib.log_variance(), [](torch::Tensor& t) { t.normal_(-0.5, 2.0); });
  }
};

TEST_P(VibTest, KlTermAndItsGradientsMatchTheClosedForm) {
  Vib vib(*model_, {});
  randomise(vib);
  const torch::Tensor kl = vib.kl();
  // By hand: Σ ½·log(1 + μ²/σ²) over every gate (μ ≡ 1 for hidden dims and blocks).
  double expected = 0;
  const GateValues mu = vib.mean(), log_var = vib.log_variance();
  auto add = [&](const torch::Tensor& m, const torch::Tensor& v) {
    if (v.defined()) expected += (0.5 * torch::log1p(m.to(torch::kDouble).pow(2) / v.to(torch::kDouble).exp())).sum().item<double>();
  };
  for (size_t l = 0; l < mu.units.size(); ++l) {
    add(mu.units[l], log_var.units[l]);
    add(mu.ffn[l], log_var.ffn[l]);
    add(mu.attn[l], log_var.attn[l]);
    add(mu.mlp[l], log_var.mlp[l]);
  }
  add(mu.hidden, log_var.hidden);
  EXPECT_NEAR(kl.item<double>(), expected, 1e-4 * expected);
  kl.backward();
  // ∂/∂μ ½·log(1 + μ²/σ²) = μ/(μ² + σ²);  ∂/∂log σ² = −½·μ²/(μ² + σ²).
  const torch::Tensor m = mu.ffn[0].detach().to(torch::kDouble), s2 = log_var.ffn[0].detach().to(torch::kDouble).exp();
  EXPECT_TRUE(torch::allclose(mu.ffn[0].grad().to(torch::kDouble), m / (m * m + s2), 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(log_var.ffn[0].grad().to(torch::kDouble), -0.5 * m * m / (m * m + s2), 1e-4, 1e-6));
  // Hidden dims' μ is the constant 1: only σ learns there.
  EXPECT_FALSE(mu.hidden.requires_grad());
  EXPECT_TRUE(log_var.hidden.grad().defined());
}

TEST_P(VibTest, ExpectedSparsityMatchesAHandCountAtKnownKeepProbabilities) {
  // log σ² = 0 and μ = 1 give log α = 0 = log τ: every keep probability is sigmoid(0) = ½, so
  // Ŝ = Σ ½·½·(M·½ + V) over units and neurons (block ½ × unit ½, hidden fraction ½).
  for (SizeMeasure measure : {SizeMeasure::params, SizeMeasure::flops}) {
    VibOptions o;
    o.measure = measure;
    o.seq_len = 16;
    Vib vib(*model_, o);
    set_all(vib.mean(), [](torch::Tensor& t) { t.fill_(1.0); });
    set_all(vib.log_variance(), [](torch::Tensor& t) { t.fill_(0.0); });
    auto [matrix, fixed] = unit_matrix_and_bias(*model_);
    if (measure == SizeMeasure::flops) {
      model::PrunableOptions po;
      po.hidden_dims = false;
      po.seq_len = 16;
      double flops = 0;
      for (const model::Group& g : model::prunable_structure(*model_, po).groups)
        if (g.kind == model::GroupKind::head || g.kind == model::GroupKind::kv_group || g.kind == model::GroupKind::ffn_neuron)
          flops += static_cast<double>(g.flops_per_token);
      matrix *= 2;               // multiply-adds per token scale with the hidden size
      fixed = flops - matrix;    // attention products do not
      EXPECT_GT(fixed, 0);
    }
    EXPECT_NEAR(vib.size_model().total(), matrix + fixed, 1e-6);
    const double hand = 1 - 0.25 * (0.5 * matrix + fixed) / (matrix + fixed);
    EXPECT_NEAR(vib.expected_sparsity().item<double>(), hand, 1e-9);
    // Wide open (σ² tiny) the model is dense.
    set_all(vib.log_variance(), [](torch::Tensor& t) { t.fill_(-30.0); });
    EXPECT_NEAR(vib.expected_sparsity().item<double>(), 0.0, 1e-9);
  }
}

TEST_P(VibTest, ThresholdMasksKeepExactlyTheGatesAboveTau) {
  for (double tau : {1.0, 3.0}) {
    VibOptions o;
    o.threshold = tau;
    Vib vib(*model_, o);
    randomise(vib);
    const surgery::Masks masks = vib.masks();
    const GateValues la = vib.log_alpha();
    const double log_tau = std::log(tau);
    const model::ModelConfig& c = model_->config();
    const bool grouped = c.family == model::Family::llama;
    size_t removed = 0;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const surgery::LayerMask& lm = masks.layers[l];
      const std::vector<int64_t> units = indices_above(la.units[l], log_tau), ffn = indices_above(la.ffn[l], log_tau);
      EXPECT_EQ(lm.attention, !units.empty() && la.attn[l].item<double>() > log_tau) << "layer " << l;
      EXPECT_EQ(lm.mlp, !ffn.empty() && la.mlp[l].item<double>() > log_tau) << "layer " << l;
      EXPECT_EQ(grouped ? lm.kv_groups : lm.heads, units) << "layer " << l;
      EXPECT_EQ(lm.ffn, ffn) << "layer " << l;
      removed += static_cast<size_t>(la.ffn[l].numel()) - ffn.size();
    }
    EXPECT_EQ(masks.hidden, indices_above(la.hidden, log_tau));
    EXPECT_GT(removed, 0u);
  }
}

TEST_P(VibTest, TargetMasksMeetTheBudgetWithTheFewestRemovals) {
  VibOptions o;
  o.rule = VibMaskRule::target;
  o.target_sparsity = 0.4;
  Vib vib(*model_, o);
  randomise(vib);
  {
    torch::NoGradGuard no_grad;  // hidden dims and blocks open: units and neurons meet the target
    GateValues& lv = vib.log_variance();
    for (auto* list : {&lv.attn, &lv.mlp})
      for (torch::Tensor& t : *list) t.fill_(-20.0);
    lv.hidden.fill_(-20.0);
  }
  const surgery::Masks masks = vib.masks();
  EXPECT_GE(vib.sparsity(masks), 0.4);
  // Every removed unit is less informative than every kept one, and putting back the most
  // informative removed unit misses the target.
  const GateValues la = vib.log_alpha();
  const model::ModelConfig& c = model_->config();
  const bool grouped = c.family == model::Family::llama;
  double max_removed = -1e30, min_kept = 1e30;
  int64_t best_layer = -1, best_index = -1;
  bool best_attention = false;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const surgery::LayerMask& lm = masks.layers[l];
    for (bool attention : {true, false}) {
      const torch::Tensor a = attention ? la.units[l] : la.ffn[l];
      const std::vector<int64_t>& kept_list = attention ? (grouped ? lm.kv_groups : lm.heads) : lm.ffn;
      const bool block = attention ? lm.attention : lm.mlp;
      const std::set<int64_t> kept(kept_list.begin(), kept_list.end());
      for (int64_t i = 0; i < a.numel(); ++i) {
        const double v = a[i].item<double>();
        if (block && kept.count(i)) {
          min_kept = std::min(min_kept, v);
        } else if (v > max_removed) {
          max_removed = v, best_layer = l, best_index = i, best_attention = attention;
        }
      }
    }
  }
  EXPECT_LE(max_removed, min_kept);
  ASSERT_GE(best_layer, 0);
  surgery::Masks back = masks;
  surgery::LayerMask& lm = back.layers[best_layer];
  if (best_attention) {
    std::vector<int64_t> units = grouped ? lm.kv_groups : lm.heads;
    units.push_back(best_index);
    std::sort(units.begin(), units.end());
    keep_units(lm, c.layers[best_layer], units, grouped);
    lm.attention = true;
  } else {
    lm.ffn.push_back(best_index);
    std::sort(lm.ffn.begin(), lm.ffn.end());
    lm.mlp = true;
  }
  EXPECT_LT(vib.sparsity(back), 0.4);
}

TEST_P(VibTest, PrunedModelWithFoldedMeansComputesTheEvaluatedModel) {
  Vib vib(*model_, {});
  randomise(vib);
  {
    torch::NoGradGuard no_grad;
    vib.log_variance().mlp.back().fill_(5.0);  // one MLP block goes
  }
  const surgery::Masks masks = vib.masks();
  EXPECT_FALSE(masks.layers.back().mlp);
  EXPECT_LT(masks.hidden.size(), static_cast<size_t>(model_->config().hidden_size));
  const torch::Tensor ids = torch::randint(5, 30, {2, 8});
  model::Gates gates;
  model::ForwardOptions options;
  vib.prepare({0, 1, 0, false}, gates, options);
  torch::NoGradGuard no_grad;
  const torch::Tensor evaluated = model_->forward(ids, {}, &gates).logits;
  auto copy = model::load_model(fixture(GetParam()));
  copy->eval();
  vib.fold_means(*copy);
  const torch::Tensor pruned = surgery::prune(*copy, masks)->forward(ids).logits;
  EXPECT_LE((evaluated - pruned).abs().max().item<double>(), 1e-5);
  // Without folding the means the pruned model differs: the test is not vacuous.
  const torch::Tensor unfolded = surgery::prune(*model_, masks)->forward(ids).logits;
  EXPECT_GT((evaluated - unfolded).abs().max().item<double>(), 1e-3);
}

TEST_P(VibTest, TrainingGatesAreReparameterisedSamples) {
  Vib vib(*model_, {});
  set_all(vib.log_variance(), [](torch::Tensor& t) { t.fill_(std::log(0.04)); });  // σ = 0.2
  model::Gates gates;
  model::ForwardOptions options;
  vib.prepare({0, 1, 0, true}, gates, options);
  const model::ModelConfig& c = model_->config();
  // z − μ over a layer's neurons is N(0, σ²): its sample deviation is near σ.
  const torch::Tensor noise = (gates.ffn[0] - vib.mean().ffn[0]).detach();
  EXPECT_NEAR(noise.std().item<double>(), 0.2, 0.2 * 5 / std::sqrt(static_cast<double>(c.layers[0].intermediate)));
  model_->forward(torch::randint(5, 30, {1, 6}), {}, &gates).logits.sum().backward();
  EXPECT_TRUE(vib.mean().ffn[0].grad().defined());
  EXPECT_TRUE(vib.log_variance().ffn[0].grad().defined());
  EXPECT_TRUE(vib.log_variance().hidden.grad().defined());
}

// Below the target with λ1 < 0 < λ2, descent on the Lagrangian closes gates: it raises every log σ²
// and lowers every |μ|, and λ1, λ2 ascend along ŝ − t and (ŝ − t)².
TEST_P(VibTest, LagrangianGradientsCloseGatesBelowTheTarget) {
  VibOptions o;
  o.target_sparsity = 0.6;
  Vib vib(*model_, o);
  set_all(vib.log_variance(), [](torch::Tensor& t) { t.normal_(-0.3, 0.2); });  // near τ: unsaturated
  {
    torch::NoGradGuard no_grad;
    vib.lagrangian().lambda1().fill_(-1.0);
    vib.lagrangian().lambda2().fill_(1.0);
  }
  const torch::Tensor s = vib.expected_sparsity();
  const double gap = s.item<double>() - 0.6;
  ASSERT_LT(gap, 0);
  vib.lagrangian().term(s, 0.6).backward();
  EXPECT_NEAR(vib.lagrangian().lambda1().grad().item<double>(), gap, 1e-6);
  EXPECT_NEAR(vib.lagrangian().lambda2().grad().item<double>(), gap * gap, 1e-6);
  for (const torch::Tensor& t : vib.log_variance().tensors()) EXPECT_TRUE((t.grad() < 0).all().item<bool>());
  for (const torch::Tensor& t : vib.mean().ffn) EXPECT_TRUE((t.grad() * t.detach().sign() > 0).all().item<bool>());
  EXPECT_TRUE(vib.param_groups()[1].maximize);
}

TEST_P(VibTest, CheckpointRestoresEveryGateAndMultiplier) {
  Vib trained(*model_, {});
  randomise(trained);
  {
    torch::NoGradGuard no_grad;
    trained.lagrangian().lambda1().fill_(-0.7);
  }
  io::TensorMap tensors;
  nlohmann::json state;
  trained.save(tensors, state);
  Vib fresh(*model_, {});
  fresh.load(tensors, state);
  const std::vector<torch::Tensor> a = trained.log_alpha().tensors(), b = fresh.log_alpha().tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  EXPECT_EQ(fresh.lagrangian().lambda1().item<double>(), trained.lagrangian().lambda1().item<double>());
  EXPECT_EQ(fresh.masks().to_json(), trained.masks().to_json());
}

INSTANTIATE_TEST_SUITE_P(Families, VibTest, ::testing::Values("bert_cls", "gpt2", "llama_gqa"));

}  // namespace
}  // namespace secateur::methods
