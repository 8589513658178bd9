#pragma once
// A YAML document as a tree that remembers where every node came from (file, line, column),
// so that every error can point at the exact place a user must fix, even after includes and
// --set overrides are merged. Scalars stay text until the schema types them: "007" is an
// integer for `seed` and a string for `name`, never guessed.
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace secateur::recipe {

struct SourceLoc {
  std::string file;  // recipe path, included fragment, or "--set N"
  int line = 0;      // 1-based; 0 = unknown
  int column = 0;    // 1-based
  std::string str() const;  // "file:line:col"
};

class Value {
 public:
  enum class Kind { Null, Scalar, List, Map };
  struct Entry;

  Value() = default;
  static Value null(SourceLoc loc = {});
  static Value scalar(std::string text, SourceLoc loc = {}, bool quoted = false);
  static Value list(SourceLoc loc = {});
  static Value map(SourceLoc loc = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_scalar() const { return kind_ == Kind::Scalar; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_map() const { return kind_ == Kind::Map; }
  const SourceLoc& loc() const { return loc_; }
  void set_loc(SourceLoc loc) { loc_ = std::move(loc); }

  // Scalars.
  const std::string& text() const { return text_; }
  bool quoted() const { return quoted_; }
  // Typed reads of a validated scalar (the schema has checked and normalised the text).
  bool as_bool() const;
  long long as_int() const;
  double as_double() const;
  const std::string& as_string() const { return text_; }

  // Lists.
  const std::vector<Value>& items() const { return items_; }
  std::vector<Value>& items() { return items_; }
  void push_back(Value v) { items_.push_back(std::move(v)); }
  size_t size() const { return kind_ == Kind::List ? items_.size() : entries_.size(); }

  // Maps keep insertion order (the order a user wrote).
  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>& entries() { return entries_; }
  const Value* find(const std::string& key) const;
  Value* find(const std::string& key);
  bool has(const std::string& key) const { return find(key) != nullptr; }
  const Value& at(const std::string& key) const;  // std::out_of_range naming the key
  // Inserts or replaces; keeps the key's original position when replacing.
  void set(const std::string& key, Value v, SourceLoc key_loc = {});
  bool erase(const std::string& key);
  std::vector<std::string> keys() const;

  // Convenience for validated option maps: value of `key` or `fallback` when absent/null.
  double get_double(const std::string& key, double fallback) const;
  long long get_int(const std::string& key, long long fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

 private:
  Kind kind_ = Kind::Null;
  SourceLoc loc_;
  std::string text_;
  bool quoted_ = false;
  std::vector<Value> items_;
  std::vector<Entry> entries_;
};

struct Value::Entry {
  std::string key;
  SourceLoc key_loc;
  Value value;
};

// Parses YAML text; `file` names the source in locations. Throws RecipeErrors on syntax errors.
Value parse_yaml(const std::string& text, const std::string& file);

// Deep merge: maps merge key by key (`over` wins), anything else is replaced by `over`.
Value merge(const Value& base, const Value& over);

// Block-style YAML text of the tree (used for recipe.resolved.yaml and `secateur validate`).
std::string to_yaml(const Value& v);
// One-line flow-style YAML ("{heads: 0.5, ffn: [1, 2]}"), e.g. to pass a value back to --set.
std::string to_flow_yaml(const Value& v);

}  // namespace secateur::recipe
