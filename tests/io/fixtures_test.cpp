// The HF-made fixtures of tests/fixtures/models: the safetensors files HF wrote load, agree with
// the TorchScript traces of the same models, and those traces load and run under this LibTorch.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstring>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include "io/weights.h"
#include "util/fs.h"

namespace secateur::io {
namespace {


std::string model_dir(const std::string& name) { return std::string(SECATEUR_FIXTURES) + "/models/" + name; }

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Family {
  std::string name;
  std::string model_type;   // config.json's model_type
  int64_t logits_last_dim;  // vocab for LMs, num_labels for classifiers
  bool per_token_logits;
};

void PrintTo(const Family& f, std::ostream* os) { *os << f.name; }

const std::vector<Family> kTraced = {
    {"bert_mlm", "bert", 128, true},  {"bert_cls", "bert", 3, false},   {"roberta_cls", "roberta", 3, false},
    {"gpt2", "gpt2", 128, true},      {"llama_gqa", "llama", 128, true}, {"llama3_rope", "llama", 128, true},
    {"qwen2", "qwen2", 128, true},    {"mistral", "mistral", 128, true},
};

class TracedFixture : public ::testing::TestWithParam<Family> {};

TEST_P(TracedFixture, SafetensorsAndTorchScriptGiveTheSameTensors) {
  const std::string dir = model_dir(GetParam().name);
  const TensorMap st = load_weights(dir);
  const TensorMap pt = load_weights(dir + "/model.pt");
  ASSERT_GT(st.size(), 10u);
  for (const auto& [name, t] : st) {
    auto it = pt.find(name);
    ASSERT_NE(it, pt.end()) << name << " is in model.safetensors but not in model.pt";
    EXPECT_TRUE(same_bits(t, it->second)) << name;
  }
  // The trace may hold more: non-persistent buffers save_pretrained leaves out, and tied
  // weights under their second name, which must then equal the tensor they are tied to.
  for (const auto& [name, t] : pt) {
    if (st.count(name) || ends_with(name, "position_ids") || ends_with(name, "token_type_ids") ||
        ends_with(name, "inv_freq"))
      continue;
    bool tied = false;
    for (const auto& [other, u] : st) tied = tied || same_bits(t, u);
    EXPECT_TRUE(tied) << name << " is only in model.pt and equals no tensor of model.safetensors";
  }
}

TEST_P(TracedFixture, TraceRunsHereAndReproducesTheReferenceLogits) {
  const std::string dir = model_dir(GetParam().name);
  const TensorMap ref = load_weights(dir + "/reference.safetensors");
  torch::jit::Module module = torch::jit::load(dir + "/model.pt");
  module.eval();
  torch::NoGradGuard no_grad;
  const auto out = module.forward({ref.at("input_ids"), ref.at("attention_mask")});
  // transformers 5 ignores torchscript=True's tuple outputs, so the trace returns its ModelOutput
  // as a dict; a trace made with 4.x returns a tuple whose first element is the logits.
  torch::Tensor logits;
  if (out.isGenericDict()) {
    logits = out.toGenericDict().at("logits").toTensor();
  } else {
    ASSERT_TRUE(out.isTuple()) << "unexpected output type " << out.tagKind();
    logits = out.toTuple()->elements().at(0).toTensor();
  }
  ASSERT_EQ(logits.sizes(), ref.at("logits").sizes());
  EXPECT_TRUE(torch::allclose(logits, ref.at("logits"), 1e-4, 1e-4))
      << "max abs diff " << (logits - ref.at("logits")).abs().max().item<float>();
}

TEST_P(TracedFixture, ReferenceAndConfigAreAsDocumented) {
  const Family& f = GetParam();
  const std::string dir = model_dir(f.name);
  const auto config = nlohmann::json::parse(fs::read_file(dir + "/config.json"));
  EXPECT_EQ(config.at("model_type"), f.model_type);
  const int64_t hidden = config.contains("hidden_size") ? config["hidden_size"].get<int64_t>() : config["n_embd"].get<int64_t>();

  const TensorMap ref = load_weights(dir + "/reference.safetensors");
  const auto& ids = ref.at("input_ids");
  const auto& mask = ref.at("attention_mask");
  ASSERT_EQ(ids.scalar_type(), torch::kInt64);
  ASSERT_EQ(mask.scalar_type(), torch::kInt64);
  ASSERT_EQ(ids.sizes(), (std::vector<int64_t>{2, 12}));
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{2, 12}));
  EXPECT_TRUE(torch::equal(mask[0], torch::ones({12}, torch::kInt64)));
  EXPECT_EQ(mask[1].slice(0, 0, 8).sum().item<int64_t>(), 8);
  EXPECT_EQ(mask[1].slice(0, 8).sum().item<int64_t>(), 0);
  EXPECT_LT(ids.max().item<int64_t>(), config.at("vocab_size").get<int64_t>());

