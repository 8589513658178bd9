#pragma once
// The fixture of the `slurm` tests: a real one-node SLURM cluster (scripts/slurm-local.sh:
// munged + slurmctld + slurmd on loopback, on ports the kernel says are free) started for each
// test and stopped after it. A test is skipped — never passed — only when SLURM cannot be
// installed here (slurm-local.sh exit code 3, its reason in the skip message); a cluster that
// installs but does not come up is a failure.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "support/shell.h"
#include "util/fs.h"

namespace secateur::slurm_test {

using Result = secateur::testing::ShellResult;
using secateur::testing::shell;

// A port the kernel says is free now (bound to port 0, then released), so that concurrent test
// runs and a system SLURM on 6817/6818 do not collide with this cluster.
inline int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(s);
  return port;
}

// The word after `prefix` in `text` ("" when absent): a job id after "submitted job array ",
// a state after "JobState=".
inline std::string field_after(const std::string& text, const std::string& prefix) {
  size_t at = text.find(prefix);
  if (at == std::string::npos) return "";
  at += prefix.size();
  return text.substr(at, text.find_first_of(" \n", at) - at);
}

// How long a test waits for a job (SECATEUR_SLURM_TIMEOUT_S, default 600 s), so that a stuck
// cluster fails the test instead of hanging ctest.
inline int job_timeout_s() {
  const char* v = std::getenv("SECATEUR_SLURM_TIMEOUT_S");
  return v ? std::atoi(v) : 600;
}

// Polls `ready` every `period_ms` until it holds or `timeout_s` expires; false on timeout.
template <class Ready>
bool wait_until(Ready ready, int timeout_s, int period_ms = 100) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(period_ms));
  }
  return false;
}

class LocalSlurm : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::join(fs::temp_directory(), "secateur-slurm-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    const int ctld = free_port(), slurmd = free_port();
    env_ = "SLURM_LOCAL_DIR=" + dir_ + " SLURM_LOCAL_PORT=" + std::to_string(ctld) +
           " SLURM_LOCAL_SLURMD_PORT=" + std::to_string(slurmd) + " ";
    Result start = shell("cd " + std::string(SECATEUR_SOURCE_DIR) + " && " + env_ + "bash scripts/slurm-local.sh start");
    started_ = true;
    if (start.code == 3) GTEST_SKIP() << "SLURM cannot be installed on this machine: " << start.output;
    ASSERT_EQ(start.code, 0) << "scripts/slurm-local.sh start failed:\n" << start.output;
    ::setenv("SLURM_CONF", fs::join(dir_, "slurm.conf").c_str(), 1);
  }

  void TearDown() override {
    if (!started_) return;
    Result stop = shell("cd " + std::string(SECATEUR_SOURCE_DIR) + " && " + env_ + "bash scripts/slurm-local.sh stop");
    EXPECT_EQ(stop.code, 0) << stop.output;
    ::unsetenv("SLURM_CONF");
    if (!HasFailure()) fs::remove_all(dir_);  // kept after a failure: logs under <dir>/log
  }

  // Polls squeue until the job has left the queue or the bound expires; false on timeout.
  bool wait_for_job(const std::string& job, int timeout_s) {
    return wait_until(
        [&] {
          Result q = shell("squeue -h -j " + job + " -o %i");
          return q.code == 0 && q.output.find_first_not_of(" \n") == std::string::npos;
        },
        timeout_s, 1000);
  }

  // `scontrol show job` in one line: JobState=, ExitCode=, Restarts= of a job that ran (slurmctld
  // keeps a finished job for MinJobAge = 300 s; this cluster has no accounting database for sacct).
  std::string job_record(const std::string& job) { return shell("scontrol -o show job " + job).output; }

  std::string dir_, env_;
  bool started_ = false;
};

}  // namespace secateur::slurm_test
