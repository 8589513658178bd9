#include "train/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "train/trainer.h"
#include "util/error.h"
#include "util/fs.h"

namespace secateur::train::checkpoint {

namespace {

const char* const kPrefix = "step-";

bool parse_step(const std::string& name, int64_t* step) {
  if (name.rfind(kPrefix, 0) != 0 || name.size() == std::strlen(kPrefix)) return false;
  int64_t v = 0;
  for (size_t i = std::strlen(kPrefix); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + (name[i] - '0');
  }
  *step = v;
  return true;
}

void fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

std::string begin(const std::string& dir, int64_t step) {
  fs::create_directories(dir);
  const std::string temp = fs::join(dir, ".tmp-" + step_name(step));
  fs::remove_all(temp);
  fs::create_directories(temp);
  return temp;
}

std::string commit(const std::string& dir, const std::string& temp, int64_t step) {
  const std::string final_path = fs::join(dir, step_name(step));
  fs::remove_all(final_path);
  if (::rename(temp.c_str(), final_path.c_str()) != 0)
    throw UserError("cannot rename checkpoint " + temp + " to " + final_path + ": " + std::strerror(errno));
  fsync_directory(dir);
  return final_path;
}

std::vector<std::pair<int64_t, std::string>> list(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& name : fs::list_directory(dir)) {
    int64_t step = 0;
    const std::string path = fs::join(dir, name);
    if (parse_step(name, &step) && fs::exists(fs::join(path, "trainer.json"))) out.emplace_back(step, path);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void prune(const std::string& dir, int64_t keep_last, int64_t keep_step) {
  auto all = list(dir);
  const int64_t n = static_cast<int64_t>(all.size());
  for (int64_t i = 0; i < n - std::max<int64_t>(1, keep_last); ++i)
    if (all[static_cast<size_t>(i)].first != keep_step) fs::remove_all(all[static_cast<size_t>(i)].second);
}

}  // namespace secateur::train::checkpoint

namespace secateur::train {

std::string latest_checkpoint(const std::string& dir) {
  auto all = checkpoint::list(dir);
  return all.empty() ? "" : all.back().second;
}

}  // namespace secateur::train
