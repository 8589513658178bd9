// tokenizer.json post-processors (special-token templates) and decoders, each mirroring the HF
// `tokenizers` component of the same name.
#include <cctype>
#include <map>

#include "data/hf_components.h"
#include "data/unicode.h"

namespace secateur::data::hf {

namespace {

// ---- post-processors ----------------------------------------------------------------------

std::pair<std::string, int32_t> token_and_id(const json& j, const std::string& key, const Where& where) {
  const json& v = field(j, key, where);
  if (!v.is_array() || v.size() != 2 || !v[0].is_string() || !v[1].is_number_integer()) {
    where.at(key).fail("expected [\"<token>\", <id>], found " + v.dump());
  }
  return {v[0].get<std::string>(), v[1].get<int32_t>()};
}

class BertProcessing final : public PostProcessor {
 public:
  BertProcessing(const json& j, const Where& where)
      : sep_(token_and_id(j, "sep", where).second), cls_(token_and_id(j, "cls", where).second) {}

  void process(std::vector<Sequence>& seqs, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    Sequence& a = seqs[0];
    a.ids.insert(a.ids.begin(), cls_), a.ids.push_back(sep_);
    a.type_ids.insert(a.type_ids.begin(), 0), a.type_ids.push_back(0);
    if (seqs.size() > 1) seqs[1].ids.push_back(sep_), seqs[1].type_ids.push_back(1);
  }
  Affixes single_affixes() const override { return {{cls_}, {sep_}, true}; }

 private:
  int32_t sep_, cls_;
};

class RobertaProcessing final : public PostProcessor {
 public:
  RobertaProcessing(const json& j, const Where& where)
      : sep_(token_and_id(j, "sep", where).second), cls_(token_and_id(j, "cls", where).second) {}

  void process(std::vector<Sequence>& seqs, bool add_special_tokens) const override {
    // RoBERTa has no segment embeddings to speak of: every type id is 0, specials or not.
    for (auto& s : seqs) s.type_ids.assign(s.ids.size(), 0);
    if (!add_special_tokens) return;
    seqs[0].ids.insert(seqs[0].ids.begin(), cls_), seqs[0].ids.push_back(sep_);
    if (seqs.size() > 1) seqs[1].ids.insert(seqs[1].ids.begin(), sep_), seqs[1].ids.push_back(sep_);
    for (auto& s : seqs) s.type_ids.assign(s.ids.size(), 0);
  }
  Affixes single_affixes() const override { return {{cls_}, {sep_}, true}; }

 private:
  int32_t sep_, cls_;
};

class NoOpProcessing final : public PostProcessor {
 public:
  // ByteLevel's post-processor only trims offsets, which secateur does not keep.
  void process(std::vector<Sequence>&, bool) const override {}
  Affixes single_affixes() const override { return {}; }
};

class TemplateProcessing final : public PostProcessor {
 public:
  TemplateProcessing(const json& j, const Where& where) {
    const json& specials = field(j, "special_tokens", where);
    if (!specials.is_object()) where.at("special_tokens").fail("expected an object of special tokens");
    for (auto it = specials.begin(); it != specials.end(); ++it) {
      const Where w = where.at("special_tokens").at(it.key());
      const json& ids = field(*it, "ids", w);
      if (!ids.is_array()) w.at("ids").fail("expected a list of ids");
      std::vector<int32_t>& out = specials_[it.key()];
      for (const auto& id : ids) {
        if (!id.is_number_integer()) w.at("ids").fail("expected integer ids, found " + id.dump());
        out.push_back(id.get<int32_t>());
      }
    }
    single_ = parse_template(field(j, "single", where), where.at("single"));
    pair_ = parse_template(field(j, "pair", where), where.at("pair"));
  }

  void process(std::vector<Sequence>& seqs, bool add_special_tokens) const override {
    Sequence out;
    for (const Item& item : seqs.size() > 1 ? pair_ : single_) {
      if (item.sequence >= 0) {
        if (item.sequence >= static_cast<int>(seqs.size())) continue;
        const auto& ids = seqs[item.sequence].ids;
        out.ids.insert(out.ids.end(), ids.begin(), ids.end());
        out.type_ids.insert(out.type_ids.end(), ids.size(), item.type_id);
      } else if (add_special_tokens) {
        const auto& ids = specials_.at(item.special);
        out.ids.insert(out.ids.end(), ids.begin(), ids.end());
        out.type_ids.insert(out.type_ids.end(), ids.size(), item.type_id);
      }
    }
    seqs.assign(1, std::move(out));
  }

