#pragma once
// Schemas declare what a recipe section or stage accepts: keys, types, defaults, allowed values,
// ranges and one line of documentation per key. Validation types every scalar, fills defaults,
// and collects every error with its file:line:col. `secateur help stage NAME` prints the same
// schema, so the docs cannot drift from what is accepted.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "recipe/diagnostics.h"
#include "recipe/value.h"

namespace secateur::recipe {

class Schema;
using SchemaPtr = std::shared_ptr<const Schema>;
using SchemaBuilder = std::shared_ptr<Schema>;

struct Field {
  std::string name;
  SchemaPtr schema;
  std::string doc;
  bool required = false;
  std::optional<Value> default_value;
};

class Schema : public std::enable_shared_from_this<Schema> {
 public:
  enum class Type { Any, Bool, Int, Number, String, Enum, List, Struct, Map, OneKey, Union };

  static SchemaBuilder any();
  static SchemaBuilder boolean();
  static SchemaBuilder integer();
  static SchemaBuilder number();
  static SchemaBuilder string();
  static SchemaBuilder enumeration(std::vector<std::string> choices);
  static SchemaBuilder list(SchemaPtr element);
  static SchemaBuilder structure();
  static SchemaBuilder map_of(SchemaPtr value);
  // A mapping with exactly one key that selects the schema of its value, as in a stage list:
  // `- prune: {...}`. `what` names the choice in messages ("stage").
  using Lookup = std::function<SchemaPtr(const std::string&)>;
  using Names = std::function<std::vector<std::string>()>;
  static SchemaBuilder one_key(std::string what, Lookup lookup, Names names);
  // The first alternative that validates without error wins.
  static SchemaBuilder union_of(std::vector<SchemaPtr> alternatives);

  // Refinements (each returns the same builder for chaining).
  SchemaBuilder doc(std::string text);
  SchemaBuilder min(double bound, bool exclusive = false);
  SchemaBuilder max(double bound, bool exclusive = false);
  SchemaBuilder min_items(size_t n);
  // Extra check on the normalised value; returns "" when fine, else what was expected.
  SchemaBuilder check(std::function<std::string(const Value&)> fn, std::string expected_text = "");
  // Struct fields. `default_yaml` is YAML text validated against `schema` when used.
  SchemaBuilder field(const std::string& name, SchemaPtr schema, std::string doc);
  SchemaBuilder field(const std::string& name, SchemaPtr schema, std::string doc, const std::string& default_yaml);
  SchemaBuilder required(const std::string& name, SchemaPtr schema, std::string doc);

  Type type() const { return type_; }
  const std::string& documentation() const { return doc_; }
  const std::vector<Field>& fields() const { return fields_; }
  const Field* find_field(const std::string& name) const;
  SchemaPtr element() const { return element_; }
  const std::vector<std::string>& choices() const { return choices_; }
  const std::vector<SchemaPtr>& alternatives() const { return alternatives_; }
  SchemaPtr lookup(const std::string& key) const { return lookup_ ? lookup_(key) : nullptr; }
  std::vector<std::string> names() const { return names_ ? names_() : std::vector<std::string>{}; }

  // "a positive number", "an integer ≥ 1", "one of cpu, cuda", "a list of numbers in [0, 1]"...
  std::string expected() const;

  // Validates `v` (at `path`, e.g. "stages[1].prune.sparsity"), returning the normalised value
  // with defaults filled in. Errors go to `diags`; on error the returned value is unspecified.
  Value validate(const Value& v, const std::string& path, Diagnostics& diags) const;

  // Reference text: one line per key with type, default and doc, nested structs indented.
  std::string help(int indent = 0) const;

 private:
  explicit Schema(Type type) : type_(type) {}
  Value validate_scalar(const Value& v, const std::string& path, Diagnostics& diags) const;
  Value validate_struct(const Value& v, const std::string& path, Diagnostics& diags) const;
  Value validate_one_key(const Value& v, const std::string& path, Diagnostics& diags) const;
  Value validate_union(const Value& v, const std::string& path, Diagnostics& diags) const;
  std::string range_text() const;

  Type type_;
  std::string doc_;
  std::optional<double> min_, max_;
  bool min_exclusive_ = false, max_exclusive_ = false;
  size_t min_items_ = 0;
  std::vector<std::string> choices_;
  SchemaPtr element_;
  std::vector<Field> fields_;
  std::vector<SchemaPtr> alternatives_;
  std::string what_;
  Lookup lookup_;
  Names names_;
  std::vector<std::pair<std::function<std::string(const Value&)>, std::string>> checks_;
};

// "stages[1].prune" + "sparsity" → "stages[1].prune.sparsity"
std::string join_path(const std::string& path, const std::string& key);

}  // namespace secateur::recipe
