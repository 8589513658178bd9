// Packing (issue #8): each layer's q/k/v and gate/up weights (and biases) are consecutive rows of
// one buffer, so a forward pass that needs no gradients runs each group as one GEMM. Nothing else
// may notice: outputs, the HF state dict, gradients, taps and transforms stay as they were.
#include <gtest/gtest.h>

#include "io/weights.h"
#include "model/functional.h"
#include "model/model.h"
#include "model/tap.h"
#include "model_test_util.h"
#include "packing_test_util.h"

namespace secateur::model {
namespace {

using testing::fixture;
using testing::packed_name_groups;
using testing::parameters_named;

// GQA (llama_gqa, mistral), q/k/v biases (qwen2), encoders (bert_cls, roberta_cls).
const std::vector<std::string> kFixtures{"llama_gqa", "qwen2", "mistral", "bert_cls", "roberta_cls"};

// A LLaMA with every optional bias, so that gate/up biases are packed too.
ModelConfig llama_with_biases() {
  return testing::config_from(R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 64,
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 48, "attention_bias": true, "mlp_bias": true, "tie_word_embeddings": false})");
}

// The group's tensors share one storage, each starting where the previous one ends.
void expect_packed(const Model& model, const std::vector<std::string>& names) {
  const std::vector<torch::Tensor> parts = parameters_named(model, names);
  int64_t offset = parts[0].storage_offset();
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_TRUE(parts[i].is_alias_of(parts[0])) << names[i];
    EXPECT_TRUE(parts[i].is_contiguous()) << names[i];
    EXPECT_EQ(parts[i].storage_offset(), offset) << names[i];
    offset += parts[i].numel();
  }
  EXPECT_TRUE(fn::row_span(parts).defined()) << names[0];
}

void expect_all_packed(const Model& model, const std::string& label) {
  const auto groups = packed_name_groups(model);
  EXPECT_FALSE(groups.empty()) << label;
  for (const auto& names : groups) {
    SCOPED_TRACE(label);
    expect_packed(model, names);
  }
}

// A copy of `model` whose every parameter has a buffer of its own, so its forward never fuses.
std::shared_ptr<Model> unpacked_copy(const Model& model) {
  const auto copy = build_model(model.config(), torch::TensorOptions().dtype(model.dtype()));
  copy->load_state(model.state_dict_hf());
  testing::unpack(*copy);
  copy->eval();
  return copy;
}

torch::Tensor logits(Model& model, const testing::Reference& ref) {
  return model.forward(ref.input_ids, ref.attention_mask).logits;
}

class PackingTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { torch::set_num_threads(2); }
};

TEST_P(PackingTest, LoadedModelsArePackedAndStayPackedThroughTo) {
  const auto model = load_model(fixture(GetParam()));
  expect_all_packed(*model, "loaded");
  const torch::Tensor first = model->hf_parameter(packed_name_groups(*model)[0][1]);
  first.requires_grad_(true);
  const io::TensorMap before = model->state_dict_hf();
  model->to(torch::kDouble);
  EXPECT_EQ(model->dtype(), torch::kDouble);
  expect_all_packed(*model, "to(double)");
  EXPECT_TRUE(first.requires_grad());
  model->to(torch::Device(torch::kCPU), torch::kFloat32);
  expect_all_packed(*model, "to(cpu, float)");
  model->to(torch::Device(torch::kCPU));
  expect_all_packed(*model, "to(cpu)");
  EXPECT_TRUE(first.requires_grad());
  // float → double → float is exact, and every HF-named tensor is still the one the model holds.
  for (const auto& [name, t] : model->state_dict_hf()) EXPECT_TRUE(t.equal(before.at(name))) << name;
  EXPECT_TRUE(model->hf_parameter(packed_name_groups(*model)[0][1]).is_same(first));
}

