#include "eval/graphed_forward.h"

#include <torch/version.h>

#include <optional>
#include <utility>

#if defined(SECATEUR_TORCH_CUDA) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))
#define SECATEUR_EVAL_CUDA_GRAPHS 1
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "eval/graph_capture.h"
#else
#define SECATEUR_EVAL_CUDA_GRAPHS 0
#endif

namespace secateur::eval {

bool GraphedForward::compiled() { return SECATEUR_EVAL_CUDA_GRAPHS != 0; }

namespace {

// Why no call can be graphed; "" when calls can.
std::string obstacle(const torch::Device& device, bool enabled) {
  if (!enabled) return "CUDA graphs are turned off";
  if (!device.is_cuda()) return "the model is not on a GPU";
  if (!GraphedForward::compiled()) return "this build has no CUDA graphs (LibTorch >= 2.4 built with CUDA)";
  return "";
}

}  // namespace

#if SECATEUR_EVAL_CUDA_GRAPHS

namespace {

using graph_capture::copy_into;
using graph_capture::inputs_of;
using graph_capture::signature;
using GraphSafeScope = graph_capture::SafeScope;

bool on_device(const data::Batch& b, const torch::Device& device) {
  for (const torch::Tensor* t : inputs_of(b))
    if (t->defined() && t->device() != device) return false;
  return true;
}

// c10::Error's what() carries a C++ backtrace; the reason keeps the message.
std::string message(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

torch::Device with_index(const torch::Device& d) {
  if (!d.is_cuda() || d.has_index()) return d;
  return torch::Device(torch::kCUDA, c10::cuda::current_device());
}

}  // namespace

struct GraphedForward::Impl {
  // One graphed shape of batch.
  struct Shape {
    std::vector<int64_t> key;
    bool warm = false;         // a checked eager run passed: the next call captures
    bool synced_once = false;  // a checked run synchronised once already
    data::Batch inputs;        // the graph's input buffers
    std::vector<torch::Tensor> outputs;
    std::unique_ptr<at::cuda::CUDAGraph> graph;
  };

  Impl(Function f, torch::Device d, std::string why)
      : function(std::move(f)), device(with_index(d)), reason(std::move(why)) {
    if (reason.empty()) side.emplace(c10::cuda::getStreamFromPool(false, device.index()));
    shapes.reserve(kMaxShapes);  // Shape references stay valid
  }

  Function function;
  torch::Device device;
  std::string reason;
  int64_t replays = 0;
  std::optional<c10::cuda::CUDAStream> side;
  at::cuda::CUDAEvent ready, done;
  std::vector<Shape> shapes;

  // The batch's graphed shape (a new one while fewer than kMaxShapes exist), or null.
  Shape* shape_of(const data::Batch& b) {
    std::vector<int64_t> key = signature(b);
    for (Shape& s : shapes)
      if (s.key == key) return &s;
    if (shapes.size() >= kMaxShapes) return nullptr;
    shapes.emplace_back();
    shapes.back().key = std::move(key);
    return &shapes.back();
  }

  // Eager from now on. The graphs go (a replay in flight finishes first: CUDA frees an executable
  // graph and PyTorch a private pool only after their work).
  void give_up(std::string why) {
    reason = std::move(why);
    shapes.clear();
  }

  std::vector<torch::Tensor> replay(Shape& s) {
    s.graph->replay();
    ++replays;
    return s.outputs;
  }

  // nullopt: run it eagerly on the caller's stream instead.
  std::optional<std::vector<torch::Tensor>> warm_up(Shape& s, const data::Batch& b) {
    try {
      GraphSafeScope scope(/*error_on_sync=*/true);
      std::vector<torch::Tensor> out = function(b);
      s.warm = true;
      return out;
    } catch (const std::exception& e) {
      // A lazy initialisation (a buffer moved to the device by the first forward) reads the host
      // once: the shape gets one more checked run, a second failure ends graphing.
      if (s.synced_once) {
        give_up("a checked warm-up failed twice (a graph cannot contain a host synchronisation): " + message(e));
        return std::nullopt;
      }
      s.synced_once = true;
      return std::nullopt;
    }
  }

  // Records the function on the shape's input buffers; false (and eager for good) when it fails.
  bool capture(Shape& s, const data::Batch& b) {
    s.inputs = graph_capture::input_buffers(b);
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    bool ended = false;
    try {
      GraphSafeScope scope(/*error_on_sync=*/false);
      graph->capture_begin();
      try {
        s.outputs = function(s.inputs);
      } catch (...) {
        try {
          graph->capture_end();  // leaves the stream's capture mode; fn's error is the one reported
          ended = true;
        } catch (...) {
        }
        throw;
      }
      graph->capture_end();
      ended = true;
    } catch (const std::exception& e) {
      // A capture that did not end cleanly leaves the caching allocator a callback into the graph
      // object (capture_begin registers it; only a successful capture_end removes it): the object
      // is kept, not destroyed. Once per wrapper at most, since a failure ends graphing.
      if (!ended) (void)graph.release();
      give_up("the capture failed: " + message(e));
      return false;
    }
    s.graph = std::move(graph);
    return true;
  }

  // On the side stream. nullopt: run it eagerly on the caller's stream instead.
  std::optional<std::vector<torch::Tensor>> run(Shape& s, const data::Batch& b) {
    if (s.graph) {
      copy_into(s.inputs, b);
      return replay(s);
    }
    if (!s.warm) return warm_up(s, b);
    if (!capture(s, b)) return std::nullopt;
    return replay(s);  // the buffers hold b: a capture records, the replay computes
  }

  std::vector<torch::Tensor> call(const data::Batch& b) {
    Shape* s = on_device(b, device) ? shape_of(b) : nullptr;
    if (s == nullptr) return function(b);
    // The side stream starts after the caller's queued work (which made the batch and consumed
    // the previous outputs) and the caller's stream continues after the side stream's.
    const c10::cuda::CUDAStream outer = c10::cuda::getCurrentCUDAStream(device.index());
    std::optional<std::vector<torch::Tensor>> out;
    {
      ready.record(outer);
      c10::cuda::CUDAStreamGuard guard(*side);
      ready.block(*side);
      try {
        out = run(*s, b);
      } catch (...) {
        done.record(*side);
        done.block(outer);
        throw;
      }
      done.record(*side);
      done.block(outer);
    }
    return out ? std::move(*out) : function(b);
  }
};

#else

struct GraphedForward::Impl {
  Impl(Function f, torch::Device, std::string why) : function(std::move(f)), reason(std::move(why)) {}

  Function function;
  std::string reason;
  int64_t replays = 0;

  std::vector<torch::Tensor> call(const data::Batch& b) { return function(b); }
};

#endif

GraphedForward::GraphedForward(Function function, torch::Device device, bool enabled)
    : impl_(std::make_unique<Impl>(std::move(function), device, obstacle(device, enabled))) {}

GraphedForward::~GraphedForward() = default;

std::vector<torch::Tensor> GraphedForward::operator()(const data::Batch& batch) {
  torch::NoGradGuard no_grad;
  if (!impl_->reason.empty()) return impl_->function(batch);
  return impl_->call(batch);
}

int64_t GraphedForward::replays() const { return impl_->replays; }
const std::string& GraphedForward::reason() const { return impl_->reason; }

}  // namespace secateur::eval
