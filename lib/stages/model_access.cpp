#include "stages/model_access.h"

#include "model/prunable.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strings.h"

namespace secateur::stages {

model::Model& ensure_model(run::RunState& state) {
  if (state.model) return *state.model;
  const recipe::Value* section = state.recipe.tree.find("model");
  if (!section) throw UserError(state.stage_label() + " needs a model: add a `model: {path: ...}` section to the recipe");
  model::LoadOptions options;
  options.device = state.device;
  options.dtype = model::parse_dtype(section->get_string("dtype", "float32"));
  const std::string path = section->at("path").text();
  state.model = model::load_model(path, options);
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
