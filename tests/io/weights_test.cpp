// load_weights / save_weights: round trips, sharding, zero-copy aliasing, and bad inputs.
#include "io/weights.h"

#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstring>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/test_util.h"
#include "util/fs.h"

namespace secateur::io {
namespace {

using testing::entries;
using testing::exists;
using testing::expect_user_error;
using testing::st_bytes;
using testing::TempDir;
using testing::write_bytes;

// Same names, dtypes, shapes and bytes: bit-identical, NaN payloads and signed zeros included.
void expect_bit_identical(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, ta] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    const auto x = ta.contiguous(), y = it->second.contiguous();
    ASSERT_EQ(x.scalar_type(), y.scalar_type()) << name;
    ASSERT_EQ(x.sizes(), y.sizes()) << name;
    // memcmp needs valid pointers even for 0 bytes, and an empty tensor's data_ptr() is null.
    if (x.numel() > 0) EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()), 0) << name;
  }
}

TensorMap sample_tensors() {
  torch::manual_seed(0);
  TensorMap m;
  m["model.layers.0.w"] = torch::randn({16, 8});
  m["model.layers.0.bf16"] = torch::randn({5, 7}).to(torch::kBFloat16);
  m["model.layers.1.f16"] = torch::randn({3, 11}).to(torch::kFloat16);
  m["ids"] = torch::randint(-1000000000000LL, 1000000000000LL, {9}, torch::kInt64);
  m["f64"] = torch::randn({2, 2}, torch::kFloat64);
  m["i32"] = torch::randint(-100, 100, {4}, torch::kInt32);
  m["i16"] = torch::randint(-100, 100, {3}, torch::kInt16);
  m["i8"] = torch::randint(-100, 100, {5}, torch::kInt8);
  m["u8"] = torch::randint(0, 255, {5}, torch::kUInt8);
  m["mask"] = torch::rand({6}) > 0.5;
  m["scalar"] = torch::tensor(3.5f).reshape({});
  m["empty"] = torch::empty({0, 3});
  m["special"] = torch::tensor({std::nanf(""), -0.0f, INFINITY, -INFINITY});
  m["transposed"] = torch::randn({4, 6}).t();  // non-contiguous input
  return m;
}

TEST(Weights, RoundTripSingleFileIsBitIdentical) {
  TempDir dir;
  const TensorMap in = sample_tensors();
  save_weights(dir.path(), in);
  EXPECT_TRUE(exists(dir / "model.safetensors"));
  EXPECT_FALSE(exists(dir / "model.safetensors.index.json"));
  const TensorMap out = load_weights(dir.path());
  expect_bit_identical(in, out);
  expect_bit_identical(in, load_weights(dir / "model.safetensors"));
  for (const auto& [name, t] : out) {
    EXPECT_FALSE(t.requires_grad()) << name;
    EXPECT_TRUE(t.device().is_cpu()) << name;
  }
  auto file = SafetensorsFile::open(dir / "model.safetensors");
  EXPECT_EQ(file->metadata().at("format"), "pt");  // transformers refuses files without it
}

TEST(Weights, RoundTripShardedIsBitIdentical) {
  TempDir dir;
  const TensorMap in = sample_tensors();
  save_weights(dir.path(), in, /*max_shard_bytes=*/256, {{"producer", "test"}});
  EXPECT_FALSE(exists(dir / "model.safetensors"));
  const auto index = nlohmann::json::parse(fs::read_file(dir / "model.safetensors.index.json"));
  uint64_t total = 0;
  for (const auto& [n, t] : in) total += t.numel() * t.element_size();
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  ASSERT_EQ(index["weight_map"].size(), in.size());
  std::set<std::string> shards;
  for (const auto& [n, f] : index["weight_map"].items()) shards.insert(f.get<std::string>());
  ASSERT_GE(shards.size(), 3u);
  const std::string suffix = "-of-0000" + std::to_string(shards.size()) + ".safetensors";
  for (const auto& s : shards) {
    EXPECT_TRUE(exists(dir / s)) << s;
    EXPECT_EQ(s.substr(s.size() - suffix.size()), suffix);
    auto file = SafetensorsFile::open(dir / s);
    EXPECT_EQ(file->metadata().at("producer"), "test");
    // Every shard except one holding a single oversized tensor respects the limit.
    EXPECT_TRUE(file->buffer_size() <= 256 || file->tensors().size() == 1) << s;
  }
  EXPECT_EQ(*shards.begin(), "model-00001-of-0000" + std::to_string(shards.size()) + ".safetensors");
  expect_bit_identical(in, load_weights(dir.path()));
  expect_bit_identical(in, load_weights(dir / "model.safetensors.index.json"));
}

