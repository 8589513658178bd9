// Write failures (disk full, a file where a directory should be) give a UserError naming the path
// and never damage what was there before: fs::write_atomic writes a temp file and renames it
// only once it is complete, and fs::append_line reports a short write.
#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "util/error.h"
#include "util/fs.h"

namespace fs = secateur::fs;
using secateur::UserError;

namespace {

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

struct Scratch {
  std::string dir;
  Scratch() {
    std::string tmpl = fs::join(fs::temp_directory(), "secateur-write-errors-XXXXXX");
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
  }
  ~Scratch() { fs::remove_all(dir); }
};

// The name write_atomic's next temp file will have: temp_path_for numbers them with a counter,
// so asking for one name tells the next.
std::string next_temp_name(const std::string& path) {
  const std::string probe = fs::temp_path_for(path);
  const size_t dot = probe.rfind('.');
  return probe.substr(0, dot + 1) + std::to_string(std::stoul(probe.substr(dot + 1)) + 1);
}

}  // namespace

// /dev/full accepts open() and fails every write() with ENOSPC. The temp file write_atomic is
// about to create is made a symlink to it, so the write hits a full "disk" exactly where a real
// one would fill up; the previous file must survive whole and the temp must be gone.
TEST(WriteErrors, DiskFullKeepsThePreviousFileIntact) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full";
  Scratch s;
  const std::string report = fs::join(s.dir, "report.json");
  fs::write_atomic(report, "{\"previous\": true}\n");
  const std::string temp = next_temp_name(report);
  ASSERT_EQ(::symlink("/dev/full", temp.c_str()), 0);
  EXPECT_EQ(message_of([&] { fs::write_atomic(report, std::string(1 << 16, 'x')); }),
            "cannot write " + report + ": No space left on device");
  EXPECT_EQ(fs::read_file(report), "{\"previous\": true}\n");
  EXPECT_EQ(fs::list_directory(s.dir), std::vector<std::string>{"report.json"});  // temp removed
}

TEST(WriteErrors, AppendLineOnAFullDiskSaysSo) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full";
  EXPECT_EQ(message_of([] { fs::append_line("/dev/full", "{\"step\": 1}"); }),
            "cannot append to /dev/full: No space left on device");
}

TEST(WriteErrors, AFileWhereADirectoryShouldBe) {
  Scratch s;
  const std::string file = fs::join(s.dir, "file");
  fs::write_atomic(file, "x");
  EXPECT_EQ(message_of([&] { fs::write_atomic(file + "/report.json", "{}"); }),
            "cannot write " + file + "/report.json: Not a directory");
  EXPECT_EQ(message_of([&] { fs::create_directories(file + "/run/checkpoints"); }),
            "cannot create directory " + file + ": a file is in the way");
  EXPECT_EQ(message_of([&] { fs::append_line(file + "/metrics.jsonl", "{}"); }),
            "cannot append to " + file + "/metrics.jsonl: Not a directory");
  EXPECT_EQ(fs::read_file(file), "x");
}
