// recipes/minitron.yaml end to end at fixture scale: activation-importance width pruning meets
// its target widths in every layer, retraining distils from the model before pruning (its KD term
// is logged, and is not the zero a copy of the pruned model would give), and the export loads back.
#include <gtest/gtest.h>

#include <sstream>

#include "model/model.h"
#include "stages/recipe_run.h"
#include "util/fs.h"

namespace secateur::stages {
namespace {

using testing::InSourceDir;
using testing::run_recipe;
using testing::stage_results;

// The first distill_kd value the train stage logged.
double first_kd(const std::string& out) {
  std::istringstream lines(fs::read_file(fs::join(out, "metrics.jsonl")));
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json e = nlohmann::json::parse(line);
    if (e.value("stage", "") == "train" && e.contains("values") && e["values"].contains("distill_kd"))
      return e["values"]["distill_kd"].get<double>();
  }
  return -1;
}

TEST(MinitronRecipe, PrunesWidthToTargetAndDistilsFromTheUnprunedModel) {
  InSourceDir here;
  const std::vector<std::string> first_step = {"stages.2.train.log_every=1"};
  const std::string out = testing::out_dir("minitron");
  const nlohmann::json report = run_recipe("recipes/minitron.yaml", first_step, out);
  ASSERT_EQ(report["status"], "completed") << report.dump(1);
  EXPECT_LE(stage_results(report, "prune")["max_abs_logit_diff_vs_masked"].get<double>(), 1e-4);
  // The fixture: hidden 96, 6 query heads in 2 key/value groups, 200 neurons; targets hidden 0.25,
  // heads 0.5 (whole groups), ffn 0.5, the same in every layer.
  auto m = model::load_model(fs::join(out, "export"));
  const model::ModelConfig& c = m->config();
  EXPECT_EQ(c.hidden_size, 72);
  for (const model::LayerShape& s : c.layers) {
    EXPECT_EQ(s.num_heads, 3);
    EXPECT_EQ(s.num_kv_heads, 1);
    EXPECT_EQ(s.intermediate, 100);
  }
  EXPECT_TRUE(c.is_uniform());
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::isfinite(m->forward(torch::randint(3, 128, {2, 12})).logits).all().item<bool>());
  }
  // Distillation from the model before pruning: a real gap at the first step, where a copy of the
  // pruned model (teacher dense) agrees with the student exactly.
  const double unpruned = first_kd(out);
  EXPECT_GT(unpruned, 1e-3);
  std::vector<std::string> self = first_step;
  self.push_back("stages.2.train.distill.teacher=dense");
  const std::string self_out = testing::out_dir("minitron-self");
  ASSERT_EQ(run_recipe("recipes/minitron.yaml", self, self_out)["status"], "completed");
  EXPECT_LT(first_kd(self_out), 1e-6);
}

}  // namespace
}  // namespace secateur::stages
