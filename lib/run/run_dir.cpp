#include "run/run_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "report/report.h"
#include "util/error.h"
#include "util/fs.h"

namespace secateur::run {

std::string RunDir::utc_timestamp(bool compact) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, compact ? "%Y%m%dT%H%M%SZ" : "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string RunDir::default_path(const std::string& runs_root, const std::string& name) {
  std::string safe;
  for (char c : name) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return fs::join(runs_root, safe + "-" + utc_timestamp(true));
}

RunDir::RunDir(std::string path, RunDirOptions options)
    : path_(std::move(path)), lock_path_(path_ + "/.lock"), start_(std::chrono::steady_clock::now()) {
  if (options.rank != 0) {
    scratch_ = fs::join(fs::temp_directory(), "secateur-rank" + std::to_string(options.rank) + "-" + std::to_string(::getpid()));
    fs::remove_all(scratch_);
    fs::create_directories(scratch_);
    return;
  }
  if (fs::exists(path_)) {
    if (!fs::is_directory(path_)) throw UserError("run directory " + path_ + " exists and is not a directory");
    bool holds_run = fs::exists(file("recipe.resolved.yaml")) || fs::exists(file("report.json"));
    bool empty = fs::is_empty_directory(path_);
    if (!empty && !options.force && !options.resume) {
      throw UserError("run directory " + path_ + (holds_run ? " already holds a run" : " is not empty") +
                      "; pass --resume to continue it, --force to start over in it, or --out for another directory");
    }
    if (options.resume && !holds_run)
      throw UserError("--resume " + path_ + ": no run there (no recipe.resolved.yaml)");
  } else if (options.resume) {
    throw UserError("--resume " + path_ + ": no such run directory");
  }
  fs::create_directories(path_);
  take_lock();
  fs::create_directories(checkpoints());
}

RunDir::~RunDir() {
  if (locked_) ::unlink(lock_path_.c_str());
  if (!scratch_.empty()) {
    try {
      fs::remove_all(scratch_);
    } catch (...) {
    }
  }
}

void RunDir::take_lock() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = ::open(lock_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      std::string pid = std::to_string(::getpid()) + "\n";
      bool ok = ::write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
      ::close(fd);
      if (!ok) throw UserError("cannot write lock file " + lock_path_ + " (disk full?)");
      locked_ = true;
      return;
    }
    if (errno != EEXIST) throw UserError("cannot create lock file " + lock_path_ + ": " + std::strerror(errno));
    // Someone holds (or held) the lock: refuse if that process still lives, else the lock is stale.
    long pid = 0;
    try {
      pid = std::stol(fs::read_file(lock_path_));
    } catch (...) {
      pid = 0;
    }
    if (pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM))
      throw UserError("run directory " + path_ + " is in use by process " + std::to_string(pid) +
                      " (lock file " + lock_path_ + ")");
    ::unlink(lock_path_.c_str());  // stale: its process is gone
  }
  throw UserError("cannot take the lock " + lock_path_ + ": another process keeps recreating it");
}

void RunDir::write_resolved_recipe(const std::string& header_comment, const std::string& yaml) const {
  if (!is_main()) return;
  fs::write_atomic(file("recipe.resolved.yaml"), header_comment + yaml);
}

void RunDir::write_report(const nlohmann::json& report) const {
  if (!is_main()) return;
  fs::write_atomic(file("report.json"), report.dump(2) + "\n");
  report::write_run_reports(path_, report);
}

double RunDir::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void RunDir::log_event(nlohmann::json event) const {
  if (!is_main()) return;
  nlohmann::json line = {{"time", utc_timestamp(false)}, {"wall_s", elapsed_seconds()}};
  line.update(event);
  fs::append_line(file("metrics.jsonl"), line.dump());
}

}  // namespace secateur::run
