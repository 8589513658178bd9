#include "model/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>

#include "util/error.h"
#include "util/fs.h"

namespace secateur::model {

using nlohmann::json;

std::string to_string(Family family) {
  switch (family) {
    case Family::encoder: return "encoder";
    case Family::gpt2: return "gpt2";
    case Family::llama: return "llama";
  }
  return "?";
}

std::string to_string(Task task) {
  switch (task) {
    case Task::base: return "base";
    case Task::masked_lm: return "masked_lm";
    case Task::causal_lm: return "causal_lm";
    case Task::sequence_classification: return "sequence_classification";
  }
  return "?";
}

namespace {

std::string type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean " + v.dump();
  if (v.is_number_integer()) return "integer " + v.dump();
  if (v.is_number()) return "number " + v.dump();
  if (v.is_string()) return "string " + v.dump();
  if (v.is_array()) return "an array";
  return "an object";
}

// Typed access to one JSON object whose errors name the file and the full key path.
class Reader {
 public:
  Reader(const json& object, std::string source, std::string path = "")
      : j_(object), source_(std::move(source)), path_(std::move(path)) {}

  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t integer(const std::string& key) const {
    const json& v = require(key, "an integer");
    if (!v.is_number_integer()) wrong_type(key, "an integer", v);
    return v.get<int64_t>();
  }
  int64_t integer(const std::string& key, int64_t fallback) const {
    return has(key) ? integer(key) : fallback;
  }
  double number(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) wrong_type(key, "a number", v);
    return v.get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) wrong_type(key, "a boolean", v);
    return v.get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) wrong_type(key, "a string", v);
    return v.get<std::string>();
  }
  std::string string(const std::string& key) const {
    const json& v = require(key, "a string");
    if (!v.is_string()) wrong_type(key, "a string", v);
    return v.get<std::string>();
  }
  Reader object(const std::string& key) const {
    const json& v = j_.at(key);
    if (!v.is_object()) wrong_type(key, "an object", v);
    return Reader(v, source_, full(key));
  }
  const json& array(const std::string& key) const {
    const json& v = j_.at(key);
    if (!v.is_array()) wrong_type(key, "an array", v);
    return v;
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw UserError(source_ + ": key '" + full(key) + "' " + what);
  }
  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const std::string& source() const { return source_; }

 private:
  const json& require(const std::string& key, const std::string& expected) const {
    if (!has(key)) fail(key, "is missing (expected " + expected + ")");
    return j_.at(key);
  }
  [[noreturn]] void wrong_type(const std::string& key, const std::string& expected, const json& v) const {
    fail(key, "must be " + expected + ", found " + type_name(v));
  }

  const json& j_;
  std::string source_;
  std::string path_;
};

