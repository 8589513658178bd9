#include "data/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "data/loaders.h"
#include "util/error.h"

namespace secateur::data {

namespace stdfs = std::filesystem;

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
  const std::string ext = stdfs::path(path).extension().string();
  if (ext == ".json") return load_hf_tokenizer(path);
  if (ext == ".model") return load_spm_tokenizer(path);
  return looks_like_json(path) ? load_hf_tokenizer(path) : load_spm_tokenizer(path);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const std::string expected = "expected a tokenizer.json, a SentencePiece .model, or a directory holding one";
  std::error_code ec;
  const auto status = stdfs::status(path, ec);
  if (ec || !stdfs::exists(status)) throw UserError(path + ": no such file or directory (" + expected + ")");
  if (!stdfs::is_directory(status)) return load_file(path);
  // transformers prefers tokenizer.json when a checkpoint ships both it and tokenizer.model.
  const stdfs::path dir(path);
  if (stdfs::is_regular_file(dir / "tokenizer.json", ec)) return load_hf_tokenizer((dir / "tokenizer.json").string());
  if (stdfs::is_regular_file(dir / "tokenizer.model", ec)) return load_spm_tokenizer((dir / "tokenizer.model").string());
  std::vector<std::string> models;
  for (const auto& entry : stdfs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec) && entry.path().extension() == ".model") models.push_back(entry.path().string());
  }
  std::sort(models.begin(), models.end());
  if (models.size() == 1) return load_spm_tokenizer(models[0]);
  if (models.size() > 1) {
    std::string list;
    for (const auto& m : models) list += (list.empty() ? "" : ", ") + stdfs::path(m).filename().string();
    throw UserError(path + ": several SentencePiece models (" + list + "); name the file to use");
  }
  throw UserError(path + ": no tokenizer.json or SentencePiece .model file in this directory (" + expected + ")");
}

}  // namespace secateur::data
