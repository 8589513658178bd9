#pragma once
// The machinery of the multi-process tests: a test binary re-runs itself as kWorld worker
// processes (one worker test per file, e.g. DistWorker.Run, skipped unless the parent set
// SECATEUR_DIST_WORKER), which join a Gloo group on loopback, do their role's work and leave
// tensors in the parent's directory; the parent then compares them with one process doing the
// same work alone. No launcher is needed.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "dist/process_group.h"
#include "train/trainer.h"
#include "util/fs.h"

extern char** environ;

namespace secateur::dist::testing {

constexpr int64_t kWorld = 2;

inline std::string env_or(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

// In a worker: its role ("" in the parent), rank, and the parent's directory.
inline std::string worker_role() { return env_or("SECATEUR_DIST_WORKER"); }
inline int64_t worker_rank() { return std::stoll(env_or("SECATEUR_DIST_RANK", "0")); }
inline std::string worker_dir() { return env_or("SECATEUR_DIST_DIR"); }

inline GroupOptions gloo_options(int64_t bucket_bytes) {
  GroupOptions o;
  o.backend = Backend::gloo;
  o.timeout = std::chrono::seconds(60);
  o.bucket_bytes = bucket_bytes;
  return o;
}

// A worker's group: kWorld ranks meeting at a FileStore in the parent's directory.
inline std::shared_ptr<ProcessGroup> file_group(int64_t rank, int64_t bucket_bytes = 1 << 16) {
  return ProcessGroup::over_file(fs::join(worker_dir(), "store"), rank, kWorld, gloo_options(bucket_bytes));
}

inline void save(const std::vector<torch::Tensor>& tensors, const std::string& role, int64_t rank) {
  torch::save(tensors, fs::join(worker_dir(), role + "-rank" + std::to_string(rank) + ".pt"));
}

inline std::vector<torch::Tensor> load(const std::string& dir, const std::string& role, int64_t rank) {
  std::vector<torch::Tensor> out;
  torch::load(out, fs::join(dir, role + "-rank" + std::to_string(rank) + ".pt"));
  return out;
}

// SGD with momentum on a constant schedule, clipped, no logging: what the data-parallel
// training tests train with (the clipping norm is the averaged gradient's, the same on all ranks).
inline train::TrainOptions data_parallel_training(int64_t steps) {
  train::TrainOptions o;
  o.steps = steps;
  o.optimizer.kind = train::OptimizerKind::sgd;
  o.optimizer.lr = 0.5;
  o.optimizer.momentum = 0.9;
  o.schedule.kind = train::ScheduleKind::constant;
  o.max_grad_norm = 1.0;
  o.log_every = 0;
  o.best_metric = "";
  o.seed = 3;
  return o;
}

inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 29500 + static_cast<int>(::getpid() % 1000);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct WorkerOptions {
  std::string worker_test = "DistWorker.Run";  // the gtest that runs the roles of the caller's file
  bool torchrun_env = false;                   // set RANK, WORLD_SIZE, MASTER_ADDR, ... as torchrun does
  std::string tmpdir;                          // the workers' TMPDIR ("" = inherited)
};

// Runs `role` as kWorld worker processes of this test binary; returns their exit statuses
// (-1 for a worker killed after 180 s: a hung collective).
inline std::vector<int> run_workers(const std::string& role, const std::string& dir, const WorkerOptions& options = {}) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int64_t r = 0; r < kWorld; ++r) {
    std::vector<std::string> vars;
    for (char** e = environ; *e; ++e) vars.emplace_back(*e);
    vars.push_back("SECATEUR_DIST_WORKER=" + role);
    vars.push_back("SECATEUR_DIST_RANK=" + std::to_string(r));
    vars.push_back("SECATEUR_DIST_DIR=" + dir);
    if (!options.tmpdir.empty()) vars.push_back("TMPDIR=" + options.tmpdir);
    if (options.torchrun_env) {
      for (const std::string v : {"RANK=", "LOCAL_RANK="}) vars.push_back(v + std::to_string(r));
      vars.push_back("WORLD_SIZE=" + std::to_string(kWorld));
      vars.push_back("MASTER_ADDR=127.0.0.1");
      vars.push_back("MASTER_PORT=" + std::to_string(port));
    }
    std::vector<char*> envp;
    for (auto& v : vars) envp.push_back(v.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe", filter = "--gtest_filter=" + options.worker_test;
    char* argv[] = {exe.data(), filter.data(), nullptr};
    pid_t pid = 0;
    if (::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data()) != 0) {
      ADD_FAILURE() << "cannot start worker " << r;
      pid = -1;
    }
    pids.push_back(pid);
  }
  std::vector<int> status(pids.size(), -1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  std::vector<bool> finished(pids.size(), false);
  for (size_t i = 0; i < pids.size(); ++i) finished[i] = pids[i] < 0;
  while (std::count(finished.begin(), finished.end(), false) > 0 && std::chrono::steady_clock::now() < deadline) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (finished[i]) continue;
      int st = 0;
      if (::waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        finished[i] = true;
        status[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (finished[i]) continue;
    ::kill(pids[i], SIGKILL);
    ::waitpid(pids[i], nullptr, 0);
  }
  return status;
}

// <temp>/secateur-dist-<name>-<pid>, empty.
inline std::string temp_dir(const std::string& name) {
  const std::string d = fs::join(fs::temp_directory(), "secateur-dist-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace secateur::dist::testing
