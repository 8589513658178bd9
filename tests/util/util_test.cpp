#include <gtest/gtest.h>


#include "util/error.h"
#include "util/fs.h"
#include "util/progress.h"
#include "util/strings.h"

using namespace secateur;

TEST(Strings, EditDistanceAndClosest) {
  EXPECT_EQ(strings::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(strings::edit_distance("", "abc"), 3u);
  EXPECT_EQ(strings::edit_distance("sparsity", "sparsity"), 0u);
  EXPECT_EQ(strings::closest("target_sparsty", {"target_sparsity", "sparsity", "steps"}), "target_sparsity");
  EXPECT_EQ(strings::closest("zzzzzz", {"alpha", "beta"}), "");
}

TEST(Strings, HumanFiguresAndNumbers) {
  EXPECT_EQ(strings::human_count(999), "999");
  EXPECT_EQ(strings::human_count(189408), "189K");
  EXPECT_EQ(strings::human_count(11234567), "11.2M");
  EXPECT_EQ(strings::human_count(6.74e9), "6.74B");
  EXPECT_EQ(strings::human_duration(5.25), "5.2s");
  EXPECT_EQ(strings::human_duration(95), "1m35s");
  EXPECT_EQ(strings::human_duration(7260), "2h01m");
  EXPECT_EQ(strings::format_number(0.1), "0.1");
  EXPECT_EQ(strings::format_number(1e-5), "1e-05");
  EXPECT_EQ(strings::format_number(3), "3");
  EXPECT_EQ(strings::split("a.b..c", '.'), (std::vector<std::string>{"a", "b", "", "c"}));
}

TEST(Progress, RendersRateEtaAndBar) {
  std::string line = Progress::render("[2/6] learn_masks", 50, 200, 10.0, "it", "loss 0.41", false);
  EXPECT_EQ(line, "[2/6] learn_masks 50/200  5.00 it/s  eta 30s  loss 0.41");
  std::string bar = Progress::render("x", 100, 100, 4.0, "it", "", true);
  EXPECT_NE(bar.find("████████████████████"), std::string::npos) << bar;
  EXPECT_NE(bar.find("in 4.0s"), std::string::npos) << bar;
  std::string unknown = Progress::render("x", 7, 0, 1.0, "batch", "", true);
  EXPECT_EQ(unknown, "x 7  7.00 batch/s");
}

TEST(Fs, AtomicWriteReplacesWholeFilesAndReadFileExplainsErrors) {
  const std::string dir = fs::join(fs::temp_directory(), "secateur-fs-" + std::to_string(::getpid()));
  fs::create_directories(dir + "/x/y");
  EXPECT_TRUE(fs::is_directory(dir + "/x/y"));
  const std::string path = fs::join(dir, "a.txt");
  fs::write_atomic(path, "first");
  fs::write_atomic(path, "second");
  EXPECT_EQ(fs::read_file(path), "second");
  fs::append_line(path, "line");
  EXPECT_EQ(fs::read_file(path), "secondline\n");
  try {
    fs::read_file(dir);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()), dir + ": is a directory, expected a file");
  }
  try {
    fs::read_file(dir + "/missing");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()), dir + "/missing: no such file");
  }
  EXPECT_THROW(fs::write_atomic(dir + "/no/such/dir.txt", "x"), UserError);
  EXPECT_EQ(fs::list_directory(dir), (std::vector<std::string>{"a.txt", "x"}));
  fs::copy_file(path, dir + "/x/b.txt");
  EXPECT_EQ(fs::read_file(dir + "/x/b.txt"), "secondline\n");
  fs::remove_all(dir);
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Fs, PathText) {
  EXPECT_EQ(fs::join("a", "b"), "a/b");
  EXPECT_EQ(fs::join("a/", "/abs"), "/abs");
  EXPECT_EQ(fs::parent_path("a/b/c.yaml"), "a/b");
  EXPECT_EQ(fs::parent_path("c.yaml"), "");
  EXPECT_EQ(fs::parent_path("/c"), "/");
  EXPECT_EQ(fs::file_name("a/b/c.yaml"), "c.yaml");
  EXPECT_EQ(fs::stem("a/b/c.tar.yaml"), "c.tar");
  EXPECT_EQ(fs::normalize("/a/./b/../c//d/"), "/a/c/d");
  EXPECT_EQ(fs::normalize("../x/../../y"), "../../y");
  EXPECT_EQ(fs::absolute("/r/s/../t"), "/r/t");
  EXPECT_TRUE(fs::is_absolute(fs::absolute("rel")));
}
