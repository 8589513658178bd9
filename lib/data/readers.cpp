#include "data/readers.h"

#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fs.h"
#include "util/strings.h"

namespace secateur::data {

namespace {

const std::vector<std::string> kDataExtensions = {".txt", ".text", ".md", ".jsonl", ".json", ".tsv", ".csv"};

std::string lower_extension(const std::string& path) {
  const std::string name = fs::file_name(path);
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  std::string ext = name.substr(dot);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

std::string format_of(const std::string& path, const std::string& requested) {
  if (requested != "auto") return requested;
  const std::string ext = lower_extension(path);
  if (ext == ".jsonl" || ext == ".json") return "jsonl";
  if (ext == ".tsv") return "tsv";
  if (ext == ".csv") return "csv";
  return "text";
}

void collect(const std::string& dir, std::vector<std::string>& out) {
  for (const auto& name : fs::list_directory(dir)) {  // sorted
    if (name.empty() || name[0] == '.') continue;
    const std::string path = fs::join(dir, name);
    if (fs::is_directory(path)) {
      collect(path, out);
    } else if (fs::is_regular_file(path) &&
               std::find(kDataExtensions.begin(), kDataExtensions.end(), lower_extension(path)) != kDataExtensions.end()) {
      out.push_back(path);
    }
  }
}

std::string strip_cr(const std::string& line) {
  return !line.empty() && line.back() == '\r' ? line.substr(0, line.size() - 1) : line;
}

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// Raw labels stay text until every file is read: only then is the label → id map known.
struct Pending {
  Example example;
  std::string label;
};

struct Reader {
  const FileOptions& o;
  std::vector<Pending> rows;
  bool classification() const { return o.task == TaskKind::classification; }

  void add(std::string text, std::string pair, std::string label, const std::string& where) {
    Pending p;
    p.example.text = std::move(text);
    p.example.text_pair = std::move(pair);
    p.example.source = where;
    p.label = std::move(label);
    if (blank(p.example.text)) return;  // nothing to tokenize
    if (classification() && p.label.empty()) throw UserError(where + ": empty label in field '" + o.label_field + "'");
    rows.push_back(std::move(p));
  }

  void read_text(const std::string& path, const std::string& content) {
    if (classification())
      throw UserError(path + ": a plain text file has no labels; classification data needs a .tsv, .csv or .jsonl file "
                             "(or data.format: tsv|csv|jsonl) with columns '" + o.text_field + "' and '" + o.label_field + "'");
    int line_no = 0;
    for (const auto& line : strings::split(content, '\n')) {
      ++line_no;
      add(strip_cr(line), "", "", path + ":" + std::to_string(line_no));
    }
  }

  static std::string field_text(const nlohmann::json& v, const std::string& where, const std::string& name, bool label) {
    if (v.is_string()) return v.get<std::string>();
    if (label && v.is_number_integer()) return std::to_string(v.get<long long>());
    if (label && v.is_boolean()) return v.get<bool>() ? "1" : "0";
    throw UserError(where + ": field '" + name + "' is " + std::string(v.type_name()) + ", expected " +
                    (label ? "a string or an integer" : "a string"));
  }

  void read_jsonl(const std::string& path, const std::string& content) {
    int line_no = 0;
    for (const auto& raw : strings::split(content, '\n')) {
      ++line_no;
      const std::string line = strip_cr(raw);
      if (blank(line)) continue;
      const std::string where = path + ":" + std::to_string(line_no);
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) throw UserError(where + ": expected one JSON object per line");
      auto get = [&](const std::string& name, const char* key, bool label) {
        if (!j.contains(name)) {
          std::vector<std::string> keys;
          for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
          throw UserError(where + ": no field '" + name + "' (fields: " + strings::join(keys, ", ") + ") — set data." + key);
        }
        return field_text(j[name], where, name, label);
      };
      add(get(o.text_field, "text_field", false), o.text_pair_field.empty() ? "" : get(o.text_pair_field, "text_pair_field", false),
          classification() ? get(o.label_field, "label_field", true) : "", where);
    }
  }

  void read_delimited(const std::string& path, const std::string& content, char delimiter) {
    const auto records = parse_delimited(content, delimiter, delimiter == ',', path);
    if (records.empty()) return;
    const auto& header = records.front().fields;
    auto column = [&](const std::string& name, const char* key) -> size_t {
      for (size_t i = 0; i < header.size(); ++i)
        if (header[i] == name) return i;
      throw UserError(path + ": no column '" + name + "' (columns: " + strings::join(header, ", ") + ") — set data." + key);
    };
    const size_t text = column(o.text_field, "text_field");
    const size_t pair = o.text_pair_field.empty() ? SIZE_MAX : column(o.text_pair_field, "text_pair_field");
    const size_t label = classification() ? column(o.label_field, "label_field") : SIZE_MAX;
    for (size_t r = 1; r < records.size(); ++r) {
      const auto& rec = records[r];
      const std::string where = path + ":" + std::to_string(rec.line);
      if (rec.fields.size() == 1 && rec.fields[0].empty()) continue;  // blank line
      if (rec.fields.size() != header.size())
        throw UserError(where + ": " + std::to_string(rec.fields.size()) + " fields, but the header has " +
                        std::to_string(header.size()));
      add(rec.fields[text], pair == SIZE_MAX ? "" : rec.fields[pair], label == SIZE_MAX ? "" : rec.fields[label], where);
    }
  }
};

bool is_non_negative_integer(const std::string& s) {
  return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::vector<Record> parse_delimited(const std::string& text, char delimiter, bool quoting, const std::string& origin) {
  std::vector<Record> out;
  Record current{1, {}};
  std::string field;
  int line = 1;
  size_t i = 0;
  bool field_start = true;
  while (i < text.size()) {
    const char c = text[i];
    if (quoting && c == '"' && field_start) {
      // A quoted field runs to the next lone quote; "" inside is one quote; newlines are kept.
      const int opened = line;
      ++i;
      while (true) {
        if (i >= text.size()) throw UserError(origin + ":" + std::to_string(opened) + ": unterminated quoted field");
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field += text[i++];
      }
      if (i < text.size() && text[i] != delimiter && text[i] != '\n' && text[i] != '\r')
        throw UserError(origin + ":" + std::to_string(line) + ": text after a closing quote (write \"\" for a quote inside a quoted field)");
      field_start = false;
      continue;
    }
    if (c == delimiter) {
      current.fields.push_back(std::move(field));
      field.clear();
      field_start = true;
      ++i;
      continue;
    }
    if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      current.fields.push_back(std::move(field));
      field.clear();
      out.push_back(std::move(current));
      current = Record{++line, {}};
      field_start = true;
      ++i;
      continue;
    }
    field += c;
    field_start = false;
    ++i;
  }
  if (!field.empty() || !current.fields.empty()) {
    current.fields.push_back(std::move(field));
    out.push_back(std::move(current));
  }
  return out;
}

std::vector<std::string> expand_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& p : paths) {
    if (!fs::exists(p)) throw UserError("data.files: " + p + ": no such file or directory");
    if (fs::is_directory(p)) {
      const size_t before = files.size();
      collect(p, files);
      if (files.size() == before)
        throw UserError("data.files: " + p + ": no .txt, .text, .md, .jsonl, .json, .tsv or .csv files in this directory");
    } else {
      files.push_back(p);
    }
  }
  return files;
}