TEST_P(PackingTest, FusedForwardEqualsTheUnfusedOne) {
  const auto model = load_model(fixture(GetParam()));
  const testing::Reference ref = testing::load_reference(GetParam());
  const auto unpacked = unpacked_copy(*model);
  torch::Tensor fused, separate, with_grad;
  {
    torch::NoGradGuard no_grad;
    fused = logits(*model, ref);
    separate = logits(*unpacked, ref);
  }
  for (const auto& p : model->parameters()) p.requires_grad_(true);
  with_grad = logits(*model, ref).detach();  // the same model, through the separate GEMMs
  // Not bitwise: the BLAS may block one wide GEMM's reduction differently from three narrow ones
  // (a few fp32 ulps per layer, ~1e-6 of the logits' scale on llama_gqa).
  const double scale = std::max(1.0, separate.abs().max().item<double>());
  EXPECT_LE(testing::max_diff_on_tokens(fused, separate, ref.attention_mask), 1e-5 * scale);
  EXPECT_LE(testing::max_diff_on_tokens(fused, with_grad, ref.attention_mask), 1e-5 * scale);
}

TEST_P(PackingTest, HfStateDictRoundTripsExactly) {
  const std::string name = GetParam();
  const io::TensorMap hf = io::load_weights(fixture(name));
  const auto model = build_model(ModelConfig::load(fixture(name)));
  model->load_state(hf);
  expect_all_packed(*model, "after load_state");  // copy_ wrote into the packed buffers
  testing::TempDir dir;
  io::save_weights(dir.str(), model->state_dict_hf());
  const io::TensorMap saved = io::load_weights(dir.str());
  for (const auto& [n, t] : model->state_dict_hf()) {
    ASSERT_TRUE(hf.count(n)) << n;
    EXPECT_TRUE(t.equal(hf.at(n))) << n;
    EXPECT_TRUE(saved.at(n).equal(hf.at(n))) << n;  // export wrote each slice, not its buffer
  }
}

// In training each of q, k and v is its own autograd leaf: the same gradients as an unpacked model.
TEST_P(PackingTest, TrainingGivesEachProjectionItsOwnGradient) {
  const auto model = load_model(fixture(GetParam()));
  const auto unpacked = unpacked_copy(*model);
  const testing::Reference ref = testing::load_reference(GetParam());
  for (Model* m : {model.get(), unpacked.get()}) {
    for (const auto& p : m->parameters()) p.requires_grad_(true);
    logits(*m, ref).pow(2).mean().backward();
  }
  for (const auto& names : packed_name_groups(*model))
    for (const std::string& n : names) {
      const torch::Tensor grad = model->hf_parameter(n).grad();
      ASSERT_TRUE(grad.defined()) << n;
      EXPECT_GT(grad.abs().max().item<double>(), 0.0) << n;
      EXPECT_TRUE(torch::allclose(grad, unpacked->hf_parameter(n).grad(), 1e-5, 1e-7)) << n;
    }
  // An optimiser's in-place step leaves the packing as it was.
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  sgd.step();
  expect_all_packed(*model, "after an SGD step");
}

// Taps see each of q, k and v (tests/model/tap_test.cpp counts them); a transform gets each by name.
TEST_P(PackingTest, TransformsStillSeeEachProjection) {
  struct Counting : WeightTransform {
    mutable int64_t calls = 0;
    torch::Tensor apply(const std::string&, const torch::Tensor& w) const override {
      ++calls;
      return w;
    }
  } counting;
  const auto model = load_model(fixture(GetParam()));
  const testing::Reference ref = testing::load_reference(GetParam());
  torch::NoGradGuard no_grad;
  ForwardOptions options;
  options.weights = &counting;
  const torch::Tensor transformed = model->forward(ref.input_ids, ref.attention_mask, nullptr, options).logits;
  EXPECT_EQ(counting.calls, static_cast<int64_t>(projection_weights(*model).size()));
  const double scale = std::max(1.0, transformed.abs().max().item<double>());
  EXPECT_LE(testing::max_diff_on_tokens(transformed, logits(*model, ref), ref.attention_mask), 1e-5 * scale);
}

