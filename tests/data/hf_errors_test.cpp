// Bad tokenizer files give a UserError that names the file, where in it, and what was expected.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "data/temp_dir.h"
#include "data/tokenizer.h"
#include "util/error.h"

using nlohmann::json;
using secateur::UserError;
using secateur::data::load_tokenizer;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

class HfErrors : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) const { return dir_.file(name, text); }

  // The UserError message of loading `doc` (written as tokenizer.json), or a marker if none.
  std::string load_error(const json& doc) const { return error_of(write("tokenizer.json", doc.dump())); }

  static std::string error_of(const std::string& path) {
    try {
      load_tokenizer(path);
    } catch (const UserError& e) {
      return e.what();
    }
    return "(loaded without error)";
  }

  // A small valid WordPiece tokenizer.json to break one piece at a time.
  static json base() {
    return json::parse(R"({
      "version": "1.0", "added_tokens": [{"id": 0, "content": "[UNK]", "special": true, "normalized": false}],
      "normalizer": {"type": "BertNormalizer", "lowercase": true},
      "pre_tokenizer": {"type": "BertPreTokenizer"},
      "post_processor": null, "decoder": {"type": "WordPiece", "prefix": "##"},
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "b": 2, "##b": 3}}
    })");
  }

  TempDir dir_;
};

TEST_F(HfErrors, TheBaseFileLoads) {
  // The other tests' failures come from their one edit, not from the base file.
  write("tokenizer.json", base().dump());
  const auto tok = load_tokenizer(dir_ / "tokenizer.json");
  EXPECT_EQ(tok->encode("AB a"), (std::vector<int32_t>{1, 3, 1}));
  EXPECT_EQ(tok->encode("c"), (std::vector<int32_t>{0}));
}

TEST_F(HfErrors, MissingPathsAndEmptyDirectories) {
  EXPECT_THAT(error_of(dir_ / "nope.json"),
              AllOf(HasSubstr("nope.json: no such file or directory"), HasSubstr("expected a tokenizer.json")));
  EXPECT_THAT(error_of(dir_.path), HasSubstr("no tokenizer.json or SentencePiece .model file in this directory"));
}

TEST_F(HfErrors, NotJsonOrNotAnObject) {
  const std::string path = write("tokenizer.json", "{\"model\": ");
  EXPECT_THAT(error_of(path), AllOf(HasSubstr(path + ": not valid JSON"), HasSubstr("HF tokenizer.json")));
  EXPECT_THAT(error_of(write("list.json", "[1, 2]")), HasSubstr("list.json: expected a JSON object"));
  // A file without an extension that starts like JSON is read as tokenizer.json.
  EXPECT_THAT(error_of(write("tokenizer", "  {\"x\": 1}")), HasSubstr("missing required field 'model'"));
}

TEST_F(HfErrors, UnsupportedComponentsAreNamed) {
  json doc = base();
  doc["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  EXPECT_THAT(load_error(doc), AllOf(HasSubstr("tokenizer.json: model: unsupported model type 'Unigram'"),
                                     HasSubstr(".model file instead")));
  doc = base();
  doc["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}};
  EXPECT_THAT(load_error(doc), HasSubstr("normalizer.normalizers[1]: unsupported normalizer type 'Precompiled'"));
  doc = base();
  doc["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  EXPECT_THAT(load_error(doc), AllOf(HasSubstr("pre_tokenizer: unsupported pre_tokenizer type 'UnicodeScripts'"),
                                     HasSubstr("supports: BertPreTokenizer")));
  doc = base();
  doc["decoder"] = {{"type", "CTC"}};
  EXPECT_THAT(load_error(doc), HasSubstr("decoder: unsupported decoder type 'CTC'"));
  doc = base();
  doc["post_processor"] = {{"type", "Sequence"}, {"processors", {{{"type", "Mystery"}}}}};
  EXPECT_THAT(load_error(doc), HasSubstr("post_processor.processors[0]: unsupported post_processor type 'Mystery'"));
  doc = base();
  doc["normalizer"] = {{"lowercase", true}};
  EXPECT_THAT(load_error(doc), HasSubstr("normalizer: missing required field 'type'"));
}

