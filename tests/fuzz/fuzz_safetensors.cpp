// safetensors header reader: the 8-byte length, the JSON header, every offset, shape and dtype.
// The input is a whole file; the reader must accept it or throw UserError, never read out of
// bounds (AddressSanitizer watches the buffer, which is exactly the input).
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);  // little-endian on every machine we build for
  if (header_len > size - 8) return 0;  // the file-level check SafetensorsFile::open does first
  std::string_view header(reinterpret_cast<const char*>(data) + 8, header_len);
  std::vector<secateur::io::TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  try {
    secateur::io::parse_safetensors_header("fuzz.safetensors", header, size - 8 - header_len, tensors, metadata);
    // Every accepted tensor must lie inside the buffer.
    for (const auto& t : tensors)
      if (t.end > size - 8 - header_len || t.begin > t.end) __builtin_trap();
  } catch (const secateur::UserError&) {
  }
  return 0;
}
