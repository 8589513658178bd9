// What data-parallel ranks must agree on besides the gradient, two processes on loopback with
// Gloo against one process alone (the re-exec pattern of workers.h; roles run in
// DistAgreementWorker.Run):
//   - importance scores: each rank runs its share of the calibration batches and the ranks sum
//     their statistics, so the scores of activation, fluctuation, projection, head_gradient,
//     taylor, block_influence and aggregated_activation (and FLAP's channel means) equal one
//     process's on the whole set: with an uneven split (3 batches, one padded) and with a rank
//     that owns no batch;
//   - evaluation: perplexity, a confusion matrix and block search's criterion over the ranks'
//     shares equal one process's;
//   - stopping: SIGTERM on one rank, or a non-finite loss on one rank, stops both at the same
//     step; rank 0 alone writes the checkpoint, and both ranks resume from it;
//   - export: only rank 0 writes the export directory, and rank 1 finds it complete after the stage.
#include <gtest/gtest.h>

#include <csignal>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "dist/data_parallel.h"
#include "dist/dist.h"
#include "dist/launch.h"
#include "eval/classification.h"
#include "eval/perplexity.h"
#include "importance/estimator.h"
#include "methods/block_search.h"
#include "model/prunable.h"
#include "recipe/recipe.h"
#include "run/run_state.h"
#include "run/runner.h"
#include "stages/builtin.h"
#include "support/train_fixtures.h"
#include "surgery/masks.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/fs.h"
#include "workers.h"

