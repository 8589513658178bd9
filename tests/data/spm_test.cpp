// SentencePiece through the secateur-spm companion: parity with python sentencepiece's ids,
// training, errors, and the protobuf clash it exists to avoid.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/temp_dir.h"
#include "data/tokenizer.h"
#include "util/error.h"

using nlohmann::json;
using secateur::UserError;
using secateur::data::load_tokenizer;
using secateur::data::train_sentencepiece;
using ::testing::HasSubstr;

namespace {

const std::string kDir = std::string(SECATEUR_FIXTURES) + "/tokenizers/";

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing fixture " + path);
  return json::parse(in);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no UserError)";
}

// Sets an environment variable for one test.
struct EnvGuard {
  std::string name;
  std::optional<std::string> old;
  EnvGuard(std::string n, const std::string& value) : name(std::move(n)) {
    if (const char* v = std::getenv(name.c_str())) old = v;
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~EnvGuard() {
    if (old) {
      ::setenv(name.c_str(), old->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
};

class SpmFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(SpmFixture, MatchesPythonSentencepiece) {
  const auto tok = load_tokenizer(kDir + GetParam() + ".model");
  const json expected = read_json(kDir + GetParam() + ".expected.json");
  EXPECT_EQ(tok->vocab_size(), expected["vocab_size"].get<int64_t>());
  ASSERT_TRUE(tok->special.bos && tok->special.eos && tok->special.unk);
  EXPECT_EQ(*tok->special.bos, expected["bos_id"].get<int32_t>());
  EXPECT_EQ(*tok->special.eos, expected["eos_id"].get<int32_t>());
  EXPECT_EQ(*tok->special.unk, expected["unk_id"].get<int32_t>());
  EXPECT_FALSE(tok->special.pad);  // pad_id -1: no pad piece
  ASSERT_GE(expected["cases"].size(), 20u);
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok->encode(text, false), ids) << json(text).dump() << "\npieces " << c["pieces"].dump();
    auto with_bos = ids;
    with_bos.insert(with_bos.begin(), *tok->special.bos);  // LLaMA: <s> x, no </s>
    EXPECT_EQ(tok->encode(text, true), with_bos) << json(text).dump();
    EXPECT_EQ(tok->decode(with_bos, true), c["decode"].get<std::string>()) << json(text).dump();
    auto prefix = ids;
    if (!prefix.empty()) prefix.pop_back();
    EXPECT_EQ(tok->decode(prefix), c["decode_prefix"].get<std::string>()) << json(text).dump();
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SpmFixture, ::testing::Values("spm_unigram", "spm_bpe"),
                         [](const auto& info) { return info.param; });

TEST(Spm, KeepsControlPiecesWhenAsked) {
  const auto tok = load_tokenizer(kDir + "spm_bpe.model");
  auto ids = tok->encode("Hello world", true);
  ids.push_back(*tok->special.eos);
  EXPECT_EQ(tok->decode(ids, true), "Hello world");
  EXPECT_EQ(tok->decode(ids, false), "<s>Hello world</s>");
  ids.push_back(1 << 30);  // outside the vocab: skipped
  EXPECT_EQ(tok->decode(ids, true), "Hello world");
  EXPECT_EQ(tok->token_to_id("<s>"), tok->special.bos);
  EXPECT_FALSE(tok->token_to_id("no such piece"));
}

TEST(Spm, DefaultPairJoinsBothEncodings) {
  const auto tok = load_tokenizer(kDir + "spm_bpe.model");
  const auto a = tok->encode("first", true), b = tok->encode("second", true);
  const auto pair = tok->encode_pair("first", "second");
  std::vector<int32_t> ids = a;
  ids.insert(ids.end(), b.begin(), b.end());
  EXPECT_EQ(pair.ids, ids);
  std::vector<int32_t> types(a.size(), 0);
  types.insert(types.end(), b.size(), 1);
  EXPECT_EQ(pair.type_ids, types);
}

TEST(Spm, LoadsFromADirectoryAndFingerprintsTheBytes) {
  TempDir dir;
  secateur::fs::copy_file(kDir + "spm_bpe.model", dir / "tokenizer.model");
  const auto from_dir = load_tokenizer(dir.path);
  const auto direct = load_tokenizer(kDir + "spm_bpe.model");
  EXPECT_EQ(from_dir->fingerprint(), direct->fingerprint());
  EXPECT_NE(direct->fingerprint(), load_tokenizer(kDir + "spm_unigram.model")->fingerprint());
  EXPECT_EQ(from_dir->encode("pruning"), direct->encode("pruning"));
}

TEST(Spm, TrainsUnigramAndBpeModelsThatRoundTrip) {
  TempDir dir;
  std::string text;
  const char* lines[] = {"the gardener prunes the roses in spring", "a pruned model is smaller and faster",
                         "we prune heads, neurons and whole layers", "the quick brown fox jumps over the lazy dog",
                         "recovery training distills the dense teacher into the student",
                         "tokenizers split words into pieces and pieces into ids"};
  for (int repeat = 0; repeat < 20; ++repeat) {
    for (const char* l : lines) text += std::string(l) + "\n";
  }
  const std::string corpus = dir.file("corpus, with a comma.txt", text);
  for (const std::string type : {"unigram", "bpe"}) {
    const std::string model = train_sentencepiece({corpus}, dir / ("m_" + type), 60, type);
    EXPECT_EQ(model, dir / ("m_" + type + ".model"));
    const auto tok = load_tokenizer(model);
    EXPECT_EQ(tok->vocab_size(), 60) << type;
    for (const char* l : lines) {
      const auto ids = tok->encode(l, true);
      EXPECT_GT(ids.size(), 2u) << type << ": " << l;
      EXPECT_EQ(tok->decode(ids), l) << type;
    }
  }
  EXPECT_NE(load_tokenizer(dir / "m_unigram.model")->fingerprint(),
            load_tokenizer(dir / "m_bpe.model")->fingerprint());
}

TEST(Spm, TrainingOptionsReachTheTrainer) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 30; ++i) text += "pruning weights and heads " + std::to_string(i * 7) + "\n";
  const std::string corpus = dir.file("c.txt", text);
  const auto model = train_sentencepiece({corpus}, dir / "sym", 300, "bpe",
                                         {{"user_defined_symbols", "<sep>"}, {"byte_fallback", "true"}});
  const auto tok = load_tokenizer(model);
  ASSERT_TRUE(tok->token_to_id("<sep>"));
  ASSERT_TRUE(tok->token_to_id("<0x41>"));  // byte pieces exist only with byte_fallback
  const auto ids = tok->encode("heads<sep>weights", false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), *tok->token_to_id("<sep>")), ids.end());
}

