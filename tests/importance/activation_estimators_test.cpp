// activation (Wanda), fluctuation (FLAP) and block_influence (ShortGPT, Gromov et al.) against
// their formulas recomputed from activations captured by an independent tap.
#include <gtest/gtest.h>

#include <cmath>

#include "importance/activation_stats.h"
#include "importance_test_util.h"

namespace secateur::importance {
namespace {

using model::GroupKind;
using testing::load;
using testing::record;
using testing::real_tokens;
using testing::reference_batch;

data::Batch testing_rows(const data::Batch& b, int64_t row) { return example(b, row); }

TEST(Activation, EqualsWeightMagnitudeTimesInputNormSummedOverTheGroup) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  const Scores s = testing::run("activation", *m, {b}, {GroupKind::head, GroupKind::ffn_neuron});
  const testing::Recorder r = record(*m, b);
  const std::string p = "model.layers.1.";
  auto norms = [&](const std::string& w) { return real_tokens(r.inputs.at(w), b.attention_mask).pow(2).sum(0).sqrt(); };
  const int64_t hd = m->config().head_dim, h = 4;
  const torch::Tensor q = m->hf_parameter(p + "self_attn.q_proj.weight").to(torch::kDouble).abs().narrow(0, h * hd, hd);
  const torch::Tensor o = m->hf_parameter(p + "self_attn.o_proj.weight").to(torch::kDouble).abs().narrow(1, h * hd, hd);
  const double head = (q * norms(p + "self_attn.q_proj.weight").unsqueeze(0)).sum().item<double>() +
                      (o * norms(p + "self_attn.o_proj.weight").narrow(0, h * hd, hd).unsqueeze(0)).sum().item<double>();
  EXPECT_NEAR(s.of(GroupKind::head, 1)[h].item<double>(), head, 1e-5 * head);

  const int64_t n = 42;
  double neuron = 0;
  for (const char* up : {"mlp.gate_proj.weight", "mlp.up_proj.weight"})
    neuron += (m->hf_parameter(p + up).to(torch::kDouble).abs()[n] * norms(p + up)).sum().item<double>();
  neuron += m->hf_parameter(p + "mlp.down_proj.weight").to(torch::kDouble).abs().select(1, n).sum().item<double>() *
            norms(p + "mlp.down_proj.weight")[n].item<double>();
  EXPECT_NEAR(s.of(GroupKind::ffn_neuron, 1)[n].item<double>(), neuron, 1e-5 * neuron);
}

TEST(Activation, Conv1DWeightsUseTheirInputDim) {
  auto m = load("gpt2");  // c_attn [hidden, 3·q], c_proj [q, hidden]: inputs index dim 0
  const data::Batch b = reference_batch("gpt2");
  const Scores s = testing::run("activation", *m, {b}, {GroupKind::head});
  const testing::Recorder r = record(*m, b);
  const std::string c_attn = "transformer.h.0.attn.c_attn.weight", c_proj = "transformer.h.0.attn.c_proj.weight";
  const int64_t hd = m->config().head_dim, q = m->config().hidden_size, h = 2;
  auto norms = [&](const std::string& w) { return real_tokens(r.inputs.at(w), b.attention_mask).pow(2).sum(0).sqrt(); };
  const torch::Tensor w_attn = m->hf_parameter(c_attn).to(torch::kDouble).abs();
  double expected = 0;
  for (int64_t part = 0; part < 3; ++part)  // the head's q, k and v columns
    expected += (w_attn.narrow(1, part * q + h * hd, hd) * norms(c_attn).unsqueeze(1)).sum().item<double>();
  expected += (m->hf_parameter(c_proj).to(torch::kDouble).abs().narrow(0, h * hd, hd) *
               norms(c_proj).narrow(0, h * hd, hd).unsqueeze(1)).sum().item<double>();
  EXPECT_NEAR(s.of(GroupKind::head, 0)[h].item<double>(), expected, 1e-5 * expected);
}

TEST(Fluctuation, IsTheSampleVarianceOfEachChannelTimesItsSquaredColumnNorm) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  const Scores s = testing::run("fluctuation", *m, {b}, {GroupKind::head, GroupKind::ffn_neuron});
  const testing::Recorder r = record(*m, b);
  for (const char* proj : {"self_attn.o_proj.weight", "mlp.down_proj.weight"}) {
    const std::string w = std::string("model.layers.0.") + proj;
    const torch::Tensor x = real_tokens(r.inputs.at(w), b.attention_mask);  // [20 tokens, in]
    const torch::Tensor var = torch::var(x, 0);                            // unbiased, as FLAP
    const torch::Tensor per_channel = var * m->hf_parameter(w).to(torch::kDouble).pow(2).sum(0);
    EXPECT_TRUE(torch::allclose(s.channel_means.at(w), x.mean(0), 1e-6, 1e-7)) << w;
    if (std::string(proj) == "mlp.down_proj.weight") {
      EXPECT_TRUE(torch::allclose(s.of(GroupKind::ffn_neuron, 0), per_channel, 1e-5, 1e-9));
    } else {
      const torch::Tensor heads = per_channel.reshape({6, 16}).sum(1);
      EXPECT_TRUE(torch::allclose(s.of(GroupKind::head, 0), heads, 1e-5, 1e-9)) << s.of(GroupKind::head, 0) << heads;
    }
  }
}

