// config.json parsing: every family's keys, transformers 4 and 5 spellings, heterogeneous
// block_configs, and the exact UserError for each kind of bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/config.h"
#include "model/model.h"
#include "model/rope.h"
#include "model_test_util.h"
#include "util/error.h"

namespace secateur::model {
namespace {

using nlohmann::json;
using testing::fixture;

json llama_json() {
  return json::parse(R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 64,
    "hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
    "intermediate_size": 200, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false})");
}

std::string error_of(const json& j) {
  try {
    ModelConfig::from_json(j, "config.json");
  } catch (const UserError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Config, ParsesEveryFixture) {
  const ModelConfig bert = ModelConfig::load(fixture("bert_mlm"));
  EXPECT_EQ(bert.family, Family::encoder);
  EXPECT_EQ(bert.task, Task::masked_lm);
  EXPECT_EQ(bert.head_dim, 16);
  EXPECT_DOUBLE_EQ(bert.norm_eps, 1e-12);
  EXPECT_EQ(bert.activation, "gelu");
  const ModelConfig cls = ModelConfig::load(fixture("roberta_cls"));
  EXPECT_EQ(cls.task, Task::sequence_classification);
  EXPECT_EQ(cls.num_labels, 3);
  EXPECT_EQ(cls.pad_token_id, 1);
  const ModelConfig gpt2 = ModelConfig::load(fixture("gpt2"));
  EXPECT_EQ(gpt2.family, Family::gpt2);
  EXPECT_EQ(gpt2.intermediate_size, 128);
  EXPECT_EQ(gpt2.activation, "gelu_new");
  EXPECT_FALSE(gpt2.pad_token_id.has_value());
  const ModelConfig gqa = ModelConfig::load(fixture("llama_gqa"));
  EXPECT_EQ(gqa.layers[1], (LayerShape{6, 2, 200, true, true}));
  EXPECT_FALSE(gqa.tie_word_embeddings);
  EXPECT_FALSE(gqa.qkv_bias);
  const ModelConfig rope = ModelConfig::load(fixture("llama3_rope"));
  EXPECT_EQ(rope.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(rope.rope_theta, 500000.0);
  EXPECT_EQ(rope.rope_scaling.original_max_position_embeddings, 32);
  EXPECT_TRUE(rope.tie_word_embeddings);
  const ModelConfig qwen = ModelConfig::load(fixture("qwen2"));
  EXPECT_TRUE(qwen.qkv_bias);
  EXPECT_FALSE(qwen.o_bias);
  EXPECT_EQ(ModelConfig::load(fixture("mistral")).num_kv_heads, 1);
  EXPECT_EQ(ModelConfig::load(fixture("llama_bf16")).torch_dtype, "bfloat16");
}

TEST(Config, Transformers4RopeKeysMatchTransformers5) {
  json v4 = ModelConfig::load(fixture("llama3_rope")).raw;
  json params = v4["rope_parameters"];
  v4.erase("rope_parameters");
  v4["rope_theta"] = params["rope_theta"];
  params.erase("rope_theta");
  params["type"] = params["rope_type"];  // the oldest spelling
  params.erase("rope_type");
  v4["rope_scaling"] = params;
  const ModelConfig old = ModelConfig::from_json(v4);
  EXPECT_TRUE(rope_inv_freq(old).equal(rope_inv_freq(ModelConfig::load(fixture("llama3_rope")))));
  EXPECT_EQ(old.rope_scaling.type, "llama3");
}

TEST(Config, Llama3ScalingFollowsItsBands) {
  const ModelConfig c = ModelConfig::load(fixture("llama3_rope"));  // factor 8, old context 32, θ 5e5
  ModelConfig plain = c;
  plain.rope_scaling = RopeScaling{};
  const torch::Tensor scaled = rope_inv_freq(c), base = rope_inv_freq(plain);
  // Wavelengths under 32 / 4 = 8 positions stay; over 32 are divided by 8; between, blended.
  const torch::Tensor wavelen = 2 * M_PI / base;
  for (int64_t i = 0; i < base.size(0); ++i) {
    const double w = wavelen[i].item<double>(), s = scaled[i].item<double>(), b = base[i].item<double>();
    if (w < 8) EXPECT_DOUBLE_EQ(s, b) << i;
    else if (w > 32) EXPECT_NEAR(s, b / 8, 1e-12) << i;
    else EXPECT_TRUE(s < b && s > b / 8) << i;
  }
}

TEST(Config, DefaultsWhereHuggingFaceHasThem) {
  json j = llama_json();
  j.erase("num_key_value_heads");
  j.erase("rms_norm_eps");
  j.erase("tie_word_embeddings");
  const ModelConfig c = ModelConfig::from_json(j);
  EXPECT_EQ(c.num_kv_heads, 6);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);  // LlamaConfig's default
  json g = ModelConfig::load(fixture("gpt2")).raw;
  g["n_inner"] = nullptr;
  EXPECT_EQ(ModelConfig::from_json(g).intermediate_size, 256);  // 4 × n_embd
}

TEST(Config, ExplicitHeadDimIsHonoured) {
  json j = llama_json();
  j["head_dim"] = 32;
  const ModelConfig c = ModelConfig::from_json(j);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.q_width(0), 192);
  EXPECT_EQ(build_model(c)->hf_parameter("model.layers.0.self_attn.q_proj.weight").sizes(), (at::IntArrayRef{192, 96}));
}

TEST(Config, UnknownModelType) {
  json j = llama_json();
  j["model_type"] = "t5";
  EXPECT_EQ(error_of(j),
            "config.json: key 'model_type' has unsupported value \"t5\" (expected one of bert, roberta, gpt2, llama, "
            "mistral, qwen2)");
}

TEST(Config, MissingKey) {
  json j = llama_json();
  j.erase("hidden_size");
  EXPECT_EQ(error_of(j), "config.json: key 'hidden_size' is missing (expected an integer)");
  json g = ModelConfig::load(fixture("gpt2")).raw;
  g.erase("n_embd");
  EXPECT_EQ(error_of(g), "config.json: key 'n_embd' is missing (expected an integer)");
}

TEST(Config, WrongTypes) {
  json j = llama_json();
  j["hidden_size"] = "96";
  EXPECT_EQ(error_of(j), "config.json: key 'hidden_size' must be an integer, found string \"96\"");
  j = llama_json();
  j["rms_norm_eps"] = true;
  EXPECT_EQ(error_of(j), "config.json: key 'rms_norm_eps' must be a number, found boolean true");
  j = llama_json();
  j["tie_word_embeddings"] = 1;
  EXPECT_EQ(error_of(j), "config.json: key 'tie_word_embeddings' must be a boolean, found integer 1");
  j = llama_json();
  j["num_attention_heads"] = 6.5;
  EXPECT_EQ(error_of(j), "config.json: key 'num_attention_heads' must be an integer, found number 6.5");
  EXPECT_EQ(error_of(json::array()), "config.json: expected a JSON object, found an array");
}

TEST(Config, UnsupportedValues) {
  json j = llama_json();
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  EXPECT_EQ(error_of(j),
            "config.json: key 'rope_parameters.rope_type' has unsupported value \"yarn\" (expected default, linear or llama3)");
  j = llama_json();
  j["architectures"] = {"LlamaForQuestionAnswering"};
  EXPECT_EQ(error_of(j),
            "config.json: key 'architectures' names unsupported class \"LlamaForQuestionAnswering\" for model_type "
            "\"llama\" (expected a ...ForCausalLM, ...ForSequenceClassification or ...Model class)");
  j = llama_json();
  j["num_key_value_heads"] = 4;
  EXPECT_EQ(error_of(j), "config.json: layer 0: 4 key/value heads do not divide 6 heads");
  j = llama_json();
  j["hidden_act"] = "mish";
  EXPECT_EQ(error_of(j),
            "config.json: activation \"mish\" is not supported (expected gelu, gelu_new, gelu_pytorch_tanh, silu or relu)");
}

TEST(Config, BadBlockConfigs) {
  json j = llama_json();
  j["block_configs"] = json::array({json::object()});
  EXPECT_EQ(error_of(j), "config.json: key 'block_configs' has 1 entries (expected num_hidden_layers = 2)");
  j["block_configs"] = json::array({json::object(), {{"attention", {{"num_heads", "x"}}}}});
  EXPECT_EQ(error_of(j), "config.json: key 'block_configs[1].attention.num_heads' must be an integer, found string \"x\"");
  j["block_configs"] = json::array({json::object(), 3});
  EXPECT_EQ(error_of(j), "config.json: key 'block_configs[1]' must be an object, found integer 3");
}

TEST(Config, BadFiles) {
  testing::TempDir dir;
  const std::string path = dir / "config.json";
  std::ofstream(path) << "{\"model_type\": ";
  try {
    ModelConfig::load(dir.str());
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": not valid JSON (", 0), 0u) << e.what();
  }
  EXPECT_THROW(ModelConfig::load(dir / "absent.json"), UserError);
}

}  // namespace
}  // namespace secateur::model
