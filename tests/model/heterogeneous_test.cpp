// Models whose layers differ (after pruning): block_configs in, block_configs out.
#include <gtest/gtest.h>


#include "io/weights.h"
#include "model/inspect.h"
#include "model/model.h"
#include "model/prunable.h"
#include "model_test_util.h"
#include "train/autocast.h"

namespace secateur::model {
namespace {

using nlohmann::json;

// Layer 0: 6 heads / 2 kv, FFN 120; layer 1: 4 heads / 1 kv, no MLP; layer 2: no attention, FFN 64.
json heterogeneous_llama() {
  json j = json::parse(R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 64,
    "hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2,
    "head_dim": 16, "intermediate_size": 200, "tie_word_embeddings": false})");
  j["block_configs"] = json::parse(R"([
    {"attention": {"num_heads": 6, "num_key_value_heads": 2}, "ffn": {"intermediate_size": 120}},
    {"attention": {"num_heads": 4, "num_key_value_heads": 1}, "ffn": {"no_op": true}},
    {"attention": {"no_op": true}, "ffn": {"intermediate_size": 64}}])");
  return j;
}

const std::vector<LayerShape> kShapes{{6, 2, 120, true, true}, {4, 1, 200, true, false}, {6, 2, 64, false, true}};

TEST(Heterogeneous, BlockConfigsGivePerLayerShapes) {
  const ModelConfig c = ModelConfig::from_json(heterogeneous_llama());
  EXPECT_EQ(c.layers, kShapes);
  EXPECT_FALSE(c.is_uniform());
}

TEST(Heterogeneous, DeciLMSpellingIsRead) {
  json j = heterogeneous_llama();
  j["block_configs"] = json::parse(R"([{"attention": {"n_heads_in_group": 3}, "ffn": {"ffn_mult": 1.5}},
    {"attention": {"n_heads_in_group": 6, "no_op": false}, "ffn": {"no_op": true}},
    {"attention": {"no_op": true}, "ffn": {"ffn_mult": 4.0}}])");
  const ModelConfig c = ModelConfig::from_json(j);
  // ffn_mult → 2/3 · mult · hidden rounded up to a multiple of 256, as DeciLM computes it.
  EXPECT_EQ(c.layers[0], (LayerShape{6, 2, 256, true, true}));
  EXPECT_EQ(c.layers[1], (LayerShape{6, 1, 200, true, false}));
  EXPECT_EQ(c.layers[2].intermediate, 256);
  EXPECT_FALSE(c.layers[2].has_attention);
}

TEST(Heterogeneous, BuildsRunsAndHasTheRightTensors) {
  torch::set_num_threads(2);
  torch::manual_seed(1);
  const auto model = build_model(ModelConfig::from_json(heterogeneous_llama()));
  EXPECT_EQ(model->hf_parameter("model.layers.1.self_attn.q_proj.weight").sizes(), (at::IntArrayRef{64, 96}));
  EXPECT_EQ(model->hf_parameter("model.layers.1.self_attn.k_proj.weight").sizes(), (at::IntArrayRef{16, 96}));
  EXPECT_EQ(model->hf_parameter("model.layers.0.mlp.down_proj.weight").sizes(), (at::IntArrayRef{96, 120}));
  EXPECT_FALSE(model->has_hf_parameter("model.layers.1.mlp.up_proj.weight"));
  EXPECT_FALSE(model->has_hf_parameter("model.layers.1.post_attention_layernorm.weight"));
  EXPECT_FALSE(model->has_hf_parameter("model.layers.2.self_attn.q_proj.weight"));
  EXPECT_FALSE(model->has_hf_parameter("model.layers.2.input_layernorm.weight"));
  model->eval();
  const torch::Tensor ids = torch::randint(0, 64, {2, 10}, torch::kLong);
  const torch::Tensor mask = torch::ones({2, 10}, torch::kLong);
  mask[1].narrow(0, 7, 3).zero_();
  torch::NoGradGuard no_grad;
  const ForwardOutput out = model->forward(ids, mask);
  EXPECT_EQ(out.logits.sizes(), (at::IntArrayRef{2, 10, 64}));
  EXPECT_TRUE(torch::isfinite(out.logits).all().item<bool>());

  const PrunableStructure s = prunable_structure(*model);
  EXPECT_EQ(s.count(GroupKind::head), 10u);
  EXPECT_EQ(s.count(GroupKind::kv_group), 3u);
  EXPECT_EQ(s.count(GroupKind::ffn_neuron), 184u);
  EXPECT_EQ(s.count(GroupKind::attn_block), 2u);
  EXPECT_EQ(s.count(GroupKind::mlp_block), 2u);
  EXPECT_EQ(s.count(GroupKind::layer), 3u);
}

// On a GPU without gradients the LLaMA forward fuses each residual add with the next RMSNorm
// (kernels::add_rms_norm where compiled). Asking for the hidden states takes the unfused path; both
// must give the same logits, with blocks missing (layer 1 has no MLP, layer 2 no attention) so that
// an add meets the norm of another layer's block, and in bf16 the same to its rounding.
TEST(Heterogeneous, CudaFusedResidualNormsMatchTheLayerByLayerPass) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(3);
  const auto model = build_model(ModelConfig::from_json(heterogeneous_llama()));
  model->eval();
  const torch::Tensor ids = torch::randint(0, 64, {3, 11}, torch::kLong);
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    model->to(torch::kCUDA, dtype);
    torch::NoGradGuard no_grad;
    const ForwardOutput fused = model->forward(ids.cuda());
    ForwardOptions layer_by_layer;
    layer_by_layer.output_hidden_states = true;
    const ForwardOutput plain = model->forward(ids.cuda(), {}, nullptr, layer_by_layer);
    const double tolerance = dtype == torch::kFloat ? 1e-4 : 0.1;
    EXPECT_LE((fused.logits.to(torch::kFloat) - plain.logits.to(torch::kFloat)).abs().max().item<double>(), tolerance);
    EXPECT_LE((fused.last_hidden.to(torch::kFloat) - plain.last_hidden.to(torch::kFloat)).abs().max().item<double>(),
              tolerance);
    EXPECT_EQ(fused.logits.scalar_type(), dtype);
  }
}

