// tokenizer.json normalizers, each mirroring the HF `tokenizers` component of the same name.
#include "data/hf_components.h"
#include "data/unicode.h"

namespace secateur::data::hf {

namespace {

// Applies `f(c, out)` to every code point of `text`.
template <class F>
std::string map_chars(const std::string& text, F&& f) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) f(unicode::next(text, i), out);
  return out;
}

bool is_chinese_char(char32_t c) {
  // BERT's "CJK Unified Ideographs" ranges, exactly as HF lists them (0x2B920 start included).
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class BertNormalizer final : public Normalizer {
 public:
  BertNormalizer(bool clean_text, bool chinese, bool strip_accents, bool lowercase)
      : clean_text_(clean_text), chinese_(chinese), strip_accents_(strip_accents), lowercase_(lowercase) {}

  void normalize(std::string& text) const override {
    if (clean_text_) {
      text = map_chars(text, [](char32_t c, std::string& out) {
        const bool tab_or_newline = c == '\t' || c == '\n' || c == '\r';
        if (c == 0 || c == unicode::kReplacement || (!tab_or_newline && unicode::is_other(c))) return;
        unicode::append(out, tab_or_newline || unicode::is_whitespace(c) ? U' ' : c);
      });
    }
    if (chinese_) {
      text = map_chars(text, [](char32_t c, std::string& out) {
        if (is_chinese_char(c)) {
          out += ' ';
          unicode::append(out, c);
          out += ' ';
        } else {
          unicode::append(out, c);
        }
      });
    }
    if (strip_accents_) {
      text = map_chars(unicode::normalize(text, unicode::Form::NFD), [](char32_t c, std::string& out) {
        if (!unicode::is_mark_nonspacing(c)) unicode::append(out, c);
      });
    }
    if (lowercase_) text = unicode::lowercase(text);
  }

 private:
  bool clean_text_, chinese_, strip_accents_, lowercase_;
};

class FormNormalizer final : public Normalizer {
 public:
  explicit FormNormalizer(unicode::Form form) : form_(form) {}
  void normalize(std::string& text) const override { text = unicode::normalize(text, form_); }

 private:
  unicode::Form form_;
};

class Lowercase final : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = unicode::lowercase(text); }
};

class StripAccents final : public Normalizer {
 public:
  // HF removes combining marks without decomposing first: it is meant to follow an NFD/NFKD.
  void normalize(std::string& text) const override {
    text = map_chars(text, [](char32_t c, std::string& out) {
      if (!unicode::is_mark(c)) unicode::append(out, c);
    });
  }
};

class Replace final : public Normalizer {
 public:
  Replace(const json& j, const Where& where)
      : pattern_(field(j, "pattern", where), where.at("pattern")), content_(require_string(j, "content", where)) {}
  void normalize(std::string& text) const override { text = pattern_.replace_all(text, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t first_content = text.size(), content_end = 0;
    for (size_t i = 0; i < text.size();) {
      const size_t at = i;
      if (!unicode::is_whitespace(unicode::next(text, i))) {
        if (first_content == text.size()) first_content = at;
        content_end = i;
      }
    }
    const size_t begin = left_ ? first_content : 0;
    const size_t end = right_ ? content_end : text.size();
    text = begin < end ? text.substr(begin, end - begin) : std::string();
  }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer final : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    std::string out;
    for (unsigned char b : text) unicode::append(out, unicode::byte_to_char()[b]);
    text = std::move(out);
  }
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& text) const override {
    for (const auto& p : parts_) p->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "BertNormalizer") {
    const bool lowercase = get_bool(j, "lowercase", true, where);
    // strip_accents: null means "follow lowercase", as in BERT's original tokenizer.
    return std::make_unique<BertNormalizer>(get_bool(j, "clean_text", true, where),
                                            get_bool(j, "handle_chinese_chars", true, where),
                                            get_bool(j, "strip_accents", lowercase, where), lowercase);
  }
  if (type == "NFC") return std::make_unique<FormNormalizer>(unicode::Form::NFC);
  if (type == "NFD") return std::make_unique<FormNormalizer>(unicode::Form::NFD);
  if (type == "NFKC") return std::make_unique<FormNormalizer>(unicode::Form::NFKC);
  if (type == "NFKD") return std::make_unique<FormNormalizer>(unicode::Form::NFKD);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Replace") return std::make_unique<Replace>(j, where);
  if (type == "Prepend") return std::make_unique<Prepend>(require_string(j, "prepend", where));
  if (type == "Strip") {
    return std::make_unique<Strip>(get_bool(j, "strip_left", true, where), get_bool(j, "strip_right", true, where));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Sequence") {
    const json& list = field(j, "normalizers", where);
    if (!list.is_array()) where.at("normalizers").fail("expected a list of normalizers");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto n = make_normalizer(list[i], where.at("normalizers").at(i));
      if (n) parts.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Precompiled") {
    where.fail("unsupported normalizer type 'Precompiled' (a SentencePiece charsmap): load the model's "
               "SentencePiece .model file instead");
  }
  unsupported("normalizer", type, where,
              "BertNormalizer, NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Replace, Prepend, Strip, ByteLevel, "
              "Sequence");
}

}  // namespace secateur::data::hf
