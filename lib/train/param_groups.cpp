#include "train/param_groups.h"

#include <regex>

#include "train/fused_adamw.h"
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

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<OptimizerGroup>& groups,
                                                        const OptimizerOptions& oo) {
  std::vector<torch::optim::OptimizerParamGroup> pgs;
  for (const auto& g : groups) {
    if (oo.kind == OptimizerKind::adamw) {
      // AdamW: decoupled decay p ← p·(1 − lr·wd), then Adam's update (Loshchilov & Hutter);
      // FusedAdamW runs it as one multi-tensor kernel per group on a GPU (train/fused_adamw.h).
      auto opts = std::make_unique<torch::optim::AdamWOptions>(g.lr);
      opts->betas(std::make_tuple(oo.beta1, oo.beta2)).eps(oo.eps).weight_decay(g.weight_decay);
      pgs.emplace_back(g.params, std::move(opts));
    } else {
      // torch::optim::SGD: weight decay is L2 (added to the gradient), as torch.optim.SGD.
      auto opts = std::make_unique<torch::optim::SGDOptions>(g.lr);
      opts->momentum(oo.momentum).nesterov(oo.nesterov).weight_decay(g.weight_decay);
      pgs.emplace_back(g.params, std::move(opts));
    }
  }
  if (oo.kind == OptimizerKind::adamw)
    return std::make_unique<FusedAdamW>(std::move(pgs), torch::optim::AdamWOptions(oo.lr));
  return std::make_unique<torch::optim::SGD>(std::move(pgs), torch::optim::SGDOptions(oo.lr));
}

}  // namespace secateur::train
