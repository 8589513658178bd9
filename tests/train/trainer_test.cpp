// The training loop: schedules against HF's closed forms, the weight-decay rule, accumulation,
// clipping, gradient ascent for `maximize` groups, bitwise resume, non-finite losses, freezing
// and a tiny overfit.
#include <gtest/gtest.h>

#include <cmath>
#include <unistd.h>

#include "model/model.h"
#include "support/train_fixtures.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/fs.h"

namespace secateur::train {
namespace {

using testing::fixture_model;
using testing::RandomBlocks;

// The mean causal-LM loss on all rows: an evaluator that needs no DataSource.
class RowsLoss : public Evaluator {
 public:
  explicit RowsLoss(std::shared_ptr<RandomBlocks> rows) : rows_(std::move(rows)) {}
  StepMetrics evaluate(model::Model& m, const model::Gates* gates, const model::ForwardOptions& o) override {
    torch::NoGradGuard no_grad;
    m.eval();
    const auto b = rows_->batch(0, 0);
    const auto logits = m.forward(b.input_ids, b.attention_mask, gates, o).logits;
    const auto lp = torch::log_softmax(logits.narrow(1, 0, logits.size(1) - 1), -1);
    const auto nll = -lp.gather(-1, b.input_ids.narrow(1, 1, b.input_ids.size(1) - 1).unsqueeze(-1)).mean();
    return {{"loss", nll.item<double>()}};
  }

