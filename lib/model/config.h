#pragma once
// The architecture of a model, parsed from a Hugging Face config.json.
//
// Three families cover the supported model_types: `encoder` (bert, roberta: post-LN, learned
// positions), `gpt2` (pre-LN, learned positions, fused Conv1D qkv) and `llama` (llama, mistral,
// qwen2: pre-RMSNorm, RoPE, GQA, SwiGLU). Per-layer shapes live in `layers`, so a model whose
// layers were pruned to different widths (or lost a whole block) is described exactly; such a
// model is written back with a DeciLM/Nemotron-NAS style `block_configs` list.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace secateur::model {

enum class Family { encoder, gpt2, llama };
enum class Task { base, masked_lm, causal_lm, sequence_classification };

std::string to_string(Family family);
std::string to_string(Task task);

// One transformer layer's widths. head_dim and hidden_size are shared by all layers.
struct LayerShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t intermediate = 0;
  bool has_attention = true;
  bool has_mlp = true;

  bool operator==(const LayerShape& o) const {
    return num_heads == o.num_heads && num_kv_heads == o.num_kv_heads &&
           intermediate == o.intermediate && has_attention == o.has_attention && has_mlp == o.has_mlp;
  }
};

// RoPE frequency scaling. "default" leaves HF's inv_freq alone; "linear" divides it by factor;
// "llama3" is Llama 3.1's band-wise scaling (factor, low/high_freq_factor, original context).
struct RopeScaling {
  std::string type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;        // as in config.json: bert, roberta, gpt2, llama, mistral, qwen2
  Family family = Family::llama;
  std::string architecture;      // architectures[0], e.g. "LlamaForCausalLM"; may be empty
  Task task = Task::base;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;         // the uniform (HF) values; per-layer truth is in `layers`
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  std::vector<LayerShape> layers;

  double norm_eps = 1e-5;
  std::string activation;        // gelu (erf), gelu_new (tanh), silu, relu
  int64_t max_position_embeddings = 0;
  int64_t type_vocab_size = 0;   // encoder only
  std::optional<int64_t> pad_token_id;

  double rope_theta = 10000.0;   // llama family only
  RopeScaling rope_scaling;
  int64_t sliding_window = 0;    // 0 = full attention
  std::vector<bool> sliding_layers;  // per layer: whether sliding_window applies

  bool qkv_bias = false;         // q/k/v projections carry a bias (encoder, gpt2, qwen2, attention_bias)
  bool o_bias = false;           // output projection carries a bias
  bool mlp_bias = false;
  bool tie_word_embeddings = true;
  int64_t num_labels = 2;

  double embedding_dropout = 0.0;
  double hidden_dropout = 0.0;
  double attention_dropout = 0.0;
  double classifier_dropout = 0.0;
  std::string torch_dtype;       // "float32", "bfloat16", "float16" or empty

  nlohmann::json raw;            // the file as read: unknown keys survive to_json()

  // Parses an HF config; `source` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");
  // Reads `path` (a config.json, or a directory holding one).
  static ModelConfig load(const std::string& path);

  // HF config.json content: plain HF keys when all layers agree, else block_configs as well.
  nlohmann::json to_json() const;
  void save(const std::string& dir) const;  // writes dir/config.json atomically

  bool is_uniform() const;       // every layer has the HF-key shape and both blocks
  // Checks the per-layer shapes (after a caller edited them); throws UserError naming `source`.
  void validate(const std::string& source = "config") const;

  bool is_causal() const { return family != Family::encoder; }
  int64_t q_width(int64_t layer) const { return layers[layer].num_heads * head_dim; }
  int64_t kv_width(int64_t layer) const { return layers[layer].num_kv_heads * head_dim; }
};

bool is_directory(const std::string& path);  // false when absent or unreadable

}  // namespace secateur::model
