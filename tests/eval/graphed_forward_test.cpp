#include "eval/graphed_forward.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <stdexcept>

#include "eval/loss.h"
#include "eval/perplexity.h"
#include "model/model.h"

using namespace secateur;
using Outputs = std::vector<torch::Tensor>;

namespace {

std::shared_ptr<model::Model> tiny_llama(torch::Dtype dtype, torch::Device device) {
  const nlohmann::json config = {
      {"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 128},
      {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 8},
      {"num_key_value_heads", 4}, {"head_dim", 8}, {"intermediate_size", 96},
      {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}};
  torch::manual_seed(0);
  auto m = model::build_model(model::ModelConfig::from_json(config, "test config"),
                              torch::TensorOptions().dtype(dtype).device(device));
  m->eval();
  return m;
}

data::Batch random_batch(const model::Model& m, int64_t rows, int64_t length) {
  data::Batch b;
  b.input_ids = torch::randint(0, m.config().vocab_size, {rows, length}, torch::kLong).to(m.device());
  b.labels = b.input_ids.clone();
  b.labels.select(1, 0).fill_(-100);
  return b;
}

// An evaluation pass as the speed benchmark and perplexity run it: forward, then the task loss.
eval::GraphedForward::Function forward_and_loss(model::Model& m) {
  return [&m](const data::Batch& b) {
    torch::Tensor logits = m.forward(b.input_ids).logits;
    return Outputs{logits, eval::task_loss(model::Task::causal_lm, logits, b)};
  };
}

void expect_identical(const Outputs& got, const Outputs& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].sizes(), want[i].sizes()) << "output " << i;
    EXPECT_TRUE(torch::equal(got[i], want[i])) << "output " << i;
  }
}

// Runs `graphed` on `b` and checks it against the eager function (run first: a lazy
// initialisation in the model's first forward is then behind us).
void expect_eager_results(eval::GraphedForward& graphed, const eval::GraphedForward::Function& eager, const data::Batch& b) {
  torch::NoGradGuard no_grad;
  const Outputs want = eager(b);
  expect_identical(graphed(b), want);
}

#define REQUIRE_CUDA_GRAPHS()                                                                   \
  do {                                                                                          \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";                          \
    if (!eval::GraphedForward::compiled()) GTEST_SKIP() << "this build has no CUDA graphs";     \
  } while (0)

void replays_equal_eager(torch::Dtype dtype) {
  const torch::Device cuda(torch::kCUDA, 0);
  auto m = tiny_llama(dtype, cuda);
  const auto eager = forward_and_loss(*m);
  eval::GraphedForward graphed(eager, cuda);
  torch::manual_seed(1);
  // One shape: a warm-up, a capture (and its replay), then replays.
  for (int i = 0; i < 5; ++i) expect_eager_results(graphed, eager, random_batch(*m, 2, 16));
  EXPECT_EQ(graphed.replays(), 4);
  EXPECT_EQ(graphed.reason(), "");
  // A second shape gets a graph of its own.
  for (int i = 0; i < 3; ++i) expect_eager_results(graphed, eager, random_batch(*m, 3, 9));
  EXPECT_EQ(graphed.replays(), 6);
  // A third one is past kMaxShapes: eager, and the first shape still replays.
  expect_eager_results(graphed, eager, random_batch(*m, 1, 5));
  EXPECT_EQ(graphed.replays(), 6);
  expect_eager_results(graphed, eager, random_batch(*m, 2, 16));
  EXPECT_EQ(graphed.replays(), 7);
  EXPECT_EQ(graphed.reason(), "");
}

}  // namespace

// --- everywhere ---

TEST(GraphedForward, OnTheCpuItIsTheFunctionsCall) {
  data::Batch b;
  b.input_ids = torch::arange(6, torch::kLong).view({2, 3});
  b.labels = torch::arange(2, torch::kLong);
  Outputs returned;
  eval::GraphedForward graphed(
      [&](const data::Batch& x) {
        returned = {x.input_ids * 2, x.labels};
        return returned;
      },
      torch::kCPU);
  for (int i = 0; i < 3; ++i) {
    const Outputs out = graphed(b);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_TRUE(out[0].is_same(returned[0]));
    EXPECT_TRUE(out[1].is_same(b.labels));
  }
  EXPECT_EQ(graphed.replays(), 0);
  EXPECT_EQ(graphed.reason(), "the model is not on a GPU");
}

TEST(GraphedForward, TinyLlamaOnTheCpuIsExact) {
  torch::set_num_threads(2);
  auto m = tiny_llama(torch::kFloat32, torch::kCPU);
  const auto eager = forward_and_loss(*m);
  eval::GraphedForward graphed(eager, m->device());
  torch::manual_seed(1);
  for (int i = 0; i < 3; ++i) expect_eager_results(graphed, eager, random_batch(*m, 2, 8));
  EXPECT_EQ(graphed.replays(), 0);
  EXPECT_FALSE(graphed.reason().empty());
}

