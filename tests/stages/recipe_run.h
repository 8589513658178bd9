#pragma once
// Running whole recipes in-process from stage tests: from the repository root (recipes name
// paths relative to it, as a user runs them), into a fresh run directory per test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "recipe/recipe.h"
#include "run/runner.h"
#include "stages/builtin.h"
#include "util/fs.h"

namespace secateur::stages::testing {

struct InSourceDir {
  InSourceDir() { EXPECT_EQ(::chdir(SECATEUR_SOURCE_DIR), 0); }
};

// <temp>/secateur-<tag>-<pid>, removed first.
inline std::string out_dir(const std::string& tag) {
  const std::string p = fs::join(fs::temp_directory(), "secateur-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

// Runs the recipe at `path` with `overrides` into `out`; returns its report.json.
inline nlohmann::json run_recipe(const std::string& path, const std::vector<std::string>& overrides, const std::string& out) {
  torch::set_num_threads(2);
  const recipe::Recipe r = recipe::load_recipe(path, overrides, *registry().recipe_schema());
  run::RunOptions o;
  o.out = out;
  run::execute(r, registry(), o);
  return nlohmann::json::parse(fs::read_file(fs::join(out, "report.json")));
}

// The results of the first stage of `kind` in a report ({} when none).
inline nlohmann::json stage_results(const nlohmann::json& report, const std::string& kind) {
  for (const auto& s : report["stages"])
    if (s["kind"] == kind) return s["results"];
  return {};
}

}  // namespace secateur::stages::testing
