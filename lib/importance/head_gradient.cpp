// head_gradient: Michel et al. 2019, "Are Sixteen Heads Really Better than One?", head importance:
//   I_h = E_{x∼X} |∂L(x)/∂ξ_h|
// with ξ_h the gate multiplying head h's output, evaluated at the current mask (ξ = 1 for a
// dense model). The same definition scores every structure that has a gate: KV groups, FFN
// neurons, hidden dims, attention / MLP blocks and whole layers. By default the expectation runs
// over batches, one backward each, as Michel et al.'s released code accumulates
// |∂L_batch/∂ξ| per batch; `per_example` differentiates every example (batch row) on its own,
// the formula read literally with the absolute value inside the expectation over examples.
#include "importance/estimators.h"
#include "importance/loss.h"
#include "util/progress.h"

namespace secateur::importance {
namespace {

class HeadGradient : public Estimator {
 public:
  explicit HeadGradient(bool per_example) : per_example_(per_example) {}
  std::string name() const override { return "head_gradient"; }
  bool needs_data() const override { return true; }
  std::set<GroupKind> supported() const override { return every_group_kind(); }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    EvalScope eval(ctx.model);
    const model::ModelConfig& c = ctx.model.config();
    model::Gates gates = leaf_gates(ctx, /*requires_grad=*/true);
    // The leaves to differentiate, and where each one's |gradient| accumulates.
    std::vector<torch::Tensor> leaves, sums;
    std::vector<std::pair<GroupKind, int64_t>> where;
    for (GroupKind kind : ctx.kinds)
      for (int64_t l = 0; l < (kind == GroupKind::hidden_dim ? 1 : c.num_layers); ++l) {
        torch::Tensor* t = gate_slot(gates, kind, l);
        if (!t || !t->defined()) continue;
        leaves.push_back(*t);
        sums.push_back(torch::zeros(t->sizes(), t->options().dtype(torch::kDouble).requires_grad(false)));
        where.emplace_back(kind, l);
      }
    // The units the expectation averages over: examples, or whole batches.
    std::vector<data::Batch> units;
    for (const data::Batch& b : ctx.batches)
      if (per_example_)
        for (int64_t row = 0; row < b.size(); ++row) units.push_back(example(b, row));
      else
        units.push_back(b);
    const int64_t examples = static_cast<int64_t>(units.size());
    Progress progress("head_gradient", examples, per_example_ ? "ex" : "batch");
    int64_t done = 0;
    for (const data::Batch& unit : units) {
      const torch::Tensor loss = calibration_loss(ctx.model, unit, &gates);
      const std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, leaves, {}, false, false, true);
      for (size_t i = 0; i < leaves.size(); ++i)
        if (grads[i].defined()) sums[i] += grads[i].detach().abs().to(torch::kDouble);
      progress.update(++done);
    }
    progress.finish();
    Scores scores;
    for (size_t i = 0; i < leaves.size(); ++i)
      scores.set(where[i].first, where[i].second, (sums[i] / static_cast<double>(std::max<int64_t>(examples, 1))).reshape({-1}));
    return scores;
  }

 private:
  bool per_example_;
};

}  // namespace

std::unique_ptr<Estimator> make_head_gradient(const EstimatorOptions& o) {
  return std::make_unique<HeadGradient>(o.per_example);
}

}  // namespace secateur::importance
