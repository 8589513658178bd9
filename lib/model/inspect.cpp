#include "model/inspect.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "model/prunable.h"

namespace secateur::model {

namespace {

// 124439808 → "124.44M"; small numbers stay exact.
std::string human(int64_t n) {
  char buffer[32];
  const double v = static_cast<double>(n);
  if (n >= 1'000'000'000) std::snprintf(buffer, sizeof buffer, "%.2fB", v / 1e9);
  else if (n >= 1'000'000) std::snprintf(buffer, sizeof buffer, "%.2fM", v / 1e6);
  else if (n >= 10'000) std::snprintf(buffer, sizeof buffer, "%.1fK", v / 1e3);
  else return std::to_string(n);
  return buffer;
}

std::string shape_line(const LayerShape& s) {
  std::ostringstream o;
  if (s.has_attention) o << "attention " << s.num_heads << " heads / " << s.num_kv_heads << " kv";
  else o << "attention -";
  o << ", ";
  if (s.has_mlp) o << "mlp " << s.intermediate;
  else o << "mlp -";
  return o.str();
}

// "layers 0-11: attention 12 heads / 12 kv, mlp 3072", one line per run of identical layers.
std::string layer_lines(const ModelConfig& c) {
  std::ostringstream o;
  for (int64_t first = 0; first < c.num_layers;) {
    int64_t last = first;
    while (last + 1 < c.num_layers && c.layers[last + 1] == c.layers[first]) ++last;
    o << "  layer" << (last > first ? "s " + std::to_string(first) + "-" + std::to_string(last)
                                    : " " + std::to_string(first))
      << ": " << shape_line(c.layers[first]) << "\n";
    first = last + 1;
  }
  return o.str();
}

}  // namespace

std::string describe(const Model& model, int64_t seq_len) {
  const ModelConfig& c = model.config();
  if (seq_len <= 0) seq_len = std::min<int64_t>(c.max_position_embeddings > 0 ? c.max_position_embeddings : 2048, 2048);
  const ParameterCount params = parameter_count(model);
  const PrunableStructure structure = prunable_structure(model, {seq_len, true});
  std::ostringstream o;
  o << "model:        " << c.model_type << " (family " << to_string(c.family) << "), "
    << (c.architecture.empty() ? "no architecture" : c.architecture) << ", task " << to_string(c.task) << "\n";
  o << "dtype:        " << dtype_name(model.dtype()) << " on " << model.device().str() << "\n";
  o << "sizes:        hidden " << c.hidden_size << ", head_dim " << c.head_dim << ", vocab " << c.vocab_size
    << ", " << c.num_layers << " layers, " << (c.is_uniform() ? "uniform" : "heterogeneous") << "\n";
  o << layer_lines(c);
  o << "parameters:   " << human(params.total) << " total (" << params.total << "), " << human(params.non_embedding)
    << " non-embedding (" << params.non_embedding << ")\n";
  o << "prunable:    ";
  for (int k = 0; k < kGroupKinds; ++k) {
    const auto kind = static_cast<GroupKind>(k);
    o << " " << to_string(kind) << " " << structure.count(kind) << (k + 1 < kGroupKinds ? "," : "\n");
  }
  const int64_t flops = flops_per_token(c, seq_len);
  o << "FLOPs/token:  " << human(flops) << " (" << flops << ") at seq_len " << seq_len << "\n";
  return o.str();
}

}  // namespace secateur::model
