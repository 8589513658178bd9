// The safetensors reader against hand-written files, valid and malformed, and the writer's layout.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>

#include "io/test_util.h"

namespace secateur::io {
namespace {

using testing::expect_user_error;
using testing::le64;
using testing::st_bytes;
using testing::TempDir;
using testing::write_bytes;

class SafetensorsRead : public ::testing::Test {
 protected:
  // Writes `bytes` to a file and expects opening it to fail with a message naming the file and
  // containing `what`.
  void expect_bad(const std::string& bytes, const std::string& what) {
    const std::string path = dir_ / "bad.safetensors";
    write_bytes(path, bytes);
    expect_user_error([&] { SafetensorsFile::open(path); }, {path, what});
  }
  std::shared_ptr<SafetensorsFile> open(const std::string& bytes) {
    const std::string path = dir_ / "ok.safetensors";
    write_bytes(path, bytes);
    return SafetensorsFile::open(path);
  }
  TempDir dir_;
};

TEST_F(SafetensorsRead, ParsesTensorsMetadataAndData) {
  std::string data(12, '\0');
  const float f[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), f, 8);
  data[8] = 7;
  data[9] = -3;
  const std::string header =
      R"({"__metadata__":{"format":"pt","k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"I8","shape":[1,2],"data_offsets":[8,10]},"e":{"dtype":"BF16","shape":[0,4],"data_offsets":[10,10]},)"
      R"("s":{"dtype":"U8","shape":[],"data_offsets":[10,11]}}   )";
  auto file = open(st_bytes(header, data));
  ASSERT_EQ(file->tensors().size(), 4u);
  EXPECT_EQ(file->tensors()[0].name, "b");  // sorted by name
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->metadata().at("k"), "v");
  const TensorInfo* w = file->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(w->numel, 2u);
  float back[2];
  std::memcpy(back, file->data(*w), 8);
  EXPECT_EQ(back[0], 1.5f);
  EXPECT_EQ(back[1], -2.0f);
  EXPECT_EQ(file->data(*file->find("b"))[1], static_cast<uint8_t>(-3));
  EXPECT_EQ(file->find("e")->numel, 0u);
  EXPECT_EQ(file->find("s")->numel, 1u);  // a scalar has one element
  EXPECT_EQ(file->find("missing"), nullptr);
  EXPECT_EQ(file->buffer_size(), 12u);
}

TEST_F(SafetensorsRead, EmptyHeaderObjectIsAnEmptyFile) {
  auto file = open(st_bytes("{}"));
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_TRUE(file->metadata().empty());
}

TEST_F(SafetensorsRead, DTypeTable) {
  EXPECT_EQ(parse_dtype("BF16"), DType::BF16);
  EXPECT_EQ(parse_dtype("BOOL"), DType::BOOL);
  EXPECT_FALSE(parse_dtype("F8_E4M3").has_value());
  EXPECT_FALSE(parse_dtype("f32").has_value());  // the spec's names are upper case
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
  EXPECT_STREQ(dtype_name(DType::I16), "I16");
}

TEST_F(SafetensorsRead, MissingFileAndDirectory) {
  expect_user_error([&] { SafetensorsFile::open(dir_ / "nope.safetensors"); }, {"nope.safetensors", "cannot open"});
  expect_user_error([&] { SafetensorsFile::open(dir_.path()); }, {dir_.path(), "is a directory"});
}

TEST_F(SafetensorsRead, TooShortForTheLengthPrefix) {
  expect_bad("", "0 bytes, shorter than the 8-byte header length");
  expect_bad("abc", "3 bytes, shorter than the 8-byte header length");
}

TEST_F(SafetensorsRead, HeaderLengthBeyondTheFile) {
  expect_bad(le64(100) + "{}", "header length 100 runs past the end of the 10-byte file");
  // A valid file cut short inside its header.
  const std::string full = st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd");
  expect_bad(full.substr(0, 20), "runs past the end");
}

TEST_F(SafetensorsRead, HugeHeaderLength) {
  expect_bad(le64(100'000'001) + "{}", "exceeds the 100 MB limit");
  expect_bad(le64(~0ULL) + "{}", "exceeds the 100 MB limit");
}

TEST_F(SafetensorsRead, InvalidJson) {
  expect_bad(st_bytes("{not json"), "header is not valid JSON");
  expect_bad(st_bytes(std::string("\x00\xff\xfe garbage", 11)), "header is not valid JSON");
  expect_bad(st_bytes("{\"w\xff\":1}"), "header is not valid JSON");  // ill-formed UTF-8
  expect_bad(st_bytes(""), "header is not valid JSON");
}

TEST_F(SafetensorsRead, HeaderAndEntriesMustBeObjects) {
  expect_bad(st_bytes("[1,2]"), "header must be a JSON object");
  expect_bad(st_bytes(R"({"w":5})"), "tensor 'w': entry must be a JSON object");
  expect_bad(st_bytes(R"({"w":["F32"]})"), "tensor 'w': entry must be a JSON object");
}

