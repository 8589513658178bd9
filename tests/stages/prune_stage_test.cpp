// The prune stage end to end: the three method recipes at fixture scale (targets met exactly,
// pruning.json written and exported, the export loads back with finite logits), re-applying a
// pruning.json, and the calibration sources.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "model/model.h"
#include "recipe/recipe.h"
#include "run/runner.h"
#include "stages/builtin.h"
#include "stages/calibration.h"
#include "surgery/masks.h"
#include "util/error.h"
#include "util/fs.h"
#include "stages/recipe_run.h"

namespace secateur::stages {
namespace {

using testing::InSourceDir;
using testing::run_recipe;
using testing::stage_results;

std::string out_dir(const std::string& tag) { return testing::out_dir("prune-" + tag); }

// The export loads back, has the pruned shape, and computes finite logits.
std::shared_ptr<model::Model> check_export(const std::string& out) {
  const std::string dir = fs::join(out, "export");
  EXPECT_TRUE(fs::is_regular_file(fs::join(dir, "pruning.json")));
  auto m = model::load_model(dir);
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(3, 128, {2, 12}, torch::kLong);
  EXPECT_TRUE(torch::isfinite(m->forward(ids).logits).all().item<bool>());
  return m;
}

TEST(PruneRecipes, SixteenHeadsPrunesHalfTheHeadsIterativelyByGradient) {
  InSourceDir here;
  const std::string out = out_dir("sixteen");
  const nlohmann::json report = run_recipe("recipes/sixteen_heads.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed");
  const nlohmann::json prune = stage_results(report, "prune");
  EXPECT_TRUE(prune["target_met"].get<bool>());
  EXPECT_EQ(prune["rounds"], 5);
  EXPECT_EQ(prune["targets"]["heads"]["requested"], 4);  // half of 2 layers × 4 heads
  EXPECT_EQ(prune["targets"]["heads"]["removed"], 4);
  int64_t heads = 0;
  for (const auto& l : prune["kept_per_layer"]) heads += l["heads"].get<int64_t>();
  EXPECT_EQ(heads, 4);
  // One point of the pruning curve per round, plus the dense model's.
  const std::string metrics = fs::read_file(fs::join(out, "metrics.jsonl"));
  for (int round = 0; round <= 5; ++round)
    EXPECT_NE(metrics.find("\"round\":" + std::to_string(round)), std::string::npos) << round;
  EXPECT_NE(metrics.find("calibration_loss"), std::string::npos);
  const auto m = check_export(out);
  EXPECT_EQ(m->config().layers[0].num_heads + m->config().layers[1].num_heads, 4);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  EXPECT_EQ(pruning["recipe_hash"], report["recipe_hash"]);
  EXPECT_EQ(pruning["rounds"].size(), 5u);
  // schedule.iterative.eval: every point of the curve (the dense model, then each round) carries the
  // eval stage's masked-LM metrics on the same test blocks, measured through that round's masks.
  const nlohmann::json& curve = prune["curve"];
  ASSERT_EQ(curve.size(), 6u);  // rounds + 1
  EXPECT_EQ(prune["curve_eval"]["split"], "test");
  double removed = -1;
  for (size_t k = 0; k < curve.size(); ++k) {
    EXPECT_EQ(curve[k]["round"], k);
    ASSERT_TRUE(curve[k].contains("accuracy")) << k;
    ASSERT_TRUE(curve[k].contains("loss")) << k;
    EXPECT_TRUE(curve[k].contains("calibration_loss")) << k;
    EXPECT_GE(curve[k]["params_removed_fraction"].get<double>(), removed) << k;  // non-decreasing
    removed = curve[k]["params_removed_fraction"].get<double>();
  }
  EXPECT_EQ(curve[0]["heads_removed_fraction"], 0.0);
  EXPECT_EQ(curve[0]["params_removed_fraction"], 0.0);
  EXPECT_DOUBLE_EQ(curve[5]["heads_removed_fraction"].get<double>(), 0.5);
  EXPECT_GT(curve[5]["params_removed_fraction"].get<double>(), 0.0);
  // Round 0 is the dense eval stage's measurement exactly (same blocks, all gates one) and the last
  // round the pruned model's eval stage (surgery keeps the function).
  ASSERT_EQ(report["stages"][0]["kind"], "eval");
  ASSERT_EQ(report["stages"][2]["kind"], "eval");
  const nlohmann::json& dense = report["stages"][0]["results"];
  const nlohmann::json& pruned = report["stages"][2]["results"];
  EXPECT_EQ(curve[0]["accuracy"].get<double>(), dense["accuracy"].get<double>());
  EXPECT_EQ(curve[0]["loss"].get<double>(), dense["loss"].get<double>());
  EXPECT_NEAR(curve[5]["accuracy"].get<double>(), pruned["accuracy"].get<double>(), 1e-6);
  EXPECT_NEAR(curve[5]["loss"].get<double>(), pruned["loss"].get<double>(), 1e-6 * pruned["loss"].get<double>());
  // The per-round events carry the metrics too, and the report draws the curve.
  EXPECT_NE(metrics.find("\"accuracy\""), std::string::npos);
  const std::string md = fs::read_file(fs::join(out, "report.md"));
  EXPECT_NE(md.find("## Pruning curve"), std::string::npos) << md;
  EXPECT_NE(md.find("| round | params removed | heads removed | calibration loss | accuracy | loss |"), std::string::npos) << md;
  const std::string html = fs::read_file(fs::join(out, "report.html"));
  EXPECT_NE(html.find("<h2>Pruning curve</h2>"), std::string::npos);
  EXPECT_NE(html.find("metric vs sparsity"), std::string::npos);
  fs::remove_all(out);
}

// schedule.iterative.eval measures the real curve: its round 0 is an eval stage's measurement of the
// dense model and its last round an eval stage's measurement of the physically pruned model (same
// split, same limits), for each task's metrics, with and without FLAP's bias compensation.
TEST(PruneStage, PerRoundEvalMatchesEvalStagesOfTheDenseAndThePrunedModel) {
  InSourceDir here;
  struct Case {
    std::string name, model, data, eval, prune;
    std::vector<std::string> metrics;
    int rounds;
  };
  const std::vector<Case> cases = {
      {"causal", "tests/fixtures/models/llama_gqa",
       "{name: kjv, tokenizer: tests/fixtures/data/kjv_unigram128.model, seq_len: 32, batch_size: 4, cache: false}",
       "{split: test, max_tokens: 1024, context: 32, stride: 16}",
       "estimator: {name: activation}\n      target: {heads: 0.5, ffn: 0.5}\n      allocation: global\n",
       {"perplexity", "loss"}, 2},
      {"flap", "tests/fixtures/models/llama_gqa",
       "{name: kjv, tokenizer: tests/fixtures/data/kjv_unigram128.model, seq_len: 32, batch_size: 4, cache: false}",
       "{split: validation, max_tokens: 768}",
       "estimator: {name: fluctuation, standardize: true}\n      target: {ffn: 0.3}\n      allocation: adaptive\n"
       "      bias_compensation: true\n",
       {"perplexity", "loss"}, 2},
      {"classifier", "tests/fixtures/models/bert_cls",
       "{name: kjv_testament, tokenizer: tests/fixtures/data/kjv_wordpiece128, seq_len: 24, batch_size: 8, cache: false}",
       "{split: test, max_examples: 96}",
       "estimator: {name: head_gradient, normalize: true}\n      target: {heads: 0.5}\n      allocation: global\n",
       {"accuracy", "macro_f1", "loss"}, 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string dir = out_dir("curve-recipe-" + c.name), out = out_dir("curve-" + c.name);
    fs::create_directories(dir);
    const std::string recipe = fs::join(dir, "r.yaml");
    fs::write_atomic(recipe, "name: curve\nseed: 3\nmodel: {path: " + c.model + "}\ndata: " + c.data +
                                 "\nstages:\n  - eval: " + c.eval + "\n  - prune:\n      " + c.prune +
                                 "      schedule: {iterative: {step: 0.25, eval: " + c.eval + "}}\n"
                                 "      calibration: {num_sequences: 8, batch_size: 4}\n  - eval: " + c.eval + "\n");
    const nlohmann::json r = run_recipe(recipe, {}, out);
    ASSERT_EQ(r["status"], "completed");
    const nlohmann::json& dense = r["stages"][0]["results"];
    const nlohmann::json& prune = r["stages"][1]["results"];
    const nlohmann::json& pruned = r["stages"][2]["results"];
    ASSERT_EQ(prune["rounds"], c.rounds);
    const nlohmann::json& curve = prune["curve"];
    ASSERT_EQ(curve.size(), static_cast<size_t>(c.rounds + 1));
    EXPECT_EQ(curve[0]["params_removed_fraction"], 0.0);
    EXPECT_GT(curve.back()["params_removed_fraction"].get<double>(), 0.1);
    EXPECT_LT(pruned["params"].get<int64_t>(), dense["params"].get<int64_t>());
    for (const std::string& key : c.metrics) {
      SCOPED_TRACE(key);
      for (const auto& point : curve) ASSERT_TRUE(point.contains(key)) << point.dump();
      const double scale = key == "perplexity" || key == "loss" ? std::fabs(dense[key].get<double>()) : 1.0;
      EXPECT_NEAR(curve[0][key].get<double>(), dense[key].get<double>(), 1e-6 * scale);
      EXPECT_NEAR(curve.back()[key].get<double>(), pruned[key].get<double>(), 1e-6 * std::max(1.0, scale));
    }
    // Pruning changed the function the curve measures (so the equalities above are not vacuous).
    EXPECT_NE(curve[0]["loss"].get<double>(), curve.back()["loss"].get<double>());
    if (c.name == "flap") {
      EXPECT_GT(prune["bias_compensation"]["channels"].get<int64_t>(), 0);
    }
    fs::remove_all(dir);
    fs::remove_all(out);
  }
}

TEST(PruneRecipes, FlapMeetsItsParameterBudgetWithBiasCompensation) {
  InSourceDir here;
  const std::string out = out_dir("flap");
  const nlohmann::json report = run_recipe("recipes/flap.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed");
  const nlohmann::json prune = stage_results(report, "prune");
  const int64_t target = prune["params_target"];
  const int64_t removed = prune["params_non_embedding_before"].get<int64_t>() - prune["params_non_embedding_after"].get<int64_t>();
  // Compensation adds biases (hidden-sized vectors), so removed weights ≥ the net change.
  EXPECT_LE(removed, target);
  EXPECT_GT(removed, target - 3 * 96 * 16 * 4);  // within one KV unit (plus the added biases)
  EXPECT_GT(prune["bias_compensation"]["channels"].get<int64_t>(), 0);
  EXPECT_TRUE(prune["bias_compensation"]["hf_exact"].get<bool>());
  EXPECT_LE(prune["max_abs_logit_diff_vs_masked"].get<double>(), 1e-4);
  // Every projection that lost input channels gained a bias holding their mean contribution.
  const auto m = check_export(out);
  bool heads_removed = false, neurons_removed = false;
  for (const auto& l : prune["kept_per_layer"]) {
    heads_removed = heads_removed || l["heads"] < 6;
    neurons_removed = neurons_removed || l["ffn"] < 200;
  }
  EXPECT_TRUE(neurons_removed);
  EXPECT_EQ(m->config().o_bias, heads_removed);
  EXPECT_EQ(m->config().mlp_bias, neurons_removed);
  EXPECT_GT(m->hf_parameter("model.layers.0.mlp.down_proj.bias").abs().max().item<double>(), 0.0);
  EXPECT_EQ(prune["curve"].size(), 2u);  // the dense model and the one round
  fs::remove_all(out);
}

TEST(PruneRecipes, ShortGptDropsTheLowestInfluenceLayer) {
  InSourceDir here;
  const std::string out = out_dir("shortgpt");
  const nlohmann::json report = run_recipe("recipes/shortgpt.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed");
  const nlohmann::json prune = stage_results(report, "prune");
  EXPECT_EQ(prune["targets"]["layers"]["removed"], 1);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  const auto& bi = pruning["rounds"][0]["scores"]["layer"];
  const int64_t dropped = bi[0][0].get<double>() < bi[1][0].get<double>() ? 0 : 1;
  EXPECT_FALSE(pruning["masks"]["layers"][dropped]["keep"].get<bool>());
  const auto m = check_export(out);
  EXPECT_EQ(m->config().num_layers, 1);
  EXPECT_TRUE(m->config().is_uniform());
  // Gromov et al.'s variant picks a run by angular distance instead.
  const std::string out2 = out_dir("gromov");
  const nlohmann::json r2 = run_recipe("recipes/shortgpt.yaml", {"stages.1.prune.estimator.metric=angular"}, out2);
  ASSERT_EQ(r2["status"], "completed");
  const nlohmann::json p2 = nlohmann::json::parse(fs::read_file(fs::join(out2, "pruning.json")));
  EXPECT_EQ(p2["rounds"][0]["scores"]["layer_runs"]["length"], 1);
  fs::remove_all(out);
  fs::remove_all(out2);
}

// The export loads back and computes what the source fixture computes through pruning.json's masks.
std::shared_ptr<model::Model> check_export_matches_masks(const std::string& out, const std::string& source) {
  const auto pruned = check_export(out);
  const auto dense = model::load_model(source);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  const surgery::Masks masks = surgery::Masks::from_json(pruning["masks"], dense->config(), "pruning.json");
  const model::Gates gates = masks.to_gates(dense->config());
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(3, 128, {2, 12}, torch::kLong);
  const torch::Tensor a = dense->forward(ids, {}, &gates).logits, b = pruned->forward(ids).logits;
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-4);
  return pruned;
}

int64_t blocks_kept(const model::ModelConfig& c) {
  int64_t n = 0;
  for (const model::LayerShape& s : c.layers) n += s.has_attention + s.has_mlp;
  return n;
}

TEST(PruneRecipes, AmpRemovesTheSameShareOfHeadsAndNeuronsInEveryLayer) {
  InSourceDir here;
  const std::string out = out_dir("amp");
  const nlohmann::json report = run_recipe("recipes/amp.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed");
  const nlohmann::json prune = stage_results(report, "prune");
  EXPECT_TRUE(prune["target_met"].get<bool>());
  EXPECT_EQ(prune["targets"]["heads"]["removed"], prune["targets"]["heads"]["target"]);
  EXPECT_EQ(prune["targets"]["ffn"]["removed"], 120);  // 30% of 2 × 200
  const auto m = check_export_matches_masks(out, "tests/fixtures/models/llama_gqa");
  EXPECT_TRUE(m->config().is_uniform());
  EXPECT_EQ(m->config().layers[0].intermediate, 140);
  EXPECT_EQ(m->config().layers[0].num_heads, 4);  // one query head from each of the 2 groups
  EXPECT_EQ(m->config().layers[0].num_kv_heads, 2);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  EXPECT_EQ(pruning["estimator"], "projection");
  fs::remove_all(out);
}

TEST(PruneRecipes, BlockPrunerRemovesTwoBlocksGreedilyAndRecordsTheOrder) {
  InSourceDir here;
  const std::string out = out_dir("blockpruner");
  const nlohmann::json report = run_recipe("recipes/blockpruner.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed");
  const nlohmann::json prune = stage_results(report, "prune");
  EXPECT_TRUE(prune["target_met"].get<bool>());
  EXPECT_EQ(prune["targets"]["blocks"]["removed"], 2);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  ASSERT_EQ(pruning["order"].size(), 2u);
  EXPECT_EQ(pruning["search"]["steps"].size(), 2u);
  EXPECT_EQ(pruning["search"]["steps"][0]["candidates"].size(), 4u);
  EXPECT_EQ(pruning["search"]["steps"][1]["candidates"].size(), 3u);
  // Each step's pick is its lowest-perplexity candidate.
  for (size_t k = 0; k < 2; ++k) {
    double lowest = INFINITY;
    for (const auto& c : pruning["search"]["steps"][k]["candidates"]) lowest = std::min(lowest, c["score"].get<double>());
    EXPECT_EQ(pruning["order"][k]["score"].get<double>(), lowest);
  }
  const auto m = check_export_matches_masks(out, "tests/fixtures/models/llama_gqa");
  EXPECT_EQ(blocks_kept(m->config()), 2);
  fs::remove_all(out);
}

TEST(PruneRecipes, FinerCutRemovesAQuarterOfTheBlocksByOutputChange) {
  InSourceDir here;
  const std::string out = out_dir("finercut");
  const nlohmann::json report = run_recipe("recipes/finercut.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed");
  const nlohmann::json prune = stage_results(report, "prune");
  EXPECT_TRUE(prune["target_met"].get<bool>());
  EXPECT_EQ(prune["targets"]["blocks"]["removed"], 1);
  EXPECT_EQ(prune["search"]["criterion"], "output_change");
  EXPECT_GT(prune["curve"][1]["score"].get<double>(), 0.0);  // a JS divergence from the original
  const auto m = check_export_matches_masks(out, "tests/fixtures/models/gpt2");
  EXPECT_EQ(blocks_kept(m->config()), 3);
  fs::remove_all(out);
}

TEST(PruneRecipes, ShortenedLlamaDropsOneWholeLayerOneShot) {
  InSourceDir here;
  const std::string out = out_dir("shortened");
  const nlohmann::json report = run_recipe("recipes/shortened_llama.yaml", {}, out);
  ASSERT_EQ(report["status"], "completed");
  const nlohmann::json prune = stage_results(report, "prune");
  EXPECT_TRUE(prune["target_met"].get<bool>());
  EXPECT_EQ(prune["targets"]["layers"]["removed"], 1);
  const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(out, "pruning.json")));
  const auto& scores = pruning["search"]["steps"][0]["candidates"];
  ASSERT_EQ(scores.size(), 2u);
  const int64_t dropped = scores[0]["score"].get<double>() <= scores[1]["score"].get<double>() ? 0 : 1;
  EXPECT_EQ(pruning["order"][0]["layer"], dropped);
  const auto m = check_export_matches_masks(out, "tests/fixtures/models/llama_gqa");
  EXPECT_EQ(m->config().num_layers, 1);
  EXPECT_TRUE(m->config().is_uniform());
  // The Taylor+ criterion of the same paper: the taylor estimator over whole layers.
  const std::string out2 = out_dir("shortened-taylor");
  const nlohmann::json r2 = run_recipe("recipes/shortened_llama.yaml",
                                       {"stages.1.prune.search=null", "stages.1.prune.estimator={name: taylor, variant: element}",
                                        "stages.1.prune.target={layers: 1}"}, out2);
  ASSERT_EQ(r2["status"], "completed");
  EXPECT_EQ(stage_results(r2, "prune")["targets"]["layers"]["removed"], 1);
  fs::remove_all(out);
  fs::remove_all(out2);
}