namespace secateur::dist {
namespace {

using model::GroupKind;
using secateur::testing::fixture_model;
using secateur::testing::RandomBlocks;
using namespace secateur::dist::testing;  // workers.h: the worker processes and their files

const WorkerOptions kOnFileStore{"DistAgreementWorker.Run", /*torchrun_env=*/false, ""};

// ---- estimators and evaluation -----------------------------------------------------------------

// `count` batches of 2 × 12 random tokens; the last one's second row is right-padded by 5, so
// that the ranks see unequal numbers of real tokens.
std::vector<data::Batch> calibration(int64_t count) {
  auto g = torch::make_generator<at::CPUGeneratorImpl>(5);
  std::vector<data::Batch> out;
  for (int64_t b = 0; b < count; ++b) {
    const torch::Tensor ids = torch::randint(128, {2, 12}, g, torch::kLong);
    torch::Tensor mask = torch::ones_like(ids);
    if (b == count - 1) mask[1].narrow(0, 7, 5).zero_();
    out.push_back({ids, mask, {}, {}});
  }
  return out;
}

struct EstimatorCase {
  std::string name;
  std::set<GroupKind> kinds;
  importance::EstimatorOptions options;
};

std::vector<EstimatorCase> estimator_cases() {
  importance::EstimatorOptions plain, element, per_example, angular, variance;
  element.variant = "element";
  per_example.per_example = true;
  angular.metric = "angular";
  variance.batch_aggregation = "var";
  variance.sequence_aggregation = "l2";
  return {{"activation", {GroupKind::head, GroupKind::ffn_neuron, GroupKind::hidden_dim}, plain},
          {"fluctuation", {GroupKind::head, GroupKind::ffn_neuron}, plain},
          {"projection", {GroupKind::head, GroupKind::ffn_neuron}, plain},
          {"head_gradient", {GroupKind::head, GroupKind::ffn_neuron, GroupKind::layer}, plain},
          {"head_gradient", {GroupKind::head}, per_example},
          {"taylor", {GroupKind::head, GroupKind::ffn_neuron}, plain},
          {"taylor", {GroupKind::head, GroupKind::ffn_neuron}, element},
          {"block_influence", {GroupKind::attn_block, GroupKind::mlp_block, GroupKind::layer}, plain},
          {"block_influence", {GroupKind::layer}, angular},
          {"aggregated_activation", {GroupKind::head, GroupKind::ffn_neuron, GroupKind::hidden_dim}, plain},
          {"aggregated_activation", {GroupKind::head, GroupKind::ffn_neuron}, variance}};
}

// Every number of `s` in a fixed order: the scores per kind and layer, the angular distances,
// FLAP's channel means by weight name.
std::vector<torch::Tensor> flatten(const importance::Scores& s) {
  std::vector<torch::Tensor> out;
  for (const auto& [kind, layers] : s.per_layer)
    for (const torch::Tensor& t : layers)
      if (t.defined()) out.push_back(t);
  out.push_back(torch::tensor(s.layer_runs, torch::kDouble));
  for (const auto& [name, mean] : s.channel_means) out.push_back(mean);
  return out;
}

// Per estimator case, the flattened scores on `batches`.
std::vector<std::vector<torch::Tensor>> all_scores(model::Model& m, const std::vector<data::Batch>& batches) {
  const model::PrunableStructure structure = model::prunable_structure(m);
  std::vector<std::vector<torch::Tensor>> out;
  for (EstimatorCase c : estimator_cases()) {
    c.options.name = c.name;
    const importance::Context ctx{m, structure, batches, nullptr, c.kinds};
    out.push_back(flatten(importance::make_estimator(c.options)->estimate(ctx)));
  }
  return out;
}

// Perplexity of a 150-token stream in windows of 16 every 12 tokens, 2 per forward pass (the
// last window is shorter: a pass of its own): {perplexity, mean NLL, tokens scored, windows}.
torch::Tensor perplexity(model::Model& m) {
  auto g = torch::make_generator<at::CPUGeneratorImpl>(11);
  const torch::Tensor stream = torch::randint(128, {150}, g, torch::kLong);
  eval::PerplexityOptions o;
  o.context = 16;
  o.stride = 12;
  o.batch_size = 2;
  const eval::PerplexityResult r = eval::perplexity(m, stream, o);
  return torch::tensor({r.perplexity, r.mean_nll, static_cast<double>(r.tokens_scored), static_cast<double>(r.windows)},
                       torch::kDouble);
}

// The confusion matrix of 5 batches of 4 fixed random predictions over 3 classes (one label
// ignored), each rank adding the batches it owns.
torch::Tensor confusion() {
  auto g = torch::make_generator<at::CPUGeneratorImpl>(13);
  eval::ClassificationMetrics metrics(3);
  for (int64_t b = 0; b < 5; ++b) {
    const torch::Tensor logits = torch::randn({4, 3}, g);
    torch::Tensor labels = torch::randint(3, {4}, g, torch::kLong);
    if (b == 2) labels[0] = -100;
    if (owns(b)) metrics.add(logits, labels);
  }
  metrics.sum_over_ranks();
  std::vector<int64_t> cells;
  for (const auto& row : metrics.confusion()) cells.insert(cells.end(), row.begin(), row.end());
  return torch::tensor(cells, torch::kLong);
}

// Greedy BlockPruner search for 2 blocks by calibration perplexity: {start score, then per
// removal its layer, whether it was an attention block, its score; layer passes}.
torch::Tensor block_search(model::Model& m) {
  methods::BlockSearchOptions o;
  o.remove.count = 2;
  const methods::BlockSearchResult r = methods::block_search(m, calibration(3), o, surgery::Masks::keep_all(m.config()));
  std::vector<double> out{r.start_score};
  for (const methods::Removal& removal : r.order) {
    out.push_back(static_cast<double>(removal.candidate.layer));
    out.push_back(removal.candidate.kind == methods::TargetKind::attn_blocks ? 1.0 : 0.0);
    out.push_back(removal.score);
  }
  out.push_back(static_cast<double>(r.layers_run));
  return torch::tensor(out, torch::kDouble);
}

// Everything above in one list: the scores on 3 batches, on 1 batch, then the evaluations.
std::vector<torch::Tensor> measurements(model::Model& m) {
  std::vector<torch::Tensor> out;
  for (int64_t batches : {3, 1})
    for (const auto& scores : all_scores(m, calibration(batches))) out.insert(out.end(), scores.begin(), scores.end());
  for (const torch::Tensor& t : {perplexity(m), confusion(), block_search(m)}) out.push_back(t);
  return out;
}

void measure_worker(int64_t rank) {
  Session session(file_group(rank));
  auto m = fixture_model("llama_gqa");
  save(measurements(*m), "measure", rank);
}

// ---- stopping together -------------------------------------------------------------------------

constexpr int64_t kSteps = 3;

// 16 fixed random blocks, 2 per rank and step (a global batch of 4).
std::shared_ptr<RandomBlocks> rank_blocks(int64_t rank, int64_t world) {
  return std::make_shared<RandomBlocks>(16, 12, 128, 4 / world, /*seed=*/7, /*shuffle=*/true, rank, world);
}

// Raises SIGTERM in this process during optimiser step `at` (0-based): a signal one rank alone sees.
class SignalDuringStep : public train::Extension {
 public:
  explicit SignalDuringStep(int64_t at) : at_(at) {}
  std::string name() const override { return "signal"; }
  void after_step(const train::StepInfo& info, train::StepMetrics&) override {
    if (info.step == at_) std::raise(SIGTERM);
  }

