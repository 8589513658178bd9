// The Unicode, regex and hashing helpers under the tokenizers, against reference values from the
// standards and from Rust's behaviour that HF `tokenizers` inherits.
#include <gtest/gtest.h>

#include "data/loaders.h"
#include "data/regex.h"
#include "data/unicode.h"

namespace u = secateur::data::unicode;
using secateur::data::Regex;

namespace {

std::u32string code_points(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) out += u::next(s, i);
  return out;
}

}  // namespace

TEST(Unicode, DecodesWellFormedUtf8) {
  EXPECT_EQ(code_points("a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80"), (std::u32string{U'a', 0xE9, 0x65E5, 0x1F600}));
  std::string out;
  for (char32_t c : {U'a', char32_t(0xE9), char32_t(0x65E5), char32_t(0x1F600)}) u::append(out, c);
  EXPECT_EQ(out, "a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80");
  EXPECT_EQ(u::length(out), 4u);
}

TEST(Unicode, ReplacesMaximalSubpartsLikeFromUtf8Lossy) {
  // Each case is what Rust's String::from_utf8_lossy gives (Unicode §3.9, U+FFFD per maximal subpart).
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(u::sanitize("a\xE6\x97"), "a" + r);               // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(u::sanitize("\xF0\x80\x80"), r + r + r);           // F0 80 is never valid: three
  EXPECT_EQ(u::sanitize("\xED\xA0\x80"), r + r + r);           // an encoded surrogate: three
  EXPECT_EQ(u::sanitize("\xC0\xAF"), r + r);                   // overlong: two
  EXPECT_EQ(u::sanitize("\xF4\x90\x80\x80"), r + r + r + r);   // above U+10FFFF
  EXPECT_EQ(u::sanitize("\xFF" "ok"), r + "ok");
  EXPECT_EQ(u::sanitize("\xE2\x82" "x\xE2\x82\xAC"), r + "x\xE2\x82\xAC");
  EXPECT_TRUE(u::is_valid("plain " + r + " text"));            // a real U+FFFD is valid text
  EXPECT_FALSE(u::is_valid("\x80"));
}

TEST(Unicode, CharacterClasses) {
  EXPECT_TRUE(u::is_whitespace(0x3000));
  EXPECT_TRUE(u::is_whitespace(0x85));
  EXPECT_FALSE(u::is_whitespace(0x200B));  // zero width space is Cf, not White_Space
  EXPECT_TRUE(u::is_numeric(0x2460));      // ① is No
  EXPECT_TRUE(u::is_punctuation(0x3002));  // 。
  EXPECT_FALSE(u::is_punctuation(U'$'));   // Sc: BERT adds ASCII symbols itself
  EXPECT_TRUE(u::is_mark_nonspacing(0x301));
  EXPECT_FALSE(u::is_other(0x378));  // unassigned: kept by BERT's clean_text, as in HF
  EXPECT_TRUE(u::is_other(0x200B));   // Cf
  EXPECT_TRUE(u::is_other(0x7));      // Cc
  EXPECT_TRUE(u::is_other(0xE000));   // Co
  EXPECT_TRUE(u::is_word(U'_'));
  EXPECT_TRUE(u::is_word(0x3042));
  EXPECT_FALSE(u::is_word(U'-'));
}

TEST(Unicode, NormalisationForms) {
  const std::string composed = "\xC3\xA9", decomposed = "e\xCC\x81";
  EXPECT_EQ(u::normalize(decomposed, u::Form::NFC), composed);
  EXPECT_EQ(u::normalize(composed, u::Form::NFD), decomposed);
  EXPECT_EQ(u::normalize("\xEF\xAC\x81", u::Form::NFKC), "fi");  // ﬁ ligature
  EXPECT_EQ(u::normalize("\xEF\xAC\x81", u::Form::NFC), "\xEF\xAC\x81");
  EXPECT_EQ(u::normalize("\xE2\x91\xA0", u::Form::NFKD), "1");  // ①
  EXPECT_EQ(u::normalize("", u::Form::NFC), "");
}

TEST(Unicode, LowercaseIsPerCharacterFullMapping) {
  EXPECT_EQ(u::lowercase("\xC4\xB0stanbul"), "i\xCC\x87stanbul");  // İ → i + U+0307
  // ΣΑΣ: char-wise lowercase gives σ for both sigmas (no final-sigma rule), as HF.
  EXPECT_EQ(u::lowercase("\xCE\xA3\xCE\x91\xCE\xA3"), "\xCF\x83\xCE\xB1\xCF\x83");
  EXPECT_EQ(u::lowercase("ABC xyz"), "abc xyz");
}

TEST(Unicode, ByteLevelAlphabet) {
  const auto& map = u::byte_to_char();
  EXPECT_EQ(map[' '], 0x120u);   // Ġ
  EXPECT_EQ(map['\n'], 0x10Au);  // Ċ
  EXPECT_EQ(map['A'], char32_t('A'));
  EXPECT_EQ(map[0xAD], 0x143u);  // the last shifted byte
  for (int b = 0; b < 256; ++b) EXPECT_EQ(u::char_to_byte(map[b]), b);
  EXPECT_EQ(u::char_to_byte(0x144), -1);
  EXPECT_EQ(u::char_to_byte(0x20), -1);  // a plain space is not in the alphabet
}

TEST(Regex, FindsMatchesLikeOnigFindIter) {
  Regex gpt2(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  const std::string text = "Hello  world's 42!";
  std::vector<std::string> parts;
  for (const auto& [b, e] : gpt2.find_all(text)) parts.push_back(text.substr(b, e - b));
  EXPECT_EQ(parts, (std::vector<std::string>{"Hello", " ", " world", "'s", " 42", "!"}));
  // An empty match right after a match is skipped, one elsewhere is kept.
  Regex empty("x*");
  const auto m = empty.find_all("axb");
  EXPECT_EQ(m, (std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 2}, {3, 3}}));
  // Case-insensitive group and Unicode properties, as the LLaMA-3 pattern uses them.
  Regex llama3(R"((?i:'s|'ll)|\p{N}{1,3})");
  const std::string t2 = "HE'LL 12345";
  std::vector<std::string> p2;
  for (const auto& [b, e] : llama3.find_all(t2)) p2.push_back(t2.substr(b, e - b));
  EXPECT_EQ(p2, (std::vector<std::string>{"'LL", "123", "45"}));
}

TEST(Regex, RejectsBadPatternsWithPcreMessage) {
  try {
    Regex bad("(unclosed");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("(unclosed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("offset"), std::string::npos) << e.what();
  }
}

TEST(Sha256, KnownVectors) {
  using secateur::data::sha256_hex;
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // 55, 56 and 64 bytes straddle the padding boundaries.
  EXPECT_EQ(sha256_hex(std::string(55, 'a')), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(sha256_hex(std::string(56, 'a')), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(sha256_hex(std::string(64, 'a')), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}
