// A HF tokenizer.json, run the way HF `tokenizers` runs it: added tokens are cut out of the raw
// text first, the rest is normalized (and cut again on added tokens that match normalized text),
// pre-tokenized, and each piece goes through the model; a post-processor adds the special tokens.
#include <algorithm>
#include <climits>
#include <unordered_map>
#include <unordered_set>

#include "data/hf_components.h"
#include "data/loaders.h"
#include "data/unicode.h"
#include "util/error.h"
#include "util/fs.h"

namespace secateur::data {

namespace {

using hf::json;
using hf::Where;

struct AddedToken {
  int32_t id;
  std::string content;
  bool single_word, lstrip, rstrip, normalized, special;
  // What decode() shows: the content, or for a normalized token its normalized form (HF decodes
  // the form it matched, so a decoder can undo what the normalizer did).
  std::string shown;
};

// All added tokens at once, leftmost-longest, as HF's Aho-Corasick matcher finds them.
class Matcher {
 public:
  void add(std::string pattern, size_t token) {
    if (pattern.empty()) return;
    auto& bucket = by_first_[static_cast<unsigned char>(pattern[0])];
    bucket.push_back({std::move(pattern), token});
    std::stable_sort(bucket.begin(), bucket.end(),
                     [](const Entry& a, const Entry& b) { return a.pattern.size() > b.pattern.size(); });
  }
  // First match at or after `from`: {begin, end, token}.
  bool find(const std::string& text, size_t from, size_t& begin, size_t& end, size_t& token) const {
    for (size_t at = from; at < text.size(); ++at) {
      const auto it = by_first_.find(static_cast<unsigned char>(text[at]));
      if (it == by_first_.end()) continue;
      for (const Entry& e : it->second) {
        if (text.compare(at, e.pattern.size(), e.pattern) == 0) {
          begin = at, end = at + e.pattern.size(), token = e.token;
          return true;
        }
      }
    }
    return false;
  }

 private:
  struct Entry {
    std::string pattern;
    size_t token;
  };
  std::unordered_map<unsigned char, std::vector<Entry>> by_first_;
};

struct Chunk {
  std::string text;
  int32_t id;  // an added token's id, or -1 for text still to tokenize
  bool at_origin;
};

bool ends_with_word(const std::string& s, size_t end) {
  if (end == 0) return false;
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return unicode::is_word(unicode::next(s, i));
}

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(const std::string& path, const json& doc) {
    const Where where{path, ""};
    if (!doc.is_object()) where.fail("expected a JSON object (a HF tokenizer.json)");
    model_ = hf::make_model(hf::field(doc, "model", where), where.at("model"));
    normalizer_ = hf::make_normalizer(doc.value("normalizer", json()), where.at("normalizer"));
    pre_tokenizer_ = hf::make_pre_tokenizer(doc.value("pre_tokenizer", json()), where.at("pre_tokenizer"));
    post_processor_ = hf::make_post_processor(doc.value("post_processor", json()), where.at("post_processor"));
    decoder_ = hf::make_decoder(doc.value("decoder", json()), where.at("decoder"));
    read_added_tokens(doc.value("added_tokens", json::array()), where.at("added_tokens"));
    json hashed = doc;
    // Truncation and padding settings do not change encode()'s ids.
    hashed.erase("truncation"), hashed.erase("padding");
    fingerprint_ = "hf-" + sha256_hex("secateur tokenizer.json v1\n" + hashed.dump());
    find_special_tokens(path);
  }

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override {
    std::vector<hf::Sequence> seqs{{encode_one(text), {}}};
    return finish(seqs, add_special_tokens).ids;
  }

