#pragma once
// Internal: the two tokenizer back ends behind load_tokenizer(), and the hash behind fingerprint().
#include <memory>
#include <string>
#include <string_view>

#include "data/tokenizer.h"

namespace secateur::data {

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);   // a tokenizer.json
std::unique_ptr<Tokenizer> load_spm_tokenizer(const std::string& path);  // a SentencePiece .model

// SHA-256 of `data` as 64 lowercase hex digits. A cryptographic hash, not a quick checksum,
// because a collision between two tokenizers would silently serve one's cached ids for the other.
std::string sha256_hex(std::string_view data);

}  // namespace secateur::data
