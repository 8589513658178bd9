// The learn_masks stage end to end at fixture scale: recipes/cofi.yaml trains CoFi's gates,
// meets its target sparsity, prunes physically (the pruned model computes what the masked one
// did), writes pruning.json, fine-tunes, and its export loads back with the pruned shapes.
#include <gtest/gtest.h>
#include <unistd.h>

#include "model/model.h"
#include "recipe/recipe.h"
#include "run/runner.h"
#include "stages/builtin.h"
#include "surgery/masks.h"
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
