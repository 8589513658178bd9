// tokenizer.json pre-tokenizers, each mirroring the HF `tokenizers` component of the same name.
#include "data/hf_components.h"
#include "data/regex.h"
#include "data/unicode.h"

namespace secateur::data::hf {

namespace {

// GPT-2's split pattern, which ByteLevel(use_regex=true) applies.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// HF's Pattern for a char predicate: every matching code point is a match of its own.
template <class Pred>
std::vector<Span> char_spans(const std::string& text, Pred&& pred) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t last = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t at = i;
    if (pred(unicode::next(text, i))) {
      if (last < at) spans.push_back({last, at, false});
      spans.push_back({at, i, true});
      last = i;
    }
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
  return spans;
}

template <class Spans>
void split_all(std::vector<Piece>& pieces, Behavior behavior, Spans&& spans_of) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (const auto& p : pieces) split_piece(p, spans_of(p.text), behavior, out);
  pieces = std::move(out);
}

bool is_bert_punctuation(char32_t c) {
  // Rust's is_ascii_punctuation takes every ASCII symbol ($, +, <, =, >, ^, `, |, ~ too).
  return (c < 0x80 && ((c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
                       (c >= '{' && c <= '~'))) ||
         unicode::is_punctuation(c);
}

class BertPreTokenizer final : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, Behavior::Removed, [](const std::string& t) { return char_spans(t, unicode::is_whitespace); });
    split_all(pieces, Behavior::Isolated, [](const std::string& t) { return char_spans(t, is_bert_punctuation); });
  }
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern);
  }

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
      if (!regex_) {
        out.push_back(std::move(p));
        continue;
      }
      std::vector<Span> spans;
      size_t prev = 0;
      for (const auto& [b, e] : regex_->find_all(p.text)) {
        if (b > prev) spans.push_back({prev, b, false});
        spans.push_back({b, e, true});
        prev = e;
      }
      if (prev < p.text.size() || spans.empty()) spans.push_back({prev, p.text.size(), false});
      split_piece(p, std::move(spans), Behavior::Isolated, out);
    }
    // Every byte becomes its printable stand-in, as the byte-level vocab spells tokens.
    for (auto& p : out) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char b : p.text) unicode::append(mapped, unicode::byte_to_char()[b]);
      p.text = std::move(mapped);
    }
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Split final : public PreTokenizer {
 public:
  Split(const json& j, const Where& where)
      : pattern_(field(j, "pattern", where), where.at("pattern")),
        behavior_(parse_behavior(j, where)),
        invert_(get_bool(j, "invert", false, where)) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, behavior_, [this](const std::string& t) {
      auto spans = pattern_.spans(t);
      if (invert_) {
        for (auto& s : spans) s.match = !s.match;
      }
      return spans;
    });
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, individual_ ? Behavior::Isolated : Behavior::Contiguous,
              [](const std::string& t) { return char_spans(t, unicode::is_numeric); });
  }

 private:
  bool individual_;
};

class Whitespace final : public PreTokenizer {
 public:
  // HF splits on /\w+|[^\w\s]+/ and keeps the matches: runs of word characters and runs of
  // other non-space characters. Classifying code points directly gives the same runs.
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (const auto& p : pieces) {
      int run_kind = 0;  // 0 none, 1 word, 2 other
      size_t run_begin = 0;
      for (size_t i = 0; i < p.text.size();) {
        const size_t at = i;
        const char32_t c = unicode::next(p.text, i);
        const int kind = unicode::is_word(c) ? 1 : unicode::is_whitespace(c) ? 0 : 2;
        if (kind != run_kind) {
          if (run_kind != 0) out.push_back({p.text.substr(run_begin, at - run_begin), p.at_origin && run_begin == 0});
          run_kind = kind;
          run_begin = at;
        }
      }
      if (run_kind != 0) out.push_back({p.text.substr(run_begin), p.at_origin && run_begin == 0});
    }
    pieces = std::move(out);
  }
};

class CharSplit final : public PreTokenizer {
 public:
  // WhitespaceSplit (delimiter 0: any whitespace), CharDelimiterSplit and Punctuation.
  CharSplit(char32_t delimiter, Behavior behavior, bool punctuation)
      : delimiter_(delimiter), behavior_(behavior), punctuation_(punctuation) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, behavior_, [this](const std::string& t) {
      return char_spans(t, [this](char32_t c) {
        if (punctuation_) return is_bert_punctuation(c);
        return delimiter_ == 0 ? unicode::is_whitespace(c) : c == delimiter_;
      });
    });
  }

 private:
  char32_t delimiter_;
  Behavior behavior_;
  bool punctuation_;
};

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto& p : pieces) {
      std::string text;
      for (char ch : p.text) {
        if (ch == ' ') {
          text += replacement_;
        } else {
          text += ch;
        }
      }
      const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && p.at_origin))) {
        text.insert(0, replacement_);
      }
      Piece piece{std::move(text), p.at_origin};
      if (split_) {
        split_piece(piece, literal_spans(piece.text, replacement_), Behavior::MergedWithNext, out);
      } else {
        out.push_back(std::move(piece));
      }
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

char32_t single_char(const std::string& s, const Where& where) {
  size_t i = 0;
  const char32_t c = s.empty() ? 0 : unicode::next(s, i);
  if (s.empty() || i != s.size()) where.fail("expected a single character, found \"" + s + "\"");
  return c;
}

}  // namespace

PrependScheme parse_prepend_scheme(const json& j, const Where& where) {
  if (auto scheme = get_string(j, "prepend_scheme", where)) {
    if (*scheme == "always") return PrependScheme::Always;
    if (*scheme == "first") return PrependScheme::First;
    if (*scheme == "never") return PrependScheme::Never;
    where.at("prepend_scheme").fail("unknown prepend_scheme '" + *scheme + "' (expected always, first or never)");
  }
  // Files written before prepend_scheme existed say add_prefix_space.
  return get_bool(j, "add_prefix_space", true, where) ? PrependScheme::Always : PrependScheme::Never;
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(get_bool(j, "add_prefix_space", true, where),
                                       get_bool(j, "use_regex", true, where));
  }
  if (type == "Split") return std::make_unique<Split>(j, where);
  if (type == "Digits") return std::make_unique<Digits>(get_bool(j, "individual_digits", false, where));
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<CharSplit>(0, Behavior::Removed, false);
  if (type == "CharDelimiterSplit") {
    return std::make_unique<CharSplit>(single_char(require_string(j, "delimiter", where), where.at("delimiter")),
                                       Behavior::Removed, false);
  }
  if (type == "Punctuation") {
    const Behavior b = j.contains("behavior") ? parse_behavior(j, where) : Behavior::Isolated;
    return std::make_unique<CharSplit>(0, b, true);
  }
  if (type == "Metaspace") {
    std::string replacement = get_string(j, "replacement", where).value_or("\xE2\x96\x81");
    single_char(replacement, where.at("replacement"));
    return std::make_unique<Metaspace>(std::move(replacement), parse_prepend_scheme(j, where),
                                       get_bool(j, "split", true, where));
  }
  if (type == "Sequence") {
    const json& list = field(j, "pretokenizers", where);
    if (!list.is_array()) where.at("pretokenizers").fail("expected a list of pre-tokenizers");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_pre_tokenizer(list[i], where.at("pretokenizers").at(i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  unsupported("pre_tokenizer", type, where,
              "BertPreTokenizer, ByteLevel, Split, Digits, Whitespace, WhitespaceSplit, CharDelimiterSplit, "
              "Punctuation, Metaspace, Sequence");
}

}  // namespace secateur::data::hf
