// tokenizer.json behaviour beyond the fixture ids: special-token discovery, tokenizer_config.json,
// flags that must change ids, fingerprints, directory loading, malformed UTF-8, threads, and
// RobertaProcessing / added-token stripping as HF's source defines them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "data/temp_dir.h"
#include "data/tokenizer.h"

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

// Writes edited copies of fixture files into a temp dir removed at the end of the test.
struct Scratch {
  TempDir dir;
  std::unique_ptr<Tokenizer> load(const json& doc, const std::string& name = "tokenizer.json") const {
    return load_tokenizer(dir.file(name, doc.dump()));
  }
};

json fixture(const std::string& name) { return read_json(kDir + name + "/tokenizer.json"); }

std::optional<int32_t> id(const Tokenizer& t, const std::string& token) { return t.token_to_id(token); }

TEST(HfSpecialTokens, FoundFromSpellingsAndPostProcessors) {
  const auto bert = load_tokenizer(kDir + "bert_wordpiece/tokenizer.json");
  EXPECT_EQ(bert->special.cls, id(*bert, "[CLS]"));
  EXPECT_EQ(bert->special.sep, id(*bert, "[SEP]"));
  EXPECT_EQ(bert->special.pad, id(*bert, "[PAD]"));
  EXPECT_EQ(bert->special.unk, id(*bert, "[UNK]"));
  EXPECT_EQ(bert->special.mask, id(*bert, "[MASK]"));
  EXPECT_FALSE(bert->special.bos);  // [CLS] is not a bos
  EXPECT_FALSE(bert->special.eos);

  const auto llama3 = load_tokenizer(kDir + "llama3_bpe/tokenizer.json");
  EXPECT_EQ(llama3->special.bos, id(*llama3, "<|begin_of_text|>"));
  EXPECT_EQ(llama3->special.eos, id(*llama3, "<|end_of_text|>"));
  EXPECT_FALSE(llama3->special.unk);
  EXPECT_FALSE(llama3->special.pad);

  const auto gpt2 = load_tokenizer(kDir + "gpt2_bytelevel/tokenizer.json");
  EXPECT_EQ(gpt2->special.bos, id(*gpt2, "<|endoftext|>"));
  EXPECT_EQ(gpt2->special.eos, id(*gpt2, "<|endoftext|>"));

  const auto t5 = load_tokenizer(kDir + "metaspace_t5/tokenizer.json");
  EXPECT_EQ(t5->special.eos, id(*t5, "</s>"));
  EXPECT_EQ(t5->special.pad, id(*t5, "<pad>"));
  EXPECT_EQ(t5->special.unk, id(*t5, "<unk>"));

  const auto llama2 = load_tokenizer(kDir + "llama2_metaspace/tokenizer.json");
  EXPECT_EQ(llama2->special.bos, id(*llama2, "<s>"));
  EXPECT_EQ(llama2->special.eos, id(*llama2, "</s>"));
  EXPECT_EQ(llama2->special.unk, id(*llama2, "<unk>"));
}

TEST(HfSpecialTokens, TemplateAffixesBecomeBosAndEos) {
  Scratch s;
  json doc = fixture("gpt2_bytelevel");
  doc["added_tokens"].push_back({{"id", 900}, {"content", "[BEGIN]"}, {"special", true}, {"normalized", false}});
  doc["added_tokens"].push_back({{"id", 901}, {"content", "[END]"}, {"special", true}, {"normalized", false}});
  doc["post_processor"] = {{"type", "TemplateProcessing"},
                           {"single", json::parse(R"([{"SpecialToken":{"id":"[BEGIN]","type_id":0}},
                                                      {"Sequence":{"id":"A","type_id":0}},
                                                      {"SpecialToken":{"id":"[END]","type_id":0}}])")},
                           {"pair", json::parse(R"([{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}])")},
                           {"special_tokens", {{"[BEGIN]", {{"id", "[BEGIN]"}, {"ids", {900}}, {"tokens", {"[BEGIN]"}}}},
                                               {"[END]", {{"id", "[END]"}, {"ids", {901}}, {"tokens", {"[END]"}}}}}}};
  // Without <|endoftext|>, nothing is spelled like a bos or eos: the template decides.
  doc["added_tokens"].erase(0);
  doc["model"]["vocab"].erase("<|endoftext|>");
  const auto tok = s.load(doc);
  EXPECT_EQ(tok->special.bos, 900);
  EXPECT_EQ(tok->special.eos, 901);
  EXPECT_EQ(tok->encode("x").front(), 900);
  EXPECT_EQ(tok->encode("x").back(), 901);
  EXPECT_EQ(tok->vocab_size(), 902);
}