TEST(PruneStage, PruningJsonReappliesToTheSameWeights) {
  InSourceDir here;
  const std::string first = out_dir("first"), second = out_dir("second");
  const std::vector<std::string> base = {"stages.1.prune.estimator.name=magnitude", "stages.1.prune.target={heads: 0.5, ffn: 0.25}",
                                         "stages.1.prune.allocation=global", "stages.1.prune.round_to=8"};
  run_recipe("recipes/shortgpt.yaml", base, first);
  const nlohmann::json r = run_recipe("recipes/shortgpt.yaml", {"stages.1.prune.from=" + fs::join(first, "pruning.json"),
                                                                 "stages.1.prune.target={}"}, second);
  ASSERT_EQ(r["status"], "completed");
  const auto a = model::load_model(fs::join(first, "export"));
  const auto b = model::load_model(fs::join(second, "export"));
  for (int64_t l = 0; l < 2; ++l) EXPECT_EQ(a->config().layers[l].intermediate % 8, 0);
  const io::TensorMap ta = a->state_dict_hf(), tb = b->state_dict_hf();
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) EXPECT_TRUE(torch::equal(t, tb.at(name))) << name;
  fs::remove_all(first);
  fs::remove_all(second);
}

TEST(PruneStage, HiddenDimsAndBlocksWithoutCalibrationData) {
  InSourceDir here;
  const std::string out = out_dir("hidden");
  // magnitude needs no data: no calibration is drawn, and the check uses fixed random ids.
  const nlohmann::json r = run_recipe("recipes/shortgpt.yaml",
                                      {"stages.1.prune.estimator.name=magnitude", "stages.1.prune.round_to=8",
                                       "stages.1.prune.target={hidden: 0.25, mlp_blocks: 1, heads: 0.5}",
                                       "stages.1.prune.allocation=global", "stages.1.prune.calibration.path=missing.txt"},
                                      out);
  ASSERT_EQ(r["status"], "completed");
  const nlohmann::json prune = stage_results(r, "prune");
  EXPECT_EQ(prune["targets"]["hidden"]["removed"], 24);
  EXPECT_EQ(prune["targets"]["mlp_blocks"]["removed"], 1);
  EXPECT_EQ(prune["targets"]["heads"]["removed"], 6);
  EXPECT_LE(prune["max_abs_logit_diff_vs_masked"].get<double>(), 1e-4);
  const auto m = check_export(out);
  EXPECT_EQ(m->config().hidden_size, 72);
  EXPECT_EQ(m->config().layers[0].has_mlp + m->config().layers[1].has_mlp, 1);
  fs::remove_all(out);
}

