#include "io/weights.h"

#include <dirent.h>
#include <sys/stat.h>
#include <torch/script.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"

namespace secateur::io {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw UserError(path + ": " + what); }

// Plain POSIX instead of std::filesystem: the PyTorch wheel's libtorch exports its own statically
// linked copies of libstdc++'s std::filesystem symbols (pytorch/pytorch#133437), and a program
// linking it can bind to those; with torch 2.11, std::filesystem::remove_all then jumped to null.
bool path_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

bool is_directory(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string parent_of(const std::string& p) {
  const auto slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void make_directories(const std::string& dir) {
  for (size_t pos = 0; pos != std::string::npos;) {  // each prefix ending before a '/', then dir
    pos = dir.find('/', pos + 1);
    const std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      fail(dir, "cannot create directory " + prefix + ": " + std::strerror(errno));
  }
  if (!is_directory(dir)) fail(dir, "cannot create directory: a file of that name exists");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Errors are shown as one line; torch's messages span several and can be long.
std::string one_line(std::string s, size_t max = 400) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s.size() > max ? s.substr(0, max) + "..." : s;
}

// "model-00001-of-00003.safetensors": the names save_weights (and HF) give shards.
bool is_shard_name(const std::string& name) {
  if (name.size() != std::strlen("model-00001-of-00003.safetensors") || name.rfind("model-", 0) != 0 ||
      !ends_with(name, ".safetensors") || name.compare(11, 4, "-of-") != 0)
    return false;
  for (size_t i : {6, 7, 8, 9, 10, 15, 16, 17, 18, 19})
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

TensorMap load_sharded(const std::string& index_path) {
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(fs::read_file(index_path));
  } catch (const nlohmann::json::exception& e) {
    fail(index_path, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!index.is_object()) fail(index_path, "must be a JSON object with a \"weight_map\"");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object())
    fail(index_path, "missing \"weight_map\" object {tensor name: shard file}");
  if (wm->empty()) fail(index_path, "\"weight_map\" is empty: the model has no weights");
  if (index.contains("metadata") && !index["metadata"].is_object())
    fail(index_path, "\"metadata\" must be an object");

  const std::string dir = parent_of(index_path);
  std::map<std::string, std::vector<std::string>> names_by_shard;
  for (const auto& [name, file] : wm->items()) {
    if (!file.is_string()) fail(index_path, "weight_map entry for '" + name + "' must be a file name string");
    const auto& f = file.get_ref<const std::string&>();
    // Shard names come from the file: keep them inside the model directory.
    if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos || f.find('\\') != std::string::npos)
      fail(index_path, "weight_map entry for '" + name + "' names '" + f +
                           "'; shards must be plain file names in the index's directory");
    names_by_shard[f].push_back(name);
  }

  TensorMap out;
  for (const auto& [shard, names] : names_by_shard) {
    const std::string shard_path = join(dir, shard);
    if (!path_exists(shard_path)) fail(index_path, "lists shard '" + shard + "', which does not exist");
    auto file = SafetensorsFile::open(shard_path);
    std::set<std::string> listed(names.begin(), names.end());
    for (const auto& info : file->tensors())
      if (!listed.count(info.name))
        fail(shard_path, "holds tensor '" + info.name + "', which " + kIndexFile + " does not assign to this shard");
    for (const auto& name : names) {
      const TensorInfo* info = file->find(name);
      if (!info) fail(index_path, "says tensor '" + name + "' is in '" + shard + "', but that shard lacks it");
      out.emplace(name, tensor_from_safetensors(file, *info));
    }
  }
  return out;
}

TensorMap load_torchscript(const std::string& path) {
  log::warn(path + ": loading a TorchScript file, which can execute code stored in it; load only files you "
                   "trust (safetensors is the safe default)");
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    fail(path, "cannot load as TorchScript: " + one_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    fail(path, "cannot load as TorchScript: " + one_line(e.what()));
  }
  TensorMap out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace(p.name, p.value.detach());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace(b.name, b.value.detach());
  if (out.empty()) fail(path, "TorchScript module has no parameters or buffers");
  return out;
}

std::string list_dir(const std::string& dir) {
  const std::vector<std::string> names = dir_entries(dir);
  if (names.empty()) return "it is empty";
  std::string s = "found:";
  for (size_t i = 0; i < names.size() && i < 8; ++i) s += " " + names[i];
  if (names.size() > 8) s += " ... (" + std::to_string(names.size()) + " entries)";
  return s;
}

struct Prepared {
  std::string name;
  torch::Tensor tensor;  // CPU, contiguous, owns or shares the bytes written
  DType dtype;
  uint64_t nbytes;
};

std::vector<Prepared> prepare(const std::string& path, const TensorMap& tensors) {
  std::vector<Prepared> out;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) fail(path, "cannot write tensor '" + name + "': it is undefined");
    DType dt = from_torch(t.scalar_type(), "tensor '" + name + "'");
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    out.push_back({name, c, dt, static_cast<uint64_t>(c.numel()) * dtype_size(dt)});
  }
  return out;
}

std::vector<TensorView> views(const std::vector<const Prepared*>& tensors) {
  std::vector<TensorView> v;
  for (const auto* p : tensors)
    v.push_back({p->name, p->dtype, p->tensor.sizes().vec(), p->tensor.data_ptr(), p->nbytes});
  return v;
}

