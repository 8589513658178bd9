#include "data/tokenizer.h"

#include <fstream>

#include "data/loaders.h"
#include "util/error.h"
#include "util/fs.h"

namespace secateur::data {

Encoding Tokenizer::encode_pair(const std::string& a, const std::string& b) const {
  Encoding out;
  out.ids = encode(a, true);
  out.type_ids.assign(out.ids.size(), 0);
  const auto second = encode(b, true);
  out.ids.insert(out.ids.end(), second.begin(), second.end());
  out.type_ids.insert(out.type_ids.end(), second.size(), 1);
  return out;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// tokenizer.json is JSON; a .model is a binary protobuf, which never starts with '{'.
bool looks_like_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char c = 0;
  while (in.get(c)) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return c == '{';
  }
  return false;
}

std::unique_ptr<Tokenizer> load_file(const std::string& path) {
  if (ends_with(path, ".json")) return load_hf_tokenizer(path);
  if (ends_with(path, ".model")) return load_spm_tokenizer(path);
  return looks_like_json(path) ? load_hf_tokenizer(path) : load_spm_tokenizer(path);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const std::string expected = "expected a tokenizer.json, a SentencePiece .model, or a directory holding one";
  // secateur::fs, not std::filesystem: see util/fs.h on the torch wheel's copies of it.
  if (!fs::exists(path)) throw UserError(path + ": no such file or directory (" + expected + ")");
  if (!fs::is_directory(path)) return load_file(path);
  // transformers prefers tokenizer.json when a checkpoint ships both it and tokenizer.model.
  if (fs::is_regular_file(fs::join(path, "tokenizer.json"))) return load_hf_tokenizer(fs::join(path, "tokenizer.json"));
  if (fs::is_regular_file(fs::join(path, "tokenizer.model"))) return load_spm_tokenizer(fs::join(path, "tokenizer.model"));
  std::vector<std::string> models;
  for (const auto& name : fs::list_directory(path)) {  // sorted
    if (ends_with(name, ".model") && fs::is_regular_file(fs::join(path, name))) models.push_back(name);
  }
  if (models.size() == 1) return load_spm_tokenizer(fs::join(path, models[0]));
  if (models.size() > 1) {
    std::string list;
    for (const auto& m : models) list += (list.empty() ? "" : ", ") + m;
    throw UserError(path + ": several SentencePiece models (" + list + "); name the file to use");
  }
  throw UserError(path + ": no tokenizer.json or SentencePiece .model file in this directory (" + expected + ")");
}

}  // namespace secateur::data
