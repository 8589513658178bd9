// train::FusedAdamW is torch::optim::AdamW's update: on the CPU (the base step) bitwise, on a GPU
// (the multi-tensor kernel, LibTorch ≥ 2.1) to fp32 rounding; clip_grad_norm is
// torch.nn.utils.clip_grad_norm_.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "train/fused_adamw.h"

namespace secateur::train {
namespace {

struct OptimizerRun {
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::AdamW> optimizer;
};

// Two groups (decayed and not, different learning rates) over three tensors of odd sizes, so the
// kernel's chunking and per-group options both matter.
template <class Optimizer>
OptimizerRun make_run(torch::Device device) {
  torch::manual_seed(7);
  OptimizerRun r;
  for (auto shape : std::vector<std::vector<int64_t>>{{37, 5}, {1000}, {3, 3, 3}})
    r.params.push_back(torch::randn(shape).to(device).requires_grad_(true));
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto decayed = std::make_unique<torch::optim::AdamWOptions>(1e-2);
  decayed->betas({0.9, 0.95}).eps(1e-6).weight_decay(0.1);
  groups.emplace_back(std::vector<torch::Tensor>{r.params[0], r.params[1]}, std::move(decayed));
  auto plain = std::make_unique<torch::optim::AdamWOptions>(3e-3);
  plain->weight_decay(0.0);
  groups.emplace_back(std::vector<torch::Tensor>{r.params[2]}, std::move(plain));
  r.optimizer = std::make_unique<Optimizer>(std::move(groups), torch::optim::AdamWOptions(1e-3));
  return r;
}

// Five steps of a fixed quadratic-plus-sine loss; the gradients differ per step.
void train(OptimizerRun& r) {
  for (int step = 0; step < 5; ++step) {
    r.optimizer->zero_grad();
    torch::Tensor loss = torch::zeros({}, r.params[0].options());
    for (const auto& p : r.params) loss = loss + (p * p).sum() + torch::sin(p * (step + 1)).sum();
    loss.backward();
    r.optimizer->step();
  }
}

TEST(FusedAdamW, EqualsTorchAdamWBitwiseOnTheCpu) {
  OptimizerRun fused = make_run<FusedAdamW>(torch::kCPU), reference = make_run<torch::optim::AdamW>(torch::kCPU);
  train(fused);
  train(reference);
  EXPECT_FALSE(static_cast<FusedAdamW&>(*fused.optimizer).last_step_fused());
  for (size_t i = 0; i < fused.params.size(); ++i) EXPECT_TRUE(torch::equal(fused.params[i], reference.params[i])) << i;
}

TEST(FusedAdamW, KernelMatchesTorchAdamWOnAGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (!FusedAdamW::kernel_available()) GTEST_SKIP() << "this LibTorch has no _fused_adamw_ (needs 2.1)";
  OptimizerRun fused = make_run<FusedAdamW>(torch::kCUDA), reference = make_run<torch::optim::AdamW>(torch::kCUDA);
  std::vector<torch::Tensor> initial;
  for (const auto& p : fused.params) initial.push_back(p.detach().clone());
  train(fused);
  train(reference);
  EXPECT_TRUE(static_cast<FusedAdamW&>(*fused.optimizer).last_step_fused());
  for (size_t i = 0; i < fused.params.size(); ++i) {
    EXPECT_GT((fused.params[i] - initial[i]).abs().max().item<double>(), 1e-3) << "did not move: " << i;
    EXPECT_LT((fused.params[i] - reference.params[i]).abs().max().item<double>(), 1e-5) << i;
  }
#if TORCH_VERSION_MAJOR >= 2
  // The state is the base class's (keyed by TensorImpl in 2.x): the step counts a checkpoint reads.
  for (const auto& p : fused.params) {
    auto& s = static_cast<torch::optim::AdamWParamState&>(*fused.optimizer->state().at(p.unsafeGetTensorImpl()));
    EXPECT_EQ(s.step(), 5);
  }
#endif
}

TEST(ClipGradNorm, ReturnsTheGlobalNormAndScalesToMaxNorm) {
  std::vector<torch::Tensor> grads{torch::full({4}, 3.0), torch::full({2, 2}, 4.0)};  // ‖·‖ = √(4·9 + 4·16) = 10
  const torch::Tensor norm = clip_grad_norm(grads, 5.0);
  EXPECT_NEAR(norm.item<double>(), 10.0, 1e-6);
  const double after = std::sqrt(grads[0].pow(2).sum().item<double>() + grads[1].pow(2).sum().item<double>());
  EXPECT_NEAR(after, 5.0 * 10.0 / (10.0 + 1e-6), 1e-5);
  std::vector<torch::Tensor> small{torch::full({3}, 0.1)};
  clip_grad_norm(small, 5.0);  // under max_norm: unchanged (the coefficient clamps at 1)
  EXPECT_TRUE(torch::allclose(small[0], torch::full({3}, 0.1)));
}

}  // namespace
}  // namespace secateur::train
