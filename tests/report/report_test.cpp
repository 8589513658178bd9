#include <gtest/gtest.h>

#include "report/report.h"
#include "report/svg.h"

using namespace secateur;
using json = nlohmann::json;

namespace {

// A run as the stages record it: dense eval, prune, eval after pruning. 400K of the 1M dense
// parameters are embeddings (never pruned); `sparsity` is of the other 600K, as prune records it.
json pruning_run(const std::string& name, double sparsity, double accuracy, double speed) {
  json dense_layers = json::array({{{"heads", 12}, {"kv_heads", 12}, {"ffn", 3072}}, {{"heads", 12}, {"kv_heads", 12}, {"ffn", 3072}}});
  json pruned_layers = json::array({{{"heads", 6}, {"kv_heads", 6}, {"ffn", 1536}}, {{"heads", 3}, {"kv_heads", 3}, {"ffn", 768}}});
  return {{"name", name},
          {"status", "completed"},
          {"recipe", "recipes/x.yaml"},
          {"recipe_hash", "0123456789abcdef"},
          {"seed", 0},
          {"stages",
           json::array({{{"kind", "eval"}, {"results", {{"params", 1000000}, {"params_non_embedding", 600000}, {"accuracy", 0.9}, {"tokens_per_s", 100.0}, {"per_layer", dense_layers}}}},
                        {{"kind", "prune"}, {"results", {{"sparsity", sparsity}, {"per_layer", pruned_layers}}}},
                        {{"kind", "eval"}, {"results", {{"params", 1000000 - 600000 * sparsity}, {"params_non_embedding", 600000 * (1 - sparsity)}, {"accuracy", accuracy}, {"tokens_per_s", speed}}}},
                        {{"kind", "export"}, {"results", {{"export_dir", "x"}}}}})}};
}

}  // namespace

TEST(Report, MarkdownTableDerivesSparsityAndSpeedup) {
  std::string md = report::markdown(pruning_run("r", 0.5, 0.85, 185.0));
  EXPECT_NE(md.find("| stage | params | FLOPs/token | sparsity (non-embedding) | accuracy | tokens/s | speedup vs dense |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 1. eval | 1.00M | — | 0.0% | 0.9000 | 100 | 1.00× |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 3. eval | 700K | — | 50.0% | 0.8500 | 185 | 1.85× |"), std::string::npos) << md;
  EXPECT_EQ(md.find("4. export"), std::string::npos);  // no metric, no shape: no row
  EXPECT_NE(md.find("| 1 | 3 | 3 | 768 |"), std::string::npos) << md;  // last recorded per-layer shape
}