 private:
  int64_t at_;
};

// A loss term that is NaN at optimiser step `at`: one rank's data gone bad.
class NanAtStep : public train::Extension {
 public:
  explicit NanAtStep(int64_t at) : at_(at) {}
  std::string name() const override { return "nan"; }
  torch::Tensor loss(const train::StepInfo& info, const data::Batch&, const model::ForwardOutput&, train::StepMetrics&) override {
    return info.step == at_ ? torch::full({}, std::nan(""), torch::kFloat) : torch::Tensor();
  }

 private:
  int64_t at_;
};

// Trains `m` on this rank's blocks, checkpointing into the parent's directory.
train::TrainResult train_rank(model::Model& m, int64_t rank, std::vector<std::shared_ptr<train::Extension>> extensions,
                              bool resume) {
  train::Trainer trainer(m, data_parallel_training(kSteps), rank_blocks(rank, kWorld), std::move(extensions), nullptr, {},
                         make_gradient_sync(m));
  return trainer.run({fs::join(worker_dir(), "checkpoints"), resume});
}

std::vector<torch::Tensor> weights(const model::Model& m) {
  std::vector<torch::Tensor> out;
  for (const auto& n : m.hf_names()) out.push_back(m.hf_parameter(n).detach().clone());
  return out;
}

void signal_worker(int64_t rank) {
  Session session(file_group(rank));
  std::vector<std::shared_ptr<train::Extension>> extensions;
  if (rank == 1) extensions.push_back(std::make_shared<SignalDuringStep>(1));
  auto m = fixture_model("llama_gqa");
  const train::TrainResult r = train_rank(*m, rank, extensions, false);
  save({torch::tensor(r.steps), torch::tensor(static_cast<int64_t>(r.interrupted))}, "signal", rank);
}

// A relaunch after the signal: every rank resumes from the checkpoint rank 0 wrote.
void resume_worker(int64_t rank) {
  Session session(file_group(rank));
  auto m = fixture_model("llama_gqa");
  const train::TrainResult r = train_rank(*m, rank, {}, true);
  std::vector<torch::Tensor> out{torch::tensor(r.resumed_from), torch::tensor(r.steps)};
  for (const torch::Tensor& w : weights(*m)) out.push_back(w);
  save(out, "resume", rank);
}

void nonfinite_worker(int64_t rank) {
  Session session(file_group(rank));
  std::vector<std::shared_ptr<train::Extension>> extensions;
  if (rank == 1) extensions.push_back(std::make_shared<NanAtStep>(1));
  auto m = fixture_model("llama_gqa");
  std::string message = "no error";
  try {
    train_rank(*m, rank, extensions, false);
  } catch (const UserError& e) {
    message = e.what();
  }
  fs::write_atomic(fs::join(worker_dir(), "nonfinite-rank" + std::to_string(rank) + ".txt"), message);
}

// ---- export --------------------------------------------------------------------------------------

// After the export stage: whether this rank's own RunDir::file("export") exists (only rank 0's
// may) and what it finds in the run directory's export/.
class LookAtExport : public recipe::Stage {
 public:
  void run(run::RunState& state) override {
    const nlohmann::json seen = {{"own_export", fs::exists(state.dir.file("export"))},
                                 {"main_export", fs::list_directory(fs::join(state.dir.path(), "export"))}};
    fs::write_atomic(fs::join(worker_dir(), "export-rank" + std::to_string(rank()) + ".json"), seen.dump());
  }
};

void export_worker() {
  recipe::Registry registry = stages::registry();
  registry.add_stage({"look_at_export", "", recipe::Schema::structure(),
                      [](const recipe::Value&) { return std::make_unique<LookAtExport>(); }});
  const auto recipe = recipe::load_recipe_text(
      "name: two-ranks-export\ndevice: cpu\nthreads: 1\ndistributed: {backend: gloo, timeout_s: 60}\n"
      "model: {path: " + std::string(SECATEUR_FIXTURES) + "/models/llama_gqa}\n"
      "stages:\n  - export: {}\n  - look_at_export: {}\n",
      "two_ranks_export.yaml", {}, *registry.recipe_schema());
  run::RunOptions options;
  options.runs_root = fs::join(worker_dir(), "runs");
  auto session = join_for_run(recipe, options);
  ASSERT_NE(session, nullptr);
  const std::string path = run::execute(recipe, registry, options);
  fs::write_atomic(fs::join(worker_dir(), "run-rank" + std::to_string(options.rank) + ".txt"), path);
}

TEST(DistAgreementWorker, Run) {
  const std::string role = worker_role();
  if (role.empty()) GTEST_SKIP() << "runs only as a worker of the DistAgreement tests";
  torch::set_num_threads(1);
  const int64_t rank = worker_rank();
  if (role == "measure") measure_worker(rank);
  else if (role == "signal") signal_worker(rank);
  else if (role == "resume") resume_worker(rank);
  else if (role == "nonfinite") nonfinite_worker(rank);
  else if (role == "export") export_worker();
  else FAIL() << "unknown worker role " << role;
}

// ---- the parent side -------------------------------------------------------------------------

bool gloo_missing() { return !backend_available(Backend::gloo); }

// |a − b| ≤ tolerance · max |b| over the tensor (scores are compared on their own scale).
void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tolerance, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  if (b.numel() == 0) return;
  const double scale = std::max(b.abs().max().item<double>(), 1e-30);
  EXPECT_LE((a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>(), tolerance * scale) << what;
}

TEST(DistAgreement, EstimatorScoresAndEvaluationEqualOneProcess) {
  if (gloo_missing()) GTEST_SKIP() << "this build has no Gloo backend";
  torch::set_num_threads(1);
  const std::string dir = temp_dir("measure");
  ASSERT_EQ(run_workers("measure", dir, kOnFileStore), (std::vector<int>{0, 0}));
  const auto rank0 = load(dir, "measure", 0), rank1 = load(dir, "measure", 1);
  auto m = fixture_model("llama_gqa");
  const auto alone = measurements(*m);  // no Session: every batch here
  ASSERT_EQ(rank0.size(), alone.size());
  ASSERT_EQ(rank1.size(), alone.size());
  for (size_t i = 0; i < alone.size(); ++i) EXPECT_TRUE(torch::equal(rank0[i], rank1[i])) << "ranks differ at " << i;

  const size_t scores = alone.size() - 3;
  for (size_t i = 0; i < scores; ++i) expect_close(rank0[i], alone[i], 1e-6, "score tensor " + std::to_string(i));
  const auto& ppl = alone[scores];
  EXPECT_EQ(rank0[scores][2].item<double>(), ppl[2].item<double>()) << "tokens scored";
  EXPECT_EQ(rank0[scores][3].item<double>(), ppl[3].item<double>()) << "windows";
  EXPECT_NEAR(rank0[scores][0].item<double>(), ppl[0].item<double>(), 1e-9 * ppl[0].item<double>()) << "perplexity";
  EXPECT_TRUE(torch::equal(rank0[scores + 1], alone[scores + 1])) << "confusion matrix";
  EXPECT_EQ(alone[scores + 1].sum().item<int64_t>(), 19);  // 20 predictions, one ignored
  const auto& search = alone[scores + 2];
  ASSERT_EQ(rank0[scores + 2].sizes(), search.sizes());
  for (int64_t k : {1, 2, 4, 5}) EXPECT_EQ(rank0[scores + 2][k].item<double>(), search[k].item<double>()) << "removal " << k;
  EXPECT_EQ(rank0[scores + 2][-1].item<double>(), search[-1].item<double>()) << "layer passes over all ranks";
  expect_close(rank0[scores + 2], search, 1e-9, "block search scores");
  fs::remove_all(dir);
}

TEST(DistAgreement, SignalOnOneRankStopsBothAtTheSameStepAndBothResume) {
  if (gloo_missing()) GTEST_SKIP() << "this build has no Gloo backend";
  torch::set_num_threads(1);
  const std::string dir = temp_dir("signal");
  ASSERT_EQ(run_workers("signal", dir, kOnFileStore), (std::vector<int>{0, 0}));
  for (int64_t r = 0; r < kWorld; ++r) {
    const auto t = load(dir, "signal", r);
    EXPECT_EQ(t[0].item<int64_t>(), 2) << "steps on rank " << r;
    EXPECT_EQ(t[1].item<int64_t>(), 1) << "interrupted on rank " << r;
  }
  // One checkpoint, written once (no temporary left by a second writer).
  const std::string checkpoints = fs::join(dir, "checkpoints");
  EXPECT_EQ(fs::list_directory(checkpoints), std::vector<std::string>{"step-00000002"});

  fs::remove_all(fs::join(dir, "store"));
  ASSERT_EQ(run_workers("resume", dir, kOnFileStore), (std::vector<int>{0, 0}));
  const auto rank0 = load(dir, "resume", 0), rank1 = load(dir, "resume", 1);
  for (const auto* t : {&rank0, &rank1}) {
    EXPECT_EQ((*t)[0].item<int64_t>(), 2) << "resumed from";
    EXPECT_EQ((*t)[1].item<int64_t>(), kSteps);
  }
  // Both ranks end where one process training the same 3 steps without a stop ends.
  auto alone = fixture_model("llama_gqa");
  train::Trainer(*alone, data_parallel_training(kSteps), rank_blocks(0, 1)).run();
  const auto reference = weights(*alone);
  ASSERT_EQ(rank0.size(), reference.size() + 2);
  for (size_t i = 0; i < reference.size(); ++i) {
    EXPECT_TRUE(torch::equal(rank0[i + 2], rank1[i + 2])) << "ranks differ at tensor " << i;
    EXPECT_LE((rank0[i + 2] - reference[i]).abs().max().item<double>(), 1e-6) << "tensor " << i;
  }
  fs::remove_all(dir);
}

TEST(DistAgreement, NonFiniteLossOnOneRankStopsBothAtTheSameStep) {
  if (gloo_missing()) GTEST_SKIP() << "this build has no Gloo backend";
  const std::string dir = temp_dir("nonfinite");
  ASSERT_EQ(run_workers("nonfinite", dir, kOnFileStore), (std::vector<int>{0, 0}));
  for (int64_t r = 0; r < kWorld; ++r) {
    const std::string message = fs::read_file(fs::join(dir, "nonfinite-rank" + std::to_string(r) + ".txt"));
    EXPECT_NE(message.find("non-finite"), std::string::npos) << "rank " << r << ": " << message;
    EXPECT_NE(message.find("at step 2 of 3"), std::string::npos) << "rank " << r << ": " << message;
    EXPECT_NE(message.find("step-00000001"), std::string::npos) << "rank " << r << ": " << message;
  }
  // The last good state, saved once by rank 0, with finite weights.
  const std::string checkpoints = fs::join(dir, "checkpoints");
  ASSERT_EQ(fs::list_directory(checkpoints), std::vector<std::string>{"step-00000001"});
  for (const auto& [name, w] : io::load_weights(fs::join(checkpoints, "step-00000001/model.safetensors")))
    EXPECT_TRUE(torch::isfinite(w).all().item<bool>()) << name;
  fs::remove_all(dir);
}

TEST(DistAgreement, OnlyRankZeroWritesTheExport) {
  if (gloo_missing()) GTEST_SKIP() << "this build has no Gloo backend";
  const std::string dir = temp_dir("export"), tmp = fs::join(dir, "tmp");
  fs::create_directories(tmp);
  ASSERT_EQ(run_workers("export", dir, {"DistAgreementWorker.Run", /*torchrun_env=*/true, tmp}), (std::vector<int>{0, 0}));
  const std::string path = fs::read_file(fs::join(dir, "run-rank0.txt"));
  EXPECT_EQ(fs::read_file(fs::join(dir, "run-rank1.txt")), path);
  const std::vector<std::string> files = fs::list_directory(fs::join(path, "export"));
  for (const char* expected : {"config.json", "model.safetensors"})
    EXPECT_NE(std::find(files.begin(), files.end(), expected), files.end()) << expected;
  for (const std::string& f : files) EXPECT_EQ(f.find("tmp"), std::string::npos) << "a partial file: " << f;
  const auto rank0 = nlohmann::json::parse(fs::read_file(fs::join(dir, "export-rank0.json")));
  const auto rank1 = nlohmann::json::parse(fs::read_file(fs::join(dir, "export-rank1.json")));
  EXPECT_TRUE(rank0["own_export"].get<bool>());
  EXPECT_FALSE(rank1["own_export"].get<bool>()) << "rank 1 wrote an export of its own";
  EXPECT_EQ(rank1["main_export"].get<std::vector<std::string>>(), files) << "rank 1 saw an incomplete export";
  const auto report = nlohmann::json::parse(fs::read_file(fs::join(path, "report.json")));
  EXPECT_EQ(report["status"], "completed");
  EXPECT_LE(report["stages"][0]["results"]["max_abs_logit_diff"].get<double>(), 1e-5);
  EXPECT_TRUE(fs::list_directory(tmp).empty());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace secateur::dist