// Under bf16 autocast (fp32 weights, bf16 branch outputs) the add promotes to fp32 as in the
// layer-by-layer pass instead of handing the kernel two dtypes; with gradients on, no fusion.
TEST(Heterogeneous, CudaFusedResidualNormsUnderAutocastAndWithGradients) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(4);
  const auto model = build_model(ModelConfig::from_json(heterogeneous_llama()));
  model->eval();
  model->to(torch::kCUDA, torch::kFloat);
  const torch::Tensor ids = torch::randint(0, 64, {2, 9}, torch::kLong).cuda();
  ForwardOptions layer_by_layer;
  layer_by_layer.output_hidden_states = true;
  {
    torch::NoGradGuard no_grad;
    train::AutocastScope autocast(true);
    const torch::Tensor fused = model->forward(ids).logits.to(torch::kFloat);
    const torch::Tensor plain = model->forward(ids, {}, nullptr, layer_by_layer).logits.to(torch::kFloat);
    EXPECT_LE((fused - plain).abs().max().item<double>(), 1e-5);
  }
  const torch::Tensor with_grad = model->forward(ids).logits;
  EXPECT_TRUE(with_grad.requires_grad());
  with_grad.sum().backward();
  EXPECT_TRUE(model->hf_parameter("model.layers.0.input_layernorm.weight").grad().defined());
}

TEST(Heterogeneous, RoundTripsThroughBlockConfigs) {
  torch::set_num_threads(2);
  for (const std::string family : {"llama", "gpt2", "bert"}) {
    ModelConfig c;
    if (family == "llama") {
      c = ModelConfig::from_json(heterogeneous_llama());
    } else {
      // The fixtures' configs with layer 0 pruned to 3 heads / FFN 50 and layer 1's MLP gone.
      c = ModelConfig::load(testing::fixture(family == "gpt2" ? "gpt2" : "bert_cls"));
      c.layers[0] = LayerShape{3, 3, 50, true, true};
      c.layers[1].has_mlp = false;
    }
    const json written = c.to_json();
    ASSERT_TRUE(written.contains("block_configs")) << family;
    const ModelConfig back = ModelConfig::from_json(written);
    EXPECT_EQ(back.layers, c.layers) << family;

    torch::manual_seed(2);
    const auto model = build_model(c);
    model->eval();
    testing::TempDir dir;
    io::save_weights(dir.str(), model->state_dict_hf());
    model->config().save(dir.str());
    const auto loaded = load_model(dir.str());
    EXPECT_EQ(loaded->config().layers, c.layers);
    const torch::Tensor ids = torch::randint(3, 60, {2, 9}, torch::kLong);
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(model->forward(ids).logits.equal(loaded->forward(ids).logits)) << family;
  }
}

TEST(Heterogeneous, UniformPruningWritesPlainKeysAndHeadDim) {
  ModelConfig c = ModelConfig::load(testing::fixture("bert_mlm"));  // hidden 64, 4 heads of 16
  for (LayerShape& s : c.layers) s = LayerShape{2, 2, 100, true, true};
  const json j = c.to_json();
  EXPECT_FALSE(j.contains("block_configs"));
  EXPECT_EQ(j["num_attention_heads"], 2);
  EXPECT_EQ(j["intermediate_size"], 100);
  EXPECT_EQ(j["head_dim"], 16);  // hidden / heads would say 32
  const ModelConfig back = ModelConfig::from_json(j);
  EXPECT_EQ(back.head_dim, 16);
  EXPECT_EQ(back.layers, c.layers);
}

TEST(Inspect, DescribesFixture) {
  const std::string text = describe(*load_model(testing::fixture("llama_gqa")), 12);
  EXPECT_NE(text.find("llama (family llama), LlamaForCausalLM, task causal_lm"), std::string::npos) << text;
  EXPECT_NE(text.find("dtype:        float32 on cpu"), std::string::npos) << text;
  EXPECT_NE(text.find("layers 0-1: attention 6 heads / 2 kv, mlp 200"), std::string::npos) << text;
  // Embeddings and untied head, final norm, then per layer: q and o (96×96), k and v (32×96),
  // gate, up and down (96×200), two norms.
  const int64_t total = 2 * 128 * 96 + 96 + 2 * (96 * 96 * 2 + 2 * 32 * 96 + 3 * 96 * 200 + 2 * 96);
  EXPECT_NE(text.find("(" + std::to_string(total) + ")"), std::string::npos) << text;
  EXPECT_NE(text.find("head 12, kv_group 4, ffn_neuron 400, hidden_dim 96, attn_block 2, mlp_block 2, layer 2"),
            std::string::npos)
      << text;
}

TEST(Inspect, DescribesHeterogeneousModel) {
  const auto model = build_model(ModelConfig::from_json(heterogeneous_llama()));
  const std::string text = describe(*model, 16);
  EXPECT_NE(text.find("heterogeneous"), std::string::npos) << text;
  EXPECT_NE(text.find("layer 1: attention 4 heads / 1 kv, mlp -"), std::string::npos) << text;
  EXPECT_NE(text.find("layer 2: attention -, mlp 64"), std::string::npos) << text;
  EXPECT_NE(text.find("at seq_len 16"), std::string::npos) << text;
}

}  // namespace
}  // namespace secateur::model