TEST(HfSpecialTokens, TokenizerConfigHasTheFinalWord) {
  const auto qwen = load_tokenizer(kDir + "qwen2_bpe/tokenizer.json");
  EXPECT_FALSE(qwen->special.bos);  // "bos_token": null, although <|endoftext|> is spelled like one
  EXPECT_EQ(qwen->special.eos, id(*qwen, "<|im_end|>"));
  EXPECT_EQ(qwen->special.pad, id(*qwen, "<|endoftext|>"));  // the {"content": ...} form
  EXPECT_FALSE(qwen->special.unk);
  // The same file alone (no config beside it) falls back to the spellings.
  Scratch s;
  const auto bare = s.load(fixture("qwen2_bpe"));
  EXPECT_EQ(bare->special.eos, id(*bare, "<|endoftext|>"));
  EXPECT_FALSE(bare->special.pad);
}

TEST(HfBehaviour, IgnoreMergesChangesIds) {
  // llama3_bpe's vocab holds "Ġsecateur", which its merges cannot build: only ignore_merges uses it.
  Scratch s;
  json doc = fixture("llama3_bpe");
  const auto with = s.load(doc);
  doc["model"]["ignore_merges"] = false;
  const auto without = s.load(doc, "no_ignore.json");
  const auto word = id(*with, "\xC4\xA0secateur");
  ASSERT_TRUE(word);
  EXPECT_EQ(with->encode(" secateur", false), std::vector<int32_t>{*word});
  EXPECT_GT(without->encode(" secateur", false).size(), 1u);
  EXPECT_NE(with->fingerprint(), without->fingerprint());
}

TEST(HfBehaviour, FingerprintIsStableAndIgnoresPadding) {
  Scratch s;
  json doc = fixture("bert_wordpiece");
  const auto a = load_tokenizer(kDir + "bert_wordpiece/tokenizer.json");
  const auto b = load_tokenizer(kDir + "bert_wordpiece");  // the directory
  EXPECT_EQ(a->fingerprint(), b->fingerprint());
  EXPECT_EQ(a->fingerprint().size(), 3u + 64u);
  doc["padding"] = {{"strategy", "BatchLongest"}, {"pad_id", 0}};
  EXPECT_EQ(s.load(doc)->fingerprint(), a->fingerprint());
  doc["model"]["vocab"]["brandnewtoken"] = 9999;
  EXPECT_NE(s.load(doc, "changed.json")->fingerprint(), a->fingerprint());
}

TEST(HfBehaviour, MalformedUtf8IsReadAsReplacementCharacters) {
  for (const char* name : {"bert_wordpiece", "gpt2_bytelevel", "llama2_metaspace", "qwen2_bpe"}) {
    const auto tok = load_tokenizer(kDir + name + "/tokenizer.json");
    EXPECT_EQ(tok->encode("ab\xFF\xE6\x97" "cd"), tok->encode("ab\xEF\xBF\xBD\xEF\xBF\xBD" "cd")) << name;
  }
}

TEST(HfBehaviour, SharedAcrossThreads) {
  const auto tok = load_tokenizer(kDir + "llama3_bpe/tokenizer.json");
  const auto cases = read_json(kDir + "llama3_bpe/expected.json")["cases"];
  std::vector<std::future<bool>> runs;
  for (int t = 0; t < 4; ++t) {
    runs.push_back(std::async(std::launch::async, [&] {
      for (int rep = 0; rep < 20; ++rep) {
        for (const auto& c : cases) {
          if (tok->encode(c["text"].get<std::string>()) != c["ids"].get<std::vector<int32_t>>()) return false;
        }
      }
      return true;
    }));
  }
  for (auto& r : runs) EXPECT_TRUE(r.get());
}

