// activation: Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
// Models"), whose score of a weight is
//   S_ij = |W_ij| · ‖X_j‖₂
// with ‖X_j‖₂ the ℓ2 norm of input feature j over all N·L calibration tokens, aggregated over a
// structured group as the sum of its weights' scores (Wanda-sp, as in FLAP's baselines). Only
// projection weights have inputs: biases, norm weights and embedding tables add nothing.
#include <cmath>

#include "importance/activation_stats.h"
#include "importance/estimators.h"

namespace secateur::importance {
namespace {

class Activation : public Estimator {
 public:
  std::string name() const override { return "activation"; }
  bool needs_data() const override { return true; }
  std::set<GroupKind> supported() const override {
    return {GroupKind::head, GroupKind::kv_group, GroupKind::ffn_neuron, GroupKind::hidden_dim,
            GroupKind::attn_block, GroupKind::mlp_block, GroupKind::layer};
  }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    std::set<std::string> weights;
    for (const model::Group& g : ctx.structure.groups)
      if (ctx.kinds.count(g.kind))
        for (const model::ParamSlice* s : unit_slices(ctx, g))
          if (ctx.model.hf_parameter(s->hf_param_name).dim() == 2) weights.insert(s->hf_param_name);
    ActivationStats stats(ctx.model, weights);
    const model::Gates gates = leaf_gates(ctx, false);
    stats.collect(ctx.model, ctx.batches, ctx.gates ? &gates : nullptr, "activation");
    torch::NoGradGuard no_grad;
    auto value = [&](const std::string& name, int64_t) -> torch::Tensor {
      if (!stats.seen(name)) return {};
      const ActivationStats::Channel& c = stats.channel(name);
      const torch::Tensor w = ctx.model.hf_parameter(name).detach().to(torch::kDouble).abs();
      const torch::Tensor norm = c.sum_sq.sqrt().to(w.device());
      return c.in_dim == 1 ? w * norm.unsqueeze(0) : w * norm.unsqueeze(1);
    };
    Scores scores = sum_over_units(ctx, value, [](double v) { return v; });
    for (const std::string& w : weights)
      if (stats.seen(w)) {
        scores.channel_means[w] = stats.channel(w).mean.to(torch::kCPU);
        scores.channel_in_dim[w] = stats.channel(w).in_dim;
      }
    return scores;
  }
};

}  // namespace

std::unique_ptr<Estimator> make_activation(const EstimatorOptions&) { return std::make_unique<Activation>(); }

}  // namespace secateur::importance