 private:
  std::shared_ptr<RandomBlocks> rows_;
};

std::string temp_dir(const std::string& name) {
  const std::string d = fs::join(fs::temp_directory(), "secateur-train-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TrainOptions sgd(double lr, int64_t steps) {
  TrainOptions o;
  o.steps = steps;
  o.optimizer.kind = OptimizerKind::sgd;
  o.optimizer.lr = lr;
  o.schedule.kind = ScheduleKind::constant;
  o.max_grad_norm = 0;
  o.log_every = 0;
  o.best_metric = "";
  return o;
}

io::TensorMap snapshot(const model::Model& m) {
  io::TensorMap out;
  for (const auto& [k, v] : m.state_dict_hf()) out[k] = v.clone();
  return out;
}

// ---- schedules --------------------------------------------------------------------------------

TEST(Schedule, WarmupThenLinearDecayAsHuggingFace) {
  ScheduleOptions s;
  s.kind = ScheduleKind::linear;
  s.warmup_steps = 10;
  const int64_t N = 110;
  EXPECT_DOUBLE_EQ(lr_factor(s, 0, N), 0.0);
  EXPECT_DOUBLE_EQ(lr_factor(s, 5, N), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(s, 10, N), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(s, 60, N), 0.5);  // (110 − 60) / (110 − 10)
  EXPECT_DOUBLE_EQ(lr_factor(s, 110, N), 0.0);
}

TEST(Schedule, CosineWithWarmupRatioAndFloor) {
  ScheduleOptions s;
  s.kind = ScheduleKind::cosine;
  s.warmup_ratio = 0.1;
  const int64_t N = 200;
  EXPECT_EQ(warmup_steps(s, N), 20);
  for (int64_t step : {20, 65, 110, 155, 200}) {
    const double progress = static_cast<double>(step - 20) / 180.0;
    EXPECT_NEAR(lr_factor(s, step, N), 0.5 * (1 + std::cos(M_PI * progress)), 1e-15) << step;
  }
  s.min_lr_ratio = 0.1;
  EXPECT_NEAR(lr_factor(s, 200, N), 0.1, 1e-15);
  EXPECT_NEAR(lr_factor(s, 110, N), 0.1 + 0.9 * 0.5, 1e-15);
  s.kind = ScheduleKind::constant;
  EXPECT_DOUBLE_EQ(lr_factor(s, 150, N), 1.0);
}

// ---- weight decay -----------------------------------------------------------------------------

TEST(WeightDecay, ExcludesBiasesAndNormWeightsOfEveryFamily) {
  // In these architectures the 1-D parameters are exactly the biases and the norm weights.
  for (const char* name : {"gpt2", "llama_gqa", "bert_cls", "qwen2"}) {
    auto m = fixture_model(name);
    int64_t excluded = 0;
    for (const auto& n : m->hf_names()) {
      const bool one_d = m->hf_parameter(n).dim() == 1;
      EXPECT_EQ(decays(n, true), !one_d) << name << " " << n;
      excluded += one_d;
    }
    EXPECT_GT(excluded, 0) << name;
  }
  EXPECT_TRUE(decays("transformer.wte.weight", true));
  EXPECT_FALSE(decays("transformer.wte.weight", false));
  EXPECT_FALSE(decays("model.embed_tokens.weight", false));
  EXPECT_FALSE(decays("bert.embeddings.word_embeddings.weight", false));
  EXPECT_TRUE(decays("model.layers.0.mlp.up_proj.weight", false));
}

TEST(WeightDecay, AdamWDecaysOnlyTheDecayGroup) {
  // A frozen-but-one model with lr·wd large: after one step, a decayed matrix has shrunk by
  // exactly the decoupled factor beyond Adam's update, a bias has not been decayed at all.
  auto m = fixture_model("gpt2");
  auto rows = std::make_shared<RandomBlocks>(8, 16, 128, 4);
  TrainOptions o;
  o.steps = 1;
  o.optimizer.lr = 1e-3;
  o.optimizer.weight_decay = 100.0;
  o.schedule.kind = ScheduleKind::constant;
  o.max_grad_norm = 0;
  o.log_every = 0;
  o.best_metric = "";
  o.freeze.mode = FreezeMode::patterns;
  o.freeze.patterns = {"^transformer\\.h\\.0\\.mlp\\.c_fc\\."};
  {
    torch::NoGradGuard no_grad;  // a large bias: decaying it would move it by lr·wd·5 = 0.5
    m->hf_parameter("transformer.h.0.mlp.c_fc.bias").fill_(5.0);
  }
  const auto before = snapshot(*m);
  Trainer t(*m, o, rows);
  EXPECT_EQ(t.trainable_names(), (std::vector<std::string>{"transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.bias"}));
  t.run();
  const auto after = snapshot(*m);
  // Adam's first step moves each entry by lr·g/(|g|+eps) ≈ ±lr; decay adds −lr·wd·p = −0.1·p.
  const auto w0 = before.at("transformer.h.0.mlp.c_fc.weight"), w1 = after.at("transformer.h.0.mlp.c_fc.weight");
  const auto adam = (w1 - w0 * (1 - 1e-3 * 100.0)).abs();
  EXPECT_LE(adam.max().item<double>(), 1e-3 * 1.0001);
  const auto b0 = before.at("transformer.h.0.mlp.c_fc.bias"), b1 = after.at("transformer.h.0.mlp.c_fc.bias");
  EXPECT_LE((b1 - b0).abs().max().item<double>(), 1e-3 * 1.0001);  // no −0.1·b term
  EXPECT_TRUE(torch::equal(before.at("transformer.h.1.mlp.c_fc.weight"), after.at("transformer.h.1.mlp.c_fc.weight")));
}

// ---- accumulation, clipping, ascent ------------------------------------------------------------

TEST(Accumulation, KMicroBatchesEqualOneBigBatch) {
  // SGD, lr 1: the update is the gradient. Blocks without padding: the mean of the micro-batch
  // means is the big batch's mean. (llama_gqa has no dropout, so both runs see the same function.)
  auto a = fixture_model("llama_gqa");
  auto b = fixture_model("llama_gqa");
  TrainOptions o = sgd(1.0, 1);
  o.grad_accumulation = 4;
  Trainer(*a, o, std::make_shared<RandomBlocks>(8, 12, 128, 2, 0, false)).run();
  o.grad_accumulation = 1;
  Trainer(*b, o, std::make_shared<RandomBlocks>(8, 12, 128, 8, 0, false)).run();
  for (const auto& n : a->hf_names())
    EXPECT_TRUE(torch::allclose(a->hf_parameter(n), b->hf_parameter(n), 1e-5, 1e-6)) << n;
}

TEST(Clipping, UpdateHasTheMaxNormWhenGradientsAreLarger) {
  auto m = fixture_model("gpt2");
  auto rows = std::make_shared<RandomBlocks>(4, 12, 128, 4);
  const auto before = snapshot(*m);
  TrainOptions o = sgd(1.0, 1);
  o.max_grad_norm = 1e-3;
  Trainer(*m, o, rows).run();
  double sq = 0;
  for (const auto& [k, v] : snapshot(*m)) sq += (v - before.at(k)).to(torch::kDouble).pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(sq), 1e-3, 1e-6);
}

// An extension with two scalars and loss a + b: `a` descends, `b` (maximize) ascends.
class TwoScalars : public Extension {
 public:
  torch::Tensor a = torch::zeros({}).set_requires_grad(true), b = torch::zeros({}).set_requires_grad(true);
  std::string name() const override { return "scalars"; }
  std::vector<ParamGroup> param_groups() override {
    ParamGroup ga{"a", {a}, 0.5, 0, false}, gb{"b", {b}, 0.25, 0, true};
    return {ga, gb};
  }
  torch::Tensor loss(const StepInfo&, const data::Batch&, const model::ForwardOutput&, StepMetrics&) override { return a + b; }
  void save(io::TensorMap& t, nlohmann::json&) const override { t["a"] = a, t["b"] = b; }
  void load(const io::TensorMap& t, const nlohmann::json&) override {
    torch::NoGradGuard g;
    a.copy_(t.at("a")), b.copy_(t.at("b"));
  }
};

TEST(ParamGroups, MaximizeGroupsAscendWithTheirOwnLearningRate) {
  auto m = fixture_model("gpt2");
  auto ext = std::make_shared<TwoScalars>();
  TrainOptions o = sgd(1e-3, 3);
  o.freeze.mode = FreezeMode::all;  // only the extension trains
  const auto before = snapshot(*m);
  Trainer t(*m, o, std::make_shared<RandomBlocks>(4, 8, 128, 2), {ext});
  EXPECT_TRUE(t.trainable_names().empty());
  t.run();
  EXPECT_DOUBLE_EQ(ext->a.item<double>(), -1.5);   // 3 steps of −0.5·1
  EXPECT_DOUBLE_EQ(ext->b.item<double>(), 0.75);   // 3 steps of +0.25·1
  for (const auto& [k, v] : snapshot(*m)) EXPECT_TRUE(torch::equal(v, before.at(k))) << k;
}

// ---- resume, interrupts, non-finite ------------------------------------------------------------

TEST(Resume, StoppedAndResumedRunEqualsUninterruptedBitwise) {
  // AdamW with warm-up + cosine, accumulation 2, dropout on (the fixture's p = 0.1 draws from
  // torch's generator), two epochs of shuffled data: every piece of state must come back.
  auto rows = std::make_shared<RandomBlocks>(12, 10, 128, 2, 7);
  TrainOptions o;
  o.steps = 8;
  o.grad_accumulation = 2;
  o.optimizer.lr = 3e-3;
  o.optimizer.weight_decay = 0.01;
  o.schedule.kind = ScheduleKind::cosine;
  o.schedule.warmup_steps = 2;
  o.log_every = 3;
  o.eval_every = 3;
  o.keep_last = 1;
  auto ext_full = std::make_shared<TwoScalars>();
  torch::manual_seed(0);
  auto full = fixture_model("gpt2");
  const auto r_full = Trainer(*full, o, rows, {ext_full}, std::make_shared<RowsLoss>(rows)).run({temp_dir("full")});
  EXPECT_FALSE(r_full.interrupted);
  EXPECT_EQ(r_full.steps, 8);

  const std::string dir = temp_dir("stopped");
  torch::manual_seed(0);
  auto part = fixture_model("gpt2");
  TrainOptions stop = o;
  stop.interrupt_after_steps = 5;
  const auto r_part = Trainer(*part, stop, rows, {std::make_shared<TwoScalars>()}, std::make_shared<RowsLoss>(rows)).run({dir});
  EXPECT_TRUE(r_part.interrupted);
  EXPECT_EQ(r_part.steps, 5);
  EXPECT_NE(latest_checkpoint(dir).find("step-00000005"), std::string::npos);

  torch::manual_seed(123);  // a different generator state: the checkpoint must restore it
  auto resumed = fixture_model("gpt2");
  auto ext_resumed = std::make_shared<TwoScalars>();
  const auto r = Trainer(*resumed, o, rows, {ext_resumed}, std::make_shared<RowsLoss>(rows)).run({dir, true});
  EXPECT_EQ(r.resumed_from, 5);
  EXPECT_EQ(r.steps, 8);
  EXPECT_EQ(r.train_loss, r_full.train_loss);
  EXPECT_EQ(r.final_metrics.at("loss"), r_full.final_metrics.at("loss"));
  EXPECT_EQ(r.best_step, r_full.best_step);
  for (const auto& n : full->hf_names()) EXPECT_TRUE(torch::equal(full->hf_parameter(n), resumed->hf_parameter(n))) << n;
  EXPECT_TRUE(torch::equal(ext_full->a, ext_resumed->a));

  // Resuming a finished run trains nothing and reports the same results.
  auto again = fixture_model("gpt2");
  const auto r2 = Trainer(*again, o, rows, {std::make_shared<TwoScalars>()}, std::make_shared<RowsLoss>(rows)).run({dir, true});
  EXPECT_EQ(r2.resumed_from, 8);
  EXPECT_EQ(r2.train_loss, r_full.train_loss);
  for (const auto& n : full->hf_names()) EXPECT_TRUE(torch::equal(full->hf_parameter(n), again->hf_parameter(n))) << n;
}

// Returns the scripted values of "score" in turn.
class Scripted : public Evaluator {
 public:
  explicit Scripted(std::vector<double> v) : values_(std::move(v)) {}
  StepMetrics evaluate(model::Model&, const model::Gates*, const model::ForwardOptions&) override {
    return {{"score", values_.at(next_++)}};
  }

