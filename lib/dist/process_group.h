#pragma once
// A c10d process group (LibTorch's own collectives: NCCL between GPUs, Gloo between CPUs) behind
// a small interface, so that the rest of secateur compiles the same against LibTorch 1.13 (where
// ProcessGroupGloo derives from c10d::ProcessGroup) and 2.x (where it derives from c10d::Backend).
//
// Rendezvous: a TCPStore served by rank 0 at MASTER_ADDR:MASTER_PORT (the launcher's), or a
// FileStore on a shared file (tests). Collectives run in the same order on every rank; a rank that
// waits longer than `timeout` for the others fails with c10d's error instead of hanging forever.
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/world.h"

namespace secateur::dist {

enum class Backend { gloo, nccl };
std::string backend_name(Backend backend);

// Whether this build of secateur can create the backend (Gloo needs the gloo headers at build
// time, NCCL a CUDA build of LibTorch and nccl.h; see lib/dist/CMakeLists.txt).
bool backend_available(Backend backend);

// "auto" → NCCL on a CUDA device, Gloo on the CPU; "gloo" / "nccl" as named. Throws UserError
// when the backend is not available in this build, or NCCL is asked for on the CPU.
Backend resolve_backend(const std::string& name, const std::string& device);

struct GroupOptions {
  Backend backend = Backend::gloo;
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};
  int64_t bucket_bytes = 25 << 20;  // gradient all-reduce bucket size (DataParallelSync)
};

// An asynchronous collective in flight; wait() completes it (for NCCL: orders the current CUDA
// stream after it, as c10d does).
class PendingCollective {
 public:
  struct Impl;
  explicit PendingCollective(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  void wait();

 private:
  std::shared_ptr<Impl> impl_;
};

class ProcessGroup {
 public:
  // Rendezvous through a TCPStore that rank 0 serves at world.master_addr:master_port. NCCL binds
  // this process to cuda:<local_rank> first.
  static std::shared_ptr<ProcessGroup> over_tcp(const World& world, const GroupOptions& options);
  // Rendezvous through a file every rank can open (one node, or a shared file system); the file
  // must not hold an earlier group's keys.
  static std::shared_ptr<ProcessGroup> over_file(const std::string& path, int64_t rank, int64_t world_size,
                                                 const GroupOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const;
  int64_t size() const;
  bool is_main() const { return rank() == 0; }
  const GroupOptions& options() const;
  // Where tensors must be for the backend: the CPU for Gloo, cuda:<local rank> for NCCL.
  torch::Device device() const;

  // In place, element-wise sum over ranks. The tensor must be dense, contiguous and on device().
  PendingCollective all_reduce_sum_async(torch::Tensor& tensor);
  void all_reduce_sum(torch::Tensor& tensor);
  // In place: every rank ends with `root`'s values.
  void broadcast(torch::Tensor& tensor, int64_t root = 0);
  // Returns when every rank has reached it.
  void barrier();
  // Rank 0's `value` on every rank (through the store): e.g. the run directory name rank 0 chose.
  std::string share_string(const std::string& key, const std::string& value_on_main);

  struct Impl;

 private:
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace secateur::dist