void remove_file(const std::string& p) {
  if (::unlink(p.c_str()) != 0 && errno != ENOENT)
    log::warn("could not remove stale " + p + ": " + std::strerror(errno));
}

}  // namespace

torch::ScalarType to_torch(DType dtype) {
  switch (dtype) {
    case DType::F64: return torch::kFloat64;
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::I64: return torch::kInt64;
    case DType::I32: return torch::kInt32;
    case DType::I16: return torch::kInt16;
    case DType::I8: return torch::kInt8;
    case DType::U8: return torch::kUInt8;
    case DType::BOOL: return torch::kBool;
  }
  throw std::logic_error("unhandled DType");
}

DType from_torch(torch::ScalarType type, const std::string& what) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16, DType::I8,
                  DType::U8, DType::BOOL})
    if (to_torch(d) == type) return d;
  throw UserError(what + ": dtype " + std::string(c10::toString(type)) +
                  " cannot be stored in safetensors by secateur (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
}

bool aliases_mapping(const SafetensorsFile& file, const TensorInfo& info) {
  return info.numel > 0 && reinterpret_cast<uintptr_t>(file.data(info)) % dtype_size(info.dtype) == 0;
}

torch::Tensor tensor_from_safetensors(const std::shared_ptr<SafetensorsFile>& file, const TensorInfo& info) {
  const auto options = torch::TensorOptions().dtype(to_torch(info.dtype));
  uint8_t* bytes = file->data(info);
  if (info.dtype == DType::BOOL) {
    for (uint64_t i = 0; i < info.nbytes(); ++i)
      if (bytes[i] > 1)
        fail(file->path(), "tensor '" + info.name + "': BOOL byte " + std::to_string(i) + " is " +
                               std::to_string(bytes[i]) + ", expected 0 or 1");
  }
  if (aliases_mapping(*file, info)) {
    std::shared_ptr<SafetensorsFile> keep = file;
    return torch::from_blob(bytes, info.shape, [keep](void*) mutable { keep.reset(); }, options);
  }
  torch::Tensor t = torch::empty(info.shape, options);
  if (info.nbytes() > 0) std::memcpy(t.data_ptr(), bytes, info.nbytes());
  return t;
}

TensorMap load_safetensors(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  TensorMap out;
  for (const auto& info : file->tensors()) out.emplace(info.name, tensor_from_safetensors(file, info));
  return out;
}

TensorMap load_weights(const std::string& path) {
  if (!path_exists(path)) fail(path, "no such file or directory");
  if (is_directory(path)) {
    if (path_exists(join(path, kIndexFile))) return load_sharded(join(path, kIndexFile));
    if (path_exists(join(path, kSingleFile))) return load_safetensors(join(path, kSingleFile));
    std::string hint;
    if (path_exists(join(path, "model.pt"))) hint = "; for TorchScript pass the .pt file itself";
    if (path_exists(join(path, "pytorch_model.bin"))) hint = "; pytorch_model.bin (pickle) is not supported, convert it to safetensors";
    fail(path, std::string("not a model directory: expected ") + kSingleFile + " or " + kIndexFile + " (" +
                   list_dir(path) + ")" + hint);
  }
  if (ends_with(path, ".safetensors.index.json")) return load_sharded(path);
  if (ends_with(path, ".safetensors")) return load_safetensors(path);
  if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".ts")) return load_torchscript(path);
  fail(path, "unrecognised weights file: expected a model directory, a .safetensors or .safetensors.index.json file, "
             "or a TorchScript .pt/.pth/.ts file");
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  auto prepared = prepare(path, tensors);
  std::vector<const Prepared*> all;
  for (const auto& p : prepared) all.push_back(&p);
  write_safetensors(path, views(all), metadata);
}

void save_weights(const std::string& dir, const TensorMap& tensors, uint64_t max_shard_bytes,
                  const std::map<std::string, std::string>& metadata) {
  if (max_shard_bytes == 0) fail(dir, "cannot save weights: max_shard_bytes must be positive");
  make_directories(dir);

  auto meta = metadata;
  meta.emplace("format", "pt");
  const auto prepared = prepare(dir, tensors);  // TensorMap order: by name
  uint64_t total = 0;
  for (const auto& p : prepared) total += p.nbytes;

  std::set<std::string> written;
  if (total <= max_shard_bytes) {
    std::vector<const Prepared*> all;
    for (const auto& p : prepared) all.push_back(&p);
    write_safetensors(join(dir, kSingleFile), views(all), meta);
    written.insert(kSingleFile);
    remove_file(join(dir, kIndexFile));  // would otherwise take precedence in load_weights
  } else {
    std::vector<std::vector<const Prepared*>> shards(1);
    uint64_t used = 0;
    for (const auto& p : prepared) {
      if (!shards.back().empty() && used + p.nbytes > max_shard_bytes) {
        shards.emplace_back();
        used = 0;
      }
      shards.back().push_back(&p);
      used += p.nbytes;
    }
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors(join(dir, name), views(shards[i]), meta);
      written.insert(name);
      for (const auto* p : shards[i]) weight_map[p->name] = name;
    }
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    fs::write_atomic(join(dir, kIndexFile), index.dump(2) + "\n");
    remove_file(join(dir, kSingleFile));
  }
  // Shards of an earlier, differently split save would be listed by no index but still look
  // like part of this model.
  for (const auto& name : dir_entries(dir))
    if (is_shard_name(name) && !written.count(name)) remove_file(join(dir, name));
}

}  // namespace secateur::io
