#include "train/param_groups.h"

#include <regex>

#include "util/error.h"

namespace secateur::train {
namespace {

bool matches_any(const std::string& name, const std::vector<std::regex>& patterns) {
  for (const auto& p : patterns)
    if (std::regex_search(name, p)) return true;
  return false;
}

std::vector<std::regex> compile(const std::vector<std::string>& patterns, const std::string& key) {
  std::vector<std::regex> out;
  for (const auto& p : patterns) {
    try {
      out.emplace_back(p, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw UserError(key + ": '" + p + "' is not a valid regular expression (" + e.what() + ")");
    }
  }
  return out;
}

}  // namespace

TrainableParameters make_param_groups(model::Model& model, const TrainOptions& options,
                                      const std::vector<std::shared_ptr<Extension>>& extensions) {
  TrainableParameters out;
  const auto include = compile(options.freeze.patterns, "freeze.patterns");
  const auto exclude = compile(options.freeze.exclude, "freeze.exclude");
  if (options.freeze.mode == FreezeMode::patterns && include.empty())
    throw UserError(options.label + ": freeze mode 'patterns' needs at least one pattern in freeze.patterns");
  OptimizerGroup decay, no_decay;
  decay.name = "model.decay";
  no_decay.name = "model.no_decay";
  decay.lr = no_decay.lr = options.optimizer.lr;
  decay.weight_decay = options.optimizer.weight_decay;
  for (const auto& name : model.hf_names()) {
    torch::Tensor p = model.hf_parameter(name);
    bool trains = options.freeze.mode == FreezeMode::none ||
                  (options.freeze.mode == FreezeMode::patterns && matches_any(name, include));
    if (matches_any(name, exclude)) trains = false;
    p.set_requires_grad(trains);
    if (!trains) continue;
    out.model_trainable.push_back(name);
    OptimizerGroup& g = decays(name, options.optimizer.decay_embeddings) ? decay : no_decay;
    g.params.push_back(p);
    g.names.push_back(name);
  }
  for (OptimizerGroup* g : {&decay, &no_decay})
    if (!g->params.empty()) out.groups.push_back(std::move(*g));
  for (const auto& e : extensions) {
    for (auto& pg : e->param_groups()) {
      OptimizerGroup g;
      g.name = e->name() + "." + pg.name;
      g.lr = pg.lr < 0 ? options.optimizer.lr : pg.lr;
      g.weight_decay = pg.weight_decay;
      g.maximize = pg.maximize;
      for (size_t i = 0; i < pg.params.size(); ++i) {
        if (!pg.params[i].requires_grad())
          throw UserError(options.label + ": extension " + e->name() + " group " + pg.name + " has a tensor that does not require grad");
        g.params.push_back(pg.params[i]);
        g.names.push_back(g.name + "." + std::to_string(i));
      }
      if (!g.params.empty()) out.groups.push_back(std::move(g));
    }
  }
  for (const auto& g : out.groups)
    for (size_t i = 0; i < g.params.size(); ++i) {
      out.all_params.push_back(g.params[i]);
      out.all_names.push_back(g.names[i]);
    }
  if (out.all_params.empty())
    throw UserError(options.label + ": nothing to train (every model parameter is frozen and no extension has parameters)");
  return out;
}

}  // namespace secateur::train
