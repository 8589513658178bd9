#include "dist/dist.h"

#include <algorithm>
#include <exception>
#include <map>
#include <mutex>
#include <utility>

#include "util/log.h"

namespace secateur::dist {

namespace {

std::mutex current_mutex;
std::shared_ptr<ProcessGroup> current_group;

// One bucket flattened into a buffer on the group's device, with the way back.
struct FlatBucket {
  std::vector<size_t> members;
  torch::Tensor buffer;
};

FlatBucket flatten(const ProcessGroup& group, const std::vector<torch::Tensor>& tensors, std::vector<size_t> members) {
  std::vector<torch::Tensor> flat;
  flat.reserve(members.size());
  for (size_t i : members) flat.push_back(tensors[i].reshape({-1}));
  torch::Tensor buffer = flat.size() == 1 ? flat.front().contiguous() : torch::cat(flat);
  // A fresh buffer: the collective must never write into the caller's tensors directly (views,
  // non-contiguous storage), and Gloo wants CPU tensors.
  if (buffer.device() != group.device()) buffer = buffer.to(group.device());
  else if (members.size() == 1) buffer = buffer.clone();
  return {std::move(members), buffer};
}

void unflatten(const FlatBucket& bucket, std::vector<torch::Tensor>& tensors) {
  int64_t offset = 0;
  for (size_t i : bucket.members) {
    auto& t = tensors[i];
    const int64_t n = t.numel();
    t.copy_(bucket.buffer.narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace

std::shared_ptr<ProcessGroup> current() {
  std::lock_guard<std::mutex> lock(current_mutex);
  return current_group;
}

int64_t rank() {
  auto g = current();
  return g ? g->rank() : 0;
}

int64_t world_size() {
  auto g = current();
  return g ? g->size() : 1;
}

bool is_main() { return rank() == 0; }

bool owns(int64_t index) { return index % world_size() == rank(); }

void all_reduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one{tensor};
  all_reduce_sum(one);
}

void all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  auto g = current();
  if (g && g->size() > 1) all_reduce_sum(*g, tensors);
}

double sum_over_ranks(double value) {
  std::vector<double> one{value};
  sum_over_ranks(one);
  return one.front();
}

void sum_over_ranks(std::vector<double>& values) {
  auto g = current();
  if (!g || g->size() == 1 || values.empty()) return;
  auto t = torch::tensor(values, torch::kDouble).to(g->device());
  g->all_reduce_sum(t);
  t = t.to(torch::kCPU).contiguous();
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), values.begin());
}

bool any_rank(bool flag) { return sum_over_ranks(flag ? 1.0 : 0.0) > 0.0; }

void barrier() {
  auto g = current();
  if (g && g->size() > 1) g->barrier();
}

Session::Session(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {
  std::lock_guard<std::mutex> lock(current_mutex);
  previous_ = current_group;
  current_group = group_;
}

Session::~Session() {
  if (std::uncaught_exceptions() == 0) {
    try {
      group_->barrier();
    } catch (const std::exception& e) {
      log::warn(std::string("leaving the process group: ") + e.what());
    }
  }
  std::lock_guard<std::mutex> lock(current_mutex);
  current_group = previous_;
}

std::vector<std::vector<size_t>> plan_buckets(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) {
  // Open bucket per (dtype, device), in order of first appearance, so the plan is the same on
  // every rank that passes the same tensors.
  std::vector<std::vector<size_t>> buckets;
  std::map<std::pair<int, std::string>, std::pair<size_t, int64_t>> open;  // key → (bucket, bytes)
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const auto key = std::make_pair(static_cast<int>(t.scalar_type()), t.device().str());
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    auto it = open.find(key);
    if (it == open.end() || it->second.second + bytes > bucket_bytes) {
      buckets.push_back({i});
      open[key] = {buckets.size() - 1, bytes};
    } else {
      buckets[it->second.first].push_back(i);
      it->second.second += bytes;
    }
  }
  return buckets;
}

void all_reduce_sum(ProcessGroup& group, std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  std::vector<FlatBucket> buckets;
  std::vector<PendingCollective> pending;
  for (auto& members : plan_buckets(tensors, group.options().bucket_bytes)) {
    buckets.push_back(flatten(group, tensors, std::move(members)));
    pending.push_back(group.all_reduce_sum_async(buckets.back().buffer));
  }
  for (size_t b = 0; b < buckets.size(); ++b) {
    pending[b].wait();
    unflatten(buckets[b], tensors);
  }
}

void broadcast(ProcessGroup& group, std::vector<torch::Tensor>& tensors, int64_t root) {
  torch::NoGradGuard no_grad;
  for (auto& members : plan_buckets(tensors, group.options().bucket_bytes)) {
    FlatBucket bucket = flatten(group, tensors, std::move(members));
    group.broadcast(bucket.buffer, root);
    unflatten(bucket, tensors);
  }
}

}  // namespace secateur::dist
