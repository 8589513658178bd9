#include <gtest/gtest.h>
#include <torch/torch.h>


#include "recipe/recipe.h"
#include "run/run_state.h"
#include "run/runner.h"
#include "util/fs.h"

using namespace secateur;
namespace fsys = secateur::fs;  // POSIX: std::filesystem crashes against the torch wheel

namespace {

// A stage that records what it saw, so the engine's behaviour can be checked.
struct Probe : recipe::Stage {
  explicit Probe(const recipe::Value& o) : options(o) {}
  recipe::Value options;
  void run(run::RunState& state) override {
    if (options.get_bool("fail", false)) throw UserError("probe asked to fail");
    // Seeding happened before the first stage: the same seed gives the same draw.
    double draw = torch::rand({1}).item<double>();
    state.record({{"label", state.stage_label()}, {"draw", draw}, {"value", options.get_double("value", 0)}}, 3);
  }
};

recipe::Registry probe_registry() {
  recipe::Registry r;
  r.add_stage({"probe", "test stage",
               recipe::Schema::structure()->field("value", recipe::Schema::number(), "v", "1.5")->field(
                   "fail", recipe::Schema::boolean(), "f", "false"),
               [](const recipe::Value& o) { return std::make_unique<Probe>(o); }});
  return r;
}

std::string out_dir(const std::string& tag) {
  auto p = fsys::join(fsys::temp_directory(), "secateur-runner-" + tag + "-" + std::to_string(::getpid()));
  fsys::remove_all(p);
  return p;
}

}  // namespace

TEST(Runner, RunsStagesInOrderAndWritesTheRunDirectory) {
  auto reg = probe_registry();
  auto r = recipe::load_recipe_text("name: t\nseed: 3\nthreads: 1\nstages:\n  - probe: {value: 2}\n  - probe:\n", "t.yaml", {},
                                    *reg.recipe_schema());
  run::RunOptions opts;
  opts.out = out_dir("ok");
  opts.command_line = "secateur run t.yaml";
  ASSERT_EQ(run::execute(r, reg, opts), opts.out);

  auto report = nlohmann::json::parse(fs::read_file(opts.out + "/report.json"));
  EXPECT_EQ(report["status"], "completed");
  EXPECT_EQ(report["seed"], 3);
  EXPECT_EQ(report["recipe_hash"], r.hash);
  ASSERT_EQ(report["stages"].size(), 2u);
  EXPECT_EQ(report["stages"][0]["results"]["label"], "[1/2] probe");
  EXPECT_EQ(report["stages"][0]["results"]["value"], 2.0);
  EXPECT_EQ(report["stages"][1]["results"]["value"], 1.5);
  EXPECT_EQ(report["stages"][1]["status"], "done");

  std::string resolved = fs::read_file(opts.out + "/recipe.resolved.yaml");
  EXPECT_NE(resolved.find("# secateur "), std::string::npos);
  EXPECT_NE(resolved.find("LibTorch "), std::string::npos);
  EXPECT_NE(resolved.find("# command: secateur run t.yaml"), std::string::npos);
  // The resolved recipe is itself a valid recipe with the same hash.
  auto again = recipe::load_recipe(opts.out + "/recipe.resolved.yaml", {}, *reg.recipe_schema());
  EXPECT_EQ(again.hash, r.hash);
  EXPECT_TRUE(fsys::exists(opts.out + "/log.txt"));
  EXPECT_NE(fs::read_file(opts.out + "/metrics.jsonl").find("\"step\":3"), std::string::npos);

  // Same seed, same numbers: a second run draws the same random value.
  run::RunOptions opts2 = opts;
  opts2.out = out_dir("ok2");
  run::execute(r, reg, opts2);
  auto report2 = nlohmann::json::parse(fs::read_file(opts2.out + "/report.json"));
  EXPECT_EQ(report2["stages"][0]["results"]["draw"], report["stages"][0]["results"]["draw"]);
  fsys::remove_all(opts.out);
  fsys::remove_all(opts2.out);
}

TEST(Runner, AFailingStageIsRecordedAndStopsTheRun) {
  auto reg = probe_registry();
  auto r = recipe::load_recipe_text("stages:\n  - probe:\n  - probe: {fail: true}\n  - probe:\n", "f.yaml", {},
                                    *reg.recipe_schema());
  run::RunOptions opts;
  opts.out = out_dir("fail");
  EXPECT_THROW(run::execute(r, reg, opts), UserError);
  auto report = nlohmann::json::parse(fs::read_file(opts.out + "/report.json"));
  EXPECT_EQ(report["status"], "failed");
  EXPECT_EQ(report["error"], "[2/3] probe: probe asked to fail");
  EXPECT_EQ(report["stages"][0]["status"], "done");
  EXPECT_EQ(report["stages"][1]["status"], "failed");
  EXPECT_EQ(report["stages"][2]["status"], "pending");
  EXPECT_FALSE(fsys::exists(opts.out + "/.lock"));
  fsys::remove_all(opts.out);
}

TEST(Runner, DryRunCreatesNothingAndCudaWithoutGpuIsAUserError) {
  auto reg = probe_registry();
  auto r = recipe::load_recipe_text("stages: [probe: {}]\n", "d.yaml", {}, *reg.recipe_schema());
  run::RunOptions opts;
  opts.out = out_dir("dry");
  opts.dry_run = true;
  EXPECT_EQ(run::execute(r, reg, opts), "");
  EXPECT_FALSE(fsys::exists(opts.out));
  EXPECT_NE(run::describe_plan(r).find("[1/1] probe  value: 1.5 fail: false"), std::string::npos) << run::describe_plan(r);
  if (!torch::cuda::is_available()) {
    auto gpu = recipe::load_recipe_text("device: cuda\nstages: [probe: {}]\n", "g.yaml", {}, *reg.recipe_schema());
    opts.dry_run = false;
    try {
      run::execute(gpu, reg, opts);
      FAIL() << "expected a UserError";
    } catch (const UserError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("device 'cuda' requested, but CUDA is not available", 0), 0u) << e.what();
    }
    EXPECT_FALSE(fsys::exists(opts.out));
  }
}
