#include "dist/process_group.h"

#include <torch/version.h>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

// The backend headers compile only with these defined (LibTorch's own build defines them).
#ifdef SECATEUR_WITH_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef SECATEUR_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>

#include "util/error.h"
#include "util/log.h"

namespace secateur::dist {

// LibTorch 2.0 split c10d::ProcessGroup into a front end and per-device c10d::Backend objects;
// ProcessGroupGloo / ProcessGroupNCCL are Backends there and ProcessGroups in 1.13. Both bases
// declare the same virtual collectives, which is all this file calls.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveBase = c10d::Backend;
#else
using CollectiveBase = c10d::ProcessGroup;
#endif

std::string backend_name(Backend backend) { return backend == Backend::nccl ? "nccl" : "gloo"; }

bool backend_available(Backend backend) {
#ifdef SECATEUR_WITH_GLOO
  if (backend == Backend::gloo) return true;
#endif
#ifdef SECATEUR_WITH_NCCL
  if (backend == Backend::nccl) return true;
#endif
  (void)backend;
  return false;
}

Backend resolve_backend(const std::string& name, const std::string& device) {
  const bool cuda = device.rfind("cuda", 0) == 0;
  Backend backend;
  if (name == "auto") {
    backend = cuda ? Backend::nccl : Backend::gloo;
  } else if (name == "nccl" || name == "gloo") {
    backend = name == "nccl" ? Backend::nccl : Backend::gloo;
  } else {
    throw UserError("distributed.backend '" + name + "': expected auto, nccl or gloo");
  }
  if (backend == Backend::nccl && !cuda)
    throw UserError("distributed.backend nccl needs a CUDA device, but the recipe's device is " + device +
                    " (use gloo, or auto, on the CPU)");
  if (!backend_available(backend))
    throw UserError("distributed.backend " + backend_name(backend) + " is not available in this build of secateur: " +
                    (backend == Backend::nccl ? "it needs a CUDA build of LibTorch and nccl.h"
                                              : "it needs the gloo headers (Debian: libgloo-dev)") +
                    " when CMake configures the build");
  return backend;
}

struct PendingCollective::Impl {
  c10::intrusive_ptr<c10d::Work> work;
};

void PendingCollective::wait() {
  if (impl_ && impl_->work) impl_->work->wait();
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CollectiveBase> backend;
  int64_t rank = 0, size = 1;
  GroupOptions options;
  torch::Device device = torch::kCPU;
};

namespace {

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

#ifdef SECATEUR_WITH_GLOO
c10::intrusive_ptr<CollectiveBase> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank, int64_t size,
                                             const GroupOptions& options, const std::string& master_addr) {
  auto opts = c10d::ProcessGroupGloo::Options::create(options.timeout);
  // As torch.distributed: GLOO_SOCKET_IFNAME picks the interface; otherwise the address this
  // host's name resolves to (loopback for a group whose master is this host's loopback).
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (is_loopback(master_addr))
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank), static_cast<int>(size), opts);
}
#endif

#ifdef SECATEUR_WITH_NCCL
c10::intrusive_ptr<CollectiveBase> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank, int64_t size,
                                             const GroupOptions& options) {
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = options.timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(rank), static_cast<int>(size), opts);
}
#endif

std::unique_ptr<ProcessGroup::Impl> make_impl(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t size,
                                              int64_t local_rank, const GroupOptions& options,
                                              const std::string& master_addr) {
  auto impl = std::make_unique<ProcessGroup::Impl>();
  impl->store = store;
  impl->rank = rank;
  impl->size = size;
  impl->options = options;
  if (!backend_available(options.backend))
    throw UserError("backend " + backend_name(options.backend) + " is not available in this build of secateur");
  if (options.backend == Backend::nccl) {
#ifdef SECATEUR_WITH_NCCL
    const int64_t devices = static_cast<int64_t>(c10::cuda::device_count());
    if (local_rank >= devices)
      throw UserError("local rank " + std::to_string(local_rank) + " has no GPU: this node has " + std::to_string(devices) +
                      " (launch at most one process per GPU)");
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(local_rank));
    impl->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
    impl->backend = make_nccl(store, rank, size, options);
#endif
  } else {
#ifdef SECATEUR_WITH_GLOO
    impl->backend = make_gloo(store, rank, size, options, master_addr);
#endif
  }
  (void)local_rank;
  (void)master_addr;
  return impl;
}

}  // namespace

