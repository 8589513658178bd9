#include "train/cuda_graph_step.h"

#include <torch/version.h>

#include <stdexcept>
#include <utility>

#include "train/fused_adamw.h"

#if defined(SECATEUR_TORCH_CUDA) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))
#define SECATEUR_CUDA_GRAPHS 1
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "eval/graph_capture.h"
#else
#define SECATEUR_CUDA_GRAPHS 0
#endif

namespace secateur::train {

bool CudaGraphStep::compiled() { return SECATEUR_CUDA_GRAPHS != 0; }

std::string CudaGraphStep::obstacle(const StepTraits& s) {
  if (!s.device.is_cuda()) return "the model is not on a GPU";
  if (!compiled()) return "this build has no CUDA graphs (LibTorch >= 2.4 built with CUDA)";
  if (s.extensions) return "learned masks and distillation change the step from the host";
  if (s.world_size > 1) return "data parallelism synchronises gradients between processes";
  if (!s.adamw) return "only AdamW has a capturable fused kernel";
  if (s.maximize) return "a parameter group is maximised";
  return "";
}

#if SECATEUR_CUDA_GRAPHS

namespace {

using eval::graph_capture::copy_into;
using eval::graph_capture::signature;
using GraphSafeScope = eval::graph_capture::SafeScope;

}  // namespace

struct CudaGraphStep::Impl {
  Impl(torch::optim::Optimizer& o, double max_norm, int64_t accumulation, MicroStep m, torch::Device d)
      : optimizer(o), max_grad_norm(max_norm), accumulation(accumulation), micro(std::move(m)), device(d),
        side(c10::cuda::getStreamFromPool(false, d.index())) {}

  // The optimiser's per-group lists, fixed when the first step has made every gradient.
  struct Group {
    size_t index = 0;  // in optimizer.param_groups()
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    torch::Tensor lr, step;  // 0-d float on the device
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  };

  torch::optim::Optimizer& optimizer;
  double max_grad_norm;
  int64_t accumulation;
  MicroStep micro;
  torch::Device device;
  c10::cuda::CUDAStream side;

  std::vector<Group> groups;
  std::vector<torch::Tensor> all_grads;
  StepSums sums;
  torch::Tensor grad_norm;
  data::Batch inputs;  // the captured graph's input buffers
  std::vector<int64_t> captured_shapes;
  std::unique_ptr<at::cuda::CUDAGraph> micro_graph, optimizer_graph;
  int64_t steps_done = 0;
  bool usable = true, last_replayed = false;
  std::string reason;

  static constexpr int64_t kEagerSteps = 2;

  void make_sums() {
    auto o = torch::TensorOptions().device(device);
    sums = {torch::zeros({}, o.dtype(torch::kDouble)), torch::zeros({}, o.dtype(torch::kLong)),
            torch::zeros({}, o.dtype(torch::kBool))};
    grad_norm = torch::zeros({}, o.dtype(torch::kFloat));
  }

  // After the first backward: every parameter with a gradient, its AdamW state, per group.
  void collect_groups() {
    auto& pgs = optimizer.param_groups();
    for (size_t gi = 0; gi < pgs.size(); ++gi) {
      const auto& o = static_cast<const torch::optim::AdamWOptions&>(pgs[gi].options());
      if (o.amsgrad()) throw std::runtime_error("amsgrad has no fused kernel");
      Group g;
      g.index = gi;
      g.beta1 = std::get<0>(o.betas());
      g.beta2 = std::get<1>(o.betas());
      g.eps = o.eps();
      g.weight_decay = o.weight_decay();
      int64_t host_step = -1;
      for (auto& p : pgs[gi].params()) {
        if (!p.grad().defined()) continue;
        auto& s = adamw_state(optimizer, p);
        if (host_step >= 0 && s.step() != host_step)
          throw std::runtime_error("parameters of one group are at different optimiser steps");
        host_step = s.step();
        g.params.push_back(p);
        g.grads.push_back(p.grad());
        g.exp_avgs.push_back(s.exp_avg());
        g.exp_avg_sqs.push_back(s.exp_avg_sq());
        all_grads.push_back(p.grad());
      }
      if (g.params.empty()) continue;
      auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
      g.step = torch::full({}, static_cast<double>(host_step), f);
      g.lr = torch::zeros({}, f);
      g.steps.assign(g.params.size(), g.step);  // the kernel reads one step tensor per parameter
      groups.push_back(std::move(g));
    }
  }

  // Clip, AdamW, zero the gradients: the optimiser graph's body (also run eagerly).
  void optimizer_body() {
    torch::NoGradGuard no_grad;
    grad_norm.copy_(clip_grad_norm(all_grads, max_grad_norm));
    for (Group& g : groups) {
      g.step.add_(1);
      at::_fused_adamw_(g.params, g.grads, g.exp_avgs, g.exp_avg_sqs, {}, g.steps, g.lr, g.beta1, g.beta2, g.weight_decay,
                        g.eps, /*amsgrad=*/false, /*maximize=*/false, c10::nullopt, c10::nullopt);
    }
    at::_foreach_zero_(all_grads);
  }

