#pragma once
// Regexes of tokenizer.json (GPT-2's and LLaMA-3's split patterns, Replace normalizers), on
// PCRE2 (Debian's libpcre2-dev) in UTF + UCP mode: \p{L}, \p{N}, (?i:...) and (?!\S) lookahead
// behave as in Oniguruma, the engine HF `tokenizers` uses.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace secateur::data {

class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message and offset; callers add the file context.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches as [begin, end) byte offsets, left to right, with the iteration
  // rule of Rust's onig::Regex::find_iter: an empty match right where the previous match ended
  // is skipped by advancing one code point. `text` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace secateur::data
