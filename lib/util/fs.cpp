#include "util/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace secateur::fs {
namespace {

std::string errno_text() { return std::strerror(errno); }

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort for directories on filesystems that refuse it
  ::fsync(fd);
  ::close(fd);
}

std::string parent_dir(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

std::string temp_path_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

void commit_temp(const std::string& temp, const std::string& path) {
  fsync_path(temp, false);
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    discard_temp(temp);
    throw UserError("cannot write " + path + ": rename failed: " + why);
  }
  fsync_path(parent_dir(path), true);
}

void discard_temp(const std::string& temp) noexcept { ::unlink(temp.c_str()); }

void write_atomic(const std::string& path, std::string_view content) {
  write_atomic_with(path, [&](const std::string& temp) {
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw UserError("cannot write " + path + ": " + errno_text());
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::string why = errno_text();
        ::close(fd);
        throw UserError("cannot write " + path + ": " + why);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) throw UserError("cannot write " + path + ": " + errno_text());
  });
}

void append_line(const std::string& path, std::string_view line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw UserError("cannot append to " + path + ": " + errno_text());
  std::string buf(line);
  buf.push_back('\n');
  // O_APPEND + one write() keeps each line whole even with several writers.
  ssize_t n = ::write(fd, buf.data(), buf.size());
  bool ok = n == static_cast<ssize_t>(buf.size());
  std::string why = ok ? "" : (n < 0 ? errno_text() : "short write (disk full?)");
  ::fsync(fd);
  ::close(fd);
  if (!ok) throw UserError("cannot append to " + path + ": " + why);
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw UserError(path + ": no such file");
  if (std::filesystem::is_directory(status)) throw UserError(path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot open: " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace secateur::fs