  Affixes single_affixes() const override {
    Affixes affixes;
    bool after = false;
    for (const Item& item : single_) {
      if (item.sequence >= 0) {
        after = true;
        continue;
      }
      const auto& ids = specials_.at(item.special);
      auto& side = after ? affixes.after : affixes.before;
      side.insert(side.end(), ids.begin(), ids.end());
    }
    return affixes;
  }

 private:
  struct Item {
    int sequence = -1;  // 0 for $A, 1 for $B, -1 for a special token
    std::string special;
    int32_t type_id = 0;
  };

  std::vector<Item> parse_template(const json& list, const Where& where) const {
    if (!list.is_array()) where.fail("expected a list of template pieces");
    std::vector<Item> items;
    for (size_t i = 0; i < list.size(); ++i) {
      const json& piece = list[i];
      const Where w = where.at(i);
      Item item;
      if (piece.is_object() && piece.contains("Sequence")) {
        const json& s = piece["Sequence"];
        const std::string id = require_string(s, "id", w.at("Sequence"));
        if (id != "A" && id != "B") w.at("Sequence").fail("expected sequence id A or B, found \"" + id + "\"");
        item.sequence = id == "A" ? 0 : 1;
        item.type_id = static_cast<int32_t>(get_int(s, "type_id", 0, w.at("Sequence")));
      } else if (piece.is_object() && piece.contains("SpecialToken")) {
        const json& s = piece["SpecialToken"];
        item.special = require_string(s, "id", w.at("SpecialToken"));
        item.type_id = static_cast<int32_t>(get_int(s, "type_id", 0, w.at("SpecialToken")));
        if (!specials_.count(item.special)) {
          w.fail("special token \"" + item.special + "\" is missing from special_tokens");
        }
      } else {
        w.fail("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}, found " + piece.dump());
      }
      items.push_back(std::move(item));
    }
    return items;
  }

