#pragma once
// Unicode helpers for the tokenizers, on UTF-8 std::strings. Character data (general categories,
// case mapping, normalisation forms) comes from utf8proc (Debian's libutf8proc-dev): it is small,
// has no locale state, and its categories and normalisation follow current Unicode, as the Rust
// crates behind HF `tokenizers` do. Regexes live in regex.h (PCRE2).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace secateur::data::unicode {

constexpr char32_t kReplacement = 0xFFFD;

// Decodes the code point at s[i] and advances i past it. An ill-formed sequence yields U+FFFD and
// advances past its maximal subpart (Unicode §3.9, as Rust's String::from_utf8_lossy), so that a
// malformed input maps to the same text HF would see.
char32_t next(std::string_view s, size_t& i);
void append(std::string& out, char32_t cp);
size_t length(std::string_view s);  // number of code points
bool is_valid(std::string_view s);
// `s` with every ill-formed sequence replaced by U+FFFD (lossy, like from_utf8_lossy).
std::string sanitize(std::string_view s);

// Character classes, named after the Rust functions HF `tokenizers` calls.
bool is_whitespace(char32_t c);     // Unicode White_Space (char::is_whitespace)
bool is_numeric(char32_t c);        // Nd, Nl, No (char::is_numeric)
bool is_letter(char32_t c);         // L*
bool is_punctuation(char32_t c);    // P*
bool is_mark(char32_t c);           // M* (StripAccents)
bool is_mark_nonspacing(char32_t c);  // Mn (BertNormalizer's strip_accents)
// Cc, Cf, Co: `is_other` of the Rust unicode_categories crate that BertNormalizer's clean_text
// uses, which leaves surrogates and unassigned code points out (HF keeps U+0378, say).
bool is_other(char32_t c);
bool is_word(char32_t c);           // \w as HF's regex engine sees it: L, M, Nd, Pc

enum class Form { NFC, NFD, NFKC, NFKD };
std::string normalize(std::string_view s, Form form);
// Full lowercase mapping, one code point at a time (char::to_lowercase): U+0130 becomes "i̇",
// and there is no context-dependent final sigma, as in HF's Lowercase normalizer.
std::string lowercase(std::string_view s);

// GPT-2's byte-level alphabet: byte b is shown as the code point byte_to_char()[b], so that every
// byte string is printable text. char_to_byte() inverts it (-1 for code points outside the map).
const std::array<char32_t, 256>& byte_to_char();
int char_to_byte(char32_t c);

}  // namespace secateur::data::unicode
