#pragma once
// Internal: the pipeline stages of a HF tokenizer.json (normalizer → pre-tokenizer → model →
// post-processor, and the decoder), each built from its JSON object. Only ids matter to
// secateur, so the stages work on plain UTF-8 strings and skip HF's offset bookkeeping.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace secateur::data {
class Regex;
}

namespace secateur::data::hf {

using json = nlohmann::json;

// Where a value sits in tokenizer.json, for error messages ("x.json: pre_tokenizer.pretokenizers[1]:
// ..."). Every malformed or unsupported value becomes a UserError through fail().
struct Where {
  std::string file;
  std::string path;

  Where at(const std::string& key) const { return {file, path.empty() ? key : path + "." + key}; }
  Where at(size_t index) const { return {file, path + "[" + std::to_string(index) + "]"}; }
  [[noreturn]] void fail(const std::string& what) const;
};

// Typed reads of an object's fields. A missing field takes the default; a field of the wrong
// type is an error (a null counts as missing, as serde's Option does).
const json& field(const json& object, const std::string& key, const Where& where);  // required
bool get_bool(const json& object, const std::string& key, bool fallback, const Where& where);
int64_t get_int(const json& object, const std::string& key, int64_t fallback, const Where& where);
std::optional<std::string> get_string(const json& object, const std::string& key, const Where& where);
std::string require_string(const json& object, const std::string& key, const Where& where);
// The component's "type" tag, checked to be a string.
std::string type_of(const json& object, const Where& where);
[[noreturn]] void unsupported(const std::string& stage, const std::string& type, const Where& where,
                              const std::string& supported);

// A stretch of input on its way to the model. `at_origin`: it starts at offset 0 of the original
// text (Metaspace's prepend_scheme "first" prepends only there).
struct Piece {
  std::string text;
  bool at_origin = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits and rewrites `pieces`; empty pieces are dropped by the caller.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual void tokenize(const std::string& word, std::vector<int32_t>& ids) const = 0;
  virtual const std::string* id_to_token(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(const std::string& token) const = 0;
  virtual std::optional<std::string> unk_token() const = 0;
  virtual int32_t max_id() const = 0;  // -1 for an empty vocab
};

// One encoded sequence; post-processors add special tokens and set type ids.
struct Sequence {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // `seqs` holds one sequence (A) or two (A, B); the result is concatenated by the caller.
  virtual void process(std::vector<Sequence>& seqs, bool add_special_tokens) const = 0;
  // Special ids put before and after a single sequence, to tell the model's special tokens.
  // `cls_sep`: the processor names them cls and sep (BertProcessing, RobertaProcessing).
  struct Affixes {
    std::vector<int32_t> before, after;
    bool cls_sep = false;
  };
  virtual Affixes single_affixes() const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Factories; a JSON null gives nullptr (the stage is skipped).
std::unique_ptr<Normalizer> make_normalizer(const json& j, const Where& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Where& where);
std::unique_ptr<Model> make_model(const json& j, const Where& where);
std::unique_ptr<PostProcessor> make_post_processor(const json& j, const Where& where);
std::unique_ptr<Decoder> make_decoder(const json& j, const Where& where);

// HF's SplitDelimiterBehavior, shared by the Split-like pre-tokenizers.
enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
Behavior parse_behavior(const json& object, const Where& where);
// [begin, end) byte ranges of `text` flagged as matches or not, covering all of it in order.
struct Span {
  size_t begin, end;
  bool match;
};
// Applies `behavior` to `spans` (HF's NormalizedString::split) and appends the non-empty parts
// of `piece` to `out`.
void split_piece(const Piece& piece, std::vector<Span> spans, Behavior behavior, std::vector<Piece>& out);
// Spans of a literal string pattern; an empty pattern matches nothing (as in HF).
std::vector<Span> literal_spans(const std::string& text, const std::string& pattern);

// Metaspace's prepend_scheme (pre-tokenizer and decoder), or the older add_prefix_space.
enum class PrependScheme { Always, First, Never };
PrependScheme parse_prepend_scheme(const json& object, const Where& where);

// A {"String": "..."} or {"Regex": "..."} pattern (Split, Replace).
class Pattern {
 public:
  Pattern(const json& j, const Where& where);
  ~Pattern();
  std::vector<Span> spans(const std::string& text) const;
  // Every match replaced by `content` (taken literally, as HF does).
  std::string replace_all(const std::string& text, const std::string& content) const;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
};

}  // namespace secateur::data::hf
