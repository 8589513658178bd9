// The `secateur` binary as a user meets it: exit codes (0 ok, 1 user error, 2 usage error) and
// one clear line per problem, never a C++ exception dump.
#include <gtest/gtest.h>

#include "util/fs.h"
#include "support/shell.h"
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

namespace fsys = secateur::fs;  // POSIX: std::filesystem crashes against the torch wheel

namespace {

using Result = secateur::testing::ShellResult;

Result run(const std::string& args) { return secateur::testing::run_secateur(args); }

std::string temp_path(const std::string& tag) {
  return fsys::join(fsys::temp_directory(), "secateur-cli-" + tag + "-" + std::to_string(::getpid()));
}

std::string write(const std::string& tag, const std::string& text) {
  std::string p = temp_path(tag) + ".yaml";
  std::ofstream(p) << text;
  return p;
}

const std::string kModel = std::string(SECATEUR_FIXTURES) + "/models/llama_gqa";

bool no_exception_dump(const std::string& out) {
  return out.find("terminate called") == std::string::npos && out.find("what():") == std::string::npos &&
         out.find("frame #") == std::string::npos;
}

}  // namespace

TEST(Cli, VersionAndHelp) {
  auto r = run("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("secateur 0.1.0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("LibTorch "), std::string::npos);
  EXPECT_NE(r.output.find("CUDA "), std::string::npos);
  r = run("help stages");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("export"), std::string::npos);
  r = run("help stage export");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("max_shard_mb: an integer ≥ 1 (default 5000)"), std::string::npos) << r.output;
}

TEST(Cli, UsageErrorsExitTwo) {
  auto r = run("");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("missing command"), std::string::npos);
  r = run("frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("unknown command 'frobnicate'"), std::string::npos);
  r = run("run --no-such-flag x.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("no-such-flag"), std::string::npos) << r.output;
  r = run("help stage exprot");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("did you mean 'export'?"), std::string::npos) << r.output;
  r = run("validate");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(no_exception_dump(r.output)) << r.output;
}

TEST(Cli, ValidatePrintsTheResolvedRecipe) {
  auto path = write("valid", "model: {path: " + kModel + "}\nstages:\n  - inspect:\n");
  auto r = run("validate " + path + " --set seed=4");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(": valid (hash "), std::string::npos);
  EXPECT_NE(r.output.find("seed: 4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("per_layer: true"), std::string::npos) << r.output;  // defaults filled in
}

TEST(Cli, RecipeErrorsExitOneWithLocations) {
  auto path = write("bad", "model: {path: m}\nstages:\n  - inspect: {per_layr: true}\n  - exprt:\n");
  auto r = run("validate " + path);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find(path + ":3:15: unknown key 'per_layr' in stages[0].inspect — did you mean 'per_layer'?"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find(path + ":4:5: stages[1]: unknown stage 'exprt' — did you mean 'export'?"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("2 errors; nothing was run."), std::string::npos);
  r = run("run /nonexistent/recipe.yaml");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("/nonexistent/recipe.yaml: no such file"), std::string::npos) << r.output;
  r = run("run " + path + " --set stages.7.inspect.per_layer=false");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("index 7 is out of range"), std::string::npos) << r.output;
}

TEST(Cli, BadModelAndDeviceAreUserErrors) {
  auto missing = write("nomodel", "model: {path: /nonexistent/model}\nstages: [inspect: {}]\n");
  auto r = run("run " + missing + " --out " + temp_path("nomodel-run"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/model"), std::string::npos) << r.output;
  EXPECT_TRUE(no_exception_dump(r.output)) << r.output;
  fsys::remove_all(temp_path("nomodel-run"));

  auto ok = write("dev", "model: {path: " + kModel + "}\nstages: [inspect: {}]\n");
  r = run("run " + ok + " --device tpu");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("device: expected cpu, cuda or cuda:N, got 'tpu'"), std::string::npos) << r.output;
  if (r.output.find("CUDA available") == std::string::npos && run("--version").output.find("CUDA not available") != std::string::npos) {
    r = run("run " + ok + " --device cuda --out " + temp_path("cuda"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("device 'cuda' requested, but CUDA is not available"), std::string::npos) << r.output;
  }
}

TEST(Cli, RunWritesARunDirectoryAndRefusesToOverwriteIt) {
  auto recipe = write("run", "name: cli-run\nmodel: {path: " + kModel + "}\nstages:\n  - inspect:\n  - export:\n");
  const std::string out = temp_path("run-out");
  fsys::remove_all(out);
  auto r = run("run " + recipe + " --out " + out + " --threads 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fsys::exists(out + "/report.json"));
  EXPECT_TRUE(fsys::exists(out + "/export/model.safetensors"));
  EXPECT_TRUE(fsys::exists(out + "/export/config.json"));
  r = run("run " + recipe + " --out " + out);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("already holds a run"), std::string::npos) << r.output;
  r = run("run " + recipe + " --out " + out + " --force");
  EXPECT_EQ(r.code, 0) << r.output;
  r = run("run --resume " + out);
  EXPECT_EQ(r.code, 0) << r.output;
  r = run("report " + out);
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("| secateur-cli-run-out-"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" | 1. inspect | 189K | 378K | 0.0% |"), std::string::npos) << r.output;
  EXPECT_TRUE(fsys::exists(out + "/report.md"));
  EXPECT_TRUE(fsys::exists(out + "/report.html"));
  r = run("report " + out + " --out " + out + "/cmp");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(secateur::fs::read_file(out + "/cmp/comparison.html").find("<table>"), std::string::npos);
  r = run("report /nonexistent/run");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("/nonexistent/run/report.json: no such file"), std::string::npos) << r.output;
  // The exported directory is itself a model secateur loads.
  auto again = write("reload", "model: {path: " + out + "/export}\nstages: [inspect: {}]\n");
  r = run("run " + again + " --out " + out + "-reload");
  EXPECT_EQ(r.code, 0) << r.output;
  fsys::remove_all(out);
  fsys::remove_all(out + "-reload");
}

TEST(Cli, DryRunPrintsThePlanAndCreatesNothing) {
  auto recipe = write("dry", "name: dry\nmodel: {path: " + kModel + "}\nstages:\n  - inspect:\n  - export: {dtype: bfloat16}\n");
  const std::string out = temp_path("dry-out");
  auto r = run("run " + recipe + " --dry-run --out " + out);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("[2/2] export"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("dtype: bfloat16"), std::string::npos) << r.output;
  EXPECT_FALSE(fsys::exists(out));
}