TEST(ActivationStats, BatchSplitsDoNotChangeTheStatistics) {
  auto m = load("qwen2");
  const data::Batch b = reference_batch("qwen2");
  const std::string w = "model.layers.1.mlp.down_proj.weight";
  ActivationStats whole(*m, {w}), split(*m, {w});
  whole.collect(*m, {b}, nullptr, "whole");
  split.collect(*m, {testing_rows(b, 0), testing_rows(b, 1)}, nullptr, "split");
  EXPECT_EQ(whole.channel(w).count, 20);
  EXPECT_EQ(split.channel(w).count, 20);
  // The pooling is exact in float64; what differs is the fp32 forward itself, whose GEMMs an
  // optimised BLAS blocks differently for 1 and 2 rows (a few ulp of each activation).
  EXPECT_TRUE(torch::allclose(whole.channel(w).mean, split.channel(w).mean, 1e-5, 1e-7))
      << (whole.channel(w).mean - split.channel(w).mean).abs().max();
  EXPECT_TRUE(torch::allclose(whole.variance(w), split.variance(w), 1e-5, 1e-7));
  EXPECT_TRUE(torch::allclose(whole.channel(w).sum_sq, split.channel(w).sum_sq, 1e-5, 1e-7))
      << (whole.channel(w).sum_sq - split.channel(w).sum_sq).abs().max();
}

double mean_cos(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  return torch::cosine_similarity(real_tokens(a, mask), real_tokens(b, mask), -1).mean().item<double>();
}

TEST(BlockInfluence, IsOneMinusTheMeanCosineBetweenHiddenStates) {
  auto m = load("bert_cls");  // encoders expose every layer's raw output as a hidden state
  const data::Batch b = reference_batch("bert_cls");
  EstimatorOptions o;
  o.metric = "angular";
  o.run_length = 1;
  const Scores s = testing::run("block_influence", *m, {b}, {GroupKind::layer, GroupKind::attn_block, GroupKind::mlp_block}, o);
  model::ForwardOptions fo;
  fo.output_hidden_states = true;
  torch::NoGradGuard no_grad;
  const auto out = m->forward(b.input_ids, b.attention_mask, nullptr, fo);
  for (int64_t l = 0; l < 2; ++l)
    EXPECT_NEAR(s.of(GroupKind::layer, l)[0].item<double>(),
                1 - mean_cos(out.hidden_states[l], out.hidden_states[l + 1], b.attention_mask), 1e-6);
  // The attention block's output is the layer's output with its MLP block gated off.
  model::Gates no_mlp;
  no_mlp.mlp_block = {torch::ones({}), torch::zeros({})};
  const auto attn_only = m->forward(b.input_ids, b.attention_mask, &no_mlp, fo);
  EXPECT_NEAR(s.of(GroupKind::attn_block, 1)[0].item<double>(),
              1 - mean_cos(out.hidden_states[1], attn_only.hidden_states[2], b.attention_mask), 1e-6);
  EXPECT_NEAR(s.of(GroupKind::mlp_block, 1)[0].item<double>(),
              1 - mean_cos(attn_only.hidden_states[2], out.hidden_states[2], b.attention_mask), 1e-6);
  // Angular distance at each sequence's last real token (row 0: position 11, row 1: 7).
  ASSERT_EQ(s.layer_runs.size(), 2u);
  for (int64_t l = 0; l < 2; ++l) {
    double d = 0;
    for (const auto& [row, t] : {std::pair<int64_t, int64_t>{0, 11}, {1, 7}}) {
      const double c = torch::cosine_similarity(out.hidden_states[l][row][t], out.hidden_states[l + 1][row][t], 0).item<double>();
      d += std::acos(std::clamp(c, -1.0, 1.0)) / 3.14159265358979323846 / 2;
    }
    EXPECT_NEAR(s.layer_runs[l], d, 1e-6);
  }
}

TEST(BlockInfluence, DecoderLastLayerUsesTheRawResidualStreamNotTheFinalNorm) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  EstimatorOptions o;
  o.metric = "angular";
  o.run_length = 2;
  const Scores s = testing::run("block_influence", *m, {b}, {GroupKind::layer}, o);
  const testing::Recorder r = record(*m, b);
  model::ForwardOptions fo;
  fo.output_hidden_states = true;
  torch::NoGradGuard no_grad;
  const auto out = m->forward(b.input_ids, b.attention_mask, nullptr, fo);
  const torch::Tensor last_out = r.blocks.at({1, false});  // layer 1's MLP output, before model.norm
  EXPECT_NEAR(s.of(GroupKind::layer, 1)[0].item<double>(), 1 - mean_cos(out.hidden_states[1], last_out, b.attention_mask), 1e-6);
  ASSERT_EQ(s.layer_runs.size(), 1u);  // one run of 2 layers in a 2-layer model
  EXPECT_EQ(s.run_length, 2);
}

}  // namespace
}  // namespace secateur::importance
