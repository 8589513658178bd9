// HF config.json parsing into ModelConfig (uniform keys and per-layer block_configs), and writing
// it back: accepted configs must round-trip; everything else is a UserError.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "model/config.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    auto config = secateur::model::ModelConfig::from_json(j, "fuzz/config.json");
    auto again = secateur::model::ModelConfig::from_json(config.to_json(), "fuzz/round-trip.json");
    if (again.layers.size() != config.layers.size() || again.hidden_size != config.hidden_size) __builtin_trap();
  } catch (const secateur::UserError&) {
  }
  return 0;
}
