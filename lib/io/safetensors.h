#pragma once
// Reader and writer for the safetensors format, torch-free so that it can be fuzzed alone.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {str: str}}
// then the byte buffer; offsets are relative to the buffer's start. The reader trusts nothing in
// the file: every way a header can be wrong is a secateur::UserError naming the file.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace secateur::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType dtype);               // "F32", ...
size_t dtype_size(DType dtype);                    // bytes per element
std::optional<DType> parse_dtype(std::string_view name);

// Headers above this are refused: a real one is a few MB at most, and a corrupt length must not
// make us parse gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100ULL * 1000 * 1000;

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t numel = 0;
  uint64_t begin = 0;  // byte offsets relative to the data buffer
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

// An open, fully validated file, mapped with mmap. The file is opened read-only and mapped
// MAP_PRIVATE with write permission: callers that alias the mapping (torch tensors) may then
// modify tensors in place; pages are copied on write and the file itself never changes.
// A file truncated by another process while mapped raises SIGBUS on access, as for any mmap.
class SafetensorsFile {
 public:
  // Throws UserError if the file is missing, unreadable, or malformed in any way.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  // Sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // First byte of the data buffer / of one tensor's bytes, inside the mapping.
  uint8_t* buffer() const { return base_ + data_start_; }
  uint8_t* data(const TensorInfo& info) const { return buffer() + info.begin; }
  uint64_t buffer_size() const { return file_size_ - data_start_; }

 private:
  SafetensorsFile() = default;
  void parse_header(std::string_view header);

  std::string path_;
  uint8_t* base_ = nullptr;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;  // 8 + N
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Parses and validates a header (the N JSON bytes) against a buffer of buffer_size bytes.
// `path` only names the file in errors. Exposed for tests and fuzzing.
void parse_safetensors_header(const std::string& path, std::string_view header, uint64_t buffer_size,
                              std::vector<TensorInfo>& tensors, std::map<std::string, std::string>& metadata);

// One tensor to write: `data` must hold numel(shape) * dtype_size(dtype) bytes.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  uint64_t nbytes;
};

// Writes `path` atomically (temp file, fsync, rename): tensors in name order, packed back to back
// (HF's reader rejects gaps), header padded with spaces to a multiple of 8 bytes as HF pads it, so
// the buffer starts 8-byte aligned in a mapping. Unlike HF's writer, which orders by dtype first,
// name order can leave a tensor misaligned behind an odd-sized narrower one in a file that mixes
// dtypes; readers then copy that tensor instead of aliasing it. Throws UserError on duplicate or
// reserved names, a data size that does not match the shape, or any write failure.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The header (8-byte length + padded JSON) write_safetensors would write for these tensors,
// with data_offsets assigned in name order. Exposed for tests.
std::string build_safetensors_header(const std::string& path, const std::vector<TensorView>& sorted_tensors,
                                     const std::map<std::string, std::string>& metadata);

}  // namespace secateur::io
