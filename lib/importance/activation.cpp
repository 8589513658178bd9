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
  std::set<GroupKind> supported() const override { return every_group_kind(); }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    const UnitActivations seen = unit_activations(ctx, "activation");
    const ActivationStats& stats = seen.stats;
    torch::NoGradGuard no_grad;
    auto value = [&](const std::string& name, int64_t) -> torch::Tensor {
      if (!stats.seen(name)) return {};
      const ActivationStats::Channel& c = stats.channel(name);
      const torch::Tensor w = ctx.model.hf_parameter(name).detach().to(torch::kDouble).abs();
      const torch::Tensor norm = c.sum_sq.sqrt().to(w.device());
      return c.in_dim == 1 ? w * norm.unsqueeze(0) : w * norm.unsqueeze(1);
    };
    Scores scores = sum_over_units(ctx, value, [](double v) { return v; });
    seen.record_channel_means(scores);
    return scores;
  }
};

}  // namespace

std::unique_ptr<Estimator> make_activation(const EstimatorOptions&) { return std::make_unique<Activation>(); }

}  // namespace secateur::importance
