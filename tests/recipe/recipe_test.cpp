#include <gtest/gtest.h>

#include <fstream>
#include <iostream>

#include "recipe/recipe.h"
#include "recipe/registry.h"
#include "util/fs.h"

using namespace secateur::recipe;
namespace fs = secateur::fs;

namespace {

// A registry like the real one, with two stage kinds whose schemas exercise nesting.
Registry test_registry() {
  Registry r;
  r.add_section({"model", "model", Schema::structure()->required("path", Schema::string(), "p")->field(
                                       "dtype", Schema::enumeration({"float32", "bfloat16"}), "d", "float32"),
                 false});
  auto prune = Schema::structure()
                   ->field("sparsity", Schema::number()->min(0)->max(1, true), "s", "0.5")
                   ->field("train", Schema::structure()->field("lr", Schema::number()->min(0, true), "lr", "1e-4")
                                        ->field("steps", Schema::integer()->min(1), "steps", "10"),
                           "training")
                   ->field("grid", Schema::list(Schema::number()), "g");
  r.add_stage({"prune", "prune things", prune, nullptr});
  r.add_stage({"eval", "evaluate", Schema::structure()->field("split", Schema::enumeration({"validation", "test"}), "s", "validation"), nullptr});
  return r;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::join(fs::temp_directory(), "secateur-recipe-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string write(const std::string& rel, const std::string& text) const {
    std::string p = fs::join(path_, rel);
    fs::create_directories(fs::parent_path(p));
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  static inline int counter_ = 0;
};

std::vector<std::string> load_errors(const std::string& path, const std::vector<std::string>& overrides = {}) {
  auto reg = test_registry();
  try {
    load_recipe(path, overrides, *reg.recipe_schema());
  } catch (const RecipeErrors& e) {
    std::vector<std::string> out;
    for (const auto& d : e.errors()) out.push_back(d.str());
    return out;
  }
  return {};
}

}  // namespace

TEST(Recipe, LoadsValidatesAndFillsTopLevelDefaults) {
  TempDir dir;
  auto path = dir.write("recipes/r.yaml", "model: {path: m}\nstages:\n  - eval:\n  - prune: {sparsity: 0.3}\n");
  auto reg = test_registry();
  Recipe r = load_recipe(path, {}, *reg.recipe_schema());
  EXPECT_EQ(r.name(), "r");  // from the file name
  EXPECT_EQ(r.tree.at("seed").as_int(), 0);
  EXPECT_EQ(r.tree.at("device").text(), "cpu");
  EXPECT_EQ(r.tree.at("model").at("dtype").text(), "float32");
  EXPECT_EQ(r.tree.at("stages").items()[1].at("prune").at("train").at("steps").as_int(), 10);
  EXPECT_EQ(r.hash.size(), 16u);
  // Same content → same hash; different content → different hash.
  auto path2 = dir.write("recipes/r2.yaml", "name: r\nmodel: {path: m}\nstages: [eval: {}, prune: {sparsity: 0.3}]\n");
  EXPECT_EQ(load_recipe(path2, {}, *reg.recipe_schema()).hash, r.hash);
  EXPECT_NE(load_recipe(path2, {"seed=1"}, *reg.recipe_schema()).hash, r.hash);
}

TEST(Recipe, IncludesMergeInOrderAndOwnKeysWin) {
  TempDir dir;
  dir.write("configs/models/m.yaml", "model: {path: from-fragment, dtype: bfloat16}\nseed: 5\n");
  dir.write("configs/seed.yaml", "seed: 7\nname: fragment-name\n");
  auto path = dir.write("recipes/r.yaml",
                        "include: [configs/models/m.yaml, configs/seed.yaml]\nname: mine\nmodel: {path: own}\nstages: [eval: {}]\n");
  auto reg = test_registry();
  std::vector<std::string> files;
  Recipe r = load_recipe(path, {}, *reg.recipe_schema());
  EXPECT_EQ(r.name(), "mine");
  EXPECT_EQ(r.tree.at("seed").as_int(), 7);                            // later fragment wins
  EXPECT_EQ(r.tree.at("model").at("path").text(), "own");               // recipe wins
  EXPECT_EQ(r.tree.at("model").at("dtype").text(), "bfloat16");         // deep merge keeps fragment's other keys
  ASSERT_EQ(r.files.size(), 3u);
  EXPECT_NE(r.files[0].find("m.yaml"), std::string::npos);
  EXPECT_NE(r.files[2].find("r.yaml"), std::string::npos);
}

TEST(Recipe, ErrorsInIncludedFilesNameThatFile) {
  TempDir dir;
  dir.write("configs/bad.yaml", "model:\n  path: m\n  dtyp: float32\n");
  auto errors = load_errors(dir.write("r.yaml", "include: [configs/bad.yaml, configs/missing.yaml]\nstages: [eval: {}]\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("r.yaml:1:29: include: cannot find 'configs/missing.yaml'"), std::string::npos) << errors[0];
  errors = load_errors(dir.write("s.yaml", "include: [configs/bad.yaml]\nstages: [eval: {}]\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("configs/bad.yaml:3:3: unknown key 'dtyp' in model — did you mean 'dtype'?"), std::string::npos)
      << errors[0];
}

TEST(Recipe, IncludeCycleIsAnError) {
  TempDir dir;
  dir.write("a.yaml", "include: [b.yaml]\n");
  dir.write("b.yaml", "include: [a.yaml]\n");
  auto errors = load_errors(dir.write("r.yaml", "include: [a.yaml]\nstages: [eval: {}]\n"));
  ASSERT_GE(errors.size(), 1u);
  EXPECT_NE(errors[0].find("include cycle"), std::string::npos) << errors[0];
}

TEST(Recipe, AllErrorsAreReportedAtOnce) {
  TempDir dir;
  auto path = dir.write("r.yaml", "seed: -1\ndevcie: cpu\nstages:\n  - prune: {sparsity: 2, train: {lr: fast}}\n");
  auto errors = load_errors(path);
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_NE(errors[0].find("r.yaml:1:7: seed: expected a non-negative integer, got '-1'"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("r.yaml:2:1: unknown key 'devcie' in the recipe — did you mean 'device'?"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("r.yaml:4:23: stages[0].prune.sparsity: expected a number in [0, 1), got '2'"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("r.yaml:4:38: stages[0].prune.train.lr: expected a positive number, got 'fast'"), std::string::npos) << errors[3];
  try {
    auto reg = test_registry();
    load_recipe(path, {}, *reg.recipe_schema());
    FAIL();
  } catch (const RecipeErrors& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("4 errors; nothing was run."), std::string::npos);
  }
}

TEST(Recipe, MissingStagesAndYamlSyntax) {
  TempDir dir;
  auto errors = load_errors(dir.write("r.yaml", "seed: 1\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("missing required key 'stages' in the recipe"), std::string::npos);
  errors = load_errors(dir.write("s.yaml", "stages: [eval: {}\nseed: 1\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("s.yaml:"), std::string::npos);
  EXPECT_NE(errors[0].find("invalid YAML"), std::string::npos);
  errors = load_errors(dir.write("t.yaml", "- a\n- b\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("a recipe must be a mapping"), std::string::npos);
  errors = load_errors(dir.write("u.yaml", "seed: 1\nseed: 2\nstages: [eval: {}]\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], fs::join(dir.path(), "u.yaml") + ":2:1: duplicate key 'seed'");
}

TEST(Recipe, MissingRecipeFileIsAUserError) {
  auto reg = test_registry();
  EXPECT_THROW(load_recipe("/nonexistent/recipe.yaml", {}, *reg.recipe_schema()), secateur::UserError);
  try {
    load_recipe(fs::temp_directory(), {}, *reg.recipe_schema());
    FAIL();
  } catch (const secateur::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("is a directory, expected a file"), std::string::npos);
  }
}

TEST(Overrides, AreTypedByTheSchema) {
  TempDir dir;
  auto path = dir.write("r.yaml", "name: n\nmodel: {path: m}\nstages:\n  - eval:\n  - prune: {sparsity: 0.3}\n");
  auto reg = test_registry();
  Recipe r = load_recipe(path,
                         {"stages.1.prune.sparsity=0.7", "stages.1.prune.train.steps=42", "name=123", "seed=9",
                          "stages.1.prune.grid=[0.1, 0.2]", "stages.0.eval.split=test"},
                         *reg.recipe_schema());
  EXPECT_EQ(r.tree.at("stages").items()[1].at("prune").at("sparsity").text(), "0.7");
  EXPECT_EQ(r.tree.at("stages").items()[1].at("prune").at("train").at("steps").as_int(), 42);
  EXPECT_EQ(r.tree.at("stages").items()[1].at("prune").at("train").at("lr").text(), "1e-4");  // sibling default kept
  EXPECT_EQ(r.name(), "123");  // a string where the schema says string
  EXPECT_EQ(r.tree.at("seed").as_int(), 9);
  EXPECT_EQ(r.tree.at("stages").items()[1].at("prune").at("grid").items().size(), 2u);
  EXPECT_EQ(r.tree.at("stages").items()[0].at("eval").at("split").text(), "test");
}

TEST(Overrides, OnePastTheEndAppendsAWholeListItem) {
  TempDir dir;
  auto path = dir.write("r.yaml", "name: n\nmodel: {path: m}\nstages:\n  - prune: {sparsity: 0.3}\n");
  auto reg = test_registry();
  Recipe r = load_recipe(path, {"stages.1={eval: {split: test}}", "stages.1.eval.split=validation"}, *reg.recipe_schema());
  ASSERT_EQ(r.tree.at("stages").items().size(), 2u);
  EXPECT_EQ(r.tree.at("stages").items()[1].at("eval").at("split").text(), "validation");  // later --set edit it
  auto errors = load_errors(path, {"stages.1.eval.split=test"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "--set stages.1.eval.split=test: stages has 1 item(s); index 1 is out of range "
                       "(index 1 appends only a whole item: stages.1={...})");
}

TEST(Overrides, BadPathsAndValuesAreErrors) {
  TempDir dir;
  auto path = dir.write("r.yaml", "model: {path: m}\nstages:\n  - eval:\n  - prune: {}\n");
  auto errors = load_errors(path, {"stages.1.prune.sparsty=0.5", "stages.5.prune.sparsity=0.5",
                                   "stages.0.prune.sparsity=0.5", "seed.x=1", "nokey", "stages.1.prune.sparsity=lots"});
  ASSERT_EQ(errors.size(), 6u);
  EXPECT_EQ(errors[0], "--set stages.1.prune.sparsty=0.5: unknown key 'sparsty' in stages.1.prune — did you mean 'sparsity'?");
  EXPECT_EQ(errors[1], "--set stages.5.prune.sparsity=0.5: stages has 2 item(s); index 5 is out of range");
  EXPECT_EQ(errors[2], "--set stages.0.prune.sparsity=0.5: stages.0 is a 'eval' entry, not 'prune'");
  EXPECT_EQ(errors[3], "--set seed.x=1: 'seed' is a non-negative integer; it has no key 'x'");
  EXPECT_EQ(errors[4], "--set nokey: expected KEY=VALUE, e.g. --set stages.1.prune.sparsity=0.5");
  EXPECT_EQ(errors[5], "--set stages.1.prune.sparsity=lots: stages[1].prune.sparsity: expected a number in [0, 1), got 'lots'");
}

TEST(Registry, RejectsDuplicatesAndListsNames) {
  auto r = test_registry();
  EXPECT_THROW(r.add_stage({"eval", "again", Schema::structure(), nullptr}), std::logic_error);
  EXPECT_EQ(r.stage_names(), (std::vector<std::string>{"eval", "prune"}));
  EXPECT_NE(r.stage("prune"), nullptr);
  EXPECT_EQ(r.stage("nope"), nullptr);
  EXPECT_EQ(r.section_names(), std::vector<std::string>{"model"});
}

TEST(Value, YamlRoundTripKeepsQuotedStrings) {
  Value v = parse_yaml("a: \"007\"\nb: [1, {c: null}]\n", "x.yaml");
  Value again = parse_yaml(to_yaml(v), "y.yaml");
  EXPECT_TRUE(again.at("a").quoted());
  EXPECT_EQ(again.at("a").text(), "007");
  EXPECT_TRUE(again.at("b").items()[1].at("c").is_null());
}