Dataset read_files(const FileOptions& o) {
  if (o.files.empty()) throw UserError("data.files is empty: name at least one file or directory");
  Reader reader{o, {}};
  const auto files = expand_paths(o.files);
  for (const auto& path : files) {
    const std::string format = format_of(path, o.format);
    std::string content = fs::read_file(path);
    if (content.compare(0, 3, "\xEF\xBB\xBF") == 0) content.erase(0, 3);  // a UTF-8 byte-order mark is not text
    if (format == "text") reader.read_text(path, content);
    else if (format == "jsonl") reader.read_jsonl(path, content);
    else if (format == "tsv") reader.read_delimited(path, content, '\t');
    else if (format == "csv") reader.read_delimited(path, content, ',');
    else throw UserError("data.format: unknown format '" + format + "' (expected auto, text, jsonl, tsv or csv)");
  }
  Dataset d;
  d.name = strings::join(o.files, ", ");
  d.task = o.task;
  d.has_pairs = !o.text_pair_field.empty();
  if (reader.rows.empty())
    throw UserError("data.files: " + d.name + " holds no examples (every line is empty or blank)");

  // Label names → ids.
  std::map<std::string, int32_t> ids;
  if (o.task == TaskKind::classification) {
    if (!o.labels.empty()) {
      d.label_names = o.labels;
    } else {
      std::set<std::string> seen;
      for (const auto& r : reader.rows) seen.insert(r.label);
      if (std::all_of(seen.begin(), seen.end(), is_non_negative_integer)) {
        int32_t max = 0;
        for (const auto& s : seen) max = std::max(max, static_cast<int32_t>(std::stol(s)));
        for (int32_t k = 0; k <= max; ++k) d.label_names.push_back(std::to_string(k));
        for (const auto& s : seen) ids[s] = static_cast<int32_t>(std::stol(s));  // "07" is class 7
      } else {
        d.label_names.assign(seen.begin(), seen.end());
      }
    }
    for (size_t k = 0; k < d.label_names.size(); ++k) ids.emplace(d.label_names[k], static_cast<int32_t>(k));
  }
  d.examples.reserve(reader.rows.size());
  for (auto& r : reader.rows) {
    if (o.task == TaskKind::classification) {
      auto it = ids.find(r.label);
      if (it == ids.end())
        throw UserError(r.example.source + ": label '" + r.label + "' is not one of data.labels (" +
                        strings::join(d.label_names, ", ") + ")");
      r.example.label = it->second;
    }
    d.examples.push_back(std::move(r.example));
  }
  return d;
}

}  // namespace secateur::data