TEST(Weights, SaveCreatesNestedDirectories) {
  TempDir dir;
  const TensorMap in{{"a", torch::arange(5, torch::kInt64)}};
  save_weights(dir / "x/y/z", in);
  expect_bit_identical(in, load_weights(dir / "x/y/z"));
  save_weights(dir / "x/y/z/", in, 8);  // trailing slash; 40 bytes in 8-byte shards
  EXPECT_TRUE(exists(dir / "x/y/z/model.safetensors.index.json"));
  expect_bit_identical(in, load_weights(dir / "x/y/z"));
}

TEST(Weights, ResavingRemovesFilesOfTheOtherLayout) {
  TempDir dir;
  TensorMap big = sample_tensors();
  save_weights(dir.path(), big, 128);
  const auto n_sharded = static_cast<long>(entries(dir.path()).size());
  TensorMap small{{"a", torch::ones({2})}};
  save_weights(dir.path(), small);
  // A stale index would shadow the new model.safetensors.
  EXPECT_EQ(static_cast<long>(entries(dir.path()).size()), 1);
  expect_bit_identical(small, load_weights(dir.path()));
  save_weights(dir.path(), big, 128);
  EXPECT_EQ(static_cast<long>(entries(dir.path()).size()), n_sharded);
  EXPECT_FALSE(exists(dir / "model.safetensors"));
  // Fewer, bigger shards: the old model-*-of-N shards must go.
  save_weights(dir.path(), big, 600);
  const auto n_fewer = static_cast<long>(entries(dir.path()).size()) - 1;
  ASSERT_GE(n_fewer, 2);
  ASSERT_LT(n_fewer + 1, n_sharded);
  const std::string suffix = "-of-0000" + std::to_string(n_fewer) + ".safetensors";
  for (const auto& name : entries(dir.path())) {
    if (name != "model.safetensors.index.json") {
      EXPECT_EQ(name.substr(name.size() - suffix.size()), suffix) << name;
    }
  }
  expect_bit_identical(big, load_weights(dir.path()));
}

TEST(Weights, SafetensorsTensorsAliasTheMapping) {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  write_safetensors(path, TensorMap{{"w", torch::arange(8, torch::kFloat32)}});
  auto file = SafetensorsFile::open(path);
  const TensorInfo& info = *file->find("w");
  ASSERT_TRUE(aliases_mapping(*file, info));
  torch::Tensor t = tensor_from_safetensors(file, info);
  EXPECT_EQ(t.data_ptr(), static_cast<void*>(file->data(info)));
  // The tensor keeps the mapping alive once the file object is gone.
  std::weak_ptr<SafetensorsFile> weak = file;
  file.reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(t[7].item<float>(), 7.0f);
  // In-place ops touch a private copy of the page, never the file.
  t.add_(100);
  EXPECT_EQ(t[0].item<float>(), 100.0f);
  EXPECT_EQ(load_weights(path).at("w")[0].item<float>(), 0.0f);
  t = torch::Tensor();
  EXPECT_TRUE(weak.expired());
}

TEST(Weights, MisalignedDataIsCopied) {
  TempDir dir;
  const std::string path = dir / "odd.safetensors";
  // A 61-byte header puts the buffer at offset 69, so the F32 tensor is not 4-aligned.
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append(61 - header.size(), ' ');
  const float v[2] = {1.25f, -3.5f};
  write_bytes(path, st_bytes(header, std::string(reinterpret_cast<const char*>(v), 8)));
  auto file = SafetensorsFile::open(path);
  const TensorInfo& info = *file->find("w");
  ASSERT_FALSE(aliases_mapping(*file, info));
  torch::Tensor t = tensor_from_safetensors(file, info);
  EXPECT_NE(t.data_ptr(), static_cast<void*>(file->data(info)));
  EXPECT_EQ(t[0].item<float>(), 1.25f);
  EXPECT_EQ(t[1].item<float>(), -3.5f);
}

