// A real SLURM cluster (scripts/slurm-local.sh: munged + slurmctld + slurmd on loopback) runs a
// `secateur sweep --slurm --submit` job array end to end. Label `slurm`. The test is skipped —
// never passed — only when SLURM cannot be installed here (slurm-local.sh exit code 3, its reason
// in the skip message); a cluster that installs but does not come up is a failure.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "util/fs.h"

using namespace secateur;

namespace {

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr together
};

Result shell(const std::string& command) {
  Result r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) r.output.append(buf, n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A port the kernel says is free now (bound to port 0, then released), so that concurrent test
// runs and a system SLURM on 6817/6818 do not collide with this cluster.
int free_port() {
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

std::string field_after(const std::string& text, const std::string& prefix) {
  size_t at = text.find(prefix);
  if (at == std::string::npos) return "";
  at += prefix.size();
  return text.substr(at, text.find_first_of(" \n", at) - at);
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
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      Result q = shell("squeue -h -j " + job + " -o %i");
      if (q.code == 0 && q.output.find_first_not_of(" \n") == std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::seconds(2));
    }
    return false;
  }

  std::string dir_, env_;
  bool started_ = false;
};

}  // namespace

TEST_F(LocalSlurm, SweepJobArrayRunsEveryPointAndTheReportMergesThem) {
  const std::string sweep = fs::join(dir_, "sweep");
  const std::string bin = SECATEUR_BINARY;
  // The quickstart recipe as README gives it, with its perplexity cut to 2048 tokens per eval so
  // that three points run in seconds on a small CI machine.
  const std::string cmd = "cd " + std::string(SECATEUR_SOURCE_DIR) + " && " + bin +
                          " sweep recipes/quickstart.yaml --grid 'seed=[0,1,2]' --slurm --submit --out " + sweep +
                          " --set stages.1.eval.max_tokens=2048 --set stages.3.eval.max_tokens=2048"
                          " --set stages.1.eval.latency.repeats=1 --set stages.3.eval.latency.repeats=1 --set threads=1";
  Result submit = shell(cmd);
  ASSERT_EQ(submit.code, 0) << cmd << "\n" << submit.output;
  const std::string job = field_after(submit.output, "submitted job array ");
  ASSERT_FALSE(job.empty()) << submit.output;
  EXPECT_EQ(fs::read_file(fs::join(sweep, "slurm_jobs.txt")), job + "\n");

  const int timeout_s = std::getenv("SECATEUR_SLURM_TIMEOUT_S") ? std::atoi(std::getenv("SECATEUR_SLURM_TIMEOUT_S")) : 600;
  ASSERT_TRUE(wait_for_job(job, timeout_s)) << "job " << job << " still queued/running after " << timeout_s << " s:\n"
                                            << shell("squeue; sinfo").output;

  for (int seed = 0; seed < 3; ++seed) {
    const std::string run = fs::join(sweep, "seed=" + std::to_string(seed));
    // SLURM ran this point: its array task's output file names the task and the command.
    const std::string task_log = fs::join(sweep, "slurm-" + job + "_" + std::to_string(seed) + ".out");
    ASSERT_TRUE(fs::exists(task_log)) << task_log;
    EXPECT_NE(fs::read_file(task_log).find("secateur sweep task " + std::to_string(seed) + " on "), std::string::npos)
        << fs::read_file(task_log);
    ASSERT_TRUE(fs::exists(fs::join(run, "report.json"))) << fs::read_file(task_log);
    auto report = nlohmann::json::parse(fs::read_file(fs::join(run, "report.json")));
    EXPECT_EQ(report["status"], "completed") << fs::read_file(task_log);
    EXPECT_EQ(report["seed"], seed);
    EXPECT_EQ(report["stages"].size(), 5u);
    EXPECT_TRUE(fs::exists(fs::join(run, "report.md")));
    EXPECT_TRUE(fs::exists(fs::join(run, "report.html")));
  }

  Result table = shell(bin + " report " + sweep);
  ASSERT_EQ(table.code, 0) << table.output;
  int rows = 0;
  for (const auto& name : {"seed=0", "seed=1", "seed=2"}) {
    const std::string row = "| " + std::string(name) + " |";
    EXPECT_NE(table.output.find(row), std::string::npos) << name << " missing from\n" << table.output;
  }
  for (size_t at = 0; (at = table.output.find("\n| seed=", at)) != std::string::npos; ++at) ++rows;
  EXPECT_EQ(rows, 3) << table.output;
}
