// head_gradient: Michel et al. 2019, "Are Sixteen Heads Really Better than One?", head importance:
//   I_h = E_{x∼X} |∂L(x)/∂ξ_h|
// with ξ_h the gate multiplying head h's output, evaluated at the current mask (ξ = 1 for a
// dense model). The same definition scores every structure that has a gate: KV groups, FFN
// neurons, hidden dims, attention / MLP blocks and whole layers. By default the expectation runs
// over batches, one backward each, as Michel et al.'s released code accumulates
// |∂L_batch/∂ξ| per batch; `per_example` differentiates every example (batch row) on its own,
// the formula read literally with the absolute value inside the expectation over examples.
#include "dist/dist.h"
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
    // The units the expectation averages over: examples, or whole batches; this rank's share of
    // them (its batches), while the average divides by every rank's.
    std::vector<data::Batch> units;
    for (const data::Batch& b : dist::owned(ctx.batches))
      if (per_example_)
        for (int64_t row = 0; row < b.size(); ++row) units.push_back(example(b, row));
      else
        units.push_back(b);
    const int64_t examples = unit_count(ctx.batches);
    Progress progress("head_gradient", static_cast<int64_t>(units.size()), per_example_ ? "ex" : "batch");
    int64_t done = 0;
    for (const data::Batch& unit : units) {
      const torch::Tensor loss = calibration_loss(ctx.model, unit, &gates);
      const std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, leaves, {}, false, false, true);
      for (size_t i = 0; i < leaves.size(); ++i)
        if (grads[i].defined()) sums[i] += grads[i].detach().abs().to(torch::kDouble);
      progress.update(++done);
    }
    progress.finish();
    dist::all_reduce_sum(sums);
    Scores scores;
    for (size_t i = 0; i < leaves.size(); ++i)
      scores.set(where[i].first, where[i].second, (sums[i] / static_cast<double>(std::max<int64_t>(examples, 1))).reshape({-1}));
    return scores;
  }

 private:
  int64_t unit_count(const std::vector<data::Batch>& batches) const {
    if (!per_example_) return static_cast<int64_t>(batches.size());
    int64_t rows = 0;
    for (const data::Batch& b : batches) rows += b.size();
    return rows;
  }

  bool per_example_;
};

}  // namespace

std::unique_ptr<Estimator> make_head_gradient(const EstimatorOptions& o) {
  return std::make_unique<HeadGradient>(o.per_example);
}

}  // namespace secateur::importance