TEST(Weights, BoolBytesMustBeZeroOrOne) {
  TempDir dir;
  const std::string path = dir / "b.safetensors";
  write_bytes(path, st_bytes(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x02", 3)));
  expect_user_error([&] { load_weights(path); }, {path, "tensor 'm': BOOL byte 2 is 2, expected 0 or 1"});
}

TEST(Weights, MissingPathDirectoryAndUnknownFiles) {
  TempDir dir;
  expect_user_error([&] { load_weights(dir / "absent"); }, {dir / "absent", "no such file or directory"});
  write_bytes(dir / "config.json", "{}");
  expect_user_error([&] { load_weights(dir.path()); },
                    {dir.path(), "not a model directory: expected model.safetensors or model.safetensors.index.json",
                     "found: config.json"});
  write_bytes(dir / "model.pt", "x");
  expect_user_error([&] { load_weights(dir.path()); }, {"pass the .pt file itself"});
  write_bytes(dir / "weights.npz", "x");
  expect_user_error([&] { load_weights(dir / "weights.npz"); }, {"weights.npz", "unrecognised weights file"});
  TempDir empty;
  expect_user_error([&] { load_weights(empty.path()); }, {"it is empty"});
}

TEST(Weights, BadShardIndexes) {
  TempDir dir;
  const std::string index = dir / "model.safetensors.index.json";
  save_weights(dir.path(), TensorMap{{"a", torch::ones({64})}, {"b", torch::zeros({64})}}, 300);
  const std::string good = fs::read_file(index);
  auto expect_bad_index = [&](const std::string& text, std::initializer_list<std::string> parts) {
    write_bytes(index, text);
    expect_user_error([&] { load_weights(dir.path()); }, parts);
  };
  expect_bad_index("{oops", {index, "not valid JSON"});
  expect_bad_index("[]", {index, "must be a JSON object"});
  expect_bad_index(R"({"metadata":{}})", {index, "missing \"weight_map\""});
  expect_bad_index(R"({"weight_map":{}})", {index, "\"weight_map\" is empty"});
  expect_bad_index(R"({"weight_map":{"a":3}})", {"entry for 'a' must be a file name string"});
  expect_bad_index(R"({"weight_map":{"a":"../model-00001-of-00002.safetensors"}})", {"plain file names"});
  expect_bad_index(R"({"weight_map":{"a":"/etc/passwd"}})", {"plain file names"});
  expect_bad_index(R"({"weight_map":{"a":"gone.safetensors"}})", {"lists shard 'gone.safetensors', which does not exist"});
  // b really lives in shard 2.
  expect_bad_index(R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}})",
                   {"says tensor 'b' is in 'model-00001-of-00002.safetensors', but that shard lacks it"});
  write_bytes(index, good);
  write_bytes(dir / "model-00002-of-00002.safetensors", "garbage!!");
  expect_user_error([&] { load_weights(dir.path()); }, {"model-00002-of-00002.safetensors", "header length"});
}

TEST(Weights, ShardHoldingUnlistedTensorIsRejected) {
  TempDir dir;
  save_weights(dir.path(), TensorMap{{"a", torch::ones({4})}, {"b", torch::ones({4})}});
  ASSERT_EQ(std::rename((dir / "model.safetensors").c_str(), (dir / "both.safetensors").c_str()), 0);
  // b would be invisible to a reader that trusts the index and ambiguous to one that does not.
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map":{"a":"both.safetensors"}})");
  expect_user_error([&] { load_weights(dir.path()); },
                    {"both.safetensors", "holds tensor 'b', which model.safetensors.index.json does not assign"});
}

TEST(Weights, SaveRejectsBadInput) {
  TempDir dir;
  expect_user_error([&] { save_weights(dir.path(), TensorMap{{"c", torch::zeros({2}, torch::kComplexFloat)}}); },
                    {"tensor 'c'", "cannot be stored in safetensors"});
  expect_user_error([&] { save_weights(dir.path(), TensorMap{{"u", torch::Tensor()}}); }, {"tensor 'u'", "undefined"});
  expect_user_error([&] { save_weights(dir.path(), TensorMap{{"a", torch::ones({1})}}, 0); },
                    {"max_shard_bytes must be positive"});
  write_bytes(dir / "file", "x");
  expect_user_error([&] { save_weights(dir / "file", TensorMap{{"a", torch::ones({1})}}); },
                    {dir / "file", "cannot create directory"});
  EXPECT_FALSE(exists(dir / "model.safetensors"));
}

TEST(Weights, TorchScriptParametersAndBuffers) {
  TempDir dir;
  torch::jit::Module sub("sub");
  sub.register_parameter("weight", torch::randn({3, 2}), /*is_buffer=*/false);
  sub.register_buffer("inv_freq", torch::arange(4, torch::kFloat32));
  torch::jit::Module root("root");
  root.register_module("layer", sub);
  root.register_parameter("bias", torch::randn({2}).requires_grad_(), false);
  const std::string path = dir / "m.pt";
  root.save(path);
  const TensorMap out = load_weights(path);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(torch::equal(out.at("layer.weight"), sub.attr("weight").toTensor()));
  EXPECT_TRUE(torch::equal(out.at("layer.inv_freq"), torch::arange(4, torch::kFloat32)));
  EXPECT_FALSE(out.at("bias").requires_grad());
}

TEST(Weights, BadTorchScriptFiles) {
  TempDir dir;
  write_bytes(dir / "garbage.pt", "this is not a zip archive");
  expect_user_error([&] { load_weights(dir / "garbage.pt"); }, {dir / "garbage.pt", "cannot load as TorchScript"});
  write_bytes(dir / "empty.pth", "");
  expect_user_error([&] { load_weights(dir / "empty.pth"); }, {"cannot load as TorchScript"});
  torch::jit::Module bare("bare");
  bare.save(dir / "bare.pt");
  expect_user_error([&] { load_weights(dir / "bare.pt"); }, {"has no parameters or buffers"});
}

}  // namespace
}  // namespace secateur::io