TEST(GraphedForward, RunsWithoutGradients) {
  auto w = torch::ones({3}, torch::requires_grad());
  eval::GraphedForward graphed([&](const data::Batch& x) { return Outputs{w * x.input_ids}; }, torch::kCPU);
  data::Batch b;
  b.input_ids = torch::arange(3, torch::kLong);
  EXPECT_FALSE(graphed(b)[0].requires_grad());
}

TEST(GraphedForward, ReasonWhenTurnedOffOrNotBuilt) {
  const auto identity = [](const data::Batch& x) { return Outputs{x.input_ids}; };
  EXPECT_EQ(eval::GraphedForward(identity, torch::kCPU, /*enabled=*/false).reason(), "CUDA graphs are turned off");
  if (eval::GraphedForward::compiled()) return;  // a CUDA device would be asked for a stream
  EXPECT_EQ(eval::GraphedForward(identity, torch::Device(torch::kCUDA, 0)).reason(),
            "this build has no CUDA graphs (LibTorch >= 2.4 built with CUDA)");
}

// --- on a GPU, in a build with CUDA graphs ---

TEST(GraphedForwardCuda, ReplaysEqualEagerBf16) {
  REQUIRE_CUDA_GRAPHS();
  replays_equal_eager(torch::kBFloat16);
}

TEST(GraphedForwardCuda, ReplaysEqualEagerFp32) {
  REQUIRE_CUDA_GRAPHS();
  replays_equal_eager(torch::kFloat32);
}

TEST(GraphedForwardCuda, HostSyncMakesItEager) {
  REQUIRE_CUDA_GRAPHS();
  const torch::Device cuda(torch::kCUDA, 0);
  auto m = tiny_llama(torch::kBFloat16, cuda);
  const auto eager = forward_and_loss(*m);
  eval::GraphedForward graphed(
      [&](const data::Batch& b) {
        Outputs out = eager(b);
        if (!std::isfinite(out[1].item<float>())) throw std::runtime_error("not finite");  // reads the device
        return out;
      },
      cuda);
  torch::manual_seed(1);
  for (int i = 0; i < 4; ++i) expect_eager_results(graphed, eager, random_batch(*m, 2, 16));
  EXPECT_EQ(graphed.replays(), 0);
  EXPECT_NE(graphed.reason().find("host synchronisation"), std::string::npos) << graphed.reason();
}

TEST(GraphedForwardCuda, OneLazySyncIsForgiven) {
  REQUIRE_CUDA_GRAPHS();
  const torch::Device cuda(torch::kCUDA, 0);
  auto m = tiny_llama(torch::kBFloat16, cuda);
  const auto eager = forward_and_loss(*m);
  bool first = true;
  eval::GraphedForward graphed(
      [&](const data::Batch& b) {
        if (first) {  // as a buffer moved to the device by the first forward
          first = false;
          (void)torch::ones({1}, torch::TensorOptions().device(cuda)).item<float>();
        }
        return eager(b);
      },
      cuda);
  torch::manual_seed(1);
  // Checked warm-up fails, is redone eagerly; a second checked warm-up passes; capture; replay.
  for (int i = 0; i < 4; ++i) expect_eager_results(graphed, eager, random_batch(*m, 2, 16));
  EXPECT_EQ(graphed.replays(), 2);
  EXPECT_EQ(graphed.reason(), "");
}

TEST(GraphedForwardCuda, FailedCaptureEndsCleanlyAndStaysCorrect) {
  REQUIRE_CUDA_GRAPHS();
  const torch::Device cuda(torch::kCUDA, 0);
  auto m = tiny_llama(torch::kBFloat16, cuda);
  const auto eager = forward_and_loss(*m);
  int calls = 0;
  eval::GraphedForward graphed(
      [&](const data::Batch& b) {
        Outputs out = eager(b);
        if (++calls == 2) throw std::runtime_error("refused under capture");  // the capturing call
        return out;
      },
      cuda);
  torch::manual_seed(1);
  for (int i = 0; i < 4; ++i) expect_eager_results(graphed, eager, random_batch(*m, 2, 16));
  EXPECT_EQ(graphed.replays(), 0);
  EXPECT_NE(graphed.reason().find("refused under capture"), std::string::npos) << graphed.reason();
  // The stream left capture mode: another wrapper still captures and replays.
  eval::GraphedForward again(eager, cuda);
  for (int i = 0; i < 3; ++i) expect_eager_results(again, eager, random_batch(*m, 2, 16));
  EXPECT_EQ(again.replays(), 2);
}

