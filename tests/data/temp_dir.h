#pragma once
// A fresh directory under $TMPDIR for one test, removed with everything in it afterwards.
// secateur::fs rather than std::filesystem: the torch wheel's libtorch.so carries its own copies
// of std::filesystem that crash a test binary built with a newer g++ (see util/fs.h).
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "util/fs.h"

struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = secateur::fs::join(secateur::fs::temp_directory(), "secateur-data-test-XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = tmpl;
  }
  ~TempDir() { secateur::fs::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string operator/(const std::string& name) const { return secateur::fs::join(path, name); }
  // Writes `content` to `name` and returns its path.
  std::string file(const std::string& name, const std::string& content, bool executable = false) const {
    const std::string p = *this / name;
    std::ofstream(p, std::ios::binary) << content;
    if (executable) ::chmod(p.c_str(), 0755);
    return p;
  }
};
