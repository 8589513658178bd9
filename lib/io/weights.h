#pragma once
// Loading and saving model weights as torch tensors: safetensors (single file or HF-sharded) and
// TorchScript. Names are those of the HF state dict.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "io/safetensors.h"

namespace secateur::io {

using TensorMap = std::map<std::string, torch::Tensor>;

// `path` is one of
//   - a directory holding model.safetensors.index.json (sharded; preferred when both exist) or
//     model.safetensors;
//   - a .safetensors file, or a *.safetensors.index.json file;
//   - a TorchScript file (.pt / .pth / .ts): torch::jit::load, then named_parameters and
//     named_buffers (tied weights appear under every name; non-persistent buffers appear too).
//     Loading TorchScript can execute code from the file, so it logs a warning.
// Safetensors tensors alias the file's mapping when possible (see tensor_from_safetensors).
// All tensors are on the CPU and do not require grad. Throws UserError naming the file on any
// missing, unreadable, malformed or inconsistent input.
TensorMap load_weights(const std::string& path);

// Loads every tensor of one .safetensors file.
TensorMap load_safetensors(const std::string& path);

// One tensor of an open file. Zero-copy: when the tensor's bytes are aligned to its element size
// in memory, the result is a torch::from_blob view of the mapping whose deleter holds `file`, so
// the mapping lives as long as any tensor using it; in-place ops on it copy the touched pages
// (the mapping is private) and never change the file. Otherwise (an empty tensor, or data not
// aligned to its element size, which HF's dtype-ordered writer never produces) the bytes are
// copied into a fresh tensor. BOOL bytes must be 0 or 1
// (anything else is a UserError): torch assumes that of every bool.
torch::Tensor tensor_from_safetensors(const std::shared_ptr<SafetensorsFile>& file, const TensorInfo& info);

// True when tensor_from_safetensors aliases rather than copies this tensor.
bool aliases_mapping(const SafetensorsFile& file, const TensorInfo& info);

torch::ScalarType to_torch(DType dtype);
DType from_torch(torch::ScalarType type, const std::string& what);  // UserError for unsupported types

// Writes tensors to one .safetensors file atomically; tensors may live on any device, be
// non-contiguous, or share storage (each name gets its own copy of the bytes).
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes dir/model.safetensors, or, when the total exceeds max_shard_bytes, shards
// model-0000i-of-0000n.safetensors (filled greedily in name order; a tensor larger than the limit
// gets a shard of its own) plus model.safetensors.index.json
// ({"metadata": {"total_size": bytes}, "weight_map": {name: file}}). Each file is written
// atomically, the index last; then files of an earlier save that would shadow or confuse this
// one (a stale index, model.safetensors, or unlisted shards) are removed. Every file's
// __metadata__ holds `metadata` plus "format": "pt" (transformers refuses files without it) unless
// `metadata` sets "format" itself. Creates `dir` if needed.
void save_weights(const std::string& dir, const TensorMap& tensors, uint64_t max_shard_bytes = 5'000'000'000ULL,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace secateur::io
