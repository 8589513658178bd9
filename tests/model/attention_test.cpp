// Attention masks by their defining property: what an output may and may not depend on.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <string>
#include <vector>

#include "model/attention.h"
#include "model/model.h"
#include "model_test_util.h"

namespace secateur::model {
namespace {

using nlohmann::json;

std::shared_ptr<Model> one_layer_mistral(int64_t sliding_window) {
  json j = json::parse(R"({"model_type": "mistral", "architectures": ["MistralForCausalLM"], "vocab_size": 50,
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 48, "initializer_range": 0.2})");
  j["sliding_window"] = sliding_window;
  torch::manual_seed(7);
  auto model = build_model(ModelConfig::from_json(j));
  model->eval();
  return model;
}

// Logits at position `at` after replacing the token at `changed` with another id.
torch::Tensor logits_at(Model& model, torch::Tensor ids, int64_t changed, int64_t at, bool exact = false) {
  if (changed >= 0) ids[0][changed] = (ids[0][changed].item<int64_t>() + 1) % 50;
  torch::NoGradGuard no_grad;
  ForwardOptions options;
  options.exact_attention = exact;
  return model.forward(ids, {}, nullptr, options).logits[0][at];
}

TEST(Attention, SlidingWindowSeesTheLastWindowTokens) {
  torch::set_num_threads(2);
  const auto model = one_layer_mistral(4);  // query 9 sees keys 6..9
  const torch::Tensor ids = torch::randint(0, 50, {1, 10}, torch::kLong);
  for (bool exact : {false, true}) {
    const torch::Tensor base = logits_at(*model, ids.clone(), -1, 9, exact);
    EXPECT_TRUE(logits_at(*model, ids.clone(), 5, 9, exact).equal(base)) << exact;
    EXPECT_FALSE(logits_at(*model, ids.clone(), 6, 9, exact).equal(base)) << exact;
  }
  // Without a window (longer than the input), every earlier token counts.
  const auto full = one_layer_mistral(64);
  EXPECT_FALSE(logits_at(*full, ids.clone(), 0, 9).equal(logits_at(*full, ids.clone(), -1, 9)));
}

TEST(Attention, CausalOutputsIgnoreTheFuture) {
  torch::set_num_threads(2);
  const auto model = load_model(testing::fixture("gpt2"));
  const torch::Tensor ids = testing::load_reference("gpt2").input_ids.narrow(0, 0, 1).clone();
  const torch::Tensor base = logits_at(*model, ids.clone(), -1, 5);
  EXPECT_TRUE(logits_at(*model, ids.clone(), 6, 5).equal(base));
  EXPECT_FALSE(logits_at(*model, ids.clone(), 5, 5).equal(base));
}

TEST(Attention, PaddedTokensAreInvisible) {
  torch::set_num_threads(2);
  for (const std::string name : {"bert_mlm", "llama_gqa"}) {
    const auto model = load_model(testing::fixture(name));
    const testing::Reference ref = testing::load_reference(name);
    torch::Tensor other = ref.input_ids.clone();
    other[1].narrow(0, 8, 4).fill_(7);  // the padded tail of row 1 gets other ids
    torch::NoGradGuard no_grad;
    const torch::Tensor a = model->forward(ref.input_ids, ref.attention_mask).logits;
    const torch::Tensor b = model->forward(other, ref.attention_mask).logits;
    EXPECT_LE(testing::max_diff(a[1].narrow(0, 0, 8), b[1].narrow(0, 0, 8)), 1e-6) << name;
    EXPECT_GT(testing::max_diff(a[1].narrow(0, 8, 4), b[1].narrow(0, 8, 4)), 1e-3) << name;
  }
}

// ForwardOptions::attention_mask_padded tells the pass what the mask holds instead of reading it:
// true on a padded mask is the default pass, true on a mask of all ones equals the unmasked pass
// (an additive mask of zeros), for an encoder and a decoder.
TEST(Attention, PaddingHintGivesTheSameLogits) {
  torch::set_num_threads(2);
  for (const std::string name : {"bert_mlm", "llama_gqa"}) {
    const auto model = load_model(testing::fixture(name));
    const testing::Reference ref = testing::load_reference(name);
    torch::NoGradGuard no_grad;
    ForwardOptions hinted;
    hinted.attention_mask_padded = true;
    EXPECT_TRUE(model->forward(ref.input_ids, ref.attention_mask, nullptr, hinted)
                    .logits.equal(model->forward(ref.input_ids, ref.attention_mask).logits))
        << name;
    const torch::Tensor ones = torch::ones_like(ref.attention_mask);
    EXPECT_LE(testing::max_diff(model->forward(ref.input_ids, ones, nullptr, hinted).logits,
                                model->forward(ref.input_ids).logits),
              1e-5)
        << name;
    hinted.attention_mask_padded = false;
    EXPECT_TRUE(model->forward(ref.input_ids, ones, nullptr, hinted).logits.equal(model->forward(ref.input_ids).logits))
        << name;
  }
}

TEST(Attention, FullyPaddedRowStaysFinite) {
  const auto model = load_model(testing::fixture("llama_gqa"));
  const testing::Reference ref = testing::load_reference("llama_gqa");
  torch::Tensor mask = ref.attention_mask.clone();
  mask[1].zero_();
  torch::NoGradGuard no_grad;
  for (bool exact : {false, true}) {
    ForwardOptions options;
    options.exact_attention = exact;
    EXPECT_TRUE(torch::isfinite(model->forward(ref.input_ids, mask, nullptr, options).logits).all().item<bool>());
  }
}

TEST(Attention, GroupedQueryEqualsRepeatedKeyValueHeads) {
  // llama_gqa (6 heads, 2 kv) against the same model with each kv head copied for its 3 query
  // heads (6 kv): consecutive query heads share a group, as HF's repeat_kv.
  torch::set_num_threads(2);
  const auto gqa = load_model(testing::fixture("llama_gqa"));
  ModelConfig config = gqa->config();
  for (LayerShape& s : config.layers) s.num_kv_heads = 6;
  const auto mha = build_model(config);
  io::TensorMap weights = gqa->state_dict_hf();
  for (auto& [name, t] : weights)
    if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos)
      t = t.view({2, 1, 16, 96}).expand({2, 3, 16, 96}).reshape({96, 96});
  EXPECT_TRUE(mha->load_state(weights).missing.empty());
  mha->eval();
  const testing::Reference ref = testing::load_reference("llama_gqa");
  torch::NoGradGuard no_grad;
  EXPECT_LE(testing::max_diff(gqa->forward(ref.input_ids, ref.attention_mask).logits,
                              mha->forward(ref.input_ids, ref.attention_mask).logits),
            1e-5);
}


