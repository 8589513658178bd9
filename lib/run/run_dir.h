#pragma once
// A run directory holds everything one run produced:
//   recipe.resolved.yaml  the validated recipe (includes and --set applied, defaults filled),
//                         headed by the secateur version, git commit, LibTorch version, command
//   log.txt               everything logged (also shown on the terminal)
//   metrics.jsonl         one JSON object per event: stage, step, values, wall time
//   report.json           the run's results so far, rewritten atomically after every stage
//   checkpoints/          training checkpoints
// A directory that already holds a run is never written into again unless the user says
// --force (start over in it) or --resume (continue it). A lock file refuses concurrent runs.
//
// Data parallelism (lib/dist): every rank runs every stage, but only the main rank (0) writes the
// run directory. Another rank's RunDir takes no lock and creates nothing in `path`: its writes
// (recipe, report, metrics) do nothing, file() names a private scratch directory (removed at the
// end) for what stages write there, and checkpoints() stays rank 0's directory, so that every rank
// resumes from the same checkpoint (the run directory must be on a shared file system when the
// ranks span several nodes).
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace secateur::run {

struct RunDirOptions {
  bool force = false;
  bool resume = false;
  int64_t rank = 0;  // data-parallel rank: only rank 0 writes
};

class RunDir {
 public:
  // Creates (or reopens, with force/resume) `path` and takes its lock. Throws UserError when the
  // directory holds another run, is locked by a live process, or cannot be written.
  RunDir(std::string path, RunDirOptions options);
  ~RunDir();
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;

  const std::string& path() const { return path_; }
  bool is_main() const { return scratch_.empty(); }
  std::string file(const std::string& name) const { return (is_main() ? path_ : scratch_) + "/" + name; }
  std::string checkpoints() const { return path_ + "/checkpoints"; }

  void write_resolved_recipe(const std::string& header_comment, const std::string& yaml) const;
  // report.json, and report.md / report.html rendered from it (lib/report).
  void write_report(const nlohmann::json& report) const;
  // Appends {"time": ISO-8601, "wall_s": seconds since the run began, ...event} to metrics.jsonl.
  void log_event(nlohmann::json event) const;
  double elapsed_seconds() const;

  // "runs/<name>-20261124T101500Z"
  static std::string default_path(const std::string& runs_root, const std::string& name);
  static std::string utc_timestamp(bool compact);

 private:
  void take_lock();
  std::string path_;
  std::string lock_path_;
  std::string scratch_;  // non-main ranks: where file() points
  bool locked_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace secateur::run
