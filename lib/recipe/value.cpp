#include "recipe/value.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <stdexcept>

#include "recipe/diagnostics.h"

namespace secateur::recipe {

std::string SourceLoc::str() const {
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

Value Value::null(SourceLoc loc) {
  Value v;
  v.loc_ = std::move(loc);
  return v;
}

Value Value::scalar(std::string text, SourceLoc loc, bool quoted) {
  Value v;
  v.kind_ = Kind::Scalar;
  v.text_ = std::move(text);
  v.quoted_ = quoted;
  v.loc_ = std::move(loc);
  return v;
}

Value Value::list(SourceLoc loc) {
  Value v;
  v.kind_ = Kind::List;
  v.loc_ = std::move(loc);
  return v;
}

Value Value::map(SourceLoc loc) {
  Value v;
  v.kind_ = Kind::Map;
  v.loc_ = std::move(loc);
  return v;
}

bool Value::as_bool() const { return text_ == "true"; }
long long Value::as_int() const { return std::stoll(text_); }
double Value::as_double() const { return std::stod(text_); }

const Value* Value::find(const std::string& key) const {
  for (const auto& e : entries_)
    if (e.key == key) return &e.value;
  return nullptr;
}

Value* Value::find(const std::string& key) {
  for (auto& e : entries_)
    if (e.key == key) return &e.value;
  return nullptr;
}

const Value& Value::at(const std::string& key) const {
  if (const Value* v = find(key)) return *v;
  throw std::out_of_range("recipe value has no key '" + key + "'");
}

void Value::set(const std::string& key, Value v, SourceLoc key_loc) {
  if (kind_ != Kind::Map) {
    kind_ = Kind::Map;
    items_.clear();
    text_.clear();
  }
  for (auto& e : entries_) {
    if (e.key == key) {
      e.value = std::move(v);
      return;
    }
  }
  if (key_loc.file.empty()) key_loc = v.loc();
  entries_.push_back({key, std::move(key_loc), std::move(v)});
}

bool Value::erase(const std::string& key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->key == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

std::vector<std::string> Value::keys() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.key);
  return out;
}

double Value::get_double(const std::string& key, double fallback) const {
  const Value* v = find(key);
  return v && v->is_scalar() ? v->as_double() : fallback;
}

long long Value::get_int(const std::string& key, long long fallback) const {
  const Value* v = find(key);
  return v && v->is_scalar() ? v->as_int() : fallback;
}

bool Value::get_bool(const std::string& key, bool fallback) const {
  const Value* v = find(key);
  return v && v->is_scalar() ? v->as_bool() : fallback;
}

std::string Value::get_string(const std::string& key, const std::string& fallback) const {
  const Value* v = find(key);
  return v && v->is_scalar() ? v->text() : fallback;
}

// ---- YAML → Value -----------------------------------------------------------------------------

namespace {

SourceLoc loc_of(const YAML::Mark& mark, const std::string& file) {
  // yaml-cpp marks are 0-based; users count from 1. A null node has mark -1.
  if (mark.line < 0) return {file, 0, 0};
  return {file, mark.line + 1, mark.column + 1};
}

Value convert(const YAML::Node& node, const std::string& file, Diagnostics& diags, int depth) {
  SourceLoc loc = loc_of(node.Mark(), file);
  if (depth > 64) {
    diags.error(loc, "YAML nested more than 64 levels deep");
    return Value::null(loc);
  }
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Value::null(loc);
    case YAML::NodeType::Scalar:
      // yaml-cpp tags plain scalars "?" and quoted ones "!": a quoted "null" stays a string.
      return Value::scalar(node.Scalar(), loc, node.Tag() == "!");
    case YAML::NodeType::Sequence: {
      Value list = Value::list(loc);
      for (const auto& item : node) list.push_back(convert(item, file, diags, depth + 1));
      return list;
    }
    case YAML::NodeType::Map: {
      Value map = Value::map(loc);
      for (const auto& kv : node) {
        SourceLoc key_loc = loc_of(kv.first.Mark(), file);
        if (!kv.first.IsScalar()) {
          diags.error(key_loc, "mapping keys must be plain words");
          continue;
        }
        const std::string key = kv.first.Scalar();
        if (map.has(key)) {
          diags.error(key_loc, "duplicate key '" + key + "'");
          continue;
        }
        map.entries().push_back({key, key_loc, convert(kv.second, file, diags, depth + 1)});
      }
      return map;
    }
  }
  return Value::null(loc);
}

void emit(YAML::Emitter& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Null:
      out << YAML::Null;
      break;
    case Value::Kind::Scalar:
      if (v.quoted()) out << YAML::DoubleQuoted;
      out << v.text();
      break;
    case Value::Kind::List:
      out << YAML::BeginSeq;
      for (const auto& item : v.items()) emit(out, item);
      out << YAML::EndSeq;
      break;
    case Value::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& e : v.entries()) {
        out << YAML::Key << e.key << YAML::Value;
        emit(out, e.value);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

Value parse_yaml(const std::string& text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw RecipeErrors({{loc_of(e.mark, file), "invalid YAML: " + e.msg}});
  }
  Diagnostics diags;
  Value v = convert(root, file, diags, 0);
  diags.throw_if_any();
  if (v.is_null()) v = Value::map({file, 1, 1});
  return v;
}

Value merge(const Value& base, const Value& over) {
  if (!base.is_map() || !over.is_map()) return over;
  Value out = base;
  for (const auto& e : over.entries()) {
    bool replaced = false;
    for (auto& mine : out.entries()) {
      if (mine.key != e.key) continue;
      // Keep the base's key order; the winning key's location is the overriding file's.
      mine.value = merge(mine.value, e.value);
      mine.key_loc = e.key_loc;
      replaced = true;
      break;
    }
    if (!replaced) out.entries().push_back(e);
  }
  return out;
}

std::string to_flow_yaml(const Value& v) {
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  emit(out, v);
  return out.c_str();
}

std::string to_yaml(const Value& v) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, v);
  return std::string(out.c_str()) + "\n";
}

}  // namespace secateur::recipe
