// load_model: what it accepts (directories, weight files, base models from task checkpoints)
// and the exact UserError for what it refuses.
#include <gtest/gtest.h>

#include <fstream>

#include <torch/version.h>

#include "io/weights.h"
#include "model/model.h"
#include "model_test_util.h"
#include "util/error.h"

namespace secateur::model {
namespace {

using testing::fixture;

std::string load_error(const std::string& path, const LoadOptions& options = {}) {
  try {
    load_model(path, options);
  } catch (const UserError& e) {
    return e.what();
  }
  return "no error";
}

// A copy of llama_gqa with its config or weights edited.
struct EditedFixture {
  testing::TempDir dir;
  ModelConfig config = ModelConfig::load(fixture("llama_gqa"));
  io::TensorMap weights = io::load_weights(fixture("llama_gqa"));
  std::string write() {
    io::save_weights(dir.str(), weights);
    config.save(dir.str());
    return dir.str();
  }
};

TEST(Loader, ShapeMismatchNamesTheTensor) {
  EditedFixture f;
  f.config.raw["intermediate_size"] = 100;
  f.config = ModelConfig::from_json(f.config.raw);
  const std::string dir = f.write();
  EXPECT_EQ(load_error(dir),
            dir + ": tensor 'model.layers.0.mlp.gate_proj.weight' has shape [200, 96], expected [100, 96] from the config");
}

TEST(Loader, MissingTensorsAreListed) {
  EditedFixture f;
  f.weights.erase("model.norm.weight");
  f.weights.erase("lm_head.weight");
  const std::string dir = f.write();
  EXPECT_EQ(load_error(dir), dir + ": 2 tensor(s) required by config.json are missing: model.norm.weight, lm_head.weight");
}

TEST(Loader, IntegerWeightIsRefused) {
  EditedFixture f;
  f.weights["model.norm.weight"] = torch::ones({96}, torch::kLong);
  const std::string dir = f.write();
  EXPECT_EQ(load_error(dir), dir + ": tensor 'model.norm.weight' has dtype Long, expected a floating-point type "
                                   "(float32, bfloat16 or float16)");
}

TEST(Loader, UnexpectedTensorsAreReportedNotFatal) {
  const auto model = load_model(fixture("llama_gqa"));
  io::TensorMap weights = model->state_dict_hf();
  weights["model.extra.weight"] = torch::zeros({3});
  weights["model.rotary_emb.inv_freq"] = torch::zeros({8});  // an HF buffer: neither used nor reported
  const LoadReport report = model->load_state(weights);
  EXPECT_TRUE(report.missing.empty());
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"model.extra.weight"});
}

TEST(Loader, PathErrors) {
  EXPECT_EQ(load_error("/nonexistent/model"), "/nonexistent/model: no such file or directory");
  testing::TempDir dir;
  {
    std::ifstream in(fixture("gpt2") + "/model.pt", std::ios::binary);
    std::ofstream(dir / "model.pt", std::ios::binary) << in.rdbuf();
  }
  EXPECT_EQ(load_error(dir / "model.pt"), dir / "model.pt" + ": no config.json beside this file");
  EXPECT_EQ(load_error(dir.str()), dir.str() + ": no config.json in this directory");
  LoadOptions options;
  options.device = "tpu";
  EXPECT_EQ(load_error(fixture("gpt2"), options), "device \"tpu\" is not supported (expected cpu, cuda or cuda:N)");
}

TEST(Loader, SafetensorsFileWithConfigBeside) {
  const auto model = load_model(fixture("qwen2") + "/model.safetensors");
  EXPECT_EQ(model->config().model_type, "qwen2");
}

// A bare backbone (LlamaModel, BertModel) reads a task checkpoint: the backbone prefix is
// dropped and the head's tensors are reported unused, as from_pretrained does.
TEST(Loader, BaseModelReadsTaskCheckpoint) {
  torch::set_num_threads(2);
  for (const auto& [name, architecture] : {std::pair<std::string, std::string>{"llama_gqa", "LlamaModel"},
                                           {"bert_cls", "BertModel"}, {"gpt2", "GPT2Model"}}) {
    ModelConfig config = ModelConfig::load(fixture(name));
    config.raw["architectures"] = {architecture};
    config = ModelConfig::from_json(config.raw);
    ASSERT_EQ(config.task, Task::base);
    const auto base = build_model(config);
    const LoadReport report = base->load_state(io::load_weights(fixture(name)));
    EXPECT_TRUE(report.missing.empty()) << name << ": " << report.missing.front();
    EXPECT_EQ(report.unexpected.empty(), name == "gpt2") << name;  // gpt2's head is tied: nothing left over
    base->eval();
    const testing::Reference ref = testing::load_reference(name);
    torch::NoGradGuard no_grad;
    const ForwardOutput out = base->forward(ref.input_ids, ref.attention_mask);
    EXPECT_TRUE(out.logits.equal(out.last_hidden));
    EXPECT_LE(testing::max_diff_on_tokens(out.last_hidden, ref.last_hidden_state, ref.attention_mask), 1e-4) << name;
    // Its own state dict has HF's base-model names (no prefix).
    EXPECT_TRUE(base->state_dict_hf().begin()->first.find('.') != std::string::npos);
    for (const auto& [n, t] : base->state_dict_hf())
      EXPECT_FALSE(n.rfind("model.", 0) == 0 || n.rfind("bert.", 0) == 0 || n.rfind("transformer.", 0) == 0) << n;
  }
}