  std::map<std::string, std::vector<int32_t>> specials_;
  std::vector<Item> single_, pair_;
};

class SequenceProcessing final : public PostProcessor {
 public:
  explicit SequenceProcessing(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void process(std::vector<Sequence>& seqs, bool add_special_tokens) const override {
    for (const auto& p : parts_) p->process(seqs, add_special_tokens);
  }
  Affixes single_affixes() const override {
    Affixes affixes;
    for (const auto& p : parts_) {
      const Affixes a = p->single_affixes();
      affixes.before.insert(affixes.before.begin(), a.before.begin(), a.before.end());
      affixes.after.insert(affixes.after.end(), a.after.begin(), a.after.end());
      affixes.cls_sep = affixes.cls_sep || a.cls_sep;
    }
    return affixes;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

// ---- decoders -----------------------------------------------------------------------------

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      // A token with any character outside the byte alphabet (an added token, say) is taken as
      // its own UTF-8 bytes, whole.
      std::string mapped;
      bool all = true;
      for (size_t i = 0; i < t.size() && all;) {
        const int b = unicode::char_to_byte(unicode::next(t, i));
        if (b < 0) all = false;
        mapped += static_cast<char>(b);
      }
      bytes += all ? mapped : t;
    }
    tokens.assign(1, unicode::sanitize(bytes));
  }
};

class WordPieceDecoder final : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup) : prefix_(std::move(prefix)), cleanup_(cleanup) {}

  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i > 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) {
          t.erase(0, prefix_.size());
        } else {
          t.insert(0, " ");
        }
      }
      if (cleanup_) t = cleanup(t);
    }
  }

  // BERT's clean_up_tokenization, applied token by token as HF does.
  static std::string cleanup(std::string t) {
    static const std::pair<const char*, const char*> kRules[] = {
        {" .", "."},     {" ?", "?"},     {" !", "!"},           {" ,", ","},     {" ' ", "'"},    {" n't", "n't"},
        {" 'm", "'m"},   {" do not", " don't"}, {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kRules) {
      const std::string f = from, r = to;
      std::string out;
      size_t prev = 0;
      for (size_t at = t.find(f); at != std::string::npos; at = t.find(f, prev)) {
        out.append(t, prev, at - prev);
        out += r;
        prev = at + f.size();
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
    return t;
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, PrependScheme scheme) : replacement_(replacement), scheme_(scheme) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      std::string out;
      for (size_t i = 0; i < tokens[k].size();) {
        const char32_t c = unicode::next(tokens[k], i);
        if (c != replacement_) {
          unicode::append(out, c);
        } else if (k != 0 || scheme_ == PrependScheme::Never) {
          out += ' ';
        }
        // In the first token every replacement char goes when a prefix was prepended (HF's rule).
      }
      tokens[k] = std::move(out);
    }
  }

 private:
  char32_t replacement_;
  PrependScheme scheme_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(const json& j, const Where& where)
      : pattern_(field(j, "pattern", where), where.at("pattern")), content_(require_string(j, "content", where)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = pattern_.replace_all(t, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    const auto flush = [&] {
      if (pending.empty()) return;
      if (unicode::is_valid(pending)) {
        out.push_back(pending);
      } else {
        // HF gives one U+FFFD per byte of an invalid run, not per maximal subpart.
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4]))) {
        byte = std::stoi(t.substr(3, 2), nullptr, 16);
      }
      if (byte >= 0) {
        pending += static_cast<char>(byte);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, int64_t start, int64_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<char32_t> chars;
      for (size_t i = 0; i < t.size();) chars.push_back(unicode::next(t, i));
      size_t begin = 0, end = chars.size();
      for (int64_t n = 0; n < start_ && begin < end && chars[begin] == content_; ++n) ++begin;
      for (int64_t n = 0; n < stop_ && end > begin && chars[end - 1] == content_; ++n) --end;
      std::string out;
      for (size_t i = begin; i < end; ++i) unicode::append(out, chars[i]);
      t = std::move(out);
    }
  }

 private:
  char32_t content_;
  int64_t start_, stop_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

char32_t one_char(const std::string& s, const Where& where) {
  size_t i = 0;
  const char32_t c = s.empty() ? 0 : unicode::next(s, i);
  if (s.empty() || i != s.size()) where.fail("expected a single character, found \"" + s + "\"");
  return c;
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "BertProcessing") return std::make_unique<BertProcessing>(j, where);
  if (type == "RobertaProcessing") return std::make_unique<RobertaProcessing>(j, where);
  if (type == "ByteLevel") return std::make_unique<NoOpProcessing>();
  if (type == "TemplateProcessing") return std::make_unique<TemplateProcessing>(j, where);
  if (type == "Sequence") {
    const json& list = field(j, "processors", where);
    if (!list.is_array()) where.at("processors").fail("expected a list of post-processors");
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_post_processor(list[i], where.at("processors").at(i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceProcessing>(std::move(parts));
  }
  unsupported("post_processor", type, where, "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence");
}

std::unique_ptr<Decoder> make_decoder(const json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "WordPiece") {
    return std::make_unique<WordPieceDecoder>(get_string(j, "prefix", where).value_or("##"),
                                              get_bool(j, "cleanup", true, where));
  }
  if (type == "Metaspace") {
    const std::string r = get_string(j, "replacement", where).value_or("\xE2\x96\x81");
    return std::make_unique<MetaspaceDecoder>(one_char(r, where.at("replacement")), parse_prepend_scheme(j, where));
  }
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(j, where);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(one_char(require_string(j, "content", where), where.at("content")),
                                          get_int(j, "start", 0, where), get_int(j, "stop", 0, where));
  }
  if (type == "Sequence") {
    const json& list = field(j, "decoders", where);
    if (!list.is_array()) where.at("decoders").fail("expected a list of decoders");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto d = make_decoder(list[i], where.at("decoders").at(i));
      if (d) parts.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  unsupported("decoder", type, where, "ByteLevel, WordPiece, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence");
}

}  // namespace secateur::data::hf
