// secateur's tokenizer.json implementation against the ids, pair encodings and decodes that HF
// `tokenizers` itself produced for the same files (tools/make_tokenizer_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "util/fs.h"

using nlohmann::json;
using secateur::data::load_tokenizer;
using secateur::data::Tokenizer;

namespace {

const std::string kDir = std::string(SECATEUR_FIXTURES) + "/tokenizers/";

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing fixture " + path);
  return json::parse(in);
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// Short printable form of a fixture text for failure messages.
std::string shown(const std::string& text) { return json(text).dump(); }

class HfFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    tok_ = load_tokenizer(kDir + GetParam() + "/tokenizer.json");
    expected_ = read_json(kDir + GetParam() + "/expected.json");
  }
  std::unique_ptr<Tokenizer> tok_;
  json expected_;
};

TEST_P(HfFixture, EncodesEveryTextAsHfDoes) {
  ASSERT_GE(expected_["cases"].size(), 20u);
  for (const auto& c : expected_["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(tok_->encode(text, true), ids_of(c["ids"])) << "with special tokens: " << shown(text);
    EXPECT_EQ(tok_->encode(text, false), ids_of(c["ids_no_special"]))
        << "without special tokens: " << shown(text) << "\nHF tokens: " << c["tokens_no_special"].dump();
  }
}

TEST_P(HfFixture, DecodesAsHfDoes) {
  for (const auto& c : expected_["cases"]) {
    const auto ids = ids_of(c["ids"]);
    EXPECT_EQ(tok_->decode(ids, true), c["decode"].get<std::string>()) << shown(c["text"]);
    EXPECT_EQ(tok_->decode(ids, false), c["decode_keep_special"].get<std::string>()) << shown(c["text"]);
    auto prefix = ids_of(c["ids_no_special"]);
    if (!prefix.empty()) prefix.pop_back();
    EXPECT_EQ(tok_->decode(prefix, true), c["decode_prefix"].get<std::string>()) << "prefix of " << shown(c["text"]);
  }
  for (const auto& d : expected_["decodes"]) {
    if (d["text"].is_null()) continue;  // HF refused these ids
    EXPECT_EQ(tok_->decode(ids_of(d["ids"]), d["skip_special_tokens"].get<bool>()), d["text"].get<std::string>())
        << "ids " << d["ids"].dump() << " skip_special_tokens " << d["skip_special_tokens"];
  }
}

TEST_P(HfFixture, RoundTripsWhereHfDoes) {
  // decode(encode(x)) == x exactly where HF's does; fixtures are chosen so that some texts do.
  int round_trips = 0;
  for (const auto& c : expected_["cases"]) {
    const std::string text = c["text"];
    if (c["decode"].get<std::string>() != text) continue;
    ++round_trips;
    EXPECT_EQ(tok_->decode(tok_->encode(text, true), true), text) << shown(text);
  }
  EXPECT_GT(round_trips, 0);
}

TEST_P(HfFixture, EncodesPairsAsHfDoes) {
  for (const auto& p : expected_["pairs"]) {
    const auto enc = tok_->encode_pair(p["a"], p["b"]);
    EXPECT_EQ(enc.ids, ids_of(p["ids"])) << shown(p["a"]) << " + " << shown(p["b"]);
    EXPECT_EQ(enc.type_ids, ids_of(p["type_ids"])) << shown(p["a"]) << " + " << shown(p["b"]);
  }
}

TEST_P(HfFixture, VocabSizeMatches) { EXPECT_EQ(tok_->vocab_size(), expected_["vocab_size"].get<int64_t>()); }

// Every fixture directory tools/make_tokenizer_fixtures.py wrote (tokenizer.json + expected.json)
// is tested, so a new one (e.g. roberta_bytelevel, made on a machine with `tokenizers`) needs no
// edit here.
std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& name : secateur::fs::list_directory(kDir))
    if (secateur::fs::is_regular_file(kDir + name + "/tokenizer.json") && secateur::fs::is_regular_file(kDir + name + "/expected.json"))
      names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, HfFixture, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });

// Discovery must not silently shrink the suite: the fixtures committed so far are all found.
TEST(HfFixtures, DiscoveryFindsEveryCommittedFixture) {
  const auto found = fixture_names();
  for (const char* name : {"bert_wordpiece", "wordpiece_misc", "wordlevel_whitespace", "gpt2_bytelevel", "llama3_bpe",
                           "qwen2_bpe", "llama2_metaspace", "llama2_legacy", "metaspace_t5"})
    EXPECT_NE(std::find(found.begin(), found.end(), name), found.end()) << name << " not found in " << kDir;
}

TEST(HfFixtures, ByteLevelRoundTripsEveryText) {
  // Byte-level BPE loses nothing: every fixture text, control characters and all, comes back
  // (special tokens kept, since <|endoftext|> in a text is one).
  const auto tok = load_tokenizer(kDir + "gpt2_bytelevel/tokenizer.json");
  const json expected = read_json(kDir + "gpt2_bytelevel/expected.json");
  ASSERT_GE(expected["cases"].size(), 20u);
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(tok->decode(tok->encode(text, true), false), text) << shown(text);
  }
}

}  // namespace
