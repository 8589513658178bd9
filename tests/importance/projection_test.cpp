// projection (AMP): head scores ‖h_n W_n^O‖₁ and neuron scores |activation|, averaged over the
// real calibration tokens, against a hand computation from recorded activations; the invariances
// the formula implies (degree-1 homogeneity in a head's output weights, other heads untouched; KV
// units sum their heads; Conv1D layouts agree with the Linear formula).
#include <gtest/gtest.h>

#include "importance_test_util.h"

namespace secateur::importance {
namespace {

using model::GroupKind;
using testing::load;
using testing::record;
using testing::real_tokens;
using testing::reference_batch;

// Mean over tokens of ‖x_n W_n‖₁ with x [N, in], W [in, out] (already in x·W layout).
double head_by_hand(const torch::Tensor& x, const torch::Tensor& w_in_out, int64_t head, int64_t hd) {
  const torch::Tensor contribution = x.narrow(1, head * hd, hd).matmul(w_in_out.narrow(0, head * hd, hd));
  return contribution.abs().sum().item<double>() / static_cast<double>(x.size(0));
}

TEST(Projection, HeadAndNeuronScoresMatchTheAmpFormulas) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  const Scores s = testing::run("projection", *m, {b}, {GroupKind::head, GroupKind::ffn_neuron});
  const testing::Recorder r = record(*m, b);
  const std::string p = "model.layers.1.";
  const torch::Tensor x_o = real_tokens(r.inputs.at(p + "self_attn.o_proj.weight"), b.attention_mask);  // [20, H·d]
  const torch::Tensor w_o = m->hf_parameter(p + "self_attn.o_proj.weight").to(torch::kDouble).t();       // [H·d, hidden]
  const int64_t hd = m->config().head_dim;
  for (int64_t h = 0; h < m->config().layers[1].num_heads; ++h) {
    const double expected = head_by_hand(x_o, w_o, h, hd);
    EXPECT_NEAR(s.of(GroupKind::head, 1)[h].item<double>(), expected, 1e-5 * expected) << h;
  }
  // The down projection's input is SiLU(x W_gate) ⊙ (x W_up): the neuron's activation itself.
  const torch::Tensor act = real_tokens(r.inputs.at(p + "mlp.down_proj.weight"), b.attention_mask);
  const torch::Tensor expected = act.abs().mean(0);
  EXPECT_TRUE(torch::allclose(s.of(GroupKind::ffn_neuron, 1), expected, 1e-5, 1e-9));
  // ... which is what the gate and up projections give from the MLP's input.
  const torch::Tensor h_in = real_tokens(r.inputs.at(p + "mlp.up_proj.weight"), b.attention_mask);
  const torch::Tensor gate = h_in.matmul(m->hf_parameter(p + "mlp.gate_proj.weight").to(torch::kDouble).t());
  const torch::Tensor up = h_in.matmul(m->hf_parameter(p + "mlp.up_proj.weight").to(torch::kDouble).t());
  EXPECT_TRUE(torch::allclose(s.of(GroupKind::ffn_neuron, 1), (torch::silu(gate) * up).abs().mean(0), 1e-4, 1e-7));
}

TEST(Projection, HeadScoreIsHomogeneousInItsOwnOutputWeightsOnly) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  const Scores before = testing::run("projection", *m, {b}, {GroupKind::head});
  const int64_t hd = m->config().head_dim, h = 2;
  {
    torch::NoGradGuard no_grad;
    m->hf_parameter("model.layers.0.self_attn.o_proj.weight").narrow(1, h * hd, hd).mul_(-3.0);
  }
  const Scores after = testing::run("projection", *m, {b}, {GroupKind::head});
  // Layer 0's head h triples (|−3| = 3); its other heads and every head of layer 1 see the same
  // inputs but layer 1's inputs changed, so only layer 0 is compared.
  for (int64_t i = 0; i < m->config().layers[0].num_heads; ++i) {
    const double a = before.of(GroupKind::head, 0)[i].item<double>(), z = after.of(GroupKind::head, 0)[i].item<double>();
    EXPECT_NEAR(z, i == h ? 3.0 * a : a, 1e-5 * a) << i;
  }
}

TEST(Projection, KvUnitsScoreTheSumOfTheirQueryHeads) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  const Scores heads = testing::run("projection", *m, {b}, {GroupKind::head});
  const Scores units = testing::run("projection", *m, {b}, {GroupKind::kv_group}, {}, /*kv_units=*/true);
  const int64_t per = m->config().layers[0].num_heads / m->config().layers[0].num_kv_heads;
  for (int64_t g = 0; g < m->config().layers[0].num_kv_heads; ++g) {
    const double sum = heads.of(GroupKind::head, 0).narrow(0, g * per, per).sum().item<double>();
    EXPECT_NEAR(units.of(GroupKind::kv_group, 0)[g].item<double>(), sum, 1e-9 * sum) << g;
  }
}

TEST(Projection, Conv1DLayoutGivesTheSameFormula) {
  auto m = load("gpt2");  // attn.c_proj [q, hidden]: already x·W
  const data::Batch b = reference_batch("gpt2");
  const Scores s = testing::run("projection", *m, {b}, {GroupKind::head, GroupKind::ffn_neuron});
  const testing::Recorder r = record(*m, b);
  const std::string c_proj = "transformer.h.0.attn.c_proj.weight", mlp_proj = "transformer.h.0.mlp.c_proj.weight";
  const torch::Tensor x = real_tokens(r.inputs.at(c_proj), b.attention_mask);
  const int64_t hd = m->config().head_dim, h = 1;
  const double expected = head_by_hand(x, m->hf_parameter(c_proj).to(torch::kDouble), h, hd);
  EXPECT_NEAR(s.of(GroupKind::head, 0)[h].item<double>(), expected, 1e-5 * expected);
  const torch::Tensor act = real_tokens(r.inputs.at(mlp_proj), b.attention_mask);
  EXPECT_TRUE(torch::allclose(s.of(GroupKind::ffn_neuron, 0), act.abs().mean(0), 1e-5, 1e-9));
}

}  // namespace
}  // namespace secateur::importance
