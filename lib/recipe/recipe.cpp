#include "recipe/recipe.h"

#include <cstdio>

#include "util/fs.h"
#include "util/strings.h"

namespace secateur::recipe {

std::string fnv1a_hex(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// ---- includes -----------------------------------------------------------------------------------

namespace {

std::string find_fragment(const std::string& name, const std::string& from_dir, std::vector<std::string>& tried) {
  if (fs::is_absolute(name)) {
    tried.push_back(name);
    return fs::is_regular_file(name) ? name : "";
  }
  for (std::string dir = fs::absolute(from_dir); !dir.empty(); dir = fs::parent_path(dir)) {
    std::string candidate = fs::join(dir, name);
    tried.push_back(candidate);
    if (fs::is_regular_file(candidate)) return fs::normalize(candidate);
    if (dir == "/") break;
  }
  return "";
}

Value load_tree(const std::string& text, const std::string& file, const std::string& dir,
                std::vector<std::string>& stack, std::vector<std::string>* files, Diagnostics& diags);

Value load_file(const std::string& path, const SourceLoc& included_at, std::vector<std::string>& stack,
                std::vector<std::string>* files, Diagnostics& diags) {
  const std::string canonical = fs::absolute(path);
  for (const auto& s : stack) {
    if (s == canonical) {
      diags.error(included_at, "include cycle: " + path + " includes itself (through " + strings::join(stack, " → ") + ")");
      return Value::map();
    }
  }
  std::string text;
  try {
    text = fs::read_file(path);
  } catch (const UserError& e) {
    if (included_at.file.empty()) throw;
    diags.error(included_at, std::string("cannot include ") + e.what());
    return Value::map();
  }
  stack.push_back(canonical);
  Value v = load_tree(text, path, fs::parent_path(path), stack, files, diags);
  stack.pop_back();
  return v;
}

Value load_tree(const std::string& text, const std::string& file, const std::string& dir,
                std::vector<std::string>& stack, std::vector<std::string>* files, Diagnostics& diags) {
  Value own;
  try {
    own = parse_yaml(text, file);
  } catch (const RecipeErrors& e) {
    for (const auto& d : e.errors()) diags.error(d.loc, d.message);
    return Value::map();
  }
  if (!own.is_map()) {
    diags.error(own.loc(), "a recipe must be a mapping of keys (name, seed, model, data, stages...), got " +
                               std::string(own.is_list() ? "a list" : "a single value"));
    return Value::map();
  }
  const Value* include = own.find("include");
  Value merged = Value::map(own.loc());
  if (include) {
    std::vector<Value> names;
    if (include->is_scalar()) names.push_back(*include);
    else if (include->is_list()) names = include->items();
    else if (!include->is_null())
      diags.error(include->loc(), "include: expected a list of YAML files, got a mapping");
    for (const auto& n : names) {
      if (!n.is_scalar()) {
        diags.error(n.loc(), "include: expected a file name, got " + std::string(n.is_list() ? "a list" : "a mapping"));
        continue;
      }
      std::vector<std::string> tried;
      std::string found = find_fragment(n.text(), dir.empty() ? std::string(".") : dir, tried);
      if (found.empty()) {
        diags.error(n.loc(), "include: cannot find '" + n.text() + "' (looked in " +
                                 std::to_string(tried.size()) + " places, first " + (tried.empty() ? "" : tried.front()) + ")");
        continue;
      }
      merged = merge(merged, load_file(found, n.loc(), stack, files, diags));
    }
    own.erase("include");
  }
  if (files) files->push_back(file);
  return merge(merged, own);
}

}  // namespace

Value load_with_includes(const std::string& path, std::vector<std::string>* files) {
  Diagnostics diags;
  std::vector<std::string> stack;
  Value v = load_file(path, SourceLoc{}, stack, files, diags);
  diags.throw_if_any();
  return v;
}

// ---- overrides ----------------------------------------------------------------------------------

namespace {

bool is_index(const std::string& s) {
  return !s.empty() && s.size() < 9 && s.find_first_not_of("0123456789") == std::string::npos;
}

// Picks the alternative of a union that can hold a mapping (for descending into it).
const Schema* map_like(const Schema* s) {
  if (!s || s->type() != Schema::Type::Union) return s;
  for (const auto& a : s->alternatives()) {
    auto t = a->type();
    if (t == Schema::Type::Struct || t == Schema::Type::Map || t == Schema::Type::OneKey || t == Schema::Type::Any)
      return a.get();
  }
  return s->alternatives().empty() ? nullptr : s->alternatives().front().get();
}

void set_at(Value& node, const Schema* schema, const std::vector<std::string>& segs, size_t i, const Value& value,
            const std::string& shown, const SourceLoc& loc, Diagnostics& diags) {
  const std::string& seg = segs[i];
  const bool last = i + 1 == segs.size();
  const std::string here = strings::join(std::vector<std::string>(segs.begin(), segs.begin() + i), ".");
  auto fail = [&](const std::string& why) { diags.error(loc, why); };  // loc already reads "--set KEY=VALUE"

  schema = map_like(schema);
  if (!schema) return fail("'" + seg + "' is not an option");

  switch (schema->type()) {
    case Schema::Type::Struct: {
      const Field* f = schema->find_field(seg);
      if (!f) {
        std::vector<std::string> known;
        for (const auto& fl : schema->fields()) known.push_back(fl.name);
        std::string guess = strings::closest(seg, known);
        return fail("unknown key '" + seg + "' in " + (here.empty() ? std::string("the recipe") : here) +
                    (guess.empty() ? "" : " — did you mean '" + guess + "'?"));
      }
      if (!node.is_map()) node = Value::map(loc);
      if (last) return node.set(seg, value, loc);
      Value* child = node.find(seg);
      if (!child || child->is_null()) {
        node.set(seg, Value::map(loc), loc);
        child = node.find(seg);
      }
      return set_at(*child, f->schema.get(), segs, i + 1, value, shown, loc, diags);
    }
    case Schema::Type::Map:
    case Schema::Type::Any: {
      if (!node.is_map()) node = Value::map(loc);
      if (last) return node.set(seg, value, loc);
      Value* child = node.find(seg);
      if (!child) {
        node.set(seg, Value::map(loc), loc);
        child = node.find(seg);
      }
      const Schema* next = schema->type() == Schema::Type::Map ? schema->element().get() : schema;
      return set_at(*child, next, segs, i + 1, value, shown, loc, diags);
    }
    case Schema::Type::List: {
      if (!is_index(seg)) return fail("'" + here + "' is a list: expected an index, got '" + seg + "'");
      size_t index = std::stoul(seg);
      const size_t size = node.is_list() ? node.items().size() : 0;
      // One past the end appends a whole item (`--set stages.3={eval: {split: test}}` adds a stage).
      if (last && node.is_list() && index == size) {
        node.items().push_back(value);
        return;
      }
      if (!node.is_list() || index >= size)
        return fail(here + " has " + std::to_string(size) + " item(s); index " + seg + " is out of range" +
                    (index == size ? " (index " + seg + " appends only a whole item: " + here + "." + seg + "={...})" : ""));
      if (last) {
        node.items()[index] = value;
        return;
      }
      return set_at(node.items()[index], schema->element().get(), segs, i + 1, value, shown, loc, diags);
    }
    case Schema::Type::OneKey: {
      if (!node.is_map() || node.size() != 1) return fail(here + " is not a single " + seg);
      const std::string& kind = node.entries().front().key;
      if (kind != seg) return fail(here + " is a '" + kind + "' entry, not '" + seg + "'");
      SchemaPtr inner = schema->lookup(kind);
      if (last) {
        node.entries().front().value = value;
        return;
      }
      Value& child = node.entries().front().value;
      if (child.is_null()) child = Value::map(loc);
      return set_at(child, inner.get(), segs, i + 1, value, shown, loc, diags);
    }
    default:
      return fail("'" + here + "' is " + schema->expected() + "; it has no key '" + seg + "'");
  }
}

}  // namespace

void apply_overrides(Value& root, const std::vector<std::string>& overrides, const Schema& schema, Diagnostics& diags) {
  for (size_t n = 0; n < overrides.size(); ++n) {
    const std::string& arg = overrides[n];
    SourceLoc loc{"--set " + arg, 0, 0};
    size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) {
      diags.error(loc, "expected KEY=VALUE, e.g. --set stages.1.prune.sparsity=0.5");
      continue;
    }
    const std::string key = arg.substr(0, eq);
    Value value;
    try {
      value = parse_yaml(arg.substr(eq + 1), "--set " + arg);
    } catch (const RecipeErrors& e) {
      diags.error(loc, e.errors().front().message);
      continue;
    }
    // An empty map from an empty string means "null" (`--set x=`); relocate every node to the flag.
    if (arg.size() == eq + 1) value = Value::null(loc);
    std::vector<std::string> segs = strings::split(key, '.');
    bool empty_segment = false;
    for (const auto& s : segs) empty_segment |= s.empty();
    if (empty_segment) {
      diags.error(loc, "empty key segment in '" + key + "'");
      continue;
    }
    value.set_loc(loc);
    // Work on a copy so that a bad path leaves no half-made keys behind.
    Value updated = root;
    const size_t errors_before = diags.size();
    set_at(updated, &schema, segs, 0, value, arg, loc, diags);
    if (diags.size() == errors_before) root = std::move(updated);
  }
}

// ---- whole recipe -------------------------------------------------------------------------------

namespace {

Recipe finish(Value raw, const std::string& path, std::vector<std::string> files,
              const std::vector<std::string>& overrides, const Schema& schema, Diagnostics& diags) {
  // After a syntax error or a missing include the tree is partial: validating it would only add
  // confusing follow-on errors.
  diags.throw_if_any();
  if (!raw.has("name")) {
    std::string stem = fs::stem(path);
    raw.set("name", Value::scalar(stem.empty() ? "run" : stem, {"default (file name)", 0, 0}));
  }
  apply_overrides(raw, overrides, schema, diags);
  Recipe r;
  r.path = path;
  r.files = std::move(files);
  r.tree = schema.validate(raw, "", diags);
  diags.throw_if_any();
  r.hash = fnv1a_hex(to_yaml(r.tree));
  return r;
}

}  // namespace

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides, const Schema& schema) {
  Diagnostics diags;
  std::vector<std::string> files, stack;
  Value raw = load_file(path, SourceLoc{}, stack, &files, diags);
  return finish(std::move(raw), path, std::move(files), overrides, schema, diags);
}

Recipe load_recipe_text(const std::string& text, const std::string& file_name,
                        const std::vector<std::string>& overrides, const Schema& schema) {
  Diagnostics diags;
  std::vector<std::string> files, stack;
  Value raw = load_tree(text, file_name, fs::parent_path(file_name), stack, &files, diags);
  return finish(std::move(raw), file_name, std::move(files), overrides, schema, diags);
}

}  // namespace secateur::recipe
