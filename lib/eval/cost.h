#pragma once
// What a model costs to run: analytic (parameters, FLOPs per token — from model/prunable.h) and
// measured (latency and throughput of a forward pass, peak GPU memory). Measurements warm up
// first, synchronise CUDA around each repeat, and report the median, so that pruned/dense ratios
// taken in one run are comparable.
#include <cstdint>
#include <string>

#include "model/model.h"

namespace secateur::eval {

struct LatencyOptions {
  int64_t batch_size = 8;
  int64_t seq_len = 128;
  int warmup = 3;
  int repeats = 10;
};

struct LatencyResult {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double tokens_per_s = 0;       // batch_size·seq_len / median
  int64_t peak_memory_bytes = -1;  // CUDA allocator peak during the repeats; -1 on CPU
  int64_t batch_size = 0, seq_len = 0, repeats = 0;
};

// Times model.forward on random token ids (fixed seed) under no-grad and eval mode.
LatencyResult measure_latency(model::Model& model, const LatencyOptions& options);

// Waits for the device's queued work (no-op on the CPU).
void synchronize(const torch::Device& device);
// CUDA allocator peak of allocated bytes since the last reset; -1 on the CPU or without CUDA.
void reset_peak_memory(const torch::Device& device);
int64_t peak_memory_bytes(const torch::Device& device);

// Median of a vector (copies it).
double median(std::vector<double> values);

}  // namespace secateur::eval
