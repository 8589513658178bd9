// Shared pieces of the tokenizer.json reader: error locations, typed field reads, and HF's
// split-with-behavior, which several pre-tokenizers use.
#include <algorithm>

#include "data/hf_components.h"
#include "data/regex.h"
#include "util/error.h"

namespace secateur::data::hf {

void Where::fail(const std::string& what) const {
  throw UserError(file + ": " + (path.empty() ? "" : path + ": ") + what);
}

namespace {

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a float";
    default: return "an integer";
  }
}

const json* find(const json& object, const std::string& key, const Where& where) {
  if (!object.is_object()) where.fail(std::string("expected an object, found ") + type_name(object));
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

const json& field(const json& object, const std::string& key, const Where& where) {
  const json* v = find(object, key, where);
  if (v == nullptr) where.fail("missing required field '" + key + "'");
  return *v;
}

bool get_bool(const json& object, const std::string& key, bool fallback, const Where& where) {
  const json* v = find(object, key, where);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) where.at(key).fail(std::string("expected true or false, found ") + type_name(*v));
  return v->get<bool>();
}

int64_t get_int(const json& object, const std::string& key, int64_t fallback, const Where& where) {
  const json* v = find(object, key, where);
  if (v == nullptr) return fallback;
  if (!v->is_number_integer()) where.at(key).fail(std::string("expected an integer, found ") + type_name(*v));
  return v->get<int64_t>();
}

std::optional<std::string> get_string(const json& object, const std::string& key, const Where& where) {
  const json* v = find(object, key, where);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) where.at(key).fail(std::string("expected a string, found ") + type_name(*v));
  return v->get<std::string>();
}

std::string require_string(const json& object, const std::string& key, const Where& where) {
  auto v = get_string(object, key, where);
  if (!v) where.fail("missing required field '" + key + "'");
  return *v;
}

std::string type_of(const json& object, const Where& where) {
  return require_string(object, "type", where);
}

void unsupported(const std::string& stage, const std::string& type, const Where& where,
                 const std::string& supported) {
  where.fail("unsupported " + stage + " type '" + type + "' (secateur supports: " + supported + ")");
}

Behavior parse_behavior(const json& object, const Where& where) {
  const std::string b = require_string(object, "behavior", where);
  // HF writes PascalCase; the Python constructors also accept snake_case, so take both.
  if (b == "Removed" || b == "removed") return Behavior::Removed;
  if (b == "Isolated" || b == "isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious" || b == "merged_with_previous") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext" || b == "merged_with_next") return Behavior::MergedWithNext;
  if (b == "Contiguous" || b == "contiguous") return Behavior::Contiguous;
  where.at("behavior").fail("unknown split behavior '" + b +
                            "' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

void split_piece(const Piece& piece, std::vector<Span> spans, Behavior behavior, std::vector<Piece>& out) {
  // Each case mirrors NormalizedString::split; `match` on the result means "drop this part".
  std::vector<Span> parts;
  switch (behavior) {
    case Behavior::Removed:
      parts = std::move(spans);
      break;
    case Behavior::Isolated:
      for (auto& s : spans) parts.push_back({s.begin, s.end, false});
      break;
    case Behavior::MergedWithPrevious: {
      bool previous_match = false;
      for (auto& s : spans) {
        if (s.match && !previous_match && !parts.empty()) {
          parts.back().end = s.end;
        } else {
          parts.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !parts.empty()) {
          parts.back().begin = it->begin;
        } else {
          parts.push_back({it->begin, it->end, false});
        }
        previous_match = it->match;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    }
    case Behavior::Contiguous: {
      bool previous_match = false;
      for (auto& s : spans) {
        if (s.match == previous_match && !parts.empty()) {
          parts.back().end = s.end;
        } else {
          parts.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    }
  }
  for (const auto& p : parts) {
    if (p.match || p.begin >= p.end) continue;
    out.push_back({piece.text.substr(p.begin, p.end - p.begin), piece.at_origin && p.begin == 0});
  }
}

std::vector<Span> literal_spans(const std::string& text, const std::string& pattern) {
  std::vector<Span> spans;
  if (pattern.empty()) return {{0, text.size(), false}};
  size_t prev = 0;
  for (size_t at = text.find(pattern); at != std::string::npos; at = text.find(pattern, at + pattern.size())) {
    if (at > prev) spans.push_back({prev, at, false});
    spans.push_back({at, at + pattern.size(), true});
    prev = at + pattern.size();
  }
  if (prev < text.size() || spans.empty()) spans.push_back({prev, text.size(), false});
  return spans;
}

Pattern::Pattern(const json& j, const Where& where) {
  if (!j.is_object() || j.size() != 1 || !(j.contains("String") || j.contains("Regex"))) {
    where.fail("expected a pattern {\"String\": ...} or {\"Regex\": ...}, found " + j.dump());
  }
  if (j.contains("String")) {
    literal_ = require_string(j, "String", where);
    return;
  }
  const std::string re = require_string(j, "Regex", where);
  try {
    regex_ = std::make_unique<Regex>(re);
  } catch (const std::invalid_argument& e) {
    where.at("Regex").fail(e.what());
  }
}

Pattern::~Pattern() = default;

std::vector<Span> Pattern::spans(const std::string& text) const {
  if (!regex_) return literal_spans(text, literal_);
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [b, e] : regex_->find_all(text)) {
    if (b > prev) spans.push_back({prev, b, false});
    spans.push_back({b, e, true});
    prev = e;
  }
  if (prev < text.size()) spans.push_back({prev, text.size(), false});
  return spans;
}

std::string Pattern::replace_all(const std::string& text, const std::string& content) const {
  std::string out;
  out.reserve(text.size());
  for (const auto& s : spans(text)) {
    if (s.match) {
      out += content;
    } else {
      out.append(text, s.begin, s.end - s.begin);
    }
  }
  return out;
}

}  // namespace secateur::data::hf
