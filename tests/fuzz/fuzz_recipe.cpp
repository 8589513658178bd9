// Recipe loader: YAML parsing, schema validation and --set overrides. Input: override lines
// ("key=value", one per line) up to a line "---recipe---", then the recipe's YAML. Anything but a
// UserError (a diagnosed bad recipe) is a finding.
#include <cstdint>
#include <string>
#include <vector>

#include "recipe/recipe.h"
#include "recipe/registry.h"
#include "util/error.h"

using namespace secateur::recipe;

namespace {

// A registry shaped like the real one: nested structs, unions, enums, lists, numbers with ranges.
const Registry& registry() {
  static Registry r = [] {
    Registry reg;
    reg.add_section({"model", "m", Schema::structure()->required("path", Schema::string(), "p")->field(
                                       "dtype", Schema::enumeration({"float32", "bfloat16"}), "d", "float32"), false});
    auto target = Schema::union_of({Schema::number()->min(0)->max(1, true),
                                    Schema::structure()->field("heads", Schema::number()->min(0)->max(1), "h")->field(
                                        "layers", Schema::integer()->min(0), "l")});
    reg.add_stage({"prune", "p",
                   Schema::structure()
                       ->field("target", target, "t", "0.5")
                       ->field("estimator", Schema::structure()->field("name", Schema::enumeration({"magnitude", "taylor"}), "n", "magnitude")
                                                ->field("norm", Schema::integer()->min(1)->max(2), "n", "2"), "e")
                       ->field("granularity", Schema::list(Schema::enumeration({"heads", "ffn"})), "g", "[heads]")
                       ->field("train", Schema::structure()->field("lr", Schema::number()->min(0, true), "lr", "1e-4")
                                            ->field("bf16", Schema::boolean(), "b", "false"), "t")
                       ->field("extra", Schema::map_of(Schema::any()), "x"),
                   nullptr});
    reg.add_stage({"eval", "e", Schema::structure()->field("split", Schema::enumeration({"validation", "test"}), "s", "validation"), nullptr});
    return reg;
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  std::string yaml = input;
  const std::string marker = "---recipe---\n";
  if (size_t at = input.find(marker); at != std::string::npos) {
    std::string head = input.substr(0, at);
    yaml = input.substr(at + marker.size());
    size_t start = 0;
    while (start < head.size()) {
      size_t end = head.find('\n', start);
      if (end == std::string::npos) end = head.size();
      overrides.push_back(head.substr(start, end - start));
      start = end + 1;
    }
  }
  static const SchemaPtr schema = registry().recipe_schema();
  try {
    // Includes resolve against a directory that has no fragments: missing-include errors only.
    load_recipe_text(yaml, "/nonexistent-fuzz-dir/recipe.yaml", overrides, *schema);
  } catch (const secateur::UserError&) {
  }
  return 0;
}