  // What the host keeps of the optimiser: step counts (checkpoints) and this step's rates.
  void set_rates() {
    auto& pgs = optimizer.param_groups();
    for (Group& g : groups)
      g.lr.fill_(static_cast<const torch::optim::AdamWOptions&>(pgs[g.index].options()).lr());
  }
  void count_step() {
    for (Group& g : groups)
      for (auto& p : g.params) {
        auto& s = adamw_state(optimizer, p);
        s.step(s.step() + 1);
      }
  }

  template <typename Body>
  std::unique_ptr<at::cuda::CUDAGraph> capture(Body&& body) {
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    graph->capture_begin();
    try {
      body();
    } catch (...) {
      try {
        graph->capture_end();
      } catch (...) {
      }
      throw;
    }
    graph->capture_end();
    return graph;
  }

  void eager_step(const std::vector<data::Batch>& batches, bool first) {
    for (size_t k = 0; k < batches.size(); ++k) {
      GraphSafeScope scope(/*error_on_sync=*/first && k == 0);
      micro(batches[k], sums);
    }
    if (groups.empty()) collect_groups();
    set_rates();
    optimizer_body();
  }

  void replay_step(const std::vector<data::Batch>& batches) {
    for (const data::Batch& b : batches) {
      copy_into(inputs, b);
      micro_graph->replay();
    }
    set_rates();
    optimizer_graph->replay();
  }

  void capture_step(const std::vector<data::Batch>& batches) {
    inputs = eval::graph_capture::input_buffers(batches.front());
    captured_shapes = signature(inputs);
    // The sums are zero here (reset before every step), so a capture's add is the first add.
    {
      GraphSafeScope scope(false);
      micro_graph = capture([&] { micro(inputs, sums); });
    }
    optimizer_graph = capture([&] { optimizer_body(); });
    replay_step(batches);
  }

  std::optional<Result> step(const std::vector<data::Batch>& host_batches) {
    const auto outer = c10::cuda::getCurrentCUDAStream(device.index());
    at::cuda::CUDAEvent ready;
    ready.record(outer);
    c10::cuda::CUDAStreamGuard guard(side);
    ready.block(side);
    if (!sums.loss.defined()) make_sums();
    for (torch::Tensor* t : {&sums.loss, &sums.tokens, &sums.nonfinite}) t->zero_();
    std::vector<data::Batch> batches;
    for (const data::Batch& b : host_batches) batches.push_back(b.to(device));

    last_replayed = false;
    if (steps_done < kEagerSteps) {
      try {
        eager_step(batches, steps_done == 0);
      } catch (const std::exception& e) {
        if (steps_done > 0) throw;
        // Nothing was applied (the optimiser had not run): the caller redoes the step its way.
        usable = false;
        reason = std::string("the step cannot be captured: ") + e.what();
        for (auto& group : optimizer.param_groups())
          for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
        groups.clear();
        all_grads.clear();
        return std::nullopt;
      }
    } else {
      // A graph is recorded for one shape: a step whose micro-batches differ from it (or from each
      // other, before a capture) runs eagerly through the same code.
      const std::vector<int64_t> shape = micro_graph ? captured_shapes : signature(batches.front());
      bool same = true;
      for (const data::Batch& b : batches) same = same && signature(b) == shape;
      if (!same) eager_step(batches, false);
      else if (!micro_graph) capture_step(batches);
      else replay_step(batches);
      last_replayed = same;
    }
    count_step();
    ++steps_done;
    at::cuda::CUDAEvent done;
    done.record(side);
    done.block(outer);
    return Result{sums.loss, sums.tokens, sums.nonfinite, grad_norm};
  }
};

CudaGraphStep::CudaGraphStep(torch::optim::Optimizer& optimizer, double max_grad_norm, int64_t accumulation, MicroStep micro,
                             torch::Device device)
    : impl_(std::make_unique<Impl>(optimizer, max_grad_norm, accumulation, std::move(micro), device)) {
  if (!device.is_cuda()) throw std::invalid_argument("CudaGraphStep needs a CUDA device");
}

std::optional<CudaGraphStep::Result> CudaGraphStep::step(const std::vector<data::Batch>& micro_batches) {
  if (!impl_->usable) return std::nullopt;
  return impl_->step(micro_batches);
}
bool CudaGraphStep::usable() const { return impl_->usable; }
bool CudaGraphStep::replaying() const { return impl_->last_replayed; }
const std::string& CudaGraphStep::reason() const { return impl_->reason; }

#else

struct CudaGraphStep::Impl {
  std::string reason = "this build has no CUDA graphs (LibTorch >= 2.4 with CUDA)";
};

CudaGraphStep::CudaGraphStep(torch::optim::Optimizer&, double, int64_t, MicroStep, torch::Device)
    : impl_(std::make_unique<Impl>()) {
  throw std::invalid_argument(impl_->reason);
}
std::optional<CudaGraphStep::Result> CudaGraphStep::step(const std::vector<data::Batch>&) { return std::nullopt; }
bool CudaGraphStep::usable() const { return false; }
bool CudaGraphStep::replaying() const { return false; }
const std::string& CudaGraphStep::reason() const { return impl_->reason; }

#endif

CudaGraphStep::~CudaGraphStep() = default;

}  // namespace secateur::train
