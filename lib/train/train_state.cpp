#include "train/train_state.h"

#include <mutex>
#include <sstream>
#include <type_traits>

#include "util/error.h"

namespace secateur::train::state {
namespace {

using json = nlohmann::json;

// The C++ optimisers key their per-parameter state by the parameter's TensorImpl: as the
// pointer's text in LibTorch 1.x (c10::guts::to_string), as the pointer itself in 2.x.
template <class Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same<Key, std::string>::value) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace

io::TensorMap optimizer_tensors(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& all_params,
                                OptimizerKind kind, json& steps) {
  io::TensorMap out;
  auto& state = optimizer.state();
  for (size_t i = 0; i < all_params.size(); ++i) {
    auto it = state.find(state_key(state, all_params[i]));
    if (it == state.end()) continue;
    const std::string k = "p" + std::to_string(i) + ".";
    if (kind == OptimizerKind::adamw) {
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      out[k + "exp_avg"] = s.exp_avg();
      out[k + "exp_avg_sq"] = s.exp_avg_sq();
      steps[std::to_string(i)] = s.step();
    } else {
      auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
      out[k + "momentum_buffer"] = s.momentum_buffer();
      steps[std::to_string(i)] = 0;
    }
  }
  return out;
}

void load_optimizer(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& all_params, OptimizerKind kind,
                    const io::TensorMap& t, const json& steps) {
  auto& state = optimizer.state();
  state.clear();
  for (size_t i = 0; i < all_params.size(); ++i) {
    const std::string si = std::to_string(i);
    if (!steps.contains(si)) continue;
    const std::string k = "p" + si + ".";
    auto get = [&](const std::string& name) {
      auto it = t.find(k + name);
      if (it == t.end()) throw UserError("checkpoint: optimizer.safetensors lacks " + k + name);
      return it->second.to(all_params[i].device()).clone();
    };
    if (kind == OptimizerKind::adamw) {
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(steps[si].get<int64_t>());
      s->exp_avg(get("exp_avg"));
      s->exp_avg_sq(get("exp_avg_sq"));
      state[state_key(state, all_params[i])] = std::move(s);
    } else {
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(get("momentum_buffer"));
      state[state_key(state, all_params[i])] = std::move(s);
    }
  }
}

// Every visible GPU (none on a CPU-only LibTorch).
static std::vector<torch::Device> cuda_devices() {
  std::vector<torch::Device> out;
  if (torch::cuda::is_available())
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i)
      out.emplace_back(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
  return out;
}

io::TensorMap rng_tensors() {
  io::TensorMap out;
  {
    auto gen = at::globalContext().defaultGenerator(torch::kCPU);
    std::lock_guard<std::mutex> lock(gen.mutex());
    out["rng.cpu"] = gen.get_state();
  }
  for (const auto& d : cuda_devices()) {
    auto gen = at::globalContext().defaultGenerator(d);
    std::lock_guard<std::mutex> lock(gen.mutex());
    out["rng.cuda" + std::to_string(d.index())] = gen.get_state();
  }
  return out;
}

void load_rng(const io::TensorMap& t) {
  auto set = [&](const torch::Device& d, const std::string& key) {
    auto it = t.find(key);
    if (it == t.end()) return;
    auto gen = at::globalContext().defaultGenerator(d);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second.contiguous());
  };
  set(torch::kCPU, "rng.cpu");
  for (const auto& d : cuda_devices()) set(d, "rng.cuda" + std::to_string(d.index()));
}

}  // namespace secateur::train::state
