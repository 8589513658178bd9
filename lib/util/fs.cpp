#include "util/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <ftw.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
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
  std::string parent = parent_path(path);
  return parent.empty() ? std::string(".") : parent;
}

bool stat_ok(const std::string& path, struct stat& st) { return ::stat(path.c_str(), &st) == 0; }

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
  struct stat st {};
  if (!stat_ok(path, st)) throw UserError(path + ": no such file");
  if (S_ISDIR(st.st_mode)) throw UserError(path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot open: " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- POSIX file-system helpers ----------------------------------------------------------------

bool exists(const std::string& path) {
  struct stat st {};
  return stat_ok(path, st);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return stat_ok(path, st) && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return stat_ok(path, st) && S_ISREG(st.st_mode);
}

std::vector<std::string> list_directory(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (!dir) throw UserError(path + ": cannot list directory: " + errno_text());
  while (const dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool is_empty_directory(const std::string& path) {
  if (!is_directory(path)) return false;
  return list_directory(path).empty();
}

void create_directories(const std::string& path) {
  if (path.empty() || is_directory(path)) return;
  create_directories(parent_path(path));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    throw UserError("cannot create directory " + path + ": " + errno_text());
  if (!is_directory(path)) throw UserError("cannot create directory " + path + ": a file is in the way");
}

void remove_all(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    ::unlink(path.c_str());
    return;
  }
  // Depth-first, never following symlinks out of the tree.
  ::nftw(
      path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { ::remove(p); return 0; }, 32,
      FTW_DEPTH | FTW_PHYS);
}

void copy_file(const std::string& from, const std::string& to) { write_atomic(to, read_file(from)); }

std::string temp_directory() {
  const char* t = std::getenv("TMPDIR");
  return t && *t ? std::string(t) : std::string("/tmp");
}

// ---- path text ----------------------------------------------------------------------------------

bool is_absolute(const std::string& path) { return !path.empty() && path[0] == '/'; }

std::string join(const std::string& a, const std::string& b) {
  if (a.empty() || is_absolute(b)) return b;
  if (b.empty()) return a;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string parent_path(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string file_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string stem(const std::string& path) {
  std::string name = file_name(path);
  size_t dot = name.rfind('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

std::string normalize(const std::string& path) {
  std::vector<std::string> parts;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..") parts.pop_back();
      else if (!is_absolute(path)) parts.push_back(part);
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out = is_absolute(path) ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "/" : "") + parts[i];
  return out.empty() ? "." : out;
}

std::string absolute(const std::string& path) {
  if (is_absolute(path)) return normalize(path);
  char buf[PATH_MAX];
  if (!::getcwd(buf, sizeof buf)) throw UserError("cannot read the current directory: " + errno_text());
  return normalize(join(buf, path));
}

}  // namespace secateur::fs
