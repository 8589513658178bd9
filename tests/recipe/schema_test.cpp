#include <gtest/gtest.h>

#include "recipe/schema.h"

using namespace secateur::recipe;

namespace {

std::vector<std::string> errors_of(const Schema& s, const std::string& yaml, Value* out = nullptr) {
  Diagnostics d;
  Value v = s.validate(parse_yaml(yaml, "r.yaml"), "", d);
  if (out) *out = v;
  std::vector<std::string> msgs;
  for (const auto& e : d.items()) msgs.push_back(e.str());
  return msgs;
}

SchemaPtr prune_schema() {
  return Schema::structure()
      ->field("sparsity", Schema::number()->min(0)->max(1, true), "fraction removed", "0.5")
      ->field("target_sparsity", Schema::number()->min(0)->max(1), "final sparsity")
      ->field("lr", Schema::number()->min(0, true), "learning rate", "1e-4")
      ->field("steps", Schema::integer()->min(1), "steps", "10")
      ->field("granularity", Schema::list(Schema::enumeration({"heads", "ffn", "hidden"})), "what", "[heads]")
      ->field("bf16", Schema::boolean(), "autocast", "false")
      ->required("estimator", Schema::string(), "which estimator");
}

}  // namespace

TEST(Schema, FillsDefaultsAndNormalisesScalars) {
  Value v;
  auto errors = errors_of(*prune_schema(), "estimator: magnitude\nsteps: 007\nbf16: yes\n", &v);
  ASSERT_TRUE(errors.empty()) << errors[0];
  EXPECT_EQ(v.at("steps").as_int(), 7);
  EXPECT_EQ(v.at("steps").text(), "7");
  EXPECT_TRUE(v.at("bf16").as_bool());
  EXPECT_DOUBLE_EQ(v.at("sparsity").as_double(), 0.5);
  EXPECT_DOUBLE_EQ(v.at("lr").as_double(), 1e-4);
  ASSERT_TRUE(v.at("granularity").is_list());
  EXPECT_EQ(v.at("granularity").items()[0].text(), "heads");
  EXPECT_EQ(v.at("sparsity").loc().file, "default");
}

TEST(Schema, UnknownKeySuggestsClosestWithLineAndColumn) {
  auto errors = errors_of(*prune_schema(), "estimator: magnitude\n  \ntarget_sparsty: 0.9\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:3:1: unknown key 'target_sparsty' in the recipe — did you mean 'target_sparsity'?");
}

TEST(Schema, UnknownKeyWithoutCloseMatchListsTheKeys) {
  auto errors = errors_of(*Schema::structure()->field("alpha", Schema::number(), "a"), "zzzzzzzz: 1\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:1:1: unknown key 'zzzzzzzz' in the recipe (expected one of: alpha)");
}

TEST(Schema, TypeAndRangeErrorsSayWhatWasExpected) {
  auto errors = errors_of(*prune_schema(), "estimator: magnitude\nlr: fast\nsparsity: 1.0\nsteps: 0\nbf16: 3\n");
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0], "r.yaml:2:5: lr: expected a positive number, got 'fast'");
  EXPECT_EQ(errors[1], "r.yaml:3:11: sparsity: expected a number in [0, 1), got '1.0'");
  EXPECT_EQ(errors[2], "r.yaml:4:8: steps: expected an integer ≥ 1, got '0'");
  EXPECT_EQ(errors[3], "r.yaml:5:7: bf16: expected true or false, got '3'");
}

TEST(Schema, MissingRequiredKeyPointsAtTheMapping) {
  auto errors = errors_of(*prune_schema(), "steps: 3\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:1:1: missing required key 'estimator' in the recipe (expected a string)");
}

TEST(Schema, EnumSuggestsAndListsIndexItems) {
  auto errors = errors_of(*prune_schema(), "estimator: m\ngranularity: [heads, fnn]\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:2:22: granularity[1]: expected one of heads, ffn, hidden, got 'fnn' — did you mean 'ffn'?");
}

TEST(Schema, WrongShapeOfValue) {
  auto errors = errors_of(*prune_schema(), "estimator: [a, b]\ngranularity: heads\n");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], "r.yaml:1:12: estimator: expected a string, got a list");
  EXPECT_EQ(errors[1], "r.yaml:2:14: granularity: expected a list of one of heads, ffn, hidden, got 'heads'");
}

TEST(Schema, QuotedNumberIsNotANumber) {
  auto errors = errors_of(*prune_schema(), "estimator: m\nsteps: \"3\"\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:2:8: steps: expected an integer ≥ 1, got '3'");
}