TEST(PruneStage, UserMistakesAreReportedBeforeAnyWork) {
  InSourceDir here;
  auto fails_with = [&](const std::vector<std::string>& overrides, const std::string& text) {
    const std::string out = out_dir("bad");
    try {
      run_recipe("recipes/shortgpt.yaml", overrides, out);
      ADD_FAILURE() << "expected an error containing: " << text;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
    fs::remove_all(out);
  };
  fails_with({"stages.1.prune.target={}"}, "target is empty");
  fails_with({"stages.1.prune.bias_compensation=true"}, "bias_compensation needs channel means");
  fails_with({"stages.1.prune.calibration.seq_len=100"}, "longer than the model's 64 positions");
  fails_with({"stages.1.prune.calibration.tokenizer=tests/fixtures/tokenizers/gpt2_bytelevel"},
             "has 558 tokens but the model's vocabulary has 128");
  fails_with({"stages.1.prune.calibration.path=missing.txt"}, "missing.txt is not a readable file");
  fails_with({"stages.1.prune.search={remove: 1}"}, "prune.search decides what to remove itself");
  fails_with({"stages.1.prune.search={remove: 2, unit: layers}", "stages.1.prune.target=null"}, "a model keeps at least one layer");
  // The per-round evaluation reads the recipe's data: section and takes the eval stage's keys.
  fails_with({"stages.1.prune.schedule={iterative: {step: 0.5, eval: {split: test}}}"},
             "prune.schedule.iterative.eval needs the recipe's data: section");
  fails_with({"stages.1.prune.schedule={iterative: {step: 0.5, eval: {max_example: 4}}}"}, "unknown key 'max_example'");
  fails_with({"stages.1.prune.schedule={iterative: {step: 0.5, eval: {}}}", "stages.1.prune.from=pruning.json"},
             "prune.schedule.iterative.eval: from: re-applies");
}

TEST(Calibration, DataSourceDrawsFromTheRecipesDataSection) {
  InSourceDir here;
  const std::string dir = out_dir("data-recipe");
  fs::create_directories(dir);
  const std::string recipe = fs::join(dir, "r.yaml");
  fs::write_atomic(recipe, std::string("name: t\ninclude: [") + SECATEUR_SOURCE_DIR + "/configs/data/kjv.yaml]\n"
                   "model: {path: tests/fixtures/models/llama_gqa}\n"
                   "data: {tokenizer: tests/fixtures/data/kjv_unigram128.model, seq_len: 64, cache: false}\n"
                   "stages:\n  - prune:\n      estimator: {name: activation}\n      target: {ffn: 0.5}\n"
                   "      calibration: {num_sequences: 4, batch_size: 2}\n");
  const std::string out = out_dir("data");
  const nlohmann::json r = run_recipe(recipe, {}, out);
  ASSERT_EQ(r["status"], "completed");
  EXPECT_EQ(stage_results(r, "prune")["targets"]["ffn"]["removed"], 200);
  // Without a data: section the default source says what to add.
  const std::string out2 = out_dir("nodata");
  try {
    run_recipe("recipes/shortgpt.yaml", {"stages.1.prune.calibration.source=data"}, out2);
    ADD_FAILURE();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("needs the recipe's data: section"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
  fs::remove_all(out);
  fs::remove_all(out2);
}

TEST(Calibration, TextWindowsAreDeterministicAndRandomIsSeeded) {
  InSourceDir here;
  const recipe::Recipe r = recipe::load_recipe("recipes/shortgpt.yaml", {}, *registry().recipe_schema());
  const std::string out = out_dir("calibration");
  run::RunDir dir(out, {});
  run::RunState state(r, dir);
  state.model = model::load_model("tests/fixtures/models/llama_gqa");
  const recipe::Value& options = r.tree.at("stages").items()[1].at("prune").at("calibration");
  const auto a = prune_calibration(state, options);
  const auto b = prune_calibration(state, options);
  ASSERT_EQ(a.size(), 2u);  // 16 sequences in batches of 8
  EXPECT_EQ(a[0].input_ids.sizes(), (std::vector<int64_t>{8, 32}));
  EXPECT_TRUE(torch::equal(a[1].input_ids, b[1].input_ids));
  EXPECT_LT(a[0].input_ids.max().item<int64_t>(), 128);
  state.seed = 1;
  EXPECT_FALSE(torch::equal(prune_calibration(state, options)[0].input_ids, a[0].input_ids));
  fs::remove_all(out);
}

}  // namespace
}  // namespace secateur::stages
