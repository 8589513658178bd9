#pragma once
// Loading a recipe: read YAML, resolve `include:` fragments, apply `--set` overrides, validate
// against the schema. Torch-free, so the whole front end can be fuzzed and tested alone.
#include <string>
#include <vector>

#include "recipe/schema.h"
#include "recipe/value.h"

namespace secateur::recipe {

struct Recipe {
  std::string path;                 // the recipe file as given
  std::vector<std::string> files;   // the recipe and every fragment it included, in merge order
  Value tree;                       // validated, normalised, defaults filled in
  std::string hash;                 // 16 hex digits of FNV-1a over the resolved YAML: same recipe, same hash

  const Value& section(const std::string& key) const { return tree.at(key); }
  std::string name() const { return tree.get_string("name", ""); }
};

// Reads `path` and merges its `include:` fragments (paths relative to the including file's
// directory or any of its parents, so `configs/x.yaml` works from `recipes/`). Fragments merge in
// order; the including file's own keys win. Cycles and missing fragments are errors.
Value load_with_includes(const std::string& path, std::vector<std::string>* files = nullptr);

// Applies "a.b.0.c=value" overrides in order. Paths are checked against `schema` (unknown keys,
// list indices out of range, a stage of another kind) and values are YAML (so lists and maps
// work: --set 'x=[0.3, 0.5]'); their type comes from the schema at validation, not from a guess.
void apply_overrides(Value& root, const std::vector<std::string>& overrides, const Schema& schema,
                     Diagnostics& diags);

// Everything above, then validation. Throws RecipeErrors with every problem found.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides, const Schema& schema);

// Same from text already in memory (tests, fuzzing): includes resolve against `base_dir`.
Recipe load_recipe_text(const std::string& text, const std::string& file_name,
                        const std::vector<std::string>& overrides, const Schema& schema);

std::string fnv1a_hex(const std::string& text);

}  // namespace secateur::recipe
