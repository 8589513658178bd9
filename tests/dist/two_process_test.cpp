// Two processes on loopback with Gloo, against one process doing the same work alone:
//   - training: 2 ranks × half the global batch, gradients averaged by DataParallelSync, end
//     with the weights (model and an extension's gates) of 1 process on the whole global batch;
//   - statistics: per-rank sums over each rank's calibration batches, all_reduce_sum'ed, equal
//     the single-process sums over all batches;
//   - the gradient hook alone: averages, zero-fills a gradient only some ranks have, leaves one
//     no rank has undefined; broadcast makes every rank hold rank 0's values; host scalars
//     (sum_over_ranks, any_rank) agree on every rank;
//   - `secateur run` as two ranks (join_for_run + run::execute): one run directory, named by
//     rank 0, written only by rank 0, while the stage runs on both.
// The test binary re-runs itself as the workers (DistWorker.Run; workers.h), so no launcher is
// needed.
#include <gtest/gtest.h>

#include "dist/data_parallel.h"
#include "dist/dist.h"
#include "dist/launch.h"
#include "dist/world.h"
#include "model/model.h"
#include "recipe/recipe.h"
#include "recipe/registry.h"
#include "run/run_state.h"
#include "run/runner.h"
#include "support/train_fixtures.h"
#include "train/trainer.h"
#include "util/fs.h"
#include "workers.h"

namespace secateur::dist {
namespace {

using namespace secateur::dist::testing;  // workers.h: the worker processes and their files
using secateur::testing::fixture_model;
using secateur::testing::RandomBlocks;

constexpr int64_t kGlobalBatch = 4;  // blocks per optimiser step, over all ranks
constexpr int64_t kSteps = 3;

// ---- the work each side does --------------------------------------------------------------

// 16 fixed random blocks of 12 tokens, dealt to ranks by EpochSampler as make_batch_source does.
std::shared_ptr<RandomBlocks> blocks(int64_t batch_size, int64_t rank, int64_t world) {
  return std::make_shared<RandomBlocks>(16, 12, 128, batch_size, /*seed=*/7, /*shuffle=*/true, rank, world);
}

// Continuous head gates that train with the model: an extension's parameters must be averaged too.
class HeadGates : public train::Extension {
 public:
  explicit HeadGates(const model::ModelConfig& config) {
    gates_ = model::Gates::ones(config, torch::kCPU, /*requires_grad=*/true).head;
  }
  std::string name() const override { return "head_gates"; }
  std::vector<train::ParamGroup> param_groups() override { return {{"gates", gates_}}; }
  void prepare(const train::StepInfo&, model::Gates& gates, model::ForwardOptions&) override { gates.head = gates_; }
  const std::vector<torch::Tensor>& gates() const { return gates_; }

