#pragma once
// `--profile PATH` for the benchmarks: a Chrome trace (Kineto: CPU ops and CUDA kernels) of a few
// steps after the timed ones, summarised per kernel by bench/profile_summary.py. Where the time of
// a step goes is what decides which fusion is worth doing (issue #8 asks for profiles, not guesses).
#include <torch/version.h>

#include <functional>
#include <set>
#include <stdexcept>
#include <string>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

namespace secateur::bench {

// Runs `steps` under the profiler and writes the trace to `path`; throws where this LibTorch's
// Kineto profiler cannot be used from C++ (Debian's 1.13 is built without it).
inline void profile_to(const std::string& path, const std::function<void()>& steps) {
#if TORCH_VERSION_MAJOR >= 2
  namespace impl = torch::profiler::impl;
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/true);
  const std::set<impl::ActivityType> activities{impl::ActivityType::CPU, impl::ActivityType::CUDA};
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  steps();
  torch::autograd::profiler::disableProfiler()->save(path);
#else
  (void)steps;
  throw std::runtime_error("--profile " + path + ": needs LibTorch 2 with Kineto");
#endif
}

}  // namespace secateur::bench
