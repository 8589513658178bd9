// The learn_masks stage end to end at fixture scale: recipes/cofi.yaml trains CoFi's gates,
// meets its target sparsity, prunes physically (the pruned model computes what the masked one
// did), writes pruning.json, fine-tunes, and its export loads back with the pruned shapes;
// recipes/vtrans.yaml does the same with VIB gates and distillation; Fast- and Faster-VTrans
// train on a fraction of the data / leave the model's weights as they were; train.distill adds
// the KD term to learn_masks' loss.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <sstream>

#include "model/model.h"
#include "recipe/recipe.h"
#include "run/runner.h"
#include "stages/builtin.h"
#include "surgery/masks.h"
#include "surgery/surgery.h"
#include "util/fs.h"
#include "stages/recipe_run.h"

namespace secateur::stages {
namespace {

using testing::InSourceDir;
using testing::run_recipe;
using testing::stage_results;

std::string out_dir(const std::string& tag) { return testing::out_dir("learn-masks-" + tag); }

TEST(LearnMasksRecipes, CofiMeetsItsTargetAndPrunesPhysically) {
  InSourceDir here;
  const std::string out = out_dir("cofi");
  const nlohmann::json report = run_recipe("recipes/cofi.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed") << report.dump(1);
  const nlohmann::json r = stage_results(report, "learn_masks");
  EXPECT_TRUE(r["target_met"].get<bool>()) << r.dump(1);
  EXPECT_GE(r["mask_sparsity"].get<double>(), 0.47);
  EXPECT_LE(r["max_abs_logit_diff_vs_masked"].get<double>(), 1e-4);
  EXPECT_LT(r["params_after"].get<int64_t>(), r["params_before"].get<int64_t>());
  EXPECT_EQ(r["steps"], 200);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  EXPECT_EQ(pruning["estimator"], "learn_masks:cofi");
  // The export is the pruned (and fine-tuned) model: its shapes are the masks'.
  auto m = model::load_model(fs::join(out, "export"));
  const model::ModelConfig dense = model::load_model("tests/fixtures/models/gpt2")->config();
  const surgery::Masks masks = surgery::Masks::from_json(pruning["masks"], dense, "pruning.json");
  EXPECT_EQ(m->config().to_json(), masks.pruned_config(dense).to_json());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::isfinite(m->forward(torch::randint(3, 128, {2, 12})).logits).all().item<bool>());
}

// metrics.jsonl lines of a stage kind whose values hold `key`.
int events_with(const std::string& out, const std::string& kind, const std::string& key) {
  std::istringstream lines(fs::read_file(fs::join(out, "metrics.jsonl")));
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json e = nlohmann::json::parse(line);
    if (e.value("stage", "") == kind && e.contains("values") && e["values"].contains(key)) ++n;
  }
  return n;
}

TEST(LearnMasksRecipes, VtransMeetsItsTargetDistilsAndPrunesPhysically) {
  InSourceDir here;
  const std::string out = out_dir("vtrans");
  const nlohmann::json report = run_recipe("recipes/vtrans.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed") << report.dump(1);
  const nlohmann::json r = stage_results(report, "learn_masks");
  EXPECT_EQ(r["method"], "vib");
  EXPECT_TRUE(r["target_met"].get<bool>()) << r.dump(1);
  EXPECT_GE(r["mask_sparsity"].get<double>(), 0.47);
  EXPECT_LE(r["max_abs_logit_diff_vs_masked"].get<double>(), 1e-4);
  EXPECT_LT(r["params_after"].get<int64_t>(), r["params_before"].get<int64_t>());
  // Both training stages distil (learn_masks from the dense model, the fine-tune from the unpruned one).
  EXPECT_GT(events_with(out, "learn_masks", "distill_kd"), 0);
  EXPECT_GT(events_with(out, "learn_masks", "vib_kl"), 0);
  EXPECT_GT(events_with(out, "train", "distill_kd"), 0);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  EXPECT_EQ(pruning["estimator"], "learn_masks:vib");
  auto m = model::load_model(fs::join(out, "export"));
  const model::ModelConfig dense = model::load_model("tests/fixtures/models/gpt2")->config();
  const surgery::Masks masks = surgery::Masks::from_json(pruning["masks"], dense, "pruning.json");
  EXPECT_EQ(m->config().to_json(), masks.pruned_config(dense).to_json());
}

// A one-stage VTrans run (learn_masks + export) with `vib` overrides.
nlohmann::json run_vib(const std::string& out, const std::string& vib) {
  fs::create_directories(out);
  const std::string recipe = fs::join(out, "vib.yaml");
  fs::write_atomic(recipe,
                   "name: vib\nseed: 0\ndevice: cpu\nmodel: {path: tests/fixtures/models/gpt2}\n"
                   "data: {name: kjv, tokenizer: tests/fixtures/data/kjv_unigram128.model, seq_len: 16, batch_size: 4}\n"
                   "stages:\n  - learn_masks:\n      method: vib\n      target_sparsity: 0.3\n"
                   "      vib: {init_log_variance: -2, kl_weight: 1.0e-3, " + vib + "}\n"
                   "      train: {steps: 12, max_examples: 256, optimizer: {lr: 1.0e-2}, eval: {enabled: false}}\n"
                   "  - export: {}\n");
  return run_recipe(recipe, {}, fs::join(out, "run"));
}

