#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"
#include "util/fs.h"

namespace secateur::io {
namespace {

// The format is little-endian; reading it on a big-endian host would need byte swaps everywhere.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw UserError(path + ": " + what); }

std::string errno_text() { return std::strerror(errno); }

// A JSON value described for an error message, cut short so a huge value cannot flood the log.
std::string show(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// nlohmann keeps the last of duplicate keys silently; a file with two entries for one tensor
// name is ambiguous, so duplicates are found during parsing with one key set per open object.
struct DuplicateKeyFinder {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  bool found = false;

  bool operator()(int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && !found) {
        found = true;
        duplicate = key;
      }
    }
    return true;
  }
};

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A non-negative JSON integer, or a UserError saying which field of which tensor is wrong.
uint64_t non_negative_integer(const std::string& path, const std::string& tensor, const char* field,
                              const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i >= 0) return static_cast<uint64_t>(i);
    fail(path, "tensor '" + tensor + "': " + field + " entry " + std::to_string(i) + " is negative");
  }
  fail(path, "tensor '" + tensor + "': " + field + " entry " + show(v) + " is not a non-negative integer");
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                       uint64_t buffer_size) {
  if (!entry.is_object())
    fail(path, "tensor '" + name + "': entry must be a JSON object with dtype, shape and data_offsets, got " +
                   show(entry));
  TensorInfo info;
  info.name = name;

  auto dt = entry.find("dtype");
  if (dt == entry.end() || !dt->is_string()) fail(path, "tensor '" + name + "': missing or non-string \"dtype\"");
  auto parsed = parse_dtype(dt->get_ref<const std::string&>());
  if (!parsed)
    fail(path, "tensor '" + name + "': unsupported dtype '" + dt->get<std::string>() +
                   "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
  info.dtype = *parsed;

  auto sh = entry.find("shape");
  if (sh == entry.end() || !sh->is_array()) fail(path, "tensor '" + name + "': missing or non-array \"shape\"");
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    uint64_t dim = non_negative_integer(path, name, "shape", d);
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(path, "tensor '" + name + "': shape entry " + std::to_string(dim) + " is too large");
    if (__builtin_mul_overflow(numel, dim, &numel))
      fail(path, "tensor '" + name + "': shape " + show(*sh) + " overflows the element count");
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t expected_bytes = 0;
  if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(info.dtype)), &expected_bytes))
    fail(path, "tensor '" + name + "': shape " + show(*sh) + " overflows the byte count");
  info.numel = numel;

  auto off = entry.find("data_offsets");
  if (off == entry.end() || !off->is_array() || off->size() != 2)
    fail(path, "tensor '" + name + "': \"data_offsets\" must be an array [begin, end]");
  info.begin = non_negative_integer(path, name, "data_offsets", (*off)[0]);
  info.end = non_negative_integer(path, name, "data_offsets", (*off)[1]);
  if (info.end < info.begin)
    fail(path, "tensor '" + name + "': data_offsets end " + std::to_string(info.end) + " < begin " +
                   std::to_string(info.begin));
  if (info.end > buffer_size)
    fail(path, "tensor '" + name + "': data_offsets end " + std::to_string(info.end) +
                   " is beyond the data buffer of " + std::to_string(buffer_size) + " bytes");
  if (info.end - info.begin != expected_bytes)
    fail(path, "tensor '" + name + "': data_offsets span " + std::to_string(info.end - info.begin) +
                   " bytes but shape " + show(*sh) + " of " + dtype_name(info.dtype) + " needs " +
                   std::to_string(expected_bytes));
  return info;
}

}  // namespace

const char* dtype_name(DType dtype) {
  for (const auto& row : kDTypes)
    if (row.dtype == dtype) return row.name;
  return "?";
}

size_t dtype_size(DType dtype) {
  for (const auto& row : kDTypes)
    if (row.dtype == dtype) return row.size;
  return 0;
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& row : kDTypes)
    if (name == row.name) return row.dtype;
  return std::nullopt;
}