 private:
  std::vector<double> values_;
  size_t next_ = 0;
};

TEST(Checkpoints, KeepLastAndBest) {
  auto m = fixture_model("gpt2");
  auto rows = std::make_shared<RandomBlocks>(8, 10, 128, 2);
  TrainOptions o = sgd(1e-2, 6);
  o.checkpoint_every = 1;
  o.eval_every = 1;
  o.keep_last = 2;
  o.best_metric = "score";
  const std::string dir = temp_dir("keep");
  const auto r = Trainer(*m, o, rows, {}, std::make_shared<Scripted>(std::vector<double>{3, 1, 2, 4, 5, 6})).run({dir});
  EXPECT_EQ(r.best_step, 2);
  EXPECT_EQ(r.best_metrics.at("score"), 1.0);
  EXPECT_EQ(r.final_metrics.at("score"), 6.0);
  EXPECT_EQ(fs::list_directory(dir), (std::vector<std::string>{"step-00000002", "step-00000005", "step-00000006"}));
  EXPECT_EQ(fs::file_name(r.best_checkpoint), "step-00000002");
}

TEST(Interrupt, SignalFlagStopsAtTheNextStepWithACheckpoint) {
  auto m = fixture_model("gpt2");
  const std::string dir = temp_dir("signal");
  request_interrupt();
  const auto r = Trainer(*m, sgd(1e-2, 5), std::make_shared<RandomBlocks>(8, 10, 128, 2)).run({dir});
  clear_interrupt();
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(r.steps, 1);
  EXPECT_EQ(fs::file_name(latest_checkpoint(dir)), "step-00000001");
}

TEST(NonFinite, StopsNamingTheStepAndKeepsTheLastGoodCheckpoint) {
  auto m = fixture_model("gpt2");
  const std::string dir = temp_dir("nan");
  TrainOptions o = sgd(1e30, 10);
  try {
    Trainer(*m, o, std::make_shared<RandomBlocks>(8, 10, 128, 2)).run({dir});
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at step 2 of 10"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step-00000001"), std::string::npos) << msg;
  }
  // The saved state is the last good one: finite weights after one step.
  const auto w = io::load_weights(latest_checkpoint(dir) + "/model.safetensors");
  for (const auto& [k, v] : w) EXPECT_TRUE(torch::isfinite(v).all().item<bool>()) << k;
}

