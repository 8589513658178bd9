// HF tokenizer.json loading (normalizers, pre-tokenizers, models, post-processors, decoders,
// added tokens) and running the loaded tokenizer. Input: the tokenizer.json text, optionally
// followed by a line "---text---" and a text to encode. Loading and encoding must succeed or
// throw UserError; a loaded tokenizer must encode and decode anything without crashing, and the ids of the text
// alone (no special tokens) must lie in [0, vocab_size()), the rows an embedding has.
//
// The loader takes a path (it also looks for a tokenizer_config.json beside the file), so each
// input is written to one file in a private temp directory; the parsing code is the real one
// (lib/data's torch-free tokenizer sources, compiled here without LibTorch).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/loaders.h"
#include "util/error.h"

namespace {

const std::string& tokenizer_path() {
  static const std::string path = [] {
    std::string dir = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    dir += "/secateur-fuzz-tokenizer-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) std::abort();
    static std::string made = dir;
    std::atexit([] {
      unlink((made + "/tokenizer.json").c_str());
      rmdir(made.c_str());
    });
    return dir + "/tokenizer.json";
  }();
  return path;
}

void write_file(const std::string& path, const std::string& content) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (std::fwrite(content.data(), 1, content.size(), f) != content.size()) std::abort();
  std::fclose(f);
}

// Texts every loaded tokenizer encodes: ASCII words, punctuation, digits, accents, CJK, emoji,
// whitespace runs, usual special-token spellings and an ill-formed UTF-8 byte.
const std::vector<std::string> kTexts = {
    "In the beginning God created the heaven and the earth.",
    "  Hello,  WORLD!! 1234 l'été — 日本語 😀\t\n",
    "<s>[CLS] a [SEP]</s><unk><|endoftext|>[MASK]",
    std::string("bad \xff\xfe utf-8 \xc3"),
};

void run_tokenizer(const secateur::data::Tokenizer& tokenizer, const std::vector<std::string>& texts) {
  const int64_t vocab = tokenizer.vocab_size();
  for (const auto& text : texts) {
    for (int32_t id : tokenizer.encode(text, /*add_special_tokens=*/false))
      if (id < 0 || id >= vocab) __builtin_trap();
    const auto with_special = tokenizer.encode(text, true);
    tokenizer.decode(with_special, true);
    tokenizer.decode(with_special, false);
    tokenizer.encode_pair(text, "second");
  }
  tokenizer.decode({-1, 0, 1, 2, 1 << 30}, false);  // ids outside the vocabulary are skipped
  tokenizer.fingerprint();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> texts = kTexts;
  const std::string marker = "\n---text---\n";
  if (size_t at = input.find(marker); at != std::string::npos) {
    texts.push_back(input.substr(at + marker.size()));
    input.resize(at);
  }
  write_file(tokenizer_path(), input);
  try {
    run_tokenizer(*secateur::data::load_hf_tokenizer(tokenizer_path()), texts);
  } catch (const secateur::UserError&) {
    // A diagnosed bad file. Some problems surface only when a text needs them, as in HF (an
    // unk_token missing from the vocab), so encoding may throw UserError too.
  }
  return 0;
}