 private:
  std::vector<torch::Tensor> gates_;
};

// The model's parameters in HF-name order, then the gates.
std::vector<torch::Tensor> train_llama(int64_t rank, int64_t world, std::shared_ptr<train::GradientSync> sync,
                                       model::Model& m) {
  auto gates = std::make_shared<HeadGates>(m.config());
  train::Trainer trainer(m, data_parallel_training(kSteps), blocks(kGlobalBatch / world, rank, world), {gates}, nullptr, {},
                         std::move(sync));
  trainer.run();
  std::vector<torch::Tensor> out;
  for (const auto& n : m.hf_names()) out.push_back(m.hf_parameter(n).detach().clone());
  for (const auto& g : gates->gates()) out.push_back(g.detach().clone());
  return out;
}

// Calibration-like statistics of the model's logits over the batches this rank owns:
// token count (int64), per-logit sums of squares (float32), the logits' Gram matrix (float64).
std::vector<torch::Tensor> statistics(model::Model& m) {
  torch::NoGradGuard no_grad;
  m.eval();
  const auto all = blocks(2, 0, 1);
  auto count = torch::zeros({1}, torch::kLong);
  auto sumsq = torch::zeros({128}, torch::kFloat);
  auto gram = torch::zeros({128, 128}, torch::kDouble);
  for (int64_t b = 0; b < all->batches_per_epoch(); ++b) {
    if (!owns(b)) continue;
    const auto batch = all->batch(0, b);
    const auto x = m.forward(batch.input_ids, batch.attention_mask).logits.reshape({-1, 128});
    count += x.size(0);
    sumsq += x.pow(2).sum(0);
    const auto xd = x.to(torch::kDouble);
    gram += xd.t().mm(xd);
  }
  std::vector<torch::Tensor> stats{count, sumsq, gram};
  all_reduce_sum(stats);
  return stats;
}

// ---- workers --------------------------------------------------------------------------------

void train_worker() {
  // The production path: the world from torchrun's variables, a TCPStore served by rank 0.
  const World world = world_from_environment(process_environment(), false);
  ASSERT_EQ(world.world_size, kWorld);
  Session session(ProcessGroup::over_tcp(world, gloo_options(4096)));  // small buckets: many of them
  auto m = fixture_model("llama_gqa");
  if (world.rank == 1) {
    // Rank 1 starts elsewhere: make_gradient_sync must hand it rank 0's weights.
    torch::NoGradGuard no_grad;
    for (auto& p : m->parameters()) p.add_(0.01);
  }
  auto sync = make_gradient_sync(*m);
  ASSERT_NE(dynamic_cast<DataParallelSync*>(sync.get()), nullptr);
  ASSERT_EQ(sync->rank(), world.rank);
  save(train_llama(world.rank, world.world_size, sync, *m), "train", world.rank);
}

void stats_worker(int64_t rank) {
  Session session(file_group(rank));
  auto m = fixture_model("llama_gqa");
  save(statistics(*m), "stats", rank);
}

void sync_worker(int64_t rank) {
  auto group = file_group(rank, 64);
  Session session(group);
  DataParallelSync sync(group);
  // a: both ranks have a gradient; b: only rank 1; c: none.
  auto a = torch::zeros({3}, torch::requires_grad()), b = torch::zeros({2, 2}, torch::requires_grad()),
       c = torch::zeros({5}, torch::requires_grad());
  a.mutable_grad() = torch::full({3}, rank == 0 ? 1.0 : 3.0, torch::kFloat);
  if (rank == 1) b.mutable_grad() = torch::full({2, 2}, 4.0, torch::kFloat);
  sync.synchronize({a, b, c});
  // broadcast: rank 0's values everywhere (two dtypes: two buckets).
  auto w = torch::full({4, 3}, static_cast<double>(rank + 10), torch::kDouble),
       v = torch::full({7}, static_cast<double>(rank), torch::kFloat);
  sync.broadcast_from_main({w, v});
  // host scalars: only rank 1 was interrupted, yet every rank must stop.
  const double sum = sum_over_ranks(static_cast<double>(rank + 1));
  const bool any = any_rank(rank == 1), none = any_rank(false);
  save({a.grad(), b.grad(), torch::tensor(c.grad().defined() ? 1 : 0), w, v, torch::tensor(sum),
        torch::tensor(static_cast<int64_t>(any)), torch::tensor(static_cast<int64_t>(none))},
       "sync", rank);
}

// A stage that needs every rank (a collective) and writes into the run directory.
class SumRanks : public recipe::Stage {
 public:
  void run(run::RunState& state) override {
    const double sum = sum_over_ranks(static_cast<double>(rank() + 1));
    fs::write_atomic(state.dir.file("sum.txt"), std::to_string(rank()) + "\n");
    state.record({{"sum", sum}});
  }
};

void run_worker() {
  recipe::Registry registry;
  registry.add_section({"distributed", "", distributed_schema(), false});
  registry.add_stage({"sum_ranks", "", recipe::Schema::structure(),
                      [](const recipe::Value&) { return std::make_unique<SumRanks>(); }});
  const auto recipe = recipe::load_recipe_text(
      "name: two-ranks\ndevice: cpu\nthreads: 1\ndistributed: {backend: gloo, timeout_s: 60}\nstages:\n  - sum_ranks: {}\n",
      "two_ranks.yaml", {}, *registry.recipe_schema());
  const std::string dir = worker_dir();
  run::RunOptions options;
  options.runs_root = fs::join(dir, "runs");
  auto session = join_for_run(recipe, options);
  ASSERT_NE(session, nullptr);
  const std::string path = run::execute(recipe, registry, options);
  fs::write_atomic(fs::join(dir, "run-rank" + std::to_string(options.rank) + ".txt"), path);
}

TEST(DistWorker, Run) {
  const std::string role = worker_role();
  if (role.empty()) GTEST_SKIP() << "runs only as a worker of the DistTwoProcess tests";
  torch::set_num_threads(1);
  const int64_t rank = worker_rank();
  if (role == "train") train_worker();
  else if (role == "stats") stats_worker(rank);
  else if (role == "sync") sync_worker(rank);
  else if (role == "run") run_worker();
  else FAIL() << "unknown worker role " << role;
}

// ---- the parent side -------------------------------------------------------------------------

TEST(DistTwoProcess, TrainingEqualsOneProcessOnTheGlobalBatch) {
  if (!backend_available(Backend::gloo)) GTEST_SKIP() << "this build has no Gloo backend";
  torch::set_num_threads(1);
  const std::string dir = temp_dir("train");
  ASSERT_EQ(run_workers("train", dir, {"DistWorker.Run", /*torchrun_env=*/true, ""}), (std::vector<int>{0, 0}));
  const auto rank0 = load(dir, "train", 0), rank1 = load(dir, "train", 1);

  auto alone = fixture_model("llama_gqa");
  const auto before = alone->hf_parameter(alone->hf_names().front()).clone();
  const auto reference = train_llama(0, 1, nullptr, *alone);
  ASSERT_EQ(rank0.size(), reference.size());
  ASSERT_FALSE(torch::allclose(reference.front(), before)) << "training moved nothing";
  for (size_t i = 0; i < reference.size(); ++i) {
    EXPECT_TRUE(torch::equal(rank0[i], rank1[i])) << "ranks differ at tensor " << i;
    EXPECT_LE((rank0[i] - reference[i]).abs().max().item<double>(), 1e-6) << "tensor " << i;
  }
  fs::remove_all(dir);
}

TEST(DistTwoProcess, SummedStatisticsEqualOneProcessOverAllBatches) {
  if (!backend_available(Backend::gloo)) GTEST_SKIP() << "this build has no Gloo backend";
  torch::set_num_threads(1);
  const std::string dir = temp_dir("stats");
  ASSERT_EQ(run_workers("stats", dir), (std::vector<int>{0, 0}));
  const auto rank0 = load(dir, "stats", 0), rank1 = load(dir, "stats", 1);
  auto m = fixture_model("llama_gqa");
  const auto alone = statistics(*m);  // no Session: every batch, sums as they are
  ASSERT_EQ(alone[0].item<int64_t>(), 16 * 12);
  for (size_t i = 0; i < alone.size(); ++i) {
    EXPECT_TRUE(torch::equal(rank0[i], rank1[i])) << i;
    EXPECT_EQ(rank0[i].scalar_type(), alone[i].scalar_type()) << i;
  }
  EXPECT_TRUE(torch::equal(rank0[0], alone[0]));
  EXPECT_TRUE(torch::allclose(rank0[1], alone[1], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(rank0[2], alone[2], 1e-12, 1e-9));
  fs::remove_all(dir);
}

TEST(DistTwoProcess, GradientSyncAveragesAndBroadcastCopiesRankZero) {
  if (!backend_available(Backend::gloo)) GTEST_SKIP() << "this build has no Gloo backend";
  const std::string dir = temp_dir("sync");
  ASSERT_EQ(run_workers("sync", dir), (std::vector<int>{0, 0}));
  for (int64_t r = 0; r < kWorld; ++r) {
    const auto t = load(dir, "sync", r);
    EXPECT_TRUE(torch::equal(t[0], torch::full({3}, 2.0, torch::kFloat))) << "(1 + 3) / 2 on rank " << r;
    EXPECT_TRUE(torch::equal(t[1], torch::full({2, 2}, 2.0, torch::kFloat))) << "(0 + 4) / 2 on rank " << r;
    EXPECT_EQ(t[2].item<int64_t>(), 0) << "a gradient no rank had stays undefined on rank " << r;
    EXPECT_TRUE(torch::equal(t[3], torch::full({4, 3}, 10.0, torch::kDouble))) << r;
    EXPECT_TRUE(torch::equal(t[4], torch::zeros({7}, torch::kFloat))) << r;
    EXPECT_EQ(t[5].item<double>(), 3.0) << r;
    EXPECT_EQ(t[6].item<int64_t>(), 1) << r;
    EXPECT_EQ(t[7].item<int64_t>(), 0) << r;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace secateur::dist

namespace secateur::dist {
namespace {

TEST(DistTwoProcess, OnlyRankZeroWritesTheRunDirectory) {
  if (!backend_available(Backend::gloo)) GTEST_SKIP() << "this build has no Gloo backend";
  const std::string dir = temp_dir("run"), tmp = fs::join(dir, "tmp");
  fs::create_directories(tmp);
  ASSERT_EQ(run_workers("run", dir, {"DistWorker.Run", /*torchrun_env=*/true, tmp}), (std::vector<int>{0, 0}));
  // Both ranks ran in the directory rank 0 named (named after the time: they could differ).
  const std::string path = fs::read_file(fs::join(dir, "run-rank0.txt"));
  EXPECT_EQ(fs::read_file(fs::join(dir, "run-rank1.txt")), path);
  EXPECT_EQ(fs::list_directory(fs::join(dir, "runs")), std::vector<std::string>{fs::file_name(path)});
  // Rank 0's own writes; rank 1's sum.txt went to its scratch directory, removed at the end.
  EXPECT_EQ(fs::read_file(fs::join(path, "sum.txt")), "0\n");
  const auto report = nlohmann::json::parse(fs::read_file(fs::join(path, "report.json")));
  EXPECT_EQ(report["status"], "completed");
  EXPECT_EQ(report["stages"][0]["results"]["sum"], 3.0);  // the stage ran on both ranks
  EXPECT_TRUE(fs::exists(fs::join(path, "metrics.jsonl")));
  EXPECT_TRUE(fs::exists(fs::join(path, "recipe.resolved.yaml")));
  EXPECT_FALSE(fs::exists(fs::join(path, ".lock")));
  EXPECT_TRUE(fs::list_directory(tmp).empty());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace secateur::dist
