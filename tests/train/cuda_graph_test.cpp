// train::CudaGraphStep: a training run whose steps are replayed from captured CUDA graphs ends
// where the eager run ends (same loss, same weights), with and without bf16 autocast, with
// gradient accumulation and with a batch of another shape (run eagerly between replays). On a
// machine without a GPU or without CUDA graphs in LibTorch, only the option's CPU behaviour.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/cuda_graph_step.h"
#include "train/trainer.h"
#include "util/error.h"

namespace secateur::train {
namespace {

// A small BERT classifier without dropout: eager and replayed steps then compute the same thing.
std::shared_ptr<model::Model> classifier(torch::Device device) {
  const nlohmann::json config = {{"model_type", "bert"}, {"architectures", {"BertForSequenceClassification"}},
                                 {"vocab_size", 512}, {"hidden_size", 64}, {"num_hidden_layers", 2},
                                 {"num_attention_heads", 4}, {"intermediate_size", 128},
                                 {"max_position_embeddings", 64}, {"num_labels", 3}, {"hidden_dropout_prob", 0.0},
                                 {"attention_probs_dropout_prob", 0.0}};
  torch::manual_seed(0);
  auto m = model::build_model(model::ModelConfig::from_json(config, "test config"),
                              torch::TensorOptions().dtype(torch::kFloat32).device(device));
  return m;
}

// Fixed labelled batches of 4 × 32 tokens on the host; batch `odd_index` (if ≥ 0) has 16 tokens.
class LabelledBatches : public BatchSource {
 public:
  explicit LabelledBatches(int64_t odd_index = -1) : odd_(odd_index) {
    auto g = torch::make_generator<at::CPUGeneratorImpl>(99);
    for (int i = 0; i < 8; ++i) {
      data::Batch b;
      const int64_t len = i == odd_ ? 16 : 32;
      b.input_ids = torch::randint(512, {4, len}, g, torch::kLong);
      b.attention_mask = torch::ones_like(b.input_ids);
      b.labels = torch::randint(3, {4}, g, torch::kLong);
      batches_.push_back(b);
    }
  }
  int64_t batches_per_epoch() const override { return static_cast<int64_t>(batches_.size()); }
  data::Batch batch(int64_t, int64_t index) const override { return batches_[index]; }
  std::string describe() const override { return "labelled random batches"; }

 private:
  int64_t odd_;
  std::vector<data::Batch> batches_;
};

struct TrainedModel {
  TrainResult result;
  io::TensorMap weights;
};

TrainedModel train(CudaGraphMode mode, bool bf16, int64_t accumulation, int64_t odd_index, torch::Device device) {
  auto m = classifier(device);
  TrainOptions o;
  o.steps = 10;
  o.grad_accumulation = accumulation;
  o.bf16 = bf16;
  o.cuda_graph = mode;
  o.optimizer.lr = 1e-3;
  o.optimizer.weight_decay = 0.01;
  o.schedule.kind = ScheduleKind::linear;  // the rate changes every step: replays must see it
  o.schedule.warmup_steps = 3;
  o.log_every = 2;
  Trainer trainer(*m, o, std::make_shared<LabelledBatches>(odd_index));
  TrainedModel r;
  r.result = trainer.run();
  for (const auto& [name, t] : m->state_dict_hf()) r.weights[name] = t.to(torch::kCPU).clone();
  return r;
}

void expect_same_training(const TrainedModel& eager, const TrainedModel& graphed, double tolerance) {
  EXPECT_NEAR(graphed.result.train_loss, eager.result.train_loss, tolerance * std::abs(eager.result.train_loss));
  for (const auto& [name, w] : eager.weights) {
    const double diff = (graphed.weights.at(name) - w).abs().max().item<double>();
    EXPECT_LT(diff, tolerance) << name;
  }
}

bool graphs_available() { return torch::cuda::is_available() && CudaGraphStep::compiled(); }

TEST(CudaGraphStep, ReplayedTrainingEqualsEagerTrainingOnAGpu) {
  if (!graphs_available()) GTEST_SKIP() << "needs a CUDA device and LibTorch >= 2.4 with CUDA";
  const torch::Device gpu(torch::kCUDA);
  const TrainedModel eager = train(CudaGraphMode::off, false, 1, -1, gpu);
  const TrainedModel graphed = train(CudaGraphMode::on, false, 1, -1, gpu);
  EXPECT_EQ(eager.result.graph_replays, 0);
  EXPECT_EQ(graphed.result.graph_replays, 10 - 2);  // two eager warm-up steps, then captured
  expect_same_training(eager, graphed, 1e-5);
  // And it trained: the replayed steps moved the weights.
  auto initial = classifier(gpu)->state_dict_hf();
  double moved = 0;
  for (const auto& [name, w] : graphed.weights) moved = std::max(moved, (w - initial.at(name).to(torch::kCPU)).abs().max().item<double>());
  EXPECT_GT(moved, 1e-3);
}

TEST(CudaGraphStep, Bf16AccumulationAndAnOddBatchEqualEagerOnAGpu) {
  if (!graphs_available()) GTEST_SKIP() << "needs a CUDA device and LibTorch >= 2.4 with CUDA";
  const torch::Device gpu(torch::kCUDA);
  // 10 steps × 2 micro-batches over 8 batches: micro-batch 5 (step 3) and 13 (step 7) are short.
  const TrainedModel eager = train(CudaGraphMode::off, true, 2, 5, gpu);
  const TrainedModel graphed = train(CudaGraphMode::on, true, 2, 5, gpu);
  EXPECT_EQ(graphed.result.graph_replays, 10 - 2 - 2);  // warm-up, and the two steps of odd shape
  expect_same_training(eager, graphed, 1e-4);
}

TEST(CudaGraphStep, TrueOnTheCpuIsAnErrorAndAutoIsEager) {
  EXPECT_THROW(train(CudaGraphMode::on, false, 1, -1, torch::kCPU), UserError);
  const TrainedModel r = train(CudaGraphMode::automatic, false, 1, -1, torch::kCPU);
  EXPECT_EQ(r.result.graph_replays, 0);
  EXPECT_EQ(r.result.steps, 10);
}

}  // namespace
}  // namespace secateur::train
