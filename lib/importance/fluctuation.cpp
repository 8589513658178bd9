// fluctuation: FLAP (An et al. 2024, "Fluctuation-based Adaptive Structured Pruning for Large
// Language Models"). For input channel k of an output projection (o_proj for heads, down_proj
// for FFN neurons) the fluctuation metric is
//   S_k = (1 / (N − 1)) Σ_n (X_{n,k} − X̄_k)² · ‖W_{:,k}‖₂²
// (the sample variance of the channel over the N calibration tokens times the squared norm of
// the weight column it multiplies): how much the output moves when the channel is replaced by
// its mean X̄_k, which the bias compensation then adds back (surgery/compensation.h). A head or
// neuron scores the sum over its channels (a KV unit in GQA group mode: over all its heads').
// Per-layer standardisation for FLAP's adaptive allocation is the `standardize` option.
#include "importance/activation_stats.h"
#include "importance/estimators.h"

namespace secateur::importance {
namespace {

class Fluctuation : public Estimator {
 public:
  std::string name() const override { return "fluctuation"; }
  bool needs_data() const override { return true; }
  std::set<GroupKind> supported() const override { return {GroupKind::head, GroupKind::kv_group, GroupKind::ffn_neuron}; }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    const UnitActivations seen = unit_activations(ctx, "fluctuation");
    const ActivationStats& stats = seen.stats;
    torch::NoGradGuard no_grad;
    // Only slices along a projection's input dim are channels; q/k/v/up rows are not.
    auto value = [&](const std::string& name, int64_t dim) -> torch::Tensor {
      if (!stats.seen(name) || stats.channel(name).in_dim != dim) return {};
      const torch::Tensor w = ctx.model.hf_parameter(name).detach().to(torch::kDouble);
      const torch::Tensor var = stats.variance(name).to(w.device());
      return dim == 1 ? w.pow(2) * var.unsqueeze(0) : w.pow(2) * var.unsqueeze(1);
    };
    Scores scores = sum_over_units(ctx, value, [](double v) { return v; });
    seen.record_channel_means(scores);
    return scores;
  }
};

}  // namespace

std::unique_ptr<Estimator> make_fluctuation(const EstimatorOptions&) { return std::make_unique<Fluctuation>(); }

}  // namespace secateur::importance
