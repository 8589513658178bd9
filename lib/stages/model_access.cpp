#include "stages/model_access.h"

#include "model/prunable.h"
#include "util/error.h"
#include "util/fs.h"

#include <map>
#include "util/log.h"
#include "util/strings.h"

namespace secateur::stages {

namespace {

// model.init: random — the architecture of path/config.json (or a config file) with HF's
// initialisation from torch's generator, which the runner seeded from the recipe seed.
std::shared_ptr<model::Model> random_model(const std::string& path, const model::LoadOptions& options) {
  const std::string file = fs::is_directory(path) ? fs::join(path, "config.json") : path;
  if (!fs::is_regular_file(file))
    throw UserError("model.init is random but " + file + " does not exist: model.path must be a directory holding config.json");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(fs::read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(file + ": not valid JSON (" + e.what() + ")");
  }
  const auto config = model::ModelConfig::from_json(j, file);
  auto dtype = options.dtype.value_or(torch::kFloat);
  auto m = model::build_model(config, torch::TensorOptions().dtype(dtype).device(torch::Device(options.device)));
  log::info("model " + path + ": random initialisation (model.init: random)");
  return m;
}

// HF class names of each family's heads.
std::string architecture_for(const std::string& model_type, const std::string& task) {
  static const std::map<std::string, std::string> prefix = {{"bert", "Bert"},   {"roberta", "Roberta"}, {"gpt2", "GPT2"},
                                                            {"llama", "Llama"}, {"mistral", "Mistral"}, {"qwen2", "Qwen2"}};
  auto it = prefix.find(model_type);
  if (it == prefix.end()) throw UserError("model.head: no " + task + " head for model_type '" + model_type + "'");
  if (task == "sequence_classification") return it->second + "ForSequenceClassification";
  if (task == "masked_lm") return it->second + "ForMaskedLM";
  if (task == "causal_lm") return model_type == "gpt2" ? "GPT2LMHeadModel" : it->second + "ForCausalLM";
  return it->second + "Model";
}

// model.head: the backbone of `m` under a new output head (HF initialisation, from the recipe
// seed): a pretrained masked LM becomes a classifier to fine-tune, as from_pretrained does with
// a checkpoint of another head (the backbone prefix maps across, see Model::load_state).
std::shared_ptr<model::Model> replace_head(const model::Model& m, const recipe::Value& head, const std::string& path) {
  const std::string task = head.get_string("task", "sequence_classification");
  nlohmann::json j = m.config().to_json();
  j["architectures"] = nlohmann::json::array({architecture_for(m.config().model_type, task)});
  j.erase("id2label");
  j.erase("label2id");
  j["num_labels"] = head.get_int("num_labels", 2);
  const auto config = model::ModelConfig::from_json(j, path + " (model.head)");
  auto fresh = model::build_model(config, torch::TensorOptions().dtype(m.dtype()).device(m.device()));
  torch::NoGradGuard no_grad;
  const auto report = fresh->load_state(m.state_dict_hf(), path);
  log::info("model.head: " + config.architecture + " on the backbone of " + path + "; newly initialised: " +
            strings::join(report.missing, ", "));
  return fresh;
}

}  // namespace

model::Model& ensure_model(run::RunState& state) {
  if (state.model) return *state.model;
  const recipe::Value* section = state.recipe.tree.find("model");
  if (!section) throw UserError(state.stage_label() + " needs a model: add a `model: {path: ...}` section to the recipe");
  model::LoadOptions options;
  options.device = state.device;
  options.dtype = model::parse_dtype(section->get_string("dtype", "float32"));
  const std::string path = section->at("path").text();
  if (section->get_string("init", "weights") == "random") {
    state.model = random_model(path, options);
  } else {
    state.model = model::load_model(path, options);
  }
  if (const recipe::Value* head = section->find("head"); head && head->is_map())
    state.model = replace_head(*state.model, *head, path);
  const auto& config = state.model->config();
  const std::string family = section->get_string("family", "");
  if (!family.empty() && family != config.model_type)
    throw UserError("model.family is '" + family + "' but " + path + "/config.json says model_type '" + config.model_type + "'");
  const std::string task = section->get_string("task_head", "");
  if (!task.empty() && task != model::to_string(config.task))
    throw UserError("model.task_head is '" + task + "' but " + path + " holds a " + model::to_string(config.task) +
                    " model (" + config.architecture + ")");
  state.model->eval();
  log::info("model " + path + ": " + config.model_type + ", " + model::dtype_name(state.model->dtype()) + ", " +
            std::to_string(config.num_layers) + " layers, hidden " + std::to_string(config.hidden_size));
  return *state.model;
}

nlohmann::json model_summary(const model::Model& m) {
  const auto& c = m.config();
  const auto params = model::parameter_count(m);
  const int64_t seq_len = std::min<int64_t>(c.max_position_embeddings > 0 ? c.max_position_embeddings : 2048, 2048);
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : c.layers)
    layers.push_back({{"heads", l.has_attention ? l.num_heads : 0},
                      {"kv_heads", l.has_attention ? l.num_kv_heads : 0},
                      {"ffn", l.has_mlp ? l.intermediate : 0}});
  return {{"model_type", c.model_type}, {"task", model::to_string(c.task)}, {"dtype", model::dtype_name(m.dtype())},
          {"params", params.total}, {"params_non_embedding", params.non_embedding},
          {"flops_per_token", model::flops_per_token(c, seq_len)}, {"flops_seq_len", seq_len},
          {"layers", c.num_layers}, {"hidden", c.hidden_size}, {"per_layer", layers}};
}

}  // namespace secateur::stages
