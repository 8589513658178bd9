// tokenizer.json models: WordPiece, BPE and WordLevel, each mirroring HF `tokenizers`.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <queue>
#include <unordered_map>

#include "data/hf_components.h"
#include "data/unicode.h"

namespace secateur::data::hf {

namespace {

class VocabModel : public Model {
 public:
  VocabModel(const json& j, const Where& where) : where_(where) {
    const json& vocab = field(j, "vocab", where);
    if (!vocab.is_object()) where.at("vocab").fail("expected an object mapping tokens to ids");
    vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
          it->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        where.at("vocab").fail("token \"" + it.key() + "\" has id " + it->dump() + "; expected an integer in [0, 2^31)");
      }
      const auto id = static_cast<int32_t>(it->get<int64_t>());
      vocab_[it.key()] = id;
      reverse_.emplace(id, it.key());
      max_id_ = std::max(max_id_, id);
    }
    unk_ = get_string(j, "unk_token", where);
  }

  const std::string* id_to_token(int32_t id) const override {
    const auto it = reverse_.find(id);
    return it == reverse_.end() ? nullptr : &it->second;
  }
  std::optional<int32_t> token_to_id(const std::string& token) const override {
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> unk_token() const override { return unk_; }
  int32_t max_id() const override { return max_id_; }

 protected:
  // HF fails the encode (not the load) when the unknown token is needed but missing.
  int32_t unk_id(const std::string& word) const {
    if (unk_) {
      if (auto id = token_to_id(*unk_)) return *id;
      where_.at("unk_token").fail("unknown token \"" + *unk_ + "\" is not in the vocab (needed for \"" + word + "\")");
    }
    where_.fail("\"" + word + "\" is not in the vocab and the model has no unk_token");
  }

  Where where_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<int32_t, std::string> reverse_;
  std::optional<std::string> unk_;
  int32_t max_id_ = -1;
};

class WordPiece final : public VocabModel {
 public:
  WordPiece(const json& j, const Where& where)
      : VocabModel(j, where),
        prefix_(get_string(j, "continuing_subword_prefix", where).value_or("##")),
        max_chars_(get_int(j, "max_input_chars_per_word", 100, where)) {
    if (!unk_) unk_ = "[UNK]";
  }

  void tokenize(const std::string& word, std::vector<int32_t>& ids) const override {
    if (static_cast<int64_t>(unicode::length(word)) > max_chars_) {
      ids.push_back(unk_id(word));
      return;
    }
    // Greedy longest match first, shortening by one code point at a time; one miss makes the
    // whole word unknown.
    const size_t first = ids.size();
    size_t start = 0;
    while (start < word.size()) {
      size_t end = word.size();
      std::optional<int32_t> found;
      while (start < end) {
        std::string sub = word.substr(start, end - start);
        if (start > 0) sub.insert(0, prefix_);
        if (auto id = token_to_id(sub)) {
          found = id;
          break;
        }
        do --end;
        while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
      }
      if (!found) {
        ids.resize(first);
        ids.push_back(unk_id(word));
        return;
      }
      ids.push_back(*found);
      start = end;
    }
  }