std::shared_ptr<ProcessGroup> ProcessGroup::over_tcp(const World& world, const GroupOptions& options) {
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(world.master_port);
  opts.isServer = world.rank == 0;
  opts.numWorkers = static_cast<std::size_t>(world.world_size);
  opts.waitWorkers = true;
  opts.timeout = options.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(world.master_addr, opts);
  } catch (const std::exception& e) {
    throw UserError("rank " + std::to_string(world.rank) + ": no rendezvous at " + world.master_addr + ":" +
                    std::to_string(world.master_port) + " (MASTER_ADDR:MASTER_PORT): " + e.what());
  }
  log::info("rank " + std::to_string(world.rank) + "/" + std::to_string(world.world_size) + " joined " +
            backend_name(options.backend) + " group at " + world.master_addr + ":" + std::to_string(world.master_port) +
            " (" + launcher_name(world.launcher) + ")");
  return std::shared_ptr<ProcessGroup>(
      new ProcessGroup(make_impl(store, world.rank, world.world_size, world.local_rank, options, world.master_addr)));
}

std::shared_ptr<ProcessGroup> ProcessGroup::over_file(const std::string& path, int64_t rank, int64_t world_size,
                                                      const GroupOptions& options) {
  if (rank < 0 || rank >= world_size) throw UserError("rank " + std::to_string(rank) + " outside a world of " + std::to_string(world_size));
  auto store = c10::make_intrusive<c10d::FileStore>(path, static_cast<int>(world_size));
  store->setTimeout(options.timeout);
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(make_impl(store, rank, world_size, rank, options, "127.0.0.1")));
}

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() {
#if defined(SECATEUR_WITH_NCCL) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))
  // What Python's destroy_process_group() does; LibTorch ≥ 2.4 warns at exit without it.
  if (impl_ && impl_->backend && impl_->options.backend == Backend::nccl) {
    try {
      static_cast<c10d::ProcessGroupNCCL*>(impl_->backend.get())->shutdown();
    } catch (const std::exception& e) {
      log::warn(std::string("NCCL shutdown: ") + e.what());
    }
  }
#endif
}

int64_t ProcessGroup::rank() const { return impl_->rank; }
int64_t ProcessGroup::size() const { return impl_->size; }
const GroupOptions& ProcessGroup::options() const { return impl_->options; }
torch::Device ProcessGroup::device() const { return impl_->device; }

namespace {

void check_collective_input(const torch::Tensor& t, const torch::Device& device, const char* what) {
  if (!t.defined() || !t.is_contiguous() || t.is_sparse() || t.device() != device)
    throw std::invalid_argument(std::string("dist::ProcessGroup::") + what + ": needs a defined, dense, contiguous tensor on " +
                                device.str());
}

}  // namespace

PendingCollective ProcessGroup::all_reduce_sum_async(torch::Tensor& tensor) {
  check_collective_input(tensor, impl_->device, "all_reduce_sum");
  std::vector<at::Tensor> tensors{tensor};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  auto pending = std::make_shared<PendingCollective::Impl>();
  pending->work = impl_->backend->allreduce(tensors, opts);
  return PendingCollective(std::move(pending));
}

void ProcessGroup::all_reduce_sum(torch::Tensor& tensor) { all_reduce_sum_async(tensor).wait(); }

void ProcessGroup::broadcast(torch::Tensor& tensor, int64_t root) {
  check_collective_input(tensor, impl_->device, "broadcast");
  std::vector<at::Tensor> tensors{tensor};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  impl_->backend->broadcast(tensors, opts)->wait();
}

void ProcessGroup::barrier() {
  // An all-reduce of one number rather than c10d's barrier(), whose NCCL version has to guess a
  // device; reading the result on the host waits for the GPU too.
  auto one = torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat).device(impl_->device));
  all_reduce_sum(one);
  const double ranks = one.item<double>();
  if (static_cast<int64_t>(ranks) != impl_->size)
    throw std::runtime_error("dist barrier: " + std::to_string(ranks) + " ranks answered, expected " + std::to_string(impl_->size));
}

std::string ProcessGroup::share_string(const std::string& key, const std::string& value_on_main) {
  const std::string full = "secateur/" + key;
  if (impl_->rank == 0) {
    impl_->store->set(full, std::vector<uint8_t>(value_on_main.begin(), value_on_main.end()));
    return value_on_main;
  }
  const auto bytes = impl_->store->get(full);  // waits up to the store's timeout
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace secateur::dist