INSTANTIATE_TEST_SUITE_P(Families, PackingTest, ::testing::ValuesIn(kFixtures));

TEST(Packing, LlamaBiasesArePackedAndFuseExactly) {
  torch::set_num_threads(2);
  torch::manual_seed(0);
  const auto model = build_model(llama_with_biases());
  model->eval();
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : model->parameters()) p.normal_(0.0, 0.2);  // biases too, not zeros
  }
  const auto groups = packed_name_groups(*model);
  EXPECT_EQ(groups.size(), 2u * 4u);  // per layer: q/k/v weights, q/k/v biases, gate/up weights, biases
  expect_all_packed(*model, "built");
  model->to(torch::kDouble);
  expect_all_packed(*model, "to(double)");
  const auto unpacked = unpacked_copy(*model);
  const torch::Tensor ids = torch::randint(64, {2, 7}, torch::kLong);
  torch::NoGradGuard no_grad;
  const torch::Tensor fused = model->forward(ids).logits, separate = unpacked->forward(ids).logits;
  EXPECT_TRUE(torch::allclose(fused, separate, 1e-12, 1e-12));
}

TEST(Packing, RowSpanNeedsConsecutiveRowsOfOneStorage) {
  const torch::Tensor buffer = torch::randn({10, 4});
  const torch::Tensor a = buffer.narrow(0, 0, 2), b = buffer.narrow(0, 2, 5), c = buffer.narrow(0, 7, 3);
  const torch::Tensor span = fn::row_span({a, b, c});
  ASSERT_TRUE(span.defined());
  EXPECT_TRUE(span.equal(buffer));
  EXPECT_EQ(span.data_ptr(), buffer.data_ptr());  // a view, not a copy
  EXPECT_TRUE(fn::row_span({b, c}).equal(buffer.narrow(0, 2, 8)));
  EXPECT_FALSE(fn::row_span({a, c}).defined());                       // a gap
  EXPECT_FALSE(fn::row_span({b, a}).defined());                       // out of order
  EXPECT_FALSE(fn::row_span({a, b.clone()}).defined());               // another storage
  EXPECT_FALSE(fn::row_span({a, b.to(torch::kDouble)}).defined());    // another dtype
  EXPECT_FALSE(fn::row_span({buffer.narrow(1, 0, 2)}).defined());     // not contiguous
  EXPECT_FALSE(fn::row_span({a, torch::Tensor()}).defined());
  const torch::Tensor bias = torch::randn({6});
  EXPECT_TRUE(fn::row_span({bias.narrow(0, 0, 2), bias.narrow(0, 2, 4)}).equal(bias));
}

TEST(Packing, LinearsSplitOneGemmExactlyAsSeparateOnes) {
  const torch::Tensor w = torch::randn({9, 5}), b = torch::randn({9}), x = torch::randn({2, 3, 5});
  const std::vector<fn::Projection> projections{{w.narrow(0, 0, 4), b.narrow(0, 0, 4), "q"},
                                                {w.narrow(0, 4, 5), b.narrow(0, 4, 5), "k"}};
  const std::vector<torch::Tensor> out = fn::linears(x, projections, nullptr, "");
  ASSERT_EQ(out.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const torch::Tensor expected = torch::nn::functional::linear(x, projections[i].w, projections[i].b);
    EXPECT_TRUE(torch::allclose(out[i], expected, 1e-6, 1e-6)) << i;
  }
  // One bias missing: the biases cannot be one add, so the projections run separately.
  const std::vector<torch::Tensor> mixed =
      fn::linears(x, {{projections[0].w, projections[0].b, "q"}, {projections[1].w, torch::Tensor(), "k"}}, nullptr, "");
  EXPECT_TRUE(torch::allclose(mixed[1], torch::nn::functional::linear(x, projections[1].w), 1e-6, 1e-6));
}

}  // namespace
}  // namespace secateur::model