  Encoding encode_pair(const std::string& a, const std::string& b) const override {
    std::vector<hf::Sequence> seqs{{encode_one(a), {}}, {encode_one(b), {}}};
    return finish(seqs, true);
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      const std::string* token = nullptr;
      if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) {
        token = &added_[it->second].shown;
      } else {
        token = model_->id_to_token(id);
      }
      if (token == nullptr) continue;  // HF skips ids it has no token for
      if (skip_special_tokens && special_contents_.count(*token) > 0) continue;
      tokens.push_back(*token);
    }
    std::string out;
    if (decoder_) {
      decoder_->decode_chain(tokens);
      for (const auto& t : tokens) out += t;
    } else {
      for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    }
    return out;
  }

  int64_t vocab_size() const override {
    int64_t max_id = model_->max_id();
    for (const auto& t : added_) max_id = std::max<int64_t>(max_id, t.id);
    return max_id + 1;
  }

  std::optional<int32_t> token_to_id(const std::string& token) const override {
    if (const auto it = added_by_content_.find(token); it != added_by_content_.end()) return added_[it->second].id;
    return model_->token_to_id(token);
  }

  std::string fingerprint() const override { return fingerprint_; }

 private:
  void read_added_tokens(const json& list, const Where& where) {
    if (!list.is_array()) where.fail("expected a list of added tokens");
    for (size_t i = 0; i < list.size(); ++i) {
      const Where w = where.at(i);
      const int64_t id = hf::get_int(list[i], "id", -1, w);
      if (id < 0 || id > INT32_MAX) w.fail("missing or invalid 'id' (expected an integer in [0, 2^31))");
      const bool special = hf::get_bool(list[i], "special", false, w);
      added_.push_back({static_cast<int32_t>(id), hf::require_string(list[i], "content", w),
                        hf::get_bool(list[i], "single_word", false, w), hf::get_bool(list[i], "lstrip", false, w),
                        hf::get_bool(list[i], "rstrip", false, w), hf::get_bool(list[i], "normalized", !special, w),
                        special, {}});
    }
    for (size_t k = 0; k < added_.size(); ++k) {
      AddedToken& t = added_[k];
      t.shown = t.content;
      // Tokens that match normalized text are themselves normalized first, as HF does.
      if (t.normalized && normalizer_) normalizer_->normalize(t.shown);
      added_by_id_[t.id] = k;
      added_by_content_[t.content] = k;
      if (t.special) special_contents_.insert(t.shown);
      if (t.normalized) {
        normalized_matcher_.add(t.shown, k);
      } else {
        raw_matcher_.add(t.content, k);
      }
    }
    // token_to_id() knows the normalized spellings too, after the contents.
    for (size_t k = 0; k < added_.size(); ++k) added_by_content_.emplace(added_[k].shown, k);
  }

  // HF's AddedVocabulary::find_matches: cut `text` at added tokens, honouring single_word,
  // lstrip and rstrip; non-empty text between them becomes chunks to tokenize.
  void split_added(const std::string& text, bool at_origin, const Matcher& matcher, std::vector<Chunk>& out) const {
    size_t done = 0, from = 0, begin = 0, end = 0, k = 0;
    while (matcher.find(text, from, begin, end, k)) {
      from = end;
      const AddedToken& t = added_[k];
      if (t.single_word) {
        size_t after = end;
        const bool word_after = end < text.size() && unicode::is_word(unicode::next(text, after));
        if (ends_with_word(text, begin) || word_after) continue;
      }
      if (t.lstrip) {
        size_t ws = begin;
        while (ws > done) {
          size_t i = ws - 1;
          while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
          size_t j = i;
          if (!unicode::is_whitespace(unicode::next(text, j))) break;
          ws = i;
        }
        begin = ws;
      }
      if (t.rstrip) {
        for (size_t i = end; i < text.size();) {
          if (!unicode::is_whitespace(unicode::next(text, i))) break;
          end = i;
        }
      }
      if (done < begin) out.push_back({text.substr(done, begin - done), -1, at_origin && done == 0});
      out.push_back({"", t.id, at_origin && begin == 0});
      done = end;
    }
    if (done < text.size()) out.push_back({text.substr(done), -1, at_origin && done == 0});
  }

  std::vector<int32_t> encode_one(const std::string& input) const {
    const std::string text = unicode::sanitize(input);
    std::vector<Chunk> raw, chunks;
    split_added(text, true, raw_matcher_, raw);
    for (auto& c : raw) {
      if (c.id >= 0) {
        chunks.push_back(std::move(c));
        continue;
      }
      if (normalizer_) normalizer_->normalize(c.text);
      if (!c.text.empty()) split_added(c.text, c.at_origin, normalized_matcher_, chunks);
    }
    std::vector<int32_t> ids;
    std::vector<hf::Piece> pieces;
    for (auto& c : chunks) {
      if (c.id >= 0) {
        ids.push_back(c.id);
        continue;
      }
      pieces.assign(1, {std::move(c.text), c.at_origin});
      if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces);
      for (const auto& p : pieces) {
        if (!p.text.empty()) model_->tokenize(p.text, ids);
      }
    }
    return ids;
  }

  Encoding finish(std::vector<hf::Sequence>& seqs, bool add_special_tokens) const {
    for (size_t i = 0; i < seqs.size(); ++i) seqs[i].type_ids.assign(seqs[i].ids.size(), static_cast<int32_t>(i));
    if (post_processor_) post_processor_->process(seqs, add_special_tokens);
    Encoding out;
    for (const auto& s : seqs) {
      out.ids.insert(out.ids.end(), s.ids.begin(), s.ids.end());
      out.type_ids.insert(out.type_ids.end(), s.type_ids.begin(), s.type_ids.end());
    }
    return out;
  }

  std::optional<int32_t> first_of(std::initializer_list<const char*> spellings) const {
    for (const char* s : spellings) {
      if (auto id = token_to_id(s)) return id;
    }
    return std::nullopt;
  }

  void find_special_tokens(const std::string& path) {
    // Conventional spellings first. A BertProcessing/RobertaProcessing names cls and sep; a
    // template's tokens around $A are taken as bos/eos unless they are the cls/sep already.
    special.pad = first_of({"[PAD]", "<pad>", "<|pad|>"});
    special.bos = first_of({"<s>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>"});
    special.eos = first_of({"</s>", "<|end_of_text|>", "<|endoftext|>"});
    special.unk = model_->unk_token() ? token_to_id(*model_->unk_token()) : std::nullopt;
    if (!special.unk) special.unk = first_of({"[UNK]", "<unk>"});
    special.cls = first_of({"[CLS]"});
    special.sep = first_of({"[SEP]"});
    special.mask = first_of({"[MASK]", "<mask>"});
    if (post_processor_) {
      const auto affixes = post_processor_->single_affixes();
      if (affixes.cls_sep) {
        if (!affixes.before.empty()) special.cls = affixes.before.front();
        if (!affixes.after.empty()) special.sep = affixes.after.back();
      } else {
        if (!affixes.before.empty() && !special.bos && special.cls != affixes.before.front()) {
          special.bos = affixes.before.front();
        }
        if (!affixes.after.empty() && !special.eos && special.sep != affixes.after.back()) {
          special.eos = affixes.after.back();
        }
      }
    }
    // transformers' tokenizer_config.json, when it sits beside the file, has the final word.
    const std::string config = fs::join(fs::parent_path(path), "tokenizer_config.json");
    if (!fs::is_regular_file(config)) return;
    const Where where{config, ""};
    json cfg;
    try {
      cfg = json::parse(fs::read_file(config));
    } catch (const json::exception& e) {
      where.fail(std::string("not valid JSON: ") + e.what());
    }
    if (!cfg.is_object()) where.fail("expected a JSON object");
    const std::pair<const char*, std::optional<int32_t>*> keys[] = {
        {"pad_token", &special.pad}, {"bos_token", &special.bos}, {"eos_token", &special.eos},
        {"unk_token", &special.unk}, {"cls_token", &special.cls}, {"sep_token", &special.sep},
        {"mask_token", &special.mask}};
    for (const auto& [key, slot] : keys) {
      if (!cfg.contains(key)) continue;
      const json& v = cfg[key];
      if (v.is_null()) {
        *slot = std::nullopt;
      } else if (v.is_string()) {
        *slot = token_to_id(v.get<std::string>());
      } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        *slot = token_to_id(v["content"].get<std::string>());
      } else {
        where.at(key).fail("expected a token string or {\"content\": ...}, found " + v.dump());
      }
    }
  }

  std::unique_ptr<hf::Normalizer> normalizer_;
  std::unique_ptr<hf::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<hf::Model> model_;
  std::unique_ptr<hf::PostProcessor> post_processor_;
  std::unique_ptr<hf::Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  std::unordered_map<std::string, size_t> added_by_content_;
  std::unordered_set<std::string> special_contents_;
  Matcher raw_matcher_, normalized_matcher_;
  std::string fingerprint_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  const std::string text = fs::read_file(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    throw UserError(path + ": not valid JSON (expected a HF tokenizer.json): " + e.what());
  }
  return std::make_unique<HfTokenizer>(path, doc);
}

}  // namespace secateur::data