TEST(GraphedForwardCuda, InsideAndOutsideInferenceMode) {
  REQUIRE_CUDA_GRAPHS();
  const torch::Device cuda(torch::kCUDA, 0);
  auto m = tiny_llama(torch::kBFloat16, cuda);
  const auto eager = forward_and_loss(*m);
  eval::GraphedForward graphed(eager, cuda);
  torch::manual_seed(1);
  {
    c10::InferenceMode inference;  // warm-up and capture inside
    for (int i = 0; i < 2; ++i) expect_eager_results(graphed, eager, random_batch(*m, 2, 16));
  }
  expect_eager_results(graphed, eager, random_batch(*m, 2, 16));  // a replay outside
  {
    c10::InferenceMode inference;
    expect_eager_results(graphed, eager, random_batch(*m, 2, 16));
  }
  EXPECT_EQ(graphed.replays(), 3);
}

namespace {

// A tiny LLaMA classifier (pad id 0) and a padded batch of it: row 1 ends in padding.
std::shared_ptr<model::Model> tiny_llama_classifier(torch::Device device) {
  const nlohmann::json config = {
      {"model_type", "llama"}, {"architectures", {"LlamaForSequenceClassification"}}, {"vocab_size", 64},
      {"hidden_size", 32}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
      {"num_key_value_heads", 2}, {"intermediate_size", 48}, {"num_labels", 3}, {"pad_token_id", 0},
      {"max_position_embeddings", 32}, {"tie_word_embeddings", false}};
  torch::manual_seed(1);
  auto m = model::build_model(model::ModelConfig::from_json(config, "test config"),
                              torch::TensorOptions().dtype(torch::kFloat).device(device));
  m->eval();
  return m;
}

}  // namespace

// Perplexity with its passes graphed equals perplexity run eagerly, to the last bit of the
// double it reports (same kernels, same sums), over passes of two shapes (full batches of
// windows and the shorter last window).
TEST(GraphedForwardCuda, PerplexityEqualsTheEagerOne) {
  if (!torch::cuda::is_available() || !eval::GraphedForward::compiled()) GTEST_SKIP() << "no CUDA graphs here";
  auto m = tiny_llama(torch::kBFloat16, torch::kCUDA);
  torch::manual_seed(5);
  const torch::Tensor tokens = torch::randint(0, 128, {16 * 24 + 7}, torch::kLong);
  eval::PerplexityOptions o;
  o.context = 16;
  o.stride = 16;
  o.batch_size = 4;
  o.cuda_graph = false;
  const eval::PerplexityResult eager = eval::perplexity(*m, tokens, o);
  o.cuda_graph = true;
  const eval::PerplexityResult graphed = eval::perplexity(*m, tokens, o);
  EXPECT_EQ(graphed.mean_nll, eager.mean_nll);
  EXPECT_EQ(graphed.tokens_scored, eager.tokens_scored);
  EXPECT_EQ(graphed.windows, eager.windows);
}

// A padded batch graphs when the caller says the mask is padded (ForwardOptions::
// attention_mask_padded: no read of the device mask), and the replay equals the eager pass that
// reads the mask; pooling at the last real token included.
TEST(GraphedForwardCuda, PaddedBatchesWithTheMaskHint) {
  if (!torch::cuda::is_available() || !eval::GraphedForward::compiled()) GTEST_SKIP() << "no CUDA graphs here";
  auto m = tiny_llama_classifier(torch::kCUDA);
  auto batch = [&](int64_t seed) {
    torch::manual_seed(seed);
    data::Batch b;
    b.input_ids = torch::randint(1, 64, {3, 12}, torch::kLong);
    b.attention_mask = torch::ones({3, 12}, torch::kLong);
    b.attention_mask[1].narrow(0, 7, 5).zero_();
    b.input_ids[1].narrow(0, 7, 5).fill_(0);
    return b.to(torch::kCUDA);
  };
  eval::GraphedForward graphed(
      [&](const data::Batch& b) {
        model::ForwardOptions f;
        f.attention_mask_padded = true;
        return Outputs{m->forward(b.input_ids, b.attention_mask, nullptr, f).logits};
      },
      torch::kCUDA);
  torch::NoGradGuard no_grad;
  for (int64_t k = 0; k < 5; ++k) {
    const data::Batch b = batch(10 + k);
    ASSERT_TRUE(b.attention_mask.defined());
    const torch::Tensor eager = m->forward(b.input_ids, b.attention_mask).logits;
    EXPECT_TRUE(torch::equal(graphed(b).front(), eager)) << "call " << k;
  }
  EXPECT_EQ(graphed.reason(), "");
  EXPECT_EQ(graphed.replays(), 4);  // a warm-up, then a capture that replays, then replays
}