TEST(HfBehaviour, LongSingleWordEncodesAndRoundTrips) {
  // llama2_metaspace makes the whole text one BPE word: the merge loop must scale.
  const auto tok = load_tokenizer(kDir + "llama2_metaspace/tokenizer.json");
  std::string text;
  while (text.size() < 60000) text += "Pruning removes weights, heads and layers; the gardener prunes 12 roses. ";
  const auto ids = tok->encode(text, true);
  EXPECT_LT(ids.size(), text.size() / 2);
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(HfBehaviour, RobertaProcessingLayout) {
  // HF's RobertaProcessing: <s> A </s> and <s> A </s></s> B </s>, every type id 0.
  Scratch s;
  json doc = fixture("gpt2_bytelevel");
  doc["added_tokens"].push_back({{"id", 800}, {"content", "<s>"}, {"special", true}, {"normalized", false}});
  doc["added_tokens"].push_back({{"id", 801}, {"content", "</s>"}, {"special", true}, {"normalized", false}});
  doc["post_processor"] = {{"type", "RobertaProcessing"}, {"sep", {"</s>", 801}}, {"cls", {"<s>", 800}},
                           {"trim_offsets", true}, {"add_prefix_space", false}};
  const auto tok = s.load(doc);
  const auto a = tok->encode("Hello, world!", false), b = tok->encode("The fox.", false);
  std::vector<int32_t> single{800};
  single.insert(single.end(), a.begin(), a.end());
  single.push_back(801);
  EXPECT_EQ(tok->encode("Hello, world!"), single);
  auto pair = single;
  pair.push_back(801);
  pair.insert(pair.end(), b.begin(), b.end());
  pair.push_back(801);
  const auto enc = tok->encode_pair("Hello, world!", "The fox.");
  EXPECT_EQ(enc.ids, pair);
  EXPECT_EQ(enc.type_ids, std::vector<int32_t>(pair.size(), 0));
  EXPECT_EQ(tok->special.cls, 800);
  EXPECT_EQ(tok->special.sep, 801);
  EXPECT_EQ(tok->decode(enc.ids, true), "Hello, world!The fox.");
}

TEST(HfBehaviour, AddedTokenStripping) {
  // lstrip takes the whitespace before the token into it, rstrip the whitespace after, and a
  // single_word token is not matched inside a word (HF's AddedVocabulary::find_matches).
  Scratch s;
  json doc = fixture("gpt2_bytelevel");
  doc["added_tokens"].push_back({{"id", 700}, {"content", "<mask>"}, {"special", true}, {"normalized", false},
                                 {"lstrip", true}});
  doc["added_tokens"].push_back({{"id", 701}, {"content", "<r>"}, {"special", true}, {"normalized", false},
                                 {"rstrip", true}});
  doc["added_tokens"].push_back({{"id", 702}, {"content", "cat"}, {"special", false}, {"normalized", false},
                                 {"single_word", true}});
  const auto tok = s.load(doc);
  const auto join = [](std::vector<std::vector<int32_t>> parts) {
    std::vector<int32_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  };
  EXPECT_EQ(tok->encode("a   <mask> b"), join({tok->encode("a"), {700}, tok->encode(" b")}));
  EXPECT_EQ(tok->encode("a <r>   b"), join({tok->encode("a "), {701}, tok->encode("b")}));
  EXPECT_EQ(tok->encode("a cat b"), join({tok->encode("a "), {702}, tok->encode(" b")}));
  const auto inside = tok->encode("concatenate");
  EXPECT_EQ(std::count(inside.begin(), inside.end(), 702), 0);
  EXPECT_EQ(tok->token_to_id("<mask>"), 700);
}

}  // namespace