TEST_F(SafetensorsRead, DTypeProblems) {
  expect_bad(st_bytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd"), "tensor 'w': missing or non-string \"dtype\"");
  expect_bad(st_bytes(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "abcd"), "non-string \"dtype\"");
  expect_bad(st_bytes(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "a"),
             "tensor 'w': unsupported dtype 'F8_E4M3' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
}

TEST_F(SafetensorsRead, ShapeProblems) {
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "abcd"), "missing or non-array \"shape\"");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,4]}})", "abcd"),
             "tensor 'w': shape entry -2 is negative");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", "abcd"),
             "shape entry 2.5 is not a non-negative integer");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,4]}})", "abcd"),
             "is not a non-negative integer");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", "abcd"),
             "is too large");
}

TEST_F(SafetensorsRead, ElementCountOverflow) {
  expect_bad(st_bytes(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", "abcd"),
             "overflows the element count");
  // The element count fits, the byte count does not.
  expect_bad(st_bytes(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})", "abcd"),
             "overflows the byte count");
}

TEST_F(SafetensorsRead, OffsetProblems) {
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[1]}})", "abcd"), "\"data_offsets\" must be an array [begin, end]");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", "abcdefgh"),
             "must be an array [begin, end]");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", "abcd"), "is negative");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", "abcdefgh"),
             "tensor 'w': data_offsets end 4 < begin 8");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[100],"data_offsets":[0,400]}})", "0123456789abcdef"),
             "tensor 'w': data_offsets end 400 is beyond the data buffer of 16 bytes");
  expect_bad(st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcdefgh"),
             "tensor 'w': data_offsets span 4 bytes but shape [2] of F32 needs 8");
}

TEST_F(SafetensorsRead, OverlappingTensors) {
  expect_bad(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      std::string(12, 'x')),
             "tensors 'a' and 'b' overlap");
  // The same bytes named twice is an overlap too.
  expect_bad(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                      R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                      "abcd"),
             "overlap");
}

TEST_F(SafetensorsRead, EmptyTensorsNeverOverlap) {
  auto file = open(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                            std::string(8, 'x')));
  EXPECT_EQ(file->tensors().size(), 2u);
}

TEST_F(SafetensorsRead, DuplicateNames) {
  expect_bad(st_bytes(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                      R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                      "ab"),
             "header has duplicate key 'w'");
  expect_bad(st_bytes(R"({"w":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}})", "a"),
             "duplicate key 'dtype'");
}

TEST_F(SafetensorsRead, MetadataMustMapStringsToStrings) {
  expect_bad(st_bytes(R"({"__metadata__":{"n":3}})"), "\"__metadata__\" value for 'n' must be a string");
  expect_bad(st_bytes(R"({"__metadata__":["a"]})"), "\"__metadata__\" must be an object of strings");
}

TEST(SafetensorsWrite, LayoutMatchesHuggingFace) {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  const int16_t a[3] = {1, -2, 3};
  const double b[1] = {0.25};
  // Given out of order: the file must hold them in name order.
  write_safetensors(path, {{"b", DType::F64, {1, 1}, b, 8}, {"a", DType::I16, {3}, a, 6}}, {{"format", "pt"}});
  const std::string bytes = testing::read_bytes(path);
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"I16","shape":[3],"data_offsets":[0,6]},)"
      R"("b":{"dtype":"F64","shape":[1,1],"data_offsets":[6,14]}})";
  const std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  ASSERT_EQ(bytes.size(), 8 + padded.size() + 14);
  EXPECT_EQ(bytes.substr(0, 8), le64(padded.size()));
  EXPECT_EQ(padded.size() % 8, 0u);
  EXPECT_EQ(bytes.substr(8, padded.size()), padded);
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + padded.size(), a, 6), 0);
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + padded.size() + 6, b, 8), 0);

  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->find("b")->shape, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(file->buffer()) % 8, 0u);
}

TEST(SafetensorsWrite, RejectsBadInput) {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  const float x[2] = {1, 2};
  expect_user_error([&] { write_safetensors(path, {{"w", DType::F32, {2}, x, 8}, {"w", DType::F32, {2}, x, 8}}); },
                    {path, "duplicate tensor name 'w'"});
  expect_user_error([&] { write_safetensors(path, {{"__metadata__", DType::F32, {2}, x, 8}}); }, {"reserved"});
  expect_user_error([&] { write_safetensors(path, {{"w", DType::F32, {3}, x, 8}}); },
                    {"8 bytes of data for a shape needing 12"});
  expect_user_error([&] { write_safetensors(path, {{"w", DType::F32, {-1}, x, 8}}); }, {"negative dimension"});
  expect_user_error([&] { write_safetensors(path, {{"w\xff", DType::F32, {2}, x, 8}}); }, {"not valid UTF-8"});
  EXPECT_FALSE(testing::exists(path));
  expect_user_error([&] { write_safetensors(dir / "no/such/dir/w.safetensors", {{"w", DType::F32, {2}, x, 8}}); },
                    {"no/such/dir/w.safetensors", "cannot write"});
  // Nothing half-written is left behind.
  EXPECT_TRUE(testing::entries(dir.path()).empty());
}

TEST(SafetensorsWrite, ReplacesAnExistingFileWhole) {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  testing::write_bytes(path, "old contents");
  const uint8_t v[1] = {9};
  write_safetensors(path, {{"v", DType::U8, {1}, v, 1}});
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->data(*file->find("v"))[0], 9);
  EXPECT_EQ(testing::entries(dir.path()).size(), 1u);
}

}  // namespace
}  // namespace secateur::io