// Sets an environment variable for one scope, restoring what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() { old_.empty() ? unsetenv(name_) : setenv(name_, old_.c_str(), 1); }

 private:
  const char* name_;
  std::string old_;
};

// attention() on grouped K/V ([B, 2, T, d] for 6 query heads) against the same K/V repeated per
// query head by hand, under every mask kind, on the exact and the fused path, with SDPA's native
// GQA (LibTorch ≥ 2.5, where a fused kernel takes it) on and off.
void expect_grouped_equals_repeated(torch::Device device, torch::ScalarType dtype, double tolerance) {
  torch::manual_seed(5);
  const auto opts = torch::TensorOptions().dtype(dtype).device(device);
  const torch::Tensor q = torch::randn({2, 6, 7, 16}, opts), k = torch::randn({2, 2, 7, 16}, opts),
                      v = torch::randn({2, 2, 7, 16}, opts);
  const torch::Tensor k6 = k.repeat_interleave(3, 1), v6 = v.repeat_interleave(3, 1);
  const torch::Tensor padding = torch::tensor({{1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 0}}, torch::kLong);
  const std::vector<AttentionMask> masks = {
      AttentionMask::build({}, 7, true, 0, dtype, device), AttentionMask::build({}, 7, false, 0, dtype, device),
      AttentionMask::build(padding, 7, true, 0, dtype, device)};
  torch::NoGradGuard no_grad;
  for (const char* native : {"1", "0"}) {
    ScopedEnv env("SECATEUR_SDPA_GQA", native);
    for (size_t m = 0; m < masks.size(); ++m)
      for (bool exact : {false, true}) {
        const torch::Tensor grouped = attention(q, k, v, masks[m], {}, 0.0, exact);
        const torch::Tensor repeated = attention(q, k6, v6, masks[m], {}, 0.0, exact);
        EXPECT_LE(testing::max_diff(grouped, repeated), tolerance)
            << device << " " << dtype << " SECATEUR_SDPA_GQA=" << native << " mask " << m << " exact " << exact;
      }
  }
}

TEST(Attention, GroupedKeyValuesEqualRepeatedOnEveryPath) {
  torch::set_num_threads(2);
  expect_grouped_equals_repeated(torch::kCPU, torch::kFloat, 1e-6);
}

TEST(Attention, GroupedKeyValuesEqualRepeatedOnAGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_grouped_equals_repeated(torch::kCUDA, torch::kFloat, 1e-5);
  expect_grouped_equals_repeated(torch::kCUDA, torch::kBFloat16, 1e-2);  // the flash kernel's own path
}

}  // namespace
}  // namespace secateur::model
