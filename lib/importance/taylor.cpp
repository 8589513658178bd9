// taylor: first-order Taylor importance of a group, as in LLM-Pruner (Ma et al. 2023, "LLM-Pruner: On the Structural Pruning of LLMs"):
// removing group g changes the loss by
//   ΔL(W_g) ≈ |(∂L/∂W_g)ᵀ W_g| = |Σ_{w∈g} w·∂L/∂w|          (vector-wise, the default)
// and the element-wise variant sums each parameter's own first-order estimate
//   Σ_{w∈g} |w·∂L/∂w|.
// ∂L/∂w is the gradient of the mean calibration loss over all batches (through the current
// masks), taken once for every parameter a requested group slices.
#include <cmath>
#include <map>

#include "dist/dist.h"
#include "importance/estimators.h"
#include "importance/loss.h"
#include "util/progress.h"

namespace secateur::importance {
namespace {

class Taylor : public Estimator {
 public:
  explicit Taylor(const EstimatorOptions& o) : element_(o.variant == "element") {}

  std::string name() const override { return "taylor"; }
  bool needs_data() const override { return true; }
  std::set<GroupKind> supported() const override { return every_group_kind(); }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    EvalScope eval(ctx.model);
    std::vector<std::string> names;
    std::set<std::string> seen;
    for (const model::Group& g : ctx.structure.groups)
      if (ctx.kinds.count(g.kind))
        for (const model::ParamSlice* s : unit_slices(ctx, g))
          if (seen.insert(s->hf_param_name).second) names.push_back(s->hf_param_name);
    std::vector<torch::Tensor> params;
    for (const std::string& n : names) params.push_back(ctx.model.hf_parameter(n));
    std::vector<torch::Tensor> grads(params.size());
    const model::Gates gates = leaf_gates(ctx, /*requires_grad=*/false);
    const model::Gates* through = ctx.gates ? &gates : nullptr;
    // This rank's batches; the mean is over every rank's, and the gradients are summed over ranks.
    const std::vector<data::Batch> mine = dist::owned(ctx.batches);
    Progress progress("taylor", static_cast<int64_t>(mine.size()), "batch");
    const double share = 1.0 / static_cast<double>(ctx.batches.size());
    for (size_t b = 0; b < mine.size(); ++b) {
      const torch::Tensor loss = calibration_loss(ctx.model, mine[b], through) * share;
      const std::vector<torch::Tensor> g = torch::autograd::grad({loss}, params, {}, false, false, true);
      for (size_t i = 0; i < params.size(); ++i) {
        if (!g[i].defined()) continue;
        const torch::Tensor gi = g[i].detach().to(torch::kFloat);
        grads[i] = grads[i].defined() ? grads[i] + gi : gi;
      }
      progress.update(static_cast<int64_t>(b + 1));
    }
    progress.finish();
    sum_over_ranks(grads, params);
    std::map<std::string, size_t> position;
    for (size_t i = 0; i < names.size(); ++i) position[names[i]] = i;
    torch::NoGradGuard no_grad;
    const bool element = element_;
    auto value = [&](const std::string& name, int64_t) -> torch::Tensor {
      const size_t i = position.at(name);
      if (!grads[i].defined()) return torch::zeros(params[i].sizes(), params[i].options().dtype(torch::kFloat));
      const torch::Tensor wg = params[i].detach().to(torch::kFloat) * grads[i];
      return element ? wg.abs() : wg;
    };
    double (*identity)(double) = [](double v) { return v; };
    double (*absolute)(double) = [](double v) { return std::fabs(v); };
    return sum_over_units(ctx, value, element ? identity : absolute);
  }

 private:
  // Under data parallelism, the gradient of the whole calibration set on every rank. A
  // parameter no batch of this rank reached adds a zero gradient (ranks must sum equal shapes).
  static void sum_over_ranks(std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>& params) {
    if (dist::world_size() == 1) return;
    for (size_t i = 0; i < grads.size(); ++i)
      if (!grads[i].defined()) grads[i] = torch::zeros(params[i].sizes(), params[i].options().dtype(torch::kFloat));
    dist::all_reduce_sum(grads);
  }

  bool element_;
};

}  // namespace

std::unique_ptr<Estimator> make_taylor(const EstimatorOptions& options) { return std::make_unique<Taylor>(options); }

}  // namespace secateur::importance