TEST(Report, HtmlIsSelfContainedWithChartsAndHeatmap) {
  std::vector<json> events = {{{"stage", "finetune"}, {"stage_index", 3}, {"step", 1}, {"values", {{"loss", 2.0}}}},
                              {{"stage", "finetune"}, {"stage_index", 3}, {"step", 2}, {"values", {{"loss", 1.5}}}}};
  std::string page = report::html(pruning_run("r<&>", 0.5, 0.85, 185.0), events);
  EXPECT_NE(page.find("<h1>r&lt;&amp;&gt;</h1>"), std::string::npos);
  EXPECT_NE(page.find("metric vs sparsity"), std::string::npos);
  EXPECT_NE(page.find("kept per layer"), std::string::npos);
  EXPECT_NE(page.find(">25.0%</text>"), std::string::npos);  // layer 1 keeps 3 of 12 heads
  EXPECT_NE(page.find("training curves"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("src="), std::string::npos);   // nothing fetched: opens without network
  EXPECT_EQ(page.find("href="), std::string::npos);
}

TEST(Report, MergedTableSortsBySparsityAndFlagsFailedRuns) {
  auto a = pruning_run("a", 0.7, 0.6, 300), b = pruning_run("b", 0.3, 0.88, 130), c = pruning_run("c", 0.5, 0.8, 180);
  c["status"] = "failed";
  std::string md = report::merged_markdown({a, b, c}, {"run-a", "run-b", "run-c"});
  size_t pb = md.find("| run-b |"), pc = md.find("| run-c |"), pa = md.find("| run-a |");
  ASSERT_NE(pa, std::string::npos);
  EXPECT_LT(pb, pc);
  EXPECT_LT(pc, pa);
  EXPECT_NE(md.find("| run-c | 3. eval (run failed) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| run-a | 3. eval | 580K | — | 70.0% | 0.6000 | 300 | 3.00× |"), std::string::npos) << md;
}

// One definition of sparsity: what an eval row derives from its parameter counts equals what the
// prune stage recorded (non-embedding parameters removed), not the share of all parameters
// (which would be 30% here); a row with only a total count gets no sparsity rather than another one.
TEST(Report, DerivedSparsityIsThePruneStagesNonEmbeddingSparsity) {
  std::string md = report::markdown(pruning_run("r", 0.5, 0.85, 185.0));
  EXPECT_NE(md.find("| 2. prune | — | — | 50.0% |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 3. eval | 700K | — | 50.0% |"), std::string::npos) << md;
  json total_only = pruning_run("t", 0.5, 0.85, 185.0);
  for (auto& s : total_only["stages"]) s["results"].erase("params_non_embedding");
  total_only["stages"][1]["results"].erase("sparsity");
  std::string md2 = report::markdown(total_only);
  EXPECT_NE(md2.find("| 3. eval | 700K | — | — |"), std::string::npos) << md2;
  EXPECT_NE(report::html(pruning_run("r", 0.5, 0.85, 185.0), {}).find("<th>sparsity (non-embedding)</th>"), std::string::npos);
}

TEST(Svg, ChartsScaleToTheDataAndEscapeText) {
  std::string chart = report::svg::line_chart("t", "x", "y", {{"s<1>", {{0, 1}, {1, 3}}}});
  EXPECT_NE(chart.find("s&lt;1&gt;"), std::string::npos);
  EXPECT_NE(chart.find("<polyline"), std::string::npos);
  // Two points span the plot: the first at the left edge (x=64) and bottom (y=256), the second at
  // the right edge (x=370) and top (y=30).
  EXPECT_NE(chart.find("points=\"64.0,256.0 370.0,30.0 \""), std::string::npos) << chart;
  EXPECT_NE(report::svg::line_chart("t", "x", "y", {}).find("no data"), std::string::npos);
}

TEST(Report, SpeedupComparesEvaluationsNotTrainingThroughput) {
  const nlohmann::json run = {
      {"name", "pretrain"},
      {"stages",
       {{{"kind", "train"}, {"results", {{"tokens_per_s", 400.0}, {"loss", 2.0}}}},
        {{"kind", "eval"}, {"results", {{"tokens_per_s", 700.0}, {"perplexity", 26.0}, {"params", 4.0e6}}}},
        {{"kind", "eval"}, {"results", {{"tokens_per_s", 1400.0}, {"perplexity", 30.0}, {"params", 2.0e6}}}}}}};
  const std::string md = report::markdown(run);
  EXPECT_EQ(md.find("1.75×"), std::string::npos) << md;  // 700 / 400: an eval against training speed
  EXPECT_NE(md.find("1.00×"), std::string::npos) << md;  // the first evaluation is the dense one
  EXPECT_NE(md.find("2.00×"), std::string::npos) << md;
}

TEST(Report, MergedRunsWithoutADenseRowCompareWithTheMergedDenseRun) {
  auto eval_only = [](const char* name, double params_non_embedding, double tokens_per_s) {
    return nlohmann::json{{"name", name}, {"status", "completed"},
                          {"stages", {{{"kind", "learn_masks"}, {"results", {{"tokens_per_s", 10.0}}}},
                                      {{"kind", "eval"}, {"results", {{"params_non_embedding", params_non_embedding},
                                                                      {"tokens_per_s", tokens_per_s}, {"accuracy", 0.9}}}}}}};
  };
  const std::string md = report::merged_markdown({eval_only("pruned", 1.0e6, 300.0), eval_only("dense", 4.0e6, 100.0)},
                                                 {"pruned", "dense"});
  EXPECT_NE(md.find("| dense | 2. eval |"), std::string::npos) << md;
  EXPECT_NE(md.find("75.0%"), std::string::npos) << md;  // 1 − 1M / 4M, against the dense run
  EXPECT_NE(md.find("3.00×"), std::string::npos) << md;  // 300 / 100 tokens/s, evaluations only
  EXPECT_LT(md.find("| dense |"), md.find("| pruned |")) << md;  // sorted by sparsity
}

// An iterative prune with a per-round evaluation (prune.schedule.iterative.eval): report.md gets a
// "Pruning curve" table, one row per round, and report.html the table and a chart of the metrics
// against params_removed_fraction; a curve of one point (one-shot) or without
// params_removed_fraction (block search's steps) gets none.
TEST(Report, PruningCurveTableAndChartAgainstSparsity) {
  json run = pruning_run("r", 0.5, 0.85, 185.0);
  json curve = json::array();
  for (int k = 0; k <= 2; ++k)
    curve.push_back({{"round", k}, {"params_removed_fraction", 0.2 * k}, {"heads_removed_fraction", 0.25 * k},
                     {"calibration_loss", 2.0 + k}, {"accuracy", 0.9 - 0.05 * k}, {"macro_f1", 0.8 - 0.1 * k}, {"loss", 0.3 + 0.1 * k}});
  run["stages"][1]["results"]["curve"] = curve;
  const std::string md = report::markdown(run);
  EXPECT_NE(md.find("## Pruning curve"), std::string::npos) << md;
  EXPECT_NE(md.find("2. prune (one row per round"), std::string::npos) << md;
  EXPECT_NE(md.find("| round | params removed | heads removed | calibration loss | accuracy | macro-F1 | loss |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 0 | 0.0% | 0.0% | 2.0000 | 0.9000 | 0.8000 | 0.300 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 2 | 40.0% | 50.0% | 4.0000 | 0.8000 | 0.6000 | 0.500 |"), std::string::npos) << md;
  const std::string page = report::html(run, {});
  EXPECT_NE(page.find("<h2>Pruning curve</h2>"), std::string::npos);
  EXPECT_NE(page.find("<th>params removed</th><th>heads removed</th>"), std::string::npos) << page;
  EXPECT_NE(page.find("[2. prune] metric vs sparsity"), std::string::npos);
  EXPECT_NE(page.find("[2. prune] loss vs sparsity"), std::string::npos);
  EXPECT_NE(page.find("params removed (fraction of dense non-embedding parameters)"), std::string::npos);
  EXPECT_NE(page.find(">0.4</text>"), std::string::npos) << page;  // the x axis ends at the last round's sparsity
  // Without a curve worth drawing: no section.
  json one_shot = pruning_run("r", 0.5, 0.85, 185.0);
  one_shot["stages"][1]["results"]["curve"] = json::array({curve[0]});
  EXPECT_EQ(report::markdown(one_shot).find("Pruning curve"), std::string::npos);
  json search = pruning_run("r", 0.5, 0.85, 185.0);
  search["stages"][1]["results"]["curve"] = json::array({{{"step", 0}, {"score", 3.0}}, {{"step", 1}, {"score", 3.5}}});
  EXPECT_EQ(report::markdown(search).find("Pruning curve"), std::string::npos);
  EXPECT_EQ(report::html(search, {}).find("Pruning curve"), std::string::npos);
}
