#pragma once
// Tokenizers for evaluation data: HF tokenizer.json files (BERT WordPiece, GPT-2/LLaMA-3/Qwen2
// byte-level BPE, LLaMA-2 style Metaspace BPE) read natively, and SentencePiece .model files
// through the `secateur-spm` companion process. Ids match HF `tokenizers` / sentencepiece exactly
// (tests/data checks them against ids those libraries produced). Torch-free.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace secateur::data {

// Ids of the model's special tokens, where it has them.
struct SpecialTokens {
  std::optional<int32_t> pad, bos, eos, unk, cls, sep, mask;
};

// A pair encoding for sequence classification: token ids and segment (token type) ids.
struct Encoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`. With add_special_tokens the model's template is applied (BERT:
  // [CLS] x [SEP]; LLaMA: <s> x; GPT-2: nothing), exactly as HF `tokenizers` does. Text that is
  // not valid UTF-8 is read with each ill-formed sequence as U+FFFD.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const = 0;

  // Both sequences with special tokens, for classification (BERT: [CLS] a [SEP] b [SEP], type
  // ids 0 for the first part and 1 for the second). The default joins encode(a) and encode(b)
  // with type ids 0 and 1, which is what SentencePiece models (LLaMA: <s> a <s> b) do.
  virtual Encoding encode_pair(const std::string& a, const std::string& b) const;

  // Text of `ids`; ids outside the vocabulary are skipped, as HF does.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const = 0;

  // One past the largest id the tokenizer can produce: the rows an embedding must have.
  virtual int64_t vocab_size() const = 0;

  // The id of a token spelled exactly `token` (added tokens included), if there is one.
  virtual std::optional<int32_t> token_to_id(const std::string& token) const = 0;

  // Stable hash of everything that decides the ids (vocab, merges, pipeline, and the version of
  // secateur's tokenizer code): keys the token cache.
  virtual std::string fingerprint() const = 0;

  SpecialTokens special;
};

// `path`: a tokenizer.json file, a SentencePiece .model file, or a directory holding one
// (tokenizer.json is preferred when a directory has both, as transformers does). For a
// tokenizer.json, special token ids come from a tokenizer_config.json beside it when present,
// else from the post-processor and the usual token spellings. Throws UserError naming the file
// and what was wrong for anything missing, malformed or unsupported.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Trains a SentencePiece model on the text files (one sentence per line) and returns the path of
// the written "<out_prefix>.model" (a "<out_prefix>.vocab" is written beside it). model_type:
// "unigram", "bpe", "char" or "word". `options` are further sentencepiece trainer flags without
// the dashes, e.g. {{"character_coverage", "1.0"}, {"byte_fallback", "true"}}.
std::string train_sentencepiece(const std::vector<std::string>& text_files, const std::string& out_prefix,
                                int vocab_size, const std::string& model_type,
                                const std::map<std::string, std::string>& options = {});

}  // namespace secateur::data
