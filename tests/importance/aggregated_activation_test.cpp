// aggregated_activation (Minitron): head output norms, neuron pre-activations (bias included, in
// the Conv1D layout too) and normed hidden channels, aggregated over each sequence's real tokens
// and then over sequences, against a hand computation from recorded activations, for the paper's
// (L2 over the batch, mean over the sequence) and the other aggregations.
#include <gtest/gtest.h>

#include "importance_test_util.h"
#include "util/error.h"

namespace secateur::importance {
namespace {

using model::GroupKind;
using testing::load;
using testing::record;
using testing::reference_batch;

// Unbiased variance over dim 0, written out (Tensor::var's overloads differ between LibTorch versions).
torch::Tensor variance(const torch::Tensor& v) { return (v - v.mean(0)).pow(2).sum(0) / static_cast<double>(v.size(0) - 1); }

// agg over the real tokens of each row of per-token values [B, T, n], then over rows: [n].
torch::Tensor by_hand(const torch::Tensor& values, const torch::Tensor& mask, const std::string& batch, const std::string& seq) {
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < values.size(0); ++b) {
    const torch::Tensor v = values[b].index({mask[b].ne(0)}).to(torch::kDouble);  // [tokens, n]
    rows.push_back(seq == "mean" ? v.mean(0) : seq == "l2" ? v.norm(2, 0) : variance(v));
  }
  const torch::Tensor r = torch::stack(rows);
  return batch == "mean" ? r.mean(0) : batch == "l2" ? r.norm(2, 0) : variance(r);
}

Scores run(model::Model& m, const data::Batch& b, std::set<GroupKind> kinds, const std::string& batch,
           const std::string& seq) {
  EstimatorOptions o;
  o.batch_aggregation = batch;
  o.sequence_aggregation = seq;
  return testing::run("aggregated_activation", m, {b}, std::move(kinds), o);
}

TEST(AggregatedActivation, ScoresMatchMinitronsFormulasUnderEveryAggregation) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  const testing::Recorder r = record(*m, b);
  const int64_t hd = m->config().head_dim;
  for (const auto& [batch, seq] : std::vector<std::pair<std::string, std::string>>{{"l2", "mean"}, {"mean", "mean"}, {"var", "l2"}, {"l2", "var"}}) {
    const Scores s = run(*m, b, {GroupKind::head, GroupKind::ffn_neuron, GroupKind::hidden_dim}, batch, seq);
    const std::string p = "model.layers.1.";
    // Heads: ‖context of head h‖₂ per token, read at the output projection's input.
    const torch::Tensor ctx = r.inputs.at(p + "self_attn.o_proj.weight");
    const torch::Tensor norms = ctx.reshape({ctx.size(0), ctx.size(1), -1, hd}).norm(2, -1);
    EXPECT_TRUE(torch::allclose(s.of(GroupKind::head, 1), by_hand(norms, b.attention_mask, batch, seq), 1e-4, 1e-7)) << batch;
    // Neurons: the pre-activation of the projection feeding SiLU (gate_proj).
    const torch::Tensor pre = r.inputs.at(p + "mlp.gate_proj.weight").matmul(m->hf_parameter(p + "mlp.gate_proj.weight").t());
    EXPECT_TRUE(torch::allclose(s.of(GroupKind::ffn_neuron, 1), by_hand(pre, b.attention_mask, batch, seq), 1e-4, 1e-7)) << batch;
    // Hidden dims: the normed residual stream as attention (q_proj) and MLP (gate_proj) read it,
    // summed over every layer's two norms.
    torch::Tensor hidden = torch::zeros({m->config().hidden_size}, torch::kDouble);
    for (int64_t l = 0; l < m->config().num_layers; ++l)
      for (const std::string reader : {"self_attn.q_proj.weight", "mlp.gate_proj.weight"})
        hidden += by_hand(r.inputs.at("model.layers." + std::to_string(l) + "." + reader), b.attention_mask, batch, seq);
    EXPECT_TRUE(torch::allclose(s.of(GroupKind::hidden_dim, 0), hidden, 1e-4, 1e-7)) << batch;
  }
}

TEST(AggregatedActivation, Conv1DNeuronsIncludeTheBias) {
  auto m = load("gpt2");
  const data::Batch b = reference_batch("gpt2");
  const testing::Recorder r = record(*m, b);
  const Scores s = run(*m, b, {GroupKind::ffn_neuron}, "l2", "mean");
  const std::string p = "transformer.h.0.mlp.c_fc.";
  const torch::Tensor pre = r.inputs.at(p + "weight").matmul(m->hf_parameter(p + "weight")) + m->hf_parameter(p + "bias");
  EXPECT_TRUE(torch::allclose(s.of(GroupKind::ffn_neuron, 0), by_hand(pre, b.attention_mask, "l2", "mean"), 1e-4, 1e-7));
}

TEST(AggregatedActivation, KvUnitsScoreTheSumOfTheirQueryHeads) {
  auto m = load("llama_gqa");
  const data::Batch b = reference_batch("llama_gqa");
  const Scores heads = run(*m, b, {GroupKind::head}, "l2", "mean");
  EstimatorOptions o;
  const Scores kv = testing::run("aggregated_activation", *m, {b}, {GroupKind::kv_group}, o, /*kv_units=*/true);
  const int64_t per = m->config().layers[0].num_heads / m->config().layers[0].num_kv_heads;
  const torch::Tensor summed = heads.of(GroupKind::head, 0).reshape({-1, per}).sum(1);
  EXPECT_TRUE(torch::allclose(kv.of(GroupKind::kv_group, 0), summed, 1e-6, 1e-9));
}

TEST(AggregatedActivation, UnknownAggregationIsRefused) {
  EstimatorOptions o;
  o.name = "aggregated_activation";
  o.batch_aggregation = "max";
  EXPECT_THROW(make_estimator(o), UserError);
}

}  // namespace
}  // namespace secateur::importance