TEST(Schema, NumbersRejectNanInfAndHex) {
  for (const char* bad : {"nan", ".inf", "0x10", "1e999", ""}) {
    auto errors = errors_of(*Schema::structure()->field("x", Schema::number(), "x"), std::string("x: '") + bad + "'\n");
    EXPECT_EQ(errors.size(), 1u) << bad;
  }
  for (const char* bad : {"nan", "inf", "0x10", "1e999"}) {
    auto errors = errors_of(*Schema::structure()->field("x", Schema::number(), "x"), std::string("x: ") + bad + "\n");
    EXPECT_EQ(errors.size(), 1u) << bad;
  }
}

TEST(Schema, UnionTakesTheFirstAlternativeThatFits) {
  auto target = Schema::union_of({Schema::number()->min(0)->max(1),
                                  Schema::structure()->field("heads", Schema::number()->min(0)->max(1), "h")});
  auto s = Schema::structure()->field("target", target, "t");
  Value v;
  EXPECT_TRUE(errors_of(*s, "target: 0.3\n", &v).empty());
  EXPECT_EQ(v.at("target").text(), "0.3");
  EXPECT_TRUE(errors_of(*s, "target: {heads: 0.5}\n", &v).empty());
  EXPECT_EQ(v.at("target").at("heads").text(), "0.5");
  // Only the mapping alternative takes a mapping: its own error is the useful one.
  auto errors = errors_of(*s, "target: {haeds: 0.5}\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:1:10: unknown key 'haeds' in target — did you mean 'heads'?");
  errors = errors_of(*s, "target: [1]\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:1:9: target: expected a number in [0, 1] or a mapping of options, got a list");
}

TEST(Schema, OneKeyEntries) {
  std::map<std::string, SchemaPtr> kinds = {{"prune", prune_schema()}, {"eval", Schema::structure()}};
  auto entry = Schema::one_key(
      "stage", [&](const std::string& n) { return kinds.count(n) ? kinds[n] : nullptr; },
      [&] { return std::vector<std::string>{"eval", "prune"}; });
  auto s = Schema::structure()->required("stages", Schema::list(entry), "stages");
  Value v;
  EXPECT_TRUE(errors_of(*s, "stages:\n  - eval:\n  - prune: {estimator: m}\n", &v).empty());
  EXPECT_TRUE(v.at("stages").items()[0].at("eval").is_map());
  EXPECT_EQ(v.at("stages").items()[1].at("prune").at("steps").as_int(), 10);
  auto errors = errors_of(*s, "stages:\n  - prnue: {}\n  - {eval: {}, prune: {}}\n  - prune: {estimator: m, stpes: 2}\n");
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0], "r.yaml:2:5: stages[0]: unknown stage 'prnue' — did you mean 'prune'? (stages: eval, prune)");
  EXPECT_EQ(errors[1], "r.yaml:3:5: stages[1]: expected a single stage such as '- eval: {...}', got a mapping with 2 keys");
  EXPECT_EQ(errors[2], "r.yaml:4:27: unknown key 'stpes' in stages[2].prune — did you mean 'steps'?");
}

TEST(Schema, CustomCheck) {
  auto s = Schema::structure()->field(
      "device", Schema::string()->check([](const Value& v) { return v.text() == "cpu" ? "" : "cpu only"; }, "cpu only"),
      "d");
  auto errors = errors_of(*s, "device: tpu\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "r.yaml:1:9: device: expected cpu only, got 'tpu'");
}

TEST(Schema, HelpListsTypesDefaultsAndDocs) {
  std::string help = prune_schema()->help();
  EXPECT_NE(help.find("sparsity: a number in [0, 1) (default 0.5)\n    fraction removed\n"), std::string::npos) << help;
  EXPECT_NE(help.find("estimator: a string (required)"), std::string::npos) << help;
}

// A union's mapping alternative documents its own keys (prune's schedule: one_shot or {iterative: {step, eval}}).
TEST(Schema, HelpListsTheKeysOfAUnionsMappingAlternative) {
  auto iterative = Schema::structure()->required("step", Schema::number(), "per round");
  auto s = Schema::structure()->field(
      "schedule", Schema::union_of({Schema::enumeration({"one_shot"}), Schema::structure()->required("iterative", iterative, "rounds")}),
      "how", "one_shot");
  const std::string help = s->help();
  EXPECT_NE(help.find("schedule: one of one_shot or a mapping of options (default one_shot)\n    how\n"
                      "  iterative: a mapping of options (required)\n      rounds\n    step: a number (required)\n        per round\n"),
            std::string::npos)
      << help;
}