// Faster-VTrans trains only the masks: every exported tensor is the dense one sliced by the masks,
// except the output projections, whose input rows (Conv1D [in, out]) carry the folded means μ.
// Fast-VTrans trains on 3% of the examples.
TEST(LearnMasksRecipes, FasterVtransLeavesTheModelWeightsAsTheyWere) {
  InSourceDir here;
  auto dense = model::load_model("tests/fixtures/models/gpt2");
  auto differs_from_dense = [&](const std::string& out) {
    const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(fs::join(out, "run"), "pruning.json")));
    const surgery::Masks masks = surgery::Masks::from_json(pruning["masks"], dense->config(), "pruning.json");
    auto sliced = surgery::prune(*dense, masks);
    auto exported = model::load_model(fs::join(fs::join(out, "run"), "export"));
    int changed = 0;
    for (const std::string& name : sliced->hf_names()) {
      const torch::Tensor a = sliced->hf_parameter(name).detach();
      const torch::Tensor b = exported->hf_parameter(name).detach();
      if (name.find("c_proj.weight") == std::string::npos) {
        changed += !torch::equal(a, b);
        continue;
      }
      // Row i of the export is μ_i times row i of the dense weight.
      const torch::Tensor scale = (a * b).sum(1, true) / (a * a).sum(1, true);
      changed += !torch::allclose(a * scale, b, 1e-5, 1e-6);
    }
    return changed;
  };
  const std::string faster = out_dir("faster-vtrans");
  const nlohmann::json report = run_vib(faster, "train_model: false, data_fraction: 0.03");
  ASSERT_EQ(report["status"], "completed") << report.dump(1);
  const nlohmann::json r = stage_results(report, "learn_masks");
  EXPECT_FALSE(r["model_trained"].get<bool>());
  EXPECT_EQ(r["train_examples"], 8);  // 3% of 256, rounded
  EXPECT_LE(r["max_abs_logit_diff_vs_masked"].get<double>(), 1e-4);
  EXPECT_GT(r["mask_sparsity"].get<double>(), 0.0);
  EXPECT_EQ(differs_from_dense(faster), 0);
  // The full variant trains the model: the same comparison finds changed tensors.
  const std::string full = out_dir("full-vtrans");
  ASSERT_EQ(run_vib(full, "train_model: true")["status"], "completed");
  EXPECT_GT(differs_from_dense(full), 0);
}

// train.distill in learn_masks adds the KD term to the loss.
TEST(LearnMasksRecipes, DistillationInLearnMasksAddsTheKdTerm) {
  InSourceDir here;
  const std::vector<std::string> short_run = {"stages.0.learn_masks.train.steps=10", "stages.1.train.steps=1"};
  const std::string plain = out_dir("cofi-plain");
  const nlohmann::json a = run_recipe("recipes/cofi.yaml", short_run, plain);
  std::vector<std::string> distilled_run = short_run;
  distilled_run.push_back("stages.0.learn_masks.train.distill.teacher=dense");
  distilled_run.push_back("stages.0.learn_masks.train.distill.alpha=0.9");
  const std::string distilled = out_dir("cofi-distilled");
  const nlohmann::json b = run_recipe("recipes/cofi.yaml", distilled_run, distilled);
  ASSERT_EQ(a["status"], "completed");
  ASSERT_EQ(b["status"], "completed");
  EXPECT_EQ(events_with(plain, "learn_masks", "distill_kd"), 0);
  EXPECT_GT(events_with(distilled, "learn_masks", "distill_kd"), 0);
  // The same steps from the same seed: the loss is 0.1·task + 0.9·KD (+ the Lagrangian) instead of task.
  EXPECT_GT(std::abs(stage_results(b, "learn_masks")["train_loss"].get<double>() -
                     stage_results(a, "learn_masks")["train_loss"].get<double>()),
            1e-3);
}

// Movement, block movement and LoRAPrune: the target is met, the pruned model equals the masked
// one, and the export loads back.
class LearnMasksMethods : public ::testing::TestWithParam<std::string> {};

TEST_P(LearnMasksMethods, MeetTheTargetAndPrunePhysically) {
  InSourceDir here;
  const std::string out = out_dir(GetParam());
  const nlohmann::json report = run_recipe("recipes/" + GetParam() + ".yaml", {}, out);
  ASSERT_EQ(report["status"], "completed") << report.dump(1);
  const nlohmann::json r = stage_results(report, "learn_masks");
  EXPECT_EQ(r["method"], GetParam());
  EXPECT_TRUE(r["target_met"].get<bool>()) << r.dump(1);
  EXPECT_NEAR(r["mask_sparsity"].get<double>(), 0.5, 0.02);
  EXPECT_LE(r["max_abs_logit_diff_vs_masked"].get<double>(), 1e-4);
  auto m = model::load_model(fs::join(out, "export"));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::isfinite(m->forward(torch::randint(3, 128, {2, 12})).logits).all().item<bool>());
}

INSTANTIATE_TEST_SUITE_P(Recipes, LearnMasksMethods, ::testing::Values("movement", "block_movement", "loraprune"));

}  // namespace
}  // namespace secateur::stages
