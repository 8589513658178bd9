#include "eval/cost.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#ifdef SECATEUR_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "util/error.h"

namespace secateur::eval {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
}

void reset_peak_memory(const torch::Device& device) {
#ifdef SECATEUR_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#endif
}

int64_t peak_memory_bytes(const torch::Device& device) {
#ifdef SECATEUR_WITH_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    // Entry 0 is StatType::AGGREGATE (all pools) in every LibTorch; the enum itself moved from
    // c10::cuda::CUDACachingAllocator (1.13) to c10::CachingAllocator (2.x), so it is not named.
    return stats.allocated_bytes[0].peak;
  }
#endif
  return -1;
}

LatencyResult measure_latency(model::Model& model, const LatencyOptions& o) {
  if (o.batch_size < 1 || o.seq_len < 1 || o.repeats < 1)
    throw UserError("latency: batch_size, seq_len and repeats must be ≥ 1");
  const int64_t max_positions = model.config().max_position_embeddings;
  if (max_positions > 0 && o.seq_len > max_positions)
    throw UserError("latency seq_len " + std::to_string(o.seq_len) + " is longer than the model's " +
                    std::to_string(max_positions) + " positions");
  torch::NoGradGuard no_grad;
  model.eval();
  const auto device = model.device();
  auto generator = at::detail::createCPUGenerator(20261124);
  auto ids = torch::randint(0, model.config().vocab_size, {o.batch_size, o.seq_len}, generator, torch::kLong).to(device);
  for (int i = 0; i < o.warmup; ++i) model.forward(ids);
  synchronize(device);
  reset_peak_memory(device);
  std::vector<double> ms;
  for (int i = 0; i < o.repeats; ++i) {
    auto start = std::chrono::steady_clock::now();
    model.forward(ids);
    synchronize(device);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  LatencyResult r;
  r.median_ms = median(ms);
  r.min_ms = *std::min_element(ms.begin(), ms.end());
  r.max_ms = *std::max_element(ms.begin(), ms.end());
  r.tokens_per_s = static_cast<double>(o.batch_size * o.seq_len) / (r.median_ms / 1000.0);
  r.peak_memory_bytes = peak_memory_bytes(device);
  r.batch_size = o.batch_size;
  r.seq_len = o.seq_len;
  r.repeats = o.repeats;
  return r;
}

}  // namespace secateur::eval