  const auto& logits = ref.at("logits");
  ASSERT_EQ(logits.scalar_type(), torch::kFloat32);
  if (f.per_token_logits)
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 12, f.logits_last_dim}));
  else
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, f.logits_last_dim}));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  EXPECT_GT(logits.std().item<float>(), 0.01f);  // not a degenerate all-equal output
  const auto& last = ref.at("last_hidden_state");
  ASSERT_EQ(last.scalar_type(), torch::kFloat32);
  EXPECT_EQ(last.sizes(), (std::vector<int64_t>{2, 12, hidden}));
}

INSTANTIATE_TEST_SUITE_P(Models, TracedFixture, ::testing::ValuesIn(kTraced),
                         [](const ::testing::TestParamInfo<Family>& info) { return info.param.name; });

TEST(Fixtures, ShardedLlamaHoldsLlamaGqaWeights) {
  const std::string dir = model_dir("llama_sharded");
  for (int i = 1; i <= 3; ++i) {
    struct stat st {};
    EXPECT_EQ(::stat((dir + "/model-0000" + std::to_string(i) + "-of-00003.safetensors").c_str(), &st), 0) << i;
  }
  struct stat st {};
  EXPECT_NE(::stat((dir + "/model.safetensors").c_str(), &st), 0);
  const TensorMap sharded = load_weights(dir);
  const TensorMap single = load_weights(model_dir("llama_gqa"));
  ASSERT_EQ(sharded.size(), single.size());
  for (const auto& [name, t] : single) EXPECT_TRUE(same_bits(t, sharded.at(name))) << name;
}

TEST(Fixtures, Bf16LlamaIsLlamaGqaRounded) {
  const TensorMap bf16 = load_weights(model_dir("llama_bf16"));
  const TensorMap fp32 = load_weights(model_dir("llama_gqa"));
  ASSERT_EQ(bf16.size(), fp32.size());
  for (const auto& [name, t] : fp32) {
    ASSERT_EQ(bf16.at(name).scalar_type(), torch::kBFloat16) << name;
    EXPECT_TRUE(same_bits(t.to(torch::kBFloat16), bf16.at(name))) << name;
  }
  // Its reference was computed in bf16: close to, but not the same as, the fp32 one.
  const auto ref16 = load_weights(model_dir("llama_bf16") + "/reference.safetensors").at("logits");
  const auto ref32 = load_weights(model_dir("llama_gqa") + "/reference.safetensors").at("logits");
  ASSERT_EQ(ref16.scalar_type(), torch::kFloat32);
  const float diff = (ref16 - ref32).abs().max().item<float>();
  EXPECT_GT(diff, 0.0f);
  EXPECT_LT(diff, 0.25f * ref32.abs().max().item<float>());
}

TEST(Fixtures, Llama3RopeConfigIsTheScaledVariant) {
  const auto config = nlohmann::json::parse(fs::read_file(model_dir("llama3_rope") + "/config.json"));
  // transformers 5 writes rope_parameters; 4.x wrote rope_scaling + rope_theta.
  const auto& rope = config.contains("rope_parameters") ? config["rope_parameters"] : config["rope_scaling"];
  EXPECT_EQ(rope.at("rope_type"), "llama3");
  EXPECT_EQ(rope.at("factor").get<double>(), 8.0);
  EXPECT_EQ(rope.at("original_max_position_embeddings").get<int>(), 32);
  EXPECT_EQ(config.at("tie_word_embeddings"), true);
}

}  // namespace
}  // namespace secateur::io