Family family_of(const Reader& r) {
  const std::string type = r.string("model_type");
  if (type == "bert" || type == "roberta") return Family::encoder;
  if (type == "gpt2") return Family::gpt2;
  if (type == "llama" || type == "mistral" || type == "qwen2") return Family::llama;
  r.fail("model_type", "has unsupported value \"" + type +
                           "\" (expected one of bert, roberta, gpt2, llama, mistral, qwen2)");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Task task_of(const ModelConfig& c, const Reader& r) {
  if (c.architecture.empty()) return c.family == Family::encoder ? Task::base : Task::causal_lm;
  const std::string& a = c.architecture;
  const bool encoder = c.family == Family::encoder;
  if (encoder && (ends_with(a, "ForMaskedLM") || ends_with(a, "ForPreTraining"))) return Task::masked_lm;
  if (!encoder && (ends_with(a, "ForCausalLM") || ends_with(a, "LMHeadModel"))) return Task::causal_lm;
  if (ends_with(a, "ForSequenceClassification")) return Task::sequence_classification;
  if (ends_with(a, "Model")) return Task::base;
  r.fail("architectures", "names unsupported class \"" + a + "\" for model_type \"" + c.model_type +
                              "\" (expected a " + (encoder ? "...ForMaskedLM" : "...ForCausalLM") +
                              ", ...ForSequenceClassification or ...Model class)");
}

void parse_encoder(ModelConfig& c, const Reader& r) {
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.num_layers = r.integer("num_hidden_layers");
  c.num_heads = r.integer("num_attention_heads");
  c.num_kv_heads = c.num_heads;
  c.intermediate_size = r.integer("intermediate_size");
  c.activation = r.string("hidden_act", "gelu");
  c.norm_eps = r.number("layer_norm_eps", 1e-12);
  c.max_position_embeddings = r.integer("max_position_embeddings", 512);
  c.type_vocab_size = r.integer("type_vocab_size", 2);
  c.pad_token_id = r.integer("pad_token_id", c.model_type == "roberta" ? 1 : 0);
  c.hidden_dropout = r.number("hidden_dropout_prob", 0.1);
  c.attention_dropout = r.number("attention_probs_dropout_prob", 0.1);
  c.embedding_dropout = c.hidden_dropout;
  c.classifier_dropout = r.number("classifier_dropout", c.hidden_dropout);
  const std::string positions = r.string("position_embedding_type", "absolute");
  if (positions != "absolute")
    r.fail("position_embedding_type", "has unsupported value \"" + positions + "\" (expected \"absolute\")");
  c.qkv_bias = c.o_bias = c.mlp_bias = true;
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
}

void parse_gpt2(ModelConfig& c, const Reader& r) {
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("n_embd");
  c.num_layers = r.integer("n_layer");
  c.num_heads = r.integer("n_head");
  c.num_kv_heads = c.num_heads;
  c.intermediate_size = r.integer("n_inner", 4 * c.hidden_size);
  c.activation = r.string("activation_function", "gelu_new");
  c.norm_eps = r.number("layer_norm_epsilon", 1e-5);
  c.max_position_embeddings = r.integer("n_positions", 1024);
  if (r.has("pad_token_id")) c.pad_token_id = r.integer("pad_token_id");
  c.hidden_dropout = r.number("resid_pdrop", 0.1);
  c.attention_dropout = r.number("attn_pdrop", 0.1);
  c.embedding_dropout = r.number("embd_pdrop", 0.1);
  c.classifier_dropout = 0.0;  // GPT2ForSequenceClassification's score has no dropout
  if (r.boolean("scale_attn_by_inverse_layer_idx", false))
    r.fail("scale_attn_by_inverse_layer_idx", "is true, which is not supported (expected false)");
  if (!r.boolean("scale_attn_weights", true))
    r.fail("scale_attn_weights", "is false, which is not supported (expected true)");
  c.qkv_bias = c.o_bias = c.mlp_bias = true;
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
}

RopeScaling parse_rope_scaling(const Reader& s) {
  RopeScaling rs;
  rs.type = s.has("rope_type") ? s.string("rope_type") : s.string("type", "default");
  if (rs.type == "default") return rs;
  if (rs.type != "linear" && rs.type != "llama3")
    s.fail("rope_type", "has unsupported value \"" + rs.type + "\" (expected default, linear or llama3)");
  rs.factor = s.number("factor", 1.0);
  if (!s.has("factor")) s.fail("factor", "is missing (expected a number)");
  if (rs.type == "llama3") {
    rs.low_freq_factor = s.number("low_freq_factor", 1.0);
    rs.high_freq_factor = s.number("high_freq_factor", 4.0);
    rs.original_max_position_embeddings = s.integer("original_max_position_embeddings");
    if (rs.high_freq_factor <= rs.low_freq_factor)
      s.fail("high_freq_factor", "must exceed low_freq_factor");
  }
  return rs;
}

// transformers 5 folds rope_theta and rope_scaling into one rope_parameters object; 4.x writes both.
void parse_rope(ModelConfig& c, const Reader& r) {
  if (r.has("rope_parameters")) {
    const Reader p = r.object("rope_parameters");
    c.rope_theta = p.number("rope_theta", 10000.0);
    c.rope_scaling = parse_rope_scaling(p);
  } else {
    c.rope_theta = r.number("rope_theta", 10000.0);
    if (r.has("rope_scaling")) c.rope_scaling = parse_rope_scaling(r.object("rope_scaling"));
  }
}

// Which layers use sliding-window attention, following HF: Mistral everywhere; Qwen2 per
// `layer_types` (transformers 5) or from max_window_layers on when use_sliding_window is set.
void parse_sliding_window(ModelConfig& c, const Reader& r) {
  if (c.num_layers < 0) r.fail("num_hidden_layers", "must not be negative");  // found by fuzz_config
  c.sliding_layers.assign(c.num_layers, false);
  if (c.model_type == "llama") return;
  if (c.model_type == "qwen2" && !r.boolean("use_sliding_window", false)) return;
  c.sliding_window = r.integer("sliding_window", 0);
  if (c.sliding_window <= 0) return;
  if (c.model_type == "mistral") {
    c.sliding_layers.assign(c.num_layers, true);
  } else if (r.has("layer_types")) {
    const json& types = r.array("layer_types");
    if (static_cast<int64_t>(types.size()) != c.num_layers)
      r.fail("layer_types", "has " + std::to_string(types.size()) + " entries (expected num_hidden_layers = " +
                                std::to_string(c.num_layers) + ")");
    for (int64_t l = 0; l < c.num_layers; ++l) c.sliding_layers[l] = types[l] == "sliding_attention";
  } else {
    const int64_t first = r.integer("max_window_layers", c.num_layers);
    for (int64_t l = first; l < c.num_layers; ++l) c.sliding_layers[l] = true;
  }
}

void parse_llama(ModelConfig& c, const Reader& r) {
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.num_layers = r.integer("num_hidden_layers");
  c.num_heads = r.integer("num_attention_heads");
  c.num_kv_heads = r.integer("num_key_value_heads", c.num_heads);
  c.intermediate_size = r.integer("intermediate_size");
  c.activation = r.string("hidden_act", "silu");
  c.norm_eps = r.number("rms_norm_eps", 1e-6);
  c.max_position_embeddings = r.integer("max_position_embeddings", 2048);
  if (r.has("pad_token_id")) c.pad_token_id = r.integer("pad_token_id");
  c.attention_dropout = r.number("attention_dropout", 0.0);
  const bool qwen2 = c.model_type == "qwen2";
  const bool attention_bias = r.boolean("attention_bias", false);
  c.qkv_bias = qwen2 || attention_bias;  // Qwen2 always has q/k/v biases, never an o_proj bias
  c.o_bias = !qwen2 && attention_bias;
  c.mlp_bias = r.boolean("mlp_bias", false);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  parse_rope(c, r);
  parse_sliding_window(c, r);
}

// DeciLM's ffn_mult → intermediate size: two thirds of mult × hidden, rounded up to 256.
int64_t ffn_mult_to_intermediate(double mult, int64_t hidden) {
  const auto size = static_cast<int64_t>(2.0 * mult * static_cast<double>(hidden) / 3.0);
  return (size + 255) / 256 * 256;
}

LayerShape parse_block(const ModelConfig& c, const Reader& block) {
  LayerShape s{c.num_heads, c.num_kv_heads, c.intermediate_size, true, true};
  if (block.has("attention")) {
    const Reader a = block.object("attention");
    if (a.boolean("replace_with_linear", false))
      a.fail("replace_with_linear", "is true, which is not supported (expected false)");
    s.has_attention = !a.boolean("no_op", false);
    s.num_heads = a.integer("num_heads", c.num_heads);
    if (a.has("num_key_value_heads")) {
      s.num_kv_heads = a.integer("num_key_value_heads");
    } else if (a.has("n_heads_in_group")) {
      const int64_t group = a.integer("n_heads_in_group");
      if (group <= 0 || s.num_heads % group != 0)
        a.fail("n_heads_in_group", "must divide the layer's " + std::to_string(s.num_heads) + " heads");
      s.num_kv_heads = s.num_heads / group;
    }
  }
  if (block.has("ffn")) {
    const Reader f = block.object("ffn");
    if (f.boolean("replace_with_linear", false))
      f.fail("replace_with_linear", "is true, which is not supported (expected false)");
    s.has_mlp = !f.boolean("no_op", false);
    if (f.has("intermediate_size")) {
      s.intermediate = f.integer("intermediate_size");
    } else if (f.has("ffn_mult")) {
      s.intermediate = ffn_mult_to_intermediate(f.number("ffn_mult", 0.0), c.hidden_size);
    }
  }
  return s;
}

void parse_layers(ModelConfig& c, const Reader& r) {
  if (!r.has("block_configs")) {
    c.layers.assign(c.num_layers, LayerShape{c.num_heads, c.num_kv_heads, c.intermediate_size, true, true});
    return;
  }
  const json& blocks = r.array("block_configs");
  if (static_cast<int64_t>(blocks.size()) != c.num_layers)
    r.fail("block_configs", "has " + std::to_string(blocks.size()) +
                                " entries (expected num_hidden_layers = " + std::to_string(c.num_layers) + ")");
  for (size_t l = 0; l < blocks.size(); ++l) {
    const std::string key = "block_configs[" + std::to_string(l) + "]";
    if (!blocks[l].is_object()) r.fail(key, "must be an object, found " + type_name(blocks[l]));
    c.layers.push_back(parse_block(c, Reader(blocks[l], r.source(), key)));
  }
}

std::string architecture_of(const Reader& r) {
  if (!r.has("architectures")) return "";
  const json& list = r.array("architectures");
  if (list.empty()) return "";
  if (!list[0].is_string()) r.fail("architectures", "must hold class names (strings)");
  return list[0].get<std::string>();
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw UserError(source + ": expected a JSON object, found " + type_name(j));
  const Reader r(j, source);
  ModelConfig c;
  c.raw = j;
  c.model_type = r.string("model_type");
  c.family = family_of(r);
  c.architecture = architecture_of(r);
  c.task = task_of(c, r);
  switch (c.family) {
    case Family::encoder: parse_encoder(c, r); break;
    case Family::gpt2: parse_gpt2(c, r); break;
    case Family::llama: parse_llama(c, r); break;
  }
  if (c.sliding_layers.empty()) c.sliding_layers.assign(std::max<int64_t>(c.num_layers, 0), false);
  if (c.num_heads <= 0) r.fail(c.family == Family::gpt2 ? "n_head" : "num_attention_heads", "must be positive");
  if (c.hidden_size <= 0) r.fail(c.family == Family::gpt2 ? "n_embd" : "hidden_size", "must be positive");
  if (r.has("head_dim")) {
    c.head_dim = r.integer("head_dim");
  } else {
    if (c.hidden_size % c.num_heads != 0)
      r.fail("num_attention_heads", "must divide the hidden size " + std::to_string(c.hidden_size) +
                                        " (or give head_dim explicitly)");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (r.has("id2label")) {
    r.object("id2label");  // type check: id2label must be an object
    c.num_labels = static_cast<int64_t>(j.at("id2label").size());
  } else {
    c.num_labels = r.integer("num_labels", 2);
  }
  c.torch_dtype = r.has("torch_dtype") ? r.string("torch_dtype") : r.string("dtype", "");
  parse_layers(c, r);
  c.validate(source);
  return c;
}

// stat() rather than std::filesystem: see path_exists in model.cpp.
bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

ModelConfig ModelConfig::load(const std::string& path) {
  std::string file = path;
  if (is_directory(path)) file = path + "/config.json";
  const std::string text = fs::read_file(file);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw UserError(file + ": not valid JSON (" + e.what() + ")");
  }
  return from_json(j, file);
}

bool ModelConfig::is_uniform() const {
  if (layers.empty()) return true;
  const LayerShape& first = layers.front();
  if (!first.has_attention || !first.has_mlp) return false;
  return std::all_of(layers.begin(), layers.end(), [&](const LayerShape& s) { return s == first; });
}

void ModelConfig::validate(const std::string& source) const {
  auto fail = [&](const std::string& what) { throw UserError(source + ": " + what); };
  if (vocab_size <= 0) fail("vocab_size must be positive");
  if (num_layers < 0 || static_cast<int64_t>(layers.size()) != num_layers)
    fail("num_hidden_layers (" + std::to_string(num_layers) + ") does not match the " +
         std::to_string(layers.size()) + " layer shapes");
  if (head_dim <= 0) fail("head_dim must be positive");
  if (family == Family::llama && head_dim % 2 != 0) fail("head_dim must be even for rotary embeddings");
  if (activation != "gelu" && activation != "gelu_new" && activation != "gelu_pytorch_tanh" &&
      activation != "gelu_fast" && activation != "silu" && activation != "swish" && activation != "relu")
    fail("activation \"" + activation + "\" is not supported (expected gelu, gelu_new, gelu_pytorch_tanh, silu or relu)");
  for (int64_t l = 0; l < num_layers; ++l) {
    const LayerShape& s = layers[l];
    const std::string where = "layer " + std::to_string(l) + ": ";
    if (s.has_attention) {
      if (s.num_heads <= 0 || s.num_kv_heads <= 0)
        fail(where + "an attention block needs at least one head and one key/value head");
      if (s.num_heads % s.num_kv_heads != 0)
        fail(where + std::to_string(s.num_kv_heads) + " key/value heads do not divide " +
             std::to_string(s.num_heads) + " heads");
      if (family != Family::llama && s.num_kv_heads != s.num_heads)
        fail(where + model_type + " has no grouped-query attention (key/value heads must equal heads)");
    }
    if (s.has_mlp && s.intermediate <= 0) fail(where + "an MLP block needs a positive intermediate size");
  }
}

namespace {

// The width HF's uniform keys advertise: the common shape, or the widest layer when they differ.
LayerShape nominal_shape(const ModelConfig& c) {
  LayerShape n{0, 0, 0, true, true};
  for (const LayerShape& s : c.layers) {
    if (s.has_attention) {
      n.num_heads = std::max(n.num_heads, s.num_heads);
      n.num_kv_heads = std::max(n.num_kv_heads, s.num_kv_heads);
    }
    if (s.has_mlp) n.intermediate = std::max(n.intermediate, s.intermediate);
  }
  if (n.num_heads == 0) n.num_heads = n.num_kv_heads = c.num_heads;
  if (n.intermediate == 0) n.intermediate = c.intermediate_size;
  return n;
}

json block_config(const LayerShape& s) {
  return {{"attention", {{"no_op", !s.has_attention}, {"replace_with_linear", false},
                         {"num_heads", s.num_heads}, {"num_key_value_heads", s.num_kv_heads}}},
          {"ffn", {{"no_op", !s.has_mlp}, {"replace_with_linear", false}, {"intermediate_size", s.intermediate}}}};
}

}  // namespace

json ModelConfig::to_json() const {
  json j = raw.is_object() ? raw : json::object();
  j["model_type"] = model_type;
  if (!architecture.empty() && !j.contains("architectures")) j["architectures"] = json::array({architecture});
  const LayerShape n = nominal_shape(*this);
  j["vocab_size"] = vocab_size;
  if (family == Family::gpt2) {
    j["n_embd"] = hidden_size;
    j["n_layer"] = num_layers;
    j["n_head"] = n.num_heads;
    j["n_inner"] = n.intermediate;
  } else {
    j["hidden_size"] = hidden_size;
    j["num_hidden_layers"] = num_layers;
    j["num_attention_heads"] = n.num_heads;
    j["intermediate_size"] = n.intermediate;
    if (family == Family::llama) j["num_key_value_heads"] = n.num_kv_heads;
  }
  // HF derives head_dim as hidden / heads unless told: say it whenever that would be wrong.
  if (j.contains("head_dim") || hidden_size % n.num_heads != 0 || hidden_size / n.num_heads != head_dim)
    j["head_dim"] = head_dim;
  if (is_uniform()) {
    j.erase("block_configs");
  } else {
    json blocks = json::array();
    for (const LayerShape& s : layers) blocks.push_back(block_config(s));
    j["block_configs"] = blocks;
  }
  if (j.contains("layer_types") && j["layer_types"].is_array() &&
      static_cast<int64_t>(j["layer_types"].size()) != num_layers) {
    json types = json::array();
    for (int64_t l = 0; l < num_layers; ++l) types.push_back(sliding_layers[l] ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (!torch_dtype.empty()) j[j.contains("dtype") ? "dtype" : "torch_dtype"] = torch_dtype;
  return j;
}

void ModelConfig::save(const std::string& dir) const {
  const std::string path = dir + "/config.json";
  fs::write_atomic(path, to_json().dump(2) + "\n");
}

}  // namespace secateur::model
