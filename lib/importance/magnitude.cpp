// magnitude: the norm of a group's weights, ‖W_g‖_p = (Σ_{w∈g} |w|^p)^{1/p} for p = 1 or 2, over
// every slice the group owns (biases and norm weights included). Needs no data: the classic
// data-free baseline (e.g. Li et al. 2017's filter norms, applied to transformer structures).
#include <cmath>

#include "importance/estimators.h"

namespace secateur::importance {
namespace {

class Magnitude : public Estimator {
 public:
  explicit Magnitude(const EstimatorOptions& o) : l1_(o.norm == "l1") {}

  std::string name() const override { return "magnitude"; }
  bool needs_data() const override { return false; }
  std::set<GroupKind> supported() const override { return every_group_kind(); }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    torch::NoGradGuard no_grad;
    const bool l1 = l1_;
    auto element = [&](const std::string& name, int64_t) {
      const torch::Tensor w = ctx.model.hf_parameter(name).detach().to(torch::kFloat);
      return l1 ? w.abs() : w * w;
    };
    double (*identity)(double) = [](double v) { return v; };
    double (*root)(double) = [](double v) { return std::sqrt(v); };
    return sum_over_units(ctx, element, l1 ? identity : root);
  }

 private:
  bool l1_;
};

}  // namespace

std::unique_ptr<Estimator> make_magnitude(const EstimatorOptions& options) { return std::make_unique<Magnitude>(options); }

}  // namespace secateur::importance