// ---- learning ----------------------------------------------------------------------------------

TEST(Overfit, LossDecreasesOnATinySet) {
  auto m = fixture_model("llama_gqa");
  auto rows = std::make_shared<RandomBlocks>(4, 16, 128, 4);
  auto eval = std::make_shared<RowsLoss>(rows);
  const double before = eval->evaluate(*m, nullptr, {}).at("loss");
  TrainOptions o;
  o.steps = 30;
  o.optimizer.lr = 1e-2;
  o.schedule.kind = ScheduleKind::constant;
  o.log_every = 0;
  const auto r = Trainer(*m, o, rows, {}, eval).run();
  EXPECT_LT(r.final_metrics.at("loss"), 0.5 * before);
}

TEST(Sampler, ShardsArePermutationsSplitAcrossRanks) {
  EpochSampler s0(10, 3, true, 0, 3), s1(10, 3, true, 1, 3), s2(10, 3, true, 2, 3);
  EXPECT_EQ(s0.size(), 3);
  std::vector<int64_t> all;
  for (const auto* s : {&s0, &s1, &s2})
    for (auto i : s->order(4)) all.push_back(i);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());  // disjoint
  EXPECT_EQ(all.size(), 9u);
  EXPECT_NE(s0.order(0), s0.order(1));  // a new order every epoch
  EXPECT_EQ(s0.order(2), EpochSampler(10, 3, true, 0, 3).order(2));
}

}  // namespace
}  // namespace secateur::train
