#pragma once
// LibTorch runtime facts and settings: version, CUDA, threads, seeding, device parsing.
#include <cstdint>
#include <string>

namespace secateur::runtime {

std::string torch_version();         // e.g. "1.13.1" or "2.11.0"
bool cuda_available();
int cuda_device_count();
std::string device_description(const std::string& device);  // "cpu (2 threads)", "cuda:0 NVIDIA H100 ..."

// LibTorch starts with one intra-op thread on some machines: always set it explicitly.
// threads <= 0 means all hardware threads.
int set_threads(int threads);

// Seeds torch's CPU and CUDA generators; everything random in a run derives from this.
void seed_everything(uint64_t seed);

// Checks "cpu", "cuda", "cuda:N"; throws UserError when CUDA is requested but unavailable.
std::string validate_device(const std::string& device);

}  // namespace secateur::runtime
