#include "dist/data_parallel.h"

#include "dist/dist.h"
#include "model/model.h"

namespace secateur::dist {

DataParallelSync::DataParallelSync(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {}

int64_t DataParallelSync::rank() const { return group_->rank(); }
int64_t DataParallelSync::world_size() const { return group_->size(); }

void DataParallelSync::synchronize(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  if (group_->size() == 1 || params.empty()) return;

  // Which parameters have a gradient on any rank.
  auto has_grad = torch::zeros({static_cast<int64_t>(params.size())}, torch::kFloat);
  auto* flags = has_grad.data_ptr<float>();
  for (size_t i = 0; i < params.size(); ++i) flags[i] = params[i].grad().defined() ? 1.0f : 0.0f;
  auto on_device = has_grad.to(group_->device());
  group_->all_reduce_sum(on_device);
  has_grad = on_device.to(torch::kCPU);
  flags = has_grad.data_ptr<float>();

  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (flags[i] == 0.0f) continue;
    auto p = params[i];  // a handle: mutable_grad() sets the parameter's own gradient
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  all_reduce_sum(*group_, grads);
  const double inverse = 1.0 / static_cast<double>(group_->size());
  for (auto& g : grads) g.mul_(inverse);
}

std::vector<double> DataParallelSync::all_values(double value) {
  auto slots = torch::zeros({group_->size()}, torch::TensorOptions().dtype(torch::kDouble).device(group_->device()));
  slots[group_->rank()].fill_(value);
  group_->all_reduce_sum(slots);
  slots = slots.to(torch::kCPU).contiguous();
  return std::vector<double>(slots.data_ptr<double>(), slots.data_ptr<double>() + slots.numel());
}

void DataParallelSync::broadcast_from_main(const std::vector<torch::Tensor>& params) {
  if (group_->size() == 1 || params.empty()) return;
  std::vector<torch::Tensor> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.detach());
  broadcast(*group_, values, 0);
}

std::shared_ptr<train::GradientSync> make_gradient_sync(model::Model& model) {
  auto group = current();
  if (!group || group->size() == 1) return std::make_shared<train::GradientSync>();
  auto sync = std::make_shared<DataParallelSync>(group);
  // Parameters only: the models' buffers (rotary tables, position ids) are functions of the
  // configuration, identical everywhere already.
  sync->broadcast_from_main(model.parameters());
  return sync;
}

}  // namespace secateur::dist
