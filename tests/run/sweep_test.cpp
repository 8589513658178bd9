#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "run/run_dir.h"
#include "run/run_state.h"
#include "run/sweep.h"
#include "util/error.h"
#include "util/fs.h"
#include "support/shell.h"

using namespace secateur;

namespace {

struct Record : recipe::Stage {
  explicit Record(const recipe::Value& o) : options(o) {}
  recipe::Value options;
  void run(run::RunState& state) override {
    if (options.get_double("sparsity", 0) > 0.6) throw UserError("too sparse");
    state.record({{"sparsity", options.get_double("sparsity", 0)}, {"seed", state.seed}});
  }
};

recipe::Registry sweep_registry() {
  recipe::Registry r;
  r.add_section({"slurm", "slurm", run::slurm_schema(), false});
  r.add_stage({"prune", "p",
               recipe::Schema::structure()->field("sparsity", recipe::Schema::number()->min(0)->max(1, true), "s", "0.5"),
               [](const recipe::Value& o) { return std::make_unique<Record>(o); }});
  return r;
}

std::string temp(const std::string& tag) {
  std::string p = fs::join(fs::temp_directory(), "secateur-sweep-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST(Sweep, GridParsingAndExpansionOrder) {
  auto a = run::parse_grid("stages.0.prune.sparsity=[0.3, 0.5]");
  EXPECT_EQ(a.key, "stages.0.prune.sparsity");
  EXPECT_EQ(a.values, (std::vector<std::string>{"0.3", "0.5"}));
  auto b = run::parse_grid("seed=[0,1,2]");
  auto m = run::parse_grid("x=[{heads: 0.5, ffn: 0.3}, [1, 2]]");
  EXPECT_EQ(m.values, (std::vector<std::string>{"{heads: 0.5, ffn: 0.3}", "[1, 2]"}));
  EXPECT_EQ(run::parse_grid("seed=4").values, std::vector<std::string>{"4"});
  EXPECT_THROW(run::parse_grid("seed"), UsageError);
  EXPECT_THROW(run::parse_grid("seed=[]"), UsageError);
  auto points = run::expand({a, b});
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(points[0].name, "sparsity=0.3,seed=0");
  EXPECT_EQ(points[1].name, "sparsity=0.3,seed=1");
  EXPECT_EQ(points[5].name, "sparsity=0.5,seed=2");
  EXPECT_EQ(points[5].overrides, (std::vector<std::string>{"stages.0.prune.sparsity=0.5", "seed=2"}));
  EXPECT_EQ(run::shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(run::shell_quote("a=b"), "a=b");
}

TEST(Sweep, EveryPointIsValidatedBeforeAnythingRuns) {
  const std::string dir = temp("invalid");
  const std::string recipe = fs::join(fs::temp_directory(), "secateur-sweep-r-" + std::to_string(::getpid()) + ".yaml");
  fs::write_atomic(recipe, "name: s\nstages: [prune: {}]\n");
  run::SweepOptions o;
  o.recipe_path = recipe;
  o.axes = {run::parse_grid("stages.0.prune.sparsity=[0.2, 1.5, fast]")};
  o.out = dir;
  try {
    run::plan_sweep(o, sweep_registry());
    FAIL() << "expected RecipeErrors";
  } catch (const recipe::RecipeErrors& e) {
    ASSERT_EQ(e.errors().size(), 2u);
    EXPECT_NE(e.errors()[0].message.find("point sparsity=1.5: stages[0].prune.sparsity: expected a number in [0, 1), got '1.5'"),
              std::string::npos) << e.errors()[0].message;
    EXPECT_NE(e.errors()[1].message.find("point sparsity=fast:"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir));
  fs::remove_all(recipe);
}

TEST(Sweep, LocalRunnerRunsEveryPointAndKeepsGoingAfterAFailure) {
  const std::string dir = temp("local");
  const std::string recipe = fs::join(fs::temp_directory(), "secateur-sweep-l-" + std::to_string(::getpid()) + ".yaml");
  fs::write_atomic(recipe, "name: s\nthreads: 1\nstages: [prune: {}]\n");
  run::SweepOptions o;
  o.recipe_path = recipe;
  o.axes = {run::parse_grid("stages.0.prune.sparsity=[0.2, 0.7, 0.4]"), run::parse_grid("seed=[3]")};
  o.out = dir;
  auto reg = sweep_registry();
  auto sweep = run::plan_sweep(o, reg);
  EXPECT_EQ(run::run_local(o, sweep, reg), 1);  // 0.7 fails
  auto report = nlohmann::json::parse(fs::read_file(dir + "/sparsity=0.4,seed=3/report.json"));
  EXPECT_EQ(report["status"], "completed");
  EXPECT_EQ(report["seed"], 3);
  EXPECT_EQ(report["stages"][0]["results"]["sparsity"], 0.4);
  EXPECT_EQ(nlohmann::json::parse(fs::read_file(dir + "/sparsity=0.7,seed=3/report.json"))["status"], "failed");
  auto manifest = nlohmann::json::parse(fs::read_file(dir + "/sweep.json"));
  EXPECT_EQ(manifest["points"].size(), 3u);
  // Re-running only the failed point.
  o.only = {"sparsity=0.2,seed=3"};
  auto again = run::plan_sweep(o, reg);
  ASSERT_EQ(again.points.size(), 1u);
  EXPECT_EQ(again.points[0].name, "sparsity=0.2,seed=3");
  o.only = {"nope"};
  EXPECT_THROW(run::plan_sweep(o, reg), UsageError);
  fs::remove_all(dir);
  fs::remove_all(recipe);
}

TEST(Sweep, SlurmScriptMatchesTheGoldenFile) {
  const std::string recipe = fs::join(fs::temp_directory(), "secateur-sweep-g-" + std::to_string(::getpid()) + ".yaml");
  fs::write_atomic(recipe,
                   "name: cofi-kjv\nslurm:\n  partition: gpu\n  account: lab42\n  time: \"02:00:00\"\n  mem: 32G\n"
                   "  cpus_per_task: 8\n  gpus_per_task: 1\n  max_concurrent: 2\n  extra: ['--constraint=h100']\n"
                   "stages: [prune: {}]\n");
  run::SweepOptions o;
  o.recipe_path = "recipes/cofi.yaml";  // as the user typed it; the script quotes what it writes
  o.axes = {run::parse_grid("stages.0.prune.sparsity=[0.5,0.7,0.9]")};
  o.binary = "/opt/secateur/bin/secateur";
  o.out = temp("golden");
  auto reg = sweep_registry();
  run::SweepOptions validate = o;
  validate.recipe_path = recipe;
  auto sweep = run::plan_sweep(validate, reg);
  sweep.dir = "runs/cofi-kjv-sweep";  // fixed text for the golden file
  std::string script = run::slurm_script(o, sweep, *sweep.recipes.front().tree.find("slurm"));
  const std::string golden = std::string(SECATEUR_FIXTURES) + "/golden/sweep.sbatch";
  if (std::getenv("SECATEUR_UPDATE_GOLDEN")) fs::write_atomic(golden, script);
  EXPECT_EQ(script, fs::read_file(golden));
  EXPECT_EQ(run::point_command(o, sweep, sweep.points[1]),
            "/opt/secateur/bin/secateur run recipes/cofi.yaml --set stages.0.prune.sparsity=0.7 --out runs/cofi-kjv-sweep/sparsity=0.7");
  fs::remove_all(o.out);
  fs::remove_all(recipe);
}

// Without a `slurm:` section the script asks for nothing (the cluster's defaults) and lets every
// point run at once: no `%N` on --array.
TEST(Sweep, SlurmScriptWithoutASectionUsesTheClusterDefaults) {
  const std::string recipe = fs::join(fs::temp_directory(), "secateur-sweep-d-" + std::to_string(::getpid()) + ".yaml");
  fs::write_atomic(recipe, "name: plain\nstages: [prune: {}]\n");
  run::SweepOptions o;
  o.recipe_path = recipe;
  o.axes = {run::parse_grid("seed=[0,1,2]")};
  o.out = temp("defaults");
  auto sweep = run::plan_sweep(o, sweep_registry());
  const std::string script = run::slurm_script(o, sweep, recipe::Value::map());
  EXPECT_NE(script.find("\n#SBATCH --array=0-2\n"), std::string::npos) << script;  // no %N cap
  for (const char* flag : {"--partition", "--account", "--time", "--mem", "--cpus-per-task", "--gpus-per-task"})
    EXPECT_EQ(script.find(flag), std::string::npos) << flag << " in\n" << script;
  fs::remove_all(o.out);
  fs::remove_all(recipe);
}

namespace {

// Runs array task `task` of the written script with bash, as slurmd would (SLURM_ARRAY_TASK_ID set).
secateur::testing::ShellResult run_task(const std::string& script, int task) {
  return secateur::testing::shell("SLURM_ARRAY_TASK_ID=" + std::to_string(task) + " bash " + run::shell_quote(script));
}

// Leaves in `dir` what an earlier attempt of a task leaves: a resolved recipe and a report.json
// written by RunDir itself (the script reads its top-level "status").
void leave_run(const std::string& dir, const std::string& status) {
  run::RunDir run_dir(dir, {});
  run_dir.write_resolved_recipe("# test", "name: s\n");
  const nlohmann::json stage = {{"kind", "prune"}, {"status", "done"}};  // a nested "status" the script must not read
  run_dir.write_report({{"status", status}, {"stages", nlohmann::json::array({stage})}});
}

}  // namespace

// The task logic of the batch script without a cluster (tests/slurm runs it under SLURM): a new
// point runs its command, an unfinished run is resumed (a requeued or resubmitted task), a
// completed one is skipped. A stand-in secateur prints its arguments.
TEST(Sweep, SlurmTaskRunsNewPointsResumesUnfinishedRunsAndSkipsCompletedOnes) {
  const std::string dir = temp("task");
  const std::string fake = fs::join(dir, "bin/fake secateur");  // a space: the script quotes the binary
  fs::create_directories(fs::join(dir, "bin"));
  fs::write_atomic(fake, "#!/bin/sh\necho \"fake secateur: $*\"\n");
  ::chmod(fake.c_str(), 0755);
  const std::string recipe = fs::join(dir, "r.yaml");
  fs::write_atomic(recipe, "name: s\nstages: [prune: {}]\n");
  run::SweepOptions o;
  o.recipe_path = recipe;
  o.axes = {run::parse_grid("seed=[0,1,2]")};
  o.out = fs::join(dir, "sweep");
  o.binary = fake;
  auto sweep = run::plan_sweep(o, sweep_registry());
  const std::string script = run::write_slurm(o, sweep, recipe::Value::map());
  leave_run(fs::join(o.out, "seed=0"), "completed");
  leave_run(fs::join(o.out, "seed=1"), "interrupted");

  auto r = run_task(script, 0);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("seed=0 is already completed"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("fake secateur:"), std::string::npos) << r.output;
  r = run_task(script, 1);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("fake secateur: run --resume " + fs::join(o.out, "seed=1") + "\n"), std::string::npos) << r.output;
  r = run_task(script, 2);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("fake secateur: run " + recipe + " --set seed=2 --out " + fs::join(o.out, "seed=2") + "\n"),
            std::string::npos) << r.output;
  fs::remove_all(dir);
}

// submit_slurm against a stand-in `sbatch` on PATH (the real one runs in tests/slurm): it passes
// --parsable and the script, keeps the job id (dropping a ";cluster" suffix), records it, and
// turns a refusal into a UserError.
TEST(Sweep, SubmitRunsSbatchParsableAndRecordsTheJobId) {
  const std::string bin = temp("fake-sbatch");
  fs::create_directories(bin);
  const std::string sweep_dir = fs::join(bin, "sweep");
  fs::create_directories(sweep_dir);
  run::Sweep sweep;
  sweep.dir = sweep_dir;
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", (bin + ":" + old_path).c_str(), 1);
  auto fake = [&](const std::string& body) {
    fs::write_atomic(fs::join(bin, "sbatch"), "#!/bin/sh\n" + body);
    ::chmod(fs::join(bin, "sbatch").c_str(), 0755);
  };
  fake("echo \"$@\" > " + bin + "/args\necho '4711;cluster9'\n");
  EXPECT_EQ(run::submit_slurm(sweep, sweep_dir + "/my sweep.sbatch"), "4711");
  EXPECT_EQ(fs::read_file(bin + "/args"), "--parsable " + sweep_dir + "/my sweep.sbatch\n");
  fake("echo 4712\n");
  EXPECT_EQ(run::submit_slurm(sweep, "s.sbatch"), "4712");
  EXPECT_EQ(fs::read_file(sweep_dir + "/slurm_jobs.txt"), "4711\n4712\n");
  fake("echo 'sbatch: error: invalid partition' >&2\nexit 1\n");
  EXPECT_THROW(run::submit_slurm(sweep, "s.sbatch"), UserError);
  fake("echo 'Submitted batch job'\n");
  EXPECT_THROW(run::submit_slurm(sweep, "s.sbatch"), UserError);
  ::setenv("PATH", old_path.c_str(), 1);
  fs::remove_all(bin);
}