TEST_F(HfErrors, WrongFieldTypes) {
  json doc = base();
  doc["normalizer"]["lowercase"] = "yes";
  EXPECT_THAT(load_error(doc), HasSubstr("normalizer.lowercase: expected true or false, found a string"));
  doc = base();
  doc["model"]["vocab"]["c"] = -4;
  EXPECT_THAT(load_error(doc), HasSubstr("model.vocab: token \"c\" has id -4"));
  doc = base();
  doc["model"]["max_input_chars_per_word"] = 1.5;
  EXPECT_THAT(load_error(doc), HasSubstr("model.max_input_chars_per_word: expected an integer, found a float"));
  doc = base();
  doc["added_tokens"] = {{{"content", "[X]"}}};
  EXPECT_THAT(load_error(doc), HasSubstr("added_tokens[0]: missing or invalid 'id'"));
  doc = base();
  doc["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Glob", "*"}}}, {"behavior", "Isolated"}};
  EXPECT_THAT(load_error(doc), HasSubstr("pre_tokenizer.pattern: expected a pattern"));
  doc = base();
  doc["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}};
  EXPECT_THAT(load_error(doc), HasSubstr("pre_tokenizer.behavior: unknown split behavior 'Sideways'"));
}

TEST_F(HfErrors, BadRegexIsReportedWithItsLocation) {
  json doc = base();
  doc["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(?i:'s|\\p{L}+"}}}, {"behavior", "Isolated"}};
  EXPECT_THAT(load_error(doc), AllOf(HasSubstr("pre_tokenizer.pattern.Regex: invalid regex"), HasSubstr("offset")));
}

TEST_F(HfErrors, BpeMergesMustBeInTheVocab) {
  json doc = base();
  doc["model"] = json::parse(R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", "a zz"]})");
  EXPECT_THAT(load_error(doc), HasSubstr("model.merges[1]: merge token \"zz\" is not in the vocab"));
  doc["model"]["merges"] = {"a b c"};
  EXPECT_THAT(load_error(doc), HasSubstr("model.merges[0]: expected \"<left> <right>\""));
  doc["model"]["merges"] = json::parse(R"([["a", "b"], ["b", "a"]])");
  EXPECT_THAT(load_error(doc), HasSubstr("model.merges[1]: merge token \"ba\" is not in the vocab"));
  doc["model"]["merges"] = json::parse(R"([["a", "b"]])");
  doc["model"]["dropout"] = 0.1;
  EXPECT_THAT(load_error(doc), HasSubstr("model.dropout: BPE dropout 0.1 is not supported"));
}

TEST_F(HfErrors, TemplatesMustDefineTheirSpecialTokens) {
  json doc = base();
  doc["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}})");
  EXPECT_THAT(load_error(doc), HasSubstr("post_processor.single[0]: special token \"[CLS]\" is missing"));
  doc["post_processor"]["single"] = json::parse(R"([{"Sequence": {"id": "C", "type_id": 0}}])");
  EXPECT_THAT(load_error(doc), HasSubstr("post_processor.single[0].Sequence: expected sequence id A or B"));
}

TEST_F(HfErrors, UnknownTokenNeededButMissingFailsTheEncode) {
  // HF loads such a file and fails only when the unknown token is needed; so does secateur.
  json doc = base();
  doc["model"]["vocab"].erase("[UNK]");
  doc["added_tokens"] = json::array();
  const std::string path = write("tokenizer.json", doc.dump());
  const auto tok = load_tokenizer(path);
  EXPECT_EQ(tok->encode("ab", false), (std::vector<int32_t>{1, 3}));
  try {
    tok->encode("zzz", false);
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_THAT(std::string(e.what()), AllOf(HasSubstr(path), HasSubstr("unknown token \"[UNK]\" is not in the vocab")));
  }
}

TEST_F(HfErrors, MalformedTokenizerConfigIsNamed) {
  write("tokenizer.json", base().dump());
  const std::string config = write("tokenizer_config.json", "{\"eos_token\": 3}");
  EXPECT_THAT(error_of(dir_ / "tokenizer.json"),
              HasSubstr(config + ": eos_token: expected a token string or {\"content\": ...}"));
  write("tokenizer_config.json", "not json");
  EXPECT_THAT(error_of(dir_ / "tokenizer.json"), HasSubstr(config + ": not valid JSON"));
}

}  // namespace