TEST(Spm, TrainingErrorsAreUserErrors) {
  TempDir dir;
  const std::string corpus = dir.file("c.txt", "some text\nmore text\n");
  const std::string out = dir / "m";
  EXPECT_THAT(error_of([&] { train_sentencepiece({dir / "missing.txt"}, out, 50, "unigram"); }),
              HasSubstr("missing.txt: no such file"));
  EXPECT_THAT(error_of([&] { train_sentencepiece({corpus}, out, 50, "wordpiece"); }),
              HasSubstr("unknown model_type 'wordpiece'"));
  EXPECT_THAT(error_of([&] { train_sentencepiece({corpus}, out, 0, "bpe"); }), HasSubstr("vocab_size must be positive"));
  EXPECT_THAT(error_of([&] { train_sentencepiece({corpus}, out, 50, "bpe", {{"vocab_size", "9"}}); }),
              HasSubstr("option 'vocab_size' is set by train_sentencepiece"));
  EXPECT_THAT(error_of([&] { train_sentencepiece({corpus}, dir / "no/dir/m", 50, "bpe"); }),
              HasSubstr("does not exist"));
  // The trainer's own refusals come back through the companion with its message.
  EXPECT_THAT(error_of([&] { train_sentencepiece({corpus}, out, 50, "bpe", {{"no_such_flag", "1"}}); }),
              HasSubstr("no_such_flag"));
  EXPECT_THAT(error_of([&] { train_sentencepiece({corpus}, out, 5000, "unigram"); }),
              HasSubstr("train_sentencepiece(" + out + ")"));
}

TEST(Spm, BadModelFilesAreUserErrors) {
  TempDir dir;
  const std::string garbage = dir.file("broken.model", std::string("\x08\x96\x01not a model at all", 20));
  EXPECT_THAT(error_of([&] { load_tokenizer(garbage); }),
              ::testing::AllOf(HasSubstr("broken.model"), HasSubstr("SentencePiece .model")));
  EXPECT_THAT(error_of([&] { load_tokenizer(dir / "absent.model"); }), HasSubstr("absent.model"));
  dir.file("a.model", "x"), dir.file("b.model", "y");
  EXPECT_THAT(error_of([&] { load_tokenizer(dir.path); }),
              HasSubstr("several SentencePiece models (a.model, b.model, broken.model)"));
}

TEST(Spm, CompanionProblemsAreUserErrors) {
  TempDir dir;
  {
    EnvGuard env("SECATEUR_SPM_TOOL", dir / "nowhere");
    EXPECT_THAT(error_of([&] { load_tokenizer(kDir + "spm_bpe.model"); }),
                HasSubstr("SECATEUR_SPM_TOOL=" + dir / "nowhere" + ": not an executable"));
  }
  {
    // A companion that dies at once: the error says how, with its last words.
    const std::string tool = dir.file("dying-tool", "#!/bin/sh\necho 'cannot go on' >&2\nexit 3\n", true);
    EnvGuard env("SECATEUR_SPM_TOOL", tool);
    const std::string e = error_of([&] { load_tokenizer(kDir + "spm_bpe.model"); });
    EXPECT_THAT(e, HasSubstr("exited with status 3"));
    EXPECT_THAT(e, HasSubstr("cannot go on"));
    EXPECT_THAT(e, HasSubstr("spm_bpe.model"));
  }
  // And the real one is found without the variable (beside the test binary or in the build).
  EXPECT_TRUE(secateur::fs::is_regular_file(SECATEUR_SPM_TOOL_BUILD_PATH));
  EXPECT_NO_THROW(load_tokenizer(kDir + "spm_bpe.model"));
}

bool mapped(const std::string& library) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(library) != std::string::npos) return true;
  }
  return false;
}

TEST(Spm, ProtobufClashIsAvoided) {
  // This binary links LibTorch (and with it a protobuf). Linking Debian's libsentencepiece too
  // would crash before main(); instead sentencepiece runs in the companion, so tokenizing works
  // here with torch loaded and sentencepiece absent from this process.
  const auto tok = load_tokenizer(kDir + "spm_bpe.model");
  const auto ids = tok->encode("Pruning removes 12345 weights", true);
  const auto tensor = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()));
  EXPECT_EQ(tensor.size(0), static_cast<int64_t>(ids.size()));
  EXPECT_EQ(tensor[0].item<int64_t>(), *tok->special.bos);
  EXPECT_TRUE(mapped("libc10")) << "torch is not loaded: this test proves nothing";
  EXPECT_FALSE(mapped("libsentencepiece")) << "sentencepiece was linked into a torch binary";
}

}  // namespace