TEST(Loader, DtypeOverride) {
  LoadOptions options;
  options.dtype = torch::kBFloat16;
  const auto model = load_model(fixture("gpt2"), options);
  EXPECT_EQ(model->dtype(), torch::kBFloat16);
  const testing::Reference ref = testing::load_reference("gpt2");
  torch::NoGradGuard no_grad;
  EXPECT_LE(testing::max_diff_on_tokens(model->forward(ref.input_ids, ref.attention_mask).logits, ref.logits,
                                        ref.attention_mask),
            0.25);
}

TEST(Loader, CudaWhenAvailable) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const std::string name : {"llama_gqa", "bert_cls", "gpt2"}) {
    LoadOptions options;
    options.device = "cuda";
    const auto model = load_model(fixture(name), options);
    EXPECT_TRUE(model->device().is_cuda());
    const testing::Reference ref = testing::load_reference(name);
    torch::NoGradGuard no_grad;
    const ForwardOutput out = model->forward(ref.input_ids.cuda(), ref.attention_mask.cuda());
    EXPECT_LE(testing::max_diff_on_tokens(out.logits, ref.logits, ref.attention_mask), 2e-3) << name;  // TF32 matmuls
    const Gates gates = Gates::ones(model->config(), torch::kCUDA);
    EXPECT_LE(testing::max_diff(model->forward(ref.input_ids.cuda(), ref.attention_mask.cuda(), &gates).logits,
                                out.logits),
              1e-5) << name;
  }
}

TEST(Loader, ToConvertsDtypeInPlace) {
  torch::set_num_threads(2);
  const auto model = load_model(testing::fixture("llama_gqa"));
  const torch::Tensor q = model->hf_parameter("model.layers.0.self_attn.q_proj.weight");
  model->to(torch::kCPU, torch::kBFloat16);
  EXPECT_EQ(model->dtype(), torch::kBFloat16);
  EXPECT_EQ(q.scalar_type(), torch::kBFloat16);  // handles taken before see the conversion
  EXPECT_EQ(model->state_dict_hf().at("lm_head.weight").scalar_type(), torch::kBFloat16);
  const testing::Reference ref = testing::load_reference("llama_gqa");
  torch::NoGradGuard no_grad;
  EXPECT_LE(testing::max_diff_on_tokens(model->forward(ref.input_ids, ref.attention_mask).logits, ref.logits,
                                        ref.attention_mask),
            0.25);
}

// An fp16 checkpoint (bert_cls in float16) loads everywhere; it runs in fp16 where LibTorch can.
TEST(Loader, Float16Checkpoint) {
  torch::set_num_threads(2);
  testing::TempDir dir;
  io::TensorMap weights = io::load_weights(testing::fixture("bert_cls"));
  for (auto& [name, t] : weights) t = t.to(torch::kHalf);
  io::save_weights(dir.str(), weights);
  ModelConfig config = ModelConfig::load(testing::fixture("bert_cls"));
  config.torch_dtype = "float16";
  config.save(dir.str());
  const testing::Reference ref = testing::load_reference("bert_cls");
  const auto model = load_model(dir.str());
  torch::NoGradGuard no_grad;
  EXPECT_LE(testing::max_diff(model->forward(ref.input_ids, ref.attention_mask).logits, ref.logits), 0.05);
  LoadOptions half;
  half.dtype = torch::kHalf;
#if TORCH_VERSION_MAJOR >= 2
  EXPECT_EQ(model->dtype(), torch::kHalf);
  EXPECT_EQ(load_model(dir.str(), half)->dtype(), torch::kHalf);
#else
  EXPECT_EQ(model->dtype(), torch::kFloat32);
  EXPECT_EQ(load_error(dir.str(), half),
            "float16 on the CPU needs LibTorch 2 or newer (this is " TORCH_VERSION "): use float32 or bfloat16");
  model->to(torch::kCPU, torch::kHalf);
  EXPECT_THROW(model->forward(ref.input_ids, ref.attention_mask), UserError);
#endif
}

TEST(Loader, TrainingModeAppliesDropout) {
  torch::set_num_threads(2);
  const auto model = load_model(testing::fixture("bert_cls"));  // dropout 0.1
  const testing::Reference ref = testing::load_reference("bert_cls");
  torch::NoGradGuard no_grad;
  const torch::Tensor eval = model->forward(ref.input_ids, ref.attention_mask).logits;
  model->train();
  torch::manual_seed(3);
  const torch::Tensor a = model->forward(ref.input_ids, ref.attention_mask).logits;
  const torch::Tensor b = model->forward(ref.input_ids, ref.attention_mask).logits;
  EXPECT_FALSE(a.equal(b));
  EXPECT_FALSE(a.equal(eval));
  model->eval();
  EXPECT_TRUE(model->forward(ref.input_ids, ref.attention_mask).logits.equal(eval));
}

}  // namespace
}  // namespace secateur::model
