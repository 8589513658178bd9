#include "run/runtime.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <thread>

#include "util/error.h"

namespace secateur::runtime {

std::string torch_version() { return TORCH_VERSION; }

bool cuda_available() { return torch::cuda::is_available(); }

int cuda_device_count() { return cuda_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

int set_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  return threads;
}

void seed_everything(uint64_t seed) {
  torch::manual_seed(seed);
  if (cuda_available()) torch::cuda::manual_seed_all(seed);
}

std::string validate_device(const std::string& device) {
  if (device == "cpu") return device;
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (device.size() > 5) {
      const std::string digits = device.substr(5);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
        throw UserError("device '" + device + "': expected cpu, cuda or cuda:N");
      index = std::stoi(digits);
    }
    if (!cuda_available())
      throw UserError("device '" + device + "' requested, but CUDA is not available (LibTorch " +
                      torch_version() + " sees no GPU); use --device cpu");
    if (index >= cuda_device_count())
      throw UserError("device '" + device + "': only " + std::to_string(cuda_device_count()) +
                      " CUDA device(s) visible");
    return device;
  }
  throw UserError("device '" + device + "': expected cpu, cuda or cuda:N");
}

std::string device_description(const std::string& device) {
  if (device == "cpu") return "cpu (" + std::to_string(torch::get_num_threads()) + " threads)";
  return device;
}

}  // namespace secateur::runtime
