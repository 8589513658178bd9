#include "recipe/schema.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "util/strings.h"

namespace secateur::recipe {

std::string join_path(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string describe_value(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Null: return "nothing";
    case Value::Kind::Scalar: return "'" + v.text() + "'";
    case Value::Kind::List: return "a list";
    case Value::Kind::Map: return "a mapping";
  }
  return "?";
}

std::optional<long long> parse_int(const std::string& s) {
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_number(const std::string& s) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  // strtod also reads hex floats and "nan"/"inf": recipes want plain decimal numbers.
  if (s.find_first_of("xXnN") != std::string::npos) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(const std::string& s) {
  const std::string l = lower(s);
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  return std::nullopt;
}

std::string article_for(const std::string& noun) {
  return (!noun.empty() && std::string("aeiou").find(noun[0]) != std::string::npos) ? "an " : "a ";
}

}  // namespace

// ---- builders ---------------------------------------------------------------------------------

SchemaBuilder Schema::any() { return SchemaBuilder(new Schema(Type::Any)); }
SchemaBuilder Schema::boolean() { return SchemaBuilder(new Schema(Type::Bool)); }
SchemaBuilder Schema::integer() { return SchemaBuilder(new Schema(Type::Int)); }
SchemaBuilder Schema::number() { return SchemaBuilder(new Schema(Type::Number)); }
SchemaBuilder Schema::string() { return SchemaBuilder(new Schema(Type::String)); }
SchemaBuilder Schema::structure() { return SchemaBuilder(new Schema(Type::Struct)); }

SchemaBuilder Schema::enumeration(std::vector<std::string> choices) {
  SchemaBuilder s(new Schema(Type::Enum));
  s->choices_ = std::move(choices);
  return s;
}

SchemaBuilder Schema::list(SchemaPtr element) {
  SchemaBuilder s(new Schema(Type::List));
  s->element_ = std::move(element);
  return s;
}

SchemaBuilder Schema::map_of(SchemaPtr value) {
  SchemaBuilder s(new Schema(Type::Map));
  s->element_ = std::move(value);
  return s;
}

SchemaBuilder Schema::one_key(std::string what, Lookup lookup, Names names) {
  SchemaBuilder s(new Schema(Type::OneKey));
  s->what_ = std::move(what);
  s->lookup_ = std::move(lookup);
  s->names_ = std::move(names);
  return s;
}

SchemaBuilder Schema::union_of(std::vector<SchemaPtr> alternatives) {
  SchemaBuilder s(new Schema(Type::Union));
  s->alternatives_ = std::move(alternatives);
  return s;
}

SchemaBuilder Schema::doc(std::string text) {
  doc_ = std::move(text);
  return shared_from_this();
}

SchemaBuilder Schema::min(double bound, bool exclusive) {
  min_ = bound;
  min_exclusive_ = exclusive;
  return shared_from_this();
}

SchemaBuilder Schema::max(double bound, bool exclusive) {
  max_ = bound;
  max_exclusive_ = exclusive;
  return shared_from_this();
}

SchemaBuilder Schema::min_items(size_t n) {
  min_items_ = n;
  return shared_from_this();
}

SchemaBuilder Schema::check(std::function<std::string(const Value&)> fn, std::string expected_text) {
  checks_.emplace_back(std::move(fn), std::move(expected_text));
  return shared_from_this();
}

SchemaBuilder Schema::field(const std::string& name, SchemaPtr schema, std::string doc) {
  fields_.push_back({name, std::move(schema), std::move(doc), false, std::nullopt});
  return shared_from_this();
}

SchemaBuilder Schema::field(const std::string& name, SchemaPtr schema, std::string doc,
                            const std::string& default_yaml) {
  Value def = parse_yaml(default_yaml, "default");
  if (def.is_map() && def.size() == 0 && default_yaml.find('{') == std::string::npos) def = Value::null();
  fields_.push_back({name, std::move(schema), std::move(doc), false, def});
  return shared_from_this();
}

SchemaBuilder Schema::required(const std::string& name, SchemaPtr schema, std::string doc) {
  fields_.push_back({name, std::move(schema), std::move(doc), true, std::nullopt});
  return shared_from_this();
}

const Field* Schema::find_field(const std::string& name) const {
  for (const auto& f : fields_)
    if (f.name == name) return &f;
  return nullptr;
}

// ---- expectations -----------------------------------------------------------------------------

std::string Schema::range_text() const {
  auto num = [](double v) { return strings::format_number(v); };
  if (min_ && max_)
    return std::string(min_exclusive_ ? "(" : "[") + num(*min_) + ", " + num(*max_) + (max_exclusive_ ? ")" : "]");
  if (min_) {
    if (*min_ == 0 && min_exclusive_) return "> 0";
    return std::string(min_exclusive_ ? "> " : "≥ ") + num(*min_);
  }
  if (max_) return std::string(max_exclusive_ ? "< " : "≤ ") + num(*max_);
  return "";
}

std::string Schema::expected() const {
  for (const auto& [fn, text] : checks_)
    if (!text.empty()) return text;
  switch (type_) {
    case Type::Any: return "any value";
    case Type::Bool: return "true or false";
    case Type::Int:
    case Type::Number: {
      const std::string noun = type_ == Type::Int ? "integer" : "number";
      if (min_ && *min_ == 0 && min_exclusive_ && !max_) return "a positive " + noun;
      if (min_ && *min_ == 0 && !min_exclusive_ && !max_) return "a non-negative " + noun;
      std::string range = range_text();
      if (range.empty()) return article_for(noun) + noun;
      if (range[0] == '[' || range[0] == '(') return article_for(noun) + noun + " in " + range;
      return article_for(noun) + noun + " " + range;
    }
    case Type::String: return "a string";
    case Type::Enum: return "one of " + strings::join(choices_, ", ");
    case Type::List: {
      if (element_->type_ == Type::OneKey) return "a list of " + element_->what_ + "s (each `- name: {options}`)";
      std::string e = element_->expected();
      if (strings::starts_with(e, "a ")) e = e.substr(2) + "s";
      else if (strings::starts_with(e, "an ")) e = e.substr(3) + "s";
      return "a list of " + e;
    }
    case Type::Struct: return "a mapping of options";
    case Type::Map: return "a mapping";
    case Type::OneKey: return "a mapping with one key naming the " + what_;
    case Type::Union: {
      std::vector<std::string> parts;
      for (const auto& a : alternatives_) parts.push_back(a->expected());
      return strings::join(parts, " or ");
    }
  }
  return "?";
}

// ---- validation ---------------------------------------------------------------------------------

Value Schema::validate(const Value& v, const std::string& path, Diagnostics& diags) const {
  const size_t errors_before = diags.size();
  Value out;
  switch (type_) {
    case Type::Any:
      out = v;
      break;
    case Type::Bool:
    case Type::Int:
    case Type::Number:
    case Type::String:
    case Type::Enum:
      out = validate_scalar(v, path, diags);
      break;
    case Type::List: {
      if (!v.is_list()) {
        diags.error(v.loc(), path + ": expected " + expected() + ", got " + describe_value(v));
        return v;
      }
      if (v.size() < min_items_)
        diags.error(v.loc(), path + ": expected at least " + std::to_string(min_items_) + " item(s), got " +
                                 std::to_string(v.size()));
      out = Value::list(v.loc());
      for (size_t i = 0; i < v.items().size(); ++i)
        out.push_back(element_->validate(v.items()[i], path + "[" + std::to_string(i) + "]", diags));
      break;
    }
    case Type::Struct:
      out = validate_struct(v, path, diags);
      break;
    case Type::Map: {
      if (!v.is_map()) {
        diags.error(v.loc(), path + ": expected " + expected() + ", got " + describe_value(v));
        return v;
      }
      out = Value::map(v.loc());
      for (const auto& e : v.entries())
        out.entries().push_back({e.key, e.key_loc, element_->validate(e.value, join_path(path, e.key), diags)});
      break;
    }
    case Type::OneKey:
      out = validate_one_key(v, path, diags);
      break;
    case Type::Union:
      return validate_union(v, path, diags);
  }
  // Extra checks only make sense on a value that passed the type check.
  if (diags.size() == errors_before && (!out.is_null() || type_ == Type::Any)) {
    for (const auto& [fn, text] : checks_) {
      std::string problem = fn(out);
      if (!problem.empty()) diags.error(v.loc(), path + ": expected " + problem + ", got " + describe_value(v));
    }
  }
  return out;
}

Value Schema::validate_scalar(const Value& v, const std::string& path, Diagnostics& diags) const {
  auto fail = [&] {
    std::string message = path + ": expected " + expected() + ", got " + describe_value(v);
    if (type_ == Type::Enum && v.is_scalar()) {
      std::string guess = strings::closest(v.text(), choices_);
      if (!guess.empty()) message += " — did you mean '" + guess + "'?";
    }
    diags.error(v.loc(), message);
    return v;
  };
  if (!v.is_scalar()) return fail();
  const std::string& t = v.text();
  auto in_range = [&](double x) {
    if (min_ && (min_exclusive_ ? x <= *min_ : x < *min_)) return false;
    if (max_ && (max_exclusive_ ? x >= *max_ : x > *max_)) return false;
    return true;
  };
  switch (type_) {
    case Type::Bool: {
      auto b = parse_bool(t);
      if (!b || v.quoted()) return fail();
      return Value::scalar(*b ? "true" : "false", v.loc());
    }
    case Type::Int: {
      auto i = parse_int(t);
      if (!i || v.quoted() || !in_range(static_cast<double>(*i))) return fail();
      return Value::scalar(std::to_string(*i), v.loc());
    }
    case Type::Number: {
      auto d = parse_number(t);
      if (!d || v.quoted() || !in_range(*d)) return fail();
      return Value::scalar(t, v.loc());
    }
    case Type::String:
      return Value::scalar(t, v.loc(), v.quoted());
    case Type::Enum:
      if (std::find(choices_.begin(), choices_.end(), t) == choices_.end()) return fail();
      return Value::scalar(t, v.loc());
    default:
      return v;
  }
}

Value Schema::validate_struct(const Value& v, const std::string& path, Diagnostics& diags) const {
  // `- eval:` with nothing after it means "all defaults".
  Value given = v.is_null() ? Value::map(v.loc()) : v;
  if (!given.is_map()) {
    diags.error(v.loc(), (path.empty() ? std::string("recipe") : path) + ": expected " + expected() + ", got " +
                             describe_value(v));
    return v;
  }
  std::vector<std::string> known;
  for (const auto& f : fields_) known.push_back(f.name);
  // Output keys follow the schema's order, not the user's: resolved recipes then read the same
  // whoever wrote them, and equal recipes hash equal.
  Value user = Value::map(given.loc());
  for (const auto& e : given.entries()) {
    const Field* f = find_field(e.key);
    if (!f) {
      std::string where = path.empty() ? "the recipe" : path;
      std::string message = "unknown key '" + e.key + "' in " + where;
      std::string guess = strings::closest(e.key, known);
      if (!guess.empty())
        message += " — did you mean '" + guess + "'?";
      else if (!known.empty())
        message += " (expected one of: " + strings::join(known, ", ") + ")";
      diags.error(e.key_loc, message);
      continue;
    }
    if (e.value.is_null() && f->schema->type() != Type::Struct && f->schema->type() != Type::Any) {
      if (f->required) diags.error(e.key_loc, join_path(path, e.key) + ": expected " + f->schema->expected() + ", got nothing");
      continue;  // explicit null = use the default
    }
    user.entries().push_back({e.key, e.key_loc, f->schema->validate(e.value, join_path(path, e.key), diags)});
  }
  Value out = Value::map(given.loc());
  for (const auto& f : fields_) {
    if (const Value* mine = user.find(f.name)) {
      for (const auto& e : user.entries())
        if (e.key == f.name) out.entries().push_back({e.key, e.key_loc, *mine});
      continue;
    }
    if (f.required) {
      std::string where = path.empty() ? "the recipe" : path;
      diags.error(given.loc(), "missing required key '" + f.name + "' in " + where + " (expected " +
                                   f.schema->expected() + ")");
    } else if (f.default_value && !f.default_value->is_null()) {
      out.entries().push_back({f.name, {"default", 0, 0}, f.schema->validate(*f.default_value, join_path(path, f.name), diags)});
    } else if (f.schema->type() == Type::Struct) {
      // Nested option groups are always present so that stages can read their defaults.
      Diagnostics ignored;
      Value nested = f.schema->validate(Value::map({"default", 0, 0}), join_path(path, f.name), ignored);
      if (ignored.empty()) out.entries().push_back({f.name, {"default", 0, 0}, nested});
    }
  }
  return out;
}

Value Schema::validate_one_key(const Value& v, const std::string& path, Diagnostics& diags) const {
  const std::vector<std::string> options = names();
  if (!v.is_map() || v.size() != 1) {
    std::string got = v.is_map() ? "a mapping with " + std::to_string(v.size()) + " keys" : describe_value(v);
    diags.error(v.loc(), path + ": expected a single " + what_ + " such as '- " +
                             (options.empty() ? std::string("name") : options.front()) + ": {...}', got " + got);
    return v;
  }
  const auto& entry = v.entries().front();
  SchemaPtr schema = lookup(entry.key);
  if (!schema) {
    std::string message = path + ": unknown " + what_ + " '" + entry.key + "'";
    std::string guess = strings::closest(entry.key, options);
    if (!guess.empty()) message += " — did you mean '" + guess + "'?";
    message += " (" + what_ + "s: " + strings::join(options, ", ") + ")";
    diags.error(entry.key_loc, message);
    return v;
  }
  Value out = Value::map(v.loc());
  out.entries().push_back({entry.key, entry.key_loc, schema->validate(entry.value, join_path(path, entry.key), diags)});
  return out;
}

Value Schema::validate_union(const Value& v, const std::string& path, Diagnostics& diags) const {
  std::vector<std::pair<const Schema*, Diagnostics>> tried;
  for (const auto& alt : alternatives_) {
    Diagnostics attempt;
    Value out = alt->validate(v, path, attempt);
    if (attempt.empty()) return out;
    tried.emplace_back(alt.get(), attempt);
  }
  // When exactly one alternative takes this kind of value (say, the only mapping), its errors
  // are the useful ones; otherwise say what was accepted.
  auto takes = [&](const Schema* s) {
    bool map_like = s->type_ == Type::Struct || s->type_ == Type::Map || s->type_ == Type::OneKey;
    if (v.is_map()) return map_like;
    if (v.is_list()) return s->type_ == Type::List;
    return !map_like && s->type_ != Type::List;
  };
  const Diagnostics* only = nullptr;
  int matching = 0;
  for (const auto& [schema, attempt] : tried)
    if (takes(schema)) {
      ++matching;
      only = &attempt;
    }
  if (matching == 1) {
    diags.append(*only);
  } else {
    diags.error(v.loc(), path + ": expected " + expected() + ", got " + describe_value(v));
  }
  return v;
}

// ---- help ---------------------------------------------------------------------------------------

std::string Schema::help(int indent) const {
  std::string out;
  const std::string pad(static_cast<size_t>(indent), ' ');
  for (const auto& f : fields_) {
    std::string line = pad + f.name + ": " + f.schema->expected();
    if (f.required)
      line += " (required)";
    else if (f.default_value && !f.default_value->is_null()) {
      std::string def = to_yaml(*f.default_value);
      while (!def.empty() && def.back() == '\n') def.pop_back();
      if (def.find('\n') == std::string::npos) line += " (default " + def + ")";
    }
    out += line + "\n";
    if (!f.doc.empty()) out += pad + "    " + f.doc + "\n";
    if (f.schema->type() == Type::Struct) out += f.schema->help(indent + 2);
    if (f.schema->type() == Type::List && f.schema->element()->type() == Type::Struct)
      out += f.schema->element()->help(indent + 2);
    // A union's mapping alternatives have keys of their own (prune's schedule: {iterative: {...}}).
    if (f.schema->type() == Type::Union)
      for (const SchemaPtr& alt : f.schema->alternatives())
        if (alt->type() == Type::Struct) out += alt->help(indent + 2);
  }
  return out;
}

}  // namespace secateur::recipe
