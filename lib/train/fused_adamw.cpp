#include "train/fused_adamw.h"

#include <torch/version.h>

#include <map>
#include <tuple>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define SECATEUR_HAS_FUSED_ADAMW 1
#else
#define SECATEUR_HAS_FUSED_ADAMW 0
#endif

namespace secateur::train {

bool FusedAdamW::kernel_available() { return SECATEUR_HAS_FUSED_ADAMW != 0; }

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable(true);
    loss = closure();
  }
  last_step_fused_ = fused_step();
  if (!last_step_fused_) torch::optim::AdamW::step(nullptr);
  return loss;
}

#if TORCH_VERSION_MAJOR >= 2
torch::optim::AdamWParamState& adamw_state(torch::optim::Optimizer& optimizer, const torch::Tensor& p) {
  auto& slot = optimizer.state()[p.unsafeGetTensorImpl()];
  if (!slot) {
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(0);
    s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    slot = std::move(s);
  }
  return static_cast<torch::optim::AdamWParamState&>(*slot);
}
#endif

#if SECATEUR_HAS_FUSED_ADAMW

namespace {

// The kernel takes lists of tensors on one CUDA device, all of one dtype, dense.
bool kernel_takes(const torch::Tensor& p, const torch::Tensor& g, const torch::Device& device, torch::ScalarType dtype) {
  return p.device() == device && g.device() == device && p.scalar_type() == dtype && g.scalar_type() == dtype &&
         p.is_contiguous() && g.is_contiguous() && !g.is_sparse();
}

}  // namespace

bool FusedAdamW::fused_step() {
  // First pass: refuse (and change nothing) unless every parameter with a gradient fits.
  torch::Device device(torch::kCPU);
  torch::ScalarType dtype = torch::kFloat;
  bool first = true;
  for (auto& group : param_groups()) {
    if (static_cast<const torch::optim::AdamWOptions&>(group.options()).amsgrad()) return false;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (first) {
        device = p.device();
        dtype = p.scalar_type();
        first = false;
      }
      if (!device.is_cuda() || !kernel_takes(p, p.grad(), device, dtype)) return false;
    }
  }
  if (first) return false;  // no gradients at all: the base step is a no-op anyway

  torch::NoGradGuard no_grad;
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    // Parameters are grouped by their step count (equal unless some had no gradient on a step):
    // the kernel reads one step tensor per parameter.
    std::map<int64_t, std::tuple<std::vector<torch::Tensor>, std::vector<torch::Tensor>, std::vector<torch::Tensor>,
                                 std::vector<torch::Tensor>>> by_step;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& s = adamw_state(*this, p);
      s.step(s.step() + 1);
      auto& lists = by_step[s.step()];
      std::get<0>(lists).push_back(p);
      std::get<1>(lists).push_back(p.grad());
      std::get<2>(lists).push_back(s.exp_avg());
      std::get<3>(lists).push_back(s.exp_avg_sq());
    }
    for (auto& [step, lists] : by_step) {
      // One float step tensor on the device, shared by the list: the kernel only reads it.
      const torch::Tensor t = torch::full({}, static_cast<double>(step), torch::TensorOptions().dtype(torch::kFloat).device(device));
      const std::vector<torch::Tensor> steps(std::get<0>(lists).size(), t);
      at::_fused_adamw_(std::get<0>(lists), std::get<1>(lists), std::get<2>(lists), std::get<3>(lists), {}, steps, o.lr(),
                        std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(), o.eps(), /*amsgrad=*/false,
                        /*maximize=*/false, c10::nullopt, c10::nullopt);
    }
  }
  return true;
}

#else

bool FusedAdamW::fused_step() { return false; }

#endif

torch::Tensor clip_grad_norm(std::vector<torch::Tensor>& grads, double max_norm) {
  if (grads.empty()) return torch::zeros({});
  torch::NoGradGuard no_grad;
#if SECATEUR_HAS_FUSED_ADAMW
  std::vector<torch::Tensor> norms = at::_foreach_norm(grads, 2);
  for (auto& n : norms) n = n.to(torch::kFloat);
#else
  std::vector<torch::Tensor> norms;
  for (const auto& g : grads) norms.push_back(g.to(torch::kFloat).norm(2));
#endif
  const torch::Tensor total = torch::stack(norms).norm(2);
  if (max_norm > 0) {
    const torch::Tensor coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
#if SECATEUR_HAS_FUSED_ADAMW
    bool one_dtype = true;
    for (const auto& g : grads) one_dtype = one_dtype && g.scalar_type() == grads.front().scalar_type();
    if (one_dtype) {
      at::_foreach_mul_(grads, coef.to(grads.front().scalar_type()));
      return total;
    }
#endif
    for (auto& g : grads) g.mul_(coef.to(g.scalar_type()));
  }
  return total;
}

}  // namespace secateur::train
