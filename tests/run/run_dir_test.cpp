#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "run/run_dir.h"
#include "util/error.h"
#include "util/fs.h"

using secateur::UserError;
using secateur::run::RunDir;
namespace fsys = secateur::fs;  // POSIX: std::filesystem crashes against the torch wheel

namespace {
std::string fresh_dir(const std::string& tag) {
  auto p = fsys::join(fsys::temp_directory(), "secateur-rundir-" + tag + "-" + std::to_string(::getpid()));
  fsys::remove_all(p);
  return p;
}
std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(RunDir, CreatesLayoutAndLockThenReleasesIt) {
  const std::string path = fresh_dir("layout");
  {
    RunDir dir(path, {});
    EXPECT_TRUE(fsys::is_directory(dir.checkpoints()));
    EXPECT_EQ(std::stol(secateur::fs::read_file(path + "/.lock")), static_cast<long>(::getpid()));
    dir.write_report({{"status", "running"}});
    dir.log_event({{"stage", "eval"}, {"values", {{"acc", 0.5}}}});
    dir.log_event({{"stage", "eval"}, {"step", 2}});
    auto report = nlohmann::json::parse(secateur::fs::read_file(dir.file("report.json")));
    EXPECT_EQ(report["status"], "running");
    std::ifstream in(dir.file("metrics.jsonl"));
    std::string line;
    int lines = 0;
    while (std::getline(in, line)) {
      auto event = nlohmann::json::parse(line);
      EXPECT_TRUE(event.contains("time"));
      EXPECT_TRUE(event.contains("wall_s"));
      EXPECT_EQ(event["stage"], "eval");
      ++lines;
    }
    EXPECT_EQ(lines, 2);
  }
  EXPECT_FALSE(fsys::exists(path + "/.lock"));
  fsys::remove_all(path);
}

TEST(RunDir, NeverWritesIntoAnExistingRunWithoutForceOrResume) {
  const std::string path = fresh_dir("exists");
  { RunDir dir(path, {}); dir.write_resolved_recipe("# h\n", "name: x\n"); }
  EXPECT_EQ(message_of([&] { RunDir again(path, {}); }),
            "run directory " + path + " already holds a run; pass --resume to continue it, --force to start over in it, or --out for another directory");
  EXPECT_NO_THROW({ RunDir forced(path, {true, false}); });
  EXPECT_NO_THROW({ RunDir resumed(path, {false, true}); });
  EXPECT_EQ(message_of([&] { RunDir r(path + "-none", {false, true}); }), "--resume " + path + "-none: no such run directory");
  fsys::remove_all(path);
}

TEST(RunDir, RefusesALiveLockAndReplacesAStaleOne) {
  const std::string path = fresh_dir("lock");
  fsys::create_directories(path);
  // A live process (the parent of this test) holds the lock.
  std::ofstream(path + "/.lock") << ::getppid() << "\n";
  EXPECT_EQ(message_of([&] { RunDir d(path, {true, false}); }),
            "run directory " + path + " is in use by process " + std::to_string(::getppid()) + " (lock file " + path + "/.lock)");
  // A process that has exited: its lock is stale and is taken over.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  std::ofstream(path + "/.lock") << child << "\n";
  EXPECT_NO_THROW({ RunDir d(path, {true, false}); });
  fsys::remove_all(path);
}

TEST(RunDir, ReportWritesAreAtomic) {
  const std::string path = fresh_dir("atomic");
  RunDir dir(path, {});
  dir.write_report({{"version", 1}});
  // An unwritable directory makes the write fail: the previous report must survive intact.
  if (::geteuid() != 0) {
    ::chmod(path.c_str(), 0500);
    EXPECT_THROW(dir.write_report({{"version", 2}}), UserError);
    ::chmod(path.c_str(), 0700);
  }
  // A failing writer leaves no temp file and no change.
  EXPECT_THROW(secateur::fs::write_atomic_with(dir.file("report.json"), [](const std::string& tmp) {
                 std::ofstream(tmp) << "{\"half";
                 throw UserError("simulated crash");
               }),
               UserError);
  EXPECT_EQ(nlohmann::json::parse(secateur::fs::read_file(dir.file("report.json")))["version"], 1);
  for (const auto& name : fsys::list_directory(path)) EXPECT_EQ(name.find(".tmp."), std::string::npos) << name;
  fsys::remove_all(path);
}

TEST(RunDir, DefaultPathIsNamePlusUtcTime) {
  std::string p = RunDir::default_path("runs", "my run/1");
  EXPECT_EQ(p.rfind("runs/my_run_1-", 0), 0u) << p;
  EXPECT_EQ(p.size(), std::string("runs/my_run_1-20261124T101500Z").size());
  EXPECT_EQ(p.back(), 'Z');
}