void parse_safetensors_header(const std::string& path, std::string_view header, uint64_t buffer_size,
                              std::vector<TensorInfo>& tensors, std::map<std::string, std::string>& metadata) {
  DuplicateKeyFinder dup;
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(header.begin(), header.end(), std::ref(dup));
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!root.is_object()) fail(path, "header must be a JSON object, got " + show(root));
  if (dup.found) fail(path, "header has duplicate key '" + dup.duplicate + "'");

  tensors.clear();
  metadata.clear();
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(path, "\"__metadata__\" must be an object of strings, got " + show(value));
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) fail(path, "\"__metadata__\" value for '" + mk + "' must be a string, got " + show(mv));
        metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    tensors.push_back(parse_entry(path, key, value, buffer_size));
  }
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });

  // Two tensors sharing bytes would let a write to one silently change the other.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : tensors)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail(path, "tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap (bytes " +
                     std::to_string(by_offset[i]->begin) + ".." + std::to_string(by_offset[i - 1]->end) + ")");
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string why = errno_text();
    ::close(fd);
    fail(path, "cannot stat: " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, S_ISDIR(st.st_mode) ? "is a directory, expected a .safetensors file" : "is not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, "not a safetensors file: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  // Private and writable but backed by a read-only descriptor: writes through aliasing tensors
  // copy the page and never reach the file. NORESERVE: untouched pages need no swap reservation.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  std::string why = errno_text();
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) fail(path, "cannot mmap: " + why);
  file->base_ = static_cast<uint8_t*>(p);
  file->file_size_ = size;

  const uint64_t n = read_le64(file->base_);
  if (n > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupt or not a safetensors file)");
  if (n > size - 8)
    fail(path, "header length " + std::to_string(n) + " runs past the end of the " + std::to_string(size) +
                   "-byte file (truncated?)");
  file->data_start_ = 8 + n;
  parse_safetensors_header(path, std::string_view(reinterpret_cast<const char*>(file->base_) + 8, n),
                           file->buffer_size(), file->tensors_, file->metadata_);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(base_, file_size_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

std::string build_safetensors_header(const std::string& path, const std::vector<TensorView>& sorted_tensors,
                                     const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps __metadata__ first and tensors in offset order, as HF's writer does.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : sorted_tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail(path, "cannot write tensor '" + t.name + "': negative dimension " + std::to_string(d));
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        fail(path, "cannot write tensor '" + t.name + "': element count overflows");
    }
    uint64_t expected = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &expected) ||
        expected != t.nbytes)
      fail(path, "cannot write tensor '" + t.name + "': " + std::to_string(t.nbytes) + " bytes of data for a shape needing " +
                     std::to_string(expected));
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string json;
  try {
    json = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("cannot write: a tensor name or metadata string is not valid UTF-8 (") + e.what() + ")");
  }
  json.append((8 - json.size() % 8) % 8, ' ');  // keeps the buffer, hence every tensor, 8-aligned
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json;
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorView*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorView* a, const TensorView* b) { return a->name < b->name; });
  std::vector<TensorView> sorted;
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i]->name == "__metadata__") fail(path, "cannot write a tensor named \"__metadata__\" (reserved)");
    if (i > 0 && order[i]->name == order[i - 1]->name)
      fail(path, "cannot write: duplicate tensor name '" + order[i]->name + "'");
    sorted.push_back(*order[i]);
  }
  const std::string header = build_safetensors_header(path, sorted, metadata);

  fs::write_atomic_with(path, [&](const std::string& temp) {
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail(path, "cannot write: " + errno_text());
    auto put = [&](const void* data, uint64_t size) {
      const auto* p = static_cast<const char*>(data);
      while (size > 0) {
        ssize_t n = ::write(fd, p, std::min<uint64_t>(size, 1ULL << 30));
        if (n < 0) {
          if (errno == EINTR) continue;
          std::string why = errno_text();
          ::close(fd);
          fail(path, "cannot write: " + why);
        }
        p += n;
        size -= static_cast<uint64_t>(n);
      }
    };
    put(header.data(), header.size());
    for (const auto& t : sorted) put(t.data, t.nbytes);
    if (::fsync(fd) != 0) {
      std::string why = errno_text();
      ::close(fd);
      fail(path, "cannot write: fsync failed: " + why);
    }
    if (::close(fd) != 0) fail(path, "cannot write: " + errno_text());
  });
}

}  // namespace secateur::io