 private:
  std::string prefix_;
  int64_t max_chars_;
};

class WordLevel final : public VocabModel {
 public:
  using VocabModel::VocabModel;
  void tokenize(const std::string& word, std::vector<int32_t>& ids) const override {
    auto id = token_to_id(word);
    ids.push_back(id ? *id : unk_id(word));
  }
};

class Bpe final : public VocabModel {
 public:
  Bpe(const json& j, const Where& where)
      : VocabModel(j, where),
        prefix_(get_string(j, "continuing_subword_prefix", where)),
        suffix_(get_string(j, "end_of_word_suffix", where)),
        fuse_unk_(get_bool(j, "fuse_unk", false, where)),
        byte_fallback_(get_bool(j, "byte_fallback", false, where)),
        ignore_merges_(get_bool(j, "ignore_merges", false, where)) {
    if (j.contains("dropout") && !j["dropout"].is_null() &&
        !(j["dropout"].is_number() && j["dropout"].get<double>() == 0.0)) {
      // Dropout samples a different split on each call: no fixed ids to reproduce.
      where.at("dropout").fail("BPE dropout " + j["dropout"].dump() + " is not supported (set it to null)");
    }
    const json& merges = field(j, "merges", where);
    if (!merges.is_array()) where.at("merges").fail("expected a list of merges");
    const size_t prefix_len = prefix_ ? prefix_->size() : 0;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const json& m = merges[rank];
      std::string a, b;
      if (m.is_string()) {
        // The older "a b" form: exactly one space.
        const std::string line = m.get<std::string>();
        const size_t sp = line.find(' ');
        if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) {
          where.at("merges").at(rank).fail("expected \"<left> <right>\", found \"" + line + "\"");
        }
        a = line.substr(0, sp), b = line.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>(), b = m[1].get<std::string>();
      } else {
        where.at("merges").at(rank).fail("expected a merge \"a b\" or [\"a\", \"b\"], found " + m.dump());
      }
      const std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : std::string());
      for (const std::string* t : std::initializer_list<const std::string*>{&a, &b, &merged}) {
        if (!token_to_id(*t)) where.at("merges").at(rank).fail("merge token \"" + *t + "\" is not in the vocab");
      }
      // A repeated pair keeps its last rank, as HF's map insertion does.
      merges_[key(*token_to_id(a), *token_to_id(b))] = {static_cast<int32_t>(rank), *token_to_id(merged)};
    }
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        byte_ids_[b] = token_to_id(name).value_or(-1);
      }
    }
  }

  void tokenize(const std::string& word, std::vector<int32_t>& ids) const override {
    if (word.empty()) return;
    if (ignore_merges_) {
      if (auto id = token_to_id(word)) {
        ids.push_back(*id);
        return;
      }
    }
    std::vector<Symbol> syms = initial_symbols(word);
    merge_all(syms);
    for (const auto& s : syms) {
      if (s.len > 0) ids.push_back(s.id);
    }
  }

 private:
  struct Symbol {
    int32_t id;
    int prev, next;
    size_t len;  // 0 once merged into its left neighbour
  };
  struct Merge {
    int32_t rank, new_id;
  };
  static uint64_t key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

  std::vector<Symbol> initial_symbols(const std::string& word) const {
    std::vector<Symbol> syms;
    const auto add = [&syms](int32_t id, size_t len) {
      const int n = static_cast<int>(syms.size());
      syms.push_back({id, n - 1, n + 1, len});
    };
    std::optional<std::pair<int32_t, size_t>> unk;  // a pending unknown, fused or not
    for (size_t i = 0; i < word.size();) {
      const size_t begin = i;
      unicode::next(word, i);
      std::string s = word.substr(begin, i - begin);
      const size_t byte_len = s.size();
      if (begin > 0 && prefix_) s.insert(0, *prefix_);
      if (i == word.size() && suffix_) s += *suffix_;
      if (auto id = token_to_id(s)) {
        if (unk) add(unk->first, unk->second), unk.reset();
        add(*id, byte_len);
        continue;
      }
      if (byte_fallback_ && std::all_of(s.begin(), s.end(), [this](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
        // HF leaves a pending unknown in place here and adds it after the next known piece.
        for (char c : s) add(byte_ids_[static_cast<unsigned char>(c)], 1);
        continue;
      }
      if (!unk_) continue;  // no unknown token: HF drops the character
      if (unk && fuse_unk_) {
        unk->second += byte_len;
      } else {
        if (unk) add(unk->first, unk->second);
        unk = std::make_pair(unk_id(s), byte_len);
      }
    }
    if (unk) add(unk->first, unk->second);
    if (!syms.empty()) syms.back().next = -1;
    return syms;
  }

  // HF's Word::merge_all: always the lowest-ranked pair first, leftmost on ties, with stale queue
  // entries skipped when the pair at that position no longer yields the same token.
  void merge_all(std::vector<Symbol>& syms) const {
    struct Entry {
      int32_t rank;
      int pos;
      int32_t new_id;
      bool operator<(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    const auto lookup = [this](int32_t a, int32_t b) -> const Merge* {
      const auto it = merges_.find(key(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    std::priority_queue<Entry> queue;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      if (const Merge* m = lookup(syms[i].id, syms[i + 1].id)) queue.push({m->rank, static_cast<int>(i), m->new_id});
    }
    while (!queue.empty()) {
      const Entry top = queue.top();
      queue.pop();
      Symbol& left = syms[top.pos];
      if (left.len == 0 || left.next < 0) continue;
      const int right_pos = left.next;
      const Symbol right = syms[right_pos];
      const Merge* m = lookup(left.id, right.id);
      if (m == nullptr || m->new_id != top.new_id) continue;
      left.id = top.new_id;
      left.len += right.len;
      left.next = right.next;
      syms[right_pos].len = 0;
      if (right.next >= 0) syms[right.next].prev = top.pos;
      if (left.prev >= 0) {
        if (const Merge* p = lookup(syms[left.prev].id, left.id)) queue.push({p->rank, left.prev, p->new_id});
      }
      if (left.next >= 0) {
        if (const Merge* n = lookup(left.id, syms[left.next].id)) queue.push({n->rank, top.pos, n->new_id});
      }
    }
  }

  std::optional<std::string> prefix_, suffix_;
  bool fuse_unk_, byte_fallback_, ignore_merges_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256] = {};
};

}  // namespace

std::unique_ptr<Model> make_model(const json& j, const Where& where) {
  if (!j.is_object()) where.fail("expected the model object");
  const std::string type = type_of(j, where);
  if (type == "WordPiece") return std::make_unique<WordPiece>(j, where);
  if (type == "BPE") return std::make_unique<Bpe>(j, where);
  if (type == "WordLevel") return std::make_unique<WordLevel>(j, where);
  if (type == "Unigram") {
    where.fail("unsupported model type 'Unigram' (secateur supports: BPE, WordPiece, WordLevel); a SentencePiece "
               "unigram model can be loaded from its .model file instead");
  }
  unsupported("model", type, where, "BPE, WordPiece, WordLevel");
}

}  // namespace secateur::data::hf
